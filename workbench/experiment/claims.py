"""Verification: judge each claim of the guide against a run folder's numbers, with explicit thresholds.

``collect`` (measurements.py) reads the numbers from the run folder's result files; ``judge`` returns one row per claim:
the claim, the guide's figure, our measurement (mean and spread over seeds where there are several), the verdict and the
threshold used. Each claim is one small function in ``CLAIMS``. Verdicts: ``holds``, ``fails``, ``mixed`` (holds for
some seeds only), ``not measured`` (a result file is missing), ``reported`` (a measurement the guide makes no claim
about). Nothing here loads a model.
"""

from __future__ import annotations

import json

from ..core import guide
from ..core.errors import WorkbenchError
from ..core.guide import FIGURES, THRESHOLDS
from ..tasks.spec import Nouns
from .layout import PhaseFiles, RunLayout, pattern
from .measurements import collect as collect  # claims.collect: notebook 05 and crosstask.py read the numbers here
from .summary import layer_ranges, nouns_for, pct, spread

VERDICTS = ("holds", "fails", "mixed", "not measured", "reported")
BASE_PROBE, BASE_LENS = RunLayout.baseline_classifier.rel, RunLayout.baseline_lens.rel


def seeded(*files) -> str:
    """Where a per-seed claim's numbers come from, as a glob over the seed folders."""
    return pattern(*files, prefix="seed-*/")


def thresholds(overrides: dict | None = None) -> dict:
    """The default thresholds with ``overrides`` applied; an unknown name or a non-number is a one-line error."""
    out = dict(THRESHOLDS)
    for name, value in (overrides or {}).items():
        if name not in THRESHOLDS:
            raise WorkbenchError(f"unknown threshold {name!r}: choose one of {', '.join(THRESHOLDS)}")
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise WorkbenchError(
                f"threshold {name}={value!r} is not a number: pass e.g. {name}={THRESHOLDS[name]}"
            ) from None
    return out


def parse_threshold(text: str) -> tuple[str, float]:
    """``name=value`` from the command line."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise WorkbenchError(f"--threshold {text!r} is not NAME=VALUE: e.g. --threshold trained_lens_min_prob=0.36")
    name = name.strip()
    return name, thresholds({name: value.strip()})[name]


def _row(
    claim_id: str,
    claim: str,
    guide_figure: str,
    measured: str,
    verdict: str,
    threshold: str,
    source: str,
    values: list | None = None,
    per_seed: dict | None = None,
) -> dict:
    assert verdict in VERDICTS, verdict
    return {
        "id": claim_id,
        "claim": claim,
        "guide": guide_figure,
        "measured": measured,
        "verdict": verdict,
        "threshold": threshold,
        "source": source,
        "values": values or [],
        "per_seed": per_seed or {},
    }


def _missing(claim_id: str, claim: str, guide_figure: str, threshold: str, source: str) -> dict:
    """The row of a claim whose result file is missing."""
    return _row(claim_id, claim, guide_figure, f"missing: {source}", "not measured", threshold, source)


def _judged(claim_id, claim, guide_figure, threshold, source, measured, holds, values) -> dict:
    """The row of a claim judged once (on the base model's results, not per seed): it holds or it fails."""
    return _row(claim_id, claim, guide_figure, measured, "holds" if holds else "fails", threshold, source, values)


def _seeded(claim_id, claim, guide_figure, threshold, source, data, key, passes, describe) -> dict:
    """A claim measured once per training seed: holds when it holds for every seed, mixed for some."""
    seeds = {s: d for s, d in data["seeds"].items() if d[key] is not None}
    missing = [s for s, d in data["seeds"].items() if d[key] is None]
    if not seeds:
        return _missing(claim_id, claim, guide_figure, threshold, source)
    per_seed = {("root" if s is None else str(s)): passes(d[key]) for s, d in seeds.items()}
    held = sum(per_seed.values())
    verdict = "holds" if held == len(seeds) else "fails" if held == 0 else "mixed"
    measured = describe([d[key] for d in seeds.values()])
    if len(seeds) > 1:
        measured += f"; holds for {held}/{len(seeds)} seeds"
    if missing:
        measured += f"; not measured for seed {', '.join(map(str, missing))}"
        verdict = "mixed" if verdict == "holds" else verdict
    values = [d[key] for d in seeds.values()]
    return _row(claim_id, claim, guide_figure, measured, verdict, threshold, source, values, per_seed)


def _base_probe(data: dict, t: dict, n: Nouns) -> list[dict]:
    """The base model's probe: at every layer, and at the classifier layer against its control task. Without the
    probe's file both rows name the classifier layer's figure and the accuracy threshold."""
    probe, enough = data["base_probe"], f"accuracy ≥ {t['probe_accuracy']:g}"
    every = ("base_probe_all_layers", f"Base model: a linear probe reads the {n.one} at every layer")
    one = ("base_probe_classifier_layer", "Base model: a hidden-space classifier at the classifier layer")
    if probe is None:
        return [_missing(*claim, FIGURES["probe"], enough, BASE_PROBE) for claim in (every, one)]
    by_layer = probe["accuracy_by_layer"]
    at = [layer for layer, acc in by_layer.items() if acc >= t["probe_accuracy"]]
    weakest = min(by_layer, key=by_layer.get)
    layers = (
        f"{len(at)}/{len(by_layer)} layers reach {t['probe_accuracy']:.0%} ({layer_ranges(at) or 'none'}); "
        f"lowest {by_layer[weakest]:.2f} at L{weakest}"
    )
    control = (
        f"{probe['accuracy']:.2f} at L{probe['layer']} (control task {probe['control_accuracy']:.2f}, "
        f"selectivity {probe['selectivity']:+.2f}; {probe['folds']}-fold CV)"
    )
    selective = probe["accuracy"] >= t["probe_accuracy"] and probe["selectivity"] >= t["min_selectivity"]
    every_t, one_t = f"{enough} at every layer", f"{enough} and selectivity ≥ {t['min_selectivity']:g}"
    return [
        _judged(*every, FIGURES["probe_all_layers"], every_t, BASE_PROBE, layers, len(at) == len(by_layer),
                [by_layer[k] for k in sorted(by_layer)]),
        _judged(*one, FIGURES["probe"], one_t, BASE_PROBE, control, selective, [probe["accuracy"]]),
    ]  # fmt: skip


def _base_lens(data: dict, t: dict, n: Nouns) -> list[dict]:
    """The base model's lens: no class word readable at the classifier layer."""
    lens, claim = data["base_lens"], ("base_lens", "Base model: no vocabulary-aligned classifier (logit lens)")
    threshold = f"every target probability < {t['base_lens_max_prob']:g}"
    if lens is None:
        return [_missing(*claim, FIGURES["base_lens"], threshold, BASE_LENS)]
    measured = (
        f"correct-{n.one} probability {pct(lens['mean_expected_prob'])} on average at L{lens['layer']}, any target at "
        f"most {pct(lens['max_target_prob'])}; top-1 {lens['score_correct']}/{lens['score_total']}"
    )
    holds = lens["max_target_prob"] < t["base_lens_max_prob"]
    return [_judged(*claim, FIGURES["base_lens"], threshold, BASE_LENS, measured, holds, [lens["mean_expected_prob"]])]


def _phase1_lens(data: dict, t: dict, n: Nouns) -> list[dict]:
    """Phase 1: the lens reads the class word on held-out prompts, against the guide's range."""
    low, high = guide.LENS_RANGE

    def lens_text(values):
        where = (
            "within"
            if all(low <= v <= high for v in values)
            else "above"
            if min(values) > high
            else "below"
            if max(values) < low
            else "partly within"
        )
        return f"{spread(values, pct)} correct-{n.one} probability on held-out prompts ({where} the guide's range)"

    return [_seeded("phase1_lens", "After dual-reward V/O training: a vocabulary-aligned classifier",
                    FIGURES["trained_lens"], f"mean ≥ {t['trained_lens_min_prob']:g}",
                    seeded(PhaseFiles.phase1_metrics), data, "lens_after",
                    lambda v: v >= t["trained_lens_min_prob"], lens_text)]  # fmt: skip


def _phase1_eight(data: dict, t: dict, n: Nouns) -> list[dict]:
    """Phase 1: the guide's eight prompts at top-1."""
    base = data["base_eight"]
    return [_seeded("phase1_eight", f"V/O only: {n.eight} read correctly at top-1", FIGURES["eight"],
                    f"score ≥ {t['eight_min_score']:g}/8", seeded(PhaseFiles.phase1_lens_eight), data, "eight",
                    lambda e: e["score_correct"] >= t["eight_min_score"],
                    lambda es: spread([float(e["score_correct"]) for e in es], lambda v: f"{v:.3g}")
                    + f"/{es[0]['score_total']}"
                    + (f" (base model {base['score_correct']}/{base['score_total']})" if base else ""))]  # fmt: skip


def _phase1_probe(data: dict, t: dict, n: Nouns) -> list[dict]:
    """Phase 1: the hidden-space probe still reads the class at the classifier layer."""
    return [_seeded("phase1_probe", "After V/O training: the hidden-space classifier is still there", FIGURES["probe"],
                    f"accuracy ≥ {t['probe_accuracy']:g} at the classifier layer",
                    seeded(PhaseFiles.phase1_classifier), data, "phase1_probe",
                    lambda p: p["accuracy"] >= t["probe_accuracy"],
                    lambda ps: spread([p["accuracy"] for p in ps], lambda v: f"{v:.2f}")
                    + f" probe accuracy at L{ps[0]['layer']}")]  # fmt: skip


def _phase2_unchanged(data: dict, t: dict, n: Nouns) -> list[dict]:
    """Phase 2: the frozen classifier is left as it was."""

    def describe(cs):
        moved = ", ".join(layer_ranges(c["frozen_layers_moved"]) for c in cs if c["frozen_layers_moved"]) or "none"
        return (
            f"largest lens change at L{cs[0]['layer']} {max(c['max_abs_diff'] for c in cs):.1e} "
            f"(layers {layer_ranges(cs[0]['frozen_layers'])} frozen); frozen layers moved: {moved}"
        )

    return [_seeded("phase2_unchanged", "Routing training keeps the frozen classifier unchanged", FIGURES["frozen"],
                    f"lens change ≤ {t['phase2_tolerance']:g}, no frozen weight moved",
                    seeded(PhaseFiles.phase2_check), data, "check",
                    lambda c: c["max_abs_diff"] <= t["phase2_tolerance"] and not c["frozen_layers_moved"],
                    describe)]  # fmt: skip


def _phase2_answers(data: dict, t: dict, n: Nouns) -> list[dict]:
    """Phase 2: the greedy answers improve."""
    for d in data["seeds"].values():
        both = None not in (d["greedy_phase1"], d["greedy_phase2"])
        d["greedy_gain"] = d["greedy_phase2"] - d["greedy_phase1"] if both else None
    gained = [d for d in data["seeds"].values() if d["greedy_gain"] is not None]

    def describe(gains):
        before = spread([d["greedy_phase1"] for d in gained], pct)
        after = spread([d["greedy_phase2"] for d in gained], pct)
        gain = spread(gains, lambda v: f"{100 * v:+.1f} points")
        return f"{n.answers} correct {before} → {after} on held-out prompts (gain {gain})"

    return [_seeded("phase2_answers", "Routing training improves the answers", FIGURES["routing"],
                    f"{n.accuracy} gain ≥ {t['min_answer_gain']:g}",
                    seeded(PhaseFiles.phase2_greedy_before, PhaseFiles.phase2_greedy_after), data, "greedy_gain",
                    lambda g: g >= t["min_answer_gain"], describe)]  # fmt: skip


def _answers(data: dict, t: dict, n: Nouns) -> list[dict]:
    """Answer accuracy through the phases: reported, not judged."""
    metrics = seeded(PhaseFiles.phase1_metrics, PhaseFiles.phase2_metrics)
    phases = ("exact_match_base", "exact_match_phase1", "exact_match_phase2")
    em = [d for d in data["seeds"].values() if None not in (d[k] for k in phases)]
    claim = ("answers", "Answer accuracy: base → phase 1 → phase 2", FIGURES["answers"])
    threshold = "none (a measurement, not a claim)"
    if not em:
        return [_missing(*claim, threshold, metrics)]
    measured = (
        f"teacher-forced exact match {' → '.join(spread([d[k] for d in em], pct) for k in phases)} on held-out prompts"
    )
    values = [[d[k] for k in phases] for d in em]
    return [_row(*claim, measured, "reported", threshold, metrics, values)]


# The guide's claims in the order the report shows them: each a function of the collected data and the thresholds.
CLAIMS = (_base_probe, _base_lens, _phase1_lens, _phase1_eight, _phase1_probe, _phase2_unchanged, _phase2_answers,
          _answers)  # fmt: skip


def judge(data: dict, limits: dict | None = None) -> list[dict]:
    """One row per claim of the guide (see the module doc for the verdicts), then notebook 08's causal claims."""
    t = thresholds(limits)
    n = nouns_for(data.get("task_file") or data.get("task"))
    rows = [row for claim in CLAIMS for row in claim(data, t, n)]
    return rows + _readout_rows(data.get("readouts"), t, n) + _causal_rows(data.get("causal"), t)


def _readout_rows(document: dict | None, limits: dict, n: Nouns) -> list[dict]:
    """The guide's claim 2 per readout and the readouts' reported rows (``experiment.readouts.verdicts``); none until
    notebook 10 (`workbench run readouts`) has written ``readouts_summary.json`` into the run folder."""
    from .readouts import verdicts

    if document is None:
        return []
    source = RunLayout.readouts_summary.rel
    return [
        _row(r["id"], r["claim"], FIGURES["base_lens"] if r["verdict"] != "reported" else "—", r["measured"],
             r["verdict"], r["threshold"], source, r["values"])
        for r in verdicts(document, limits["base_lens_max_prob"], n.one)
    ]  # fmt: skip


CAUSAL_FIGURES = {
    "mechanism_vo": FIGURES["mechanism"],
    "routing_uses_classifier": FIGURES["routing"],
    "phase1_as_written": FIGURES["phase1_as_written"],
}


def _causal_rows(document: dict | None, limits: dict) -> list[dict]:
    """The causal claims of notebook 08, re-judged with these thresholds; none until notebook 08 has written
    ``causal_summary.json`` into the run folder (they need trained adapters of several arms)."""
    from .causal import verdicts

    if document is None:
        return []
    source = RunLayout.causal_summary.rel
    return [
        _row(r["id"], r["claim"], CAUSAL_FIGURES[r["id"]], r["measured"], r["verdict"], r["threshold"], source)
        for r in verdicts(document["summary"], limits)
    ]


def failures(claims: list[dict]) -> list[dict]:
    """The claims that do not hold (``reported`` rows are measurements, never failures)."""
    return [c for c in claims if c["verdict"] not in ("holds", "reported")]


def claims_document(data: dict, claims: list[dict], limits: dict, run: dict | None) -> dict:
    """What ``claims.json`` holds: the claims, the thresholds, the seeds and where the numbers came from."""
    return {
        "claims": claims,
        "thresholds": limits,
        "seeds": [s for s in data["seeds"] if s is not None] or None,
        "failed": [c["id"] for c in failures(claims)],
        "run": None
        if run is None
        else {
            **{k: run.get(k) for k in ("model", "quick", "settings", "git_commit", "created", "updated")},
            "phases": {
                k: {f: p.get(f) for f in ("status", "seconds", "git_commit")}
                for k, p in (run.get("phases") or {}).items()
            },
        },
        "measurements": json.loads(json.dumps(data, default=str)),
    }
