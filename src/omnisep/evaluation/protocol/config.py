"""What an evaluation run measures: the query modes, negatives, sweep and scoring options."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

from omnisep.errors import OmniSepError, describe
from omnisep.evaluation.metrics import BACKENDS, SCORED_LENGTH
from omnisep.modalities import MODALITIES
from omnisep.queries import NEGATIVE_MODES

QUERY_MODES = (*MODALITIES, "composed")
NEGATIVE_SOURCES = (*MODALITIES, "same")
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
    """What one evaluation run measures; ``resolved`` fills the checkpoint's negative-query defaults."""

    modes: tuple[str, ...] = QUERY_MODES
    with_negative: bool = True
    negative_source: str = "text"
    alpha: float | None = None  # None: the checkpoint's own (omnisep.api.negative_defaults)
    negative_mode: str | None = None  # proportional, naive or logit; None: the checkpoint's own
    contrast: float | None = None  # query-contrast strength; None: the checkpoint's own (0 if it records none)
    second_look: float | None = None  # dB (signal_path.look_again); None: the checkpoint's own (none if it records none)
    skip_second_look: bool = False  # score without the second look even if the checkpoint records one
    audio_clips: int = 5
    omni_weights: tuple[float, float, float] = (2.0, 2.0, 1.0)  # image, text, audio
    oracles: bool = True
    backend: str = "museval"
    workers: int = 2
    binary_mask: bool = False
    alpha_sweep: tuple[float, ...] = ()
    sweep_modes: tuple[str, ...] = MODALITIES
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
        if self.negative_mode not in (None, *NEGATIVE_MODES):
            raise OmniSepError(f"evaluate: unknown negative mode {self.negative_mode!r}; choose from {', '.join(NEGATIVE_MODES)}.")
        for alpha in (self.alpha, self.contrast, *self.alpha_sweep):
            if alpha is None:
                continue
            if not math.isfinite(alpha) or alpha < 0:
                raise OmniSepError(f"evaluate: alpha must be a finite number >= 0, got {alpha}.")
        if self.second_look is not None and not (math.isfinite(self.second_look) and self.second_look < 0):
            raise OmniSepError(f"evaluate: the second look's gate must be a negative number of dB, got {self.second_look}.")
        sweep_unknown = [m for m in self.sweep_modes if m not in QUERY_MODES]
        if sweep_unknown:
            raise OmniSepError(f"evaluate: unknown sweep mode(s) {sweep_unknown}; choose from {', '.join(QUERY_MODES)}.")

    def resolved(self, checkpoint_config: dict, path) -> "EvaluationConfig":
        from omnisep.states import contrast_strength, negative_defaults, second_look_gate

        defaults = negative_defaults(checkpoint_config, path)
        second_look = self.second_look if self.second_look is not None else second_look_gate(checkpoint_config, path)
        return dataclasses.replace(
            self,
            second_look=None if self.skip_second_look else second_look,
            alpha=defaults["alpha"] if self.alpha is None else self.alpha,
            negative_mode=defaults["mode"] if self.negative_mode is None else self.negative_mode,
            contrast=contrast_strength(checkpoint_config, path) if self.contrast is None else self.contrast,
        )

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["descriptions"] = None if self.descriptions is None else f"{len(self.descriptions)} labels"
        return values


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
