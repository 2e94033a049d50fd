"""Verification: judge each claim of the guide against a run folder's result files, with explicit thresholds.

A run folder holds the baseline results at its root and, per training seed, phase 1 and phase 2 in ``seed-<s>/``
(a folder without seed folders is read as one seed). ``judge`` returns one row per claim: the claim, the guide's
figure, our measurement (mean and spread over seeds where there are several), the verdict and the threshold used.
Verdicts: ``holds``, ``fails``, ``mixed`` (holds for some seeds only), ``not measured`` (a result file is missing),
``reported`` (a measurement the guide makes no claim about). Nothing here loads a model.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core import guide
from ..core.errors import WorkbenchError
from ..core.guide import FIGURES, THRESHOLDS
from ..core.results import read_result
from ..tasks.spec import Nouns
from ..training.records import GreedyEval, TrainMetrics
from .layout import PhaseFiles, RunLayout, pattern
from .summary import layer_ranges, lens_summary, nouns_for, pct, probe_summary, spread

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


def _load(path: Path, record=None):
    if not path.is_file():
        return None
    return read_result(path) if record is None else record.read(path)


def _probe(result: dict | None) -> dict | None:
    if result is None:
        return None
    return {**probe_summary(result), "accuracy_by_layer": {r["layer"]: r["accuracy"] for r in result["layer_results"]}}


def collect(run_dir: str | Path, seeds: list[int] | None = None) -> dict:
    """Every number the claims need, read from the run folder's result files (None where a file is missing)."""
    run = RunLayout(run_dir)
    base_lens, base_eight = _load(run.baseline_lens), _load(run.baseline_lens_eight)
    out = {
        "run_dir": str(run.root),
        "task": ((_load(run.run_json) or {}).get("settings") or {}).get("task"),
        "task_file": ((_load(run.run_json) or {}).get("settings") or {}).get("task_file"),
        "base_probe": _probe(_load(run.baseline_classifier)),
        "base_lens": None if base_lens is None else lens_summary(base_lens),
        "base_eight": None if base_eight is None else lens_summary(base_eight),
        "seeds": {},
        "causal": _load(run.causal_summary),
    }
    for seed, files in run.seeds(seeds).items():
        m1, m2 = _load(files.phase1_metrics, TrainMetrics), _load(files.phase2_metrics, TrainMetrics)
        before = None if m1 is None else m1.before
        eight, check = _load(files.phase1_lens_eight), _load(files.phase2_check)
        answers_base = _load(files.phase1_answers_base, GreedyEval)
        greedy_before, greedy_after = (
            _load(files.phase2_greedy_before, GreedyEval),
            _load(files.phase2_greedy_after, GreedyEval),
        )
        out["seeds"][seed] = {
            "folder": str(files.root),
            "phase1_steps": None if m1 is None else m1.steps,
            "phase1_eval_prompts": None if m1 is None else m1.eval_prompts,
            "lens_before": None if before is None else before.lens.mean_correct_target_prob,
            "lens_after": None if m1 is None else m1.after.lens.mean_correct_target_prob,
            "lens_after_per_operation": None if m1 is None else m1.after.lens.per_operation_prob,
            "lens_top1": None if m1 is None else m1.after.lens.top1_score.to_dict(),
            "eight": None if eight is None else lens_summary(eight),
            "phase1_probe": _probe(_load(files.phase1_classifier)),
            "check": None
            if check is None
            else {k: check[k] for k in ("unchanged", "max_abs_diff", "frozen_layers", "frozen_layers_moved", "layer")},
            "lens_phase2": None if m2 is None else m2.after.lens.mean_correct_target_prob,
            "exact_match_base": None if before is None else before.answer_exact_match,
            "exact_match_phase1": None if m1 is None else m1.after.answer_exact_match,
            "exact_match_phase2": None if m2 is None else m2.after.answer_exact_match,
            "greedy_base": None if answers_base is None else answers_base.accuracy,
            "greedy_phase1": None if greedy_before is None else greedy_before.accuracy,
            "greedy_phase2": None if greedy_after is None else greedy_after.accuracy,
            "phase2_steps": None if m2 is None else m2.steps,
        }
    return out


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


def _seeded(claim_id, claim, guide_figure, threshold, source, data, key, passes, describe) -> dict:
    """A claim measured once per training seed: holds when it holds for every seed, mixed for some."""
    seeds = {s: d for s, d in data["seeds"].items() if d[key] is not None}
    missing = [s for s, d in data["seeds"].items() if d[key] is None]
    if not seeds:
        return _row(claim_id, claim, guide_figure, f"missing: {source}", "not measured", threshold, source)
    per_seed = {("root" if s is None else str(s)): passes(d[key]) for s, d in seeds.items()}
    held = sum(per_seed.values())
    verdict = "holds" if held == len(seeds) else "fails" if held == 0 else "mixed"
    measured = describe([d[key] for d in seeds.values()])
    if len(seeds) > 1:
        measured += f"; holds for {held}/{len(seeds)} seeds"
    if missing:
        measured += f"; not measured for seed {', '.join(map(str, missing))}"
        verdict = "mixed" if verdict == "holds" else verdict
    return _row(
        claim_id,
        claim,
        guide_figure,
        measured,
        verdict,
        threshold,
        source,
        values=[d[key] for d in seeds.values()],
        per_seed=per_seed,
    )


def _base_probe(data: dict, t: dict, n: Nouns) -> list[dict]:
    """The base model's probe: at every layer, and at the classifier layer against its control task."""
    rows = []
    probe = data["base_probe"]
    if probe is None:
        for cid, text in (
            ("base_probe_all_layers", f"Base model: a linear probe reads the {n.one} at every layer"),
            ("base_probe_classifier_layer", "Base model: a hidden-space classifier at the classifier layer"),
        ):
            rows.append(
                _row(
                    cid,
                    text,
                    FIGURES["probe"],
                    f"missing: {BASE_PROBE}",
                    "not measured",
                    f"accuracy ≥ {t['probe_accuracy']:g}",
                    BASE_PROBE,
                )
            )
    else:
        by_layer = probe["accuracy_by_layer"]
        at = [layer for layer, acc in by_layer.items() if acc >= t["probe_accuracy"]]
        weakest = min(by_layer, key=by_layer.get)
        rows.append(
            _row(
                "base_probe_all_layers",
                f"Base model: a linear probe reads the {n.one} at every layer",
                FIGURES["probe_all_layers"],
                f"{len(at)}/{len(by_layer)} layers reach {t['probe_accuracy']:.0%} ({layer_ranges(at) or 'none'}); "
                f"lowest {by_layer[weakest]:.2f} at L{weakest}",
                "holds" if len(at) == len(by_layer) else "fails",
                f"accuracy ≥ {t['probe_accuracy']:g} at every layer",
                BASE_PROBE,
                values=[by_layer[k] for k in sorted(by_layer)],
            )
        )
        ok = probe["accuracy"] >= t["probe_accuracy"] and probe["selectivity"] >= t["min_selectivity"]
        rows.append(
            _row(
                "base_probe_classifier_layer",
                "Base model: a hidden-space classifier at the classifier layer",
                FIGURES["probe"],
                f"{probe['accuracy']:.2f} at L{probe['layer']} (control task {probe['control_accuracy']:.2f}, "
                f"selectivity {probe['selectivity']:+.2f}; {probe['folds']}-fold CV)",
                "holds" if ok else "fails",
                f"accuracy ≥ {t['probe_accuracy']:g} and selectivity ≥ {t['min_selectivity']:g}",
                BASE_PROBE,
                values=[probe["accuracy"]],
            )
        )
    return rows


def _base_lens(data: dict, t: dict, n: Nouns) -> list[dict]:
    """The base model's lens: no class word readable at the classifier layer."""
    rows = []
    lens = data["base_lens"]
    if lens is None:
        rows.append(
            _row(
                "base_lens",
                "Base model: no vocabulary-aligned classifier (logit lens)",
                FIGURES["base_lens"],
                f"missing: {BASE_LENS}",
                "not measured",
                f"every target probability < {t['base_lens_max_prob']:g}",
                BASE_LENS,
            )
        )
    else:
        rows.append(
            _row(
                "base_lens",
                "Base model: no vocabulary-aligned classifier (logit lens)",
                FIGURES["base_lens"],
                f"correct-{n.one} probability {pct(lens['mean_expected_prob'])} on average at L{lens['layer']}, any target at "
                f"most {pct(lens['max_target_prob'])}; top-1 {lens['score_correct']}/{lens['score_total']}",
                "holds" if lens["max_target_prob"] < t["base_lens_max_prob"] else "fails",
                f"every target probability < {t['base_lens_max_prob']:g}",
                BASE_LENS,
                values=[lens["mean_expected_prob"]],
            )
        )
    return rows


def _phase1_lens(data: dict, t: dict, n: Nouns) -> list[dict]:
    """Phase 1: the lens reads the class word on held-out prompts, against the guide's range."""
    rows = []
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

    rows.append(
        _seeded(
            "phase1_lens",
            "After dual-reward V/O training: a vocabulary-aligned classifier",
            FIGURES["trained_lens"],
            f"mean ≥ {t['trained_lens_min_prob']:g}",
            seeded(PhaseFiles.phase1_metrics),
            data,
            "lens_after",
            lambda v: v >= t["trained_lens_min_prob"],
            lens_text,
        )
    )
    return rows


def _phase1_eight(data: dict, t: dict, n: Nouns) -> list[dict]:
    """Phase 1: the guide's eight prompts at top-1."""
    rows = []
    rows.append(
        _seeded(
            "phase1_eight",
            f"V/O only: {n.eight} read correctly at top-1",
            FIGURES["eight"],
            f"score ≥ {t['eight_min_score']:g}/8",
            seeded(PhaseFiles.phase1_lens_eight),
            data,
            "eight",
            lambda e: e["score_correct"] >= t["eight_min_score"],
            lambda es: (
                spread([float(e["score_correct"]) for e in es], lambda v: f"{v:.3g}")
                + f"/{es[0]['score_total']}"
                + (
                    f" (base model {data['base_eight']['score_correct']}/{data['base_eight']['score_total']})"
                    if data["base_eight"]
                    else ""
                )
            ),
        )
    )
    return rows


def _phase1_probe(data: dict, t: dict, n: Nouns) -> list[dict]:
    """Phase 1: the hidden-space probe still reads the class at the classifier layer."""
    rows = []
    rows.append(
        _seeded(
            "phase1_probe",
            "After V/O training: the hidden-space classifier is still there",
            FIGURES["probe"],
            f"accuracy ≥ {t['probe_accuracy']:g} at the classifier layer",
            seeded(PhaseFiles.phase1_classifier),
            data,
            "phase1_probe",
            lambda p: p["accuracy"] >= t["probe_accuracy"],
            lambda ps: (
                spread([p["accuracy"] for p in ps], lambda v: f"{v:.2f}") + f" probe accuracy at L{ps[0]['layer']}"
            ),
        )
    )
    return rows


def _phase2_unchanged(data: dict, t: dict, n: Nouns) -> list[dict]:
    """Phase 2: the frozen classifier is left as it was."""
    rows = []
    rows.append(
        _seeded(
            "phase2_unchanged",
            "Routing training keeps the frozen classifier unchanged",
            FIGURES["frozen"],
            f"lens change ≤ {t['phase2_tolerance']:g}, no frozen weight moved",
            seeded(PhaseFiles.phase2_check),
            data,
            "check",
            lambda c: c["max_abs_diff"] <= t["phase2_tolerance"] and not c["frozen_layers_moved"],
            lambda cs: (
                f"largest lens change at L{cs[0]['layer']} {max(c['max_abs_diff'] for c in cs):.1e} "
                f"(layers {layer_ranges(cs[0]['frozen_layers'])} frozen); frozen layers moved: "
                + (", ".join(layer_ranges(c["frozen_layers_moved"]) for c in cs if c["frozen_layers_moved"]) or "none")
            ),
        )
    )
    return rows


def _phase2_answers(data: dict, t: dict, n: Nouns) -> list[dict]:
    """Phase 2: the greedy answers improve."""
    rows = []
    gains = {
        s: (d["greedy_phase2"] - d["greedy_phase1"]) if None not in (d["greedy_phase1"], d["greedy_phase2"]) else None
        for s, d in data["seeds"].items()
    }
    for s, d in data["seeds"].items():
        d["greedy_gain"] = gains[s]
    rows.append(
        _seeded(
            "phase2_answers",
            "Routing training improves the answers",
            FIGURES["routing"],
            f"{n.accuracy} gain ≥ {t['min_answer_gain']:g}",
            seeded(PhaseFiles.phase2_greedy_before, PhaseFiles.phase2_greedy_after),
            data,
            "greedy_gain",
            lambda g: g >= t["min_answer_gain"],
            lambda gs: (
                f"{n.answers} correct "
                + spread([d["greedy_phase1"] for d in data["seeds"].values() if d["greedy_gain"] is not None], pct)
                + " → "
                + spread([d["greedy_phase2"] for d in data["seeds"].values() if d["greedy_gain"] is not None], pct)
                + f" on held-out prompts (gain {spread(gs, lambda v: f'{100 * v:+.1f} points')})"
            ),
        )
    )
    return rows


def _answers(data: dict, t: dict, n: Nouns) -> list[dict]:
    """Answer accuracy through the phases: reported, not judged."""
    rows = []
    metrics = seeded(PhaseFiles.phase1_metrics, PhaseFiles.phase2_metrics)
    em = [
        d
        for d in data["seeds"].values()
        if None not in (d["exact_match_base"], d["exact_match_phase1"], d["exact_match_phase2"])
    ]
    rows.append(
        _row(
            "answers",
            "Answer accuracy: base → phase 1 → phase 2",
            FIGURES["answers"],
            (
                "teacher-forced exact match "
                + " → ".join(
                    spread([d[k] for d in em], pct)
                    for k in ("exact_match_base", "exact_match_phase1", "exact_match_phase2")
                )
                + " on held-out prompts"
            )
            if em
            else f"missing: {metrics}",
            "reported" if em else "not measured",
            "none (a measurement, not a claim)",
            metrics,
            values=[[d["exact_match_base"], d["exact_match_phase1"], d["exact_match_phase2"]] for d in em],
        )
    )
    return rows


# The guide's claims in the order the report shows them: each a function of the collected data and the thresholds.
CLAIMS = (_base_probe, _base_lens, _phase1_lens, _phase1_eight, _phase1_probe, _phase2_unchanged, _phase2_answers,
          _answers)  # fmt: skip


def judge(data: dict, limits: dict | None = None) -> list[dict]:
    """One row per claim of the guide (see the module doc for the verdicts), then notebook 08's causal claims."""
    t = thresholds(limits)
    n = nouns_for(data.get("task_file") or data.get("task"))
    return [row for claim in CLAIMS for row in claim(data, t, n)] + _causal_rows(data.get("causal"), t)


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
