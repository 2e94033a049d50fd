"""The readout ladder as an experiment: the ladder (``lenses.ladder``) and, when asked, steerable × decodable
(``steerable.py``) for one model, with the settings `workbench introspect readouts` and notebook 10 share; and the
summary of a run's ladders (the base model and each seed's phase-1 adapter) that the verification judges
(``readouts_summary.json``: each readout at the classifier layer, where each first reads the class, the steering
table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from ..core.models import LoadedModel
from ..lenses.ladder import READS, ladder
from ..tasks.spec import TaskSpec
from .steerable import against_readouts, steering_cells

LENSES = ("logit", "shortcut", "tuned", "jacobian", "patchscope")  # fitted without labels: vocabulary readouts
LABELS = {  # a readout's name in prose (the first clause where it is listed with others)
    "logit": "logit lens",
    "shortcut": "linear shortcut",
    "tuned": "tuned lens",
    "jacobian": "Jacobian lens",
    "patchscope": "Patchscope",
    "unembed_probe": "probe through the unembedding, fitted on labels",
}


@dataclass(frozen=True)
class LadderSettings:
    """What a ladder measures and fits on (the defaults are `workbench introspect readouts`'s)."""

    readouts: tuple[str, ...] = ("logit", "shortcut", "tuned", "patchscope", "unembed_probe")
    n_eval: int = 64  # held-out prompts scored
    n_fit: int = 64  # training prompts (probe through the unembedding, steering directions)
    corpus_tokens: int = 8192  # offline-prose positions the shortcut and the tuned lens fit on
    tuned_steps: int = 200
    tuned: str | None = None  # a saved tuned-lens folder, instead of training one
    jacobian_prompts: int = 8
    steer: float = 0.0  # steering strength (x the layer's median norm); 0: no steering
    n_controls: int = 4  # norm-matched random directions per steering cell
    seed: int = 42

    def record(self) -> dict:
        """As a result file's settings keep them (JSON types)."""
        return {**asdict(self), "readouts": list(self.readouts)}


def default_layers(n_layers: int, classifier_layer: int, count: int = 10) -> list[int]:
    """About ``count`` layers spread over the depth, always with the first, the classifier layer and the last."""
    step = max(1, n_layers // count)
    return sorted({*range(0, n_layers, step), classifier_layer, n_layers - 1})


def measure(
    lm: LoadedModel, spec: TaskSpec, layers: list[int], s: LadderSettings, echo: Callable[[str], None] = print
) -> dict:
    """The ladder's rows for ``lm`` on ``spec`` at ``layers``; with ``s.steer``, the steering cells and each
    readout's 2 × 2 table against them (``steering``)."""
    result = ladder(lm, spec, layers, s.readouts, s.n_fit, s.n_eval, s.corpus_tokens, s.tuned_steps, s.tuned,
                    s.jacobian_prompts, s.seed, echo)  # fmt: skip
    if s.steer > 0:
        cells = steering_cells(lm, spec, layers, s.steer, s.n_controls, s.n_fit, min(s.n_eval, 16), s.seed)
        result["steering"] = {"strength": s.steer, "n_controls": s.n_controls, "cells": cells,
                              "by_readout": against_readouts(cells, result["rows"])}  # fmt: skip
    return result


def steering_summary(result: dict) -> dict | None:
    """A ladder result's steering in counts: cells, steerable ones, steerable ones no vocabulary readout decodes at
    their layer, and each readout's Spearman rho (None without steering)."""
    steering = result.get("steering")
    if not steering:
        return None
    lenses = {(r["readout"], r["layer"]): r["top1"] >= READS for r in result["rows"] if r["readout"] in LENSES}
    cells = steering["cells"]
    hidden = [c for c in cells if c["steerable"] and not any(lenses.get((n, c["layer"])) for n in LENSES)]
    return {
        "strength": steering["strength"],
        "cells": len(cells),
        "steerable": sum(c["steerable"] for c in cells),
        "steerable_not_decodable": len(hidden),  # by no vocabulary readout measured at the cell's layer
        "spearman_rho": {n: r["spearman_rho"] for n, r in steering["by_readout"].items()},
    }


def summarise(results: dict[str, dict]) -> dict:
    """``results``: ``{"base": ladder result, "seed-42": ..., ...}`` (the seeds' phase-1 adapters) -> per model, each
    readout at the classifier layer (top-1 among the class words with its interval, mean p(class word)), the first
    layer each readout reads the class (top-1 ≥ ``READS``), and the steering summary."""
    layer = next(iter(results.values()))["classifier_layer"]
    models = {}
    for name, result in results.items():
        at = {r["readout"]: {k: r.get(k) for k in ("top1", "top1_ci", "p_expected", "rank")}
              for r in result["rows"] if r["layer"] == layer}  # fmt: skip
        models[name] = {
            "first_reading_layer": result["first_reading_layer"],
            "at_classifier_layer": at,
            "n_eval": result["n_eval"],
            "steering": steering_summary(result),
        }
    return {"classifier_layer": layer, "reads": READS, "task": next(iter(results.values()))["task"], "models": models}


def _short(name: str) -> str:
    return LABELS[name].split(",")[0]


def _first(summary: dict, name: str) -> str:
    layer = summary["first_reading_layer"].get(name)
    return "no layer" if layer is None else f"L{layer}"


def _rho(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"


def findings(summary: dict) -> str:
    """The closing finding of notebook 10, built from the summary (nothing typed by hand)."""
    layer, models = summary["classifier_layer"], summary["models"]
    base = models["base"]
    trained = {k: v for k, v in models.items() if k != "base"}
    lenses = [n for n in LENSES if n in base["at_classifier_layer"]]
    reading = [n for n in lenses if base["at_classifier_layer"][n]["top1"] >= summary["reads"]]
    lines = [
        f"**The base model at the classifier layer (L{layer}).** "
        + (
            f"No vocabulary readout ({', '.join(LABELS[n] for n in lenses)}) reads the class there "
            f"(top-1 among the class words below {summary['reads']:.0%})."
            if not reading
            else f"{', '.join(LABELS[n] for n in reading)} read the class there: "
            + ("there is no '0%' here." if "logit" in reading else "the guide's '0%' belongs to the logit lens.")
        )
        + " First layer each readout reads it: "
        + "; ".join(f"{_short(n)} {_first(base, n)}" for n in base["first_reading_layer"])
        + ".",
    ]
    if trained:
        per = {n: [_first(m, n) for m in trained.values()] for n in base["first_reading_layer"] if n in LENSES}
        lines.append(
            f"**After dual-reward training ({len(trained)} seed{'s' * (len(trained) > 1)}).** First reading layer: "
            + "; ".join(f"{LABELS[n]} {', '.join(v)}" for n, v in per.items())
            + "."
        )
    steering = {k: v["steering"] for k, v in models.items() if v["steering"]}
    if steering:
        parts = [
            f"{k}: {s['steerable']}/{s['cells']} cells steerable, {s['steerable_not_decodable']} of them read by no "
            f"vocabulary readout at their layer"
            for k, s in steering.items()
        ]
        lines.append(
            "**Steerable × decodable** (the class-mean difference against norm-matched random directions): "
            + "; ".join(parts)
            + "."
        )
    return "\n\n".join(lines)


def verdicts(summary: dict, max_prob: float, one: str = "class") -> list[dict]:
    """The guide's claim 2 per vocabulary readout (the base model's mean p(correct class word) at the classifier layer
    below ``max_prob``, the threshold of the logit-lens claim; the probe through the unembedding, fitted on labels, is
    reported, not judged), then two reported rows: where each readout first reads the class, and steerable ×
    decodable."""
    layer, models = summary["classifier_layer"], summary["models"]
    base = models["base"]
    trained = {k: v for k, v in models.items() if k != "base"}
    rows = []
    for name, r in base["at_classifier_layer"].items():
        low, high = r.get("top1_ci") or (float("nan"), float("nan"))
        rows.append({
            "id": f"base_readout_{name}",
            "claim": f"Base model: no vocabulary-aligned classifier ({LABELS[name]})",
            "measured": f"correct-{one} probability {r['p_expected']:.2g} on average at L{layer}; top-1 among the "
            f"class words {r['top1']:.2f} (95% CI {low:.2f}-{high:.2f}) on {base['n_eval']} held-out prompts",
            "verdict": "reported" if name not in LENSES else "holds" if r["p_expected"] < max_prob else "fails",
            "threshold": f"mean correct-{one} probability < {max_prob:g} at the classifier layer" if name in LENSES
            else "none (fitted on labels: a probe, not a readout of the model's own vocabulary)",
            "values": [r["p_expected"]],
        })  # fmt: skip
    firsts = "; ".join(f"{_short(n)} {_first(base, n)}" for n in base["first_reading_layer"])
    after = "; ".join(
        f"{_short(n)} {', '.join(_first(m, n) for m in trained.values())}" for n in base["first_reading_layer"]
    )
    rows.append({
        "id": "readouts_first_layer",
        "claim": f"Where each readout first reads the {one}",
        "measured": f"base model: {firsts}" + (f". After phase 1 ({', '.join(trained)}): {after}" if trained else ""),
        "verdict": "reported",
        "threshold": f"top-1 among the class words ≥ {summary['reads']:g} of held-out prompts",
        "values": [],
    })  # fmt: skip
    steering = {k: v["steering"] for k, v in models.items() if v["steering"]}
    if steering:
        rows.append({
            "id": "steerable_not_decodable",
            "claim": "Steerable but not decodable: the class-mean difference moves the answer where no lens reads it",
            "measured": "; ".join(f"{k}: {s['steerable']}/{s['cells']} cells steerable, {s['steerable_not_decodable']} "
                                  f"read by no vocabulary readout, Spearman rho (logit-lens accessibility, steering) "
                                  f"{_rho(s['spearman_rho'].get('logit'))}" for k, s in steering.items()),
            "verdict": "reported",
            "threshold": "steerable: the 95% interval of the excess over norm-matched random directions above 0",
            "values": [],
        })  # fmt: skip
    return rows
