"""Verification: judge each claim of the seed guide against a run folder's result files, with explicit thresholds.

A run folder holds the baseline results at its root and, per training seed, phase 1 and phase 2 in ``seed-<s>/``
(a folder without seed folders is read as one seed). ``judge`` returns one row per claim: the claim, the seed's
figure, our measurement (mean and spread over seeds where there are several), the verdict and the threshold used.
Verdicts: ``holds``, ``fails``, ``mixed`` (holds for some seeds only), ``not measured`` (a result file is missing),
``reported`` (a measurement the seed makes no claim about). Nothing here loads a model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from statistics import mean, stdev
from typing import Callable

from .errors import WorkbenchError
from .results import read_result
from .summary import layer_ranges, lens_summary, probe_summary

THRESHOLDS: dict[str, float] = {
    "probe_accuracy": 1.0,  # the seed's "100%" for the hidden-space classifier
    "min_selectivity": 0.5,  # probe accuracy minus control-task accuracy, at the classifier layer
    "base_lens_max_prob": 0.005,  # below this every target probability rounds to the seed's "0%"
    "trained_lens_min_prob": 0.36,  # the low end of the seed's "36-81%"
    "eight_min_score": 8,  # the seed's "V/O only 8/8"
    "phase2_tolerance": 1e-5,  # largest change of a lens probability at the classifier layer still called unchanged
    "min_answer_gain": 0.01,  # phase 2 must raise greedy answer accuracy by at least this much
}
THRESHOLD_HELP = {
    "probe_accuracy": "probe accuracy that counts as the seed's 100%",
    "min_selectivity": "lowest probe selectivity (accuracy - control) at the classifier layer",
    "base_lens_max_prob": "highest base-model target probability that still rounds to the seed's 0%",
    "trained_lens_min_prob": "lowest held-out correct-operation probability after phase 1 (the seed: 0.36-0.81)",
    "eight_min_score": "lowest top-1 score on the guide's eight prompts after phase 1 (the seed: 8)",
    "phase2_tolerance": "largest lens change at the classifier layer in phase 2 still called unchanged",
    "min_answer_gain": "smallest rise in greedy answer accuracy that phase 2 must bring",
}
SEED_RANGE = (0.36, 0.81)
VERDICTS = ("holds", "fails", "mixed", "not measured", "reported")
SEED_DIR = re.compile(r"^seed-(\d+)$")


def thresholds(overrides: dict | None = None) -> dict:
    """The default thresholds with ``overrides`` applied; an unknown name or a non-number is a one-line error."""
    out = dict(THRESHOLDS)
    for name, value in (overrides or {}).items():
        if name not in THRESHOLDS:
            raise WorkbenchError(f"unknown threshold {name!r}: choose one of {', '.join(THRESHOLDS)}")
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise WorkbenchError(f"threshold {name}={value!r} is not a number: pass e.g. {name}={THRESHOLDS[name]}") from None
    return out


def parse_threshold(text: str) -> tuple[str, float]:
    """``name=value`` from the command line."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise WorkbenchError(f"--threshold {text!r} is not NAME=VALUE: e.g. --threshold trained_lens_min_prob=0.36")
    name = name.strip()
    return name, thresholds({name: value.strip()})[name]


def seed_dirs(run_dir: str | Path, seeds: list[int] | None = None) -> dict[int | None, Path]:
    """The folders holding phase 1 and 2 results: ``seed-<s>/`` for ``seeds`` (default: every such folder), or the
    run folder itself (key None) when it has no seed folder but phase results of its own."""
    run_dir = Path(run_dir)
    found = dict(sorted((int(m.group(1)), p) for p in run_dir.glob("seed-*") if p.is_dir() and (m := SEED_DIR.match(p.name))))
    if seeds is not None and (found or not (run_dir / "phase1_adapter").is_dir()):
        return {int(s): run_dir / f"seed-{int(s)}" for s in seeds}
    return found or {None: run_dir}  # notebooks 03 and 04 run by hand into one folder


def _load(path: Path) -> dict | None:
    return read_result(path) if path.is_file() else None


def collect(run_dir: str | Path, seeds: list[int] | None = None) -> dict:
    """Every number the claims need, read from the run folder's result files (None where a file is missing)."""
    run_dir = Path(run_dir)
    base_probe = _load(run_dir / "baseline_classifier.json")
    base_lens = _load(run_dir / "baseline_logit_lens.json")
    base_eight = _load(run_dir / "baseline_logit_lens_eight.json")
    out = {
        "run_dir": str(run_dir),
        "base_probe": None if base_probe is None else {
            **probe_summary(base_probe),
            "accuracy_by_layer": {r["layer"]: r["accuracy"] for r in base_probe["layer_results"]},
        },
        "base_lens": None if base_lens is None else lens_summary(base_lens),
        "base_eight": None if base_eight is None else lens_summary(base_eight),
        "seeds": {},
    }
    for seed, folder in seed_dirs(run_dir, seeds).items():
        m1 = _load(folder / "phase1_adapter" / "metrics.json")
        m2 = _load(folder / "phase2_adapter" / "metrics.json")
        eight = _load(folder / "phase1_lens_eight.json")
        probe = _load(folder / "phase1_classifier.json")
        check = _load(folder / "phase2_classifier_check.json")
        greedy_before = _load(folder / "phase2_greedy_before.json")
        greedy_after = _load(folder / "phase2_greedy_after.json")
        out["seeds"][seed] = {
            "folder": str(folder),
            "phase1_steps": None if m1 is None else m1["steps"],
            "phase1_eval_prompts": None if m1 is None else m1["eval_prompts"],
            "lens_before": None if m1 is None or m1["before"] is None else m1["before"]["lens"]["mean_correct_target_prob"],
            "lens_after": None if m1 is None else m1["after"]["lens"]["mean_correct_target_prob"],
            "lens_after_per_operation": None if m1 is None else m1["after"]["lens"]["per_operation_prob"],
            "lens_top1": None if m1 is None else m1["after"]["lens"]["top1_score"],
            "eight": None if eight is None else lens_summary(eight),
            "phase1_probe": None if probe is None else {
                **probe_summary(probe), "accuracy_by_layer": {r["layer"]: r["accuracy"] for r in probe["layer_results"]}},
            "check": None if check is None else {k: check[k] for k in ("unchanged", "max_abs_diff", "frozen_layers",
                                                                         "frozen_layers_moved", "layer")},
            "lens_phase2": None if m2 is None else m2["after"]["lens"]["mean_correct_target_prob"],
            "exact_match_base": None if m1 is None or m1["before"] is None else m1["before"]["answer_exact_match"],
            "exact_match_phase1": None if m1 is None else m1["after"]["answer_exact_match"],
            "exact_match_phase2": None if m2 is None else m2["after"]["answer_exact_match"],
            "greedy_phase1": None if greedy_before is None else greedy_before["accuracy"],
            "greedy_phase2": None if greedy_after is None else greedy_after["accuracy"],
            "phase2_steps": None if m2 is None else m2["steps"],
        }
    return out


def spread(values: list[float], fmt: Callable[[float], str]) -> str:
    """``v`` for one value; ``mean ± std [min, max]`` over seeds for several."""
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(mean(values))} ± {fmt(stdev(values)).lstrip('+')} [{fmt(min(values))}, {fmt(max(values))}]"


def pct(p: float) -> str:
    """A probability in the seed's unit (x 100), with enough digits that tiny values do not read as 0."""
    value = 100 * p
    if value == 0 or abs(value) >= 0.1:
        return f"{value:.1f}%"
    return f"{value:.1e}%"


def _row(claim_id: str, claim: str, seed_figure: str, measured: str, verdict: str, threshold: str, source: str,
         values: list | None = None, per_seed: dict | None = None) -> dict:
    assert verdict in VERDICTS, verdict
    return {"id": claim_id, "claim": claim, "seed": seed_figure, "measured": measured, "verdict": verdict,
            "threshold": threshold, "source": source, "values": values or [], "per_seed": per_seed or {}}


def _seeded(claim_id, claim, seed_figure, threshold, source, data, key, passes, describe) -> dict:
    """A claim measured once per training seed: holds when it holds for every seed, mixed for some."""
    seeds = {s: d for s, d in data["seeds"].items() if d[key] is not None}
    missing = [s for s, d in data["seeds"].items() if d[key] is None]
    if not seeds:
        return _row(claim_id, claim, seed_figure, f"missing: {source}", "not measured", threshold, source)
    per_seed = {("root" if s is None else str(s)): passes(d[key]) for s, d in seeds.items()}
    held = sum(per_seed.values())
    verdict = "holds" if held == len(seeds) else "fails" if held == 0 else "mixed"
    measured = describe([d[key] for d in seeds.values()])
    if len(seeds) > 1:
        measured += f"; holds for {held}/{len(seeds)} seeds"
    if missing:
        measured += f"; not measured for seed {', '.join(map(str, missing))}"
        verdict = "mixed" if verdict == "holds" else verdict
    return _row(claim_id, claim, seed_figure, measured, verdict, threshold, source,
                values=[d[key] for d in seeds.values()], per_seed=per_seed)


def judge(data: dict, limits: dict | None = None) -> list[dict]:
    """One row per claim of the seed guide (see the module doc for the verdicts)."""
    t = thresholds(limits)
    rows = []
    probe = data["base_probe"]
    if probe is None:
        for cid, text in (("base_probe_all_layers", "Base model: a linear probe reads the operation at every layer"),
                          ("base_probe_classifier_layer", "Base model: a hidden-space classifier at the classifier layer")):
            rows.append(_row(cid, text, "100%", "missing: baseline_classifier.json", "not measured",
                             f"accuracy ≥ {t['probe_accuracy']:g}", "baseline_classifier.json"))
    else:
        by_layer = probe["accuracy_by_layer"]
        at = [layer for layer, acc in by_layer.items() if acc >= t["probe_accuracy"]]
        weakest = min(by_layer, key=by_layer.get)
        rows.append(_row(
            "base_probe_all_layers", "Base model: a linear probe reads the operation at every layer", "100% at all layers",
            f"{len(at)}/{len(by_layer)} layers reach {t['probe_accuracy']:.0%} ({layer_ranges(at) or 'none'}); "
            f"lowest {by_layer[weakest]:.2f} at L{weakest}",
            "holds" if len(at) == len(by_layer) else "fails", f"accuracy ≥ {t['probe_accuracy']:g} at every layer",
            "baseline_classifier.json", values=[by_layer[k] for k in sorted(by_layer)]))
        ok = probe["accuracy"] >= t["probe_accuracy"] and probe["selectivity"] >= t["min_selectivity"]
        rows.append(_row(
            "base_probe_classifier_layer", "Base model: a hidden-space classifier at the classifier layer", "100%",
            f"{probe['accuracy']:.2f} at L{probe['layer']} (control task {probe['control_accuracy']:.2f}, "
            f"selectivity {probe['selectivity']:+.2f}; {probe['folds']}-fold CV)",
            "holds" if ok else "fails",
            f"accuracy ≥ {t['probe_accuracy']:g} and selectivity ≥ {t['min_selectivity']:g}", "baseline_classifier.json",
            values=[probe["accuracy"]]))
    lens = data["base_lens"]
    if lens is None:
        rows.append(_row("base_lens", "Base model: no vocabulary-aligned classifier (logit lens)", "0%",
                         "missing: baseline_logit_lens.json", "not measured",
                         f"every target probability < {t['base_lens_max_prob']:g}", "baseline_logit_lens.json"))
    else:
        rows.append(_row(
            "base_lens", "Base model: no vocabulary-aligned classifier (logit lens)", "0%",
            f"correct-operation probability {pct(lens['mean_expected_prob'])} on average at L{lens['layer']}, any target at "
            f"most {pct(lens['max_target_prob'])}; top-1 {lens['score_correct']}/{lens['score_total']}",
            "holds" if lens["max_target_prob"] < t["base_lens_max_prob"] else "fails",
            f"every target probability < {t['base_lens_max_prob']:g}", "baseline_logit_lens.json",
            values=[lens["mean_expected_prob"]]))

    low, high = SEED_RANGE

    def lens_text(values):
        where = ("within" if all(low <= v <= high for v in values) else "above" if min(values) > high
                 else "below" if max(values) < low else "partly within")
        return f"{spread(values, pct)} correct-operation probability on held-out prompts ({where} the seed's range)"

    rows.append(_seeded(
        "phase1_lens", "After dual-reward V/O training: a vocabulary-aligned classifier", "36-81%",
        f"mean ≥ {t['trained_lens_min_prob']:g}", "seed-*/phase1_adapter/metrics.json", data, "lens_after",
        lambda v: v >= t["trained_lens_min_prob"], lens_text))
    rows.append(_seeded(
        "phase1_eight", "V/O only: the guide's eight prompts read correctly at top-1", "8/8",
        f"score ≥ {t['eight_min_score']:g}/8", "seed-*/phase1_lens_eight.json", data, "eight",
        lambda e: e["score_correct"] >= t["eight_min_score"],
        lambda es: spread([float(e["score_correct"]) for e in es], lambda v: f"{v:.3g}") + f"/{es[0]['score_total']}"
        + (f" (base model {data['base_eight']['score_correct']}/{data['base_eight']['score_total']})"
           if data["base_eight"] else "")))
    rows.append(_seeded(
        "phase1_probe", "After V/O training: the hidden-space classifier is still there", "100%",
        f"accuracy ≥ {t['probe_accuracy']:g} at the classifier layer", "seed-*/phase1_classifier.json", data,
        "phase1_probe", lambda p: p["accuracy"] >= t["probe_accuracy"],
        lambda ps: spread([p["accuracy"] for p in ps], lambda v: f"{v:.2f}") + f" probe accuracy at L{ps[0]['layer']}"))
    rows.append(_seeded(
        "phase2_unchanged", "Routing training keeps the frozen classifier unchanged", "frozen (layers 0-12 of 22)",
        f"lens change ≤ {t['phase2_tolerance']:g}, no frozen weight moved", "seed-*/phase2_classifier_check.json", data,
        "check", lambda c: c["max_abs_diff"] <= t["phase2_tolerance"] and not c["frozen_layers_moved"],
        lambda cs: f"largest lens change at L{cs[0]['layer']} {max(c['max_abs_diff'] for c in cs):.1e} "
                   f"(layers {layer_ranges(cs[0]['frozen_layers'])} frozen); frozen layers moved: "
                   + (", ".join(layer_ranges(c["frozen_layers_moved"]) for c in cs if c["frozen_layers_moved"]) or "none")))

    gains = {s: (d["greedy_phase2"] - d["greedy_phase1"]) if None not in (d["greedy_phase1"], d["greedy_phase2"]) else None
             for s, d in data["seeds"].items()}
    for s, d in data["seeds"].items():
        d["greedy_gain"] = gains[s]
    rows.append(_seeded(
        "phase2_answers", "Routing training improves the answers", "enables circuit routing (no figure)",
        f"greedy accuracy gain ≥ {t['min_answer_gain']:g}", "seed-*/phase2_greedy_*.json", data, "greedy_gain",
        lambda g: g >= t["min_answer_gain"],
        lambda gs: "greedy answers correct " + spread([d["greedy_phase1"] for d in data["seeds"].values()
                                                        if d["greedy_gain"] is not None], pct)
        + " → " + spread([d["greedy_phase2"] for d in data["seeds"].values() if d["greedy_gain"] is not None], pct)
        + f" on held-out prompts (gain {spread(gs, lambda v: f'{100 * v:+.1f} points')})"))

    em = [d for d in data["seeds"].values() if None not in (d["exact_match_base"], d["exact_match_phase1"], d["exact_match_phase2"])]
    rows.append(_row(
        "answers", "Answer accuracy: base → phase 1 → phase 2", "not reported",
        ("teacher-forced exact match " + " → ".join(spread([d[k] for d in em], pct) for k in
                                                     ("exact_match_base", "exact_match_phase1", "exact_match_phase2"))
         + " on held-out prompts") if em else "missing: seed-*/phase*_adapter/metrics.json",
        "reported" if em else "not measured", "none (a measurement, not a claim)", "seed-*/phase*_adapter/metrics.json",
        values=[[d["exact_match_base"], d["exact_match_phase1"], d["exact_match_phase2"]] for d in em]))
    return rows


def failures(claims: list[dict]) -> list[dict]:
    """The claims that do not hold (``reported`` rows are measurements, never failures)."""
    return [c for c in claims if c["verdict"] not in ("holds", "reported")]


def claims_table(claims: list[dict]) -> str:
    """The claims as a markdown table."""
    lines = ["| claim | the seed | measured here | verdict | threshold |", "|---|---|---|---|---|"]
    for c in claims:
        cells = [c["claim"], c["seed"], c["measured"], f"**{c['verdict']}**", c["threshold"]]
        lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines)


def claims_document(data: dict, claims: list[dict], limits: dict, run: dict | None) -> dict:
    """What ``claims.json`` holds: the claims, the thresholds, the seeds and where the numbers came from."""
    return {"claims": claims, "thresholds": limits,
            "seeds": [s for s in data["seeds"] if s is not None] or None,
            "failed": [c["id"] for c in failures(claims)],
            "run": None if run is None else {
                **{k: run.get(k) for k in ("model", "quick", "settings", "git_commit", "created", "updated")},
                "phases": {k: {f: p.get(f) for f in ("status", "seconds", "git_commit")}
                           for k, p in (run.get("phases") or {}).items()}},
            "measurements": json.loads(json.dumps(data, default=str))}


def commits(run: dict) -> str:
    """The commit(s) the phases ran at, and the verifying one when it differs."""
    ran = {k: p.get("git_commit") for k, p in (run.get("phases") or {}).items() if not k.startswith("verify")}
    at = sorted({c or "not recorded" for c in ran.values()})
    verified = run.get("git_commit")
    if not at or at == [verified]:
        return f"`{verified}`"
    return "phases at " + ", ".join(f"`{c}`" for c in at) + f"; verification at `{verified}`"


def run_command(run: dict) -> str:
    """The `workbench run` line that makes this run folder's results again (from its run.json)."""
    from .runner import DEFAULT_SEED

    settings = run.get("settings") or {}
    seeds = settings.get("seeds") or []
    parts = ["workbench run all", f"--model {run.get('model', 'default')}"]
    if len(seeds) > 1:
        parts.append(f"--seeds {len(seeds)}")
    if seeds and seeds[0] != DEFAULT_SEED:
        parts.append(f"--seed {seeds[0]}")
    if run.get("quick"):
        parts.append("--quick")
    parts += [f"--threshold {k}={v:g}" for k, v in (settings.get("thresholds") or {}).items()]
    return " ".join(parts)


def _figure_line(run_dir: Path, title: str, html: str) -> str | None:
    png = Path(html).with_suffix(".png").as_posix()
    if (run_dir / png).is_file():
        return f"![{title}]({png})"
    if (run_dir / html).is_file():
        return f"- {title}: `{html}` (interactive HTML in the run folder; no Chromium was found for a PNG)"
    return None


def report_markdown(run_dir: str | Path, claims: list[dict], data: dict, limits: dict, run: dict | None,
                    figures: list[tuple[str, str]]) -> str:
    """The run's ``report.md``: what was run, the claims table, the thresholds, the phase times and the figures
    (``figures``: (title, HTML path relative to the run folder); the PNG beside it is embedded when there is one)."""
    run_dir = Path(run_dir)
    run = run or {}
    seeds = [s for s in data["seeds"] if s is not None]
    counts = {v: sum(c["verdict"] == v for c in claims) for v in VERDICTS}
    lines = ["# Classifier-emergence experiment: results", ""]
    lines += [
        f"- model: `{run.get('model', '?')}`; training seeds: {', '.join(map(str, seeds)) or 'one (no seed folders)'}",
        f"- command: `{run_command(run)}`" if run else "- command: notebooks run by hand (no run.json)",
        f"- git commit: {commits(run)}; verified {run.get('updated', '?')}",
    ]
    env = (run.get("environment") or {}).get("libraries") or {}
    if env:
        lines.append("- libraries: " + ", ".join(f"{k} {v}" for k, v in env.items() if v))
    unfinished = {k: p.get("status") for k, p in (run.get("phases") or {}).items()
                  if p.get("status") != "done" and not k.startswith("verify")}
    if unfinished:
        lines += ["", "**Not every phase is done** (" + ", ".join(f"{k} {v}" for k, v in unfinished.items())
                  + "; `stale` means an earlier phase was redone after it): some numbers below may be missing or out of "
                  "date until `workbench run all` finishes."]
    if run.get("quick"):
        lines += ["", "**This is a `--quick` run (4 training steps on 64 records): its numbers test the machinery, "
                      "not the seed's claims.**"]
    lines += ["", "## Claims", "",
              f"{counts['holds']} hold, {counts['fails']} fail, {counts['mixed']} mixed, {counts['not measured']} not "
              f"measured ({counts['reported']} reported without a claim). Probabilities are given as percentages, the "
              "seed's unit.", "", claims_table(claims), "",
              "## Thresholds", "", "| name | value | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {value:g} | {THRESHOLD_HELP[name]} |" for name, value in limits.items()]
    phases = {k: p for k, p in (run.get("phases") or {}).items() if not k.startswith("verify")}  # this one is running
    if phases:
        lines += ["", "## Phases", "", "| phase | status | seconds |", "|---|---|---|"]
        lines += [f"| {name} | {p.get('status')} | {p.get('seconds') or 0:.0f} |" for name, p in phases.items()]
    shown = [line for title, html in figures if (line := _figure_line(run_dir, title, html))]
    if shown:
        lines += ["", "## Figures", ""]
        for line in shown:
            lines += [line, ""]
    lines += ["## Where the numbers come from", "",
              "Every number above is read from the run folder's result files by `notebooks/05_verification.ipynb` "
              "(`workbench.verify`): " + ", ".join(sorted({f"`{c['source']}`" for c in claims})) + ". `claims.json` "
              "holds the claims, the thresholds and every measurement they use."]
    return "\n".join(lines).rstrip() + "\n"
