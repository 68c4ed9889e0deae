"""One exception type for everything a user can get wrong.

The CLI turns an :class:`OmniSepError` into one sentence on stderr and exit
code 2, never a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os


class OmniSepError(Exception):
    """A problem with the user's input: the message names the file and the problem."""


def describe(path: str | os.PathLike) -> str:
    """Quote a path the same way in every message."""
    return f"'{os.fspath(path)}'"
