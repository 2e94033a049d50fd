"""Steerable × decodable: at each layer and for each ordered class pair (A, B), does adding the class-mean difference
(A's mean state minus B's, from training prompts) to B's held-out prompts move the model's answer towards A more than
norm-matched random directions do? And does each readout of the ladder read the class at that layer?

Steering success of a cell is the mean, over B's prompts, of the change in log p(A's word) − log p(B's word) at the
model's output, steered minus unsteered; the control is the same for ``n_controls`` random directions of the same norm.
A cell is steerable when the 95% t-interval of (direction − mean control) per prompt lies above 0. A readout decodes at
a layer when its top-1 among the class words reaches ``lenses.ladder.READS`` (set before measuring). Per readout: the
2 × 2 table of cells (steerable or not × decodable or not) and Spearman's rank correlation between the readout's
accessibility (mean log10 p(class word)) and steering success, LAP's measure (arXiv 2604.15557).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from ..causal.steering import direction_from, median_resid_norms, random_direction, steered, target_probs
from ..core.activations import capture_last_token
from ..core.models import LoadedModel
from ..lenses.ladder import READS, class_token_ids
from ..tasks.data import task_data
from ..tasks.spec import TaskSpec


def _log_ratio(lm: LoadedModel, prompts: list[str], ids: torch.Tensor) -> np.ndarray:
    """log p(A) - log p(B) at the output, per prompt (``ids`` = [A's token, B's token])."""
    log_p = target_probs(lm, prompts, ids, None, log=True)["output"].double()
    return (log_p[:, 0] - log_p[:, 1]).numpy()


def steering_cells(
    lm: LoadedModel,
    spec: TaskSpec,
    layers: list[int],
    strength: float = 1.0,
    n_controls: int = 4,
    n_fit: int = 64,
    n_prompts: int = 16,
    seed: int = 42,
) -> list[dict]:
    """One cell per layer and ordered class pair (A, B), A the class after B in the task's order (a cycle)."""
    data = task_data(spec, n_fit, 4 * n_prompts * len(spec.classes), seed)
    labels = list(spec.classes)
    train_prompts = [r["prompt"] for r in data.train[:n_fit]]
    train_labels = [r["classification_target"] for r in data.train[:n_fit]]
    ids = class_token_ids(lm, spec)
    states = capture_last_token(lm, train_prompts, layers)  # [prompt, layer, d_model]: every direction's input, once
    cells = []
    for b_index, b in enumerate(labels):
        a = labels[(b_index + 1) % len(labels)]
        prompts = [r["prompt"] for r in data.heldout if r["classification_target"] == b][:n_prompts]
        pair_ids = torch.stack([ids[labels.index(a)], ids[b_index]]).to(lm.device)
        base = _log_ratio(lm, prompts, pair_ids)
        norms = median_resid_norms(lm, prompts, layers)
        for i, layer in enumerate(layers):
            norm = strength * norms[layer]
            unit = direction_from(f"mean-diff:{a},{b}", lm, layer, train_prompts, train_labels, states[:, i]).unit
            with steered(lm, layer, norm * unit):
                moved = _log_ratio(lm, prompts, pair_ids) - base
            controls = []
            for k in range(n_controls):
                with steered(lm, layer, norm * random_direction(lm.d_model, seed + k).unit):
                    controls.append(_log_ratio(lm, prompts, pair_ids) - base)
            excess = moved - np.mean(controls, axis=0)
            low, high = (stats.t.interval(0.95, len(excess) - 1, loc=excess.mean(), scale=stats.sem(excess))
                         if len(excess) > 1 else (float("nan"), float("nan")))  # fmt: skip
            cells.append({
                "layer": layer, "from": b, "to": a, "n": len(prompts), "success": float(moved.mean()),
                "control": float(np.mean(controls)), "excess": float(excess.mean()), "ci": [float(low), float(high)],
                "steerable": bool(low > 0),
            })  # fmt: skip
    return cells


def against_readouts(cells: list[dict], ladder_rows: list[dict], reads: float = READS) -> dict[str, dict]:
    """Per readout: the 2 × 2 counts of cells (steerable × decodes at the cell's layer) and Spearman's rho between its
    accessibility there (log10 mean p(class word)) and the cell's steering success."""
    out = {}
    for name in dict.fromkeys(r["readout"] for r in ladder_rows):
        at = {r["layer"]: r for r in ladder_rows if r["readout"] == name}
        table = {"steerable, decodable": 0, "steerable, not decodable": 0, "not steerable, decodable": 0,
                 "neither": 0}  # fmt: skip
        access, success = [], []
        for cell in cells:
            row = at.get(cell["layer"])
            if row is None:
                continue
            decodes = row["top1"] >= reads
            key = ("steerable, " if cell["steerable"] else "not steerable, ") + (
                "decodable" if decodes else "not decodable"
            )
            table["neither" if key == "not steerable, not decodable" else key] += 1
            access.append(np.log10(max(row["p_expected"], 1e-30)))
            success.append(cell["success"])
        rho = stats.spearmanr(access, success) if len(set(access)) > 1 and len(set(success)) > 1 else None
        out[name] = {"table": table, "spearman_rho": None if rho is None else float(rho.statistic),
                     "p_value": None if rho is None else float(rho.pvalue), "cells": len(access)}  # fmt: skip
    return out
