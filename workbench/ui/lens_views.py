"""The layer explorer's views of one prompt as plain functions (tensors in, tensors or dicts out) and the plotly
figures drawn from them:

- ``target_lens``: each target's lens probability and rank at every layer (Ecco's ``rankings_watch``: rank 1 on top);
- ``top_token_grid``: the top-1 lens token and its probability at every layer x position (nostalgebraist's logit lens);
- ``kl_by_layer``: KL(adapter || base) of the lens distributions at one position, per layer, the base read from the
  same loaded model with its LoRA switched off (``causal.ablation.without_lora``);
- ``steered_lens`` / ``steered_answers``: the lens at every layer, and the greedy answers, with a direction added after
  one layer (``causal.steering.steered``), the strength a fraction of that layer's median residual norm.

Each takes the model's residuals (``core.activations.capture_positions``: [n_layers, n_tokens, d_model]) or runs the
one forward pass it needs; none generates except ``steered_answers``.
"""

from __future__ import annotations

import math
from itertools import combinations

import plotly.graph_objects as go
import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..causal.ablation import select, without_lora
from ..causal.steering import steered
from ..core.activations import capture_positions
from ..core.generation import greedy_answers
from ..core.lens import lens_log_probs, ranks_of
from ..core.models import LoadedModel

DASHES = ["solid", "dash", "dot", "dashdot"]

PLOT_CONFIG = {"displaylogo": False}
FIG_WIDTH = 840  # fixed: a figure drawn while its page is still hidden (Voila's loading screen) keeps its size
FIG_HEIGHT = 560


# -- computations ----------------------------------------------------------------------------------------------------
@torch.inference_mode()
def target_lens(
    lm: LoadedModel, resid: Float[Tensor, "layer d_model"], token_ids: Int[Tensor, " k"]
) -> dict[str, Tensor]:
    """Lens probability and 1-based rank (in the whole vocabulary) of each target token at each row of ``resid``
    (one position's residual at every layer): {"probs": [layer, k], "ranks": [layer, k]}, on the CPU."""
    log_probs = lens_log_probs(lm, resid)
    ids = token_ids.to(log_probs.device)
    return {"probs": log_probs[:, ids].exp().cpu(), "ranks": ranks_of(log_probs, ids).cpu()}


@torch.inference_mode()
def top_token_grid(lm: LoadedModel, resid: Float[Tensor, "layer pos d_model"]) -> dict[str, Tensor]:
    """The lens's top-1 token at every layer and position: {"token_ids": [layer, pos], "probs": [layer, pos]} (its
    probability). One layer at a time, so a long prompt never holds more than [pos, vocab] log-probabilities."""
    ids = torch.empty(resid.shape[:2], dtype=torch.long)
    probs = torch.empty(resid.shape[:2])
    for layer in range(resid.shape[0]):
        best = lens_log_probs(lm, resid[layer]).max(dim=-1)
        ids[layer], probs[layer] = best.indices.cpu(), best.values.exp().cpu()
    return {"token_ids": ids, "probs": probs}


def kl_divergence(p_log: Float[Tensor, "*n vocab"], q_log: Float[Tensor, "*n vocab"]) -> Float[Tensor, "*n"]:
    """KL(p || q) = sum p (log p - log q) over the last dimension, from log-probabilities (0 log 0 = 0)."""
    p_log, q_log = p_log.float(), q_log.float().to(p_log.device)
    p = p_log.exp()
    return torch.where(p > 0, p * (p_log - q_log), torch.zeros_like(p)).sum(-1).clamp_min(0.0)


@torch.inference_mode()
def base_residuals(lm: LoadedModel, prompt: str) -> Float[Tensor, "layer pos d_model"]:
    """``capture_positions`` of the base model: the same loaded model with every LoRA layer of its adapter off."""
    with without_lora(lm, select(lm)):
        return capture_positions(lm, prompt)


@torch.inference_mode()
def kl_by_layer(
    lm: LoadedModel, resid: Float[Tensor, "layer d_model"], base_resid: Float[Tensor, "layer d_model"]
) -> Float[Tensor, " layer"]:
    """KL(adapter || base) of the lens distributions per layer: ``resid`` from ``lm`` with its adapter, ``base_resid``
    from it with the LoRA off (``base_residuals``); each read through its own lens (the base's with the LoRA off, in
    case the adapter touches the head)."""
    adapter = lens_log_probs(lm, resid)
    with without_lora(lm, select(lm)):
        base = lens_log_probs(lm, base_resid)
    return kl_divergence(adapter, base).cpu()


def adapter_kl(lm: LoadedModel, prompt: str, position: int = -1) -> Float[Tensor, " layer"]:
    """KL(adapter || base) per layer at one position of ``prompt`` (default: the last token): two forward passes."""
    return kl_by_layer(lm, capture_positions(lm, prompt)[:, position], base_residuals(lm, prompt)[:, position])


def steering_specs(targets: list[str], classes: list[str] | None = None) -> list[str]:
    """The explorer's direction choices: ``unembed:WORD`` per target, ``random:0`` (the control), and
    ``mean-diff:A,B`` for each pair of labelled classes (a negative strength gives B - A)."""
    specs = [f"unembed:{w}" for w in targets] + ["random:0"]
    return specs + [f"mean-diff:{a},{b}" for a, b in combinations(classes or [], 2)]


@torch.inference_mode()
def steered_lens(
    lm: LoadedModel,
    prompt: str,
    layer: int,
    vector: Float[Tensor, " d_model"] | None,
    token_ids: Int[Tensor, " k"],
    position: int = -1,
    unsteered: dict[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """``target_lens`` at every layer and one position of ``prompt`` with ``vector`` added to every position after
    block ``layer`` (None: unsteered). One forward pass, no generation. ``unsteered``: the unsteered ``target_lens``
    at that position (``LensView.lens``), whose rows below ``layer`` are taken as they are (the steering does not reach
    them, so only the layers from ``layer`` on are read through the lens); with it, a zero vector returns it as is."""
    if unsteered is not None and (vector is None or not bool(vector.any())):
        return {kind: values.clone() for kind, values in unsteered.items()}
    with steered(lm, layer, vector):
        resid = capture_positions(lm, prompt)[:, position]
    if unsteered is None:
        return target_lens(lm, resid, token_ids)
    above = target_lens(lm, resid[layer:], token_ids)
    return {kind: torch.cat([unsteered[kind][:layer], above[kind]]) for kind in above}


def steered_answers(
    lm: LoadedModel, prompts: list[str], layer: int, vector: Tensor | None, max_new_tokens: int = 8
) -> list[str]:
    """Greedy continuations with ``vector`` added after block ``layer`` at every position and decode step."""
    with steered(lm, layer, vector):
        return greedy_answers(lm, prompts, max_new_tokens)


# -- figures -----------------------------------------------------------------------------------------------------
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


PROB_AXIS = {"title": "lens probability (log scale)", "type": "log", "exponentformat": "power"}


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


def probe_figure(probe: dict, line: dict, height: int) -> go.Figure:
    """A classifier-probe result's accuracy by layer beside its control task's, with the chosen layer's ``line``."""
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
            "shapes": [dict(line)],
            "height": height,
            "margin": {"t": 50, "b": 40},
        },
    )
