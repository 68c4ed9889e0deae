"""bf16 autocast trains on the CPU too (the convolutions' fast path on CPUs with BF16); fp16 stays CUDA-only."""

import json
import math

import pytest

from omnisep.errors import OmniSepError
from omnisep.training.config import load_config
from omnisep.training.loop import train
from omnisep.data.synthetic import make_corpus

TINY = """
steps = 3
log_every = 1
val_every = 100
checkpoint_every = 100
seed = 7
[model]
kind = "{kind}"
ngf = 4
depth = 3
k = 4
[encoder]
name = "toy"
options = {{dim = 16}}
[data]
train_manifest = "{manifest}"
segment_samples = 2047
num_workers = 0
[optim]
batch_size = 4
warmup_steps = 1
decay_steps = 3
lr = 1e-3
"""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("precision") / "corpus", train_per_class=2, val_per_class=1)


def losses(out_dir):
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


@pytest.mark.parametrize("kind", ["paper", "film"])
def test_bf16_on_the_cpu_trains_the_same_batches_to_nearly_the_same_loss(manifest, tmp_path, kind):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(manifest=manifest, kind=kind))
    train(load_config(path, [f'out_dir="{tmp_path / "fp32"}"']), log=lambda m: None)
    train(load_config(path, [f'out_dir="{tmp_path / "bf16"}"', 'precision="bf16"']), log=lambda m: None)
    full, half = losses(tmp_path / "fp32"), losses(tmp_path / "bf16")
    assert len(full) == len(half) == 3 and all(math.isfinite(value) for value in half)
    # the first step sees the same weights and batch: only bf16 rounding separates the two losses
    assert half[0] == pytest.approx(full[0], rel=0.02)
    assert half[0] != full[0]  # autocast did run in bf16


def test_fp16_on_the_cpu_is_refused_with_the_way_out(manifest, tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(manifest=manifest, kind="paper"))
    with pytest.raises(OmniSepError, match="fp16' needs a CUDA device.*bf16 works on a CPU"):
        train(load_config(path, [f'out_dir="{tmp_path / "fp16"}"', 'precision="fp16"']), log=lambda m: None)
