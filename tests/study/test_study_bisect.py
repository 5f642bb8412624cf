"""The flip-point bisection on monotone synthetic functions."""

from __future__ import annotations

import pytest

from neuronmap.study.editability import bisect_flip


@pytest.mark.parametrize("threshold", [0.013, 0.3, 1.0, 3.7])
def test_finds_the_flip_point_in_log_space(threshold):
    calls = []

    def flips(x):
        calls.append(x)
        return x >= threshold

    x, status = bisect_flip(flips, 0.01, 4.0, iters=12)
    assert status == "flipped"
    assert threshold <= x <= threshold * (4.0 / 0.01) ** (1 / 2**12) * 1.0001
    assert len(calls) == 14  # both ends and 12 halvings


def test_linear_bisection():
    x, status = bisect_flip(lambda v: v**3 > 8, 0.0, 5.0, iters=20, log=False)
    assert status == "flipped" and x == pytest.approx(2.0, abs=1e-5)


def test_ends():
    assert bisect_flip(lambda v: True, 0.01, 4.0) == (0.01, "at_low")
    assert bisect_flip(lambda v: False, 0.01, 4.0) == (4.0, "not_flipped")
    with pytest.raises(ValueError):
        bisect_flip(lambda v: True, 0.0, 4.0)
