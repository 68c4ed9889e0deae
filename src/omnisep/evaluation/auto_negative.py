"""How much the automatic negative query gains, against no negative and the oracle negative.

For every mixture of a test set (target T, interferer I) and every query mode
of Table 1 (text, image, audio, composed; built exactly as ``omnisep
evaluate`` builds them), one U-Net pass serves every query of the sweep:

* the plain query (no negative);
* the oracle negative: I's own label, eq. 4, for each alpha;
* the automatic negative (:mod:`omnisep.negatives`) for each setting of the
  sweep: how many labels, the similarity cut-off, which signal is scanned
  (the mixture, or the residual the plain query leaves), and alpha;
* two choices that need no scan: the labels nearest to the query encoder's
  audio embedding of the residual the plain query leaves
  (``residual-label``), and that embedding itself as the negative query
  (``residual-audio``: no label at all, so it also names sounds outside the
  bank; one setting per alpha, keyed ``n1/sim1.01``); and the mixture scan's
  first 2 or 3 labels re-ordered by closeness to that embedding
  (``mixture-top2+residual``, ``mixture-top3+residual``).

Scores are the protocol's SDR (BSSEval v4 images variant, which needs no
projection and is what both metric backends compute for the SDR) and SDRi
over the unprocessed mixture, on the same 65,280 samples, with the same skip
rule. ``choose_defaults`` picks the setting with the best mean SDRi over the
modes among those that are never worse than no negative on average, on the
VALIDATION mixtures; the test mixtures only report it.

    omnisep evaluate-auto-negative run MODEL corpus/mixtures_val.jsonl --cache CACHE --out val.json
    omnisep evaluate-auto-negative report --validation val.json --test test.json --out docs/results/auto-negative
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from omnisep.errors import OmniSepError, describe
from omnisep.evaluation.metrics import SCORED_LENGTH, _cap, _images_sdr, is_silent, summarize

DEFAULT_COUNTS = (1, 2, 3)
DEFAULT_ALPHAS = (0.25, 0.5, 1.0)
DEFAULT_SIMILARITIES = (0.55, 0.7, 1.01)  # 1.01: only the own label is left out
DEFAULT_SOURCES = ("mixture",)
SOURCE_NAMES = {
    "mixture": "the scan of the mixture",
    "residual": "the scan of the residual the plain query leaves",
    "residual-label": "the labels nearest to the residual, as the query encoder hears it",
    "residual-audio": "no label: the residual's own embedding is the negative query",
    "mixture-top2+residual": "the scan's first 2 labels, re-ordered by closeness to the residual",
    "mixture-top3+residual": "the scan's first 3 labels, re-ordered by closeness to the residual",
    "mixture+residual": "the scan's presence plus the residual's closeness, per label",
    "residual-tagger": "the labels the sound tagger hears most in the residual",
    "mixture*residual-tagger": "the scan's presence times the sound tagger's probability in the residual, per label",
}
SOURCES = tuple(SOURCE_NAMES)
RERANKED_CANDIDATES = {"mixture-top2+residual": 2, "mixture-top3+residual": 3}  # the scan's first N, re-ordered
RESIDUAL_EMBEDDING_SOURCES = ("residual-label", "residual-audio", "mixture+residual", *RERANKED_CANDIDATES)
RESIDUAL_TAGGER_SOURCES = ("residual-tagger", "mixture*residual-tagger")
MODES = ("text", "image", "audio", "composed")
# The picture as the API gives it by default: recognised by an image head and snapped to its label's row
# (picture Query-Aug, omnisep.query_aug.ClassMatcher.for_pictures), or whatever the picture calibration gives.
SNAPPED_IMAGE = "image-snapped"


class PictureSnap:
    """Picture Query-Aug for the evaluation: ``heads`` (a picture recogniser, or a heads file whose image head
    recognises the pictures) and the picture matcher's ``calibration``. The shipped recogniser saw every corpus
    picture source, so honest test numbers need one that never saw the test pictures' style (the
    ``recogniser-without-*`` and leave-one-source-out heads of ``python -m omnisep.querynet.image_head``)."""

    def __init__(self, heads=None, calibration=None):
        from omnisep.encoders.bundled import BundledEncoder
        from omnisep.encoders.recogniser import PictureRecogniser
        from omnisep.query_aug import DEFAULT_PICTURES, ClassMatcher, picture_recogniser

        if heads is not None and not PictureRecogniser.is_recogniser(heads):
            self.encoder = BundledEncoder(heads)
        else:
            self.encoder = picture_recogniser(BundledEncoder(), calibration, heads)
        self.matcher = ClassMatcher.for_pictures(calibration=calibration or DEFAULT_PICTURES)
        default = "recogniser" if isinstance(self.encoder, PictureRecogniser) else "v2"
        self.heads, self.calibration = str(heads or default), str(calibration or DEFAULT_PICTURES)
        self._answers: dict[str, object] = {}

    def match(self, picture):
        """The picture matcher's answer for a picture file (cached per file)."""
        import torch.nn.functional as F

        from omnisep.images import load_image

        key = str(picture)
        if key not in self._answers:
            with torch.no_grad():
                probe = F.normalize(self.encoder.embed_image([load_image(picture)]), dim=-1)
            self._answers[key] = self.matcher.match(probe)[0]
        return self._answers[key]

    def snap(self, query: torch.Tensor, picture, bank) -> tuple[torch.Tensor, str | None]:
        """``(query, label)``: what the picture matcher gives, as the API gives it (the recognised label's bank row;
        omnisep.query_aug.GIVE), or the query itself (label None)."""
        match = self.match(picture)
        given = match.given_vector(bank.labels, bank.embeddings)
        return (query, None) if given is None else (given.to(query.dtype), match.label)


def sdr(reference: np.ndarray, estimate: np.ndarray, length: int = SCORED_LENGTH) -> float | None:
    reference = np.asarray(reference, np.float64)[:length]
    estimate = np.asarray(estimate, np.float64)[:length]
    if is_silent(reference) or is_silent(estimate):
        return None
    return _cap(_images_sdr(reference, estimate))


class _OnePass:
    """One network pass per mixture for any number of query batches: ``signal_path.separate`` split in two."""

    def __init__(self, model, mixture: torch.Tensor):
        from omnisep.models import signal_path

        self.model, self.path = model, signal_path
        with torch.no_grad():
            self.spec = signal_path.analyse(mixture[None])
            self.frames = self.spec.shape[-1]
            self.prepared = model.prepare(signal_path.pad_frames(signal_path.network_input(self.spec), model.time_multiple))

    def separate(self, queries, length: int) -> np.ndarray:
        """``[Q, D]`` (or QueryRows) -> ``[Q, length]``, exactly what ``signal_path.separate`` returns."""
        from omnisep.queries import QueryRows

        queries = QueryRows.of(queries)
        with torch.no_grad():
            out = self.path.separate_prepared(self.model, self.spec, self.prepared, queries.rows[None], length,
                                              combine=queries.combine, second_look=queries.second_look)
        return out[0].numpy()

    def scan(self, bank, mixture: np.ndarray, frame_seconds: float = 0.5, verification=None):
        """:func:`omnisep.scan.scan` of the mixture from this pass's features (the scan's engine runs
        the same single U-Net pass on an input of one chunk, so the numbers are the same)."""
        from omnisep.queries import normalize
        from omnisep.scan import scan_estimates

        estimates = self.separate(normalize(torch.as_tensor(bank.embeddings, dtype=torch.float32)), mixture.size)
        return scan_estimates(bank.labels, estimates, mixture, frame_seconds, verification)


class _BankTable:
    """Text-only query table from the checkpoint's bank: a text query is the bank row of its label
    (training fills the bank with the same encoder's label embeddings), so text needs no cache."""

    def __init__(self, items, bank):
        rows = dict(zip(bank.labels, torch.as_tensor(bank.embeddings, dtype=torch.float32)))
        missing = sorted({item.label for item in items} - set(rows))
        if missing:
            raise OmniSepError(f"Labels {missing[:3]} of the test set are not in the model's query bank; give the embedding cache.")
        self.dim = bank.dim
        self._rows = {item.id: rows[item.label] for item in items}

    def get(self, item_id):
        rows = torch.zeros(3, self.dim)
        rows[0] = self._rows[item_id]
        return rows, torch.tensor([True, False, False])

    def available(self, item_id):
        return self.get(item_id)[1]


def setting_key(source: str, count: int, similarity: float, alpha: float) -> str:
    return f"auto/{source}/n{count}/sim{similarity:g}/a{alpha:g}"


def run(
    checkpoint,
    mixtures,
    manifest=None,
    cache=None,
    modes=MODES,
    counts=DEFAULT_COUNTS,
    alphas=DEFAULT_ALPHAS,
    similarities=DEFAULT_SIMILARITIES,
    sources=DEFAULT_SOURCES,
    limit: int | None = None,
    every: int = 1,
    progress: bool = True,
    controls: bool = True,
    partial=None,
    negative_mode: str | None = None,
    verify: bool = True,
    pictures: PictureSnap | None = None,
) -> dict:
    """Per mode and per query key, the SDRi of every mixture (None where skipped), plus label-choice stats.

    ``negative_mode``: how every negative (oracle, control, automatic) acts, eq. 4 on the vector
    (proportional) or on the mask logits (logit); default: the checkpoint's own. ``verify``: the
    scans are verified as the model records (``omnisep.scan.Verification``), as the API's are.

    ``controls`` adds two queries that tell what the scan contributes: a negative from a random
    other label (never the own one), and the query scaled by ``1 + alpha`` with nothing
    subtracted (eq. 4's first term alone). ``partial`` (a path): the data so far is written
    there every 20 mixtures. ``every``: only every N-th mixture of the list (then the first ``limit`` of
    those): mixture lists are ordered by target class, so the first N mixtures cover only the first
    few classes as targets, and a stride samples them all.
    """
    from omnisep import fileio, negatives
    from omnisep.data.mixing import MixtureDataset
    from omnisep.data.mixtures import load_test_set
    from omnisep.evaluation.protocol import EvaluationConfig
    from omnisep.evaluation.protocol.queries import QueryBuilder, load_query_table, needed_items
    from omnisep.queries import QueryRows, background_query, check_negative_mode, contrast_terms, negative_terms
    from omnisep.scan import scan, verification_for
    from omnisep.states import contrast_strength, load_checkpoint, negative_defaults, second_look_gate

    unknown = sorted(set(modes) - {*MODES, SNAPPED_IMAGE})
    if unknown:
        raise OmniSepError(f"Unknown query mode(s) {unknown}; use {', '.join((*MODES, SNAPPED_IMAGE))}.")
    if SNAPPED_IMAGE in modes and pictures is None:
        pictures = PictureSnap()
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise OmniSepError(f"Unknown automatic-negative source(s) {unknown}; use {', '.join(SOURCES)}.")
    loaded = load_checkpoint(checkpoint)
    verification = verification_for(loaded, checkpoint) if verify else None
    encoder = None
    if set(sources) & set(RESIDUAL_EMBEDDING_SOURCES):
        from omnisep.encoders import recorded_encoder

        encoder = recorded_encoder(loaded.config["encoder"])
    tagging = None
    if set(sources) & set(RESIDUAL_TAGGER_SOURCES):
        tagging = verification if verification is not None and verification.tagger is not None else None
        if tagging is None:
            raise OmniSepError(f"{describe(checkpoint)} records no sound tagger, which the sources "
                               f"{', '.join(RESIDUAL_TAGGER_SOURCES)} need.")
    model, bank = loaded.model.eval(), loaded.bank
    negative_mode = check_negative_mode(negative_mode or negative_defaults(loaded.config, checkpoint)["mode"])
    # As the API: a query with nothing subtracted carries the model's query contrast.
    strength = contrast_strength(loaded.config, checkpoint)
    background = background_query(bank.embeddings) if strength > 0 else None
    gate = second_look_gate(loaded.config, checkpoint)  # as the API: every output, not the scan

    def subtract(query, negative_vector, alpha) -> list:
        return negative_terms(query, negative_vector, alpha, negative_mode)

    test_set = load_test_set(mixtures, manifest)
    protocol_modes = tuple(dict.fromkeys("image" if mode == SNAPPED_IMAGE else mode for mode in modes))
    config = EvaluationConfig(modes=protocol_modes, negative_source="text")
    if cache is None:
        if set(protocol_modes) != {"text"}:
            raise OmniSepError("Image, audio and composed queries need the embedding cache (--cache).")
        table = _BankTable(test_set.items, bank)
    else:
        table = load_query_table(test_set, needed_items(test_set, config), cache, None)
    builder = QueryBuilder(test_set, table, config, bank)
    dataset = MixtureDataset(test_set.items, table, training=False, num_sources=len(test_set.mixtures[0]),
                             mixtures=test_set.mixtures)
    if every < 1:
        raise OmniSepError(f"--every must be at least 1, got {every}.")
    indices = list(range(0, len(test_set.mixtures), every))[:limit]
    count = len(indices)
    scores: dict[str, dict[str, list]] = {mode: defaultdict(list) for mode in modes}
    choices_log: dict[str, dict[str, dict]] = {mode: defaultdict(lambda: {"hit": 0, "own": 0, "none": 0, "n": 0}) for mode in modes}
    settings = [(source, n, similarity) for source, n, similarity in itertools.product(sources, counts, similarities)
                if source != "residual-audio" or (n, similarity) == (1, 1.01)]
    if "residual-audio" in sources and ("residual-audio", 1, 1.01) not in settings:
        settings.append(("residual-audio", 1, 1.01))
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, unit="mixture", desc="auto-negative", dynamic_ncols=True)
    for done, index in enumerate(indices):
        example = dataset[index]
        sources_ = example["sources"]
        target, interferer = sources_[0].numpy(), sources_[1:].sum(0).numpy()
        mixture = example["mixture"]
        target_item, *interferers = test_set.mixtures[index]
        target_label = test_set.items[target_item].label
        interferer_labels = {test_set.items[i].label for i in interferers}
        mixture_sdr = sdr(target, mixture.numpy())
        valid = mixture_sdr is not None and not is_silent(interferer[:SCORED_LENGTH])
        one_pass = _OnePass(model, mixture)
        scanned = {"mixture": one_pass.scan(bank, mixture.numpy(), verification=verification)}
        for mode in modes:
            query = builder.base_query(target_item, "image" if mode == SNAPPED_IMAGE else mode, index)
            if query is None:
                continue
            if mode == SNAPPED_IMAGE:
                query, snapped_to = pictures.snap(query, test_set.items[target_item].image, bank)
                stats = choices_log[mode]["picture Query-Aug"]
                stats["n"] += 1
                stats["hit"] += snapped_to == target_label
                stats["none"] += snapped_to is None
                stats["own"] += snapped_to is not None and snapped_to != target_label  # snapped to a wrong label
            plain_terms = contrast_terms([(query, 1.0)], background, strength)
            keyed: dict[str, list] = {"plain": plain_terms}
            oracle = builder.negative_query(interferers, mode, index)
            for alpha in alphas:
                keyed[f"oracle/a{alpha:g}"] = subtract(query, oracle, alpha)
            if controls:
                own = int(negatives.similarities(query, bank).argmax())
                rng = np.random.default_rng([1234, index, (*MODES, SNAPPED_IMAGE).index(mode)])
                other = int(rng.choice([i for i in range(len(bank.labels)) if i != own]))
                for alpha in alphas:
                    keyed[f"control/random/a{alpha:g}"] = subtract(query, bank.embeddings[other], alpha)
                    keyed[f"control/scaled/a{alpha:g}"] = (
                        [(query, 1.0 + alpha)] if negative_mode == "logit" else [((1.0 + alpha) * query, 1.0)]
                    )
            if "residual" in sources:
                plain = one_pass.separate(query[None], mixture.shape[-1])[0]
                scanned["residual"] = scan(loaded, mixture.numpy() - plain, 16000, verify=verification or False)
            tags = evidence = None
            if tagging is not None or encoder is not None:
                # What the query as users get it (with the contrast) leaves, separated once for both ears:
                # the sound tagger and the query encoder.
                plain = one_pass.separate(QueryRows.from_terms([plain_terms], gate), mixture.shape[-1])[0]
                if tagging is not None:
                    tags = negatives.ResidualTags.of(tagging, 16000, mixture.numpy(), plain)
                if encoder is not None:
                    evidence = negatives.ResidualEvidence.of(encoder, 16000, mixture.numpy(), plain)
            for source, n, similarity in settings:
                if source == "residual-audio":
                    for alpha in alphas:
                        keyed[setting_key(source, n, similarity, alpha)] = (
                            plain_terms if evidence is None else subtract(query, evidence.to(query.dtype), alpha)
                        )
                    continue
                setting = negatives.AutoNegative(n, min(similarity, 1.0))
                if source in RESIDUAL_TAGGER_SOURCES:
                    chosen = negatives.choose_by_tags(tags, query, bank, setting,
                                                      scanned["mixture"] if source.startswith("mixture") else None)
                elif source == "mixture+residual":
                    chosen = negatives.choose_combined(scanned["mixture"], evidence, query, bank, setting)
                elif source in RESIDUAL_EMBEDDING_SOURCES and evidence is None:
                    chosen = []  # nothing audible left: nothing to subtract
                elif source == "residual-label":
                    chosen = negatives.choose_by_embedding(evidence, query, bank, setting)
                elif source in RERANKED_CANDIDATES:
                    chosen = negatives.choose_reranked(scanned["mixture"], evidence, query, bank, setting,
                                                       RERANKED_CANDIDATES[source])
                else:
                    chosen = negatives.choose(scanned[source], query, bank, setting)
                labels = {c.label for c in chosen}
                stats = choices_log[mode][f"auto/{source}/n{n}/sim{similarity:g}"]
                stats["n"] += 1
                stats["hit"] += bool(labels & interferer_labels)
                stats["own"] += target_label in labels
                stats["none"] += not chosen
                for alpha in alphas:
                    keyed[setting_key(source, n, similarity, alpha)] = (
                        subtract(query, negatives.negative_vector(bank, chosen), alpha) if chosen else plain_terms
                    )
            # Equal rows are asked once (QueryRows.from_terms); each key gets its own output.
            estimates = one_pass.separate(QueryRows.from_terms(list(keyed.values()), gate), SCORED_LENGTH)
            for position, name in enumerate(keyed):
                value = None
                if valid:
                    estimate = estimates[position]
                    complement = mixture.numpy()[:SCORED_LENGTH] - estimate
                    score = None if is_silent(complement) else sdr(target, estimate)
                    value = None if score is None else score - mixture_sdr
                scores[mode][name].append(value)
        if bar is not None:
            bar.update(1)
        if partial is not None and (done + 1) % 20 == 0:
            fileio.write_text(partial, json.dumps(_package(checkpoint, mixtures, done + 1, started, counts, alphas, similarities,
                                                           sources, scores, choices_log, negative_mode, every)), fsync=False)
    if bar is not None:
        bar.close()
    data = _package(checkpoint, mixtures, count, started, counts, alphas, similarities, sources, scores, choices_log,
                    negative_mode, every)
    if pictures is not None:
        data["pictures"] = {"heads": pictures.heads, "calibration": pictures.calibration}
    return data


def _package(checkpoint, mixtures, count, started, counts, alphas, similarities, sources, scores, choices_log,
             negative_mode="proportional", every=1) -> dict:
    return {
        "checkpoint": str(checkpoint),
        "negative_mode": negative_mode,
        "mixtures": str(mixtures),
        "count": count,
        "every": every,
        "seconds": round(time.perf_counter() - started, 1),
        "grid": {"counts": list(counts), "alphas": list(alphas), "similarities": list(similarities), "sources": list(sources)},
        "scores": {mode: dict(values) for mode, values in scores.items()},
        "choices": {mode: {k: dict(v) for k, v in values.items()} for mode, values in choices_log.items()},
    }


def save_run(data: dict, path) -> Path:
    """A :func:`run`'s data with its summary (:func:`summarize_run`), written atomically to ``path`` (a .json)."""
    from omnisep import fileio

    data["summary"] = summarize_run(data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with fileio.output_errors(path):
        fileio.write_text(path, json.dumps(data))
    return path


def _paired(values: list, reference: list) -> tuple[list[float], list[float]]:
    pairs = [(v, r) for v, r in zip(values, reference) if v is not None and r is not None]
    return [v for v, _ in pairs], [r for _, r in pairs]


def summarize_run(data: dict) -> dict:
    """Per mode and key: mean SDRi, SEM, and the paired gain over the plain query."""
    out = {}
    for mode, keyed in data["scores"].items():
        plain = keyed.get("plain")
        if plain is None:
            continue
        rows = {}
        for key, values in keyed.items():
            kept, base = _paired(values, plain)
            if not kept:
                continue
            summary = summarize(kept)
            gains = np.asarray(kept) - np.asarray(base)
            rows[key] = {
                "sdri": summary.mean,
                "sem": summary.sem,
                "median": summary.median,
                "n": len(kept),
                "gain": float(gains.mean()),
                "gain_sem": float(gains.std(ddof=1) / math.sqrt(len(gains))) if len(gains) > 1 else 0.0,
            }
        out[mode] = rows
    return out


def choose_defaults(summary: dict, alpha: float | None = None) -> str:
    """The automatic setting with the best mean SDRi over the modes, at ``alpha`` (the strength users get
    by default; None: any), preferring settings no worse than the plain query on average in every mode.

    When no setting meets that, the best one is returned all the same (``meets_target`` says so).
    """
    keys = set.intersection(*(set(k for k in rows if k.startswith("auto/")) for rows in summary.values()))
    if alpha is not None:
        keys = {k for k in keys if k.endswith(f"/a{alpha:g}")}
    if not keys:
        raise OmniSepError("The runs hold no automatic setting to choose from.")

    def rank(key):
        safe = all(rows[key]["gain"] >= 0 for rows in summary.values())
        return (safe, float(np.mean([rows[key]["sdri"] for rows in summary.values()])), -int(key.split("/n")[1].split("/")[0]))

    return max(sorted(keys), key=rank)


def meets_target(summary: dict, key: str) -> bool:
    return all(rows[key]["gain"] >= 0 for rows in summary.values())


def report(summary: dict, chosen: str, choices: dict | None = None) -> str:
    """A Markdown table: plain, oracle (alpha 0.5 and the chosen alpha), the chosen automatic setting."""
    alpha = chosen.rsplit("/a", 1)[1]
    lines = [
        f"automatic setting: `{chosen}`",
        "",
        "| query | no negative | oracle NQ, α=0.5 | oracle NQ, α=" + alpha + " | automatic NQ | auto gain / oracle gain (α=" + alpha + ") | interferer chosen | own label chosen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, rows in summary.items():
        plain, oracle05, oracle, auto = rows["plain"], rows.get("oracle/a0.5"), rows[f"oracle/a{alpha}"], rows[chosen]
        share = auto["gain"] / oracle["gain"] if oracle["gain"] > 0 else float("nan")
        stats = (choices or {}).get(mode, {}).get(chosen.rsplit("/a", 1)[0])
        hit = f"{stats['hit'] / stats['n']:.0%}" if stats else "-"
        own = f"{stats['own'] / stats['n']:.0%}" if stats else "-"
        lines.append(
            f"| {mode} | {plain['sdri']:.2f} ± {plain['sem']:.2f} | "
            + ("-" if oracle05 is None else f"{oracle05['sdri']:.2f} ({oracle05['gain']:+.2f})") + " "
            f"| {oracle['sdri']:.2f} ({oracle['gain']:+.2f}) | {auto['sdri']:.2f} ({auto['gain']:+.2f} ± {auto['gain_sem']:.2f}) "
            f"| {share:.0%} | {hit} | {own} |"
        )
    return "\n".join(lines)


def controls_table(summary: dict, chosen: str) -> str:
    """What the scan's choice adds: the same alpha with a random other label, and with nothing subtracted."""
    alpha = chosen.rsplit("/a", 1)[1]
    lines = [
        "| query | no negative | oracle NQ | automatic NQ | random other label as NQ | (1 + α) q, nothing subtracted |",
        "|---|---|---|---|---|---|",
    ]
    for mode, rows in summary.items():
        keys = ["plain", f"oracle/a{alpha}", chosen, f"control/random/a{alpha}", f"control/scaled/a{alpha}"]
        if not all(key in rows for key in keys):
            continue
        cells = [f"{rows[k]['sdri']:.2f}" + ("" if k == "plain" else f" ({rows[k]['gain']:+.2f})") for k in keys]
        lines.append(f"| {mode} (n={rows['plain']['n']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def sweep_table(summary: dict, source: str) -> str:
    """Mean SDRi gain over no negative, averaged over the modes, for every (labels, cut-off) x alpha."""
    keys = sorted({k for rows in summary.values() for k in rows if k.startswith(f"auto/{source}/")})
    settings = sorted({k.rsplit("/a", 1)[0] for k in keys}, key=lambda s: (int(s.split("/n")[1].split("/")[0]), float(s.split("sim")[1])))
    alphas = sorted({float(k.rsplit("/a", 1)[1]) for k in keys})
    lines = ["| labels, cut-off | " + " | ".join(f"α={a:g}" for a in alphas) + " |", "|---" * (len(alphas) + 1) + "|"]
    for setting in settings:
        cells = []
        for alpha in alphas:
            key = f"{setting}/a{alpha:g}"
            gains = [rows[key]["gain"] for rows in summary.values() if key in rows]
            cells.append(f"{np.mean(gains):+.2f}" if gains else "-")
        n, sim = setting.split("/n")[1].split("/sim")
        lines.append(f"| {n}, {'own only' if float(sim) > 1 else sim} | " + " | ".join(cells) + " |")
    # Merged runs may sweep different strengths per mode: each cell averages the modes that ran it.
    oracle = [f"{np.mean([rows[f'oracle/a{a:g}']['gain'] for rows in summary.values() if f'oracle/a{a:g}' in rows]):+.2f}"
              for a in alphas]
    lines.append("| *oracle (interferer's label)* | " + " | ".join(oracle) + " |")
    return "\n".join(lines)


def merge(paths) -> dict:
    """Runs of the same mixtures with different modes, as one run."""
    runs = [json.loads(Path(path).read_text()) for path in paths]
    merged = dict(runs[0])
    merged["counts"] = {mode: _sample(runs[0]) for mode in runs[0]["scores"]}
    for path, other in zip(paths[1:], runs[1:]):
        if other["mixtures"] != merged["mixtures"]:
            raise OmniSepError(f"Run {describe(path)} comes from another mixture list than {describe(paths[0])}; merged runs must share one.")
        for key in ("scores", "choices"):
            merged[key] = {**merged[key], **other[key]}
        merged["counts"].update({mode: _sample(other) for mode in other["scores"]})
        merged["seconds"] = merged["seconds"] + other["seconds"]
    merged["count"] = max(run["count"] for run in runs)
    merged["summary"] = summarize_run(merged)
    return merged


def _sample(run: dict) -> str:
    """Which mixtures of its list a run scored, in words."""
    from omnisep.evaluation.reports import describe_sample

    return describe_sample(run["count"], run.get("every", 1))


def write_report(validation, test, out, controls=None, alpha: float | None = None, setting: str | None = None) -> str:
    """Choose the setting on the ``validation`` runs, report it on the ``test`` runs: OUT/results.md, OUT/summary.json.

    ``alpha``: choose only among settings at that strength (:func:`choose_defaults`). ``setting``: report
    this key instead of choosing (the one a model ships with, when the choice rests on more than these runs).

    Each of ``validation`` and ``test`` is a list of run files (:func:`save_run`), merged with
    :func:`merge` (later runs override earlier ones for the modes they share); ``controls``: a
    test run whose controls table is shown (default: the merged test runs). Returns the Markdown.
    """
    from omnisep import fileio

    val, tst = merge(validation), merge(test)
    best = choose_defaults(val["summary"], alpha=alpha)
    chosen = setting or best
    if any(chosen not in rows for rows in val["summary"].values()):
        raise OmniSepError(f"The validation runs hold no setting {chosen!r}.")
    safe = meets_target(val["summary"], chosen)
    sources = val["grid"]["sources"]
    text = [
        "# Automatic negative query",
        "",
        "Setting chosen on the validation mixtures, reported on the test mixtures; mixtures per query mode: "
        f"validation {val['counts']}, test {tst['counts']}.",
        "SDRi in dB, mean ± SEM over the mixtures a query mode can be formed for; gains in brackets are paired",
        "differences to the same query without a negative. Model: `" + str(tst["checkpoint"]) + "`.",
        "" if chosen == best else f"Reported: the model's setting `{chosen}`; the best on validation alone is `{best}`.",
        "",
        ("" if safe else "**No automatic setting is, on average, at least as good as no negative in every mode on "
         "the validation mixtures; the least harmful one is shown.**"),
        "",
        "## Test mixtures",
        "",
        report(tst["summary"], chosen, tst.get("choices")),
        "",
        "## Validation mixtures (where the setting was chosen)",
        "",
        report(val["summary"], chosen, val.get("choices")),
        "",
    ]
    for name, run_ in (("test", tst), ("validation", val)):
        stats = (run_.get("choices") or {}).get(SNAPPED_IMAGE, {}).get("picture Query-Aug")
        if stats:
            text += [f"Picture Query-Aug on the {name} pictures (mode {SNAPPED_IMAGE}): snapped to their own label "
                     f"{stats['hit']} of {stats['n']} times, to another label {stats['own']}, left unsnapped {stats['none']}"
                     + (f" (recogniser: `{run_['pictures']['heads']}`)." if run_.get("pictures") else "."), ""]
    control_run = merge([controls]) if controls else tst
    table = controls_table(control_run["summary"], chosen)
    if table:
        text += [f"## Controls on the test mixtures (α = {chosen.rsplit('/a', 1)[1]}; mixtures: {_sample(control_run)})", "",
                 "What the scan's choice adds over subtracting any other label, and over scaling the query alone.", "",
                 table, ""]
    for source in sources:
        text += [f"## Sweep on the validation mixtures (labels from: {SOURCE_NAMES.get(source, source)}): mean gain over no negative, "
                 "averaged over the modes", "",
                 sweep_table(val["summary"], source), ""]
        text += ["## The same sweep on the test mixtures (for reference; not used to choose)", "", sweep_table(tst["summary"], source), ""]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fileio.write_text(out / "results.md", "\n".join(text))
    fileio.write_json(out / "summary.json", {"chosen": chosen, "best_on_validation": best, "validation": val["summary"], "test": tst["summary"],
                                             "choices_test": tst.get("choices"), "seconds": [val["seconds"], tst["seconds"]]})
    return "\n".join(text)
