"""Table 2: which query modalities a model is trained with, and Query-Mixup.

Five training runs differ only in ``queries.modality_mode`` /
``queries.modalities``; each is scored with text and image queries (TQSS,
IQSS) by the same protocol as Table 1:

#1 text only; #2 image only; #3 text + image, switching modality per step
(CLIPSep); #4 text + image + audio mixed with equal weights (no Query-Mixup);
#5 text + image + audio with Query-Mixup (OmniSep).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from omnisep.errors import OmniSepError, describe
from omnisep.evaluation.metrics import Summary, summarize
from omnisep.evaluation.reports import AblationRun, read_item_scores
from omnisep.modalities import MODALITIES


@dataclasses.dataclass(frozen=True)
class AblationSetting:
    name: str
    modality_mode: str
    modalities: tuple[str, ...]
    mixup: bool

    @property
    def flags(self) -> dict[str, bool]:
        return {m: m in self.modalities for m in MODALITIES}


SETTINGS = (
    AblationSetting("#1", "text", ("text",), False),
    AblationSetting("#2", "image", ("image",), False),
    AblationSetting("#3", "switch", ("text", "image"), False),
    AblationSetting("#4", "all_no_mixup", ("text", "image", "audio"), False),
    AblationSetting("#5", "mixup", ("text", "image", "audio"), True),
)

# Row names of Table 1 that Table 2 reads (the plain queries, no negative).
TQSS_ROW, IQSS_ROW = "text query", "image query"
# The same rows' keys in scores.jsonl.
TQSS_KEY, IQSS_KEY = "text", "image"


def training_overrides(setting: AblationSetting) -> list[str]:
    """``omnisep train --set`` values that select this setting."""
    modalities = ",".join(f'"{m}"' for m in setting.modalities)
    return [f'queries.modality_mode="{setting.modality_mode}"', f"queries.modalities=[{modalities}]"]


def _summary(section: dict, row: str, path: Path) -> Summary:
    if row not in section:
        raise OmniSepError(f"Evaluation summary {describe(path)} has no '{row}' row; evaluate with --modes text,image.")
    values = section[row]["sdr"]
    return Summary(float(values["mean"]), float(values["sem"]), float(values["median"]), int(values["count"]))


def read_ablation_run(setting: AblationSetting, summary_path: str | os.PathLike) -> AblationRun:
    """One Table 2 row from the ``summary.json`` an ``omnisep evaluate`` run wrote."""
    path = Path(summary_path)
    if not path.is_file():
        raise OmniSepError(f"Evaluation summary {describe(path)} does not exist; the evaluation of {setting.name} did not finish.")
    try:
        table1 = json.loads(path.read_text(encoding="utf-8"))["table1"]
    except (ValueError, KeyError) as error:
        raise OmniSepError(f"Evaluation summary {describe(path)} is not an omnisep evaluation summary ({error}).") from None
    flags = setting.flags
    return AblationRun(
        name=setting.name,
        text=flags["text"],
        image=flags["image"],
        audio=flags["audio"],
        mixup=setting.mixup,
        tqss=_summary(table1, TQSS_ROW, path),
        iqss=_summary(table1, IQSS_ROW, path),
    )


def _sdr_by_mixture(scores_path: str | os.PathLike, key: str) -> dict[str, float]:
    return {mixture: float(values["sdr"]) for (mixture, row), values in read_item_scores(scores_path).items() if row == key}


def paired_difference(scores_path: str | os.PathLike, reference_path: str | os.PathLike, key: str) -> Summary:
    """Mean ± SEM of (SDR − reference SDR) over the mixtures both runs scored in row ``key``."""
    mine = _sdr_by_mixture(scores_path, key)
    reference = _sdr_by_mixture(reference_path, key)
    return summarize([mine[m] - reference[m] for m in sorted(mine.keys() & reference.keys())])
