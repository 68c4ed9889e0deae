"""The training loop: Query-Mixup, weighted BCE, Adam with warm-up/decay, validation, checkpoints, resume.

A run is a pure function of its config: batches come from (seed, step,
position), the learning rate from the step, and the resume state holds the
model, the optimizer, the RNG states and the step. So a run killed at any
point and resumed reaches the same weights as one that never stopped.

Files under ``out_dir``: ``resume/state.safetensors`` (everything needed to
continue), ``last/`` and ``best/`` (inference checkpoints, best by the mean
validation loss over the query modalities), ``metrics.jsonl`` (one row per
log interval and per validation, for loss curves). With ``optim.ema_decay``
the checkpoints and the validation use the exponential moving average of the
weights, and the resume state holds it too.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.profiler import record_function

from omnisep import fileio
from omnisep.data.manifest import ManifestItem, read_manifest
from omnisep.data.mixing import MODALITIES, MixtureDataset, QueryTable
from omnisep.data.mixtures import read_mixture_list
from omnisep.encoders import get_encoder
from omnisep.encoders.base import identities_compatible
from omnisep.errors import OmniSepError, describe
from omnisep.models import MaskNetwork
from omnisep.models import build as build_network
from omnisep.models.registry import config_from_dict
from omnisep.queries import QueryBank
from omnisep.states import load_state_file, save_checkpoint, save_state_file
from omnisep.training import distributed
from omnisep.training.config import LossSection, TrainConfig
from omnisep.training.loss import batch_loss, negative_logits
from omnisep.training.schedule import WarmupLinearDecay

VALIDATION_SPLITS = ("val", "valid", "validation")
TRAINING_SPLITS = (None, "train")
VALIDATION_KEYS = (*MODALITIES, "mixup")
RESUME_FORMAT = "omnisep-resume"
RESUME_FILE = Path("resume") / "state.safetensors"


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    train_loss: float | None
    val_losses: dict[str, float]
    best_metric: float | None
    is_main: bool = True  # False in the other processes of a torchrun job


def _split_items(config: TrainConfig) -> tuple[list[ManifestItem], list[ManifestItem]]:
    items = read_manifest(config.data.train_manifest)
    train_items = [item for item in items if item.split in TRAINING_SPLITS]
    if config.data.val_manifest:
        val_items = [
            item for item in read_manifest(config.data.val_manifest) if item.split in (None, *VALIDATION_SPLITS)
        ]
    else:
        val_items = [item for item in items if item.split in VALIDATION_SPLITS]
    if not train_items:
        raise OmniSepError(
            f"Manifest {describe(config.data.train_manifest)} has no training items (split empty or 'train')."
        )
    return train_items, val_items


def _query_tables(config: TrainConfig, encoder, train_items, val_items) -> tuple[QueryTable, QueryTable | None]:
    if config.data.cache:
        from omnisep.data.cache import EmbeddingCache

        cache = EmbeddingCache(config.data.cache, encoder_identity=None if encoder is None else encoder.identity())
        train_table = QueryTable(train_items, cache=cache)
        val_table = QueryTable(val_items, cache=cache) if val_items else None
    else:
        train_table = QueryTable(train_items, encoder=encoder)
        val_table = QueryTable(val_items, encoder=encoder) if val_items else None
    return train_table, val_table


def _label_bank(encoder, items: list[ManifestItem], table: QueryTable) -> QueryBank:
    """Query-Aug bank of the training classes: the text embedding of each label.

    Without an encoder (``encoder.from_cache``) the cache's text embedding of
    each label's first item is that label's embedding.
    """
    labels = sorted({item.label for item in items})
    if encoder is not None:
        return QueryBank(labels, encoder.embed_text(labels))
    first = {}
    for item in items:
        first.setdefault(item.label, item.id)
    text = MODALITIES.index("text")
    rows = []
    for label in labels:
        embeddings, available = table.get(first[label])
        if not available[text]:
            raise OmniSepError(f"The embedding cache has no text embedding for '{first[label]}' (label '{label}').")
        rows.append(embeddings[text])
    return QueryBank(labels, torch.stack(rows))


def _cache_identity(config: TrainConfig) -> dict:
    from omnisep.data.cache import EmbeddingCache
    from omnisep.states import ENCODER_FIELDS

    recorded = EmbeddingCache(config.data.cache).encoder
    if recorded.get("name") != config.encoder.name:
        raise OmniSepError(
            f"Embedding cache {describe(config.data.cache)} was made with encoder {recorded.get('name')!r}, "
            f"but the config names {config.encoder.name!r}."
        )
    from omnisep.encoders.base import OPTIONAL_IDENTITY_FIELDS

    identity = {key: recorded[key] for key in ENCODER_FIELDS + OPTIONAL_IDENTITY_FIELDS if key in recorded}
    if recorded.get("options"):
        identity["options"] = dict(recorded["options"])
    return identity


def _micro_batch_losses(model, batch: dict, runtime: distributed.Runtime, precision: str,
                        loss: LossSection | None = None, teacher: MaskNetwork | None = None) -> torch.Tensor:
    """Per-source losses ``[B, N]``; with ``loss.negative_weight`` the batch's negative queries add
    ``weight * loss((1 + a) logits(q) - a logits(q_neg))`` where a mixture has one (one U-Net pass);
    with a ``teacher`` the plain queries' targets blend in its soft masks (``loss.teacher_weight``)."""
    loss = loss or LossSection()
    device = runtime.device
    mixture = batch["mixture"].to(device, non_blocking=True)
    sources = batch["sources"].to(device, non_blocking=True)
    queries = batch["queries"].to(device, non_blocking=True)
    negatives = batch.get("negatives") if loss.negative_weight > 0 else None
    rows = queries if negatives is None else torch.cat([queries, negatives.to(device)], dim=1)
    with record_function("step/targets"):
        mag_mix, losses_of = batch_loss(mixture, sources, loss.target)
    with record_function("step/forward"), distributed.autocast(runtime, precision):
        logits = model(mag_mix, rows)
    n = queries.shape[1]
    teacher_logits = None
    if teacher is not None:
        with record_function("step/teacher"), torch.no_grad(), distributed.autocast(runtime, precision):
            teacher_logits = teacher(mag_mix, queries)
    with record_function("step/loss"):
        if teacher_logits is None:
            losses = losses_of(logits[:, :n])
        else:
            losses = losses_of(logits[:, :n], teacher_logits, loss.teacher_weight)
        if negatives is not None:
            alpha = batch["negative_alpha"].to(device).view(-1, 1, 1, 1)
            combined = negative_logits(logits[:, :n], logits[:, n:], alpha)
            wanted = batch["has_negative"].to(device).unsqueeze(-1)
            losses = losses + loss.negative_weight * losses_of(combined) * wanted
        return losses


@torch.no_grad()
def validate(net: MaskNetwork, dataset: MixtureDataset, config: TrainConfig, runtime: distributed.Runtime) -> dict:
    """Mean validation loss per query modality (text, image, audio) and for the Query-Mixup query.

    One U-Net pass per batch serves all four queries. Each modality averages
    over the sources that have it; the processes share the items and sum.
    A run that trains negative queries is also scored on them ("negative"):
    each source's Query-Mixup query minus the next source's, at the middle
    of ``loss.negative_alpha``.
    """
    was_training = net.training
    net.eval()
    with_negative = config.loss.negative_weight > 0
    keys = (*VALIDATION_KEYS, "negative") if with_negative else VALIDATION_KEYS
    alpha = sum(config.loss.negative_alpha) / 2
    totals = torch.zeros(2, len(keys), dtype=torch.float64, device=runtime.device)
    indices = list(range(runtime.rank, len(dataset), runtime.world_size))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.data.val_batch_size, sampler=indices, num_workers=config.data.num_workers
    )
    for batch in loader:
        mixture = batch["mixture"].to(runtime.device)
        sources = batch["sources"].to(runtime.device)
        mag_mix, losses_of = batch_loss(mixture, sources, config.loss.target)
        with distributed.autocast(runtime, config.precision):
            prepared = net.prepare(mag_mix)
        embeddings = batch["embeddings"].to(runtime.device)
        available = batch["available"].to(runtime.device)
        for m in range(len(MODALITIES)):
            present = available[:, :, m]
            if present.any():
                with distributed.autocast(runtime, config.precision):
                    logits = net.mask_logits(prepared, F.normalize(embeddings[:, :, m], dim=-1))
                losses = losses_of(logits)
                totals[0, m] += (losses * present).sum()
                totals[1, m] += present.sum()
        with distributed.autocast(runtime, config.precision):
            logits = net.mask_logits(prepared, batch["queries"].to(runtime.device))
        losses = losses_of(logits)
        mixup = len(VALIDATION_KEYS) - 1
        totals[0, mixup] += losses.sum()
        totals[1, mixup] += losses.numel()
        if with_negative and logits.shape[1] >= 2:
            combined = negative_logits(logits, logits.roll(-1, dims=1), alpha)
            losses = losses_of(combined)
            totals[0, -1] += losses.sum()
            totals[1, -1] += losses.numel()
    distributed.all_reduce_sum(totals, runtime)
    net.train(was_training)
    return {key: float(totals[0, i] / totals[1, i]) for i, key in enumerate(keys) if totals[1, i] > 0}


def _same_network(saved: dict, current: dict) -> bool:
    """Whether a resume state's model section describes the configured network (older states lack ``kind``)."""
    try:
        return config_from_dict({**saved, "emb_dim": 1}) == config_from_dict({**current, "emb_dim": 1})
    except OmniSepError:
        return False


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_metrics(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows a killed run logged after its last resume state, so curves have no repeated steps."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        rows = [line for line in handle if line.strip() and json.loads(line)["step"] <= step]
    fileio.write_text(path, "".join(rows))


def _variant_bank(key: str, path: str, dim: int, built_with: str):
    """The bank ``queries.<key>`` names (Query-Aug format), refused in one sentence when its entries are not ``dim``-d."""
    from omnisep.query_aug import ClassMatcher

    bank = ClassMatcher.load(path)
    if bank.embeddings.shape[1] != dim:
        raise OmniSepError(
            f"queries.{key} {describe(path)} has {bank.embeddings.shape[1]}-dimensional entries, "
            f"the training queries {dim}; it was built with {built_with}."
        )
    return bank


class _Trainer:
    def __init__(self, config: TrainConfig, runtime: distributed.Runtime, log: Callable[[str], None]):
        self.config = config
        self.runtime = runtime
        self.log = log if runtime.is_main else (lambda message: None)
        self.out_dir = Path(config.out_dir)
        distributed.autocast(runtime, config.precision)  # refuse a bad precision before any work

        if config.encoder.from_cache:
            self.encoder = None
            self.encoder_identity = _cache_identity(config)
        else:
            self.encoder = get_encoder(config.encoder.name, **config.encoder.options)
            self.encoder_identity = self.encoder.identity()
        train_items, val_items = _split_items(config)
        train_table, val_table = _query_tables(config, self.encoder, train_items, val_items)
        data = config.data
        self.train_set = MixtureDataset(
            train_items,
            train_table,
            training=True,
            num_sources=data.num_sources,
            segment_samples=data.segment_samples,
            seed=config.seed,
            modality_mode=config.queries.modality_mode,
            modalities=config.queries.modalities,
            clip_cache_items=data.clip_cache_items,
        )
        if self.train_set.dropped:
            self.log(
                f"note: {len(self.train_set.dropped)} training item(s) have none of the query modalities "
                f"{', '.join(config.queries.modalities)} and are left out (first: '{self.train_set.dropped[0]}')"
            )
        self.val_set = None
        if val_items:
            mixtures = read_mixture_list(data.val_mixtures, val_items, data.num_sources) if data.val_mixtures else None
            self.val_set = MixtureDataset(
                val_items,
                val_table,
                training=False,
                num_sources=data.num_sources,
                segment_samples=data.segment_samples,
                seed=config.seed,
                mixtures=mixtures,
                clip_cache_items=data.clip_cache_items,
            )
        else:
            self.log("note: no validation items (split val/valid/validation); best/ is not written")
        self.bank = _label_bank(self.encoder, train_items, train_table) if runtime.is_main else None
        self.mixer = self._resident_mixer(train_table) if data.pipeline == "resident" else None

        torch.manual_seed(config.seed)  # same initial weights in every process and every run
        self.net = build_network(config.model_config(int(self.encoder_identity["dim"]))).to(runtime.device)
        # Channels-last convolutions: faster on CUDA tensor cores and on the CPU's oneDNN
        # kernels alike (1.3x for a training step here, 2x with bf16; docs/performance.md).
        self.net = self.net.to(memory_format=torch.channels_last)
        optim = config.optim
        self.optimizer = torch.optim.Adam(
            self.net.parameters(), lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps, weight_decay=optim.weight_decay
        )
        self.scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
        self.ema = None
        if optim.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            # BatchNorm's running statistics are averaged with the weights (use_buffers).
            self.ema = AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(optim.ema_decay), use_buffers=True)
        self.schedule = WarmupLinearDecay(optim.warmup_steps, optim.decay_steps, optim.final_lr_scale)
        self.teacher = self._load_teacher(config.loss.teacher) if config.loss.teacher else None
        self.step = 0
        self.best_metric: float | None = None
        self.wall_s = 0.0

    def _resident_mixer(self, table: QueryTable):
        """Every training clip decoded once into device memory (see omnisep.training.resident)."""
        from concurrent.futures import ThreadPoolExecutor

        from omnisep.data.mixing import load_clip
        from omnisep.training.resident import ResidentMixer

        items = self.train_set.items  # already without items that lack every query modality
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, min(16, os.cpu_count() or 1))) as pool:
            clips = list(pool.map(load_clip, [item.audio for item in items]))
        rows = [table.get(item.id) for item in items]
        embeddings = torch.stack([row[0] for row in rows])
        available = torch.stack([row[1] for row in rows]) & self.train_set.modality_mask
        hours = sum(len(clip) for clip in clips) / 16000 / 3600
        self.log(f"resident pipeline: {len(clips)} clips ({hours:.2f} h) decoded in {time.perf_counter() - started:.0f} s")
        return ResidentMixer(
            items, clips, embeddings, available, self.config.mixing, self.config.data.segment_samples,
            self.config.seed, self.runtime.device, self.config.optim.batch_size,
            *self._text_variants(embeddings.shape[-1]),
            negative_alpha=self.config.loss.negative_alpha if self.config.loss.negative_weight > 0 else None,
            **self._image_variants(embeddings.shape[-1]),
        )

    def _image_variants(self, dim: int) -> dict:
        """Other pictures of each class from ``queries.image_bank`` (a picture bank), if asked for."""
        queries = self.config.queries
        if queries.image_variant_prob <= 0:
            return {}
        bank = _variant_bank("image_bank", queries.image_bank, dim, "other heads or another encoder")
        variants = {label: bank.embeddings[bank.entry_class == c] for c, label in enumerate(bank.labels)}
        self.log(f"picture variants: {len(bank.embeddings)} pictures of {len(variants)} classes, p = {queries.image_variant_prob:g}")
        return {"image_variants": variants, "image_variant_prob": queries.image_variant_prob}

    def _text_variants(self, dim: int) -> tuple[dict | None, float]:
        """The other wordings of each class from ``queries.text_bank`` (a Query-Aug bank), if asked for."""
        queries = self.config.queries
        if queries.text_variant_prob <= 0:
            return None, 0.0
        bank = _variant_bank("text_bank", queries.text_bank, dim, "another encoder")
        keep = torch.ones(len(bank.embeddings), dtype=torch.bool)
        if queries.text_variant_kinds:
            keep = torch.tensor([kind in queries.text_variant_kinds for kind in bank.kinds or []], dtype=torch.bool)
            if not keep.any():
                raise OmniSepError(
                    f"queries.text_bank {describe(queries.text_bank)} has no entry of the kinds "
                    f"{', '.join(queries.text_variant_kinds)}; it has {', '.join(sorted(set(bank.kinds or [])))}."
                )
        variants = {label: bank.embeddings[(bank.entry_class == c) & keep] for c, label in enumerate(bank.labels)}
        self.log(f"text variants: {int(keep.sum())} wordings of {len(variants)} classes, p = {queries.text_variant_prob:g}")
        return variants, queries.text_variant_prob

    # ------------------------------------------------------------------ state

    def warm_start(self, checkpoint: str) -> None:
        """Initialise the network from a checkpoint trained with the same encoder (see ``init_from``)."""
        loaded = self._checkpoint_of_this_encoder(checkpoint, "init_from")
        kind = loaded.config["model"].get("kind", "paper")
        state = self.net.adapt_state(loaded.model.state_dict(), kind)
        try:
            self.net.load_state_dict(state)
        except RuntimeError as error:
            raise OmniSepError(f"init_from {describe(checkpoint)} does not fit the configured network: {str(error).splitlines()[0]}") from None
        self._restart_ema()
        self.log(f"warm start from {describe(checkpoint)} ({kind} network)")

    def _checkpoint_of_this_encoder(self, checkpoint: str, setting: str, device="cpu"):
        """A checkpoint whose queries come from this run's encoder; ``setting`` names the option in errors."""
        from omnisep.states import check_encoder, load_checkpoint

        loaded = load_checkpoint(checkpoint, map_location=device)
        try:
            check_encoder(loaded.config, self.encoder_identity)
        except OmniSepError as error:
            raise OmniSepError(f"{setting} {describe(checkpoint)}: {error}") from None
        return loaded

    def _load_teacher(self, checkpoint: str) -> MaskNetwork:
        """The frozen network whose soft masks the targets blend in (``loss.teacher``); same encoder."""
        loaded = self._checkpoint_of_this_encoder(checkpoint, "loss.teacher", self.runtime.device)
        teacher = loaded.model.eval().to(memory_format=torch.channels_last)
        teacher.requires_grad_(False)
        self.log(f"distilling from {describe(checkpoint)} ({loaded.config['model'].get('kind', 'paper')} network), "
                 f"teacher weight {self.config.loss.teacher_weight:g}")
        return teacher

    def _restart_ema(self) -> None:
        """Start the average at the network's weights as they are now (a warm start's, or a resumed run's)."""
        if self.ema is not None:
            self.ema.module.load_state_dict(self.net.state_dict())
            self.ema.n_averaged.fill_(1)  # counts as averaged once: the next update blends instead of copying

    @property
    def shipped(self) -> MaskNetwork:
        """The network that is validated and written to best/ and last/: the average when there is one."""
        return self.ema.module if self.ema is not None else self.net

    def load_resume_state(self) -> bool:
        path = self.out_dir / RESUME_FILE
        if not path.is_file():
            return False
        state = load_state_file(path)
        if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
            raise OmniSepError(f"{describe(path)} is not an omnisep resume state.")
        if not _same_network(state["config"]["model"], self.config.model):
            raise OmniSepError(
                f"{describe(path)} was written for model {state['config']['model']}, but the config asks for "
                f"{self.config.to_dict()['model']}; use another out_dir or --no-resume."
            )
        if not identities_compatible(state["encoder"], self.encoder_identity):
            raise OmniSepError(
                f"{describe(path)} was trained with encoder {state['encoder']['name']} "
                f"{state['encoder']['version']}, not {self.encoder_identity['name']} {self.encoder_identity['version']}."
            )
        self.net.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        elif self.ema is not None:
            self.log("note: the resume state has no weight average; it starts from the resumed weights")
            self._restart_ema()
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        _restore_rng(state["rng"])
        self.step = int(state["step"])
        self.best_metric = state["best_metric"]
        self.wall_s = float(state["wall_s"])
        return True

    def save_resume_state(self) -> None:
        state = {
            "format": RESUME_FORMAT,
            "step": self.step,
            "model": self.net.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "schedule": {"warmup_steps": self.schedule.warmup_steps, "decay_steps": self.schedule.decay_steps,
                         "final_scale": self.schedule.final_scale},
            "rng": _rng_state(),
            "best_metric": self.best_metric,
            "wall_s": self.wall_s,
            "config": self.config.to_dict(),
            "encoder": self.encoder_identity,
        }
        save_state_file(self.out_dir / RESUME_FILE, state)

    def save_checkpoint(self, name: str, val_losses: dict | None) -> None:
        training = {"step": self.step, "config": self.config.to_dict(), "val_losses": val_losses or {}}
        save_checkpoint(self.out_dir / name, self.shipped, self.encoder_identity, self.bank, training)

    # ------------------------------------------------------------------ loop

    def run(self) -> TrainResult:
        config, runtime = self.config, self.runtime
        model = distributed.wrap_model(self.net, runtime)
        self.net.train()
        accumulate = config.optim.accumulate_steps
        chunks = distributed.chunk_positions(config.optim.batch_size, runtime.world_size, accumulate, runtime.rank)
        if self.mixer is not None:
            batches = (self.mixer.batch(step, chunk) for step in range(self.step, config.steps) for chunk in chunks)
        else:
            loader = torch.utils.data.DataLoader(
                self.train_set,
                batch_sampler=distributed.StepBatchSampler(self.step, config.steps, chunks),
                num_workers=config.data.num_workers,
                pin_memory=runtime.device.type == "cuda",
            )
            batches = iter(loader)
        metrics_path = self.out_dir / "metrics.jsonl"
        interval_loss = torch.zeros((), dtype=torch.float64, device=runtime.device)
        interval_steps, interval_start = 0, time.perf_counter()
        last_loss, val_losses = None, {}
        while self.step < config.steps:
            lr = config.optim.lr * self.schedule.scale(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.zero_grad(set_to_none=True)
            for micro in range(accumulate):
                with record_function("step/data"):
                    batch = next(batches)
                with distributed.gradient_sync(model, micro == accumulate - 1):
                    loss = _micro_batch_losses(model, batch, runtime, config.precision, config.loss,
                                               self.teacher).mean() / accumulate
                    with record_function("step/backward"):
                        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
                interval_loss += loss.detach()
            with record_function("step/optimizer"):
                if self.scaler is not None:
                    self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), config.optim.grad_clip)
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.net)
            self.step += 1
            interval_steps += 1

            finished = self.step == config.steps
            if self.step % config.log_every == 0 or finished:
                distributed.all_reduce_sum(interval_loss, runtime)
                last_loss = float(interval_loss) / (interval_steps * runtime.world_size)
                elapsed = time.perf_counter() - interval_start
                self.wall_s += elapsed
                samples_per_s = interval_steps * config.optim.batch_size / max(elapsed, 1e-9)
                if runtime.is_main:
                    _write_metrics(metrics_path, {"step": self.step, "loss": last_loss, "lr": lr,
                                                  "samples_per_s": samples_per_s, "wall_s": self.wall_s})
                self.log(f"step {self.step}/{config.steps}  loss {last_loss:.4f}  lr {lr:.2e}  "
                         f"{samples_per_s:.1f} samples/s")
                interval_loss.zero_()
                interval_steps, interval_start = 0, time.perf_counter()
            if self.val_set is not None and (self.step % config.val_every == 0 or finished):
                val_losses = self._validate_and_keep_best(metrics_path)
            if self.step % config.checkpoint_every == 0 or finished:
                if runtime.is_main:
                    self.save_checkpoint("last", val_losses)
                    self.save_resume_state()
                distributed.barrier(runtime)
        return TrainResult(self.out_dir, self.step, last_loss, val_losses, self.best_metric, runtime.is_main)

    def _validate_and_keep_best(self, metrics_path: Path) -> dict:
        losses = validate(self.shipped, self.val_set, self.config, self.runtime)
        mean = sum(losses.values()) / len(losses)
        improved = self.best_metric is None or mean < self.best_metric
        if improved:
            self.best_metric = mean
        if self.runtime.is_main:
            _write_metrics(metrics_path, {"step": self.step, **{f"val_{k}": v for k, v in losses.items()},
                                          "val_mean": mean})
            if improved:
                self.save_checkpoint("best", losses)
        shown = "  ".join(f"{key} {value:.4f}" for key, value in losses.items())
        self.log(f"validation at step {self.step}: {shown}  mean {mean:.4f}{'  (best)' if improved else ''}")
        return losses


def train(config: TrainConfig, *, resume: bool = True, log: Callable[[str], None] = print) -> TrainResult:
    """Train (or continue training) as the config says; under torchrun every process calls this."""
    runtime = distributed.start(config.device)
    if runtime.device.type == "cuda":
        # Fixed input sizes: let cuDNN pick its fastest convolutions once.
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        trainer = _Trainer(config, runtime, log)
        out_dir = Path(config.out_dir)
        if runtime.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        if resume and trainer.load_resume_state():
            trainer.log(f"resuming from {describe(out_dir / RESUME_FILE)} at step {trainer.step}")
        elif config.init_from:
            trainer.warm_start(config.init_from)
        if runtime.is_main:
            _truncate_metrics(out_dir / "metrics.jsonl", trainer.step)
        if trainer.step >= config.steps:
            trainer.log(f"nothing to do: the run is already at step {trainer.step} of {config.steps}")
            return TrainResult(out_dir, trainer.step, None, {}, trainer.best_metric, runtime.is_main)
        return trainer.run()
    finally:
        distributed.stop(runtime)
