"""Items per second of each metrics backend, and how closely they agree.

An item is one separated estimate scored against [target, interferer]
(SDR/SIR/SAR over 65,280 samples), what the protocol does per query mode
and mixture. Signals are synthetic but speech/music-like in spectrum (harmonic
tones with vibrato plus coloured noise); estimates leak some interferer, are
lightly filtered and carry noise, so every metric term is non-trivial.

    python benchmarks/metric_speed.py            # 20 items, one process
    python benchmarks/metric_speed.py --items 50 --threads 1
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from omnisep.evaluation.metrics import SCORED_LENGTH, bss_eval_target

RATE = 16000


def synthetic_source(rng: np.random.Generator, length: int) -> np.ndarray:
    t = np.arange(length) / RATE
    f0 = rng.uniform(110, 880)
    vibrato = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(3, 7) * t)
    phase = 2 * np.pi * f0 * np.cumsum(vibrato) / RATE
    tone = sum(rng.uniform(0.2, 1.0) / k * np.sin(k * phase) for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * rng.uniform(0.3, 2) * t))
    noise = np.convolve(rng.standard_normal(length), np.hanning(rng.integers(4, 64)), mode="same")
    signal = tone * envelope + 0.3 * noise / np.abs(noise).max()
    return 0.25 * signal / np.abs(signal).max()


def make_items(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(count):
        target, interferer = synthetic_source(rng, SCORED_LENGTH), synthetic_source(rng, SCORED_LENGTH)
        leak = rng.uniform(0.05, 0.4)
        estimate = np.convolve(target + leak * interferer, [1.0, rng.uniform(-0.3, 0.3), rng.uniform(-0.1, 0.1)])[:SCORED_LENGTH]
        estimate += rng.uniform(0.002, 0.02) * rng.standard_normal(SCORED_LENGTH)
        mixture = target + interferer
        items.append((np.stack([target, interferer]), np.stack([estimate, mixture - estimate])))
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the fast backend")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    items = make_items(args.items)
    results = {}
    for backend in ("museval", "fast"):
        bss_eval_target(*items[0], backend)  # warm-up: imports, FFT plans
        started = time.perf_counter()
        results[backend] = np.array([bss_eval_target(refs, ests, backend) for refs, ests in items])
        elapsed = time.perf_counter() - started
        print(f"{backend:8s} {args.items / elapsed:7.2f} items/s  ({1000 * elapsed / args.items:.0f} ms per item)")
    difference = np.abs(results["museval"] - results["fast"])
    for column, name in enumerate(("SDR", "SIR", "SAR")):
        print(f"{name}: mean |museval - fast| = {difference[:, column].mean():.2e} dB, max {difference[:, column].max():.2e} dB"
              f"  (museval mean {results['museval'][:, column].mean():.2f} dB)")
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {args.threads}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
