"""Attention-head ablation: replace heads' outputs before the output projection, and re-measure.

A head's output is its slice of ``blocks.L.attn.hook_z`` ([batch, pos, head, d_head]), what the output projection
mixes into the residual stream. ``zero`` sets the slice to 0 (the head then adds only the projection's bias, shared by
all heads); ``mean`` sets it to the head's mean over the real tokens (no padding) of ``mean_prompts``, taken from the
unablated model. Either applies at every position and on every decode step. Which heads carry the classifier: the lens
at the readout layer with each head ablated, against the unablated model.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.utilities import get_act_name

from ..core.errors import WorkbenchError
from ..core.layers import check_layers
from ..core.models import LoadedModel
from .ablation import Readout

MODES = ("zero", "mean")


def n_heads(lm: LoadedModel) -> int:
    return int(lm.bridge.cfg.n_heads)


def check_heads(lm: LoadedModel, heads: list[tuple[int, int]], mode: str = "zero") -> None:
    """Refuse a bad mode, an unknown layer or a head index outside 0..n_heads-1, each in one line."""
    if mode not in MODES:
        raise WorkbenchError(f"head ablation mode {mode!r}: use zero or mean")
    if not heads:
        raise WorkbenchError("no heads to ablate: pass (layer, head) pairs, e.g. [(2, 0)]")
    check_layers([layer for layer, _ in heads], lm.n_layers)
    count = n_heads(lm)
    bad = [(layer, head) for layer, head in heads if not 0 <= head < count]
    if bad:
        raise WorkbenchError(
            f"head {bad[0][1]} of layer {bad[0][0]} is out of range: the model has n_heads={count} (0-{count - 1})"
        )
    missing = sorted({get_act_name("z", layer) for layer, _ in heads} - set(lm.bridge.hook_dict))
    if missing:
        raise WorkbenchError(
            f"the bridge has no hook {missing[0]!r}: this architecture exposes no per-head output to ablate"
        )


@torch.inference_mode()
def head_means(lm: LoadedModel, prompts: list[str], layers: list[int]) -> dict[int, Float[Tensor, "head d_head"]]:
    """Each head's mean ``hook_z`` over every real token of ``prompts`` (padding left out), per layer, unablated."""
    if not prompts:
        raise WorkbenchError("mean ablation needs prompts to take the mean over: pass mean_prompts")
    batch = lm.tokenize(prompts)
    real = torch.arange(batch.input_ids.shape[1], device=batch.input_ids.device)[None] < batch.lengths[:, None]
    means: dict[int, Tensor] = {}

    def keeper(layer: int):
        def keep(z, hook):
            means[layer] = z[real].float().mean(0)

        return keep

    hooks = [(get_act_name("z", layer), keeper(layer)) for layer in sorted(set(layers))]
    lm.bridge.run_with_hooks(batch.input_ids, fwd_hooks=hooks, use_cache=False)
    return means


def _replace_hook(heads: list[int], values: Tensor | None):
    """A hook setting the given heads' slice of ``hook_z`` to 0 (``values=None``) or to ``values`` [head, d_head]."""
    index = torch.tensor(heads)

    def hook(z, hook):
        z = z.clone()
        z[:, :, index.to(z.device)] = 0.0 if values is None else values[index].to(z.device, z.dtype)
        return z

    return hook


@contextmanager
def heads_ablated(
    lm: LoadedModel, heads: list[tuple[int, int]], mode: str = "zero", mean_prompts: list[str] | None = None
):
    """Inside: every forward of ``lm.bridge`` has each (layer, head) of ``heads`` zero- or mean-ablated (see the
    module doc); ``mean_prompts`` are the prompts the ``mean`` mode averages over."""
    check_heads(lm, heads, mode)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    means = None
    if mode == "mean":
        means = head_means(lm, mean_prompts or [], list(by_layer))
    hooks = [
        (get_act_name("z", layer), _replace_hook(sorted(set(hs)), None if means is None else means[layer]))
        for layer, hs in by_layer.items()
    ]
    with lm.bridge.hooks(fwd_hooks=hooks):
        yield


def head_ablation_sweep(
    lm: LoadedModel,
    prompts: list[str],
    targets: list[str],
    expected: list[str] | None = None,
    *,
    mode: str = "zero",
    layers: list[int] | None = None,
    mean_prompts: list[str] | None = None,
    readout_layer: int | None = None,
    max_new_tokens: int = 0,
) -> dict:
    """Each head of ``layers`` ``mode``-ablated alone, and each layer's heads all at once (default: every layer up to
    the readout layer, the ones the lens can see; ``mean`` mode averages over ``mean_prompts``, default: the prompts),
    against the unablated model: the lens at ``readout_layer`` (default: the classifier layer; mean p of each prompt's
    expected class word, top-1 share) and, with ``max_new_tokens``, the greedy answers and how many changed."""
    readout = Readout.at(lm, prompts, targets, expected, readout_layer, max_new_tokens)
    layer = readout.layer
    layers = list(range(layer + 1)) if layers is None else list(layers)
    count = n_heads(lm)
    check_heads(lm, [(lay, 0) for lay in layers] or [(layer, 0)], mode)
    mean_prompts = prompts if mean_prompts is None else mean_prompts
    base = readout.measure()

    def measured(heads: list[tuple[int, int]]) -> dict:
        return readout.under(heads_ablated(lm, heads, mode, mean_prompts), base)

    rows = []
    for lay in layers:
        rows.append({"layer": lay, "head": "all", **measured([(lay, h) for h in range(count)])})
        rows += [{"layer": lay, "head": h, **measured([(lay, h)])} for h in range(count)]
    return {
        "mode": mode,
        "hook": "blocks.L.attn.hook_z (per-head output before the output projection), every position",
        "readout_layer": layer,
        "layers": layers,
        "n_heads": count,
        "targets": targets,
        "prompts": prompts,
        "mean_prompts": mean_prompts if mode == "mean" else None,
        "baseline": base,
        "rows": rows,
    }
