"""Activation patching through ``transformer_lens.patching``: the state of source prompts (one class) put into target
prompts (another class), per layer and position of the residual stream or per attention head, batched over pairs.

Every patched forward runs all pairs at once (TransformerLens loops over the patched cells, not the pairs), and
``reduce="none"`` keeps per-pair values, so each cell has a mean, a standard error and a bootstrap interval.

Metrics, each read on the target run (higher = more like the source):

- ``lens_diff``: the lens's logit of the source's class word minus the target's, at the readout layer (the classifier
  layer by default), last prompt token.
- ``answer_diff``: log p(first token of the source's answer) minus log p(first token of the target's answer) from the
  model's output at the last prompt token: does ``7 + 8 = `` patched with ``7 * 8 = `` prefer ``56`` over ``15``?
  Pairs whose two answers start with the same token are left out of it (counted in ``answer_pairs``).

Positions must align: pairs of different token lengths are refused with both lengths named, unless ``align="last"``,
which patches only the last prompt token (pairs are then grouped by their two lengths, one batch per group).
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from ..core.activations import resid_hook_name
from ..core.data import read_jsonl
from ..core.errors import WorkbenchError
from ..core.guide import DATA_SEED, EVAL_SAMPLES, TRAIN_SAMPLES
from ..core.layers import check_layers
from ..core.lens import lens_logits, resolve_targets
from ..core.models import LoadedModel
from ..tasks.data import task_data
from ..tasks.source import source_of
from ..tasks.sources.arithmetic import operand_pairs
from ..tasks.spec import load_task

WHAT = ("resid", "heads")
POSITIONS = ("last", "each", "all")
METRICS = ("lens_diff", "answer_diff")


@dataclass
class Pair:
    """A prompt whose state is patched in (``source``) and the prompt it goes into (``target``), their classes, and
    the answers whose first tokens ``answer_diff`` compares (None: no answer metric)."""

    source: str
    target: str
    source_class: str
    target_class: str
    source_answer: str | None = None  # e.g. "56" for "7 * 8 = "
    target_answer: str | None = None


def read_pairs(path: str | Path) -> list[Pair]:
    """Pairs from a JSONL file: one object per line with source, target, source_class, target_class and optionally
    source_answer, target_answer. A broken line is named by its number."""
    fields = ("source", "target", "source_class", "target_class")
    rows = read_jsonl(
        path,
        fields,
        allowed=("source_answer", "target_answer"),
        what="pairs file",
        make="write one JSON object per line",
    )
    return [Pair(**row) for row in rows]


def arithmetic_pairs(records: list[dict], source_class: str, target_class: str, n: int) -> list[Pair]:
    """Same operands, two operations (the arithmetic source's pairs, ``operand_pairs``): each target-class record
    ``a + b = `` with ``a * b = `` as its source, so every pair aligns token for token."""
    return [Pair(**p) for p in operand_pairs(records, source_class, target_class, n)]


def pairs_from_records(spec, records: list[dict], source_class: str, target_class: str, n: int) -> list[Pair]:
    """Up to ``n`` pairs from a task's held-out ``records``, as its source makes them. Arithmetic: same operands
    (``arithmetic_pairs``); an examples task: the i-th prompt of the source class with the i-th of the target class,
    each answered by its class word (lengths differ: patch them with ``align="last"``)."""
    for name in (source_class, target_class):
        if name not in spec.classes:
            raise WorkbenchError(f"class {name!r} is not one of task {spec.name!r}'s: {', '.join(spec.classes)}")
    return [Pair(**p) for p in source_of(spec).pairs(records, source_class, target_class, n)]


def task_heldout(spec, n: int) -> list[dict]:
    """At least ``n`` held-out records of a task, with the guide's training size and seed (arithmetic: held out from
    seed 42's 1000; an examples task's held-out records do not depend on either)."""
    return task_data(spec, TRAIN_SAMPLES, max(EVAL_SAMPLES, n), DATA_SEED).heldout


def task_pairs(task: str | Path | None, source_class: str, target_class: str, n: int) -> tuple[list[Pair], dict]:
    """``n`` pairs from a task's held-out records (``pairs_from_records``) and its class words."""
    spec = load_task(task)
    return pairs_from_records(spec, task_heldout(spec, 2 * n * len(spec.classes)), source_class, target_class, n), dict(
        spec.classes
    )


class _Readout:
    """What ``transformer_lens.patching`` runs as "the model": the bridge, with the readout layer's residual at the
    last token kept beside the logits, so a metric can read the lens there."""

    def __init__(self, lm: LoadedModel, readout_layer: int):
        self.lm, self.cfg, self.layer = lm, lm.bridge.cfg, readout_layer

    def run_with_hooks(self, tokens, fwd_hooks=()):
        kept = {}

        def keep(resid, hook):
            kept["resid"] = resid[:, -1].float().clone()  # a later patch may write into this tensor in place
            return resid

        logits = self.lm.bridge.run_with_hooks(tokens, fwd_hooks=[*fwd_hooks, (resid_hook_name(self.layer), keep)])
        return {"logits": logits[:, -1].float(), "lens": lens_logits(self.lm, kept["resid"]).float()}


def _diff(values: Float[Tensor, "batch vocab"], up: Tensor, down: Tensor) -> Tensor:
    rows = torch.arange(values.shape[0], device=values.device)
    return values[rows, up.to(values.device)] - values[rows, down.to(values.device)]


def _metrics(lm: LoadedModel, pairs: list[Pair], class_words: dict[str, str]) -> tuple[dict, dict]:
    """The metric functions for one group of pairs, and how many pairs each counts."""
    word = {c: class_words.get(c, c) for p in pairs for c in (p.source_class, p.target_class)}
    ids = {t.word: t.token_id for t in resolve_targets(lm, sorted(set(word.values())))}
    src_word = torch.tensor([ids[word[p.source_class]] for p in pairs])
    tgt_word = torch.tensor([ids[word[p.target_class]] for p in pairs])
    metrics = {"lens_diff": lambda out: _diff(out["lens"], src_word, tgt_word)}
    counts = {"lens_diff": len(pairs)}
    if all(p.source_answer is not None and p.target_answer is not None for p in pairs):
        first = [(_answer_token(lm, p.source, p.source_answer), _answer_token(lm, p.target, p.target_answer))
                 for p in pairs]  # fmt: skip
        src_ans = torch.tensor([s for s, _ in first])
        tgt_ans = torch.tensor([t for _, t in first])
        differs = src_ans != tgt_ans

        def answer_diff(out):
            value = _diff(torch.log_softmax(out["logits"], -1), src_ans, tgt_ans)
            return torch.where(differs.to(value.device), value, torch.full_like(value, float("nan")))

        metrics["answer_diff"] = answer_diff
        counts["answer_diff"] = int(differs.sum())
    return metrics, counts


def _answer_token(lm: LoadedModel, prompt: str, answer: str) -> int:
    """The first token the model writes for ``answer`` after ``prompt`` (tokenized together, as it is generated)."""
    prompt_ids, full = lm.token_ids(prompt), lm.token_ids(prompt + answer)
    if full[: len(prompt_ids)] != prompt_ids or len(full) == len(prompt_ids):
        return lm.token_ids(answer)[-1]  # the answer merges into the prompt's last token: read its own token
    return full[len(prompt_ids)]


def _groups(lm: LoadedModel, pairs: list[Pair], align: str) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, pair in enumerate(pairs):
        lengths = (len(lm.token_ids(pair.source)), len(lm.token_ids(pair.target)))
        if lengths[0] != lengths[1] and align != "last":
            raise WorkbenchError(
                f"pair {i}: source {pair.source!r} has {lengths[0]} tokens, target {pair.target!r} has {lengths[1]}: "
                "positions cannot align; use pairs of equal length or --align last (patch the last token only)"
            )
        groups[lengths].append(i)
    return groups


@torch.inference_mode()
def _patch_group(
    lm: LoadedModel, pairs: list[Pair], what: str, positions: str, layers: list[int], readout: int, words: dict
):
    """One group of equal-length pairs: per-pair metric values [metric, cell, pair], the unpatched target
    (corrupted) and source (clean) values [metric, pair], and the cells' labels."""
    import pandas as pd
    from transformer_lens import patching

    model = _Readout(lm, readout)
    source = torch.tensor([lm.token_ids(p.source) for p in pairs], device=lm.device)
    target = torch.tensor([lm.token_ids(p.target) for p in pairs], device=lm.device)
    metrics, counts = _metrics(lm, pairs, words)
    from transformer_lens.utilities import get_act_name

    name = "resid_pre" if what == "resid" else "z"
    wanted = {get_act_name(name, layer) for layer in layers} | {resid_hook_name(readout)}
    logits, cache = lm.bridge.run_with_cache(source, names_filter=lambda hook: hook in wanted)  # only what is patched
    source_out = {"logits": logits[:, -1].float(), "lens": lens_logits(lm, cache[resid_hook_name(readout)][:, -1])}
    clean = {name: fn(source_out) for name, fn in metrics.items()}
    seq = target.shape[1]
    if what == "resid":
        name, setter = "resid_pre", patching.layer_pos_patch_setter
        if positions == "all":
            name, setter = "resid_pre", _all_positions
            cells = pd.DataFrame({"layer": layers, "pos": [0] * len(layers)})
        else:
            spots = range(seq) if positions == "each" else [-1]
            cells = pd.DataFrame([(lay, pos) for lay in layers for pos in spots], columns=["layer", "pos"])
    else:
        n_heads = lm.bridge.cfg.n_heads
        if positions == "all":
            name, setter = "z", patching.layer_head_vector_patch_setter
            cells = pd.DataFrame([(lay, h) for lay in layers for h in range(n_heads)], columns=["layer", "head"])
        else:
            name, setter = "z", patching.layer_pos_head_vector_patch_setter
            spots = range(seq) if positions == "each" else [-1]
            cells = pd.DataFrame(
                [(lay, pos, h) for lay in layers for pos in spots for h in range(n_heads)],
                columns=["layer", "pos", "head"],
            )
    with _quiet(patching):
        result = patching.generic_activation_patch(
            model, target, cache, metrics, setter, name, index_df=cells, reduce="none", baseline=True
        )
    return result, {k: v.detach().cpu() for k, v in clean.items()}, counts, cells


@contextmanager
def _quiet(module):
    """TransformerLens draws a progress bar per sweep (one per group of pairs): hidden here, the CLI prints a summary."""
    bar = module.tqdm
    module.tqdm = lambda items, *args, **kwargs: items
    try:
        yield
    finally:
        module.tqdm = bar


def _all_positions(corrupted, index, clean):
    """resid at every position: the whole residual stream entering the layer replaced by the source's."""
    corrupted[...] = clean
    return corrupted


def patch_sweep(
    lm: LoadedModel,
    pairs: list[Pair],
    what: str = "resid",
    positions: str = "last",
    layers: list[int] | None = None,
    readout_layer: int | None = None,
    align: str = "strict",
    class_words: dict[str, str] | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Patch each source's activation into its target at every requested cell (``resid``: the residual stream entering
    each layer, at the last position, at each position, or at all at once; ``heads``: each head's output, ``hook_z``)
    and read the metrics (see the module doc). Per cell: the mean over pairs, its standard error, a bootstrap
    interval, and the recovered share ``(mean - target) / (source - target)`` of the unpatched runs' means.
    ``class_words`` maps a class to the word the lens reads for it (a task's ``classes``; default: the class name)."""
    if what not in WHAT:
        raise WorkbenchError(f"--what {what!r}: use {' or '.join(WHAT)}")
    if positions not in POSITIONS:
        raise WorkbenchError(f"--positions {positions!r}: use {', '.join(POSITIONS)}")
    if align not in ("strict", "last"):
        raise WorkbenchError(f"--align {align!r}: use strict (equal lengths) or last")
    readout = lm.classifier_layer if readout_layer is None else readout_layer
    check_layers([readout], lm.n_layers, "--readout-layer")
    layers = list(range(lm.n_layers)) if layers is None else layers
    check_layers(layers, lm.n_layers)
    if not pairs:
        raise WorkbenchError("no prompt pairs to patch")
    answered = [p.source_answer is not None and p.target_answer is not None for p in pairs]
    if any(answered) and not all(answered):
        raise WorkbenchError(
            f"pair {answered.index(False)} has no source_answer/target_answer and others do: give both for every pair "
            "or for none"
        )
    groups = _groups(lm, pairs, align)
    if positions != "last" and any(s != t for s, t in groups):
        raise WorkbenchError("--align last patches the last token only: use --positions last")
    if positions == "each" and len(groups) > 1:
        lengths = ", ".join(str(s) for s, _ in sorted(groups))
        raise WorkbenchError(
            f"--positions each needs pairs of one token length, these have {lengths}: keep one length "
            "(most_common_length) or use --positions last"
        )
    lm.bridge.eval()
    values, base, clean, counts, cells = defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(int), None
    order = []
    for members in groups.values():
        group = [pairs[i] for i in members]
        order += members
        result, group_clean, group_counts, cells = _patch_group(
            lm, group, what, positions, layers, readout, class_words or {}
        )
        for name in result.metric_names:
            part = result[name]
            values[name].append(part.values.detach().cpu())
            base[name].append(part.baseline.detach().cpu())
            clean[name].append(group_clean[name])
            counts[name] += group_counts[name]
    metrics = {}
    for name in values:
        if counts[name] == 0:
            continue  # no pair's two answers start differently
        metrics[name] = _summarise(
            torch.cat(values[name], -1), torch.cat(base[name], -1), torch.cat(clean[name], -1), confidence, seed
        )
        metrics[name]["pairs"] = counts[name]
    cell_rows = cells.to_dict("records")
    if positions == "all" and what == "resid":
        for row in cell_rows:
            row["pos"] = "all"
    return {
        "what": what,
        "positions": positions,
        "align": align,
        "readout_layer": readout,
        "layers": layers,
        "n_pairs": len(pairs),
        "class_words": class_words or {},
        "cells": cell_rows,
        "metrics": metrics,
        "pairs": [vars(pairs[i]) for i in order],
        "confidence": confidence,
        "seed": seed,
    }


def _summarise(values: Tensor, corrupted: Tensor, clean: Tensor, confidence: float, seed: int) -> dict:
    """values [cell, pair], corrupted/clean [pair] -> per-cell statistics over the pairs (NaN pairs left out)."""
    from transformer_lens.utilities.statistics import bootstrap_ci, derive_generator

    keep = ~torch.isnan(corrupted)
    values, corrupted, clean = values[:, keep].double(), corrupted[keep].double(), clean[keep].double()
    n = values.shape[1]
    mean = values.mean(-1)
    stderr = values.std(-1) / n**0.5 if n > 1 else torch.zeros_like(mean)
    low, high = bootstrap_ci(
        values, dim=-1, statistic="mean", confidence=confidence, n_resamples=1000,
        generator=derive_generator(seed, "bootstrap", "mean"),
    )  # fmt: skip
    span = clean.mean() - corrupted.mean()
    return {
        "target_mean": float(corrupted.mean()),
        "source_mean": float(clean.mean()),
        "mean": mean.tolist(),
        "stderr": stderr.tolist(),
        "ci_low": low.tolist(),
        "ci_high": high.tolist(),
        "recovered": ((mean - corrupted.mean()) / span).tolist() if abs(float(span)) > 1e-9 else None,
        "per_pair": values.tolist(),
        "target_per_pair": corrupted.tolist(),
        "source_per_pair": clean.tolist(),
    }


def most_common_length(lm: LoadedModel, pairs: list[Pair]) -> list[Pair]:
    """The pairs whose source and target both have the most common token length (for a per-position sweep)."""
    lengths = [(len(lm.token_ids(p.source)), len(lm.token_ids(p.target))) for p in pairs]
    equal = [s for s, t in lengths if s == t]
    if not equal:
        return []
    common = max(set(equal), key=equal.count)
    return [p for p, (s, t) in zip(pairs, lengths) if s == t == common]
