"""Attribution of a class word's logit to the model's components: direct logit attribution (DLA) through the lens at a
layer, and node-level attribution patching (TransformerLens's ``attribution_patch``).

DLA at layer L (default: the classifier layer), last prompt token: the residual ``blocks.L.hook_resid_post`` is the sum
of the embedding and each block's attention and MLP outputs up to L (``ActivationCache.decompose_resid``), and each
attention output is the sum of its heads' outputs plus the output projection's bias. With the final norm's scale frozen
at its value on the real residual, the lens is linear in that sum, so each part's share of the lens logit of ``word``
(minus that of ``other``) is ``(weight * part / scale) . (W_U[:, word] - W_U[:, other])``, times the architecture's
logit scaling; the norm's and unembedding's biases are a constant part. The parts sum to the lens logit difference.

TransformerLens's own ``direct_logit_attribution`` reads the final layer only and needs ``enable_compatibility_mode()``
(weights folded in place), and ``stack_head_results`` builds heads from ``W_O``, the output projection's *base* weight:
with a LoRA on ``o_proj`` its heads miss the adapter's share. So the heads here come from ``hook_z`` and the weight the
projection module really applies, ``o(I) - o(0)`` (peft's LoRA included, as a merged copy would have it), on
``lm.bridge`` itself, untouched.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.utilities import get_act_name

from ..core.activations import resid_hook_name
from ..core.errors import WorkbenchError
from ..core.layers import check_layers
from ..core.lens import TargetToken, lens_logits, resolve_targets
from ..core.models import LoadedModel

DLA_METHOD = (
    "blocks.L.hook_resid_post at the last prompt token = embed + sum(attn_out + mlp_out) up to L (decompose_resid); "
    "attn_out = sum of heads (hook_z x the o_proj weight applied, LoRA included) + bias; final norm scale frozen from "
    "the real residual; projected on W_U[:, word] - W_U[:, other], times the logit scaling"
)
METRICS = ("lens", "output")
GRANULARITIES = ("node", "edge")


def _direction(lm: LoadedModel, tokens: list[TargetToken]) -> tuple[Float[Tensor, " d_model"], float]:
    """W_U[:, word] (- W_U[:, other]) in float32, and the unembedding bias's share of the same difference."""
    w_u = lm.bridge.W_U.detach().float()
    b_u = getattr(lm.bridge, "b_U", None)
    b_u = torch.zeros(w_u.shape[1], device=w_u.device) if b_u is None else b_u.detach().float()
    ids = [t.token_id for t in tokens]
    if len(ids) == 1:
        return w_u[:, ids[0]], float(b_u[ids[0]])
    return w_u[:, ids[0]] - w_u[:, ids[1]], float(b_u[ids[0]] - b_u[ids[1]])


def logit_scaling(lm: LoadedModel) -> float:
    """The architecture's post-unembedding transform as one factor (Granite's 1/logits_scaling, 1 for Llama); a
    transform that is not a plain scaling (soft-capping) is no sum of parts, and refused."""
    transform = getattr(getattr(lm.bridge, "adapter", None), "apply_output_logits_transform", None)
    if not callable(transform):
        return 1.0
    probe = torch.tensor([1.0, -3.0, 50.0, 400.0])
    factor = transform(probe.clone()) / probe
    if not torch.allclose(factor, factor[:1].expand_as(factor), rtol=1e-5):
        raise WorkbenchError(
            "this model soft-caps its logits, which is not linear: direct logit attribution needs a model whose "
            "logits are a scaled unembedding (Llama, Granite, SmolLM2)"
        )
    return float(factor[0])


def frozen_norm(
    lm: LoadedModel, resid: Float[Tensor, "n d_model"]
) -> tuple[Float[Tensor, "n 1"], Float[Tensor, " d_model"], Float[Tensor, " d_model"], bool]:
    """The final norm as the affine map it is with its scale frozen at ``resid``: (scale [n, 1], weight, bias,
    centres), so that ``ln_final(resid) = weight * centre(resid) / scale + bias``; checked against the real norm."""
    norm = lm.bridge.ln_final
    param = next(norm.parameters())
    kept: dict[str, Tensor] = {}

    def keep(scale, hook):
        kept["scale"] = scale

    with lm.bridge.hooks(fwd_hooks=[("ln_final.hook_scale", keep)]):
        real = norm(resid.to(param.device, param.dtype)).float()
    rms = bool(getattr(norm, "uses_rms_norm", True))
    x = resid.to(param.device).float()
    if not rms:
        x = x - x.mean(-1, keepdim=True)
    scale = kept["scale"].float() if "scale" in kept else (x.pow(2).mean(-1, keepdim=True) + lm.bridge.cfg.eps).sqrt()
    weight = norm.weight.detach().float()
    weight = 1.0 + weight if getattr(norm, "uses_weight_offset", False) else weight
    bias = getattr(getattr(norm, "original_component", None), "bias", None)
    bias = torch.zeros_like(weight) if rms or bias is None else bias.detach().float()
    rebuilt = weight * x / scale + bias
    tol = max(1e-3, 4 * torch.finfo(param.dtype).eps)  # the real norm rounds to the weights' dtype (bf16: 3e-2)
    if not torch.allclose(rebuilt, real, rtol=tol, atol=tol * float(real.abs().max()) + 1e-6):
        raise WorkbenchError(
            f"the final norm of this model ({type(norm.original_component).__name__}) is not weight * x / scale + bias: "
            "direct logit attribution needs a LayerNorm or RMSNorm before the unembedding"
        )
    return scale, weight, bias, not rms


def o_proj_weight(lm: LoadedModel, layer: int) -> Float[Tensor, "head d_head d_model"]:
    """The weight block ``layer``'s output projection really applies, per head: ``o(I) - o(0)`` through the module
    itself, so a LoRA on it counts (TransformerLens's ``W_O`` is the base weight only)."""
    attn = lm.bridge.blocks[layer].attn
    o = getattr(getattr(attn, "o", None), "original_component", None)
    if o is None:
        raise WorkbenchError(
            f"block {layer}'s attention has no separate output projection: per-head attribution needs one"
        )
    n_heads, d_head = int(lm.bridge.cfg.n_heads), int(lm.bridge.cfg.d_head)
    param = next(o.parameters())
    eye = torch.eye(n_heads * d_head, device=param.device, dtype=param.dtype)
    with torch.no_grad():
        weight = (o(eye) - o(torch.zeros_like(eye[:1]))).float()
    return weight.reshape(n_heads, d_head, -1)


@dataclass
class LensProjection:
    """The lens at one residual, linear: ``factor * (weight * centre(v) / scale) . direction`` per part, and the
    constant the norm's and unembedding's biases add (so the parts of the residual plus ``constant`` sum to the lens
    logit difference)."""

    scale: Float[Tensor, "batch 1"]
    weight: Float[Tensor, " d_model"]
    centre: bool
    direction: Float[Tensor, " d_model"]
    factor: float
    constant: float

    def __call__(self, vectors: Float[Tensor, "*part batch d_model"]) -> Float[Tensor, "*part batch"]:
        vectors = vectors.to(self.scale.device).float()
        if self.centre:
            vectors = vectors - vectors.mean(-1, keepdim=True)
        return self.factor * ((self.weight * vectors / self.scale) @ self.direction)


def lens_projection(
    lm: LoadedModel, resid: Float[Tensor, "batch d_model"], tokens: list[TargetToken]
) -> LensProjection:
    """The lens logit of tokens[0] (minus tokens[1]'s) as a linear map of the parts of ``resid``, the final norm's
    scale frozen at ``resid``."""
    direction, b_u = _direction(lm, tokens)
    factor = logit_scaling(lm)
    scale, weight, bias, centre = frozen_norm(lm, resid)
    direction = direction.to(scale.device)
    return LensProjection(scale, weight, centre, direction, factor, factor * (float(bias @ direction) + b_u))


def _part_name(label: str) -> str:
    """decompose_resid's labels as named here: embed, 0_attn_out -> L0.attn, 0_mlp_out -> L0.mlp."""
    return label if label in ("embed", "pos_embed") else "L" + label.removesuffix("_out").replace("_", ".")


def _dla_batch(
    lm: LoadedModel, prompts: list[str], layer: int, tokens: list[TargetToken], o_weights: list[Tensor]
) -> dict[str, Float[Tensor, " batch"]]:
    """Every part's share for one batch of prompts (see ``direct_logit_attribution``)."""
    wanted = {"hook_embed", "hook_pos_embed", resid_hook_name(layer)}
    for lay in range(layer + 1):
        wanted |= {get_act_name(name, lay) for name in ("z", "attn_out", "mlp_out")}
    batch = lm.tokenize(prompts)
    rows, last = torch.arange(len(prompts), device=batch.input_ids.device), batch.last_index
    _, cache = lm.bridge.run_with_cache(batch.input_ids, names_filter=lambda n: n in wanted, stop_at_layer=layer + 1)
    parts, labels = cache.decompose_resid(layer=layer + 1, return_labels=True)  # [part, batch, pos, d_model]
    resid = cache[resid_hook_name(layer)][rows, last].float()
    project = lens_projection(lm, resid, tokens)
    shares = project(parts[:, rows, last])
    lens = lens_logits(lm, resid).float()
    ids = [t.token_id for t in tokens]
    total = lens[:, ids[0]] - (lens[:, ids[1]] if len(ids) == 2 else 0.0)
    out = {"total": total, "constant": torch.full_like(total, project.constant)}
    out["unexplained"] = total - shares.sum(0) - project.constant
    out |= {_part_name(label): share for label, share in zip(labels, shares)}
    for lay in range(layer + 1):
        z = cache[get_act_name("z", lay)][rows, last].float()  # [batch, head, d_head]
        heads = project(torch.einsum("bhd,hdm->hbm", z, o_weights[lay].to(z.device)))
        out |= {f"L{lay}H{h}": share for h, share in enumerate(heads)}
        out[f"L{lay}.attn_bias"] = out[f"L{lay}.attn"] - heads.sum(0)
    return out


@torch.inference_mode()
def direct_logit_attribution(
    lm: LoadedModel,
    prompts: list[str],
    word: str,
    other: str | None = None,
    layer: int | None = None,
    batch_size: int = 16,
) -> dict:
    """DLA of the lens logit of ``word`` (minus ``other``'s) at ``layer`` (default: the classifier layer), last prompt
    token (see the module doc). Returns means over the prompts (``total``, ``embed``, ``constant``, per layer
    ``attn``, ``mlp``, ``heads`` and ``attn_bias``: attention minus its heads) and every value per prompt
    (``per_prompt``); ``unexplained`` is the largest |total - sum of parts| over the prompts."""
    if not prompts:
        raise WorkbenchError('no prompts: pass --prompts "p1|p2"')
    layer = lm.classifier_layer if layer is None else layer
    check_layers([layer], lm.n_layers)
    if other is not None and other == word:
        raise WorkbenchError(f"word and other are both {word!r}: compare two different class words, or give one")
    tokens = resolve_targets(lm, [word] if other is None else [word, other])
    o_weights = [o_proj_weight(lm, lay) for lay in range(layer + 1)]
    values: dict[str, list[float]] = {}
    for start in range(0, len(prompts), batch_size):
        for name, share in _dla_batch(lm, prompts[start : start + batch_size], layer, tokens, o_weights).items():
            values.setdefault(name, []).extend(share.tolist())
    return _dla_result(lm, prompts, tokens, layer, values)


def _dla_result(lm: LoadedModel, prompts: list[str], tokens: list[TargetToken], layer: int, values: dict) -> dict:
    def mean(name: str) -> float:
        return sum(values[name]) / len(values[name])

    n_heads = int(lm.bridge.cfg.n_heads)
    return {
        "method": DLA_METHOD,
        "layer": layer,
        "position": "last prompt token",
        "word": tokens[0].word,
        "other": tokens[1].word if len(tokens) == 2 else None,
        "prompts": prompts,
        "total": mean("total"),
        "embed": mean("embed"),
        "pos_embed": mean("pos_embed") if "pos_embed" in values else None,
        "constant": mean("constant"),
        "unexplained": max(abs(v) for v in values["unexplained"]),
        "layers": [
            {
                "layer": lay,
                "attn": mean(f"L{lay}.attn"),
                "mlp": mean(f"L{lay}.mlp"),
                "heads": [mean(f"L{lay}H{h}") for h in range(n_heads)],
                "attn_bias": mean(f"L{lay}.attn_bias"),
            }
            for lay in range(layer + 1)
        ],
        "per_prompt": values,
    }


def _difference(logits: Float[Tensor, " d_vocab"], ids: list[int]) -> Tensor:
    return logits[ids[0]] - logits[ids[1]] if len(ids) == 2 else logits[ids[0]]


def _node_name(node) -> str:
    if node.kind == "embed":
        return "embed"
    if node.kind == "attn_head_out":
        return f"L{node.layer}H{node.head}"
    if node.kind == "mlp_out":
        return f"L{node.layer}.mlp"
    return f"L{node.layer}.{node.kind}" + ("" if node.head is None else f"H{node.head}")


def _pair_ids(lm: LoadedModel, clean: str, corrupt: str) -> tuple[Tensor, Tensor]:
    a, b = lm.token_ids(clean), lm.token_ids(corrupt)
    if len(a) != len(b):
        raise WorkbenchError(
            f"clean prompt {clean!r} is {len(a)} tokens and corrupt prompt {corrupt!r} is {len(b)}: attribution "
            "patching compares them position by position, so give pairs of equal token length"
        )
    return torch.tensor([a], device=lm.device), torch.tensor([b], device=lm.device)


def attribution_patching(
    lm: LoadedModel,
    clean_prompts: list[str],
    corrupt_prompts: list[str],
    word: str,
    other: str | None = None,
    metric: str = "lens",
    layer: int | None = None,
    granularity: str = "node",
    top_k: int = 10,
) -> dict:
    """Attribution patching (TransformerLens's ``attribution_patch``) of each clean/corrupt pair: per node (the
    embedding, every head's ``hook_z``, every MLP output, at every position) ``(a_clean - a_corrupt) . g``, g the
    metric's gradient on the corrupt run: the first-order estimate of what patching that node from corrupt to clean
    does to the metric. Metric: the logit of ``word`` minus ``other``'s at the last token, through the lens at
    ``layer`` (``metric="lens"``, default: the classifier layer) or from the model's output (``"output"``).

    Returns per pair the metric on both prompts, the scores summed over positions per component (``components``) and
    at the last token (``last_token``), and the ``top_k`` nodes by |score|; ``components``/``last_token``/``gap``
    averaged over the pairs. ``granularity="edge"`` (writer -> reader edges) is TransformerLens's edge sweep, which
    refuses GQA/MQA models."""
    from transformer_lens.tools.analysis import EdgeAttributionConfig, attribution_patch

    if metric not in METRICS:
        raise WorkbenchError(f"metric {metric!r}: use lens (the lens at the classifier layer) or output")
    if granularity not in GRANULARITIES:
        raise WorkbenchError(f"granularity {granularity!r}: use node or edge")
    if not clean_prompts or len(clean_prompts) != len(corrupt_prompts):
        raise WorkbenchError(
            f"{len(clean_prompts)} clean and {len(corrupt_prompts)} corrupt prompts: give one corrupt prompt per clean one"
        )
    layer = (lm.classifier_layer if layer is None else layer) if metric == "lens" else None
    if layer is not None:
        check_layers([layer], lm.n_layers)
    if other is not None and other == word:
        raise WorkbenchError(f"word and other are both {word!r}: compare two different class words, or give one")
    tokens = resolve_targets(lm, [word] if other is None else [word, other])
    ids = [t.token_id for t in tokens]
    pairs_ids = [_pair_ids(lm, c, k) for c, k in zip(clean_prompts, corrupt_prompts)]
    kept: dict[str, Tensor] = {}

    def keep(resid, hook):
        kept["resid"] = resid
        return resid

    def metric_fn(logits: Tensor) -> Tensor:
        out = logits[0, -1].float()
        if layer is not None:
            # 0 x the output keeps the blocks above the lens layer in the graph: TransformerLens wants a gradient at
            # every node, and theirs is exactly 0
            lens = lens_logits(lm, kept["resid"][0, -1]).float()
            return _difference(lens, ids) + 0.0 * _difference(out, ids)
        return _difference(out, ids)

    def track(embed, hook):  # a frozen model (an adapter loaded for analysis) has no graph to take gradients in
        return embed if embed.requires_grad else embed.detach().requires_grad_(True)

    hooks = [("hook_embed", track)] + ([(resid_hook_name(layer), keep)] if layer is not None else [])
    pairs = []
    with torch.inference_mode(False), torch.enable_grad(), lm.bridge.hooks(fwd_hooks=hooks), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Full backward hook is firing", UserWarning)  # the frozen case, harmless
        for (clean, corrupt), (clean_ids, corrupt_ids) in zip(zip(clean_prompts, corrupt_prompts), pairs_ids):
            try:
                result = attribution_patch(
                    lm.bridge, clean_ids, corrupt_ids, metric_fn, EdgeAttributionConfig(granularity=granularity)
                )
            except ValueError as exc:
                first = str(exc).splitlines()[0]
                if "GQA" in first or "MQA" in first:
                    raise WorkbenchError(
                        f"edge-level attribution patching refuses this model: {first.split(':')[0]}; use granularity "
                        "node (per-node scores)"
                    ) from None
                raise WorkbenchError(f"attribution patching failed: {first}") from None
            with torch.no_grad():
                values = [float(metric_fn(lm.bridge(x))) for x in (clean_ids, corrupt_ids)]
            pairs.append(_pair_result(result, clean, corrupt, clean_ids.shape[1], values, top_k, layer))
    names = list(pairs[0]["components"])
    return {
        "method": "attribution_patch (TransformerLens): (a_clean - a_corrupt) . d metric/d a on the corrupt run",
        "metric": metric,
        "layer": layer,
        "granularity": granularity,
        "word": tokens[0].word,
        "other": tokens[1].word if len(tokens) == 2 else None,
        "gap": sum(p["clean_metric"] - p["corrupt_metric"] for p in pairs) / len(pairs),
        "components": {n: sum(p["components"][n] for p in pairs) / len(pairs) for n in names},
        "last_token": {n: sum(p["last_token"][n] for p in pairs) / len(pairs) for n in names},
        "pairs": pairs,
    }


def _pair_result(result, clean: str, corrupt: str, n_tokens: int, values: list[float], top_k: int, layer) -> dict:
    """One pair's scores by component; nodes above the lens layer (which cannot reach it: score 0) left out."""
    scores = {n: s for n, s in result.node_scores.items() if layer is None or n.layer is None or n.layer <= layer}
    components: dict[str, float] = {}
    last: dict[str, float] = {}
    for node, score in scores.items():
        name = _node_name(node)
        components[name] = components.get(name, 0.0) + score
        if node.position == n_tokens - 1:
            last[name] = last.get(name, 0.0) + score
    out = {
        "clean": clean,
        "corrupt": corrupt,
        "n_tokens": n_tokens,
        "clean_metric": values[0],
        "corrupt_metric": values[1],
        "components": components,
        "last_token": last,
        "top_nodes": [
            {"node": _node_name(node), "position": node.position, "score": score}
            for node, score in sorted(scores.items(), key=lambda item: abs(item[1]), reverse=True)[:top_k]
        ],
    }
    if result.edge_scores:
        out["top_edges"] = [
            {"writer": _node_name(w), "writer_position": w.position, "reader": _node_name(r), "score": s}
            for w, r, s in result.top_edges(top_k)
        ]
    return out
