"""Table 2 at small scale: train the five ablation settings, evaluate each, print the table.

Long (hours on 2 CPU cores at the defaults; minutes on a GPU). Not a test.
Each setting trains with ``omnisep train`` and is scored with ``omnisep
evaluate`` (text and image queries, no negative query) on the corpus test
mixtures; finished steps are skipped on a rerun, and an interrupted training
resumes.

    omnisep corpus build data/corpus
    python benchmarks/ablations.py --corpus data/corpus --out runs/ablations
    python benchmarks/ablations.py --corpus data/corpus --out runs/ablations --steps 200 --only "#1,#5"  # quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

from omnisep.evaluation.ablations import IQSS_KEY, SETTINGS, TQSS_KEY, paired_difference, read_ablation_run, training_overrides
from omnisep.evaluation.reports import atomic_write_text, table2_csv, table2_markdown


def base_config(args, run_dir: Path) -> dict:
    """A small model and schedule that trains in hours on a CPU (the paper: ngf 64, batch 128, 200k steps)."""
    corpus = args.corpus.resolve()
    data = {
        "train_manifest": str(corpus / "manifest.jsonl"),
        "num_workers": args.data_workers,
        "segment_samples": args.segment_samples,
        "clip_cache_items": 2000,  # every clip of a small corpus stays decoded
    }
    if (corpus / "mixtures_val.jsonl").is_file():
        data["val_mixtures"] = str(corpus / "mixtures_val.jsonl")
    if args.cache:
        data["cache"] = str(args.cache.resolve())
    return {
        "out_dir": str(run_dir / "train"),
        "seed": args.seed,
        "steps": args.steps,
        "log_every": max(1, args.steps // 50),
        "val_every": max(1, args.steps // 10),
        "checkpoint_every": max(1, args.steps // 10),
        "device": args.device,
        "model": {"ngf": args.ngf, "depth": 7, "k": 32},
        "encoder": {"name": args.encoder},
        "data": data,
        "optim": {
            "lr": 1e-3,
            "batch_size": args.batch_size,
            "warmup_steps": max(1, args.steps // 20),
            "decay_steps": args.steps,
        },
    }


def run(command: list[str], log_path: Path) -> None:
    print("$", " ".join(command), flush=True)
    with open(log_path, "a", encoding="utf-8") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if completed.returncode != 0:
        sys.exit(f"failed (exit {completed.returncode}); see {log_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder (manifest.jsonl, mixtures_*.jsonl)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs and table2.md/.csv")
    parser.add_argument("--cache", type=Path, help="embedding cache from `omnisep embed` (default: each run embeds)")
    parser.add_argument("--encoder", default="bundled")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--data-workers", type=int, default=1)
    parser.add_argument("--segment-samples", type=int, default=32767, help="training crop (32767: 2 s, as the bundled model)")
    parser.add_argument("--eval-workers", type=int, default=2)
    parser.add_argument("--backend", default="fast", choices=["museval", "fast"])
    parser.add_argument("--testset", default="mixtures_test.jsonl", help="mixture list inside --corpus")
    parser.add_argument("--only", help='comma-separated settings, e.g. "#1,#5"')
    parser.add_argument("--eval-limit", type=int, help="score only the first N test mixtures (a smoke test, not a result)")
    args = parser.parse_args()

    chosen = [s for s in SETTINGS if args.only is None or s.name in {n.strip() for n in args.only.split(",")}]
    omnisep = [sys.executable, "-m", "omnisep"]
    rows = []
    started = time.perf_counter()
    for setting in chosen:
        run_dir = args.out / setting.name.lstrip("#")
        run_dir.mkdir(parents=True, exist_ok=True)
        summary = run_dir / "eval" / "summary.json"
        if not summary.is_file():
            config_path = run_dir / "config.json"
            atomic_write_text(config_path, json.dumps(base_config(args, run_dir), indent=2) + "\n")
            setting_started = time.perf_counter()
            run([*omnisep, "train", str(config_path), *(x for o in training_overrides(setting) for x in ("--set", o))],
                run_dir / "train.log")
            checkpoint = run_dir / "train" / "best"
            if not checkpoint.is_dir():
                checkpoint = run_dir / "train" / "last"
            evaluate = [*omnisep, "evaluate", str(checkpoint), str(args.corpus / args.testset), "--out", str(run_dir / "eval"),
                        "--modes", "text,image", "--no-negative", "--no-oracles", "--backend", args.backend,
                        "--workers", str(args.eval_workers), "--quiet"]
            if args.cache:
                evaluate += ["--cache", str(args.cache)]
            if args.eval_limit:
                evaluate += ["--limit", str(args.eval_limit)]
            run(evaluate, run_dir / "evaluate.log")
            print(f"{setting.name} done in {time.perf_counter() - setting_started:.0f} s", flush=True)
        rows.append(read_ablation_run(setting, summary))

    def scores_of(name: str) -> Path:
        return args.out / name.lstrip("#") / "eval" / "scores.jsonl"

    reference = SETTINGS[-1].name  # Query-Mixup, the paper's method
    if any(row.name == reference for row in rows):
        rows = [
            dataclasses.replace(
                row,
                tqss_vs_reference=paired_difference(scores_of(row.name), scores_of(reference), TQSS_KEY),
                iqss_vs_reference=paired_difference(scores_of(row.name), scores_of(reference), IQSS_KEY),
            )
            for row in rows
        ]

    notes = [f"Small scale: ngf {args.ngf}, batch {args.batch_size}, {args.steps} steps, training seed {args.seed}, encoder {args.encoder}, "
             f"corpus {args.corpus}, test set {args.testset}"
             + (f" (first {args.eval_limit} mixtures only)" if args.eval_limit else "") + f", metrics {args.backend}."]
    markdown = table2_markdown(rows, notes, reference=reference)
    atomic_write_text(args.out / "table2.md", markdown)
    atomic_write_text(args.out / "table2.csv", table2_csv(rows))
    print(markdown)
    print(f"total {time.perf_counter() - started:.0f} s; wrote {args.out / 'table2.md'}")


if __name__ == "__main__":
    main()
