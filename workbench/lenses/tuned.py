"""The tuned lens (Belrose et al. 2023, arXiv 2303.08112): per layer one affine translator, ``h + translator(h)`` with
the translator a ``Linear(d_model, d_model)`` initialised to zero (so an untrained lens is the logit lens) or to the
linear shortcut (``init="shortcut"``), read through the model's own final norm and unembedding and trained to minimise
KL(model's final distribution || lens distribution) over token positions of offline text.

What is cached: each layer's residual and the last layer's (``shortcut.cache_residuals``, float32, d_model floats per
token and layer); the final distribution is recomputed per batch from the cached last residual through
``lens_logits`` without gradients (a cached [tokens, vocab] would be 196 KB a token for SmolLM2's 49,152 words).

The optimiser is Adam (lr 3e-3 by default: of 1e-3, 3e-3 and 1e-2 the best held-out KL after 40 steps of 64 tokens
at SmolLM2's layers 10 and 20; linearly decayed to zero over the steps), not the reference's SGD with
Nesterov momentum at lr 1.0 over 250 steps of 2^18 tokens, which is far beyond a CPU budget. The gradient of the KL with
respect to the lens's logits is (q - p) / batch, handed to autograd directly (no graph through the log-softmax), and
each layer is stepped through on its own, so at most one [batch, vocab] graph is alive at a time.

    lens = train_tuned_lens(lm, offline_texts(), layers=None, max_tokens=8192, steps=200)
    lens.kl_bits_per_layer(heldout_texts)        # {"layers": [...], "logit": [...], "tuned": [...]} in bits
    lens.save(folder); TunedLens.load(folder, lm)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ..core.errors import WorkbenchError
from ..core.lens import lens_logits
from ..core.models import LoadedModel
from ..core.results import git_commit
from .base import LogitLens, Readout
from .shortcut import ResidualCache, Shortcut, cache_residuals, fit_shortcut

STATE_FILE, PROVENANCE_FILE = "translators.pt", "provenance.json"
LN2 = math.log(2)


class TunedLens:
    """One zero-initialised ``Linear(d_model, d_model)`` translator per layer in ``layers``, on the model's device."""

    name = "tuned"

    def __init__(self, lm: LoadedModel, layers: list[int], info: dict | None = None):
        self.lm = lm
        self.layers = sorted(set(layers))
        self.translators = nn.ModuleList(nn.Linear(lm.d_model, lm.d_model) for _ in self.layers)
        for translator in self.translators:
            nn.init.zeros_(translator.weight)
            nn.init.zeros_(translator.bias)
        self.translators.to(_device(lm))
        self.info = dict(info or {})

    @classmethod
    def from_shortcut(cls, shortcut: Shortcut) -> TunedLens:
        """A lens whose translators start at the shortcut's maps: h + h (A - I) + b = h A + b."""
        lens = cls(shortcut.lm, shortcut.layers)
        eye = torch.eye(shortcut.lm.d_model, dtype=shortcut.maps.dtype)
        with torch.no_grad():
            for translator, m in zip(lens.translators, shortcut.maps):
                translator.weight.copy_((m[:-1] - eye).T)
                translator.bias.copy_(m[-1])
        return lens

    def translate(self, layer: int, resid: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_model"]:
        if layer not in self.layers:
            raise KeyError(f"the tuned lens has translators at layers {self.layers}, not {layer}")
        translator = self.translators[self.layers.index(layer)]
        h = resid.to(translator.weight.device, translator.weight.dtype)
        return h + translator(h)

    @torch.inference_mode()
    def logits(self, layer: int, resid: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_vocab"]:
        return lens_logits(self.lm, self.translate(layer, resid)).float()

    def provenance(self) -> dict:
        return dict(self.info)

    def train(
        self,
        cache: ResidualCache,
        steps: int,
        batch_size: int = 64,
        lr: float = 3e-3,
        seed: int = 0,
        callback: Callable[[TunedLens, int, int], None] | None = None,
    ) -> list[float]:
        """``steps`` Adam steps on batches of ``batch_size`` cached positions (drawn without replacement, epoch after
        epoch, by ``seed``); ``callback(lens, step, tokens_trained)`` after each. Returns each layer's mean KL (bits)
        over the last tenth of the steps, also kept in the provenance as ``train_kl_bits``."""
        slots = cache.slots(self.layers)
        params = list(self.translators.parameters())
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
        gen = torch.Generator().manual_seed(seed)
        order, at = torch.randperm(cache.n, generator=gen), 0
        tail = max(1, steps // 10)
        recent = torch.zeros(len(self.layers))
        device = self.translators[0].weight.device
        for step in range(steps):
            if at + batch_size > cache.n:
                order, at = torch.randperm(cache.n, generator=gen), 0
            idx = order[at : at + batch_size]
            at += batch_size
            with torch.no_grad():
                target = torch.log_softmax(lens_logits(self.lm, cache.final[idx].to(device)).float(), dim=-1)
                p = target.exp()
            for i, (layer, slot) in enumerate(zip(self.layers, slots)):
                logits = lens_logits(self.lm, self.translate(layer, cache.resid[slot, idx])).float()
                with torch.no_grad():
                    log_q = torch.log_softmax(logits, dim=-1)
                    kl = (p * (target - log_q)).sum(-1).mean()
                    grad = (log_q.exp() - p) / len(idx)  # d KL / d logits
                logits.backward(grad, inputs=list(self.translators[i].parameters()))
                if step >= steps - tail:
                    recent[i] += float(kl) / LN2 / tail
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if callback is not None:
                callback(self, step + 1, (step + 1) * batch_size)
        self.info["train_kl_bits"] = [round(float(k), 6) for k in recent]
        return self.info["train_kl_bits"]

    def kl_bits_per_layer(
        self, texts: list[str] | ResidualCache, max_tokens: int = 2048, batch_size: int = 64
    ) -> dict[str, list]:
        """Each layer's mean KL to the model's final distribution, in bits, for the logit lens and for this lens, on
        held-out ``texts`` (or a ready cache of them); also kept in the provenance as ``heldout_kl_bits``."""
        cache = (
            texts
            if isinstance(texts, ResidualCache)
            else cache_residuals(self.lm, texts, self.layers, max_tokens=max_tokens)
        )
        table = kl_bits(self.lm, {"logit": LogitLens(self.lm), "tuned": self}, cache, self.layers, batch_size)
        self.info["heldout_kl_bits"] = {"tokens": cache.n, "logit": table["logit"], "tuned": table["tuned"]}
        return {"layers": list(self.layers), **table}

    def save(self, folder: str | Path) -> Path:
        """``translators.pt`` (the translators' state, float32) and ``provenance.json`` in ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.cpu() for k, v in self.translators.state_dict().items()}, folder / STATE_FILE)
        info = {**self.info, "model": self.lm.model_id, "layers": self.layers, "d_model": self.lm.d_model}
        (folder / PROVENANCE_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path, lm: LoadedModel) -> TunedLens:
        folder = Path(folder)
        info = json.loads((folder / PROVENANCE_FILE).read_text(encoding="utf-8"))
        if info.get("model") != lm.model_id or info.get("d_model") != lm.d_model:
            raise WorkbenchError(
                f"the tuned lens in {folder} was trained on {info.get('model')} (d_model {info.get('d_model')}), not "
                f"{lm.model_id} (d_model {lm.d_model}): train one for this model"
            )
        lens = cls(lm, info["layers"], info)
        lens.translators.load_state_dict(torch.load(folder / STATE_FILE, map_location=_device(lm), weights_only=True))
        return lens


def _device(lm: LoadedModel) -> torch.device:
    return next(lm.bridge.ln_final.parameters()).device


@torch.inference_mode()
def kl_bits(
    lm: LoadedModel,
    readouts: dict[str, Readout],
    cache: ResidualCache,
    layers: list[int] | None = None,
    batch_size: int = 64,
) -> dict[str, list[float]]:
    """Each readout's mean KL(final distribution || readout's distribution) in bits at each layer (default: the
    cache's), over the cache's positions; the final distribution is computed once per batch for all of them."""
    layers = list(cache.layers) if layers is None else list(layers)
    slots = cache.slots(layers)
    sums = {name: torch.zeros(len(layers), dtype=torch.float64) for name in readouts}
    for start in range(0, cache.n, batch_size):
        rows = slice(start, start + batch_size)
        target = torch.log_softmax(lens_logits(lm, cache.final[rows]).float(), dim=-1)
        p = target.exp()
        for name, readout in readouts.items():
            for i, (layer, slot) in enumerate(zip(layers, slots)):
                log_q = torch.log_softmax(readout.logits(layer, cache.resid[slot, rows]).float(), dim=-1)
                sums[name][i] += float((p * (target - log_q.to(p.device))).sum())
    return {name: [round(float(s) / cache.n / LN2, 6) for s in total] for name, total in sums.items()}


def train_tuned_lens(
    lm: LoadedModel,
    texts: list[str] | None = None,
    layers: list[int] | None = None,
    max_tokens: int = 8192,
    steps: int = 200,
    batch_size: int = 64,
    lr: float = 3e-3,
    init: str = "zero",
    seed: int = 0,
    cache: ResidualCache | None = None,
    corpus: str = "",
    callback: Callable[[TunedLens, int, int], None] | None = None,
) -> TunedLens:
    """A tuned lens at each of ``layers`` (default: all), trained for ``steps`` Adam steps on the residuals of up to
    ``max_tokens`` positions of ``texts`` (or a ready ``cache``); ``init`` "zero" (the logit lens) or "shortcut" (the
    least-squares map fitted on the same cache). ``corpus`` describes the texts for the provenance (an
    ``offline_texts`` list carries its own ``description``)."""
    if init not in ("zero", "shortcut"):
        raise ValueError(f"init {init!r}: use 'zero' or 'shortcut'")
    corpus = corpus or getattr(texts, "description", "")
    if cache is None:
        if texts is None:
            raise ValueError("give texts or a cache")
        cache = cache_residuals(lm, texts, layers, max_tokens=max_tokens, corpus=corpus)
    layers = list(cache.layers) if layers is None else layers
    if init == "shortcut":
        lens = TunedLens.from_shortcut(fit_shortcut(lm, layers=layers, cache=cache))
    else:
        lens = TunedLens(lm, layers)
    start = time.perf_counter()
    lens.info = {
        "readout": "tuned",
        "method": "h + Linear(h) per layer, trained on KL(final || lens) through the model's final norm and "
        "unembedding (Belrose et al. 2023, arXiv 2303.08112)",
        "init": init,
        "optimizer": f"Adam(lr={lr}, betas=(0.9, 0.999)), linear decay to 0",
        "steps": steps,
        "batch_size": batch_size,
        "tokens_trained": steps * batch_size,
        "seed": seed,
        **cache.describe(),
        "corpus": corpus or cache.corpus,
        "layers": lens.layers,
        "commit": git_commit(),
    }
    lens.train(cache, steps, batch_size, lr, seed, callback)
    lens.info["train_seconds"] = round(time.perf_counter() - start, 2)
    return lens
