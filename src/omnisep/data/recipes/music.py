"""MUSIC: the MUSIC test set of Table 1 and the MUSIC-CLEAN+ test set.

MUSIC (Zhao et al. 2018) has solo performance videos of 11 instruments;
CLIPSep's lists (``MUSIC/solo/{train,val,test}.csv``) define the split. Labels
there are folder names ("acoustic_guitar"); they become text queries, so the
underscores are turned into spaces ("acoustic guitar").

MUSIC-CLEAN+ pairs a clean MUSIC target list with interferers from the
VGGSound test list: give the prepared VGGSound manifest and its test items are
added to this manifest (ids prefixed ``vggsound/``, split ``interferer``, paths
pointing into the VGGSound folder) so that one mixture list can name both.
"""

from __future__ import annotations

import dataclasses
import os

from omnisep.data.recipes.engine import ListedItem, RecipeResult, prepare
from omnisep.errors import OmniSepError, describe

SOURCE = "music"
INTERFERER_PREFIX = "vggsound/"


def music_label(label: str) -> str:
    return " ".join(label.replace("_", " ").split())


def vggsound_interferers(manifest_path: str | os.PathLike):
    """The test items of a prepared VGGSound manifest, renamed for a MUSIC manifest."""
    from omnisep.data.manifest import read_manifest

    items = [item for item in read_manifest(manifest_path) if (item.split or "") == "test"]
    if not items:
        raise OmniSepError(f"Manifest {describe(manifest_path)} has no test item to draw CLEAN+ interferers from.")
    renamed = [dataclasses.replace(item, id=INTERFERER_PREFIX + item.id, split="interferer") for item in items]
    return renamed, [ListedItem(item.id, item.label) for item in renamed]


def prepare_music(
    videos_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    split_lists: dict[str, str | os.PathLike],
    clean_list: str | os.PathLike | None = None,
    vggsound_manifest: str | os.PathLike | None = None,
    **options,
) -> RecipeResult:
    if clean_list is not None and vggsound_manifest is None:
        raise OmniSepError(
            f"Clean list {describe(clean_list)}: MUSIC-CLEAN+ draws its interferers from VGGSound's test list; "
            "prepare VGGSound first and pass its manifest (--vggsound-manifest)."
        )
    extra_items, interferers = ([], None) if vggsound_manifest is None else vggsound_interferers(vggsound_manifest)
    return prepare(
        SOURCE,
        videos_dir,
        out_dir,
        split_lists,
        clean_list=clean_list,
        clean_interferers=interferers,
        extra_manifest_items=extra_items,
        label_transform=music_label,
        **options,
    )
