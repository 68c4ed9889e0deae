"""all-MiniLM-L6-v2 as a sentence embedder, in plain torch.

The bundled encoder's text anchor. sentence-transformers computes exactly this
(a 6-layer BERT, mean pooling over the real tokens, L2 normalisation), but
importing it pulls in transformers and scikit-learn: 3.5-8 s before the first
free-text query. Reading the packaged ``model.safetensors`` and
``tokenizer.json`` directly takes a fraction of a second, and the tensors (so
the encoder's weights hash and every checkpoint made with it) are the same.
``tests/encoders/test_minilm.py`` checks the output against
``SentenceTransformer.encode``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MAX_TOKENS = 256  # the model's sentence_bert_config.json max_seq_length


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape

        def split(t):
            return t.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hidden // self.heads)
        scores = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
        return (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, hidden)


class _DenseNorm(nn.Module):
    """BERT's output block: dense, then LayerNorm of the residual sum."""

    def __init__(self, inputs: int, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(inputs, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _AttentionBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, eps: float):
        super().__init__()
        self.self = _Attention(hidden, heads)
        self.output = _DenseNorm(hidden, hidden, eps)


class _Intermediate(nn.Module):
    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.dense = nn.Linear(hidden, inner)


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, inner: int, eps: float):
        super().__init__()
        self.attention = _AttentionBlock(hidden, heads, eps)
        self.intermediate = _Intermediate(hidden, inner)
        self.output = _DenseNorm(inner, hidden, eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = self.attention.output(self.attention.self(x, keep), x)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class _Embeddings(nn.Module):
    def __init__(self, vocab: int, hidden: int, positions: int, types: int, eps: float):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(positions, hidden)
        self.token_type_embeddings = nn.Embedding(types, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class _Encoder(nn.Module):
    def __init__(self, layers: int, hidden: int, heads: int, inner: int, eps: float):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(hidden, heads, inner, eps) for _ in range(layers))


class MiniLM(nn.Module):
    """A BERT encoder whose parameter names are the checkpoint's (so it loads with ``load_state_dict``)."""

    def __init__(self, config: dict):
        super().__init__()
        eps = config["layer_norm_eps"]
        hidden = config["hidden_size"]
        self.embeddings = _Embeddings(
            config["vocab_size"], hidden, config["max_position_embeddings"], config["type_vocab_size"], eps
        )
        self.encoder = _Encoder(
            config["num_hidden_layers"], hidden, config["num_attention_heads"], config["intermediate_size"], eps
        )
        self.tokenizer = None

    def forward(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Token ids and mask ``[B, L]`` -> normalised mean of the real tokens' last states ``[B, hidden]``."""
        x = self.embeddings(ids)
        for layer in self.encoder.layer:
            x = layer(x, keep)
        weights = keep.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)

    @torch.no_grad()
    def embed(self, texts: list[str], batch_size: int = 32) -> torch.Tensor:
        """``[N, hidden]`` unit vectors, as ``SentenceTransformer.encode(..., normalize_embeddings=True)``."""
        device = next(self.parameters()).device
        rows = []
        for start in range(0, len(texts), batch_size):
            encodings = self.tokenizer.encode_batch(texts[start : start + batch_size])
            ids = torch.tensor([e.ids for e in encodings], device=device)
            keep = torch.tensor([e.attention_mask for e in encodings], device=device).bool()
            rows.append(self(ids, keep))
        if not rows:
            return torch.empty(0, self.embeddings.word_embeddings.embedding_dim)
        return torch.cat(rows)


def load_minilm_folder(folder: str | Path) -> MiniLM:
    """The model and tokenizer of a sentence-transformers folder (``config.json``, ``model.safetensors``, ``tokenizer.json``)."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    folder = Path(folder)
    model = MiniLM(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    state = {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if not k.startswith("pooler.")}
    state.pop("embeddings.position_ids", None)  # a constant arange, not a weight
    model.load_state_dict(state, strict=True)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # sentence-transformers truncates at max_seq_length and pads to the longest text of the batch
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    model.tokenizer = tokenizer
    return model.eval()
