"""Plotly figures of a router comparison (``routing.compare.compare_routers``'s dict, or the JSON it is saved as).

Every number comes from ``router_table`` (the table the notebook shows) or from the results' own metrics, so a
figure never disagrees with the table beside it. Write them with ``plots.show`` / ``plots.write_figure``.
``routing.compare`` is imported inside each function: it loads the model stack (seconds), which a figure does not need
until it is drawn.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

KIND_COLUMNS = {  # router_table column -> bar label
    "answer_symbol": "symbol: answered right",
    "answer_word": "word: answered right",
    "answer_mixed": "mixed: answered right",
    "negatives_kept": "negatives: kept from the calculator",
}
CONFUSION_COLUMNS = 3  # confusion panels per row


def _ms(seconds: float) -> float:
    return seconds * 1e3


def _error(stat: dict) -> dict:
    """Error bars of one mean ± std over seeds: shown only where there are several seeds."""
    several = stat["n"] > 1
    return {"type": "data", "array": [stat["std"] if several else 0.0], "visible": several}


def accuracy_latency_figure(comparison: dict) -> go.Figure:
    """Answer accuracy end to end (y, mean ± std over seeds) against the router's decision latency (x, ms, the median
    over seeds of each seed's median; log axis), one marker per router, and a full forward's median and the early-exit
    target as lines."""
    from ..routing.compare import EARLY_EXIT_MAX_RATIO, router_table

    rows = router_table(comparison)
    fig = go.Figure()
    for row in rows:
        accuracy = row["answer_accuracy"]
        fig.add_trace(
            go.Scatter(
                x=[_ms(row["decision_s"])],
                y=[accuracy["mean"]],
                error_y=_error(accuracy),
                mode="markers+text",
                marker={"size": 13},
                text=[row["router"]],
                textposition="top center",
                name=f"{row['router']} ({row['seeds']} seed{'s' if row['seeds'] != 1 else ''})",
                hovertemplate="%{x:.3g} ms<br>answer accuracy %{y:.3f}<extra>" + row["router"] + "</extra>",
            )
        )
    full = comparison["full_forward_s"]["median"]
    if full:  # vertical lines as traces: on a log axis they sit where their x says, and the legend names them
        for x, name, dash in (
            (full, f"one full forward ({_ms(full):.1f} ms median)", "dash"),
            (full * EARLY_EXIT_MAX_RATIO, f"early-exit target ({EARLY_EXIT_MAX_RATIO:g}x a full forward)", "dot"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=[_ms(x), _ms(x)],
                    y=[0, 1.05],
                    mode="lines",
                    line={"color": "grey", "dash": dash},
                    name=name,
                    hoverinfo="skip",
                )
            )
    settings = comparison["settings"]
    fig.update_xaxes(type="log", title_text="decision latency per prompt, ms (median; log scale)")
    fig.update_yaxes(range=[0, 1.08], tickformat=".0%", title_text="answers right, end to end (arithmetic prompts)")
    fig.update_layout(
        title=f"Routers: answer accuracy vs decision latency — {settings['model_id']}, {settings['n_items']} prompts",
        template="plotly_white",
    )
    return fig


def confusion_counts(comparison: dict) -> dict[str, dict]:
    """Per router (in ``ORDER``): the confusion matrix summed over its seeds, ``{"labels", "counts", "seeds"}``;
    ``counts[true][decided]``."""
    from ..routing.compare import ORDER

    out: dict[str, dict] = {}
    for result in comparison["results"]:
        name, confusion = result["router"]["router"], result["metrics"]["confusion"]
        if name not in out:
            out[name] = {"labels": list(confusion["labels"]), "counts": [list(r) for r in confusion["counts"]]}
            out[name]["seeds"] = 1
            continue
        mine = out[name]
        mine["counts"] = [[a + b for a, b in zip(ra, rb)] for ra, rb in zip(mine["counts"], confusion["counts"])]
        mine["seeds"] += 1
    return {name: out[name] for name in ORDER if name in out}


def confusion_figure(comparison: dict) -> go.Figure:
    """One heatmap per router: rows the label a perfect router picks, columns the router's decision, colour and text
    the number of prompts (summed over the router's seeds)."""
    matrices = confusion_counts(comparison)
    names = list(matrices)
    cols = min(len(names), CONFUSION_COLUMNS) or 1
    n_rows = math.ceil(len(names) / cols) or 1
    titles = [f"{name} ({m['seeds']} seed{'s' if m['seeds'] != 1 else ''})" for name, m in matrices.items()]
    fig = make_subplots(
        rows=n_rows,
        cols=cols,
        subplot_titles=titles,
        horizontal_spacing=0.08,
        vertical_spacing=0.16 if n_rows > 1 else 0.1,
    )
    top = max((c for m in matrices.values() for row in m["counts"] for c in row), default=1)
    for k, (name, matrix) in enumerate(matrices.items()):
        row, col = divmod(k, cols)
        fig.add_trace(
            go.Heatmap(
                z=matrix["counts"],
                x=matrix["labels"],
                y=matrix["labels"],
                coloraxis="coloraxis",
                texttemplate="%{z}",
                hovertemplate="true %{y}<br>decided %{x}<br>%{z} prompts<extra>" + name + "</extra>",
                name=name,
            ),
            row=row + 1,
            col=col + 1,
        )
        fig.update_yaxes(autorange="reversed", row=row + 1, col=col + 1)
        if col == 0:
            fig.update_yaxes(title_text="should be", row=row + 1, col=col + 1)
        fig.update_xaxes(title_text="router decided", row=row + 1, col=col + 1)
    fig.update_layout(
        title="Routing decisions: prompts per (should be, decided) pair; the diagonal is right",
        coloraxis={"colorscale": "Blues", "cmin": 0, "cmax": top, "colorbar": {"title": "prompts"}},
        template="plotly_white",
        height=380 * n_rows + 80,
    )
    return fig


def by_kind_figure(comparison: dict) -> go.Figure:
    """Grouped bars, one group per prompt kind, one bar per router: the share of symbol / word / mixed prompts
    answered right end to end, and the share of negatives the router kept from the calculator (mean ± std over
    seeds)."""
    from ..routing.compare import router_table

    rows = router_table(comparison)
    fig = go.Figure()
    for row in rows:
        stats = [row[column] for column in KIND_COLUMNS]
        several = any(s["n"] > 1 for s in stats)
        fig.add_trace(
            go.Bar(
                name=row["router"],
                x=list(KIND_COLUMNS.values()),
                y=[s["mean"] for s in stats],
                error_y={"type": "data", "array": [s["std"] if s["n"] > 1 else 0.0 for s in stats], "visible": several},
                texttemplate="%{y:.0%}",  # a zero bar still says 0%
                textposition="outside",
                hovertemplate="%{x}<br>%{y:.1%}<extra>" + row["router"] + "</extra>",
            )
        )
    fig.update_yaxes(range=[0, 1.12], tickformat=".0%", title_text="share of the kind's prompts")
    fig.update_layout(
        barmode="group",
        title="Per prompt kind: arithmetic answered right, and negatives kept from the calculator",
        legend_title_text="router",
        template="plotly_white",
    )
    return fig
