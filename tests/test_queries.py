import math

import pytest
import torch

from omnisep.errors import OmniSepError
from omnisep.queries import QueryBank, compose, mixup_weights, negative, normalize, omni_query


def close(actual, expected):
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=1e-6, rtol=0)


def test_normalize():
    close(normalize(torch.tensor([3.0, 4.0])), [0.6, 0.8])
    close(normalize(torch.tensor([[0.0, 2.0], [5.0, 0.0]])), [[0.0, 1.0], [1.0, 0.0]])


def test_compose_equation_1_by_hand():
    parts = [torch.tensor([3.0, 4.0]), torch.tensor([0.0, 2.0])]
    close(compose(parts, [2.0, 1.0]), [1.2, 2.6])  # 2 * [0.6, 0.8] + [0, 1]; not re-normalised
    norm = math.hypot(1.2, 2.6)
    close(compose(parts, [2.0, 1.0], renormalize=True), [1.2 / norm, 2.6 / norm])


def test_compose_broadcasts_a_batch_with_a_single_vector():
    batch = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    close(compose([batch, torch.tensor([0.0, 5.0])], [0.5, 0.5]), [[0.5, 0.5], [0.0, 1.0]])


@pytest.mark.parametrize(
    "parts,weights,message",
    [
        ([], [], "at least one"),
        ([torch.ones(2)], [1.0, 1.0], "2 weight"),
        ([torch.ones(2), torch.ones(2)], [1.0, -1.0], "non-negative"),
        ([torch.ones(2)], [0.0], "not all zero"),
        ([torch.ones(2), torch.ones(3)], [1.0, 1.0], "different embedding sizes"),
    ],
)
def test_compose_errors(parts, weights, message):
    with pytest.raises(OmniSepError, match=message):
        compose(parts, weights)


def test_omni_query_is_the_normalised_2_2_1_mean():
    image, text, audio = torch.eye(3)
    close(omni_query(image, text, audio), [2 / 3, 2 / 3, 1 / 3])
    close(omni_query(image, text, None), [1 / math.sqrt(2), 1 / math.sqrt(2), 0.0])
    with pytest.raises(OmniSepError):
        omni_query(None, None, None)


def test_negative_equation_4_by_hand():
    q, q_neg = torch.tensor([1.0, 0.0]), torch.tensor([3.0, 4.0])
    close(negative(q, q_neg, alpha=0.5), [1.5 - 0.3, -0.4])  # (1 + a) q - a * [0.6, 0.8]
    close(negative(q, q_neg, alpha=0.5, mode="naive"), [1.0 - 0.3, -0.4])
    close(negative(q, q_neg, alpha=0.0), [1.0, 0.0])
    with pytest.raises(OmniSepError, match="mode"):
        negative(q, q_neg, mode="other")
    with pytest.raises(OmniSepError, match="alpha"):
        negative(q, q_neg, alpha=-1)
    with pytest.raises(OmniSepError, match="dimensions"):
        negative(q, torch.ones(3))


def make_bank():
    return QueryBank(["a", "b", "c"], torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))


def test_bank_retrieves_top1_cosine_by_hand():
    bank = make_bank()
    # cosines of [2, 1]: a 2/sqrt5 = 0.894, b 1/sqrt5 = 0.447, c 3/sqrt10 = 0.949
    row, label, score = bank.retrieve(torch.tensor([2.0, 1.0]))
    assert label == "c"
    close(row, [1 / math.sqrt(2), 1 / math.sqrt(2)])
    assert score.item() == pytest.approx(3 / math.sqrt(10))
    rows, labels, scores = bank.retrieve(torch.tensor([[[0.1, 5.0]], [[4.0, -1.0]]]))
    assert labels == [["b"], ["a"]]
    assert rows.shape == (2, 1, 2) and scores.shape == (2, 1)
    close(rows[:, 0], [[0.0, 1.0], [1.0, 0.0]])


def test_bank_tensor_round_trip_keeps_normalised_rows():
    bank = make_bank()
    tensors = bank.to_tensors()
    assert list(tensors) == ["query_bank.embeddings"]
    close(tensors["query_bank.embeddings"][1], [0.0, 1.0])
    again = QueryBank.from_tensors(bank.labels, tensors)
    assert again.labels == ["a", "b", "c"] and len(again) == 3 and again.dim == 2
    torch.testing.assert_close(again.embeddings, bank.embeddings)


@pytest.mark.parametrize(
    "labels,embeddings,message",
    [
        ([], torch.zeros(0, 4), "empty"),
        (["a"], torch.ones(2, 4), "1 labels for 2"),
        (["a"], torch.ones(4), r"\[N, D\]"),
        (["a"], torch.zeros(1, 4), "zero"),
    ],
)
def test_bank_errors(labels, embeddings, message):
    with pytest.raises(OmniSepError, match=message):
        QueryBank(labels, embeddings)


def test_bank_dimension_mismatch():
    with pytest.raises(OmniSepError, match="3 dimensions, the bank 2"):
        make_bank().retrieve(torch.ones(3))


def test_mixup_weights_by_hand():
    available = torch.tensor([[True, True, False], [False, False, True], [True, True, True]])
    weights = mixup_weights(available, torch.Generator().manual_seed(7))
    draws = 1.0 - torch.rand(3, 3, generator=torch.Generator().manual_seed(7))
    expected_first = draws[0, :2] / draws[0, :2].sum()
    torch.testing.assert_close(weights[0, :2], expected_first)
    assert weights[0, 2] == 0 and weights[1].tolist() == [0.0, 0.0, 1.0]
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(3))
    assert (weights[2] > 0).all()


def test_mixup_weights_need_one_modality_per_item():
    with pytest.raises(OmniSepError, match="no query modality"):
        mixup_weights(torch.tensor([[True, False], [False, False]]))


def test_query_rows_combine_logits_of_query_and_negative_by_hand():
    from omnisep.queries import QueryRows

    p0, p1, n1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([3.0, 4.0])
    rows = QueryRows.with_negatives([p0, p1], [None, n1], [0.0, 2.0])
    assert len(rows) == 2 and rows.rows.shape == (3, 2)
    close(rows.rows[2], [0.6, 0.8])  # the negative is normalised, as in eq. 4
    close(rows.combine, [[1.0, 0.0, 0.0], [0.0, 3.0, -2.0]])

    class Linear:  # logits = rows . [1, 2] on a 1 x 1 grid
        def mask_logits(self, prepared, queries):
            return (queries @ torch.tensor([1.0, 2.0]))[..., None, None]

    logits = rows.logits(Linear(), None, rows.rows[None])
    close(logits[0, :, 0, 0], [1.0, 3 * 2.0 - 2 * 2.2])
    assert QueryRows.with_negatives([p0], [None], [0.5]).combine is None
    assert QueryRows.of(torch.stack([p0, p1])).combine is None
    with pytest.raises(OmniSepError, match="alpha"):
        QueryRows.with_negatives([p0], [n1], [-1.0])
    with pytest.raises(ValueError, match="logit"):
        negative(p0, n1, 0.5, mode="logit")
