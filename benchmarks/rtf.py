"""Real-time factor of separation against input length (10 s .. 1 h) and against the number of queries.

RTF = processing seconds / audio seconds; "x real time" is its inverse.
Table 1 times one query on inputs of growing length through the streaming
engine (:func:`omnisep.apply.separate_stream`, what ``omnisep separate``
runs, residuals included) and, up to ``--in-memory-up-to``, through the
in-memory :func:`omnisep.apply.separate_tensor`. Table 2 times 1 .. 64
queries on 60 s (one U-Net pass per chunk serves them all) and reports
what each extra query adds, as a share of the one-query time.

The model is the default model's size (U-Net ngf 16, depth 7, k 32,
384-d queries) with random weights, which cost the same as trained ones;
``--checkpoint`` times a real checkpoint instead. Either is prepared by
:class:`omnisep.api.Separator` as for users (on CPU: channels-last
tensors; ``--contiguous`` times the plain NCHW layout for comparison). Audio is generated (noise
plus a tone) at 16 kHz unless ``--rate`` asks for resampling too, so disk
and decoding are not part of the numbers. Each row records the 1-minute load
average: on a shared machine compare rows only at similar load. The "cpu"
columns are this process's CPU seconds; with ``--threads 2`` on an idle
2-core machine wall time approaches cpu / 2.

    python benchmarks/rtf.py                                  # both tables (1 h input: minutes)
    python benchmarks/rtf.py --lengths 10 60 600 --queries 1 4 16
    python benchmarks/rtf.py --skip-queries --lengths 3600 --json rtf.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from omnisep.apply import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS, separate_stream, separate_tensor
from omnisep.heap import keep_freed_memory
from omnisep.spectral import SAMPLE_RATE

BLOCK_SECONDS = 4.096  # the reader's default block at 16 kHz (65,536 samples)


class DiscardingWriter:
    """Stands in for an AudioWriter: counts samples, so only separation is timed."""

    def __init__(self):
        self.samples = 0

    def write(self, block: np.ndarray) -> None:
        self.samples += block.shape[-1]


def load_average() -> float:
    return round(os.getloadavg()[0], 1)


def build_model(args):
    """The model as :class:`omnisep.api.Separator` prepares it for ``--device`` (memory format included)."""
    from omnisep.api import Separator

    if args.checkpoint:
        separator = Separator(args.checkpoint, device=args.device)
    else:
        import tempfile

        from omnisep.encoders.toy import ToyEncoder
        from omnisep.models import SeparateNet, SeparateNetConfig
        from omnisep.states import save_checkpoint

        encoder = ToyEncoder(dim=args.emb_dim)  # only the embedding size matters here
        torch.manual_seed(0)
        model = SeparateNet(SeparateNetConfig(ngf=args.ngf, depth=args.depth, k=args.k, emb_dim=args.emb_dim))
        with tempfile.TemporaryDirectory(prefix="omnisep-rtf-") as folder:
            path = save_checkpoint(Path(folder) / "stand-in", model, encoder.identity(), bank=None)
            separator = Separator(path, encoder=encoder, device=args.device)
    if args.contiguous:
        separator.model.to(memory_format=torch.contiguous_format)
    # As users get it: a model that records a query contrast asks its background query too.
    args.contrast = (separator.background, separator.contrast) if separator.contrast > 0 else None
    # The second look (signal_path.look_again) runs only where an output is quiet: "model" times what users
    # get on this input, "always" the worst case (every output looked at twice), "off" one pass.
    args.gate = {"model": separator.second_look, "always": 0.0, "off": None}[args.second_look]
    return separator.model


def random_queries(model, count: int, args):
    """Random queries, with the checkpoint's query contrast and second look when it records them (what `separate` runs)."""
    from omnisep.queries import QueryRows, contrast_terms

    generator = torch.Generator().manual_seed(count)
    vectors = torch.nn.functional.normalize(torch.randn(count, model.config.emb_dim, generator=generator), dim=-1)
    if args.contrast is None and args.gate is None:
        return vectors
    contrast = args.contrast or (None, 0.0)
    return QueryRows.from_terms([contrast_terms([(vector, 1.0)], *contrast) for vector in vectors], args.gate)


def generated_blocks(seconds: float, rate: int, channels: int):
    """Noise plus a 440 Hz tone, block by block, so a 1-hour input never sits in memory."""
    rng = np.random.default_rng(0)
    total, block = round(seconds * rate), round(BLOCK_SECONDS * rate)
    for start in range(0, total, block):
        n = min(block, total - start)
        tone = 0.2 * np.sin(2 * np.pi * 440 * (start + np.arange(n)) / rate)
        yield (0.05 * rng.standard_normal((channels, n)) + tone).astype(np.float32)


def timed(function) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def time_streaming(model, queries, seconds: float, args) -> tuple[float, float]:
    targets = [DiscardingWriter() for _ in range(len(queries))]
    residuals = [DiscardingWriter() for _ in range(len(queries))]

    def run():
        blocks = generated_blocks(seconds, args.rate, args.channels)
        separate_stream(model, blocks, args.rate, args.channels, queries, targets, residuals,
                        args.chunk_seconds, args.overlap)

    result = timed(run)
    expected = round(seconds * args.rate)
    if any(writer.samples != expected for writer in targets + residuals):
        raise RuntimeError(f"the streaming path wrote {targets[0].samples} samples, expected {expected}")
    return result


def time_in_memory(model, queries, wave: torch.Tensor, args) -> tuple[float, float]:
    return timed(lambda: separate_tensor(model, wave, queries, args.chunk_seconds, args.overlap))


def best_of(repeats: int, function) -> tuple[float, float]:
    runs = [function() for _ in range(repeats)]
    return min(runs, key=lambda run: run[0])


def generated_wave(seconds: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    samples = round(seconds * SAMPLE_RATE)
    tone = 0.2 * torch.sin(2 * torch.pi * 440 * torch.arange(samples) / SAMPLE_RATE)
    return 0.05 * torch.randn(samples, generator=generator) + tone


def label(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def length_table(model, args, rows: list) -> None:
    queries = random_queries(model, 1, args)
    print(f"\n## One query vs input length ({args.channels} channel(s) at {args.rate} Hz)\n")
    print("| input | path | wall (s) | cpu (s) | RTF | x real time | load avg |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for seconds in args.lengths:
        if seconds <= 60:  # untimed: the first run at a new input width also creates oneDNN primitives
            time_in_memory(model, queries, generated_wave(seconds), args)
        paths = ["streaming"]
        if seconds <= args.in_memory_up_to and args.rate == SAMPLE_RATE and args.channels == 1:
            paths.append("in-memory")
        for path in paths:
            load = load_average()
            if path == "streaming":
                repeats = args.repeats if seconds <= 60 else 1
                wall, cpu = best_of(repeats, lambda: time_streaming(model, queries, seconds, args))
            else:
                wave = generated_wave(seconds)
                wall, cpu = best_of(args.repeats, lambda: time_in_memory(model, queries, wave, args))
            row = {"table": "length", "seconds": seconds, "path": path, "wall_s": round(wall, 3),
                   "cpu_s": round(cpu, 3), "rtf": round(wall / seconds, 4), "load_avg": load}
            rows.append(row)
            print(f"| {label(seconds)} | {path} | {wall:.2f} | {cpu:.2f} | {row['rtf']:.4f} | "
                  f"{seconds / wall:.1f} | {load} |", flush=True)


def extra_query_share(counts: list[int], seconds: list[float]) -> float:
    """Least-squares line ``t = a + b Q`` through all rows: each extra query costs ``b / (a + b)`` of one query.

    A line through every row is steadier on a busy machine than the
    difference of two noisy rows.
    """
    slope, intercept = np.polyfit(np.asarray(counts, float), np.asarray(seconds, float), 1)
    return slope / (intercept + slope)


def query_table(model, args, rows: list) -> None:
    seconds = args.query_seconds
    wave = generated_wave(seconds)
    print(f"\n## Queries on {label(seconds)} (in-memory path, 16 kHz mono)\n")
    print("| queries | wall (s) | cpu (s) | RTF | x real time | load avg |")
    print("|---:|---:|---:|---:|---:|---:|")
    time_in_memory(model, random_queries(model, args.queries[0], args), wave, args)  # untimed, as in the length table
    walls, cpus = [], []
    for count in args.queries:
        load = load_average()
        queries = random_queries(model, count, args)
        wall, cpu = best_of(args.repeats, lambda: time_in_memory(model, queries, wave, args))
        walls.append(wall)
        cpus.append(cpu)
        rows.append({"table": "queries", "queries": count, "seconds": seconds, "wall_s": round(wall, 3),
                     "cpu_s": round(cpu, 3), "rtf": round(wall / seconds, 4), "load_avg": load})
        print(f"| {count} | {wall:.2f} | {cpu:.2f} | {wall / seconds:.4f} | {seconds / wall:.1f} | {load} |", flush=True)
    if len(set(args.queries)) > 1:
        share_wall = extra_query_share(args.queries, walls)
        share_cpu = extra_query_share(args.queries, cpus)
        rows.append({"table": "queries-fit", "extra_query_share_wall": round(share_wall, 4),
                     "extra_query_share_cpu": round(share_cpu, 4)})
        print(f"\nEach extra query adds {100 * share_wall:.1f} % of the one-query time (wall; "
              f"{100 * share_cpu:.1f} % in CPU seconds), from a line fitted through all rows.")


def describe_network(config) -> str:
    members = getattr(config, "members", None)
    if members:  # an ensemble: every member runs
        return "ensemble of " + " + ".join(describe_network(member) for member in members)
    return f"ngf {config.ngf}, depth {config.depth}, k {config.k}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=float, nargs="+", default=[10, 60, 600, 3600], help="input seconds (table 1)")
    parser.add_argument("--in-memory-up-to", type=float, default=60, help="longest input also timed in memory")
    parser.add_argument("--queries", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64], help="query counts (table 2)")
    parser.add_argument("--query-seconds", type=float, default=60, help="input length of table 2")
    parser.add_argument("--skip-lengths", action="store_true")
    parser.add_argument("--skip-queries", action="store_true")
    parser.add_argument("--rate", type=int, default=SAMPLE_RATE, help="input rate of table 1 (not 16000: resampling too)")
    parser.add_argument("--channels", type=int, default=1, help="input channels of table 1")
    parser.add_argument("--checkpoint", help="time this checkpoint instead of a random-init model")
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--depth", type=int, default=7)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--emb-dim", type=int, default=384)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--contiguous", action="store_true",
                        help="run the U-Net on NCHW tensors instead of the channels-last ones Separator uses on CPU")
    parser.add_argument("--second-look", choices=["model", "always", "off"], default="model",
                        help="the model's second look as users get it, on every output (worst case), or none")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many (inputs over 60 s: one run)")
    parser.add_argument("--chunk-seconds", type=float, default=DEFAULT_CHUNK_SECONDS)
    parser.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP_SECONDS)
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's default heap thresholds (the CLI raises them: omnisep.heap)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    heap = "glibc defaults" if args.default_malloc else f"kept (omnisep.heap: {keep_freed_memory()})"
    torch.set_num_threads(args.threads)
    model = build_model(args)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{args.threads} threads; model {describe_network(model.config)}, "
          f"emb {model.config.emb_dim}{' (' + args.checkpoint + ')' if args.checkpoint else ' (random init)'}"
          f"{', NCHW' if args.contiguous else ''}; "
          f"chunk {args.chunk_seconds:g} s, overlap {args.overlap:g} s; freed heap {heap}; "
          f"second look {args.second_look} ({'none' if args.gate is None else f'under {args.gate:g} dB'})")
    time_in_memory(model, random_queries(model, 1, args), generated_wave(5.0), args)  # warm-up: kernels, caches
    rows: list = []
    if not args.skip_lengths:
        length_table(model, args, rows)
    if not args.skip_queries:
        query_table(model, args, rows)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
