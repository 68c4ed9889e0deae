"""The plain-torch MiniLM against sentence-transformers on the packaged weights."""

import torch

from omnisep.encoders.backbones import minilm_path
from omnisep.encoders.minilm import MAX_TOKENS, load_minilm_folder

TEXTS = [
    "dog barking",
    "a small dog yapping at the mailman",
    "Ünïcode — accents, CAPS and   extra spaces!",
    "violin",
    "long " * (2 * MAX_TOKENS),  # truncated at 256 tokens, as sentence-transformers does
]


def test_matches_sentence_transformers_batched_and_alone():
    from sentence_transformers import SentenceTransformer

    ours = load_minilm_folder(minilm_path())
    reference = SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
    expected = reference.encode(TEXTS, batch_size=2, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
    batched = ours.embed(TEXTS, batch_size=2)  # texts of different lengths share a padded batch
    alone = torch.cat([ours.embed([text]) for text in TEXTS])
    assert batched.shape == (len(TEXTS), 384)
    assert torch.allclose(batched, expected, atol=1e-5)
    assert torch.allclose(alone, expected, atol=1e-5)
    assert torch.allclose(batched.norm(dim=-1), torch.ones(len(TEXTS)))
    assert ours.embed([]).shape == (0, 384)


def test_loads_every_encoder_weight_and_nothing_else():
    from safetensors.torch import load_file

    ours = load_minilm_folder(minilm_path())
    stored = {k for k in load_file(str(minilm_path() / "model.safetensors")) if not k.startswith("pooler.")}
    assert set(ours.state_dict()) == stored - {"embeddings.position_ids"}
