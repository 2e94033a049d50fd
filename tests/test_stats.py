"""Numbers over seeds (``workbench.core.stats``) against hand-computed cases: the t interval with the tabulated
quantile, one value alone, missing values left out, and the two ways the pages write them."""

from __future__ import annotations

import pytest

from workbench.core.stats import mean_std, over_seeds, spread


def test_over_seeds_is_the_mean_sample_std_range_and_t_interval():
    stat = over_seeds([1.0, 2.0, 3.0])
    assert (stat["n"], stat["mean"], stat["std"], stat["min"], stat["max"]) == (3, 2.0, 1.0, 1.0, 3.0)
    t = 4.302653  # t(0.975, 2 degrees of freedom), from the table
    assert stat["ci"] == pytest.approx([2 - t / 3**0.5, 2 + t / 3**0.5], rel=1e-6)
    one = over_seeds([0.5, None, float("nan")])
    assert (one["n"], one["mean"], one["std"], one["ci"], one["values"]) == (1, 0.5, 0.0, None, [0.5])
    assert over_seeds([])["mean"] is None and over_seeds([None])["n"] == 0


def test_the_two_ways_the_pages_write_them():
    assert mean_std(over_seeds([0.9, 0.95, 1.0]), ".2f") == "0.95 ± 0.05"
    assert mean_std(over_seeds([0.5])) == "0.500" and mean_std(over_seeds([]), missing="–") == "–"
    percent = lambda v: f"{100 * v:+.1f}%"
    assert spread(over_seeds([0.01, 0.03]), percent) == "+2.0% ± 1.4% [+1.0%, +3.0%]"  # no sign on the std
    assert spread(over_seeds([6, 5, 8]), lambda v: f"{v:.3g}", "/8") == "6.33/8 ± 1.53 [5, 8]"
    assert spread(over_seeds([7]), lambda v: f"{v:g}", "/8") == "7/8"
