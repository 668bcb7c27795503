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


def test_read_dev_orders_rows_by_cpu_hours_and_skips_text_columns(tmp_path):
    # train/dev_check.py --append: a stopped run's last check, logged after rows of the run that went on
    (tmp_path / "dev.csv").write_text(
        "step,cpu_hours,levels,mel,time,weights\n"
        "100,1.0,8,1.5,2026-01-01T00:00:00,\n"
        "300,3.0,8,1.3,2026-01-01T02:00:00,\n"
        "200,2.0,8,1.4,2026-01-01T03:00:00,float32 checkpoint\n")
    rows, ref = plot_dev.read_dev(str(tmp_path))
    assert [r["step"] for r in rows] == [100, 200, 300] and ref is None
    assert all("weights" not in r and "time" not in r for r in rows)
