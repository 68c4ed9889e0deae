"""VGGSound: training/validation/test corpus and the VGGSOUND-CLEAN+ test set.

VGGSound (Chen et al. 2020) has ~200k 10-second YouTube clips in 309 classes;
CLIPSep's split lists (``train.csv``, ``val.csv``, ``test.csv``) and its
hand-checked clean list (``test-good.csv``, about 100 items) define the
paper's partition. VGGSOUND-CLEAN+ pairs each clean target with an interferer
drawn, with a seed per item, from the test list.
"""

from __future__ import annotations

import os

from omnisep.data.recipes.engine import RecipeResult, prepare

SOURCE = "vggsound"


def prepare_vggsound(
    videos_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    split_lists: dict[str, str | os.PathLike],
    clean_list: str | os.PathLike | None = None,
    **options,
) -> RecipeResult:
    """Labels are kept verbatim ("playing bagpipes"): the paper's text query is the raw label."""
    return prepare(SOURCE, videos_dir, out_dir, split_lists, clean_list=clean_list, **options)
