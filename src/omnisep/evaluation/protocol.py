"""The paper's evaluation protocol: every query mode of Table 1 in one run.

One U-Net pass per test item serves every query of the run (the U-Net never
sees the query), so the cost is the metrics, which run in a process pool
while the main process separates the next items.

Queries, per test item (target T, interferer I, mixture = T/2 + I/2):

* text: the embedding of T's raw class label;
* image: T's own image embedding (its frames, as cached);
* audio: the mean of ``audio_clips`` (S) audio embeddings of T's class drawn
  from the TRAINING split with a seed per class, normalised;
* composed: ``normalize((2 image + 2 text + audio) / 5)`` (weights configurable);
* each with a negative query (eq. 4) from I's label by default (or I's image or
  audio, or the same modality as the query), alpha 0.5, proportional form;
* Query-Aug (Table 3): the label, or a free-form description of it, each with
  and without snapping to the checkpoint's QueryBank (eq. 5);
* the alpha sweep (Fig. 2): proportional vs naive negatives over a grid of alphas;
* and, for scale, the unprocessed mixture and two oracles computed on the
  sources' STFT and reconstructed through the same masked iSTFT as the model:
  the ideal binary mask ``|S_T| > 0.5 |X|`` (the training target, in linear
  frequency) and the ideal ratio mask ``|S_T| / (|S_T| + |S_I|)``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from omnisep.errors import OmniSepError, describe
from omnisep.evaluation import metrics as metric_functions
from omnisep.evaluation.metrics import BACKENDS, SCORED_LENGTH, ItemScore, MixtureScore, Summary
from omnisep.evaluation.reports import ConditionResult, ScoreLog

QUERY_MODES = ("text", "image", "audio", "composed")
NEGATIVE_SOURCES = ("text", "image", "audio", "same")
MODE_GROUPS = {
    "text": "Text-queried (TQSS)",
    "image": "Image-queried (IQSS)",
    "audio": "Audio-queried (AQSS)",
    "composed": "Composed omni-modal query",
}
QUERY_AUG_GROUP = "Query-Aug (Table 3)"
DEFAULT_SWEEP = tuple(round(0.25 * i, 2) for i in range(9))  # 0, 0.25, ..., 2


@dataclasses.dataclass
class EvaluationConfig:
    modes: tuple[str, ...] = QUERY_MODES
    with_negative: bool = True
    negative_source: str = "text"
    alpha: float = 0.5
    negative_mode: str = "proportional"
    audio_clips: int = 5
    omni_weights: tuple[float, float, float] = (2.0, 2.0, 1.0)  # image, text, audio
    oracles: bool = True
    backend: str = "museval"
    workers: int = 2
    binary_mask: bool = False
    alpha_sweep: tuple[float, ...] = ()
    sweep_modes: tuple[str, ...] = ("text", "image", "audio")
    descriptions: dict[str, list[str]] | None = None
    seed: int = 1234
    limit: int | None = None
    batch_size: int = 1
    length: int = SCORED_LENGTH
    device: str = "cpu"

    def validate(self) -> None:
        unknown = [m for m in self.modes if m not in QUERY_MODES]
        if unknown or not self.modes:
            raise OmniSepError(f"evaluate: unknown query mode(s) {unknown or '[]'}; choose from {', '.join(QUERY_MODES)}.")
        if self.negative_source not in NEGATIVE_SOURCES:
            raise OmniSepError(f"evaluate: the negative query source must be one of {', '.join(NEGATIVE_SOURCES)}, got {self.negative_source!r}.")
        if self.backend not in BACKENDS:
            raise OmniSepError(f"evaluate: unknown metrics backend {self.backend!r}; choose {' or '.join(BACKENDS)}.")
        if self.audio_clips < 1:
            raise OmniSepError(f"evaluate: the audio query needs at least 1 training clip per class, got {self.audio_clips}.")
        if self.workers < 0 or self.batch_size < 1:
            raise OmniSepError("evaluate: workers must be >= 0 and the batch size >= 1.")
        if self.limit is not None and self.limit < 1:
            raise OmniSepError(f"evaluate: --limit must be at least 1, got {self.limit}.")
        for alpha in (self.alpha, *self.alpha_sweep):
            if not math.isfinite(alpha) or alpha < 0:
                raise OmniSepError(f"evaluate: alpha must be a finite number >= 0, got {alpha}.")
        sweep_unknown = [m for m in self.sweep_modes if m not in QUERY_MODES]
        if sweep_unknown:
            raise OmniSepError(f"evaluate: unknown sweep mode(s) {sweep_unknown}; choose from {', '.join(QUERY_MODES)}.")

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["descriptions"] = None if self.descriptions is None else f"{len(self.descriptions)} labels"
        return values


@dataclasses.dataclass(frozen=True)
class QuerySpec:
    """How one query is built for an item; equal specs share one estimate and one score."""

    modality: str  # text | image | audio | composed | description
    query_aug: bool = False
    alpha: float = 0.0
    negative_mode: str = "none"

    @classmethod
    def make(cls, modality: str, query_aug: bool = False, alpha: float = 0.0, negative_mode: str = "proportional") -> "QuerySpec":
        # alpha = 0 is "no negative query" in both forms of eq. 4.
        if alpha == 0:
            return cls(modality, query_aug, 0.0, "none")
        return cls(modality, query_aug, float(alpha), negative_mode)

    @property
    def key(self) -> str:
        parts = [self.modality]
        if self.query_aug:
            parts.append("aug")
        if self.negative_mode != "none":
            parts.append(f"neg-{self.negative_mode}-{self.alpha:g}")
        return "/".join(parts)


ORACLE_KEYS = ("oracle/ibm", "oracle/irm")


@dataclasses.dataclass(frozen=True)
class Row:
    """One table row: a name, its group, and the estimate it scores."""

    name: str
    group: str
    key: str  # a QuerySpec key, an oracle key, or "mixture"


def plan_rows(config: EvaluationConfig) -> tuple[list[Row], list[Row], dict[tuple[str, str], list[tuple[float, str]]], list[QuerySpec]]:
    """Table 1 rows, Table 3 rows, the sweep's (modality, mode) -> [(alpha, key)], and the unique query specs."""
    specs: dict[str, QuerySpec] = {}

    def use(spec: QuerySpec) -> str:
        specs.setdefault(spec.key, spec)
        return spec.key

    table1 = [Row("Unprocessed mixture", "Reference", "mixture")]
    if config.oracles:
        table1 += [Row("Oracle ideal binary mask", "Reference", "oracle/ibm"), Row("Oracle ideal ratio mask", "Reference", "oracle/irm")]
    negative_source = config.negative_source
    for mode in config.modes:
        group = MODE_GROUPS[mode]
        table1.append(Row(f"{mode} query", group, use(QuerySpec.make(mode))))
        if config.with_negative:
            source = mode if negative_source == "same" else negative_source
            name = f"{mode} query + NQ ({source}, α={config.alpha:g}, {config.negative_mode})"
            table1.append(Row(name, group, use(QuerySpec.make(mode, alpha=config.alpha, negative_mode=config.negative_mode))))

    table3: list[Row] = []
    if config.descriptions is not None:
        table3 = [
            Row("class labels", QUERY_AUG_GROUP, use(QuerySpec.make("text"))),
            Row("class labels + Query-Aug", QUERY_AUG_GROUP, use(QuerySpec.make("text", query_aug=True))),
            Row("free-form descriptions", QUERY_AUG_GROUP, use(QuerySpec.make("description"))),
            Row("free-form descriptions + Query-Aug", QUERY_AUG_GROUP, use(QuerySpec.make("description", query_aug=True))),
        ]

    sweep: dict[tuple[str, str], list[tuple[float, str]]] = {}
    if config.alpha_sweep:
        for mode in config.sweep_modes:
            if mode not in config.modes:
                continue
            for negative_mode in ("proportional", "naive"):
                sweep[(mode, negative_mode)] = [
                    (alpha, use(QuerySpec.make(mode, alpha=alpha, negative_mode=negative_mode))) for alpha in config.alpha_sweep
                ]
    return table1, table3, sweep, list(specs.values())


# ----------------------------------------------------------------------------- test set


@dataclasses.dataclass
class TestSet:
    """A fixed list of mixtures over the items of a manifest."""

    manifest_path: Path
    mixture_path: Path
    items: list  # ManifestItem
    mixtures: list[list[int]]  # item indices: target first, then interferers
    mixture_ids: list[str]


def load_test_set(mixture_path: str | os.PathLike, manifest_path: str | os.PathLike | None = None) -> TestSet:
    """Read a mixture list (JSONL rows {"id", "target", "interferers", "seed"}) and its manifest.

    The manifest defaults to ``manifest.jsonl`` beside the mixture list, as the
    corpus and dataset recipes write them. Every audio file a mixture needs
    must exist: a missing one is reported before any work starts.
    """
    from omnisep.data.manifest import read_manifest
    from omnisep.data.mixing import read_mixture_list

    mixture_path = Path(mixture_path)
    if not mixture_path.is_file():
        raise OmniSepError(f"Test set {describe(mixture_path)} does not exist.")
    if manifest_path is None:
        manifest_path = mixture_path.parent / "manifest.jsonl"
        if not manifest_path.is_file():
            raise OmniSepError(
                f"Test set {describe(mixture_path)} has no manifest.jsonl beside it; name the manifest with --manifest."
            )
    manifest_path = Path(manifest_path)
    items = read_manifest(manifest_path)
    num_sources = _sources_per_row(mixture_path)
    mixtures = read_mixture_list(mixture_path, items, num_sources)
    ids = _mixture_ids(mixture_path)
    missing = sorted({str(items[i].audio) for row in mixtures for i in row if not Path(items[i].audio).is_file()})
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise OmniSepError(
            f"Test set {describe(mixture_path)} needs audio files that do not exist: {describe(missing[0])}{more}."
        )
    return TestSet(manifest_path, mixture_path, items, mixtures, ids)


def _sources_per_row(path: Path) -> int:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                    return 1 + len(row["interferers"])
                except (ValueError, KeyError, TypeError):
                    raise OmniSepError(
                        f"Test set {describe(path)}: the first row is not {{\"target\": id, \"interferers\": [id, ...]}}."
                    ) from None
    raise OmniSepError(f"Test set {describe(path)} lists no mixtures.")


def _mixture_ids(path: Path) -> list[str]:
    ids = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                ids.append(str(row.get("id", f"{row['target']}+{'+'.join(row['interferers'])}")))
    return ids


# ----------------------------------------------------------------------------- queries


class QueryBuilder:
    """Builds every query of a run for one mixture from cached (or computed) embeddings."""

    def __init__(self, test_set: TestSet, table, config: EvaluationConfig, bank=None, encoder=None):
        self.test_set = test_set
        self.table = table  # data.mixing.QueryTable
        self.config = config
        self.bank = bank
        self._class_audio: dict[str, torch.Tensor] = {}
        self._description_vectors: dict[str, torch.Tensor] = {}
        if config.descriptions is not None:
            if encoder is None:
                raise ValueError("free-form descriptions need an encoder")
            texts = sorted({d for label in self._target_labels() for d in config.descriptions[label]})
            self._description_vectors = dict(zip(texts, encoder.embed_text(texts)))

    def _target_labels(self) -> list[str]:
        items = self.test_set.items
        return sorted({items[row[0]].label for row in self.test_set.mixtures})

    def modality(self, item_index: int, modality: str) -> torch.Tensor | None:
        item = self.test_set.items[item_index]
        if modality == "audio":
            return self.class_audio(item.label)
        rows, available = self.table.get(item.id)
        position = ("text", "image", "audio").index(modality)
        return rows[position] if bool(available[position]) else None

    def class_audio(self, label: str) -> torch.Tensor:
        """Mean of S training clips' audio embeddings of a class (seeded per class), normalised."""
        if label in self._class_audio:
            return self._class_audio[label]
        candidates = [
            item for item in self.test_set.items if item.label == label and (item.split or "").lower() == "train"
        ]
        if not candidates:
            raise OmniSepError(
                f"Manifest {describe(self.test_set.manifest_path)} has no training clip of class '{label}' "
                "for its audio query; evaluate without the audio mode (--modes text,image,composed)."
            )
        rng = np.random.default_rng([self.config.seed, zlib.crc32(label.encode("utf-8"))])
        order = rng.permutation(len(candidates))
        vectors = []
        for index in order:
            rows, available = self.table.get(candidates[index].id)
            if bool(available[2]):
                vectors.append(torch.nn.functional.normalize(rows[2], dim=-1))
            if len(vectors) == self.config.audio_clips:
                break
        if not vectors:
            raise OmniSepError(f"No training clip of class '{label}' has an audio embedding for its audio query.")
        query = torch.nn.functional.normalize(torch.stack(vectors).mean(0), dim=-1)
        self._class_audio[label] = query
        return query

    def base_query(self, item_index: int, modality: str, mixture_index: int) -> torch.Tensor:
        from omnisep.queries import normalize, omni_query

        if modality == "composed":
            image, text, audio = (self.modality(item_index, m) for m in ("image", "text", "audio"))
            return omni_query(image, text, audio, self.config.omni_weights)
        if modality == "description":
            label = self.test_set.items[item_index].label
            choices = self.config.descriptions[label]
            rng = np.random.default_rng([self.config.seed, mixture_index])
            return self._description_vectors[choices[int(rng.integers(len(choices)))]]
        vector = self.modality(item_index, modality)
        # An item without this modality (a class with no picture, say) cannot be
        # queried that way: the caller skips that row for this mixture.
        return None if vector is None else normalize(vector)

    def negative_query(self, interferers: Sequence[int], modality: str, mixture_index: int) -> torch.Tensor:
        from omnisep.queries import compose

        source = modality if self.config.negative_source == "same" else self.config.negative_source
        if source == "description":
            source = "text"
        parts = [self.base_query(index, source, mixture_index) for index in interferers]
        if any(part is None for part in parts):
            return None
        return compose(parts, [1.0] * len(parts))

    def build(self, mixture_index: int, specs: Sequence[QuerySpec]) -> tuple[torch.Tensor, list[bool]]:
        """The queries of one mixture ``[len(specs), D]`` and whether each could be formed.

        A query whose modality the target (or, for a negative query, an
        interferer) lacks is a zero placeholder, and its row is counted as
        skipped for this mixture.
        """
        from omnisep.queries import negative

        target, *interferers = self.test_set.mixtures[mixture_index]
        queries, available = [], []
        for spec in specs:
            query = self.base_query(target, spec.modality, mixture_index)
            if query is not None and spec.query_aug:  # eq. 5 comes before the negative query
                if self.bank is None:
                    raise OmniSepError("The checkpoint has no Query-Aug bank, so Query-Aug cannot be evaluated.")
                query = self.bank.retrieve(query)[0]
            if query is not None and spec.negative_mode != "none":
                query_negative = self.negative_query(interferers, spec.modality, mixture_index)
                query = None if query_negative is None else negative(query, query_negative, spec.alpha, spec.negative_mode)
            available.append(query is not None)
            queries.append(query)
        placeholder = torch.zeros(self.table.dim)
        return torch.stack([placeholder if q is None else q for q in queries]), available


# ----------------------------------------------------------------------------- separation


def oracle_estimates(target: torch.Tensor, interferer: torch.Tensor, mixture: torch.Tensor, length: int) -> torch.Tensor:
    """Ideal binary and ratio masks on the sources' STFT, through the model's masked iSTFT: ``[2, length]``."""
    from omnisep import spectral

    spec = spectral.stft(torch.stack([target, interferer, mixture]).double())
    target_mag, interferer_mag, mixture_mag = spec.abs()
    ibm = (target_mag > 0.5 * mixture_mag).to(spec.real.dtype)
    irm = target_mag / (target_mag + interferer_mag).clamp_min(1e-12)
    masked = torch.stack([ibm, irm]) * spec[2]
    return spectral.istft(masked, length).float()


# ----------------------------------------------------------------------------- metrics jobs


def _init_worker() -> None:
    # Each worker is one process on one core: torch must not spawn its own threads.
    torch.set_num_threads(1)


def score_job(job: dict) -> dict:
    """Score every estimate of one mixture (runs in a pool worker)."""
    target, interferer, mixture = job["target"], job["interferer"], job["mixture"]
    backend, length = job["backend"], job["length"]
    mixture_score = metric_functions.score_mixture(target, interferer, mixture, backend, length)
    scores = {}
    for key, estimate in zip(job["keys"], job["estimates"]):
        if mixture_score is None or key in job.get("unavailable", ()):
            scores[key] = None
            continue
        score = metric_functions.score_estimate(target, interferer, mixture, estimate, mixture_score, backend, length)
        scores[key] = None if score is None else score.to_dict()
    return {
        "index": job["index"],
        "mixture": None if mixture_score is None else dataclasses.asdict(mixture_score),
        "scores": scores,
    }


class _InProcessPool:
    """The pool interface for workers=0: simple, debuggable, used by tests."""

    class _Done:
        def __init__(self, value):
            self._value = value

        def get(self):
            return self._value

    def apply_async(self, function, args):
        return self._Done(function(*args))

    def terminate(self):
        pass

    def close(self):
        pass

    def join(self):
        pass


# ----------------------------------------------------------------------------- run


@dataclasses.dataclass
class EvaluationResult:
    table1: list[ConditionResult]
    table3: list[ConditionResult]
    sweep: dict[tuple[str, str], list[tuple[float, Summary]]]
    skipped_items: int
    items: int
    seconds: float
    scores_path: Path | None


def _load_queries_table(test_set: TestSet, needed: set[int], cache_path, encoder):
    from omnisep.data.mixing import QueryTable

    items = [test_set.items[i] for i in sorted(needed)]
    if cache_path is not None:
        from omnisep.data.cache import EmbeddingCache

        return QueryTable(items, cache=EmbeddingCache(cache_path))
    return QueryTable(items, encoder=encoder)


def _needed_items(test_set: TestSet, config: EvaluationConfig) -> set[int]:
    needed = {i for row in test_set.mixtures for i in row}
    if "audio" in config.modes or "composed" in config.modes or config.negative_source == "audio":
        labels = {test_set.items[i].label for i in needed}
        needed |= {
            i for i, item in enumerate(test_set.items) if item.label in labels and (item.split or "").lower() == "train"
        }
    return needed


def _check_descriptions(config: EvaluationConfig, test_set: TestSet, descriptions_path) -> None:
    if config.descriptions is None:
        return
    labels = sorted({test_set.items[row[0]].label for row in test_set.mixtures})
    missing = [label for label in labels if not config.descriptions.get(label)]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise OmniSepError(
            f"Descriptions file {describe(descriptions_path or 'descriptions')} has no description for class '{missing[0]}'{more}."
        )


def read_descriptions(path: str | os.PathLike) -> dict[str, list[str]]:
    """A JSON object {label: [free-form description, ...]} (the paper's Table 6 layout)."""
    path = Path(path)
    if not path.is_file():
        raise OmniSepError(f"Descriptions file {describe(path)} does not exist.")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise OmniSepError(f"Descriptions file {describe(path)} is not valid JSON ({error}).") from None
    if not isinstance(data, dict) or not all(
        isinstance(value, list) and all(isinstance(text, str) and text.strip() for text in value) for value in data.values()
    ):
        raise OmniSepError(f"Descriptions file {describe(path)} must be a JSON object {{label: [description, ...]}}.")
    return {str(label): list(texts) for label, texts in data.items()}


def evaluate(
    checkpoint: str | os.PathLike,
    test_set: TestSet,
    out_dir: str | os.PathLike,
    config: EvaluationConfig,
    *,
    cache: str | os.PathLike | None = None,
    encoder=None,
    encoder_name: str | None = None,
    encoder_options: dict | None = None,
    descriptions_path: str | os.PathLike | None = None,
    progress: bool = True,
    on_item: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Run the whole protocol; per-item scores stream to ``scores.partial.jsonl`` in ``out_dir``.

    Query embeddings come from ``cache`` (an ``omnisep embed`` cache) or are
    computed with ``encoder`` (an instance, or ``encoder_name``, by default the
    encoder the checkpoint records); either way they must come from the
    checkpoint's encoder.

    Nothing final is written here (see :func:`omnisep.evaluation.write_reports`):
    the partial file is renamed to ``scores.jsonl`` only when every item is done.
    """
    from omnisep.states import check_encoder, load_checkpoint

    config.validate()
    loaded = load_checkpoint(checkpoint, map_location=config.device)
    model = loaded.model.eval()
    _check_descriptions(config, test_set, descriptions_path)
    table1, table3, sweep_plan, specs = plan_rows(config)
    if any(spec.query_aug for spec in specs) and loaded.bank is None:
        raise OmniSepError(f"Checkpoint {describe(checkpoint)} has no Query-Aug bank, so Query-Aug cannot be evaluated.")

    needs_encoder = cache is None or config.descriptions is not None
    if encoder is None and (needs_encoder or encoder_name is not None):
        from omnisep.encoders import get_encoder

        recorded = loaded.config["encoder"]
        same = encoder_name in (None, recorded["name"])
        encoder = get_encoder(encoder_name or recorded["name"],
                              **{**((recorded.get("options") or {}) if same else {}), **(encoder_options or {})})
    if encoder is not None:
        try:
            check_encoder(loaded.config, encoder.identity())
        except OmniSepError as error:
            raise OmniSepError(f"Checkpoint {describe(checkpoint)}: {error}") from None
    if cache is not None:
        _check_cache_encoder(cache, checkpoint, loaded.config)

    table = _load_queries_table(test_set, _needed_items(test_set, config), cache, encoder)
    builder = QueryBuilder(test_set, table, config, loaded.bank, encoder)
    from omnisep.data.mixing import MixtureDataset

    num_sources = len(test_set.mixtures[0])
    dataset = MixtureDataset(test_set.items, table, training=False, num_sources=num_sources, mixtures=test_set.mixtures)
    count = len(test_set.mixtures) if config.limit is None else min(config.limit, len(test_set.mixtures))
    # Build every query up front: a missing embedding should fail in seconds, not after an hour.
    built = [builder.build(index, specs) for index in range(count)]
    queries = [query for query, _ in built]
    for column, spec in enumerate(specs):
        if not any(available[column] for _, available in built):
            raise OmniSepError(
                f"No test mixture of {describe(test_set.mixture_path)} can be queried by {spec.modality}: "
                f"its items have no {spec.modality} embedding; evaluate without the {spec.modality} mode."
            )

    keys = [spec.key for spec in specs] + (list(ORACLE_KEYS) if config.oracles else [])
    log = ScoreLog(out_dir)
    pool = _InProcessPool() if config.workers == 0 else multiprocessing.get_context("spawn").Pool(config.workers, initializer=_init_worker)
    started = time.perf_counter()
    results: dict[int, dict] = {}
    bar = _progress_bar(count, progress)
    try:
        pending = []
        max_pending = max(2, 2 * config.workers)
        for start in range(0, count, config.batch_size):
            indices = list(range(start, min(count, start + config.batch_size)))
            examples = [dataset[index] for index in indices]
            estimates = [separated_estimates(model, example["mixture"], queries[index], config) for index, example in zip(indices, examples)]
            for position, (index, example) in enumerate(zip(indices, examples)):
                sources = example["sources"]
                target, interferer, mixture = sources[0], sources[1:].sum(0), example["mixture"]
                item_estimates = estimates[position]
                if config.oracles:
                    item_estimates = torch.cat([item_estimates, oracle_estimates(target, interferer, mixture, config.length)])
                job = {
                    "index": index,
                    "target": target.numpy(),
                    "interferer": interferer.numpy(),
                    "mixture": mixture.numpy(),
                    "estimates": item_estimates.numpy(),
                    "keys": keys,
                    "unavailable": [key for key, ok in zip(keys, built[index][1]) if not ok],
                    "backend": config.backend,
                    "length": config.length,
                }
                pending.append(pool.apply_async(score_job, (job,)))
                while len(pending) >= max_pending:
                    _collect(pending.pop(0).get(), test_set, results, log, bar, on_item, count)
        while pending:
            _collect(pending.pop(0).get(), test_set, results, log, bar, on_item, count)
        pool.close()
        pool.join()
    except BaseException:
        pool.terminate()
        log.close()
        raise
    finally:
        if bar is not None:
            bar.close()
    scores_path = log.finish()
    return _assemble(results, table1, table3, sweep_plan, count, time.perf_counter() - started, scores_path)


def separated_estimates(model, mixture: torch.Tensor, queries: torch.Tensor, config) -> torch.Tensor:
    """``[Q, length]``: exactly what ``omnisep separate`` writes for the mixture at 16 kHz, cut to the scored length."""
    from omnisep.apply import separate_tensor

    estimates = separate_tensor(model, mixture, queries, binary=config.binary_mask)[..., : config.length]
    short = config.length - estimates.shape[-1]
    return torch.nn.functional.pad(estimates, (0, short)) if short > 0 else estimates


def _check_cache_encoder(cache, checkpoint, checkpoint_config: dict) -> None:
    """Refuse a cache written by another encoder than the checkpoint's."""
    from omnisep.data.cache import EmbeddingCache
    from omnisep.states import check_encoder

    try:
        check_encoder(checkpoint_config, EmbeddingCache(cache).encoder)
    except OmniSepError as error:
        raise OmniSepError(f"Embedding cache {describe(cache)} does not fit checkpoint {describe(checkpoint)}: {error}") from None


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="item", desc="evaluate", dynamic_ncols=True)


def _collect(outcome: dict, test_set: TestSet, results: dict, log: ScoreLog, bar, on_item, count: int) -> None:
    index = outcome["index"]
    results[index] = outcome
    target, *interferers = test_set.mixtures[index]
    log.write(
        {
            "mixture_id": test_set.mixture_ids[index],
            "target": test_set.items[target].id,
            "interferers": [test_set.items[i].id for i in interferers],
            "mixture_score": outcome["mixture"],
            "scores": outcome["scores"],
        }
    )
    if bar is not None:
        bar.update(1)
    if on_item is not None:
        on_item(len(results), count)


def _assemble(results: dict, table1: list[Row], table3: list[Row], sweep_plan, count: int, seconds: float, scores_path) -> EvaluationResult:
    by_key: dict[str, list[ItemScore]] = defaultdict(list)
    skipped: dict[str, int] = defaultdict(int)
    mixture_scores: list[ItemScore] = []
    skipped_items = 0
    for index in sorted(results):
        outcome = results[index]
        if outcome["mixture"] is None:
            skipped_items += 1
            continue
        mix = MixtureScore(**outcome["mixture"])
        mixture_scores.append(
            ItemScore(mix.sdr, mix.sir, mix.sar, mix.si_sdr, mix.sdr, mix.sir, mix.sar, mix.si_sdr)
        )
        for key, score in outcome["scores"].items():
            if score is None:
                skipped[key] += 1
            else:
                by_key[key].append(ItemScore.from_dict(score))

    def rows(plan: list[Row]) -> list[ConditionResult]:
        out = []
        for row in plan:
            if row.key == "mixture":
                out.append(ConditionResult(row.name, row.group, mixture_scores, skipped_items))
            else:
                out.append(ConditionResult(row.name, row.group, by_key[row.key], skipped[row.key] + skipped_items))
        return out

    sweep = {
        pair: [(alpha, metric_functions.summarize([s.sdr for s in by_key[key]])) for alpha, key in points]
        for pair, points in sweep_plan.items()
    }
    return EvaluationResult(rows(table1), rows(table3), sweep, skipped_items, count, seconds, scores_path)
