"""The query modalities, declared once: what a query can be made of.

Every layer that names modalities takes them from here: the encoders
(``QueryEncoder.embed(modality, items)``), the embedding cache and the
training data (one tensor row per modality, in ``MODALITIES`` order), the
API's :class:`~omnisep.api.Query`, the CLI flags, the demo and the evaluation
protocol. The order matters and is fixed: it is the order of the rows of a
query table, of the parts of a composed query (texts, images, audios) and of
the weights a user gives with ``--weights``.

Adding a modality means a :class:`Modality` entry here, its ``_prepare_*``
method in ``encoders/base.py`` and ``_embed_*`` in each encoder, the
manifest field it comes from (``data/cache.item_inputs``), and its field on
``api.Query`` and widget in the demo; the CLI, cache, mixing and evaluation
pick it up from this table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omnisep.errors import OmniSepError


@dataclass(frozen=True)
class Modality:
    """One query modality and the names it goes by."""

    name: str  # "text": the key in caches, configs, query tables and Query fields
    given_as: str  # "text": the user types it; "file": the user names a file
    api_keyword: str  # keyword of Separator.separate for a positive part
    help: str  # the CLI flag's help
    negative_help: str  # the negative CLI flag's help
    pooled: bool = False  # several inputs of one item (a video's frames) are averaged into its query

    @property
    def cli_flag(self) -> str:
        return f"--{self.name}"

    @property
    def negative_keyword(self) -> str:
        """Keyword of ``Separator.separate`` and field of ``Query`` for a negative part."""
        return f"negative_{self.name}"

    @property
    def negative_cli_flag(self) -> str:
        return f"--negative-{self.name}"

    @property
    def metavar(self) -> str:
        return "TEXT" if self.given_as == "text" else "FILE"


TEXT = Modality(
    "text", "text", "text",
    help="Describe the sound to keep (repeatable).",
    negative_help="A sound to leave out (repeatable).",
)
IMAGE = Modality(
    "image", "file", "image",
    help="An image (or a video: its centre frames) of what makes the sound (repeatable).",
    negative_help="An image of a sound to leave out.",
    pooled=True,
)
AUDIO = Modality(
    "audio", "file", "audio_query",  # `audio` is the mixture's keyword in Separator.separate
    help="An example recording of the sound (repeatable).",
    negative_help="A recording of a sound to leave out.",
)

ALL: tuple[Modality, ...] = (TEXT, IMAGE, AUDIO)
MODALITIES: tuple[str, ...] = tuple(modality.name for modality in ALL)
BY_NAME = {modality.name: modality for modality in ALL}


def index(name: str) -> int:
    """Row of ``name`` in a query table ``[len(MODALITIES), D]``."""
    return MODALITIES.index(name)


def check(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple in canonical order; OmniSepError for an unknown or empty selection."""
    names = list(names)
    unknown = [name for name in names if name not in BY_NAME]
    if unknown or not names:
        raise OmniSepError(f"Unknown modality {', '.join(unknown) or '(none given)'}: choose from {', '.join(MODALITIES)}.")
    return tuple(name for name in MODALITIES if name in names)


def listing(separator: str = " or ") -> str:
    """``--text, --image or --audio``: the flags as a phrase for messages."""
    flags = [modality.cli_flag for modality in ALL]
    return ", ".join(flags[:-1]) + separator + flags[-1]
