"""Training configuration: a TOML or JSON file, defaults = the paper's settings.

Every field can be overridden on the command line with ``--set
section.key=value`` (the value is read as TOML, so ``optim.lr=3e-4``,
``queries.modalities=["text","audio"]`` and ``data.cache="runs/cache"`` all
work). Paths are taken as given, relative to the working directory, like any
other command-line path.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from omnisep.data.mixing import MODALITIES, MODALITY_MODES
from omnisep.errors import OmniSepError, describe
from omnisep.models.registry import config_from_dict
from omnisep.spectral import HOP, SEGMENT
from omnisep.training.loss import LOSS_TARGETS, MASK_TARGETS
from omnisep.training.resident import MixingSection

PRECISIONS = ("fp32", "bf16", "fp16")
PIPELINES = ("files", "resident")


@dataclass
class EncoderSection:
    name: str = "bundled"
    options: dict = field(default_factory=dict)
    # true: take the encoder's identity (and the Query-Aug label bank) from
    # data.cache instead of loading the encoder, so that a training machine
    # needs none of the encoder's packages or weights
    from_cache: bool = False


@dataclass
class DataSection:
    train_manifest: str = ""
    # Without a validation manifest, items of the training manifest whose split
    # is val/valid/validation are held out for validation.
    val_manifest: str | None = None
    val_mixtures: str | None = None  # JSONL {"target", "interferers"}: fixed validation mixtures
    cache: str | None = None  # embedding cache from `omnisep embed`; None = embed here with the encoder
    num_sources: int = 2  # the file pipeline's sources per mixture (and the validation mixtures')
    segment_samples: int = SEGMENT
    # files: the paper's mix-and-separate, examples decoded and mixed in worker
    # processes; resident: clips held in device memory, mixtures drawn there as
    # [mixing] says (1-3 sources, absent queries, reverberation, noise, levels)
    pipeline: str = "files"
    num_workers: int = 4
    clip_cache_items: int = 256
    val_batch_size: int = 32


@dataclass
class OptimSection:
    lr: float = 1e-3
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 5000
    decay_steps: int = 100_000  # linear decay ends here ...
    final_lr_scale: float = 0.1  # ... at this fraction of lr, then stays
    grad_clip: float = 1.0
    batch_size: int = 128  # global: across processes and accumulation steps
    accumulate_steps: int = 1
    # Exponential moving average of the weights (0: off). When on, validation, best/ and last/
    # use the average (the usual remedy for a noisy plateau; for v2 it did not help: docs/training.md).
    ema_decay: float = 0.0


@dataclass
class QuerySection:
    modality_mode: str = "mixup"
    modalities: list = field(default_factory=lambda: list(MODALITIES))
    # Words people use: with this probability a text query is replaced by a random
    # entry of its class in a Query-Aug bank (synonyms, WordNet words and glosses,
    # descriptions), so the network also answers to text that is not the label.
    # Resident pipeline only; "" (no bank) or 0 leaves the labels alone.
    text_bank: str = ""
    text_variant_prob: float = 0.0
    text_variant_kinds: list = field(default_factory=list)  # bank entry kinds to use; empty = all
    # Pictures by other artists: with this probability an image query is replaced by a random
    # picture of its class from a picture bank (`python -m omnisep.querynet.picture_bank`), so the
    # network answers to pictures that are not the training set's one emoji per class.
    image_bank: str = ""
    image_variant_prob: float = 0.0


@dataclass
class LossSection:
    # binary: the paper's |S| > 0.5 |X|; ratio: min(|S| / |X|, 1); waveform: thresholded SNR of the masked mixture
    target: str = "binary"
    # Negative queries trained as they are used ("logit" mode, omnisep.queries): with a weight > 0
    # each mixture's target is also scored through (1 + a) logits(q) - a logits(q_other), q_other
    # the query of another sound in it (or, for an absent query, of one that is there), a drawn
    # uniformly from negative_alpha. Resident pipeline only; adds one query row per mixture.
    negative_weight: float = 0.0
    negative_alpha: list = field(default_factory=lambda: [1.0, 3.0])
    # Distillation: a trained checkpoint (an ensemble, say) whose soft masks share the target with the
    # ground truth, target = (1 - w) * truth + w * sigmoid(teacher logits), w = teacher_weight. Its
    # members' agreement is what one network of the same size learns from (mask targets only).
    teacher: str | None = None
    teacher_weight: float = 0.5


@dataclass
class TrainConfig:
    out_dir: str = "runs/omnisep"
    seed: int = 1234
    steps: int = 200_000
    log_every: int = 100
    val_every: int = 10_000
    checkpoint_every: int = 1_000
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # Warm start: a checkpoint whose weights initialise the network at step 0
    # (a resumed run ignores it). Another kind's weights are adapted where the
    # network knows how (a "film" network takes a "paper" network's U-Net).
    init_from: str | None = None
    precision: str = "fp32"  # fp32 | bf16 (autocast, CUDA or CPU) | fp16 (autocast, CUDA only)
    # The network: "kind" (see omnisep.models.registry; default the paper's) and
    # that kind's config fields; emb_dim comes from the encoder.
    model: dict = field(default_factory=lambda: {"kind": "paper"})
    encoder: EncoderSection = field(default_factory=EncoderSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    queries: QuerySection = field(default_factory=QuerySection)
    mixing: MixingSection = field(default_factory=MixingSection)
    loss: LossSection = field(default_factory=LossSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "the configuration") -> "TrainConfig":
        config = _build(cls, values, source, "")
        config.validate(source)
        return config

    def model_config(self, emb_dim: int):
        """The network's config object for queries of ``emb_dim`` dimensions."""
        if "emb_dim" in self.model:
            raise OmniSepError("model.emb_dim is set by the encoder; remove it from the config.")
        return config_from_dict({**self.model, "emb_dim": emb_dim})

    def validate(self, source: str = "the configuration") -> None:
        def fail(problem: str):
            raise OmniSepError(f"Config {source}: {problem}")

        if not self.data.train_manifest:
            fail("data.train_manifest is required.")
        for where, value in _numbers(self):
            if isinstance(value, float) and not math.isfinite(value):
                fail(f"{where} must be a finite number, got {value}.")
        if not self.optim.lr > 0:
            fail(f"optim.lr must be positive, got {self.optim.lr}.")
        if Path(self.out_dir).exists() and not Path(self.out_dir).is_dir():
            fail(f"out_dir '{self.out_dir}' exists and is not a folder.")
        if self.loss.target not in LOSS_TARGETS:
            fail(f"loss.target must be one of {', '.join(LOSS_TARGETS)}, got '{self.loss.target}'.")
        if self.precision not in PRECISIONS:
            fail(f"precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'.")
        if self.queries.modality_mode not in MODALITY_MODES:
            fail(f"queries.modality_mode must be one of {', '.join(MODALITY_MODES)}, got '{self.queries.modality_mode}'.")
        unknown = [m for m in self.queries.modalities if m not in MODALITIES]
        if unknown or not self.queries.modalities:
            fail(f"queries.modalities must be a non-empty subset of {', '.join(MODALITIES)}.")
        try:
            model_config = self.model_config(emb_dim=1)
        except OmniSepError as error:
            fail(f"[model] {error}")
        multiple = model_config.time_multiple
        frames = 1 + self.data.segment_samples // HOP
        if frames % multiple:
            fail(
                f"data.segment_samples = {self.data.segment_samples} gives {frames} STFT frames, "
                f"not a multiple of the {multiple} frames the network needs "
                f"(use (m * {multiple} - 1) * {HOP} + r samples, 0 <= r < {HOP})."
            )
        for name in ("steps", "log_every", "val_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                fail(f"{name} must be at least 1.")
        if self.encoder.from_cache and not self.data.cache:
            fail("encoder.from_cache needs data.cache.")
        if self.data.pipeline not in PIPELINES:
            fail(f"data.pipeline must be one of {', '.join(PIPELINES)}, got '{self.data.pipeline}'.")
        if self.data.pipeline == "resident":
            self.mixing.validate(fail)
        if not self.loss.negative_weight >= 0:
            fail(f"loss.negative_weight must be 0 or more, got {self.loss.negative_weight}.")
        alphas = self.loss.negative_alpha
        if len(alphas) != 2 or not all(isinstance(a, (int, float)) for a in alphas) or not 0 < alphas[0] <= alphas[1]:
            fail(f"loss.negative_alpha must be two numbers [low, high] with 0 < low <= high, got {alphas}.")
        if self.loss.teacher is not None:
            if self.loss.target not in MASK_TARGETS:
                fail(f"loss.teacher needs a mask target ({', '.join(MASK_TARGETS)}), not '{self.loss.target}'.")
            if not 0.0 <= self.loss.teacher_weight <= 1.0:
                fail(f"loss.teacher_weight must lie in [0, 1], got {self.loss.teacher_weight}.")
        if self.loss.negative_weight > 0 and self.data.pipeline != "resident":
            fail("loss.negative_weight > 0 works with data.pipeline = \"resident\" only.")
        for modality, bank_kind in (("text", "a Query-Aug bank"), ("image", "a picture bank")):
            prob, bank = getattr(self.queries, f"{modality}_variant_prob"), getattr(self.queries, f"{modality}_bank")
            if not 0.0 <= prob <= 1.0:
                fail(f"queries.{modality}_variant_prob must lie in [0, 1], got {prob}.")
            if prob > 0 and not bank:
                fail(f"queries.{modality}_variant_prob > 0 needs queries.{modality}_bank ({bank_kind} .safetensors).")
            if prob > 0 and self.data.pipeline != "resident":
                fail(f"queries.{modality}_variant_prob works with data.pipeline = \"resident\" only.")
        if self.data.num_sources < 2:
            fail("data.num_sources must be at least 2.")
        if self.optim.batch_size < 1 or self.optim.accumulate_steps < 1:
            fail("optim.batch_size and optim.accumulate_steps must be at least 1.")
        if not 0.0 <= self.optim.ema_decay < 1.0:
            fail(f"optim.ema_decay must lie in [0, 1), got {self.optim.ema_decay}.")
        if self.optim.decay_steps < self.optim.warmup_steps:
            fail("optim.decay_steps must not be smaller than optim.warmup_steps.")


def _numbers(config, prefix: str = ""):
    """(dotted name, value) of every number in a config, nested sections included."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            yield from _numbers(value, f"{prefix}{item.name}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{item.name}", value


def _check_type(value, annotation, where: str, source: str):
    """Accept ints for floats; reject everything else that does not match."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(annotation):
            return None
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        origin = typing.get_origin(annotation)
    expected = origin or annotation
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        expected_ok = False
    else:
        expected_ok = isinstance(value, expected)
    if not expected_ok:
        raise OmniSepError(
            f"Config {source}: {where} must be {expected.__name__}, got {type(value).__name__} ({value!r})."
        )
    return value


def _build(cls, values: dict, source: str, prefix: str):
    if not isinstance(values, dict):
        raise OmniSepError(f"Config {source}: section '{prefix.rstrip('.')}' must be a table.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise OmniSepError(f"Config {source}: unknown key {', '.join(prefix + u for u in unknown)}.")
    kwargs = {}
    for name, value in values.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = _build(annotation, value, source, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(value, annotation, prefix + name, source)
    return cls(**kwargs)


def _parse_override(text: str) -> tuple[list[str], object]:
    if "=" not in text:
        raise OmniSepError(f"--set '{text}' must look like section.key=value.")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: take it as a string
    return key.strip().split("."), value


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Read a .toml or .json config and apply ``key=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise OmniSepError(f"Config {describe(path)} does not exist.")
    try:
        if path.suffix.lower() == ".toml":
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        elif path.suffix.lower() == ".json":
            values = json.loads(path.read_text(encoding="utf-8"))
        else:
            raise OmniSepError(f"Config {describe(path)} must be a .toml or .json file.")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OmniSepError(f"Config {describe(path)} cannot be parsed ({exc}).") from None
    for text in overrides:
        keys, value = _parse_override(text)
        table = values
        for key in keys[:-1]:
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                raise OmniSepError(f"--set '{text}': '{key}' is not a section.")
        table[keys[-1]] = value
    return TrainConfig.from_dict(values, describe(path))
