"""Property-based tests (Hypothesis): chunked overlap-add and the query operations.

Chunking: for any length, chunk size and overlap (overlap larger than the
chunk included) the cross-fade weights sum to one, so a model whose masks are
all 1 gives back its input, and a shift-equivariant model gives its one-piece
output. Queries: eq. 1 and eq. 4 keep their algebraic invariants.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from omnisep import queries
from omnisep.apply import chunk_layout, separate_tensor
from omnisep.errors import OmniSepError

from test_apply import QUERIES, constant_mask_model, lively_model

SR = 16000
FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def _drop_hypothesis_gc_hook():
    """Hypothesis times garbage collection with a gc callback it leaves installed; an xdist
    worker shutting down then reports a KeyboardInterrupt inside it. Remove it after this module."""
    import gc

    yield
    gc.callbacks[:] = [hook for hook in gc.callbacks if not getattr(hook, "__module__", "").startswith("hypothesis")]


@pytest.fixture(scope="module")
def unit_mask_model():
    return constant_mask_model(1.0)


@pytest.fixture(scope="module")
def equivariant_model():
    return lively_model(depth=4)


def _noise(samples: int, seed: int) -> torch.Tensor:
    return 0.1 * torch.randn(samples, generator=torch.Generator().manual_seed(seed))


@FAST
@given(
    samples=st.integers(200, 3 * SR),
    chunk=st.floats(1.0, 3.0),
    overlap=st.floats(0.0, 8.0),
    seed=st.integers(0, 2**16),
)
def test_cross_fade_weights_sum_to_one_for_any_chunk_and_overlap(unit_mask_model, samples, chunk, overlap, seed):
    core, context, fade = chunk_layout(unit_mask_model, chunk, overlap)
    assert 2 * fade <= core and fade <= context  # a chunk's fade-in ends before its fade-out starts
    wave = _noise(samples, seed)
    out = separate_tensor(unit_mask_model, wave, QUERIES[:1], chunk_seconds=chunk, overlap=overlap)
    torch.testing.assert_close(out[0], wave, atol=2e-6, rtol=0)


@settings(FAST, max_examples=6)
@given(
    samples=st.integers(SR, 3 * SR),
    chunk=st.floats(1.0, 2.0),
    overlap=st.floats(1.0, 4.0),
    seed=st.integers(0, 2**16),
)
def test_chunked_equals_one_piece_for_a_shift_equivariant_model(equivariant_model, samples, chunk, overlap, seed):
    wave = _noise(samples, seed)
    one_piece = separate_tensor(equivariant_model, wave, QUERIES, chunk_seconds=60)
    chunked = separate_tensor(equivariant_model, wave, QUERIES, chunk_seconds=chunk, overlap=overlap)
    assert (chunked - one_piece).abs().max() <= 1e-4 * one_piece.abs().max() + 1e-7


vectors = st.lists(st.floats(-1, 1, allow_nan=False, width=32), min_size=8, max_size=8).map(
    lambda values: torch.tensor(values, dtype=torch.float32)
).filter(lambda v: float(v.norm()) > 1e-2)
weights = st.floats(0.01, 5.0)


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.tuples(vectors, weights), min_size=1, max_size=4), shift=st.integers(0, 3))
def test_compose_is_a_weighted_sum_of_normalised_parts_in_any_order(parts, shift):
    vectors_, weights_ = [p for p, _ in parts], [w for _, w in parts]
    composed = queries.compose(vectors_, weights_)
    expected = sum(w * v / v.norm() for v, w in parts)
    torch.testing.assert_close(composed, expected, atol=1e-5, rtol=1e-5)
    order = list(range(len(parts)))
    order = order[shift % len(order) :] + order[: shift % len(order)]
    rotated = queries.compose([vectors_[i] for i in order], [weights_[i] for i in order])
    torch.testing.assert_close(rotated, composed, atol=1e-5, rtol=1e-5)
    # scaling a part's vector changes nothing (each part is normalised); scaling all weights scales the query
    torch.testing.assert_close(queries.compose([3.0 * v for v in vectors_], weights_), composed, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(queries.compose(vectors_, [2 * w for w in weights_]), 2 * composed, atol=1e-5, rtol=1e-5)
    assert torch.allclose(queries.compose(vectors_, weights_, renormalize=True).norm(), torch.tensor(1.0), atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(q=vectors, n=vectors, alpha=st.floats(0.0, 4.0))
def test_negative_query_invariants(q, n, alpha):
    q = q / q.norm()
    proportional = queries.negative(q, n, alpha)
    naive = queries.negative(q, n, alpha, mode="naive")
    torch.testing.assert_close(proportional, (1 + alpha) * q - alpha * n / n.norm(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(proportional - naive, alpha * q, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(queries.negative(q, n, 0.0), q)  # alpha 0: no change
    torch.testing.assert_close(queries.negative(q, 5.0 * q, alpha), q, atol=1e-5, rtol=1e-5)  # removing itself: kept
    # the negative direction loses weight as alpha grows (unless it is the query's own direction)
    direction = n / n.norm()
    if abs(float(q @ direction)) < 0.99:
        assert float(proportional @ direction) <= float(q @ direction) + 1e-5


@settings(max_examples=30, deadline=None)
@given(alpha=st.one_of(st.floats(max_value=-1e-6), st.just(float("nan")), st.just(float("inf"))))
def test_negative_query_refuses_bad_alpha(alpha):
    with pytest.raises(OmniSepError, match="alpha"):
        queries.negative(torch.ones(4), torch.ones(4), alpha)


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(vectors, min_size=1, max_size=6, unique_by=lambda v: tuple(np.round(v.numpy(), 3))), pick=st.integers(0, 5))
def test_query_aug_returns_a_bank_row_and_finds_each_row_itself(rows, pick):
    labels = [f"label {i}" for i in range(len(rows))]
    bank = queries.QueryBank(labels, torch.stack(rows))
    index = pick % len(rows)
    vector, label, score = bank.retrieve(rows[index] * 2.5)
    assert torch.allclose(vector.norm(), torch.tensor(1.0), atol=1e-5)
    assert float(score) >= max(float(queries.normalize(r) @ queries.normalize(rows[index])) for r in rows) - 1e-5
    assert label in labels
