"""Is the classifier used? The measurements notebook 08 makes per trained adapter, and what they say about the guide's
two causal claims (plus the stability of its phase-1 file as written).

Per adapter (``measure_adapter``), on the arithmetic task at the classifier layer L:

- ``lens``: the held-out lens top-1 share and mean p(expected word), and ``collapse``: the share of prompts whose
  most likely class word is the most common one (1.0: every prompt is read as the same word).
- ``state_patch``: the residual after block L at the last prompt token of ``a * b = `` put into ``a + b = ``: the
  answer's log-prob difference (first token of a*b minus of a+b), the share of it recovered, and how many pairs
  then prefer the multiply answer (``follows``) against how many did unpatched.
- ``ablation``: the lens with each layer's LoRA removed (the layer whose removal costs most), and per module.
- ``attribution``: direct logit attribution of "multiply" minus "add" at L on the multiply prompts: attention's and
  the MLPs' sums, attention's share, the five largest heads.

``summarise`` turns the per-adapter rows of each arm into mean +- std and a t interval over seeds; ``verdicts``
applies thresholds fixed before the measurement (``CAUSAL_THRESHOLDS``).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..causal.ablation import ablation_sweep
from ..causal.attribution import direct_logit_attribution
from ..causal.patching import Pair, pairs_from_records, patch_sweep
from ..core.guide import THRESHOLDS
from ..core.lens import logit_lens
from ..core.models import LoadedModel
from ..core.stats import mean_std, over_seeds

CAUSAL_KEYS = ("classifier_min_top1", "qk_max_top1", "min_routing_dependence", "max_collapse")
# Written before any causal measurement was made (issue 15); `verify --threshold NAME=VALUE` overrides them.
CAUSAL_THRESHOLDS = {key: THRESHOLDS[key] for key in CAUSAL_KEYS}
ARMS = {
    "vo": "phase 1, LoRA on v_proj,o_proj (the guide)",
    "qk": "phase 1, LoRA on q_proj,k_proj",
    "routing": "phase 2 from the phase-1 adapter, layers 0-L frozen",
    "control": "phase 2 from the base model, same frozen layers, steps and data",
    "noclip": "phase 1 as the guide's file is written: no gradient clipping",
}


def measure_adapter(
    lm: LoadedModel,
    pairs: list[Pair],
    prompts: list[str],
    targets: list[str],
    expected: list[str],
    layer: int,
    ablate: bool = True,
    class_words: dict[str, str] | None = None,
) -> dict:
    """Everything the causal claims need from one loaded adapter (see the module doc). ``class_words``: the word the
    lens reads for each class (a task's ``classes``; default: the class name, as for arithmetic)."""
    words = class_words or {}
    lens = logit_lens(lm, prompts, targets, layer=layer, expected=expected)
    winners = Counter(max(r.target_probs, key=r.target_probs.get) for r in lens.results)
    patch = patch_sweep(lm, pairs, "resid", "last", layers=[layer + 1], readout_layer=layer, align="last",
                        class_words=class_words)  # fmt: skip
    answer = patch["metrics"]["answer_diff"]
    out = {
        "adapter": lm.adapter,
        "layer": layer,
        "lens": {
            "top1": lens.score["fraction"],
            "mean_expected_p": lens.mean_expected_prob,
            "collapse": winners.most_common(1)[0][1] / len(lens.results),
            "most_read": winners.most_common(1)[0][0],
            "prompts": len(prompts),
        },
        "state_patch": {
            "pairs": answer["pairs"],
            "recovered": answer["recovered"][0] if answer["recovered"] else None,
            "answer_diff_patched": answer["mean"][0],
            "answer_diff_target": answer["target_mean"],
            "answer_diff_source": answer["source_mean"],
            "ci": [answer["ci_low"][0], answer["ci_high"][0]],
            "follows": sum(v > 0 for v in answer["per_pair"][0]) / answer["pairs"],
            "follows_unpatched": sum(v > 0 for v in answer["target_per_pair"]) / answer["pairs"],
        },
    }
    word = words.get(pairs[0].source_class, pairs[0].source_class)
    other = words.get(pairs[0].target_class, pairs[0].target_class)
    sources = [p for p, e in zip(prompts, expected) if e == word]
    if sources:
        dla = direct_logit_attribution(lm, sources, word, other, layer)
        heads = [(row["layer"], h, v) for row in dla["layers"] for h, v in enumerate(row["heads"])]
        heads.sort(key=lambda item: -abs(item[2]))
        attention, mlp = sum(r["attn"] for r in dla["layers"]), sum(r["mlp"] for r in dla["layers"])
        out["attribution"] = {
            "word": word,
            "other": other,
            "prompts": len(sources),
            "total": dla["total"],
            "attention": attention,
            "mlp": mlp,
            "attention_share": attention / (abs(attention) + abs(mlp)) if attention or mlp else None,
            "top_heads": [{"layer": lay, "head": h, "value": v} for lay, h, v in heads[:5]],
            "by_layer": [{"layer": r["layer"], "attn": r["attn"], "mlp": r["mlp"]} for r in dla["layers"]],
        }
    if ablate and lm.peft_model is not None:
        by_layer = ablation_sweep(lm, prompts, targets, expected, layer, "layer", max_new_tokens=0)
        by_module = ablation_sweep(lm, prompts, targets, expected, layer, "module", max_new_tokens=0)
        drop = {row["removed"]: by_layer["whole_adapter"]["lens_expected_p"] - row["lens_expected_p"]
                for row in by_layer["rows"]}  # fmt: skip
        worst = max(drop, key=drop.get)
        out["ablation"] = {
            "whole": by_layer["whole_adapter"]["lens_expected_p"],
            "none": by_layer["no_adapter"]["lens_expected_p"],
            "drop_by_layer": drop,
            "worst_layer": worst,
            "worst_drop": drop[worst],
            "by_module": {row["removed"]: row["lens_expected_p"] for row in by_module["rows"]},
        }
    return out


def causal_inputs(spec, heldout: list[dict], n_pairs: int, n_prompts: int):
    """What notebook 08 measures every adapter on, from a task's held-out records: pairs of its first two classes
    (arithmetic: ``a * b = `` into ``a + b = ``), the class words, and the lens's prompts (the first ``n_prompts``
    records), targets and expected words. Returns (pairs, class words, prompts, targets, expected)."""
    source, target = list(spec.classes)[:2]
    pairs = pairs_from_records(spec, heldout, source, target, n_pairs)
    words = dict(spec.classes)
    records = heldout[:n_prompts]
    expected = [words[r["classification_target"]] for r in records]
    return pairs, words, [r["prompt"] for r in records], list(dict.fromkeys(words.values())), expected


def training_stats(folder: str | Path, clip: float = 1.0) -> dict | None:
    """From an adapter folder's train_log.jsonl: the steps, the largest gradient norm, the share of steps whose norm
    exceeded ``clip`` (where clipping at 1.0 acts), and the last step's classifier loss. None without a log."""
    log = Path(folder) / "train_log.jsonl"
    if not log.is_file():
        return None
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    norms = [r["grad_norm"] for r in rows if r.get("grad_norm") is not None]
    return {
        "steps": len(rows),
        "max_grad_norm": max(norms) if norms else None,
        "share_above_clip": sum(n > clip for n in norms) / len(norms) if norms else None,
        "final_classifier_loss": rows[-1].get("classifier_loss") if rows else None,
    }


def summarise(arms: dict[str, list[dict]]) -> dict:
    """Per arm (vo, qk, routing, control, noclip, ...): each measurement's mean +- std and interval over seeds."""
    keys = {
        "top1": ("lens", "top1"),
        "mean_expected_p": ("lens", "mean_expected_p"),
        "collapse": ("lens", "collapse"),
        "recovered": ("state_patch", "recovered"),
        "follows": ("state_patch", "follows"),
        "follows_unpatched": ("state_patch", "follows_unpatched"),
        "worst_drop": ("ablation", "worst_drop"),
        "dla_total": ("attribution", "total"),
        "attention_share": ("attribution", "attention_share"),
        "max_grad_norm": ("training", "max_grad_norm"),
        "share_above_clip": ("training", "share_above_clip"),
    }
    out = {}
    for arm, rows in arms.items():
        out[arm] = {name: over_seeds([(row.get(a) or {}).get(b) for row in rows]) for name, (a, b) in keys.items()}
        modules = sorted({m for row in rows for m in ((row.get("ablation") or {}).get("by_module") or {})})
        out[arm]["without_module"] = {
            m: over_seeds([((row.get("ablation") or {}).get("by_module") or {}).get(m) for row in rows])
            for m in modules
        }
        out[arm]["seeds"] = len(rows)
        out[arm]["about"] = ARMS.get(arm, arm)
    if "routing" in arms and "control" in arms and len(arms["routing"]) == len(arms["control"]):
        diffs = [r["state_patch"]["recovered"] - c["state_patch"]["recovered"]
                 for r, c in zip(arms["routing"], arms["control"])]  # fmt: skip
        out["routing_minus_control"] = over_seeds(diffs)
    return out


def _pm(stat: dict, fmt: str = ".2f") -> str:
    if not stat or stat["mean"] is None:
        return "not measured"
    ci = f" (95% CI {stat['ci'][0]:{fmt}} to {stat['ci'][1]:{fmt}})" if stat.get("ci") else ""
    return f"{stat['mean']:{fmt}} ± {stat['std']:{fmt}} over {stat['n']} seed{'s' if stat['n'] != 1 else ''}{ci}"


def verdicts(summary: dict, limits: dict | None = None) -> list[dict]:
    """The three causal claims, judged with the thresholds (``CAUSAL_THRESHOLDS`` with ``limits`` applied)."""
    t = {**CAUSAL_THRESHOLDS, **{k: v for k, v in (limits or {}).items() if k in CAUSAL_KEYS}}
    rows = []
    vo, qk = summary.get("vo"), summary.get("qk")
    if vo and qk and vo["top1"]["n"] and qk["top1"]["n"]:
        exclusive = qk["top1"]["mean"] < t["qk_max_top1"] and vo["top1"]["mean"] >= t["classifier_min_top1"]
        measured = (
            f"lens top-1 at the classifier layer: V/O {_pm(vo['top1'])}, Q/K {_pm(qk['top1'])}; the answers follow "
            f"the patched classifier-layer state (recovered share): V/O {_pm(vo['recovered'])}, Q/K "
            f"{_pm(qk['recovered'])}; attention's share of the class word's direct logit attribution: V/O "
            f"{_pm(vo['attention_share'])}, Q/K {_pm(qk['attention_share'])}"
        )
        rows.append(
            {
                "id": "mechanism_vo",
                "claim": "V/O projections are the mechanism (Q/K-only training does not make the classifier)",
                "measured": measured,
                "verdict": "holds" if exclusive else "fails",
                "threshold": f"V/O top-1 ≥ {t['classifier_min_top1']:g} and Q/K top-1 < {t['qk_max_top1']:g}",
            }
        )
    diff = summary.get("routing_minus_control")
    if diff and diff["n"]:
        low = diff["ci"][0] if diff.get("ci") else diff["mean"]
        holds = diff["mean"] >= t["min_routing_dependence"] and low > 0
        rows.append(
            {
                "id": "routing_uses_classifier",
                "claim": "The frozen classifier enables routing (answers depend on it more after routing training)",
                "measured": (
                    f"answer difference recovered by patching the classifier-layer state: routing arm "
                    f"{_pm(summary['routing']['recovered'])}, control arm {_pm(summary['control']['recovered'])}; "
                    f"difference {_pm(diff)}"
                ),
                "verdict": "holds" if holds else "fails",
                "threshold": f"routing − control ≥ {t['min_routing_dependence']:g} and its CI above 0",
            }
        )
    noclip = summary.get("noclip")
    if noclip and noclip["top1"]["n"]:
        survived = [
            top1 >= t["classifier_min_top1"] and col <= t["max_collapse"]
            for top1, col in zip(noclip["top1"]["values"], noclip["collapse"]["values"])
        ]
        verdict = "holds" if all(survived) else "fails" if not any(survived) else "mixed"
        clipped = summary.get("vo")
        rows.append(
            {
                "id": "phase1_as_written",
                "claim": "The guide's phase-1 file as written (no gradient clipping) trains the classifier",
                "measured": (
                    f"without clipping: top-1 {_pm(noclip['top1'])}, most-read-word share {_pm(noclip['collapse'])}, "
                    f"largest gradient norm {_pm(noclip['max_grad_norm'])}, share of steps above 1.0 "
                    f"{_pm(noclip['share_above_clip'])}; clipped at 1.0: top-1 "
                    f"{_pm(clipped['top1']) if clipped else 'not measured'}; survives for "
                    f"{sum(survived)}/{len(survived)} seeds"
                ),
                "verdict": verdict,
                "threshold": f"top-1 ≥ {t['classifier_min_top1']:g} and share ≤ {t['max_collapse']:g} at step 500",
            }
        )
    return rows


def findings(summary: dict, rows: list[dict]) -> str:
    """The closing finding of notebook 08 as markdown, built only from ``summary`` and the verdict ``rows``."""
    lines = []
    for row in rows:
        lines.append(f"- **{row['claim']}: {row['verdict']}.** {row['measured']} (threshold: {row['threshold']}).")
    for arm in ("vo", "qk"):
        stat = summary.get(arm)
        if stat and stat["worst_drop"]["n"]:
            without = "; ".join(f"every {m} {_pm(v, '.3f')}" for m, v in stat["without_module"].items())
            lines.append(
                f"- {ARMS[arm]}: removing a single layer's LoRA costs the lens at most {_pm(stat['worst_drop'], '.3f')}"
                f" of mean p(expected word) (whole adapter {_pm(stat['mean_expected_p'], '.3f')}); with one module's "
                f"LoRA removed everywhere: {without}."
            )
    base = summary.get("base")
    if base and base["recovered"]["n"]:
        lines.append(
            f"- Base model (no adapter): patching the classifier-layer state recovers {_pm(base['recovered'])} of "
            "the answer difference: what any model's mid-layer state already carries."
        )
    if not lines:
        return "Nothing was measured: pass adapters in `arms`."
    return "\n".join(lines)


_COLUMNS = (
    ("lens top-1", "top1"),
    ("read as one word", "collapse"),
    ("answer diff. recovered", "recovered"),
    ("pairs following", "follows"),
    ("… unpatched", "follows_unpatched"),
    ("worst one-layer LoRA drop", "worst_drop"),
    ("DLA attention share", "attention_share"),
)


def _cell(stat: dict) -> str:
    return mean_std(stat, ".2f", "–")


def arm_table(summary: dict) -> str:
    """One markdown row per arm: each measurement's mean ± std over its seeds."""
    arms = [a for a in ("base", *ARMS) if a in summary]
    lines = [
        "| arm | seeds | " + " | ".join(name for name, _ in _COLUMNS) + " |",
        "|---|---:|" + "---:|" * len(_COLUMNS),
    ]
    for arm in arms:
        about = "base model, no adapter" if arm == "base" else ARMS[arm]
        row = summary[arm]
        lines.append(f"| {about} | {row['seeds']} | " + " | ".join(_cell(row[key]) for _, key in _COLUMNS) + " |")
    return "\n".join(lines)


def page_text(document: dict) -> str:
    """docs/causal.md's results section, from a causal summary alone: the arms' table, the judged claims, how it was
    made and the findings."""
    summary, rows = document["summary"], document["claims"]
    source = document.get("source") or {}
    pair = document.get("pair") or ["a * b = ", "a + b = "]
    lines = [
        "## What notebook 08 found",
        "",
        f"{document['model']}, task {document.get('task') or 'arithmetic'}, classifier layer {document['layer']}, "
        f"{document['n_pairs']} prompt pairs such as `{pair[0]}` → `{pair[1]}`, {document['n_prompts']} held-out "
        f"lens prompts, seeds {document['seeds']}. Mean ± std over seeds.",
        "",
        arm_table(summary),
        "",
        "| claim | verdict | threshold |",
        "|---|---|---|",
        *[f"| {r['claim']} | **{r['verdict']}** | {r['threshold']} |" for r in rows],
        "",
    ]
    if source:
        lines += [f"Made by `{source['command']}` (git commit `{source.get('git_commit') or 'not recorded'}`), "
                  f"{(source.get('updated') or '?')[:10]}.", ""]  # fmt: skip
    lines += ["**What we found.**", "", findings(summary, rows)]
    return "\n".join(lines) + "\n"
