import pytest

from omnisep.training.schedule import WarmupLinearDecay


@pytest.mark.parametrize(
    "step, scale",
    [
        (0, 1 / 5000),  # the first update already moves
        (2499, 0.5),
        (4999, 1.0),
        (5000, 1.0),
        (52500, 0.55),  # half-way down the decay: 1 - 0.9 / 2
        (100_000, 0.1),
        (150_000, 0.1),  # constant after the decay
    ],
)
def test_paper_schedule(step, scale):
    assert WarmupLinearDecay(5000, 100_000, 0.1).scale(step) == pytest.approx(scale)


def test_no_warmup_starts_at_full_rate():
    schedule = WarmupLinearDecay(0, 10, 0.5)
    assert [schedule.scale(s) for s in (0, 5, 10)] == pytest.approx([1.0, 0.75, 0.5])
