"""The linear shortcut (Yom Din et al. 2024, "Jump to Conclusions", arXiv 2303.09435): per layer L, the least-squares
affine map from the residual after block L (``blocks.L.hook_resid_post``, any token position) to the residual after
the last block (before the final norm), solved in closed form in float64, then read through the model's own final norm
and unembedding (``core.lens.lens_logits``). At the last layer the map is the identity, so the readout is the logit
lens there.

The residuals come from ``cache_residuals``: every token of some texts, every requested layer and the last one, float32
on the CPU (the tuned lens trains on the same cache).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from ..core.activations import capture_positions, resid_hook_name
from ..core.lens import lens_logits
from ..core.models import LoadedModel


@dataclass
class ResidualCache:
    """Residuals at ``n`` token positions: ``resid[i]`` after block ``layers[i]``, ``final`` after the last block (a
    view of ``resid[-1]`` when the last layer is among ``layers``), float32 on the CPU."""

    model_id: str
    layers: list[int]
    resid: Float[Tensor, "layer n d_model"]
    final: Float[Tensor, "n d_model"]
    texts: int  # texts the positions come from
    skip_first: int  # positions left out at the start of each text
    corpus: str = ""

    @property
    def n(self) -> int:
        return self.final.shape[0]

    def slots(self, layers: list[int]) -> list[int]:
        """Where each of ``layers`` is in ``resid``."""
        missing = sorted(set(layers) - set(self.layers))
        if missing:
            raise ValueError(f"the cache holds layers {self.layers}, not {missing}")
        return [self.layers.index(layer) for layer in layers]

    def describe(self) -> dict:
        positions = f"every token of each text but the first {self.skip_first}"
        return dict(
            model=self.model_id,
            layers=self.layers,
            tokens=self.n,
            texts=self.texts,
            positions=positions,
            corpus=self.corpus,
        )


def cache_residuals(
    lm: LoadedModel,
    texts: list[str],
    layers: list[int] | None = None,
    *,
    max_tokens: int = 8192,
    skip_first: int = 1,
    corpus: str = "",
) -> ResidualCache:
    """Residuals after each of ``layers`` (default: all) and after the last block at every token of ``texts`` (one
    forward pass per text, ``core.activations.capture_positions``) until ``max_tokens`` positions are kept. The first
    ``skip_first`` positions of each text are left out: there the residual is the attention sink's, with norms far
    above every other position's, which would dominate a least-squares fit, and no readout here reads a prompt's first
    token."""
    last = lm.n_layers - 1
    layers = sorted(set(range(lm.n_layers) if layers is None else layers))
    if not layers or layers[0] < 0 or layers[-1] > last:
        raise ValueError(f"layers {layers}: this model has layers 0-{last}")
    captured = layers if layers[-1] == last else [*layers, last]
    buffer = torch.empty(len(captured), max_tokens, lm.d_model)
    n = used = 0
    for text in texts:
        if n >= max_tokens:
            break
        states = capture_positions(lm, text, captured)[:, skip_first:]  # [layer, pos, d]
        take = min(states.shape[1], max_tokens - n)
        buffer[:, n : n + take] = states[:, :take]
        n += take
        used += take > 0
    if n < max_tokens:  # the texts ran out: keep only what was filled
        buffer = buffer[:, :n].clone()
    return ResidualCache(lm.model_id, layers, buffer[: len(layers)], buffer[-1], used, skip_first, corpus)


@dataclass
class Shortcut:
    """Per layer, ``maps[i]`` ([d_model + 1, d_model], float64): the last layer's residual ~ [resid, 1] @ maps[i]."""

    lm: LoadedModel
    layers: list[int]
    maps: Float[Tensor, "layer d_in d_model"]
    info: dict = field(default_factory=dict)
    name = "shortcut"

    def mapped(self, layer: int, resid: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_model"]:
        """The residual the map predicts after the last block, float32."""
        if layer not in self.layers:
            raise KeyError(f"the shortcut was fitted at layers {self.layers}, not {layer}")
        m = self.maps[self.layers.index(layer)]
        return torch.addmm(m[-1], resid.to(m.dtype).cpu(), m[:-1]).float()

    @torch.inference_mode()
    def logits(self, layer: int, resid: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_vocab"]:
        return lens_logits(self.lm, self.mapped(layer, resid)).float()

    def provenance(self) -> dict:
        return dict(self.info)


def solve_shortcut(x: Float[Tensor, "n d_model"], y: Float[Tensor, "n d_model"]) -> Float[Tensor, "d_in d_model"]:
    """argmin_M ||[x, 1] @ M - y||, float64 (``torch.linalg.lstsq``, LAPACK's SVD driver gelsd: the minimum-norm
    solution when some directions of x never vary)."""
    x = x.double()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    return torch.linalg.lstsq(design, y.double(), driver="gelsd").solution


def fit_shortcut(
    lm: LoadedModel,
    texts: list[str] | None = None,
    layers: list[int] | None = None,
    max_tokens: int = 8192,
    cache: ResidualCache | None = None,
    corpus: str = "",
) -> Shortcut:
    """The shortcut at each of ``layers`` (default: all, or the cache's), fitted on the residuals of ``texts`` (or a
    ready ``cache``)."""
    if cache is None:
        if texts is None:
            raise ValueError("give texts or a cache")
        cache = cache_residuals(lm, texts, layers, max_tokens=max_tokens, corpus=corpus)
    layers = list(cache.layers) if layers is None else sorted(set(layers))
    if cache.n <= lm.d_model:
        raise ValueError(f"{cache.n} tokens for a map with {lm.d_model + 1} rows: give more text")
    states = [cache.resid[slot] for slot in cache.slots(layers)]
    maps = torch.stack([solve_shortcut(x, cache.final) for x in states])
    target = cache.final.double()
    total = ((target - target.mean(0)) ** 2).sum()
    r2 = []
    for x, m in zip(states, maps):
        pred = torch.addmm(m[-1], x.double(), m[:-1])
        r2.append(round(float(1 - ((pred - target) ** 2).sum() / total), 6))
    info = {
        "readout": "shortcut",
        "method": "least-squares affine map [resid_L, 1] -> resid_last (torch.linalg.lstsq gelsd, float64), read "
        "through the model's final norm and unembedding (Yom Din et al. 2024, arXiv 2303.09435)",
        "target": resid_hook_name(lm.n_layers - 1),
        **cache.describe(),
        "layers": layers,
        "fit_r2": r2,  # per layer (in the order of "layers"): the share of the last residual's variance it explains
    }
    return Shortcut(lm, layers, maps, info)
