"""`omnisep evaluate CHECKPOINT TESTSET --out DIR`: the paper's tables for one checkpoint.

Also the query tools' evaluations, each a run step per mixture list and a report step:
`omnisep evaluate-auto-negative run|report` and `omnisep evaluate-presence run|report`.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from omnisep.errors import OmniSepError
from omnisep.modalities import MODALITIES


def _csv_list(value: str, option: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in value.split(",") if part.strip())
    if not items:
        raise OmniSepError(f"{option} needs at least one value.")
    return items


def parse_alphas(text: str) -> tuple[float, ...]:
    """'0:2:0.25' (start:stop:step, stop included) or '0,0.5,1'."""
    try:
        if ":" in text:
            start, stop, step = (float(part) for part in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = int(round((stop - start) / step)) + 1
            return tuple(round(start + i * step, 10) for i in range(count))
        return tuple(float(part) for part in _csv_list(text, "--alpha-sweep"))
    except ValueError:
        raise OmniSepError(f"--alpha-sweep {text!r} is neither start:stop:step (e.g. 0:2:0.25) nor a list (e.g. 0,0.5,1).") from None


def _weights(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in _csv_list(text, "--omni-weights"))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise OmniSepError(f"--omni-weights {text!r} must be three numbers: image,text,audio (e.g. 2,2,1).")
    return values


def _default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _encoder_options(checkpoint, encoder_name, imagebind_weights, heads) -> dict:
    from omnisep.states import read_config

    name = encoder_name or read_config(checkpoint)["encoder"]["name"]
    if imagebind_weights is not None and name != "imagebind":
        raise OmniSepError(f"--imagebind-weights is for the imagebind encoder, not '{name}'.")
    if heads is not None and name != "bundled":
        raise OmniSepError(f"--heads is for the bundled encoder, not '{name}'.")
    return {"weights": imagebind_weights} if imagebind_weights else {"heads": heads} if heads else {}


@click.command()
@click.argument("checkpoint", type=click.Path(file_okay=False))
@click.argument("testset", metavar="TESTSET", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the tables, figure and per-item scores.")
@click.option("--manifest", type=click.Path(dir_okay=False), help="Manifest of the items (default: manifest.jsonl beside TESTSET).")
@click.option("--cache", type=click.Path(file_okay=False), help="Embedding cache from `omnisep embed` (default: embed here with the checkpoint's encoder).")
@click.option("--encoder", "encoder_name", help="Encoder for queries (default: the one the checkpoint records).")
@click.option("--imagebind-weights", type=click.Path(dir_okay=False), help="imagebind_huge.pth or .safetensors (imagebind encoder).")
@click.option("--heads", type=click.Path(dir_okay=False), help="Heads file (bundled encoder).")
@click.option("--modes", default=",".join((*MODALITIES, "composed")), show_default=True, help="Query modes (Table 1 rows).")
@click.option("--negative/--no-negative", default=True, show_default=True, help="Also score every mode with a negative query.")
@click.option("--negative-source", type=click.Choice([*MODALITIES, "same"]), default="text", show_default=True,
              help="Which modality of the interferer gives the negative query ('same': the query's own).")
@click.option("--alpha", type=float, default=None,
              help="Negative-query weight (paper: 0.5) [default: the checkpoint's own, `omnisep models` lists it].")
@click.option("--negative-mode", type=click.Choice(["proportional", "naive", "logit"]), default=None,
              help="(1+a) q - a q_neg (paper eq. 4), the naive q - a q_neg, or logit: (1+a) L(q) - a L(q_neg) on "
                   "the mask logits [default: the checkpoint's own].")
@click.option("--contrast", type=click.FloatRange(min=0), default=None,
              help="Query contrast (1+b) L(q) - b L(background) on every query; 0: none [default: the checkpoint's own].")
@click.option("--second-look", "second_look", type=float, default=None, metavar="DB",
              help="Separate again from itself every output under DB of the mixture's energy (negative) "
                   "[default: the checkpoint's own].")
@click.option("--no-second-look", "skip_second_look", is_flag=True,
              help="Score without the second look, even where the checkpoint records one.")
@click.option("--audio-clips", type=int, default=5, show_default=True, help="S: training clips averaged into a class's audio query (paper: 5 VGGSound, 1 MUSIC).")
@click.option("--omni-weights", default="2,2,1", show_default=True, help="image,text,audio weights of the composed query.")
@click.option("--oracles/--no-oracles", default=True, show_default=True, help="Include ideal binary/ratio mask rows.")
@click.option("--backend", type=click.Choice(["museval", "fast"]), default="museval", show_default=True,
              help="museval (reference) or fast-bss-eval (same numbers, faster).")
@click.option("--workers", type=int, default=None, help="Processes computing metrics (default: all cores; 0 = in this process).")
@click.option("--binary-mask", is_flag=True, help="Threshold the masks at 0.5 instead of the soft mask.")
@click.option("--alpha-sweep", "alpha_sweep", default=None, metavar="START:STOP:STEP",
              help="Fig. 2: sweep alpha for proportional, naive and logit negatives, e.g. 0:2:0.25.")
@click.option("--sweep-modes", default=",".join(MODALITIES), show_default=True, help="Query modes of the alpha sweep.")
@click.option("--descriptions", type=click.Path(dir_okay=False), help="Table 3: JSON {label: [free-form descriptions]} for the Query-Aug comparison.")
@click.option("--limit", type=int, default=None, help="Score only the first N mixtures (a quick look; not a result).")
@click.option("--batch-size", type=int, default=1, show_default=True, help="Mixtures read per step (each is then separated on its own, exactly as `omnisep separate` does).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N for the Separate-Net.")
@click.option("--seed", type=int, default=1234, show_default=True, help="Seed for audio-query clips and description choices.")
@click.option("--usage", "usage", is_flag=True,
              help="Also write usage.md/.json: absent-query energy, selectivity, per-class SDRi, scan accuracy (text queries).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate(checkpoint, testset, out_dir, manifest, cache, encoder_name, imagebind_weights, heads, modes, negative, negative_source, alpha,
             negative_mode, contrast, second_look, skip_second_look, audio_clips, omni_weights, oracles, backend, workers,
             binary_mask, alpha_sweep, sweep_modes, descriptions, limit, batch_size, device, seed, usage, quiet):
    """Score CHECKPOINT on TESTSET (a mixture list such as mixtures_test.jsonl).

    Writes table1.md/.csv (query mode x negative query, with the unprocessed
    mixture and oracle masks), table3.md/.csv with --descriptions,
    alpha_sweep.csv and fig2_alpha_sweep.png with --alpha-sweep,
    summary.json and scores.jsonl. Until the run completes the only file is
    scores.partial.jsonl.

    \b
    Examples:
      omnisep evaluate runs/tiny/best corpus/mixtures_test.jsonl --out eval/tiny
      omnisep evaluate ckpt data/vggsound/mixtures_clean_plus.jsonl --cache data/vggsound/cache \\
          --out eval/vgg --alpha-sweep 0:2:0.25 --descriptions descriptions.json --backend fast
    """
    from omnisep.data.mixtures import load_test_set
    from omnisep.evaluation.protocol import EvaluationConfig, evaluate as run_protocol, read_descriptions
    from omnisep.evaluation.metrics import require_backend
    from omnisep.evaluation.reports import write_evaluation_reports

    require_backend(backend)
    config = EvaluationConfig(
        modes=_csv_list(modes, "--modes"),
        with_negative=negative,
        negative_source=negative_source,
        alpha=alpha,
        negative_mode=negative_mode,
        contrast=contrast,
        second_look=second_look,
        skip_second_look=skip_second_look,
        audio_clips=audio_clips,
        omni_weights=_weights(omni_weights),
        oracles=oracles,
        backend=backend,
        workers=_default_workers() if workers is None else workers,
        binary_mask=binary_mask,
        alpha_sweep=parse_alphas(alpha_sweep) if alpha_sweep else (),
        sweep_modes=_csv_list(sweep_modes, "--sweep-modes"),
        descriptions=read_descriptions(descriptions) if descriptions else None,
        seed=seed,
        limit=limit,
        batch_size=batch_size,
        device=device,
    )
    config.validate()
    encoder_options = _encoder_options(checkpoint, encoder_name, imagebind_weights, heads)
    test_set = load_test_set(testset, manifest)
    result = run_protocol(checkpoint, test_set, out_dir, config, cache=cache, encoder_name=encoder_name,
                          encoder_options=encoder_options, descriptions_path=descriptions, progress=not quiet)
    run_info = {
        "checkpoint": str(checkpoint),
        "test_set": str(testset),
        "manifest": str(test_set.manifest_path),
        "backend": backend,
        "length": config.length,
        "config": config.to_dict(),
    }
    written = write_evaluation_reports(out_dir, result, run_info)
    if usage:
        from omnisep.evaluation.usage import evaluate_usage

        evaluate_usage(checkpoint, testset, test_set.manifest_path, out_dir, limit=limit, backend=backend,
                       second_look=False if skip_second_look else (second_look if second_look is not None else True))
        written.append(Path(out_dir) / "usage.md")
    click.echo(Path(written[0]).read_text(encoding="utf-8").rstrip())
    click.echo(f"{result.items} mixtures in {result.seconds:.1f} s; wrote {', '.join(str(p) for p in written)}", err=True)


# -- the query tools' evaluations (docs/query-tools.md, scripts/evaluate_query_tools.sh) ---------------------------


@click.group("evaluate-auto-negative")
def evaluate_auto_negative():
    """Sweep the automatic negative query on fixed mixtures (run), then choose on validation and report on test (report).

    \b
    Examples:
      omnisep evaluate-auto-negative run MODEL corpus/mixtures_val.jsonl --modes text --out val.json
      omnisep evaluate-auto-negative report --validation val.json --test test.json --out docs/results/auto-negative
    """


@evaluate_auto_negative.command("run")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False))
@click.argument("mixtures", type=click.Path(exists=True, dir_okay=False))
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Manifest of the items (default: manifest.jsonl beside MIXTURES).")
@click.option("--cache", type=click.Path(exists=True, file_okay=False), default=None,
              help="Embedding cache of the checkpoint's encoder (not needed for --modes text).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSON file with every score.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N mixtures.")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Only every N-th mixture (then --limit of those): lists are ordered by target class, so a stride "
                   "samples every class.")
@click.option("--modes", default=",".join((*MODALITIES, "composed")), show_default=True,
              help="Comma-separated query modes; image-snapped: the picture as the API gives it (recognised and snapped "
                   "to its label, picture Query-Aug).")
@click.option("--sources", default="mixture", show_default=True, help="Comma-separated: mixture, residual, residual-label, residual-audio, mixture-top2+residual, mixture-top3+residual, "
              "mixture+residual, residual-tagger, mixture*residual-tagger.")
@click.option("--alphas", default="0.25,0.5,1", show_default=True, help="Comma-separated negative strengths to sweep.")
@click.option("--negative-mode", type=click.Choice(["proportional", "naive", "logit"]), default=None,
              help="How every negative acts [default: the checkpoint's own].")
@click.option("--no-verify", is_flag=True, help="Choose from the plain scan, even when the model records a verification.")
@click.option("--picture-heads", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Mode image-snapped: the picture recogniser (or a heads file whose image head) that recognises the "
                   "pictures [default: the shipped one, which saw the corpus pictures; for held-out numbers use one that "
                   "never saw their style].")
@click.option("--picture-calibration", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Mode image-snapped: the picture matcher's calibration [default: the shipped one].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def auto_negative_run(checkpoint, mixtures, manifest, cache, out, limit, every, modes, sources, alphas, negative_mode,
                      no_verify, picture_heads, picture_calibration, quiet):
    """Sweep the automatic negative query over MIXTURES; writes every SDRi and the summary to --out."""
    from omnisep.evaluation import auto_negative

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f"{out.stem}.partial.json")
    modes = _csv_list(modes, "--modes")
    pictures = auto_negative.PictureSnap(picture_heads, picture_calibration) if auto_negative.SNAPPED_IMAGE in modes else None
    data = auto_negative.run(checkpoint, mixtures, manifest, cache, modes=modes, limit=limit, every=every,
                             sources=_csv_list(sources, "--sources"), progress=not quiet, partial=partial,
                             alphas=parse_alphas(alphas), negative_mode=negative_mode, verify=not no_verify,
                             pictures=pictures)
    auto_negative.save_run(data, out)
    partial.unlink(missing_ok=True)
    click.echo(f"{data['count']} mixtures in {data['seconds']} s -> {out}; best setting: {auto_negative.choose_defaults(data['summary'])}")


@evaluate_auto_negative.command("report")
@click.option("--validation", "validation", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help="A run of the validation mixtures (repeatable: runs of other modes are merged).")
@click.option("--test", "test", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help="A run of the test mixtures (repeatable).")
@click.option("--controls", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A test run whose controls table is shown (default: the merged --test runs).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder for results.md and summary.json.")
@click.option("--alpha", type=float, default=None,
              help="Choose only among settings at this strength (the model's auto_alpha) [default: any swept].")
@click.option("--setting", default=None, metavar="KEY",
              help="Report this setting (e.g. auto/mixture/n1/sim0.55/a1, the model's own) instead of the best on validation.")
def auto_negative_report(validation, test, controls, out, alpha, setting):
    """Choose the setting on the --validation runs, report it on the --test runs: OUT/results.md, OUT/summary.json.

    Later runs override earlier ones for the modes they share."""
    from omnisep.evaluation import auto_negative

    click.echo(auto_negative.write_report(validation, test, out, controls, alpha=alpha, setting=setting))


@click.group("evaluate-presence")
def evaluate_presence():
    """Scan fixed mixtures (run), then choose the presence threshold on validation and report on test (report).

    \b
    Examples:
      omnisep evaluate-presence run MODEL corpus/mixtures_val.jsonl --out val.npz
      omnisep evaluate-presence report val.npz test.npz --out docs/results/scan-presence
    """


@evaluate_presence.command("run")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False))
@click.argument("mixtures", type=click.Path(exists=True, dir_okay=False))
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Manifest of the items (default: manifest.jsonl beside MIXTURES).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="An .npz with every scan.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N mixtures.")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Only every N-th mixture (then --limit of those): lists are ordered by target class, so a stride "
                   "samples every class.")
@click.option("--no-verify", is_flag=True, help="Score the plain scan, even when the model records a verification.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def presence_run(checkpoint, mixtures, manifest, out, limit, every, no_verify, quiet):
    """Scan MIXTURES and store presence scores and truth; prints the scores at the best clip-level threshold."""
    import json

    from omnisep.evaluation import presence

    data = presence.scan_mixtures(checkpoint, mixtures, manifest, limit, progress=not quiet, verify=not no_verify,
                                  every=every)
    presence.save(data, out)
    click.echo(json.dumps(presence.score(data, presence.best_threshold(data)), indent=1))


@evaluate_presence.command("report")
@click.argument("validation", type=click.Path(exists=True, dir_okay=False))
@click.argument("test", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for results.md, summary.json and presence_curves.png.")
def presence_report(validation, test, out):
    """Choose the threshold on VALIDATION (best clip-level F1), report TEST there: OUT/results.md, .json, .png."""
    from omnisep.evaluation import presence

    click.echo(presence.write_report(validation, test, out))
