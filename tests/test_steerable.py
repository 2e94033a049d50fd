"""Steerable × decodable on hand-built cells and on a tiny random model: the 2 × 2 counts and Spearman's rho match a
hand count and scipy on the same numbers; a zero-strength steer (the identity intervention) moves nothing."""

from __future__ import annotations

import pytest
from scipy import stats

from workbench.experiment.steerable import against_readouts, steering_cells
from workbench.tasks.spec import load_task


def test_two_by_two_and_rho_by_hand():
    cells = [
        {"layer": L, "steerable": s, "success": x} for L, s, x in ((0, False, 0.1), (1, True, 2.0), (2, True, 3.0))
    ]
    rows = [{"readout": "logit", "layer": L, "top1": t, "p_expected": p}
            for L, t, p in ((0, 0.2, 1e-9), (1, 0.95, 1e-3), (2, 0.5, 1e-2))]  # fmt: skip
    out = against_readouts(cells, rows)["logit"]
    assert out["table"] == {"steerable, decodable": 1, "steerable, not decodable": 1, "not steerable, decodable": 0,
                            "neither": 1}  # fmt: skip
    assert out["spearman_rho"] == pytest.approx(stats.spearmanr([-9, -3, -2], [0.1, 2.0, 3.0]).statistic) == 1.0
    assert out["cells"] == 3


@pytest.mark.slow
def test_a_zero_strength_steer_moves_nothing(tiny_lm):
    cells = steering_cells(tiny_lm, load_task("arithmetic"), [1, 2], strength=0.0, n_controls=2, n_fit=16,
                           n_prompts=4)  # fmt: skip
    assert len(cells) == 2 * 4  # layers x ordered pairs (each class towards the next)
    assert all(c["success"] == 0.0 and c["control"] == 0.0 and not c["steerable"] for c in cells)
    assert {(c["from"], c["to"]) for c in cells} == {("multiply", "add"), ("add", "subtract"),
                                                     ("subtract", "divide"), ("divide", "multiply")}  # fmt: skip
