"""Interchange on a subspace: does the probe's subspace at a layer carry the class the model then uses?

For each (source, target) pair the target runs with its residual ``blocks.L.hook_resid_post`` at its last prompt token
set, inside an orthonormal basis B, to the source's residual at the source's last prompt token (TransformerLens's
``SubspaceInterchange``: ``h + strength * (h_source - h) @ B @ B.T``; every other position and the target's coordinates
outside B are kept). Read: the logit of ``word`` minus ``other``'s at the last token, through the lens at the readout
layer (default: the classifier layer) and from the model's output. Three interventions side by side: the chosen basis
(``probe``: the span of the linear probe's weights, as sklearn fits it on the labelled prompts' residuals at L, with
the standardisation undone; ``mean-diff``: the span of the centred class means; ``random``; or a given [d_model, rank]
tensor), ``NormMatchedPlacebo`` (each target moved exactly as far, inside a random subspace of the same rank) and a
random basis of the same rank interchanged the same way.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..core.activations import capture_last_token, resid_hook_name
from ..core.errors import WorkbenchError
from ..core.layers import check_layers
from ..core.lens import lens_logits, resolve_targets
from ..core.models import LoadedModel

BASES = ("probe", "mean-diff", "random")
POSITION = "last prompt token (the source's last token into the target's last token)"


def probe_weights(
    features: Float[Tensor, "prompt d_model"], labels: list[str], seed: int = 0
) -> Float[Tensor, "row d_model"]:
    """The probe's weights in residual space: sklearn's StandardScaler + LogisticRegression (core.probes) fitted on
    ``features``, each coefficient divided by its feature's scale (one row for two classes, one per class else)."""
    from ..core.probes import make_probe  # sklearn: only a probe basis pays for importing it

    pipe = make_probe(seed).fit(features.double().numpy(), np.asarray(labels))
    scaler, logistic = pipe[0], pipe[-1]
    return torch.tensor(logistic.coef_ / scaler.scale_, dtype=torch.float32)


def subspace_basis(
    lm: LoadedModel,
    basis: str | Tensor,
    layer: int,
    prompts: list[str] | None = None,
    labels: list[str] | None = None,
    rank: int = 1,
    seed: int = 0,
) -> tuple[Float[Tensor, "d_model rank"], str]:
    """(orthonormal basis [d_model, rank], its name) for ``basis`` (see the module doc); ``probe`` and ``mean-diff``
    are fitted on the labelled ``prompts`` at ``layer``, ``random`` draws ``rank`` directions from ``seed``."""
    from transformer_lens.tools.analysis.interchange import mean_difference_basis, probe_basis, random_basis

    if isinstance(basis, Tensor):
        b = basis.detach().float().cpu()
        if b.dim() != 2 or b.shape[0] != lm.d_model or not 1 <= b.shape[1] <= lm.d_model:
            raise WorkbenchError(
                f"basis of shape {tuple(b.shape)}: give an orthonormal [d_model={lm.d_model}, rank] tensor"
            )
        if not torch.allclose(b.T @ b, torch.eye(b.shape[1]), atol=1e-4):
            raise WorkbenchError("the basis's columns are not orthonormal: orthonormalise it (torch.linalg.qr) first")
        return b, f"given (rank {b.shape[1]})"
    if basis not in BASES:
        raise WorkbenchError(f"basis {basis!r}: use probe, mean-diff, random, or a [d_model, rank] tensor")
    if basis == "random":
        if not 1 <= rank <= lm.d_model:
            raise WorkbenchError(f"rank {rank} is out of range: a random basis has rank 1-{lm.d_model} (d_model)")
        return random_basis(lm.d_model, rank, seed), f"random:{seed}"
    if not prompts or not labels or len(prompts) != len(labels):
        raise WorkbenchError(f"a {basis} basis needs labelled prompts: pass prompts and one label per prompt")
    if len(set(labels)) < 2:
        raise WorkbenchError(f"a {basis} basis needs at least 2 classes, got {sorted(set(labels))}: add another class")
    features = capture_last_token(lm, prompts, [layer])[:, 0]
    if basis == "mean-diff":
        return mean_difference_basis(features, labels), "mean-diff"
    smallest = min(labels.count(c) for c in set(labels))
    if smallest < 2:
        raise WorkbenchError("a probe basis needs at least 2 prompts per class: add prompts to the smallest class")
    return probe_basis(probe_weights(features, labels, seed)), "probe"


def _readout(lm: LoadedModel, ids: list[int], readout_layer: int, last: Tensor):
    """``task_logits`` for TransformerLens's interchange: tokens -> [batch, 2], the (lens at ``readout_layer``,
    output) logit of ids[0] minus ids[1]'s at each row's last prompt token, whatever hooks are active."""

    def difference(logits: Tensor) -> Tensor:
        logits = logits.float()
        return logits[:, ids[0]] - logits[:, ids[1]] if len(ids) == 2 else logits[:, ids[0]]

    def task(tokens: Tensor) -> Tensor:
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        kept: dict[str, Tensor] = {}

        def keep(resid, hook):
            kept["resid"] = resid[rows, last.to(resid.device)]
            return resid

        with lm.bridge.hooks(fwd_hooks=[(resid_hook_name(readout_layer), keep)]):  # inside the intervention's hook
            logits = lm.bridge(tokens)
        out = logits[rows, last.to(logits.device)]
        return torch.stack([difference(lens_logits(lm, kept["resid"])), difference(out)], -1).cpu()

    return task


def _summary(values: Tensor, baseline: Tensor, displacement: Tensor) -> dict:
    effect = values - baseline
    std = effect.std(0) if len(effect) > 1 else torch.zeros(2)
    return {
        "lens": values[:, 0].tolist(),
        "output": values[:, 1].tolist(),
        "lens_effect": effect[:, 0].tolist(),
        "output_effect": effect[:, 1].tolist(),
        "lens_effect_mean": float(effect[:, 0].mean()),
        "lens_effect_std": float(std[0]),
        "output_effect_mean": float(effect[:, 1].mean()),
        "output_effect_std": float(std[1]),
        "displacement": displacement.tolist(),
    }


@torch.inference_mode()
def subspace_interchange(
    lm: LoadedModel,
    source_prompts: list[str],
    target_prompts: list[str],
    layer: int,
    word: str,
    other: str | None = None,
    basis: str | Tensor = "probe",
    prompts: list[str] | None = None,
    labels: list[str] | None = None,
    rank: int = 1,
    readout_layer: int | None = None,
    strength: float = 1.0,
    seed: int = 0,
) -> dict:
    """Interchange each target's component in ``basis`` at ``layer`` for its source's (see the module doc), and the
    placebo and random controls of the same rank. ``prompts``/``labels``: what the probe and mean-diff bases are fitted
    on; ``rank``: a random basis's. Returns per pair the target's and source's own readouts, and per intervention
    (``basis``, ``placebo``, ``random``) the readouts, their effects (intervened - target) with mean and std (ddof 1)
    over the pairs, and how far each target's residual moved (``displacement``)."""
    from transformer_lens.tools.analysis.interchange import (
        NormMatchedPlacebo,
        SubspaceInterchange,
        random_basis,
        run_with_intervention,
    )

    if not source_prompts or len(source_prompts) != len(target_prompts):
        raise WorkbenchError(
            f"{len(source_prompts)} source and {len(target_prompts)} target prompts: give one source per target"
        )
    check_layers([layer], lm.n_layers)
    readout_layer = lm.classifier_layer if readout_layer is None else readout_layer
    check_layers([readout_layer], lm.n_layers, "--readout-layer")
    if not math.isfinite(strength):
        raise WorkbenchError(f"strength {strength} is not a finite number: use 1 (a full interchange) or 0-1")
    if other is not None and other == word:
        raise WorkbenchError(f"word and other are both {word!r}: compare two different class words, or give one")
    tokens = resolve_targets(lm, [word] if other is None else [word, other])
    chosen, name = subspace_basis(lm, basis, layer, prompts, labels, rank, seed)
    r = chosen.shape[1]
    reference = SubspaceInterchange(chosen, strength)
    interventions = {
        "basis": reference,
        "placebo": NormMatchedPlacebo(reference, random_basis(lm.d_model, r, seed + 1)),
        "random": SubspaceInterchange(random_basis(lm.d_model, r, seed + 2), strength),
    }
    source_acts = capture_last_token(lm, source_prompts, [layer])[:, 0]
    target_acts = capture_last_token(lm, target_prompts, [layer])[:, 0]
    target, source = lm.tokenize(target_prompts), lm.tokenize(source_prompts)
    ids = [t.token_id for t in tokens]
    target_read = _readout(lm, ids, readout_layer, target.last_index)(target.input_ids)
    source_read = _readout(lm, ids, readout_layer, source.last_index)(source.input_ids)
    task = _readout(lm, ids, readout_layer, target.last_index)
    effects = {}
    for kind, intervention in interventions.items():
        values = run_with_intervention(
            lm.bridge, resid_hook_name(layer), intervention, target.input_ids, source_acts, task,
            positions=target.last_index,
        )  # fmt: skip
        moved = (intervention(target_acts, source_acts) - target_acts).norm(dim=-1)
        effects[kind] = _summary(values, target_read, moved)
    return {
        "layer": layer,
        "readout_layer": readout_layer,
        "position": POSITION,
        "word": tokens[0].word,
        "other": tokens[1].word if len(tokens) == 2 else None,
        "basis": name,
        "rank": r,
        "strength": strength,
        "seed": seed,
        "controls": f"placebo: NormMatchedPlacebo in random:{seed + 1}; random: SubspaceInterchange in random:{seed + 2}",
        "pairs": [
            {
                "source": s,
                "target": t,
                "target_lens": float(target_read[i, 0]),
                "source_lens": float(source_read[i, 0]),
                "target_output": float(target_read[i, 1]),
                "source_output": float(source_read[i, 1]),
            }
            for i, (s, t) in enumerate(zip(source_prompts, target_prompts))
        ],
        "effects": effects,
    }
