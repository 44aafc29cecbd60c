import pytest

from bench.model.stats import percentile


def test_percentile_matches_linear_interpolation():
    xs = [1.0, 2.0, 3.0, 4.0]
    assert percentile(xs, 50) == 2.5
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 100) == 4.0
    assert percentile(xs, 95) == pytest.approx(3.85)


def test_percentile_edge_cases():
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([3.0, float("nan"), 1.0], 50) == 2.0
