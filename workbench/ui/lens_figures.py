"""The layer explorer's plotly figures: built empty when the explorer starts, refilled in place as its controls move
(``lens_views`` computes what they show), and sent to the page as plotly's mime bundle (``plotly_bundle``)."""

from __future__ import annotations

import json
import math

import plotly.graph_objects as go
import plotly.io as pio

DASHES = ["solid", "dash", "dot", "dashdot"]  # one per model variant

PLOT_CONFIG = {"displaylogo": False}
FIG_WIDTH = 840  # fixed: a figure drawn while its page is still hidden (Voila's loading screen) keeps its size
FIG_HEIGHT = 560
PROB_AXIS = {"title": "lens probability (log scale)", "type": "log", "exponentformat": "power"}


# -- figures ---------------------------------------------------------------------------------------------------------
def layer_line(layer: int) -> dict:
    """A dashed vertical line at ``layer`` across the plot (the chosen or the steered layer)."""
    return {
        "type": "line",
        "x0": layer,
        "x1": layer,
        "y0": 0,
        "y1": 1,
        "yref": "paper",
        "line": {"color": "grey", "dash": "dash"},
    }


def rank_axis(vocab_size: int) -> dict:
    """A log rank axis with rank 1 at the top and the whole vocabulary in view."""
    return {
        "title": "rank in the vocabulary (log scale, 1 on top)",
        "type": "log",
        "range": [math.log10(max(vocab_size, 2)) + 0.1, -0.1],
        "exponentformat": "power",
    }


def layer_lines(
    values: dict[str, list | None],
    hover: str,
    groups: dict[str, str] | None = None,
    dashes: dict[str, str] | None = None,
) -> list[go.Scatter]:
    """One line per name (``values``: name -> value at each layer, None: no line), x the layer."""
    n = max((len(v) for v in values.values() if v), default=0)
    return [
        go.Scatter(
            x=list(range(n)) if v else None,
            y=v,
            mode="lines+markers",
            name=name,
            legendgroup=(groups or {}).get(name, name),
            line={"dash": (dashes or {}).get(name, "solid")},
            hovertemplate=f"layer %{{x}}: {hover}<extra>%{{fullData.name}}</extra>",
        )
        for name, v in values.items()
    ]


def rank_figure(
    ranks: dict[str, list[int] | None],
    vocab_size: int,
    layer: int | None = None,
    groups: dict[str, str] | None = None,
    dashes: dict[str, str] | None = None,
    title: str = "Target rank by layer (rank 1 on top; dashed line: the chosen layer)",
) -> go.Figure:
    """One line per target (``ranks``: name -> rank at each layer): x the layer, y its rank on a log axis, reversed."""
    fig = go.Figure(layer_lines(ranks, "rank %{y}", groups, dashes))
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis={"title": "layer"},
        yaxis=rank_axis(vocab_size),
        shapes=[layer_line(layer)] if layer is not None else [],
        margin={"t": 50, "b": 40},
    )
    return fig


def cell_text(token: str) -> str:
    """A token as a grid cell shows it: repr without the quotes, a leading space as '␣' so ' 6' and '6' differ."""
    text = repr(token)[1:-1]
    return "␣" + text[1:] if text.startswith(" ") else text


def top_token_grid_figure(
    token_texts: list[list[str]],
    probs: list[list[float]],
    positions: list[str],
    layer: int | None = None,
    position: int | None = None,
    title: str = "Top lens token at each layer and position (colour: its probability)",
) -> go.Figure:
    """The layer x position heatmap: colour the top token's probability, each cell's text the token (``cell_text``);
    ``token_texts``/``probs`` are [layer][pos], ``positions`` the x labels. A box marks the chosen cell."""
    fig = go.Figure(
        go.Heatmap(
            z=probs,
            text=token_texts,
            texttemplate="%{text}",
            textfont={"size": 9},
            x=list(range(len(positions))),
            y=list(range(len(probs))),
            zmin=0,
            zmax=1,
            colorscale="Blues",
            colorbar={"title": "p", "thickness": 12},
            hovertemplate="layer %{y}, position %{x}<br>top token %{text}<br>p = %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis={"title": "position", "tickvals": list(range(len(positions))), "ticktext": positions},
        yaxis={"title": "layer", "dtick": 2},
        shapes=[cell_box(layer, position)] if layer is not None and position is not None else [],
        margin={"t": 50, "b": 40},
    )
    return fig


def cell_box(layer: int, position: int) -> dict:
    """The box around the grid's (layer, position) cell."""
    return {
        "type": "rect",
        "x0": position - 0.5,
        "x1": position + 0.5,
        "y0": layer - 0.5,
        "y1": layer + 0.5,
        "line": {"color": "orange", "width": 2},
    }


def kl_figure(kl: dict[str, list[float] | None], layer: int | None = None, title: str | None = None) -> go.Figure:
    """KL(adapter || base) per layer, one line per adapter (``kl``: name -> value at each layer), log y axis (a layer
    where the adapter changes nothing, KL exactly 0, has no point on it)."""
    fig = go.Figure(layer_lines(kl, "KL %{y:.3g} nats"))
    fig.update_layout(
        title=title or "KL(adapter || base) of the lens distributions by layer",
        template="plotly_white",
        xaxis={"title": "layer"},
        yaxis={"title": "KL (nats, log scale)", "type": "log", "exponentformat": "power"},
        shapes=[layer_line(layer)] if layer is not None else [],
        margin={"t": 50, "b": 40},
    )
    return fig


def steering_figure(
    steered_values: dict[str, list[float] | None],
    unsteered_values: dict[str, list[float] | None],
    mode: str = "probability",
    layer: int | None = None,
    vocab_size: int | None = None,
    title: str = "Steered lens by layer (dotted: unsteered; dashed line: the steered layer)",
) -> go.Figure:
    """Each target's lens value at every layer, steered (solid) and unsteered (dotted, same colour). ``mode``:
    ``probability`` (log axis) or ``rank`` (log axis, rank 1 on top; needs ``vocab_size``)."""
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    traces = []
    for i, word in enumerate(steered_values):
        for values, suffix, dash in ((steered_values, "", "solid"), (unsteered_values, " (unsteered)", "dot")):
            v = values.get(word)
            traces.append(
                go.Scatter(
                    x=list(range(len(v))) if v else None,
                    y=v,
                    mode="lines+markers" if dash == "solid" else "lines",
                    name=f"{word}{suffix}",
                    legendgroup=word,
                    line={"dash": dash, "color": colours[i % len(colours)]},
                )
            )
    fig = go.Figure(traces)
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis={"title": "layer"},
        yaxis=rank_axis(vocab_size or 2) if mode == "rank" else PROB_AXIS,
        shapes=[layer_line(layer)] if layer is not None else [],
        margin={"t": 50, "b": 40},
    )
    return fig


def probe_figure(probe: dict, layer: int) -> go.Figure:
    """A classifier-probe result's accuracy by layer beside its control task's, a line at the chosen ``layer``."""
    rows = probe["layer_results"]
    return go.Figure(
        data=[
            go.Scatter(
                x=[r["layer"] for r in rows],
                y=[r["accuracy"] for r in rows],
                mode="lines+markers",
                name="probe accuracy",
            ),
            go.Scatter(
                x=[r["layer"] for r in rows],
                y=[r["control_accuracy"] for r in rows],
                mode="lines",
                name="control task",
                line={"dash": "dot"},
            ),
        ],
        layout={
            "title": f"Linear-probe accuracy by layer ({probe.get('model', '')})",
            "template": "plotly_white",
            "xaxis": {"title": "layer"},
            "yaxis": {"title": "CV accuracy", "range": [0, 1.05]},
            "shapes": [layer_line(layer)],
            "height": FIG_HEIGHT,
            "margin": {"t": 50, "b": 40},
        },
    )


# -- the explorer's figures, one line per (variant, target) ----------------------------------------------------------
def variant_line_names(variants: list[str], targets: list[str]) -> dict[tuple[str, str], str]:
    """The legend name of each (variant, target) line: the target, followed by the variant unless it is the first."""
    return {(v, word): word if v == variants[0] else f"{word} ({v})" for v in variants for word in targets}


def _dashes_and_groups(names: dict[tuple[str, str], str]) -> tuple[dict[str, str], dict[str, str]]:
    """By legend name: each line's dash (one per variant) and legend group (its target)."""
    variants = list(dict.fromkeys(v for v, _ in names))
    dashes = {name: DASHES[variants.index(v) % len(DASHES)] for (v, _), name in names.items()}
    return dashes, {name: word for (_, word), name in names.items()}


def probability_figure(names: dict[tuple[str, str], str], n_layers: int, layer: int) -> go.FigureWidget:
    """Each (variant, target)'s lens probability by layer, empty until ``fill_lines``; the first variant's lines shown.
    A FigureWidget: every layer-slider move touches it, and it is updated in place in the page."""
    dashes, _ = _dashes_and_groups(names)
    first = next(iter(names))[0]
    return go.FigureWidget(
        data=[
            go.Scatter(
                x=list(range(n_layers)),
                y=[None] * n_layers,
                mode="lines+markers",
                name=name,
                visible=v == first,
                line={"dash": dashes[name]},
                legendgroup=word,
            )
            for (v, word), name in names.items()
        ],
        layout={
            "title": "Target probability by layer (dashed line: the chosen layer)",
            "template": "plotly_white",
            "xaxis": {"title": "layer"},
            "yaxis": dict(PROB_AXIS),
            "shapes": [layer_line(layer)],
            "height": FIG_HEIGHT,
            "margin": {"t": 50, "b": 40},
        },
    )


def variant_rank_figure(names: dict[tuple[str, str], str], vocab_size: int, layer: int) -> go.Figure:
    """``rank_figure`` of each (variant, target), empty until ``fill_lines``; the first variant's lines shown."""
    dashes, groups = _dashes_and_groups(names)
    fig = rank_figure({name: None for name in names.values()}, vocab_size, layer, groups, dashes)
    fig.update_layout(height=FIG_HEIGHT)
    first = next(iter(names))[0]
    for trace, (v, _) in zip(fig.data, names):
        trace.visible = v == first
    return fig


def fill_lines(
    fig: go.Figure, names: dict[tuple[str, str], str], values: dict[str, dict[str, list]], shown: list[str]
) -> None:
    """Show the lines of the ``shown`` variants; those in ``values`` (variant -> target -> value at each layer) get
    their values."""
    with fig.batch_update():
        for trace, (variant, word) in zip(fig.data, names):
            trace.visible = variant in shown
            if variant in values:
                trace.x = list(range(len(values[variant][word])))
                trace.y = values[variant][word]


def move_layer_line(fig: go.Figure, layer: int) -> bool:
    """Move the figure's layer line (its first shape) to ``layer``; True when it moved."""
    if fig.layout.shapes[0].x0 == layer:
        return False
    fig.layout.shapes[0].update(x0=layer, x1=layer)
    return True


def empty_grid_figure() -> go.Figure:
    """A ``top_token_grid_figure`` to fill with ``fill_grid``."""
    fig = top_token_grid_figure([[]], [[]], [], 0, 0)
    fig.update_layout(height=FIG_HEIGHT)
    return fig


def fill_grid(fig: go.Figure, grid: dict, tokens: list[str], variant: str, layer: int, position: int) -> None:
    """The grid of top-1 lens tokens (``LensView.grid``) of the prompt whose ``tokens`` label the x axis, with the box
    on the chosen cell."""
    columns = list(range(len(tokens)))
    with fig.batch_update():
        heatmap = fig.data[0]
        heatmap.z = grid["probs"]
        heatmap.text = [[cell_text(t) for t in row] for row in grid["tokens"]]
        heatmap.x, heatmap.y = columns, list(range(len(grid["probs"])))
        fig.layout.xaxis.tickvals = columns
        fig.layout.xaxis.ticktext = [f"{i} {cell_text(t)}" for i, t in enumerate(tokens)]
        fig.layout.title.text = f"Top lens token at each layer and position: {variant} (colour: its p)"
        fig.layout.shapes[0].update(cell_box(layer, position))


def move_cell_box(fig: go.Figure, layer: int, position: int) -> bool:
    """Move the grid's box to the (layer, position) cell; True when it moved."""
    box, shape = cell_box(layer, position), fig.layout.shapes[0]
    if (shape.x0, shape.y0) == (box["x0"], box["y0"]):
        return False
    shape.update(box)
    return True


def fill_kl(fig: go.Figure, kl: dict[str, list[float]], prompt: str, position: int) -> None:
    """Show the lines of the adapters in ``kl`` (adapter -> KL at each layer), hide the others."""
    with fig.batch_update():
        for trace in fig.data:
            trace.visible = trace.name in kl
            if trace.name in kl:
                trace.x = list(range(len(kl[trace.name])))
                trace.y = kl[trace.name]
        fig.layout.title.text = (
            f"KL(adapter || base) of the lens by layer, {prompt!r} position {position} (dashed line: the chosen layer)"
        )


def fill_steering(fig: go.Figure, steering: dict, targets: list[str], mode: str, vocab_size: int) -> None:
    """The steered lens and the unsteered one (``SteeringPanel.steered_view``) as probabilities or ranks (``mode``)."""
    kind = "ranks" if mode == "rank" else "probs"
    with fig.batch_update():
        for j, word in enumerate(targets):
            for trace, values in zip(fig.data[2 * j : 2 * j + 2], (steering[kind], steering[f"unsteered_{kind}"])):
                trace.x = list(range(len(values[word])))
                trace.y = values[word]
        fig.layout.yaxis = rank_axis(vocab_size) if mode == "rank" else dict(PROB_AXIS)
        fig.layout.shapes[0].x0 = steering["layer"]
        fig.layout.shapes[0].x1 = steering["layer"]
        fig.layout.title.text = (
            f"Steered lens by layer: {steering['variant']}, {steering['prompt']!r} (dotted: unsteered)"
        )


def plotly_bundle(fig: go.Figure) -> dict:
    """The figure as plotly's mime bundle (what ``fig.show(renderer="plotly_mimetype")`` displays), JSON-safe, at
    FIG_WIDTH pixels unless the figure sets its own width."""
    payload = json.loads(pio.to_json(fig, validate=False))
    payload["layout"].setdefault("width", FIG_WIDTH)
    return {"application/vnd.plotly.v1+json": {**payload, "config": PLOT_CONFIG}}
