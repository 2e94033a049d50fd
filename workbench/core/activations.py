"""Batched capture of the residual stream at the last prompt token, through TransformerLens hook points."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.utilities import get_act_name

from .models import LoadedModel


def resid_hook_name(layer: int) -> str:
    """The residual stream after block ``layer`` (TransformerLens's name; every hook name here comes from
    ``get_act_name``)."""
    return get_act_name("resid_post", layer)


class _StopCapture(Exception):
    """Raised by the deepest hook: nothing after it is needed (not even the final norm and the unembedding)."""


def _run_hooked(
    lm: LoadedModel,
    ids: Int[Tensor, "batch seq"],
    layers: list[int],
    keep: Callable[[int, Float[Tensor, "batch seq d_model"]], None],
) -> None:
    """One forward pass over ``ids`` that hands each requested layer's ``hook_resid_post`` to ``keep(slot, resid)``
    (slot: the layer's index in ``layers``) and ends in the deepest of them."""
    deepest = max(layers)

    def make_hook(slot: int, last: bool):
        def hook(resid, hook):
            keep(slot, resid)
            if last:
                raise _StopCapture
            return resid

        return hook

    try:
        lm.bridge.run_with_hooks(
            ids,
            fwd_hooks=[(resid_hook_name(layer), make_hook(i, layer == deepest)) for i, layer in enumerate(layers)],
            stop_at_layer=deepest + 1,
            use_cache=False,
        )
    except _StopCapture:
        pass


@torch.inference_mode()
def capture_last_token(
    lm: LoadedModel,
    prompts: list[str],
    layers: list[int] | None = None,
    batch_size: int = 64,
) -> Float[Tensor, "prompt layer d_model"]:
    """Residual stream after each requested block at each prompt's last token, float32 on the CPU, in the order of
    ``layers`` (default: all). One forward pass per batch, hooking only the requested layers and ending the pass in the
    deepest one. Prompts are right-padded, so the causal mask alone keeps padding out of every real token's computation.
    """
    layers = list(range(lm.n_layers)) if layers is None else list(layers)
    out = torch.empty(len(prompts), len(layers), lm.d_model)
    for start in range(0, len(prompts), batch_size):
        batch = lm.tokenize(prompts[start : start + batch_size])
        rows = torch.arange(batch.input_ids.shape[0], device=batch.input_ids.device)
        chunk = out[start : start + batch.input_ids.shape[0]]  # a view: filling it fills out
        _run_hooked(lm, batch.input_ids, layers, partial(_keep_last, chunk, rows, batch.last_index))
    return out


def _keep_last(chunk, rows, last_index, slot: int, resid) -> None:
    chunk[:, slot] = resid[rows, last_index].float().cpu()


@torch.inference_mode()
def capture_positions(
    lm: LoadedModel, prompt: str, layers: list[int] | None = None
) -> Float[Tensor, "layer pos d_model"]:
    """Residual stream after each requested block at every token of one prompt (no padding: one sequence), float32 on
    the CPU, in the order of ``layers`` (default: all)."""
    layers = list(range(lm.n_layers)) if layers is None else list(layers)
    ids = torch.tensor([lm.token_ids(prompt)], device=lm.device)
    out = torch.empty(len(layers), ids.shape[1], lm.d_model)

    def keep(slot: int, resid) -> None:
        out[slot] = resid[0].float().cpu()

    _run_hooked(lm, ids, layers, keep)
    return out
