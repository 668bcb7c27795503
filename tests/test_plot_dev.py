"""train/plot_dev.py's trend: the best dev check up to HOURS before the last one against the best so far."""

import pytest

from train import plot_dev


def rows(points):
    return [{"cpu_hours": h, "mel": m} for h, m in points]


def test_trend_compares_the_best_checks_not_where_a_cycle_stands():
    # a saw: each warm restart's first check is worse, its last the best; the best fell from 1.30 to 1.28
    saw = rows([(0.0, 1.40), (1.0, 1.30), (1.5, 1.33), (2.5, 1.31), (3.5, 1.29), (4.0, 1.32), (4.5, 1.28)])
    then, now, change = plot_dev.trend(saw, hours=3.0)
    assert (then, now) == (1.30, 1.28)
    assert change == pytest.approx(1.28 / 1.30 - 1)
    assert plot_dev.trend(saw, hours=4.0)[0] == 1.40


def test_trend_needs_a_run_that_long():
    assert plot_dev.trend(rows([(0.0, 1.4), (2.9, 1.3)]), hours=3.0) is None
    assert plot_dev.trend([], hours=3.0) is None
