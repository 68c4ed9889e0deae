"""Peak memory (RSS) and speed of `omnisep scan` against input length: an hour should cost what a minute does.

Each length runs `scan_file` (what `omnisep scan` uses) in a fresh process, so
its peak RSS is its own; the model is the bundled default (its 40-label bank
is what makes a scan cost more than one separation). Inputs are generated
44.1 kHz files (noise plus a tone, as in streaming_memory.py), so decoding
and resampling are part of the work.

The scan is verified as the model records (its query encoder listens to the
top labels' separated audio, omnisep.scan.Verification); ``--compare-verify``
also runs each length without it, in the same session, for the ratio.

    python benchmarks/scan_memory.py                      # 1 min, 10 min, 1 h
    python benchmarks/scan_memory.py --lengths 60 600
    python benchmarks/scan_memory.py --lengths 60 --compare-verify
    python benchmarks/scan_memory.py --lengths 60 --query-groups 16 4   # queries decoded at a time
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streaming_memory import RATE, make_input  # noqa: E402


def child(input_path: str, model: str, threads: int, verify: bool, query_group: int | None) -> None:
    import torch

    from omnisep.models import signal_path

    if query_group:
        signal_path.QUERY_GROUP = query_group

    from omnisep.heap import keep_freed_memory

    keep_freed_memory()  # as the CLI does
    torch.set_num_threads(threads)
    from omnisep.pretrained import resolve_model
    from omnisep.scan import scan_file, verification_for
    from omnisep.segments import find_segments
    from omnisep.states import load_checkpoint

    path = resolve_model(model)
    checkpoint = load_checkpoint(path)
    verification = verification_for(checkpoint, path) if verify else None
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    blocks, trace = [], []

    def progress(n):
        blocks.append(n)
        if sum(blocks) >= (len(trace) + 1) * 60 * RATE:  # peak RSS after each minute of input
            trace.append(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))

    result = scan_file(checkpoint, input_path, on_input=progress, verify=verification or False)
    segments = find_segments(result)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"baseline_mb": round(baseline, 1), "peak_mb": round(peak, 1), "seconds": round(elapsed, 1),
                      "frames": int(result.energy_ratio.shape[1]), "segments": len(segments), "progress_calls": len(blocks), "peak_mb_per_minute": trace,
                      "verified": verification is not None, "query_group": signal_path.QUERY_GROUP}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=float, nargs="+", default=[60, 600, 3600], help="input seconds")
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default=None, help="where inputs are generated (default: a temp folder)")
    parser.add_argument("--compare-verify", action="store_true", help="also scan each length without verification")
    parser.add_argument("--query-groups", type=int, nargs="+", default=[0],
                        help="signal_path.QUERY_GROUP values to compare (0: the shipped value)")
    parser.add_argument("--child", metavar="INPUT", help=argparse.SUPPRESS)
    parser.add_argument("--query-group", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--no-verify", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.threads, not args.no_verify, args.query_group)
        return
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="omnisep-scan-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"# model {args.model}, mono {RATE} Hz input, {args.threads} threads, load average {load}; "
          "peak RSS of a fresh process (baseline: after loading the model)")
    print("| input | verified | queries at a time | baseline (MB) | peak RSS (MB) | wall (s) | RTF | frames | progress updates |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    traces = []
    for seconds in args.lengths:
        path = make_input(workdir / f"input_{int(seconds)}s.wav", seconds, 1)
        for plain, group in itertools.product((False, True) if args.compare_verify else (False,), args.query_groups):
            command = [sys.executable, __file__, "--child", str(path), "--model", args.model, "--threads", str(args.threads),
                       "--query-group", str(group)]
            command += ["--no-verify"] if plain else []
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            label = f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
            print(f"| {label} | {'yes' if result['verified'] else 'no'} | {result['query_group']} | {result['baseline_mb']:.0f} | {result['peak_mb']:.0f} "
                  f"| {result['seconds']:.1f} | {result['seconds'] / seconds:.3f} | {result['frames']} | {result['progress_calls']} |",
                  flush=True)
            traces.append((f"{label}{'' if result['verified'] else ' (plain)'}, {result['query_group']} queries at a time",
                           result["peak_mb_per_minute"]))
    for label, trace in traces:
        print(f"peak RSS (MB) after each minute of the {label} input: {trace}")


if __name__ == "__main__":
    main()
