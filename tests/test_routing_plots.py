"""The router-comparison figures (workbench.ui.routing_plots): every trace carries the numbers of the comparison dict
it was built from. The dict is a small fake written here (no model): regex and neural once, probe over two seeds."""

from __future__ import annotations

import statistics

import pytest

from workbench.ui import plots, routing_plots

LABELS = ["multiply", "add", "subtract", "divide", "none"]


def _metrics(answer, symbol, word, mixed, kept, decision_s, diagonal):
    """One result's metrics, as ``virtual.score`` writes them (only the keys the table and figures read)."""
    counts = [[diagonal if i == j else (1 if j == 4 else 0) for j in range(5)] for i in range(5)]
    block = lambda acc: {"routing_accuracy": acc, "answer_accuracy": acc, "precision": 1.0, "recall": acc}
    return {
        "overall": {**block(answer), "expert_call_rate": 0.5},
        "by_kind": {
            "symbol": block(symbol),
            "word": block(word),
            "mixed": block(mixed),
            "negative": {"routing_accuracy": kept, "answer_accuracy": None, "precision": 0.0, "recall": None},
        },
        "confusion": {"labels": LABELS, "counts": counts},
        "timing": {
            "decision_s": {"median": decision_s},
            "total_s": {"median": decision_s + 0.5},
            "full_forward_s": {"median": 0.2},  # timed beside the decisions, as ``evaluate`` does
        },
    }


def _result(router, seed, *metrics):
    return {"seed": seed, "router": {"router": router}, "metrics": _metrics(*metrics), "rows": []}


@pytest.fixture
def comparison():
    return {
        "settings": {"model_id": "fake/model", "n_items": 32, "layer": 16, "n_layers": 30, "seeds": [1, 2]},
        "full_forward_s": {"median": 0.2, "q1": 0.19, "q3": 0.21, "n": 32},
        "results": [  # deliberately out of ORDER: figures list routers in compare.ORDER
            _result("neural", None, 0.25, 0.0, 0.5, 0.25, 1.0, 2.0, 1),
            _result("regex", None, 0.4, 1.0, 0.0, 0.25, 1.0, 2e-5, 2),
            _result("probe", 1, 0.9, 1.0, 0.75, 1.0, 0.95, 0.1, 3),
            _result("probe", 2, 0.8, 1.0, 0.5, 0.75, 0.85, 0.12, 4),
        ],
    }


def test_accuracy_latency_one_marker_per_router_with_seed_error_bars(comparison):
    fig = routing_plots.accuracy_latency_figure(comparison)
    markers = [t for t in fig.data if t.mode == "markers+text"]
    assert [t.text[0] for t in markers] == ["regex", "probe", "neural"]
    regex, probe, neural = markers
    assert regex.x[0] == pytest.approx(2e-5 * 1e3) and regex.y[0] == pytest.approx(0.4)
    assert neural.x[0] == pytest.approx(2000.0) and neural.y[0] == pytest.approx(0.25)
    # probe: the median of its seeds' medians (ms), the mean answer accuracy, the std over its two seeds
    assert probe.x[0] == pytest.approx(statistics.median([0.1, 0.12]) * 1e3)
    assert probe.y[0] == pytest.approx(0.85)
    assert probe.error_y.visible and probe.error_y.array[0] == pytest.approx(statistics.stdev([0.9, 0.8]))
    assert not regex.error_y.visible and not neural.error_y.visible  # one seed: no error bar
    assert probe.name == "probe (2 seeds)" and regex.name == "regex (1 seed)"
    assert fig.layout.xaxis.type == "log"
    lines = [t for t in fig.data if t.mode == "lines"]
    assert [t.x[0] for t in lines] == pytest.approx([200.0, 200.0 * 0.6])  # full forward and the 0.6x target
    assert "200.0 ms" in lines[0].name


def test_confusion_sums_a_routers_seeds(comparison):
    matrices = routing_plots.confusion_counts(comparison)
    assert list(matrices) == ["regex", "probe", "neural"]
    probe = matrices["probe"]
    assert probe["seeds"] == 2 and probe["labels"] == LABELS
    assert probe["counts"][0][0] == 3 + 4 and probe["counts"][0][4] == 2 and probe["counts"][4][4] == 7
    fig = routing_plots.confusion_figure(comparison)
    heatmaps = {t.name: t for t in fig.data}
    assert list(heatmaps) == ["regex", "probe", "neural"]
    assert [list(r) for r in heatmaps["probe"].z] == probe["counts"]
    assert list(heatmaps["regex"].x) == LABELS and list(heatmaps["regex"].y) == LABELS
    assert fig.layout.coloraxis.cmax == 7  # one colour scale for all panels, up to the largest count
    titles = [a.text for a in fig.layout.annotations]
    assert "probe (2 seeds)" in titles and "regex (1 seed)" in titles
    assert comparison["results"][2]["metrics"]["confusion"]["counts"][0][0] == 3  # the input is left as it was


def test_by_kind_bars_per_router(comparison):
    fig = routing_plots.by_kind_figure(comparison)
    assert [t.name for t in fig.data] == ["regex", "probe", "neural"]
    bars = {t.name: t for t in fig.data}
    assert list(bars["regex"].x) == list(routing_plots.KIND_COLUMNS.values())
    assert list(bars["regex"].y) == pytest.approx([1.0, 0.0, 0.25, 1.0])
    assert list(bars["neural"].y) == pytest.approx([0.0, 0.5, 0.25, 1.0])
    assert list(bars["probe"].y) == pytest.approx([1.0, 0.625, 0.875, 0.9])
    assert bars["probe"].error_y.visible and not bars["regex"].error_y.visible
    assert list(bars["probe"].error_y.array) == pytest.approx(
        [0.0, statistics.stdev([0.75, 0.5]), statistics.stdev([1.0, 0.75]), statistics.stdev([0.95, 0.85])]
    )
    assert fig.layout.barmode == "group"


def test_one_router_one_panel(comparison):
    comparison["results"] = comparison["results"][1:2]
    fig = routing_plots.confusion_figure(comparison)
    assert len(fig.data) == 1 and fig.layout.height == 380 + 80


def test_figures_write_as_html(comparison, tmp_path):
    for name, build in (
        ("accuracy_latency", routing_plots.accuracy_latency_figure),
        ("confusion", routing_plots.confusion_figure),
        ("by_kind", routing_plots.by_kind_figure),
    ):
        path = plots.write_figure(build(comparison), tmp_path / f"route_compare_{name}.html", png=False)
        assert path.is_file() and "plotly" in path.read_text()
