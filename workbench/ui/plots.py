"""Plotly figures built from result dicts (the same dicts the JSON files hold). Writing them to files is
``figure_export``'s; its functions are importable from here too (notebooks call ``plots.show``)."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..core import guide
from ..experiment.summary import LOSS_KEYS, ordered_operations, rolling_mean
from ..training.records import TrainMetrics
from .figure_export import chromium, show, start_png_export, write_figure, write_png  # noqa: F401  plots.show etc.


def probe_accuracy_figure(result: dict) -> go.Figure:
    """Probe accuracy vs layer with a ±1 std band, the control task and chance."""
    rows = result["layer_results"]
    layers = [r["layer"] for r in rows]
    acc = [r["accuracy"] for r in rows]
    std = [r["std"] for r in rows]
    chance = 1 / len(result["classes"])
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=layers + layers[::-1],
            y=[a + s for a, s in zip(acc, std)] + [a - s for a, s in zip(acc, std)][::-1],
            fill="toself",
            fillcolor="rgba(31,119,180,0.2)",
            line={"width": 0},
            hoverinfo="skip",
            name="±1 std (folds)",
        )
    )
    fig.add_trace(go.Scatter(x=layers, y=acc, mode="lines+markers", name="task accuracy", line={"color": "#1f77b4"}))
    fig.add_trace(
        go.Scatter(
            x=layers,
            y=[r["control_accuracy"] for r in rows],
            mode="lines+markers",
            name="control task (random labels)",
            line={"color": "#ff7f0e", "dash": "dot"},
        )
    )
    fig.add_hline(y=chance, line={"color": "grey", "dash": "dash"}, annotation_text=f"chance {chance:.2f}")
    fig.update_layout(
        title=f"Linear probe accuracy by layer — {result['model']} ({', '.join(result['classes'])})",
        xaxis_title="layer (resid_post)",
        yaxis_title="CV accuracy",
        yaxis_range=[0, 1.05],
        template="plotly_white",
    )
    return fig


LOG10_FLOOR = -30.0  # log10 probabilities below this (underflow, exact zeros) are drawn at the floor


def lens_heatmap_figure(result: dict, log10: bool = False) -> go.Figure:
    """Each target's lens probability over layers x prompts (needs an --all-layers result).

    ``log10=True`` colours log10(p) instead of p (scale from the data's minimum, floored at LOG10_FLOOR, to 0), so
    probabilities far below 1% stay distinguishable.
    """
    grid = result["all_layers"]
    words = list(grid["target_probs"])
    prompts = [r["prompt"] for r in result["results"]]
    grids = {word: list(map(list, zip(*grid["target_probs"][word]))) for word in words}  # word -> [prompt][layer]
    if log10:
        grids = {
            w: [[max(math.log10(p), LOG10_FLOOR) if p > 0 else LOG10_FLOOR for p in row] for row in z]
            for w, z in grids.items()
        }
        cmin, cmax, label, fmt = (
            min(-1.0, *(v for z in grids.values() for row in z for v in row)),
            0.0,
            "log10 p",
            "%{z:.1f}",
        )
    else:
        cmin, cmax, label, fmt = 0.0, 1.0, "p", "%{z:.4f}"
    fig = make_subplots(rows=1, cols=len(words), subplot_titles=[repr(w) for w in words], shared_yaxes=True)
    for j, word in enumerate(words):
        fig.add_trace(
            go.Heatmap(
                z=grids[word],
                x=grid["layers"],
                y=[repr(p) for p in prompts],
                zmin=cmin,
                zmax=cmax,
                coloraxis="coloraxis",
                hovertemplate=f"layer %{{x}}<br>prompt %{{y}}<br>{label}={fmt}<extra>{word}</extra>",
            ),
            row=1,
            col=j + 1,
        )
    fig.add_vline(x=result["layer"], line={"color": "white", "dash": "dash"})
    fig.update_layout(
        title=f"Logit-lens target {'log10 ' if log10 else ''}probability — {result['model']} (dashed: layer {result['layer']})",
        coloraxis={"colorscale": "Viridis", "cmin": cmin, "cmax": cmax, "colorbar": {"title": label}},
        template="plotly_white",
    )
    fig.update_xaxes(title_text="layer")
    return fig


def lens_layer_figure(result: dict, log_y: bool = False) -> go.Figure:
    """Target probabilities at the chosen layer, one group of bars per prompt (``log_y``: logarithmic y axis)."""
    prompts = [repr(r["prompt"]) for r in result["results"]]
    fig = go.Figure(
        [
            go.Bar(name=word, x=prompts, y=[r["target_probs"][word] for r in result["results"]])
            for word in result["target_token_ids"]
        ]
    )
    fig.update_layout(
        barmode="group",
        title=f"Logit lens at layer {result['layer']} — {result['model']}",
        yaxis_title="target probability" + (" (log scale)" if log_y else ""),
        xaxis_title="prompt",
        template="plotly_white",
    )
    if log_y:
        fig.update_yaxes(type="log", exponentformat="power")
    return fig


LOSS_TITLES = {
    "loss": "total loss",
    "classifier_loss": "classifier loss (lens CE at the classifier layer)",
    "answer_loss": "answer loss (next-token CE on the labelled tokens)",
}


def training_loss_figure(
    rows: list[dict],
    keys: list[str] | None = None,
    window: int = 25,
    title: str = "Training losses",
    log_y: bool = False,
) -> go.Figure:
    """One panel per loss in a train_log: every step (faint) and the trailing rolling mean over ``window`` steps
    (``log_y``: logarithmic y axes, for a loss that falls by orders of magnitude)."""
    keys = [k for k in (keys or LOSS_KEYS) if rows and all(k in r for r in rows)]
    steps = [r["step"] for r in rows]
    fig = make_subplots(
        rows=max(1, len(keys)),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=[LOSS_TITLES.get(k, k) for k in keys],
    )
    for i, key in enumerate(keys):
        values = [r[key] for r in rows]
        for y, line, name, group in (
            (values, {"color": "rgba(31,119,180,0.25)", "width": 1}, f"{key} (each step)", "raw"),
            (rolling_mean(values, window), {"color": "#1f77b4", "width": 2}, f"rolling mean ({window} steps)", "mean"),
        ):
            trace = go.Scatter(x=steps, y=y, mode="lines", line=line, name=name, showlegend=i == 0, legendgroup=group)
            fig.add_trace(trace, row=i + 1, col=1)
        fig.update_yaxes(
            title_text=key, row=i + 1, col=1, **({"type": "log", "exponentformat": "power"} if log_y else {})
        )
    fig.update_xaxes(title_text="step", row=max(1, len(keys)), col=1)
    fig.update_layout(title=title, template="plotly_white", height=260 * max(1, len(keys)) + 80)
    return fig


def operation_before_after_figure(metrics: dict, log_y: bool = True) -> go.Figure:
    """Held-out correct-target lens probability per operation, before vs after training (from metrics.json)."""
    m = TrainMetrics.from_dict(metrics)
    after = ordered_operations(m.after.lens.per_operation_prob)
    before = m.before.lens.per_operation_prob if m.before else {}
    ops = list(after)
    fig = go.Figure(
        [
            go.Bar(name="before", x=ops, y=[before.get(op) for op in ops], marker_color="#7f7f7f"),
            go.Bar(name="after", x=ops, y=[after[op] for op in ops], marker_color="#1f77b4"),
        ]
    )
    fig.update_layout(
        barmode="group",
        template="plotly_white",
        xaxis_title="operation of the held-out prompt",
        yaxis_title="p(correct target)" + (" (log scale)" if log_y else ""),
        title=f"Logit lens at layer {m.after.lens.layer}: correct-target probability by operation, "
        f"{m.eval_prompts} held-out prompts — {m.model}",
    )
    if log_y:
        fig.update_yaxes(type="log", exponentformat="power")
    return fig


def adapter_changes_figure(rows: list[dict], frozen: list[int] | None = None) -> go.Figure:
    """Largest absolute change of the LoRA weights per layer between two adapters; frozen layers drawn in grey."""
    frozen = set(frozen or [])
    fig = go.Figure(
        go.Bar(
            x=[r["layer"] for r in rows],
            y=[r["max_abs_change"] for r in rows],
            marker_color=["#7f7f7f" if r["layer"] in frozen else "#1f77b4" for r in rows],
            hovertemplate="layer %{x}<br>max |change| %{y:.3g}<extra></extra>",
        )
    )
    fig.update_layout(
        title="LoRA weight change per layer (grey: frozen)",
        xaxis_title="layer",
        yaxis_title="max |after − before|",
        template="plotly_white",
    )
    return fig


STAGES = ("base model", "after phase 1", "after phase 2")


def _seed_name(seed) -> str:
    return "this run" if seed is None else f"seed {seed}"


def _guide_band(fig: go.Figure, **annotation) -> None:
    """The guide's 36-81% as a green band (the trained lens's correct-operation probability it reports)."""
    label = f"the guide's {guide.FIGURES['trained_lens']}"
    fig.add_hrect(
        y0=guide.LENS_RANGE[0],
        y1=guide.LENS_RANGE[1],
        fillcolor="green",
        opacity=0.1,
        line_width=0,
        annotation_text=label,
        **annotation,
    )


def verification_lens_figure(data: dict) -> go.Figure:
    """Held-out correct-operation lens probability at the classifier layer: base, after phase 1, after phase 2 (one
    bar per training seed; log axis), with the guide's 36-81% band. ``data``: ``claims.collect``'s result."""
    fig = go.Figure(
        [
            go.Bar(name=_seed_name(seed), x=list(STAGES), y=[d["lens_before"], d["lens_after"], d["lens_phase2"]])
            for seed, d in data["seeds"].items()
        ]
    )
    _guide_band(fig, annotation_position="top left")
    fig.update_yaxes(type="log", exponentformat="power", title_text="mean p(correct operation word), log scale")
    fig.update_layout(
        barmode="group", template="plotly_white", title="Logit lens at the classifier layer on held-out prompts"
    )
    return fig


def _accuracy_by_layer(probe: dict, name: str, **style) -> go.Scatter:
    layers = sorted(probe["accuracy_by_layer"], key=int)
    y = [probe["accuracy_by_layer"][x] for x in layers]
    return go.Scatter(x=[int(x) for x in layers], y=y, mode="lines+markers", name=name, **style)


def verification_probe_figure(data: dict) -> go.Figure:
    """Linear-probe accuracy by layer: the base model and the phase-1 model of each seed, with chance."""
    fig = go.Figure()
    base = data.get("base_probe")
    if base:
        fig.add_trace(_accuracy_by_layer(base, "base model", line={"color": "#7f7f7f"}))
        fig.add_vline(x=base["layer"], line={"color": "grey", "dash": "dash"})
        fig.add_hline(y=base["chance"], line={"color": "grey", "dash": "dot"}, annotation_text="chance")
    for seed, d in data["seeds"].items():
        if d.get("phase1_probe"):
            fig.add_trace(_accuracy_by_layer(d["phase1_probe"], f"after phase 1, {_seed_name(seed)}"))
    fig.update_layout(
        title="Hidden-space classifier: linear-probe accuracy by layer (dashed: classifier layer)",
        xaxis_title="layer",
        yaxis_title="CV accuracy",
        yaxis_range=[0, 1.05],
        template="plotly_white",
    )
    return fig


def verification_answers_figure(data: dict) -> go.Figure:
    """Answer accuracy on held-out prompts at each stage: teacher-forced exact match and greedy answers."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["teacher-forced exact match", "greedy answer correct"])
    for i, (seed, d) in enumerate(data["seeds"].items()):
        colour = f"hsl({(i * 67) % 360},60%,45%)"
        fig.add_trace(
            go.Bar(
                name=_seed_name(seed),
                x=list(STAGES),
                marker_color=colour,
                legendgroup=str(seed),
                y=[d["exact_match_base"], d["exact_match_phase1"], d["exact_match_phase2"]],
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Bar(
                name=_seed_name(seed),
                x=list(STAGES[1:]),
                marker_color=colour,
                legendgroup=str(seed),
                showlegend=False,
                y=[d["greedy_phase1"], d["greedy_phase2"]],
            ),
            row=1,
            col=2,
        )
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    fig.update_layout(barmode="group", template="plotly_white", title="Answers on held-out prompts")
    return fig


def comparison_methods_figure(rows: list[dict], steps: int) -> go.Figure:
    """Held-out correct-operation lens probability per training method, one marker per seed (log axis), with the
    guide's 36-81% band. ``rows``: ``compare.run_methods``'s result."""
    from ..experiment.compare import LABELS, METHODS  # compare imports the training loop: only its figures pay

    names = [m for m in METHODS if any(r["method"] == m for r in rows)]
    untrained = {r["method"]: r["heldout_correct_prob"] for r in rows if r["seed"] is None}  # "none": seed-independent
    fig = go.Figure()
    for seed in dict.fromkeys(r["seed"] for r in rows if r["seed"] is not None) or [None]:
        by_method = {**untrained, **{r["method"]: r["heldout_correct_prob"] for r in rows if r["seed"] == seed}}
        fig.add_trace(
            go.Scatter(
                x=[LABELS[m] for m in names],
                y=[by_method.get(m) for m in names],
                mode="markers",
                marker={"size": 11},
                name=f"seed {seed}",
            )
        )
    _guide_band(fig)
    fig.update_yaxes(type="log", exponentformat="power", title_text="held-out p(correct operation word), log scale")
    fig.update_layout(
        title=f"Training methods, {steps} steps each: the lens at the classifier layer", template="plotly_white"
    )
    return fig


def comparison_eight_figure(summary: dict) -> go.Figure:
    """Top-1 on the guide's eight prompts per method, mean ± std over seeds. ``summary``: ``compare.summarize``'s."""
    from ..experiment.compare import LABELS, METHODS

    names = [m for m in METHODS if m in summary]
    fig = go.Figure(
        go.Bar(
            x=[LABELS[m] for m in names],
            y=[summary[m]["eight_top1"]["mean"] for m in names],
            error_y={"array": [summary[m]["eight_top1"]["std"] for m in names]},
        )
    )
    fig.update_layout(
        title="Top-1 on the guide's eight prompts (mean ± std over seeds)",
        yaxis_range=[0, 8.5],
        yaxis_title="prompts read correctly",
        template="plotly_white",
    )
    return fig
