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
