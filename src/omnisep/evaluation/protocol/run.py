"""The run loop: load the model and the queries, separate each batch once, score in the pool, stream scores."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch

from omnisep.data.mixtures import TestSet
from omnisep.errors import OmniSepError, describe
from omnisep.evaluation.protocol.config import EvaluationConfig
from omnisep.evaluation.protocol.oracles import oracle_estimates
from omnisep.evaluation.protocol.plan import ORACLE_KEYS, plan_rows
from omnisep.evaluation.protocol.pool import make_pool, score_job
from omnisep.evaluation.protocol.queries import QueryBuilder, check_descriptions, load_query_table, needed_items
from omnisep.evaluation.protocol.results import EvaluationResult, assemble
from omnisep.evaluation.reports import ScoreLog


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
    config = config.resolved(loaded.config, checkpoint)
    model = loaded.model.eval()
    check_descriptions(config, test_set, descriptions_path)
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

    table = load_query_table(test_set, needed_items(test_set, config), cache, encoder)
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
    pool = make_pool(config.workers)
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
    return assemble(results, table1, table3, sweep_plan, count, time.perf_counter() - started, scores_path)


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


def separated_estimates(model, mixture: torch.Tensor, queries: torch.Tensor, config) -> torch.Tensor:
    """``[Q, length]``: exactly what ``omnisep separate`` writes for the mixture at 16 kHz, cut to the scored length."""
    from omnisep.apply import separate_tensor

    estimates = separate_tensor(model, mixture, queries, binary=config.binary_mask)[..., : config.length]
    short = config.length - estimates.shape[-1]
    return torch.nn.functional.pad(estimates, (0, short)) if short > 0 else estimates
