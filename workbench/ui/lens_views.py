"""The layer explorer's views of one prompt as plain functions (tensors in, tensors or dicts out; ``lens_figures``
draws them):

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

from collections.abc import Callable
from itertools import combinations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..causal.ablation import select, without_lora
from ..causal.steering import steered
from ..core.activations import capture_positions
from ..core.generation import greedy_answers
from ..core.lens import lens_log_probs, ranks_of
from ..core.models import LoadedModel

Read = Callable[[int, Tensor], Tensor]  # (layer, states [n, d_model]) -> log-probabilities [n, vocab]: a readout


def _read_rows(lm: LoadedModel, resid: Float[Tensor, "layer d_model"], read: Read | None) -> Tensor:
    """Row i of ``resid`` (the state after block i) through ``read``; None: the logit lens, all rows at once."""
    if read is None:
        return lens_log_probs(lm, resid)
    return torch.cat([read(layer, resid[layer : layer + 1]) for layer in range(resid.shape[0])])


@torch.inference_mode()
def target_lens(
    lm: LoadedModel, resid: Float[Tensor, "layer d_model"], token_ids: Int[Tensor, " k"], read: Read | None = None
) -> dict[str, Tensor]:
    """Lens probability and 1-based rank (in the whole vocabulary) of each target token at each row of ``resid``
    (one position's residual at every layer): {"probs": [layer, k], "ranks": [layer, k]}, on the CPU. ``read``: the
    readout (default: the logit lens)."""
    log_probs = _read_rows(lm, resid, read)
    ids = token_ids.to(log_probs.device)
    return {"probs": log_probs[:, ids].exp().cpu(), "ranks": ranks_of(log_probs, ids).cpu()}


@torch.inference_mode()
def top_token_grid(
    lm: LoadedModel, resid: Float[Tensor, "layer pos d_model"], read: Read | None = None
) -> dict[str, Tensor]:
    """The lens's top-1 token at every layer and position: {"token_ids": [layer, pos], "probs": [layer, pos]} (its
    probability). One layer at a time, so a long prompt never holds more than [pos, vocab] log-probabilities.
    ``read``: the readout (default: the logit lens)."""
    ids = torch.empty(resid.shape[:2], dtype=torch.long)
    probs = torch.empty(resid.shape[:2])
    for layer in range(resid.shape[0]):
        best = (lens_log_probs(lm, resid[layer]) if read is None else read(layer, resid[layer])).max(dim=-1)
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
