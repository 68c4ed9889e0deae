"""Real-time factor of whole-file separation: random-init Separate-Nets, 60 s of 16 kHz audio.

RTF = processing seconds / audio seconds (below 1 is faster than real time).
Measures :func:`omnisep.apply.separate_tensor` (STFT, U-Net per chunk with
its context, masks for every query, iSTFT, cross-fades); weights do not
change the cost, so random init stands in for a trained model.

    python benchmarks/separate_speed.py                 # ngf 16/32/64, 1 and 10 queries
    python benchmarks/separate_speed.py --ngf 16 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from omnisep.apply import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS, separate_tensor
from omnisep.models import SeparateNet, SeparateNetConfig
from omnisep.spectral import SAMPLE_RATE


def measure(ngf: int, n_queries: int, wave: torch.Tensor, chunk_seconds: float, overlap: float, repeats: int):
    torch.manual_seed(0)
    model = SeparateNet(SeparateNetConfig(ngf=ngf)).eval()
    queries = torch.nn.functional.normalize(torch.randn(n_queries, model.config.emb_dim), dim=-1)
    separate_tensor(model, wave[: 5 * SAMPLE_RATE], queries, chunk_seconds, overlap)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        separate_tensor(model, wave, queries, chunk_seconds, overlap)
        best = min(best, time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {"ngf": ngf, "params_M": round(params, 2), "queries": n_queries, "seconds": round(best, 2),
            "rtf": round(best / (wave.numel() / SAMPLE_RATE), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ngf", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--queries", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--chunk-seconds", type=float, default=DEFAULT_CHUNK_SECONDS)
    parser.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP_SECONDS)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(int(args.seconds * SAMPLE_RATE), generator=generator)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"{args.seconds:g} s of audio, chunk {args.chunk_seconds:g} s, overlap {args.overlap:g} s")
    print("| ngf | parameters | queries | wall (s) | RTF | x real time |")
    print("|---:|---:|---:|---:|---:|---:|")
    rows = []
    for ngf in args.ngf:
        for n_queries in args.queries:
            row = measure(ngf, n_queries, wave, args.chunk_seconds, args.overlap, args.repeats)
            rows.append(row)
            print(f"| {ngf} | {row['params_M']:.1f} M | {n_queries} | {row['seconds']:.1f} | {row['rtf']:.3f} | "
                  f"{1 / row['rtf']:.1f} |", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
