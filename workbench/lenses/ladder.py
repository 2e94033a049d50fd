"""The readout ladder: every readout at every layer, on a task's held-out prompts, scored the same way
(``base.score``: top-1 among the class words, p(class word) over the vocabulary, its rank).

Each readout is made once per model (base, or with an adapter): the logit lens and Patchscope need nothing; the linear
shortcut and the tuned lens are fitted on offline prose (``corpus``), or a saved tuned lens is loaded; the Jacobian lens
is fitted on training prompts followed by their class word; the probe through the unembedding is fitted per layer on
training prompts' states with their labels. ``first_reading_layer`` is where a readout first reads the class: top-1
among the class words on at least ``READS`` of the prompts (a threshold set before measuring).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..core.activations import capture_last_token
from ..core.errors import WorkbenchError
from ..core.lens import resolve_targets
from ..core.models import LoadedModel
from ..tasks.data import task_data
from ..tasks.spec import TaskSpec
from .base import LogitLens, Readout, score
from .corpus import offline_texts
from .jacobian import fit_jacobian_lens
from .patchscope import Patchscope
from .shortcut import cache_residuals, fit_shortcut
from .tuned import TunedLens, train_tuned_lens
from .unembed_probe import fit_unembed_probe

READOUTS = ("logit", "shortcut", "tuned", "jacobian", "patchscope", "unembed_probe")
READS = 0.9  # top-1 among the class words on at least this share of held-out prompts: the readout reads the class


def class_token_ids(lm: LoadedModel, spec: TaskSpec) -> torch.Tensor:
    """Each class word's first sub-token (the one the lens reads: ``core.lens.resolve_targets``, without the BOS a
    tokenizer such as Gemma's puts first), in the task's class order."""
    targets = resolve_targets(lm, list(spec.classes.values()))
    if len({t.token_id for t in targets}) < len(targets):
        raise WorkbenchError(
            f"task {spec.name!r}: two class words begin with the same token for this model "
            f"({', '.join(repr(t.token) for t in targets)}): choose class words whose first tokens differ"
        )
    return torch.tensor([t.token_id for t in targets])


def ladder(
    lm: LoadedModel,
    spec: TaskSpec,
    layers: list[int],
    readouts: tuple[str, ...] = READOUTS,
    n_fit: int = 64,
    n_eval: int = 64,
    corpus_tokens: int = 8192,
    tuned_steps: int = 200,
    tuned: str | Path | None = None,
    jacobian_prompts: int = 8,
    seed: int = 42,
    echo: Callable[[str], None] = print,
) -> dict:
    """The ladder's rows (one per readout and layer) and each readout's provenance. ``tuned``: a saved tuned lens
    folder (else one is trained here on ``corpus_tokens`` positions of offline prose for ``tuned_steps`` steps)."""
    data = task_data(spec, n_fit, n_eval, seed)
    labels = list(spec.classes)
    heldout = data.heldout[:n_eval]
    prompts = [r["prompt"] for r in heldout]
    expected = torch.tensor([labels.index(r["classification_target"]) for r in heldout])
    class_ids = class_token_ids(lm, spec)
    resid = capture_last_token(lm, prompts, layers)  # [prompt, layer, d_model]
    made: dict[str, Readout | dict[int, Readout]] = {}
    seconds: dict[str, float] = {}
    cache = None
    if "shortcut" in readouts or ("tuned" in readouts and not tuned):
        texts = offline_texts(seed=seed)
        cache = cache_residuals(lm, texts, sorted(set(layers)), max_tokens=corpus_tokens, corpus=texts.description)
    for name in readouts:
        start = time.perf_counter()
        if name == "logit":
            made[name] = LogitLens(lm)
        elif name == "patchscope":
            made[name] = Patchscope(lm, spec.patchscope_target) if spec.patchscope_target else Patchscope(lm)
        elif name == "shortcut":
            made[name] = fit_shortcut(lm, layers=sorted(set(layers)), cache=cache)
        elif name == "tuned":
            made[name] = (
                TunedLens.load(tuned, lm) if tuned else train_tuned_lens(lm, cache=cache, steps=tuned_steps, seed=seed)
            )
        elif name == "jacobian":
            texts = [r["prompt"] + spec.classes[r["classification_target"]] for r in data.train[:jacobian_prompts]]
            made[name] = fit_jacobian_lens(lm, texts, sorted(set(layers)))
        elif name == "unembed_probe":
            train = data.train[:n_fit]
            states = capture_last_token(lm, [r["prompt"] for r in train], layers)
            train_labels = [r["classification_target"] for r in train]
            made[name] = {layer: fit_unembed_probe(lm, states[:, i], train_labels, dict(spec.classes), layer)
                          for i, layer in enumerate(layers)}  # fmt: skip
        else:
            raise ValueError(f"unknown readout {name!r}: choose from {', '.join(READOUTS)}")
        seconds[name] = round(time.perf_counter() - start, 2)
        echo(f"readout {name}: ready in {seconds[name]:.1f} s")
    rows = []
    for name in readouts:
        for i, layer in enumerate(layers):
            readout = made[name][layer] if isinstance(made[name], dict) else made[name]
            rows.append(score(readout, layer, resid[:, i], class_ids, expected).as_dict())
    provenance = {
        name: ({layer: r.provenance() for layer, r in made[name].items()} if isinstance(made[name], dict)
               else made[name].provenance())
        for name in readouts
    }  # fmt: skip
    return {
        "task": spec.name,
        "classes": dict(spec.classes),
        "layers": layers,
        "classifier_layer": lm.classifier_layer,
        "n_eval": len(prompts),
        "rows": rows,
        "first_reading_layer": first_reading_layers(rows),
        "provenance": provenance,
        "seconds": seconds,
    }


def first_reading_layers(rows: list[dict], reads: float = READS) -> dict[str, int | None]:
    """Per readout: the first layer whose top-1 among the class words reaches ``reads`` (None: no layer does)."""
    out: dict[str, int | None] = {}
    for row in sorted(rows, key=lambda r: r["layer"]):
        out.setdefault(row["readout"], None)
        if out[row["readout"]] is None and row["top1"] >= reads:
            out[row["readout"]] = row["layer"]
    return out
