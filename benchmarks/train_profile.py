"""Where a training step's time goes: the real loop under torch.profiler, by phase and by operator.

The loop marks its phases (``step/data``, ``step/targets`` (STFT, warp, masks
to learn), ``step/forward``, ``step/loss``, ``step/backward``,
``step/optimizer``) with ``torch.profiler.record_function``; this script runs
``omnisep.training.train`` on a generated corpus, first ``--warmup-steps``
unprofiled (kernel selection, caches), then resumes for ``--steps`` profiled
ones, and prints milliseconds per step for each phase and the operators that
take the most time. Compare settings within one run (shared machines drift).

    python benchmarks/train_profile.py --kind film --pipeline resident
    python benchmarks/train_profile.py --kind film --precision bf16
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from omnisep.data.synthetic import make_corpus
from omnisep.spectral import SEGMENT
from omnisep.training import TrainConfig, train

PHASES = ("step/data", "step/targets", "step/forward", "step/loss", "step/backward", "step/optimizer")


def config(out_dir: Path, manifest: Path, steps: int, args) -> TrainConfig:
    return TrainConfig.from_dict({
        "out_dir": str(out_dir), "seed": 0, "steps": steps, "log_every": 1,
        "val_every": 10**9, "checkpoint_every": 10**9, "precision": args.precision,
        "model": {"kind": args.kind, "ngf": args.ngf, "depth": 7, "k": 32},
        "encoder": {"name": "toy"},
        "data": {"train_manifest": str(manifest), "segment_samples": SEGMENT, "num_workers": 0, "pipeline": args.pipeline},
        "optim": {"batch_size": args.batch_size, "warmup_steps": 1, "decay_steps": 1},
        "queries": {"modalities": ["text", "audio"]},
    }, source="benchmarks/train_profile.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="film")
    parser.add_argument("--pipeline", default="resident", choices=["files", "resident"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="profiled steps")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=12, help="operators to list")
    args = parser.parse_args()

    from omnisep.heap import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="omnisep-train-profile-"))
    manifest = make_corpus(workdir / "corpus", train_per_class=4, val_per_class=0)
    out_dir = workdir / "run"
    quiet = lambda message: None  # noqa: E731
    train(config(out_dir, manifest, args.warmup_steps, args), log=quiet)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(config(out_dir, manifest, args.warmup_steps + args.steps, args), log=quiet)  # resumes: profiled steps only
    events = prof.key_averages()
    phases = {event.key: event.cpu_time_total / 1e3 / args.steps for event in events if event.key in PHASES}
    step_ms = sum(phases.values())
    print(f"# {args.kind} network, {args.pipeline} pipeline, {args.precision}, ngf {args.ngf}, batch {args.batch_size}, "
          f"{args.threads} threads, load average {os.getloadavg()[0]:.1f}; {args.steps} profiled steps")
    print("| phase | ms/step | share |")
    print("|---|---:|---:|")
    for phase in PHASES:
        if phase in phases:
            print(f"| {phase.split('/')[1]} | {phases[phase]:.0f} | {phases[phase] / step_ms:.0%} |")
    print(f"| **step** | **{step_ms:.0f}** | {args.batch_size / step_ms * 1e3:.1f} samples/s |")
    print()
    print("| operator | self ms/step | calls/step |")
    print("|---|---:|---:|")
    ops = sorted((e for e in events if not e.key.startswith(("step/", "ProfilerStep"))), key=lambda e: e.self_cpu_time_total, reverse=True)
    for event in ops[: args.top]:
        print(f"| `{event.key}` | {event.self_cpu_time_total / 1e3 / args.steps:.1f} | {event.count / args.steps:.0f} |")


if __name__ == "__main__":
    main()
