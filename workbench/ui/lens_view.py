"""LensView: the logit lens (or another readout of ``workbench.lenses``) of one model on one prompt at any layer and
token position, read from one cached forward pass (``lens_views`` holds the plain functions it calls).

The explorer's readouts (``READOUTS``): the logit lens; the linear shortcut, fitted in seconds on the first use (on
``SHORTCUT_TOKENS`` positions of offline prose); Patchscope (no fit; one forward pass of its target prompt per read);
and a saved tuned lens (``tuned``: its folder). The KL and steering views stay on the logit lens."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

from ..core.activations import capture_positions
from ..core.errors import WorkbenchError
from ..core.lens import ranks_of, resolve_targets
from ..core.models import LoadedModel
from ..lenses.base import LogitLens, Readout
from ..lenses.corpus import offline_texts
from ..lenses.patchscope import Patchscope
from ..lenses.shortcut import fit_shortcut
from ..lenses.tuned import TunedLens
from . import lens_views as lv

READOUTS = ("logit", "shortcut", "patchscope")
SHORTCUT_TOKENS = 2048


def make_readout(lm: LoadedModel, name: str, tuned: str | Path | None = None) -> Readout:
    """One of the explorer's readouts for ``lm``, fitted where it needs a fit (``tuned``: the saved lens's folder)."""
    if name == "logit":
        return LogitLens(lm)
    if name == "patchscope":
        return Patchscope(lm)
    if name == "shortcut":
        texts = offline_texts()
        return fit_shortcut(lm, texts, max_tokens=SHORTCUT_TOKENS, corpus=texts.description)
    if name == "tuned" and tuned is not None:
        return TunedLens.load(tuned, lm)
    raise WorkbenchError(f"readout {name!r}: choose {', '.join(READOUTS)}, or tuned with a saved tuned-lens folder")


class LensView:
    """A readout of one model on prompts, from cached residuals. ``forward_passes`` counts model runs."""

    def __init__(self, lm: LoadedModel, targets: list[str], cache_size: int = 32):
        self.lm = lm
        self.readouts: dict[str, Readout] = {"logit": LogitLens(lm)}  # made once each, on first use
        self.readout = "logit"
        self.targets = resolve_targets(lm, targets)
        self.target_ids = torch.tensor([t.token_id for t in self.targets], device=lm.device)
        self.vocab_size = int(lm.hf_model.get_output_embeddings().weight.shape[0])
        self.forward_passes = 0
        self.cache_size = cache_size
        self._resid: OrderedDict[str, torch.Tensor] = OrderedDict()  # prompt -> [n_layers, n_tokens, d_model]
        self._derived: dict[tuple, object] = {}  # (prompt, kind, ...) -> what was read from that prompt's pass

    def use(self, name: str, tuned: str | Path | None = None) -> None:
        """Read through readout ``name`` from now on (``make_readout``: made on its first use, then kept)."""
        if name not in self.readouts:
            self.readouts[name] = make_readout(self.lm, name, tuned)
        self.readout = name

    def read(self, layer: int, states: torch.Tensor) -> torch.Tensor:
        """Log-probabilities over the vocabulary of ``states`` (after block ``layer``) through the readout in use."""
        logits = self.readouts[self.readout].logits(layer, states)
        return torch.log_softmax(logits.float(), dim=-1)

    @property
    def _reader(self) -> lv.Read | None:
        """What ``lens_views`` reads through: None for the logit lens (every layer in one batch)."""
        return None if self.readout == "logit" else self.read

    def residuals(self, prompt: str) -> torch.Tensor:
        if prompt not in self._resid:
            self._resid[prompt] = capture_positions(self.lm, prompt)
            self.forward_passes += 1
            while len(self._resid) > self.cache_size:
                dropped, _ = self._resid.popitem(last=False)
                self._derived = {k: v for k, v in self._derived.items() if k[0] != dropped}
        self._resid.move_to_end(prompt)
        return self._resid[prompt]

    def _cached(self, key: tuple, make):
        self.residuals(key[0])  # the prompt's pass first: it may evict, and the key must outlive that
        if key not in self._derived:
            self._derived[key] = make()
        return self._derived[key]

    def tokens(self, prompt: str) -> list[str]:
        return [self.lm.tokenizer.decode([i]) for i in self.lm.token_ids(prompt)]

    def _position(self, prompt: str, position: int | None) -> int:
        n = self.residuals(prompt).shape[1]
        position = n - 1 if position is None else position
        if not -n <= position < n:
            raise WorkbenchError(f"position {position} is outside the prompt's {n} tokens: pick 0..{n - 1}")
        return position % n

    @torch.inference_mode()
    def at(self, prompt: str, layer: int, position: int | None = None, k: int = 10) -> dict:
        """Top-k tokens and each target's probability and rank at one layer and position (default: the last token)."""
        resid = self.residuals(prompt)
        if not 0 <= layer < resid.shape[0]:
            raise WorkbenchError(f"layer {layer} is out of range: the model has layers 0..{resid.shape[0] - 1}")
        position = self._position(prompt, position)
        log_probs = self.read(layer, resid[layer, position][None])  # [1, vocab]
        top = torch.topk(log_probs[0], k)
        ranks = ranks_of(log_probs, self.target_ids)[0]
        return {
            "layer": layer,
            "position": position,
            "top": [
                {"token": self.lm.tokenizer.decode([int(i)]), "token_id": int(i), "prob": float(p.exp())}
                for p, i in zip(top.values, top.indices)
            ],
            "targets": {
                t.word: {"token": t.token, "prob": float(log_probs[0, t.token_id].exp()), "rank": int(r)}
                for t, r in zip(self.targets, ranks)
            },
        }

    def lens(self, prompt: str, position: int | None = None) -> dict[str, torch.Tensor]:
        """``lens_views.target_lens`` at one position: {"probs", "ranks"}: [n_layers, n_targets] tensors (cached)."""
        position = self._position(prompt, position)
        return self._cached(
            (prompt, "lens", position, self.readout),
            lambda: lv.target_lens(self.lm, self.residuals(prompt)[:, position], self.target_ids, self._reader),
        )

    def trajectory(self, prompt: str, position: int | None = None) -> dict:
        """Each target's probability and rank at every layer, at one position (cached per prompt and position)."""
        position = self._position(prompt, position)

        def make():
            lens = self.lens(prompt, position)
            return {
                kind: {t.word: lens[kind][:, j].tolist() for j, t in enumerate(self.targets)}
                for kind in ("probs", "ranks")
            }

        return self._cached((prompt, "trajectory", position, self.readout), make)

    def grid(self, prompt: str) -> dict:
        """The top-1 lens token at every layer and position (``lens_views.top_token_grid``), with the tokens decoded:
        {"token_ids", "probs": [layer][pos] lists, "tokens": [layer][pos] strings}."""

        def make():
            grid = lv.top_token_grid(self.lm, self.residuals(prompt), self._reader)
            decoded = {i: self.lm.tokenizer.decode([i]) for i in grid["token_ids"].unique().tolist()}
            ids = grid["token_ids"].tolist()
            return {
                "token_ids": ids,
                "probs": grid["probs"].tolist(),
                "tokens": [[decoded[i] for i in row] for row in ids],
            }

        return self._cached((prompt, "grid", self.readout), make)

    def base_residuals(self, prompt: str) -> torch.Tensor:
        """The prompt's residuals from this (adapter) model with its LoRA off: the base model's (one more pass)."""

        def make():
            self.forward_passes += 1
            return lv.base_residuals(self.lm, prompt)

        return self._cached((prompt, "base"), make)

    def kl(self, prompt: str, position: int | None = None) -> list[float]:
        """KL(adapter || base) of the lens at every layer, at one position (``lens_views.kl_by_layer``); this view's
        model must carry an adapter."""
        if self.lm.peft_model is None:
            raise WorkbenchError("KL(adapter || base) needs a model with an adapter: this view is the base model's")
        position = self._position(prompt, position)
        return self._cached(
            (prompt, "kl", position),
            lambda: lv.kl_by_layer(
                self.lm, self.residuals(prompt)[:, position], self.base_residuals(prompt)[:, position]
            ).tolist(),
        )
