"""Steering: add ``strength x median_norm(L) x unit(direction)`` to ``blocks.L.hook_resid_post`` at every position and
on every decode step, and measure what moves (the CAA layer x strength sweep).

Directions (``direction_from``): ``mean-diff:A,B`` (class A's mean residual minus class B's at the steering layer, from
labelled prompts, as the probe reads them), ``unembed:WORD`` (the word's unembedding row), ``file:PATH`` (a saved
[d_model] vector: .npy, .pt or a JSON list) and ``random:SEED`` (the control: a Gaussian direction). Every direction is
normalised; the strength alone sets the size, as a fraction of the layer's median residual norm over the prompts' real
tokens, so a random control of the same strength has the same norm.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..core.activations import _run_hooked, capture_last_token, resid_hook_name
from ..core.errors import WorkbenchError
from ..core.generation import greedy_answers
from ..core.layers import check_layers
from ..core.lens import lens_log_probs, resolve_targets
from ..core.models import LoadedModel

KINDS = ("mean-diff", "unembed", "file", "random")


@dataclass
class Direction:
    name: str  # the spec it came from ("unembed:multiply")
    unit: Float[Tensor, " d_model"]  # norm 1, float32 on the CPU


def _unit(vector: Tensor, name: str) -> Tensor:
    vector = vector.detach().float().cpu().reshape(-1)
    norm = float(vector.norm())
    if not np.isfinite(norm) or norm == 0.0:
        raise WorkbenchError(f"direction {name!r} has norm {norm}: it cannot be scaled to a strength")
    return vector / norm


def _read_vector(path: Path) -> Tensor:
    if not path.is_file():
        raise WorkbenchError(f"direction file {str(path)!r} does not exist: save a [d_model] vector (.npy, .pt, .json)")
    try:
        if path.suffix == ".npy":
            return torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
        if path.suffix == ".pt":
            return torch.load(path, map_location="cpu", weights_only=True).float()
        return torch.tensor(json.loads(path.read_text(encoding="utf-8")), dtype=torch.float32)
    except Exception as exc:
        raise WorkbenchError(
            f"cannot read direction file {str(path)!r} ({type(exc).__name__}): save one [d_model] vector as .npy, .pt "
            "(a tensor, no pickled objects) or a JSON list"
        ) from None


def direction_from(
    spec: str,
    lm: LoadedModel,
    layer: int,
    prompts: list[str] | None = None,
    labels: list[str] | None = None,
    features: Float[Tensor, "prompt d_model"] | None = None,
) -> Direction:
    """A unit direction from its spec (see the module doc). ``mean-diff`` needs labelled ``prompts`` (``features``:
    their states at ``layer`` when the caller captured them already)."""
    kind, _, arg = spec.partition(":")
    if kind not in KINDS or not arg:
        raise WorkbenchError(
            f"direction {spec!r}: use mean-diff:CLASS_A,CLASS_B | unembed:WORD | file:PATH | random:SEED"
        )
    if kind == "unembed":
        (target,) = resolve_targets(lm, [arg])
        row = lm.hf_model.get_output_embeddings().weight[target.token_id]
        return Direction(spec, _unit(row, spec))
    if kind == "file":
        vector = _read_vector(Path(arg))
        if vector.numel() != lm.d_model or vector.dim() > 2:
            raise WorkbenchError(
                f"direction file {arg!r} holds {tuple(vector.shape)} values, the model's width is {lm.d_model}: "
                f"save one vector of {lm.d_model}"
            )
        return Direction(spec, _unit(vector, spec))
    if kind == "random":
        try:
            seed = int(arg)
        except ValueError:
            raise WorkbenchError(f"direction {spec!r}: random takes an integer seed (random:0)") from None
        return random_direction(lm.d_model, seed)
    classes = [c.strip() for c in arg.split(",")]
    if len(classes) != 2 or not all(classes):
        raise WorkbenchError(f"direction {spec!r}: mean-diff takes two classes, mean-diff:multiply,add")
    if not prompts or not labels:
        raise WorkbenchError("a mean-diff direction needs labelled prompts: pass --task (its probe prompts)")
    missing = [c for c in classes if c not in labels]
    if missing:
        raise WorkbenchError(f"direction {spec!r}: class {missing[0]!r} has no prompts; classes: {sorted(set(labels))}")
    features = capture_last_token(lm, prompts, [layer])[:, 0] if features is None else features
    mask = {c: torch.tensor([label == c for label in labels]) for c in classes}
    return Direction(spec, _unit(features[mask[classes[0]]].mean(0) - features[mask[classes[1]]].mean(0), spec))


def random_direction(d_model: int, seed: int) -> Direction:
    generator = torch.Generator().manual_seed(seed)
    return Direction(f"random:{seed}", _unit(torch.randn(d_model, generator=generator), "random"))


@torch.inference_mode()
def median_resid_norms(lm: LoadedModel, prompts: list[str], layers: list[int]) -> dict[int, float]:
    """Per layer, the median L2 norm of ``blocks.layer.hook_resid_post`` over every real token of ``prompts`` (no
    padding): one forward pass for all the layers."""
    batch = lm.tokenize(prompts)
    layers = sorted(set(layers))
    norms: dict[int, float] = {}

    def keep(slot: int, resid) -> None:
        real = torch.arange(resid.shape[1], device=resid.device)[None] < batch.lengths[:, None]
        norms[layers[slot]] = float(resid.float().norm(dim=-1)[real].cpu().median())

    _run_hooked(lm, batch.input_ids, layers, keep)
    return norms


def median_resid_norm(lm: LoadedModel, prompts: list[str], layer: int) -> float:
    """``median_resid_norms`` at one layer."""
    return median_resid_norms(lm, prompts, [layer])[layer]


def add_hook(vector: Tensor):
    """A hook adding ``vector`` [d_model] to every position of the activation it is attached to."""

    def hook(resid, hook):
        return resid + vector.to(resid.device, resid.dtype)

    return hook


@contextmanager
def steered(lm: LoadedModel, layer: int, vector: Tensor | None):
    """Inside: every forward of ``lm.bridge`` (each decode step included) has ``vector`` added after block ``layer``.
    ``vector=None``: no intervention (the unsteered reference)."""
    if vector is None:
        yield
        return
    with lm.bridge.hooks(fwd_hooks=[(resid_hook_name(layer), add_hook(vector))]):
        yield


@torch.inference_mode()
def target_probs(
    lm: LoadedModel, prompts: list[str], token_ids: Tensor, readout_layer: int | None, log: bool = False
) -> dict[str, Float[Tensor, "prompt target"]]:
    """p(each target token) at the last prompt token: from the model's own output, and through the lens at
    ``readout_layer`` (both in one forward, with whatever hooks are active). ``log``: log-probabilities instead (no
    underflow to 0 for a word the model all but rules out)."""
    batch = lm.tokenize(prompts)
    rows = torch.arange(len(prompts), device=batch.input_ids.device)
    kept: dict[str, Tensor] = {}
    hooks = []
    if readout_layer is not None:

        def keep(resid, hook):
            kept["resid"] = resid[rows, batch.last_index].float()
            return resid

        hooks.append((resid_hook_name(readout_layer), keep))
    with lm.bridge.hooks(fwd_hooks=hooks):
        logits = lm.bridge(batch.input_ids)
    final = torch.log_softmax(logits[rows, batch.last_index].float(), -1)[:, token_ids].cpu()
    out = {"output": final if log else final.exp()}
    if readout_layer is not None:
        lens = lens_log_probs(lm, kept["resid"])[:, token_ids.to(kept["resid"].device)].float().cpu()
        out["lens"] = lens if log else lens.exp()
    return out


def steer_sweep(
    lm: LoadedModel,
    prompts: list[str],
    direction: Direction,
    layers: list[int],
    strengths: list[float],
    targets: list[str],
    readout_layer: int | None = None,
    control_seed: int = 0,
    generate: bool = True,
    max_new_tokens: int = 8,
) -> dict:
    """The CAA sweep: for each layer and strength, the direction and its random control (same norm) added at that
    layer; per cell the mean p(target) from the model's output and (layers at or below ``readout_layer``) through the
    lens there, and with ``generate`` the greedy answers (KV cache, steered at every decode step) and how many
    changed from the unsteered ones."""
    check_layers(layers, lm.n_layers)
    if readout_layer is not None:
        check_layers([readout_layer], lm.n_layers)
    resolved = resolve_targets(lm, targets)
    token_ids = torch.tensor([t.token_id for t in resolved], device=lm.device)
    control = random_direction(lm.d_model, control_seed)
    base = target_probs(lm, prompts, token_ids, readout_layer)
    base_answers = greedy_answers(lm, prompts, max_new_tokens) if generate else None
    norms = median_resid_norms(lm, prompts, layers)
    cells = []
    for layer in layers:
        for strength in strengths:
            for kind, unit in (("direction", direction.unit), ("control", control.unit)):
                vector = strength * norms[layer] * unit
                lens_at = readout_layer if readout_layer is not None and layer <= readout_layer else None
                with steered(lm, layer, vector):
                    probs = target_probs(lm, prompts, token_ids, lens_at)
                    answers = greedy_answers(lm, prompts, max_new_tokens) if generate else None
                cell = {
                    "layer": layer,
                    "strength": strength,
                    "kind": kind,
                    "norm": float(vector.norm()),
                    "output_p": {t.word: float(probs["output"][:, i].mean()) for i, t in enumerate(resolved)},
                    "lens_p": (
                        {t.word: float(probs["lens"][:, i].mean()) for i, t in enumerate(resolved)}
                        if "lens" in probs
                        else None
                    ),
                }
                if generate:
                    cell["answers"] = answers
                    cell["answers_changed"] = sum(a != b for a, b in zip(answers, base_answers)) / len(prompts)
                cells.append(cell)
    return {
        "direction": direction.name,
        "control": control.name,
        "layers": layers,
        "strengths": strengths,
        "targets": [t.word for t in resolved],
        "readout_layer": readout_layer,
        "median_norms": {str(k): v for k, v in norms.items()},
        "prompts": prompts,
        "baseline": {
            "output_p": {t.word: float(base["output"][:, i].mean()) for i, t in enumerate(resolved)},
            "lens_p": (
                {t.word: float(base["lens"][:, i].mean()) for i, t in enumerate(resolved)} if "lens" in base else None
            ),
            "answers": base_answers,
        },
        "cells": cells,
    }
