"""Figures of the readout ladder: each readout's reading of the class per layer, one panel per model (base, each
trained adapter), and the steering success per layer beside its random control."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..lenses.ladder import READOUTS, READS

COLOURS = dict(zip(READOUTS, ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#7f7f7f")))
METRICS = {
    "top1": ("top-1 among the class words", lambda v: v),
    "p_expected": ("log10 mean p(class word)", lambda v: math.log10(max(v, 1e-30))),
}


def ladder_figure(results: dict[str, dict], metric: str = "top1") -> go.Figure:
    """``results``: {panel title: ladder result}. One line per readout over the layers; the classifier layer dotted;
    for top-1, the reading threshold dashed and each point's 95% Wilson interval."""
    label, transform = METRICS[metric]
    fig = make_subplots(rows=1, cols=len(results), shared_yaxes=True, subplot_titles=list(results))
    for col, result in enumerate(results.values(), 1):
        for name in dict.fromkeys(r["readout"] for r in result["rows"]):
            rows = sorted((r for r in result["rows"] if r["readout"] == name), key=lambda r: r["layer"])
            error = None
            if metric == "top1" and all(r.get("top1_ci") for r in rows):
                error = {
                    "type": "data",
                    "symmetric": False,
                    "array": [r["top1_ci"][1] - r["top1"] for r in rows],
                    "arrayminus": [r["top1"] - r["top1_ci"][0] for r in rows],
                    "thickness": 1,
                }
            fig.add_trace(
                go.Scatter(
                    x=[r["layer"] for r in rows],
                    y=[transform(r[metric]) for r in rows],
                    error_y=error,
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    line={"color": COLOURS.get(name)},
                    hovertemplate=f"{name}, layer %{{x}}<br>{label} %{{y:.3g}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        if result.get("classifier_layer") is not None:
            fig.add_vline(x=result["classifier_layer"], line_dash="dot", line_color="grey", row=1, col=col)
        if metric == "top1":
            fig.add_hline(y=READS, line_dash="dash", line_color="grey", row=1, col=col)
        fig.update_xaxes(title_text="layer", row=1, col=col)
    fig.update_yaxes(title_text=label, row=1, col=1)
    task = next(iter(results.values()))["task"]
    fig.update_layout(
        title=f"The readout ladder on {task}: {label} per layer (dotted: the classifier layer)",
        template="plotly_white",
        height=420,
    )
    return fig


def steering_figure(results: dict[str, dict]) -> go.Figure:
    """Per model: the mean steering success per layer (change of log p(A's word) − log p(B's word), averaged over the
    class pairs) for the class-mean difference, and for the norm-matched random directions (dashed)."""
    fig = go.Figure()
    for title, result in results.items():
        cells = result.get("steering", {}).get("cells") or []
        layers = sorted({c["layer"] for c in cells})
        for key, dash in (("success", "solid"), ("control", "dash")):
            mean = [sum(c[key] for c in cells if c["layer"] == L) / sum(c["layer"] == L for c in cells) for L in layers]
            fig.add_trace(
                go.Scatter(
                    x=layers,
                    y=mean,
                    mode="lines+markers",
                    name=f"{title}: {'class-mean difference' if key == 'success' else 'random directions'}",
                    line={"dash": dash},
                )
            )
    fig.update_layout(
        title="Steering success per layer: Δ(log p(to) − log p(from)) at the output",
        xaxis_title="steered layer",
        yaxis_title="Δ log-odds of the target class word",
        template="plotly_white",
        height=420,
    )
    return fig
