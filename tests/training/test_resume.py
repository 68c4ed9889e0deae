"""A run stopped and resumed in a new process ends with exactly the weights of an uninterrupted run."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from omnisep.training.config import load_config
from omnisep.training.loop import train
from omnisep.data.synthetic import make_corpus

TINY = """
steps = 6
log_every = 1
val_every = 3
checkpoint_every = 3
seed = 5
[model]
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
val_batch_size = 8
[optim]
batch_size = 4
warmup_steps = 2
decay_steps = 5
lr = 1e-2
"""


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    manifest = make_corpus(folder / "corpus", train_per_class=2, val_per_class=1)
    path = folder / "tiny.toml"
    path.write_text(TINY.format(manifest=manifest))
    return path


def metric_losses(out_dir):
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows if "loss" in row}


def test_resumed_run_reaches_the_same_weights(config_file, tmp_path):
    straight = train(load_config(config_file, [f'out_dir="{tmp_path / "straight"}"']), log=lambda m: None)
    assert straight.step == 6

    stopped = tmp_path / "stopped"
    subprocess.run(
        [sys.executable, "-m", "omnisep", "train", str(config_file), "--set", f'out_dir="{stopped}"', "--set", "steps=3"],
        check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},  # as in-process
    )
    assert json.loads((stopped / "last" / "config.json").read_text())["training"]["step"] == 3
    # a killed run may have logged steps after its last resume state: they must not survive
    with open(stopped / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"step": 4, "loss": 123.0}) + "\n")

    resumed = train(load_config(config_file, [f'out_dir="{stopped}"']), log=lambda m: None)  # fresh objects
    assert resumed.step == 6

    weights_a = load_file(tmp_path / "straight" / "last" / "model.safetensors")
    weights_b = load_file(stopped / "last" / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    assert metric_losses(stopped) == metric_losses(tmp_path / "straight")
    assert sorted(metric_losses(stopped)) == [1, 2, 3, 4, 5, 6]
    assert resumed.best_metric == straight.best_metric


def test_finished_run_is_not_trained_further_and_no_resume_restarts(config_file, tmp_path):
    out = tmp_path / "run"
    config = load_config(config_file, [f'out_dir="{out}"', "steps=2", "checkpoint_every=1", "val_every=10"])
    first = train(config, log=lambda m: None)
    messages = []
    again = train(config, log=messages.append)
    assert again.step == 2 and any("nothing to do" in m for m in messages)
    restarted = train(config, resume=False, log=lambda m: None)
    assert restarted.step == 2 and restarted.train_loss == first.train_loss  # same seed, same run
    for name in ("best", "last"):
        assert (out / name / "model.safetensors").is_file()


def test_loader_workers_draw_the_same_batches(config_file, tmp_path):
    common = ["steps=2", "val_every=10", "checkpoint_every=10"]
    inline = train(load_config(config_file, [f'out_dir="{tmp_path / "a"}"', *common]), log=lambda m: None)
    workers = train(load_config(config_file, [f'out_dir="{tmp_path / "b"}"', "data.num_workers=2", *common]),
                    log=lambda m: None)
    assert metric_losses(tmp_path / "a") == metric_losses(tmp_path / "b")
    assert workers.train_loss == inline.train_loss


def test_weight_average_resumes_and_is_what_the_checkpoints_hold(config_file, tmp_path):
    """With optim.ema_decay the checkpoints hold the average, and a resumed run continues the same average."""
    ema = ["optim.ema_decay=0.5"]
    plain = train(load_config(config_file, [f'out_dir="{tmp_path / "plain"}"']), log=lambda m: None)
    straight = train(load_config(config_file, [f'out_dir="{tmp_path / "straight"}"', *ema]), log=lambda m: None)
    stopped = tmp_path / "stopped"
    train(load_config(config_file, [f'out_dir="{stopped}"', "steps=3", *ema]), log=lambda m: None)
    resumed = train(load_config(config_file, [f'out_dir="{stopped}"', *ema]), log=lambda m: None)
    assert resumed.step == straight.step == plain.step == 6

    averaged = load_file(tmp_path / "straight" / "last" / "model.safetensors")
    raw = load_file(tmp_path / "plain" / "last" / "model.safetensors")
    for name, value in load_file(stopped / "last" / "model.safetensors").items():
        assert torch.equal(value, averaged[name]), name
    # the same optimisation (an average never feeds back), but the checkpoint is its average, not its last point
    # the resume state carries the average beside the weights: more tensors than a plain run's
    with_average = load_file(tmp_path / "straight" / "resume" / "state.safetensors")
    assert len(with_average) > len(load_file(tmp_path / "plain" / "resume" / "state.safetensors"))
    weights = [name for name in raw if raw[name].is_floating_point() and raw[name].dim() > 1]
    assert weights and any(not torch.allclose(raw[name], averaged[name]) for name in weights)
    assert straight.best_metric != plain.best_metric  # validated on the average


def test_weight_average_of_a_warm_start_starts_at_the_warm_weights(config_file, tmp_path):
    """A warm-started average begins at the loaded weights: with decay near 1 it barely moves from them."""
    first = train(load_config(config_file, [f'out_dir="{tmp_path / "first"}"']), log=lambda m: None)
    assert first.step == 6
    start = load_file(tmp_path / "first" / "last" / "model.safetensors")
    train(load_config(config_file, [f'out_dir="{tmp_path / "ema"}"', f'init_from="{tmp_path / "first" / "last"}"',
                                    "optim.ema_decay=0.999999", "optim.lr=0.5"]), log=lambda m: None)
    raw = train(load_config(config_file, [f'out_dir="{tmp_path / "raw"}"', f'init_from="{tmp_path / "first" / "last"}"',
                                          "optim.lr=0.5"]), log=lambda m: None)
    assert raw.step == 6
    averaged = load_file(tmp_path / "ema" / "last" / "model.safetensors")
    moved = load_file(tmp_path / "raw" / "last" / "model.safetensors")
    weights = [name for name in start if start[name].is_floating_point() and start[name].dim() > 1]
    distance = lambda a: sum(float((a[n].float() - start[n].float()).abs().sum()) for n in weights)  # noqa: E731
    assert distance(moved) > 0
    assert distance(averaged) < 1e-3 * distance(moved)
