"""Peak memory (RSS) of file separation against input length: streaming vs. loading the whole file.

Each measurement runs in a fresh process, so its peak RSS is its own. The
streaming path is ``Separator.separate_file`` (what ``omnisep separate``
uses); the in-memory path is ``load_audio`` + ``Separator.separate_many``.
A random-init model with the toy encoder stands in for a trained one (the
weights do not change the memory); inputs are generated 44.1 kHz files, so
resampling to 16 kHz and back is part of the work.

    python benchmarks/streaming_memory.py                       # 10 s, 1 min, 10 min, 1 h
    python benchmarks/streaming_memory.py --lengths 10 60 --in-memory-up-to 60
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RATE = 44100


def make_checkpoint(directory: Path, ngf: int) -> Path:
    import torch

    from omnisep.encoders import get_encoder
    from omnisep.models import SeparateNet, SeparateNetConfig
    from omnisep.states import save_checkpoint

    encoder = get_encoder("toy")
    torch.manual_seed(0)
    model = SeparateNet(SeparateNetConfig(ngf=ngf, emb_dim=encoder.dim))
    return save_checkpoint(directory / f"ngf{ngf}", model, encoder.identity())


def make_input(path: Path, seconds: float, channels: int) -> Path:
    """Noise plus a slow tone, written block by block (the generator itself stays small)."""
    from omnisep.audio import AudioWriter

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    block = RATE * 10
    with AudioWriter(path, RATE, channels, subtype="PCM_16") as writer:
        for start in range(0, int(seconds * RATE), block):
            n = min(block, int(seconds * RATE) - start)
            t = (start + np.arange(n)) / RATE
            tone = 0.2 * np.sin(2 * np.pi * 440 * t)
            writer.write((0.05 * rng.standard_normal((channels, n)) + tone).astype(np.float32))
    return path


def child(mode: str, input_path: str, checkpoint: str, chunk_seconds: float, threads: int, default_malloc: bool) -> None:
    import torch

    from omnisep.heap import keep_freed_memory

    if not default_malloc:
        keep_freed_memory()  # as `omnisep separate` does

    torch.set_num_threads(threads)
    from omnisep.api import Query, Separator
    from omnisep.audio import load_audio, save_audio

    separator = Separator(checkpoint)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = Path(tempfile.mkdtemp(prefix="omnisep-bench-"))
    start = time.perf_counter()
    query = [Query(text="tone")]
    if mode == "streaming":
        separator.separate_file(input_path, query, [out / "t.wav"], [out / "r.wav"], chunk_seconds=chunk_seconds)
    else:
        audio, rate = load_audio(input_path)
        (result,) = separator.separate_many(audio, rate, query, chunk_seconds=chunk_seconds)
        save_audio(out / "t.wav", result.target, rate)
        save_audio(out / "r.wav", result.residual, rate)
    elapsed = time.perf_counter() - start
    for name in ("t.wav", "r.wav"):
        (out / name).unlink()
    out.rmdir()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"baseline_mb": round(baseline, 1), "peak_mb": round(peak, 1), "seconds": round(elapsed, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=float, nargs="+", default=[10, 60, 600, 3600], help="input seconds")
    parser.add_argument("--in-memory-up-to", type=float, default=600, help="longest input for the in-memory path")
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--chunk-seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default=None, help="where inputs are generated (default: a temp folder)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's default heap thresholds (the CLI raises them: omnisep.heap)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "INPUT"), help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.checkpoint, args.chunk_seconds, args.threads, args.default_malloc)
        return

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="omnisep-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = make_checkpoint(workdir, args.ngf)
    print(f"# ngf {args.ngf}, {args.channels} channel(s) at {RATE} Hz, chunk {args.chunk_seconds:g} s, "
          f"{args.threads} threads, freed heap {'glibc defaults' if args.default_malloc else 'kept (omnisep.heap)'}; "
          "peak RSS of a fresh process (after loading: baseline)")
    print("| input | path | baseline (MB) | peak RSS (MB) | wall (s) | RTF |")
    print("|---:|---|---:|---:|---:|---:|")
    for seconds in args.lengths:
        path = make_input(workdir / f"input_{int(seconds)}s.wav", seconds, args.channels)
        modes = ["streaming"] + (["in-memory"] if seconds <= args.in_memory_up_to else [])
        for mode in modes:
            command = [sys.executable, __file__, "--child", mode, str(path), "--checkpoint", str(checkpoint),
                       "--chunk-seconds", str(args.chunk_seconds), "--threads", str(args.threads)]
            command += ["--default-malloc"] if args.default_malloc else []
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            label = f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
            print(f"| {label} | {mode} | {result['baseline_mb']:.0f} | {result['peak_mb']:.0f} | "
                  f"{result['seconds']:.1f} | {result['seconds'] / seconds:.3f} |", flush=True)


if __name__ == "__main__":
    main()
