"""Figures of the causal tools: the steering sweep as layer x strength heatmaps, the direction beside its control."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def steering_sweep_figure(result: dict, target: str | None = None) -> go.Figure:
    """Change of the model's own p(``target``) (default: the first target) at the last prompt token, per layer and
    strength: the direction (left) and the random control of the same norm (right), one colour scale."""
    target = target or result["targets"][0]
    base = result["baseline"]["output_p"][target]
    layers, strengths = result["layers"], result["strengths"]
    grids = {}
    for kind in ("direction", "control"):
        cell = {(c["layer"], c["strength"]): c for c in result["cells"] if c["kind"] == kind}
        grids[kind] = [[cell[(layer, s)]["output_p"][target] - base for s in strengths] for layer in layers]
    scale = max(1e-12, max(abs(v) for grid in grids.values() for row in grid for v in row))
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        subplot_titles=(f"direction {result['direction']}", f"control {result['control']}"),
    )
    for col, kind in enumerate(("direction", "control"), 1):
        fig.add_trace(
            go.Heatmap(
                z=grids[kind],
                x=[str(s) for s in strengths],
                y=[f"L{layer}" for layer in layers],
                zmin=-scale,
                zmax=scale,
                colorscale="RdBu",
                reversescale=True,
                showscale=col == 2,
                colorbar={"title": f"Δ p({target.strip()})"},
                hovertemplate="layer %{y}, strength %{x}<br>Δ p = %{z:.3g}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="strength (× median residual norm)", row=1, col=col)
    fig.update_yaxes(title_text="steered layer", row=1, col=1)
    fig.update_layout(
        title=f"Steering: change of the model's p({target.strip()}) from {base:.3g}, direction vs random control",
        height=420,
    )
    return fig


def patching_figure(result: dict, metric: str = "lens_diff") -> go.Figure:
    """A patching sweep's mean effect per cell: a line with its bootstrap interval per layer (``positions`` last or
    all), a layer x position heatmap (each), or a layer x head heatmap (heads), with the unpatched target and source
    means as reference lines."""
    stats = result["metrics"][metric]
    cells, mean = result["cells"], stats["mean"]
    label = {"lens_diff": f"lens logit diff at L{result['readout_layer']}", "answer_diff": "answer log-prob diff"}[
        metric
    ]
    title = (
        f"Patching {result['what']} ({result['positions']} positions) source -> target, {result['n_pairs']} pairs: "
        f"{label} (source class minus target class)"
    )
    if result["what"] == "resid" and result["positions"] in ("last", "all"):
        layers = [c["layer"] for c in cells]
        fig = go.Figure(
            [
                go.Scatter(x=layers + layers[::-1], y=stats["ci_high"] + stats["ci_low"][::-1], fill="toself",
                           line={"width": 0}, fillcolor="rgba(31,119,180,0.2)", name=f"{result['confidence']:.0%} CI",
                           hoverinfo="skip"),
                go.Scatter(x=layers, y=mean, mode="lines+markers", name="patched", line={"color": "#1f77b4"}),
            ]
        )  # fmt: skip
        for name, value, dash in (
            ("target (unpatched)", stats["target_mean"], "dot"),
            ("source", stats["source_mean"], "dash"),
        ):
            fig.add_hline(y=value, line_dash=dash, annotation_text=name, line_color="grey")
        fig.update_layout(
            title=title, xaxis_title="layer patched (residual entering it)", yaxis_title=label, height=420
        )
        return fig
    rows = "pos" if result["what"] == "resid" else "head"
    layers = sorted({c["layer"] for c in cells})
    keys = sorted({c[rows] for c in cells})
    value = {(c["layer"], c[rows]): m for c, m in zip(cells, mean)}
    z = [[value.get((layer, k)) for layer in layers] for k in keys]
    span = max(abs(stats["source_mean"] - stats["target_mean"]), 1e-9)
    fig = go.Figure(
        go.Heatmap(
            z=z, x=[f"L{layer}" for layer in layers], y=[str(k) for k in keys], colorscale="RdBu", reversescale=True,
            zmid=stats["target_mean"], zmin=stats["target_mean"] - span, zmax=stats["target_mean"] + span,
            colorbar={"title": label}, hovertemplate=f"layer %{{x}}, {rows} %{{y}}<br>%{{z:.3g}}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title=rows, height=420)
    return fig
