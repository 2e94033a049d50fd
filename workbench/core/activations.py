"""Batched capture of the residual stream at the last prompt token, through TransformerLens hook points."""

from __future__ import annotations

import torch

from .models import LoadedModel


def resid_hook_name(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


class _StopCapture(Exception):
    """Raised by the deepest hook: nothing after it is needed (not even the final norm and the unembedding)."""


@torch.inference_mode()
def capture_last_token(
    lm: LoadedModel,
    prompts: list[str],
    layers: list[int] | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Residual stream after each requested block at each prompt's last token.

    Returns float32 [n_prompts, n_selected_layers, d_model] on the CPU, in the order of ``layers`` (default: all).
    One forward pass per batch, hooking only the requested layers and ending the pass in the deepest one.
    Prompts are right-padded, so the causal mask alone keeps padding out of every real token's computation.
    """
    layers = list(range(lm.n_layers)) if layers is None else list(layers)
    deepest = max(layers)
    out = torch.empty(len(prompts), len(layers), lm.d_model)
    for start in range(0, len(prompts), batch_size):
        batch = lm.tokenize(prompts[start : start + batch_size])
        rows = torch.arange(batch.input_ids.shape[0], device=batch.input_ids.device)
        chunk = out[start : start + batch.input_ids.shape[0]]

        def make_hook(slot: int, last: bool):
            def hook(resid, hook):  # resid: [batch, seq, d_model]
                chunk[:, slot] = resid[rows, batch.last_index].float().cpu()
                if last:
                    raise _StopCapture
                return resid

            return hook

        try:
            lm.bridge.run_with_hooks(
                batch.input_ids,
                fwd_hooks=[(resid_hook_name(layer), make_hook(i, layer == deepest)) for i, layer in enumerate(layers)],
                stop_at_layer=deepest + 1,
                use_cache=False,
            )
        except _StopCapture:
            pass
    return out


@torch.inference_mode()
def capture_positions(lm: LoadedModel, prompt: str, layers: list[int] | None = None) -> torch.Tensor:
    """Residual stream after each requested block at every token of one prompt (no padding: one sequence).

    Returns float32 [n_selected_layers, n_tokens, d_model] on the CPU, in the order of ``layers`` (default: all).
    """
    layers = list(range(lm.n_layers)) if layers is None else list(layers)
    deepest = max(layers)
    ids = torch.tensor([lm.token_ids(prompt)], device=lm.device)
    out = torch.empty(len(layers), ids.shape[1], lm.d_model)

    def make_hook(slot: int, last: bool):
        def hook(resid, hook):  # resid: [1, seq, d_model]
            out[slot] = resid[0].float().cpu()
            if last:
                raise _StopCapture
            return resid

        return hook

    try:
        lm.bridge.run_with_hooks(ids, fwd_hooks=[(resid_hook_name(layer), make_hook(i, layer == deepest))
                                                 for i, layer in enumerate(layers)],
                                 stop_at_layer=deepest + 1, use_cache=False)
    except _StopCapture:
        pass
    return out
