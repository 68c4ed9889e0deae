"""The separator contract: a network kind defined here, outside models/, trains, saves, loads,
separates whole files and streams through the one signal path with nothing but its registration;
and evaluation scores exactly what `omnisep separate` writes."""

from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
from torch import nn

from omnisep.apply import ChunkedSeparator
from omnisep.cli import main
from omnisep.models import MaskNetwork, NetworkConfig, register, signal_path
from omnisep.models.registry import kinds


@dataclass(frozen=True)
class GateConfig(NetworkConfig):
    channels: int = 4
    emb_dim: int = 8
    binary_mask: bool = False

    def __post_init__(self):
        self.check_fields()

    @property
    def time_multiple(self) -> int:
        return 1


class GateNet(MaskNetwork):
    """Two 3x3 convolutions and a query-made per-channel gate: a receptive field of two frames."""

    kind = "test-gate"
    config_class = GateConfig

    def __init__(self, config: GateConfig):
        super().__init__(config)
        self.conv = nn.Conv2d(1, config.channels, 3, padding=1)
        self.out = nn.Conv2d(config.channels, 1, 3, padding=1)
        self.gate = nn.Linear(config.emb_dim, config.channels)

    @property
    def time_multiple(self) -> int:
        return 1

    @property
    def context_frames(self) -> int:
        return 2

    def prepare(self, mag_warped):
        return torch.relu(self.conv(torch.log(mag_warped) / 10))

    def mask_logits(self, prepared, queries):
        self.check_queries(queries)
        gates = torch.sigmoid(self.gate(queries))  # [B, Q, C]
        gated = prepared.unsqueeze(1) * gates[..., None, None]  # [B, Q, C, H, W]
        batch, n_queries = gated.shape[:2]
        return self.out(gated.flatten(0, 1)).reshape(batch, n_queries, *gated.shape[-2:])


register(GateNet)


def test_a_new_kind_trains_saves_loads_separates_and_streams(tmp_path):
    from omnisep.api import Separator
    from omnisep.states import load_checkpoint
    from omnisep.training.config import TrainConfig
    from omnisep.training.loop import train
    from omnisep.data.synthetic import make_corpus

    assert "test-gate" in kinds() and {"paper", "film"} <= set(kinds())
    manifest = make_corpus(tmp_path / "corpus", train_per_class=3, val_per_class=1, test_per_class=1)
    config = TrainConfig.from_dict({
        "out_dir": str(tmp_path / "run"), "steps": 6, "log_every": 3, "val_every": 6, "checkpoint_every": 6,
        "device": "cpu", "model": {"kind": "test-gate", "channels": 3},
        "encoder": {"name": "toy"},
        "data": {"train_manifest": str(manifest), "segment_samples": 4095, "num_workers": 0, "pipeline": "resident"},
        "optim": {"batch_size": 4, "warmup_steps": 1, "lr": 1e-2},
    })
    result = train(config, log=lambda message: None)
    assert result.step == 6 and np.isfinite(result.train_loss)
    loaded = load_checkpoint(tmp_path / "run" / "last")
    assert type(loaded.model) is GateNet and loaded.config["model"]["kind"] == "test-gate"

    rng = np.random.default_rng(3)
    wave = (0.1 * rng.standard_normal(3 * 16000)).astype(np.float32)
    separator = Separator(tmp_path / "run" / "last")
    whole = separator.separate(wave, 16000, text="dog barking")
    query = separator.embed_query(text="dog barking")[None]
    with torch.no_grad():
        one_piece = signal_path.separate(loaded.model, torch.from_numpy(wave)[None], query[None])[0, 0]
    np.testing.assert_allclose(whole.target, one_piece.numpy(), atol=1e-5)  # a [T] input gives [T] outputs
    np.testing.assert_allclose(whole.target + whole.residual, wave, atol=1e-6)
    # streamed in odd blocks with short chunks: equal to the one-piece result
    engine = ChunkedSeparator(loaded.model, query, chunk_seconds=0.3, overlap=0.1)
    blocks = np.split(wave[None], [1000, 1001, 7000, 30000], axis=1)
    streamed = np.concatenate([engine.push(block) for block in blocks] + [engine.finish()], axis=-1)
    np.testing.assert_allclose(streamed[0, 0], one_piece.numpy(), atol=1e-5)


def test_evaluation_scores_exactly_what_separate_writes(tmp_path, tiny_checkpoint):
    from omnisep.api import Separator
    from omnisep.evaluation.protocol.config import EvaluationConfig
    from omnisep.evaluation.protocol.run import separated_estimates

    rng = np.random.default_rng(5)
    mixture = (0.2 * rng.standard_normal(65535)).astype(np.float32)
    path = tmp_path / "mix.wav"
    sf.write(path, mixture, 16000, subtype="FLOAT")
    assert main(["separate", str(path), "--text", "dog barking", "--model", str(tiny_checkpoint),
                 "--bits", "float", "-o", str(tmp_path / "out")]) == 0
    written, rate = sf.read(tmp_path / "out" / "mix" / "dog-barking" / "target.wav", dtype="float32")
    assert rate == 16000 and written.shape == (65535,)

    separator = Separator(tiny_checkpoint)
    query = separator.embed_query(text="dog barking")[None]
    config = EvaluationConfig()
    scored = separated_estimates(separator.model, torch.from_numpy(mixture), query, config)
    assert scored.shape == (1, config.length)
    np.testing.assert_array_equal(scored[0].numpy(), written[: config.length])


def test_training_from_an_embedding_cache_alone(tmp_path):
    """encoder.from_cache: no encoder is loaded; the checkpoint records the cache's encoder and label bank."""
    from omnisep.data.cache import EmbeddingCache, build_cache
    from omnisep.data.manifest import read_manifest
    from omnisep.data.synthetic import make_corpus
    from omnisep.encoders import get_encoder
    from omnisep.states import check_encoder, load_checkpoint
    from omnisep.training import loop
    from omnisep.training.config import TrainConfig

    manifest = make_corpus(tmp_path / "corpus", train_per_class=2, val_per_class=1, test_per_class=0)
    encoder = get_encoder("toy")
    build_cache(read_manifest(manifest), encoder, tmp_path / "cache")
    config = TrainConfig.from_dict({
        "out_dir": str(tmp_path / "run"), "steps": 2, "log_every": 1, "val_every": 2, "checkpoint_every": 2,
        "device": "cpu", "model": {"kind": "film", "ngf": 2, "depth": 3, "k": 2, "film_hidden": 4},
        "encoder": {"name": "toy", "from_cache": True},
        "data": {"train_manifest": str(manifest), "cache": str(tmp_path / "cache"), "segment_samples": 2047,
                 "num_workers": 0, "pipeline": "resident"},
        "optim": {"batch_size": 2, "warmup_steps": 1},
    })
    original = loop.get_encoder
    loop.get_encoder = lambda *args, **kwargs: (_ for _ in ()).throw(AssertionError("the encoder was loaded"))
    try:
        assert loop.train(config, log=lambda message: None).step == 2
    finally:
        loop.get_encoder = original
    loaded = load_checkpoint(tmp_path / "run" / "last")
    check_encoder(loaded.config, encoder.identity())
    assert loaded.config["encoder"]["weights_hash"] == EmbeddingCache(tmp_path / "cache").encoder["weights_hash"]
    labels = sorted({item.label for item in read_manifest(manifest)})
    assert list(loaded.bank.labels) == labels
    torch.testing.assert_close(loaded.bank.embeddings, encoder.embed_text(labels), atol=1e-6, rtol=0)
