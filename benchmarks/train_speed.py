"""Training throughput (samples per second) of the real training loop for U-Nets of ngf 16, 32 and 64.

Each setting runs :func:`omnisep.training.train` for a few steps on a
generated four-class corpus (``omnisep.data.synthetic``) with the toy
encoder, at the paper's item length (65,535 samples, 256 STFT frames) and
depth 7, k 32. A step is everything the loop does: drawing the batch
(data loading in the main process unless ``--workers``), STFT targets,
forward, weighted BCE, backward, gradient clipping and Adam. The loop logs
every step's samples/s; the first ``--warmup-steps`` are dropped (kernel
selection, caches) and the median of the rest is reported. The query
encoder only changes the size of one Linear layer, so toy stands in for the
bundled one. On a CUDA machine the same is timed on the GPU (fp32 and bf16).

    python benchmarks/train_speed.py                          # CPU: ngf 16, 32, 64, batch 8
    python benchmarks/train_speed.py --ngf 16 --batch-size 4 --steps 4
    python benchmarks/train_speed.py --devices cuda --cuda-batch-size 128
    python benchmarks/train_speed.py --ngf 16 --kinds paper film --pipelines files resident
    python benchmarks/train_speed.py --ngf 16 --kinds film --pipelines resident --cpu-precisions fp32 bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from omnisep.spectral import SEGMENT
from omnisep.states import load_checkpoint
from omnisep.training import TrainConfig, train
from omnisep.data.synthetic import make_corpus

NEVER = 10**9  # validation and checkpoints only at the end, outside the timed steps


def load_average() -> float:
    return round(os.getloadavg()[0], 1)


def measure(manifest: Path, out_dir: Path, ngf: int, device: str, precision: str, batch_size: int, args,
            kind: str = "paper", pipeline: str = "files") -> dict:
    config = TrainConfig.from_dict({
        "out_dir": str(out_dir),
        "seed": 0,
        "steps": args.warmup_steps + args.steps,
        "log_every": 1,
        "val_every": NEVER,
        "checkpoint_every": NEVER,
        "device": device,
        "precision": precision,
        "model": {"kind": kind, "ngf": ngf, "depth": 7, "k": 32},
        "encoder": {"name": "toy"},
        "data": {"train_manifest": str(manifest), "segment_samples": SEGMENT, "num_workers": args.workers,
                 "pipeline": pipeline},
        "optim": {"batch_size": batch_size, "warmup_steps": 1, "decay_steps": 1},
        "queries": {"modalities": ["text", "audio"]},
    }, source="benchmarks/train_speed.py")
    load = load_average()
    train(config, resume=False, log=lambda message: None)
    with open(out_dir / "metrics.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    rates = [row["samples_per_s"] for row in rows if "samples_per_s" in row][args.warmup_steps:]
    parameters = sum(p.numel() for p in load_checkpoint(out_dir / "last").model.parameters())
    return {"kind": kind, "pipeline": pipeline, "ngf": ngf, "device": device, "precision": precision, "batch_size": batch_size,
            "samples_per_s": statistics.median(rates), "step_s": batch_size / statistics.median(rates),
            "steps_timed": len(rates), "load_avg": load, "parameters": parameters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ngf", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--kinds", nargs="+", default=["paper"], help="network kinds (paper, film)")
    parser.add_argument("--pipelines", nargs="+", default=["files"],
                        help="files: examples decoded and mixed per item; resident: clips in memory, mixtures drawn on the device")
    parser.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    parser.add_argument("--batch-size", type=int, default=8, help="CPU batch (the paper's 128 takes minutes per step)")
    parser.add_argument("--cuda-batch-size", type=int, default=128, help="GPU batch (the paper's)")
    parser.add_argument("--cuda-precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--cpu-precisions", nargs="+", default=["fp32"],
                        help="fp32 and/or bf16 (autocast; fast on CPUs with AVX-512 BF16 or AMX)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per setting")
    parser.add_argument("--warmup-steps", type=int, default=1, help="untimed first steps")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes (0: in the training process)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", help="where the corpus and runs go (default: a temp folder)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's default heap thresholds (`omnisep train` raises them: omnisep.heap)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    from omnisep.heap import keep_freed_memory

    heap = "glibc defaults" if args.default_malloc else f"kept ({keep_freed_memory()})"
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="omnisep-train-speed-"))
    manifest = make_corpus(workdir / "corpus", train_per_class=4, val_per_class=0)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{args.threads} threads; depth 7, k 32, items of {SEGMENT} samples; median of {args.steps} steps after "
          f"{args.warmup_steps} warm-up step(s); {args.workers} data workers; freed heap {heap}")
    print("| device | precision | kind | pipeline | ngf | parameters | batch | samples/s | s/step | load avg |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for device in args.devices:
        settings = [(p, args.batch_size) for p in args.cpu_precisions] if device == "cpu" else [(p, args.cuda_batch_size) for p in args.cuda_precisions]
        for precision, batch_size in settings:
            for ngf in args.ngf:
                for kind in args.kinds:
                    for pipeline in args.pipelines:
                        out_dir = workdir / f"run-{device}-{precision}-ngf{ngf}-{kind}-{pipeline}"
                        row = measure(manifest, out_dir, ngf, device, precision, batch_size, args, kind, pipeline)
                        rows.append(row)
                        print(f"| {device} | {precision} | {kind} | {pipeline} | {ngf} | {row['parameters'] / 1e6:.1f} M | "
                              f"{batch_size} | {row['samples_per_s']:.2f} | {row['step_s']:.2f} | {row['load_avg']} |", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
