"""Helpers the notebooks call: workbench.summary (tables and headline numbers from result dicts), the log options of
the lens figures, and the single-threaded BLAS of the probe fits. No model needed beyond the tiny random Llama."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from workbench.core import probes
from workbench.core.errors import WorkbenchError
from workbench.core.readouts import classifier_probe, lens_readout
from workbench.core.tasks import LabelledPrompts
from workbench.experiment import summary
from workbench.ui import plots


def _probe_result() -> dict:
    layer = lambda i, acc, ctl: {
        "layer": i,
        "accuracy": acc,
        "std": 0.0,
        "fold_accuracies": [acc],
        "control_accuracy": ctl,
        "selectivity": acc - ctl,
    }
    probs = lambda winner: {c: (0.7 if c == winner else 0.1) for c in ("multiply", "add", "subtract", "divide")}
    return {
        "model": "m",
        "num_layers": 4,
        "classifier_layer_default": 2,
        "classes": ["multiply", "add", "subtract", "divide"],
        "folds": 4,
        "best_layer": 1,
        "best_accuracy": 1.0,
        "layer_results": [layer(0, 0.5, 0.25), layer(1, 1.0, 0.5), layer(2, 1.0, 0.25), layer(3, 0.75, 0.25)],
        "test_predictions": [
            {"prompt": "6 * 9 = ", "layer": 2, "predicted": "multiply", "probabilities": probs("multiply")},
            {"prompt": "1 + 2 = ", "layer": 2, "predicted": "divide", "probabilities": probs("divide")},
            {"prompt": "hello", "layer": 2, "predicted": "add", "probabilities": probs("add")},
            {"prompt": "6 * 9 = ", "layer": 3, "predicted": "add", "probabilities": probs("add")},
        ],
    }


def test_probe_summary_reads_the_classifier_layer_and_counts_perfect_layers():
    s = summary.probe_summary(_probe_result())
    assert s["layer"] == 2 and s["accuracy"] == 1.0 and s["control_accuracy"] == 0.25 and s["selectivity"] == 0.75
    assert s["layers_at_100"] == [1, 2] and s["n_layers_at_100"] == 2 and s["first_layer_at_100"] == 1
    assert s["min_accuracy"] == 0.5 and s["min_accuracy_layer"] == 0 and s["chance"] == 0.25
    assert s["max_selectivity"] == 0.75 and s["max_selectivity_layer"] == 2
    assert s["mean_control_accuracy"] == pytest.approx(0.3125) and s["max_control_accuracy"] == 0.5
    assert (s["test_correct"], s["test_total"]) == (1, 2)  # "hello" names no operation, so it is not scored
    assert summary.probe_summary(_probe_result(), layer=3)["accuracy"] == 0.75
    with pytest.raises(WorkbenchError, match="layer 7 was not probed"):
        summary.probe_summary(_probe_result(), layer=7)


def test_probe_test_rows_at_one_layer():
    rows = summary.probe_test_rows(_probe_result())
    assert [r["prompt"] for r in rows] == ["6 * 9 = ", "1 + 2 = ", "hello"]
    assert [r["expected"] for r in rows] == ["multiply", "add", None]
    assert [r["correct"] for r in rows] == [True, False, None]
    assert rows[0]["p(predicted)"] == 0.7 and rows[0]["p(add)"] == 0.1
    assert [r["predicted"] for r in summary.probe_test_rows(_probe_result(), layer=3)] == ["add"]


def _lens_result() -> dict:
    def row(prompt, expected, probs, ranks, top=" "):
        return {
            "prompt": prompt,
            "expected": expected,
            "top_token": top,
            "top_token_id": 1,
            "top_prob": 0.9,
            "top_k": [],
            "target_probs": dict(zip(("multiply", "add"), probs)),
            "target_ranks": dict(zip(("multiply", "add"), ranks)),
            "correct": False,
        }

    return {
        "model": "m",
        "layer": 1,
        "num_layers": 2,
        "targets": [
            {"word": "multiply", "token_id": 5, "token": "multiply", "n_subtokens": 1},
            {"word": "add", "token_id": 6, "token": "ad", "n_subtokens": 2},
        ],
        "target_token_ids": {"multiply": 5, "add": 6},
        "results": [
            row("2 * 3 = ", "multiply", (1e-12, 1e-6), (900, 40)),
            row("2 + 3 = ", "add", (1e-9, 1e-3), (500, 7)),
            row("hi", None, (0.0, 0.0), (1000, 1000), top="x"),
        ],
        "score": {"correct": 0, "total": 2, "fraction": 0.0},
        "mean_expected_prob": (1e-12 + 1e-3) / 2,
        "all_layers": {
            "layers": [0, 1],
            "target_probs": {
                "multiply": [[1e-20, 1e-20, 0.0], [1e-12, 1e-9, 0.0]],
                "add": [[1e-2, 1e-30, 0.0], [1e-6, 1e-3, 0.0]],
            },
            "target_ranks": {},
            "mean_expected_prob": [(1e-20 + 1e-30) / 2, (1e-12 + 1e-3) / 2],
        },
    }


def test_lens_summary_numbers():
    s = summary.lens_summary(_lens_result())
    assert (s["score_correct"], s["score_total"], s["n_prompts"]) == (0, 2, 3)
    assert s["mean_expected_percent"] == pytest.approx(100 * (1e-12 + 1e-3) / 2)
    assert s["max_target_prob"] == 1e-3 and s["best_expected_rank"] == 7 and s["median_expected_rank"] == 453.5
    assert s["best_target_counts"] == {"multiply": 1, "add": 2} and s["best_target_is_expected"] == 1
    assert s["top_tokens"] == [" ", "x"] and s["multi_token_targets"] == {"add": "ad"}
    assert s["all_layers"] == 2 and s["peak_layer"] == 1 and s["max_expected_prob_any_layer"] == 1e-3


def test_lens_rows_show_whitespace_tokens():
    rows = summary.lens_rows(_lens_result())
    assert rows[0]["top token"] == "' '" and rows[1]["p(add)"] == 1e-3 and rows[1]["rank(add)"] == 7


def test_layer_ranges():
    assert summary.layer_ranges([29, 10, 11, 12, 5]) == "L5, L10-L12, L29"
    assert summary.layer_ranges([]) == ""


def test_lens_figures_log_options():
    result = _lens_result()
    linear = plots.lens_heatmap_figure(result)
    assert linear.layout.coloraxis.cmin == 0 and linear.layout.coloraxis.cmax == 1
    logged = plots.lens_heatmap_figure(result, log10=True)
    z = logged.data[1].z  # 'add': [prompt][layer]
    assert z[0][1] == pytest.approx(-6.0) and z[2][0] == plots.LOG10_FLOOR  # an exact zero sits at the floor
    assert logged.layout.coloraxis.cmax == 0 and logged.layout.coloraxis.cmin == plots.LOG10_FLOOR
    assert plots.lens_layer_figure(result).layout.yaxis.type is None
    assert plots.lens_layer_figure(result, log_y=True).layout.yaxis.type == "log"


def test_probe_fits_run_on_one_blas_thread(monkeypatch):
    seen = []
    real = probes.probe_layer

    def spy(*args, **kwargs):
        seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return real(*args, **kwargs)

    monkeypatch.setattr(probes, "probe_layer", spy)
    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    rng = np.random.default_rng(0)
    labels = [c for c in "abcd" for _ in range(3)]
    probes.probe_layers(rng.normal(size=(12, 2, 8)), labels, [0, 1], seed=0)
    assert seen and all(s <= {1} for s in seen)
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == before


def test_summaries_accept_real_result_dicts(tiny_lm):
    data = LabelledPrompts(["7 * 8 = ", "6 * 2 = ", "7 + 8 = ", "6 + 2 = "], ["multiply", "multiply", "add", "add"])
    probe = classifier_probe(tiny_lm, data, ["3 * 4 = ", "3 + 4 = "], seed=0)
    s = summary.probe_summary(probe)
    assert s["layer"] == tiny_lm.classifier_layer and s["test_total"] == 2 and s["layers_probed"] == tiny_lm.n_layers
    lens = lens_readout(tiny_lm, ["7 * 8 = ", "7 + 8 = "], ["multiply", "add"], all_layers=True)
    ls = summary.lens_summary(lens)
    assert ls["layer"] == tiny_lm.classifier_layer and ls["all_layers"] == tiny_lm.n_layers
    assert len(summary.lens_rows(lens)) == 2 and ls["score_total"] == 2
    assert (
        sum(ls["best_target_counts"].values()) == 2
    )  # the real dict's target ids and probabilities name the same words
