"""Split assignment by source recording, and the fixed validation/test mixture lists."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from omnisep.data.mixtures import MixtureSpec


def assign_groups(groups: Sequence[str], seed: int, key: str = "") -> dict[str, str]:
    """Give each recording group one split; test and validation get a group first once there are enough.

    1 group: train only (it cannot be both learnt from and tested on);
    2: train + test; 3: one each; more: ~20 % test, ~15 % validation, at least one each.
    The order is a seeded shuffle, so the result depends only on (seed, key, groups).
    """
    ordered = sorted(groups)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    ordered = [ordered[i] for i in rng.permutation(len(ordered))]
    n = len(ordered)
    if n <= 1:
        n_test, n_val = 0, 0
    elif n == 2:
        n_test, n_val = 1, 0
    else:
        n_test = max(1, round(0.2 * n))
        n_val = max(1, round(0.15 * n))
    splits = ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
    return dict(zip(ordered, splits))


def make_mixtures(items: Sequence[dict], split: str, seed: int, interferers: int = 1) -> list[MixtureSpec]:
    """One mixture per item of `split`: that item as target, interferers of other classes from the same split.

    Each row is drawn from its own generator ``default_rng(row seed)``, the row
    seed derived from (seed, split, index) and recorded as the row's ``seed``;
    so the list is reproducible and a row does not change when another class is added.
    """
    pool = sorted((item for item in items if item["split"] == split), key=lambda item: item["id"])
    split_code = zlib.crc32(split.encode())
    rows = []
    for index, target in enumerate(pool):
        others = [item["id"] for item in pool if item["label"] != target["label"]]
        if len(others) < interferers:
            continue
        row_seed = int(np.random.SeedSequence([seed, split_code, index]).generate_state(1)[0])
        rng = np.random.default_rng(row_seed)
        chosen = [others[i] for i in rng.choice(len(others), size=interferers, replace=False)]
        rows.append(MixtureSpec(target["id"], tuple(chosen), id=f"mix-{split}-{index:05d}", seed=row_seed))
    return rows
