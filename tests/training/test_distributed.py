"""DDP on CPU (gloo): two processes with half the global batch each train exactly like one
process that accumulates the same two halves."""

import json
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from omnisep.training.config import TrainConfig
from omnisep.training.distributed import StepBatchSampler, chunk_positions
from omnisep.training.loop import train
from omnisep.data.synthetic import make_corpus


def test_chunks_cut_the_global_batch_in_contiguous_equal_parts():
    assert chunk_positions(8, 1, 1, 0) == [range(0, 8)]
    assert chunk_positions(8, 2, 1, 1) == [range(4, 8)]
    assert chunk_positions(8, 2, 2, 1) == [range(4, 6), range(6, 8)]
    # one process accumulating 4 chunks sees the same chunks as 4 processes
    assert chunk_positions(8, 1, 4, 0) == [r for rank in range(4) for r in chunk_positions(8, 4, 1, rank)]
    assert list(StepBatchSampler(3, 5, [range(0, 2)])) == [[(3, 0), (3, 1)], [(4, 0), (4, 1)]]
    with pytest.raises(Exception, match="multiple of processes x accumulate_steps"):
        chunk_positions(6, 2, 2, 0)


def _config(manifest, out_dir, accumulate_steps):
    return TrainConfig.from_dict({
        "out_dir": str(out_dir), "steps": 3, "log_every": 1, "val_every": 3, "checkpoint_every": 3, "device": "cpu",
        "model": {"ngf": 4, "depth": 3, "k": 4},
        "encoder": {"name": "toy", "options": {"dim": 16}},
        "data": {"train_manifest": str(manifest), "segment_samples": 2047, "num_workers": 0},
        "optim": {"batch_size": 4, "accumulate_steps": accumulate_steps, "warmup_steps": 1, "lr": 1e-2},
    })


def _worker(rank, world_size, port, manifest, out_dir):
    import os

    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    train(_config(manifest, out_dir, accumulate_steps=1), log=lambda m: None)


def _losses(out_dir):
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row], [row["val_mean"] for row in rows if "val_mean" in row]


def test_two_gloo_processes_match_one_process_with_accumulation(tmp_path):
    manifest = make_corpus(tmp_path / "corpus", train_per_class=2, val_per_class=1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_worker, args=(2, port, manifest, tmp_path / "ddp"), nprocs=2, join=True)
    train(_config(manifest, tmp_path / "single", accumulate_steps=2), log=lambda m: None)

    ddp_losses, ddp_val = _losses(tmp_path / "ddp")
    single_losses, single_val = _losses(tmp_path / "single")
    assert len(ddp_losses) == 3 and len(ddp_val) == 1
    torch.testing.assert_close(torch.tensor(ddp_losses), torch.tensor(single_losses), rtol=1e-5, atol=1e-6)
    ddp_weights = load_file(tmp_path / "ddp" / "last" / "model.safetensors")
    single_weights = load_file(tmp_path / "single" / "last" / "model.safetensors")
    # Gradients summed in another order differ by rounding; Adam turns a near-zero
    # gradient into a step of about lr, so weights agree to a small fraction of lr = 1e-2.
    for name, value in single_weights.items():
        if "running" not in name and "num_batches" not in name:  # DDP keeps rank 0's BatchNorm statistics
            torch.testing.assert_close(ddp_weights[name], value, rtol=0, atol=1e-4, msg=name)
