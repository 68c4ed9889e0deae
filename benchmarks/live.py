"""Live separation at several latencies: SDRi against the offline path, compute per hop, real-time factor.

Quality: the corpus test mixtures (target + one interferer, 65,535 samples at
16 kHz, each source divided by two as evaluation does), queried by the text of
the target's label, separated offline (``apply.separate_tensor``, what
``omnisep separate`` and evaluation compute) and block-online
(:class:`omnisep.live.BlockOnlineSeparator`, what ``Separator.stream`` runs)
at each latency; SDR / SDRi with the ``fast`` metric backend over the
scored length. Mixtures are streamed as a batch (one signal each), which
changes no number, only the wall time.

Speed: one stream on one thread (``torch.set_num_threads(1)``), blocks of
one hop pushed in real order; compute per hop is the median wall time of a
push that ran the network; RTF = compute per hop / hop duration; streams
per core = 1 / RTF (rounded down).

    OMP_NUM_THREADS=1 python benchmarks/live.py --limit 40 --json docs/data/live.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from omnisep.api import Separator
from omnisep.apply import separate_tensor
from omnisep.data.manifest import read_manifest
from omnisep.data.mixing import fit_to_length, load_clip
from omnisep.data.mixtures import MixtureList
from omnisep.evaluation.metrics import score_estimate, score_mixture
from omnisep.live import STFT_FRAMES, BlockOnlineSeparator, split_latency
from omnisep.spectral import HOP, SAMPLE_RATE, SEGMENT

# (latency s, hop s or None for the default even split, aligned window, past context s)
SETTINGS = [
    (0.064, None, False, 1.0),
    (0.1, 0.048, False, 1.0),
    (0.25, None, False, 1.0),
    (0.25, 0.128, False, 1.0),
    (0.25, None, True, 1.0),
    (0.5, None, False, 1.0),
    (1.0, None, False, 1.0),
]


def load_mixtures(mixtures_path, manifest_path, limit):
    items = {item.id: item for item in read_manifest(manifest_path)}
    rows = []
    for spec in list(MixtureList.read(mixtures_path))[:limit]:
        sources = [fit_to_length(load_clip(items[i].audio), SEGMENT, None) / 2 for i in spec.item_ids]
        rows.append((items[spec.item_ids[0]].label, np.stack(sources)))
    return rows


def sdr_rows(separator, rows, settings, backend="fast"):
    model = separator.model
    labels = [label for label, _ in rows]
    vectors = torch.stack([separator.embed_query(text=label) for label in labels])
    sources = np.stack([s for _, s in rows])  # [B, N, T]
    mixtures = sources.sum(1)
    mix_scores = [score_mixture(s[0], s[1:].sum(0), m, backend) for s, m in zip(sources, mixtures)]
    offline = np.stack([separate_tensor(model, torch.from_numpy(m), v[None])[0].numpy() for m, v in zip(mixtures, vectors)])
    results = {"offline": _score(sources, mixtures, offline, mix_scores, backend)}
    for latency, hop, align, context in settings:
        a, h = split_latency(latency, hop)
        engine = BlockOnlineSeparator(
            model, vectors, mixtures.shape[0], a, h, round(context * SAMPLE_RATE / HOP), align=align, paired=True
        )
        out = []
        for start in range(0, mixtures.shape[1], h * HOP):
            out.append(engine.push(mixtures[:, start : start + h * HOP]))
        out.append(engine.finish())
        online = np.concatenate(out, axis=-1)[0]  # [B, T]: each mixture with its own query
        key = f"{(STFT_FRAMES + a + h) * HOP / SAMPLE_RATE * 1000:.0f} ms (a={a}, h={h}, W={engine.width}{', aligned' if align else ''})"
        results[key] = _score(sources, mixtures, online, mix_scores, backend)
        variant = [f"hop {hop * 1000:g} ms"] if hop is not None and latency > 0.1 else []
        variant += [f"{context:g} s context"] if context != 1.0 else []
        variant += ["aligned window"] if align else []
        results[key]["latency_ms"] = (STFT_FRAMES + a + h) * HOP / SAMPLE_RATE * 1000
        results[key]["variant"] = ", ".join(variant)
        results[key]["agreement_db"] = float(
            np.mean([10 * np.log10((o**2).sum() / max(((o - x) ** 2).sum(), 1e-20)) for o, x in zip(offline, online)])
        )
        print(key, results[key], flush=True)
    return results


def _score(sources, mixtures, estimates, mix_scores, backend):
    sdr, sdri = [], []
    for s, m, e, ms in zip(sources, mixtures, estimates, mix_scores):
        if ms is None:
            continue
        score = score_estimate(s[0], s[1:].sum(0), m, e, ms, backend)
        if score is None:
            continue
        sdr.append(score.sdr)
        sdri.append(score.sdr - score.sdr_mix)
    return {"n": len(sdr), "sdr": float(np.mean(sdr)), "sdri": float(np.mean(sdri))}


def speed_rows(separator, settings, seconds=8.0, contrast=None):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
    rows = []
    for latency, hop, align, context in settings:
        stream = separator.stream(text="dog barking", latency=latency, hop=hop, align=align, context=context, contrast=contrast)
        step = round(stream.hop * SAMPLE_RATE)
        times = []
        for start in range(0, wave.shape[0], step):
            runs = stream.network_runs
            began = time.perf_counter()
            stream.push(wave[start : start + step])
            if stream.network_runs > runs:
                times.append(time.perf_counter() - began)
        stream.finish()
        per_hop = float(np.median(times))
        rtf = per_hop / stream.hop
        rows.append(
            {
                "latency_ms": round(stream.latency * 1000, 1),
                "aligned": align,
                "context_s": context,
                "lookahead_ms": round(stream.lookahead * 1000, 1),
                "hop_ms": round(stream.hop * 1000, 1),
                "window_frames": stream.engine.width,
                "compute_per_hop_ms": round(per_hop * 1000, 1),
                "rtf": round(rtf, 3),
                "x_real_time": round(1 / rtf, 1),
                "streams_per_core": int(1 / rtf),
                "latency_plus_compute_ms": round((stream.latency + per_hop) * 1000, 1),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--mixtures", default="/work/main/corpus/mixtures_test.jsonl")
    parser.add_argument("--manifest", default="/work/main/corpus/manifest-default.jsonl")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--contrast", type=float, default=None, help="query contrast of the speed streams (default: the model's)")
    parser.add_argument("--json")
    parser.add_argument("--plot", help="PNG of SDRi against latency")
    parser.add_argument("--from-json", help="only draw --plot from an earlier --json report")
    args = parser.parse_args()
    if args.from_json:
        with open(args.from_json) as handle:
            report = json.load(handle)
        print(markdown(report))
        if args.plot:
            plot(report, args.plot)
        return
    separator = Separator(args.model)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}",
        "torch": torch.__version__,
        "model": str(separator.path),
    }
    if not args.skip_speed:
        report["speed"] = speed_rows(separator, SETTINGS, contrast=args.contrast)
    if not args.skip_quality:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        rows = load_mixtures(args.mixtures, args.manifest, args.limit)
        report["quality"] = sdr_rows(separator, rows, [row for row in SETTINGS if row[0] >= 0.1])
        report["quality_mixtures"] = len(rows)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    print(json.dumps(report, indent=2))
    if args.plot and "quality" in report:
        plot(report, args.plot)


def markdown(report: dict) -> str:
    """The speed and quality rows as one markdown table (settings in the order of SETTINGS)."""
    quality = report.get("quality", {})
    offline = quality.get("offline", {}).get("sdri")
    lines = [
        "| latency | look-ahead | hop | window | compute / hop | RTF | x real time | streams / core | SDRi | loss vs offline | agreement |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = list(quality.items())[1:]
    for speed in report.get("speed", []):
        extra = (", aligned" if speed["aligned"] else "") + (f", {speed.get('context_s', 1):g} s context" if speed.get("context_s", 1) != 1 else "")
        match = [
            row for key, row in rows
            if key.startswith(f"{speed['latency_ms']:.0f} ms")
            and f"h={round(speed['hop_ms'] / 16)}," in key
            and ("aligned" in key) == speed["aligned"]
            and (f"W={speed['window_frames']}" in key or "W=" not in key)
        ]
        q = match[0] if match else None
        lines.append(
            f"| {speed['latency_ms']:g} ms | {speed['lookahead_ms']:g} ms | {speed['hop_ms']:g} ms | "
            f"{speed['window_frames']} frames{extra} | {speed['compute_per_hop_ms']:g} ms | {speed['rtf']:.2f} | "
            f"{speed['x_real_time']:g} | {speed['streams_per_core']} | "
            + (f"{q['sdri']:.2f} dB | {q['sdri'] - offline:+.2f} dB | {q['agreement_db']:.1f} dB |" if q else "- | - | - |")
        )
    if offline is not None:
        lines.append(f"| offline (whole clip) | | | | | | | | {offline:.2f} dB | | |")
    return "\n".join(lines)


def plot(report: dict, path: str) -> None:
    from omnisep.plotting.live import plot_live

    points = []
    for key, row in report["quality"].items():
        if key == "offline":
            continue
        if "latency_ms" not in row:  # reports written before these fields: read them from the key
            latency = float(key.split(" ms")[0])
            fields = dict(part.split("=") for part in key.split("(")[1].rstrip(")").split(", ") if "=" in part)
            variant = ["aligned window"] if "aligned" in key else ["3 s context"] if fields.get("W", "128") != "128" else []
            default_h = split_latency(latency / 1000 + 1e-6)[1]
            if latency > 100 and int(fields["h"]) != default_h:
                variant.append(f"hop {int(fields['h']) * HOP * 1000 // SAMPLE_RATE} ms")
            row = dict(row, latency_ms=latency, variant=", ".join(variant))
        points.append((row["latency_ms"], row["sdri"], row["variant"]))
    plot_live(points, report["quality"]["offline"]["sdri"], path)


if __name__ == "__main__":
    main()
