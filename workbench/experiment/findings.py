"""The closing "What we found" paragraph of each notebook, built from the result files the notebook wrote (nothing is
typed by hand), as markdown. One function per notebook; each reads its files through the run layout."""

from __future__ import annotations

from pathlib import Path

from ..core import guide
from ..core.data import read_jsonl
from ..core.results import read_result
from ..training.records import GreedyEval
from .claims import VERDICTS
from .layout import PhaseFiles, RunLayout
from .summary import (
    classifier_layer_rule,
    expected_prob_range,
    fmt_prob,
    layer_ranges,
    lens_summary,
    nouns_for,
    probe_summary,
    training_summary,
)

RANGE = guide.FIGURES["trained_lens"]


def _task(doc: dict) -> str | None:
    """The task a result was measured on (its settings name it; None: the guide's arithmetic)."""
    return (doc.get("settings") or {}).get("task")


def _within_guide(low: float, high: float) -> str:
    g_low, g_high = guide.LENS_RANGE
    if g_low <= low and high <= g_high:
        return f" — within the guide's {RANGE}."
    if low > g_high:
        return f" — above the guide's {RANGE}."
    if high < g_low:
        return f" — below the guide's {RANGE}."
    return f" — the guide reports {RANGE}."


def data(run: RunLayout) -> str:
    """Notebook 00: the records, the rule checks and how the model tokenizes them (``data/generate.json``)."""
    g = read_result(run.generate)
    task = g.get("task") or {}
    if task.get("answer") == "class_word":
        return _task_data(g, task)
    problems = sum(n for c in g["violations"].values() for n in c.values())
    ops = ", ".join(f"{op} {v['train']}" for op, v in g["operations"].items())
    lengths = list(map(int, g["response_tokens"]))
    return " ".join(
        [
            f"**Data.** {g['train']['records']} training records (seed {g['train']['seed']}; {ops}; "
            f"{g['distinct_train_prompts']} distinct prompts) and {g['heldout']['records']} held-out prompts (seed "
            f"{g['heldout']['seed']}), {g['heldout_in_train']} of them in the training data.",
            "Every record follows the generator's rules."
            if problems == 0
            else f"**{problems} records break the generator's rules.**",
            f"Responses are {min(lengths)}-{max(lengths)} tokens long for `{g['model']}`, and the last prompt token is "
            + " or ".join(map(repr, g["last_prompt_tokens"]))
            + " for every prompt.",
            f"Files: `{RunLayout.train_data.rel}` (sha256 {g['train']['sha256'][:12]}…) and `{RunLayout.heldout_data.rel}` "
            f"(sha256 {g['heldout']['sha256'][:12]}…).",
        ]
    )


def _task_data(g: dict, task: dict) -> str:
    """Notebook 00 for a task file's data: the split, the classes, the out-of-distribution set, the prompts' length."""
    counts = ", ".join(f"{c} {v['train']}/{v['heldout']}" for c, v in g["operations"].items())
    ood = task.get("ood")
    return " ".join(
        [
            f"**Data.** Task `{task['name']}`: {g['train']['records']} training and {g['heldout']['records']} held-out "
            f"records (training/held out per class: {counts}), split by {task['split']['by']}"
            + (f" with held-out subsets {task['split']['heldout_subsets']}" if task["split"]["heldout_subsets"] else "")
            + f"; {g['heldout_in_train']} held-out prompts and {task['heldout_groups_in_train']} held-out groups occur in "
            "the training data.",
            f"Out of distribution: {ood['records']} records ({', '.join(f'{k} {v}' for k, v in ood['subsets'].items())})."
            if ood
            else "",
            f"Prompts are {task['prompt_tokens']['mean']:.0f} tokens long on average (at most "
            f"{task['prompt_tokens']['max']}) for `{g['model']}`, and end in "
            + " or ".join(map(repr, g["last_prompt_tokens"]))
            + "; every class word is "
            + (
                "one token."
                if all(len(t) == 1 for t in task["class_tokens"].values())
                else "read through its first token (some are several)."
            ),
        ]
    ).replace("  ", " ")


def baseline_probe(result_path: str | Path, last_tokens: list[str]) -> str:
    """Notebook 01: the base model's probe at every layer (``last_tokens``: each prompt's last token, as tokenized)."""
    doc = read_result(result_path)
    s, task = probe_summary(doc), _task(doc)
    n = nouns_for(task)
    last = sorted(set(last_tokens))
    every = (
        f"As the guide says, every one of the {s['layers_probed']} layers reaches 100%."
        if s["n_layers_at_100"] == s["layers_probed"]
        else f"{s['n_layers_at_100']} of {s['layers_probed']} layers reach 100% "
        f'({layer_ranges(s["layers_at_100"]) or "none"}), so the guide\'s "100% at all layers" holds only in part '
        f"here; the weakest layer is L{s['min_accuracy_layer']} ({s['min_accuracy']:.0%})"
        + ("." if s["best_accuracy"] >= 1.0 else f" and the best L{s['best_layer']} ({s['best_accuracy']:.0%}).")
    )
    return " ".join(
        [
            f"**Hidden-space classifier.** On `{s['model']}` a linear probe on the last-token residual stream separates the "
            f"{len(s['classes'])} {n.many} with cross-validated accuracy **{s['accuracy']:.0%}** at the classifier layer "
            f"L{s['layer']}{classifier_layer_rule(s['layer'], s['num_layers'])} (control task {s['control_accuracy']:.0%}, "
            f"selectivity {s['selectivity']:+.2f}; chance {s['chance']:.0%}; {s['folds']}-fold CV).",
            every,
            f"The control task averages {s['mean_control_accuracy']:.0%} over layers (at most {s['max_control_accuracy']:.0%})"
            + (
                ", close to chance, so the probes are not just memorising their prompts"
                if s["mean_control_accuracy"] < s["chance"] + 0.15
                else ""
            )
            + f"; selectivity peaks at {s['max_selectivity']:+.2f} at L{s['max_selectivity_layer']}.",
            f"Refitted at L{s['layer']}, the probe labels {s['test_correct']} of {s['test_total']} test prompts correctly."
            if s["test_total"]
            else "",
            _surface(doc, s, last, task),
        ]
    )


def _surface(doc: dict, s: dict, last: list[str], task: str | None) -> str:
    """What the probe could be reading instead of a classifier: the operator (arithmetic) or the prompt's tokens."""
    bag = doc.get("bag_of_tokens")
    if task in (None, "arithmetic") or bag is None:
        return (
            f"Every prompt ends in the same token ({last[0]!r}), so the probe cannot read the operator from the last "
            "token itself: the operator's identity reaches the last position through attention — which is still compatible "
            "with a mere copy of the operator (see the caveat)."
            if len(last) == 1
            else f"The prompts end in {len(last)} different tokens, so part of what the probe reads may be the last token itself."
        )
    gap = s["best_accuracy"] - bag["accuracy"]
    return (
        f"A bag-of-tokens baseline (logistic regression on the prompts' token counts, the same folds) reaches "
        f"{bag['accuracy']:.0%}: the best probe (L{s['best_layer']}, {s['best_accuracy']:.0%}) is "
        + (
            f"{gap:+.0%} above the prompts' surface."
            if gap > 0.05
            else "no better than the prompts' surface, so it need not read a hidden-space classifier."
        )
    )


def baseline_lens(run: RunLayout, vocab_size: int) -> str:
    """Notebook 02: the base model's logit lens on the lens prompts and on the guide's eight."""
    s, e = lens_summary(read_result(run.baseline_lens)), lens_summary(read_result(run.baseline_lens_eight))
    n = nouns_for(_task(read_result(run.baseline_lens)))
    best = max(e["best_target_counts"], key=e["best_target_counts"].get)
    text = [
        f"**Vocabulary-aligned classifier.** On `{s['model']}` at the classifier layer L{s['layer']} of {s['num_layers']}, "
        f"the lens puts the expected {n.one} word at top-1 for **{s['score_correct']}/{s['score_total']}** of the lens "
        f"prompts and {e['score_correct']}/{e['score_total']} of {n.eight}.",
        f"The mean probability of the expected word is {s['mean_expected_prob']:.2e} "
        f"({s['mean_expected_percent']:.2g}% in the guide's units; {n.eight}: {e['mean_expected_prob']:.2e}), and no "
        f'target gets more than {s["max_target_prob"]:.2e} on any prompt — the guide\'s "0%" '
        + ("reproduces." if s["max_target_percent"] < 0.5 else "does not reproduce."),
        f"The top token at L{s['layer']} is {', '.join(map(repr, s['top_tokens']))} (mean probability "
        f"{s['mean_top_prob']:.0%}); the best rank any expected word reaches is {s['best_expected_rank']} of {vocab_size} "
        f"(median {s['median_expected_rank']:.0f}).",
        f"Compared only with each other, the {len(e['best_target_counts'])} target words "
        + (f"do follow the {n.one}" if e["best_target_is_expected"] == e["n_prompts"] else f"do not follow the {n.one}")
        + f": on {n.eight} the expected word is the most probable of them "
        f"{e['best_target_is_expected']} times, and {best!r} {e['best_target_counts'][best]} times"
        + (
            " — a constant preference, not a classification."
            if e["best_target_counts"][best] == e["n_prompts"]
            else "."
        ),
        f"Over all {s['all_layers']} layers the mean expected-word probability peaks at L{s['peak_layer']} "
        f"({s['peak_mean_expected_prob']:.2e}); the largest value on any prompt and layer is "
        f"{s['max_expected_prob_any_layer']:.2e}.",
    ]
    return " ".join(text + _multi_token(s))


def _multi_token(summary: dict) -> list[str]:
    words = summary["multi_token_targets"]
    return (
        ["Read through a first sub-token: " + ", ".join(f"{w!r} as {t!r}" for w, t in words.items()) + "."]
        if words
        else []
    )


def phase1(files: PhaseFiles, window: int = 25) -> str:
    """Notebook 03: dual-reward training, the held-out lens before and after, the guide's eight, the probe after."""
    m, resolved = read_result(files.phase1_metrics), read_result(files.phase1_config)
    s = training_summary(m, read_jsonl(files.phase1_log, required=()), window=window)
    eight = read_result(files.phase1_lens_eight)
    e, e0 = lens_summary(eight), lens_summary(read_result(files.phase1_lens_eight_before))
    r = expected_prob_range(eight)
    ops = s["after_per_operation"]
    layer = resolved["intermediate_loss_layer"]
    ps = probe_summary(read_result(files.phase1_classifier))
    n = nouns_for(_task(read_result(files.phase1_summary)))
    text = [
        f"**Dual-reward training.** On `{s['model']}`, {s['steps']} steps of LoRA (rank {resolved['lora_rank']} on "
        f"{resolved['lora_targets']}, {resolved['trainable_parameters']:,} trainable parameters) with the lens loss at "
        f"L{layer} (weight {resolved['intermediate_loss']['weight']}{classifier_layer_rule(layer, e['num_layers'], ', ')}) "
        f"took {s['train_seconds']:.0f} s of training steps. Over the first and last {s['window']} steps, the rolling mean "
        f"of the classifier loss went from {s['classifier_loss_start']:.3g} to {s['classifier_loss_end']:.3g} and that of "
        f"the language-model loss ({'answer tokens only' if resolved['mask_prompt'] else 'prompt and answer tokens: mask_prompt is false'}) "
        f"from {s['answer_loss_start']:.3g} to {s['answer_loss_end']:.3g}.",
        f"**Held-out prompts ({s['eval_prompts']}).** At L{s['layer']} the lens gives the correct {n.one} word a mean "
        f"probability of {fmt_prob(s['before_mean_prob'])} before training and **{fmt_prob(s['after_mean_prob'])}** after; "
        f"it is the top-1 token for {s['before_top1_correct']}/{s['top1_total']} prompts before and "
        f"**{s['after_top1_correct']}/{s['top1_total']}** after. Per {n.one} the mean ranges from "
        f"{fmt_prob(min(ops.values()))} ({s['after_weakest_operation']}) to {fmt_prob(max(ops.values()))} "
        f"({s['after_strongest_operation']})" + _within_guide(min(ops.values()), max(ops.values())),
        f"**{n.Eight}.** After training the lens puts the expected word at top-1 for "
        f'**{e["score_correct"]}/{e["score_total"]}** (the guide: "V/O only 8/8"; the base model here: '
        f"{e0['score_correct']}/{e0['score_total']}), with expected-word probabilities from {fmt_prob(r['min'])} "
        f"({r['min_prompt']!r}) to {fmt_prob(r['max'])} ({r['max_prompt']!r}); before training their mean was "
        f"{fmt_prob(e0['mean_expected_prob'])}. Over all {e['all_layers']} layers the mean expected-word probability "
        f"peaks at L{e['peak_layer']} ({fmt_prob(e['peak_mean_expected_prob'])}); at the last layer, "
        f"L{e['num_layers'] - 1}, it is {fmt_prob(eight['all_layers']['mean_expected_prob'][-1])}.",
        f"**Answers.** On the held-out prompts the answer loss went from {s['before_answer_loss']:.2f} to "
        f"{s['after_answer_loss']:.2f} nats per response token, and exact match from {s['before_exact_match']:.1%} to "
        f"{s['after_exact_match']:.1%}.",
        f"**Hidden-space classifier after training.** The linear probe of notebook 01 on the trained model reads the "
        f"{n.one} with accuracy **{ps['accuracy']:.0%}** at L{ps['layer']} (control task {ps['control_accuracy']:.0%}, "
        f"selectivity {ps['selectivity']:+.2f}); {ps['n_layers_at_100']} of {ps['layers_probed']} layers reach 100%.",
    ]
    return " ".join(text + _multi_token(e))


def phase2(files: PhaseFiles, window: int = 25) -> str:
    """Notebook 04: routing training — is the classifier unchanged, and what do the answers do?"""
    m, resolved = read_result(files.phase2_metrics), read_result(files.phase2_config)
    s = training_summary(m, read_jsonl(files.phase2_log, required=()), window=window)
    c = read_result(files.phase2_check)
    before, after = (
        GreedyEval.read(files.phase2_greedy_before).accuracy,
        GreedyEval.read(files.phase2_greedy_after).accuracy,
    )
    lc, mc = c["lens_change"], c["metrics_lens_change"]
    improved = after > before and s["after_answer_loss"] < s["before_answer_loss"]
    worse = after <= before and s["after_answer_loss"] >= s["before_answer_loss"]
    verdict = (
        " — the answers improved while the classifier stayed where it was"
        + (", though most are still wrong." if after < 0.5 else ".")
        if improved
        else " — phase 2 did not improve the answers here."
        if worse
        else " — a mixed result."
    )
    n = nouns_for(_task(read_result(files.phase2_summary)))
    return " ".join(
        [
            f"**Classifier {'unchanged' if c['unchanged'] else 'CHANGED'}.** Phase 2 froze {layer_ranges(c['frozen_layers'])} "
            f"and trained {resolved['trainable_parameters']:,} LoRA parameters for {s['steps']} steps on the answers only "
            f"({s['train_seconds']:.0f} s of training steps). At the classifier layer L{c['layer']}, over {lc['n_prompts']} "
            f"held-out prompts, the largest change of any target probability is **{lc['max_abs_diff_target_prob']:.1e}** "
            + (
                "(bit for bit identical)"
                if lc["max_abs_diff_target_prob"] == 0.0
                else f"(tolerance {c['tolerance']:.0e})"
            )
            + f" and {lc['same_top_token']}/{lc['n_prompts']} top tokens are the same; `metrics.json` agrees (largest change "
            f"{mc['max_abs_diff']:.1e}; mean correct-target probability {fmt_prob(s['before_mean_prob'])} before and "
            f"{fmt_prob(s['after_mean_prob'])} after, top-1 {s['before_top1_correct']}/{s['top1_total']} and "
            f"{s['after_top1_correct']}/{s['top1_total']}).",
            f"The saved LoRA weights of {layer_ranges(c['still_layers']) or 'no layer'} did not move at all"
            + (
                f"; those of {layer_ranges(c['moved_layers'])} moved by up to {c['max_weight_change']:.2g}."
                if c["moved_layers"]
                else "; no layer's weights moved."
            )
            + (
                f" Frozen layers whose weights moved anyway: {layer_ranges(c['frozen_layers_moved'])}."
                if c["frozen_layers_moved"]
                else ""
            ),
            f"**Answers.** The training answer loss (rolling mean over {s['window']} steps) went from "
            f"{s['answer_loss_start']:.3g} to {s['answer_loss_end']:.3g}. On the {s['eval_prompts']} held-out prompts the "
            f"answer loss went from {s['before_answer_loss']:.2f} to **{s['after_answer_loss']:.2f}** nats per response "
            f"token, teacher-forced exact match from {s['before_exact_match']:.1%} to **{s['after_exact_match']:.1%}**, and "
            f"{n.answers} {n.right} from {before:.1%} to **{after:.1%}**" + verdict,
        ]
    )


def verification(run: RunLayout) -> str:
    """Notebook 05: how many of the guide's claims hold, and what the others measured (``claims.json``)."""
    saved = run.read_claims()
    by_verdict = {v: [c for c in saved["claims"] if c["verdict"] == v] for v in VERDICTS}
    n_seeds = len(saved["seeds"] or [None])
    text = [
        f"**Verification** of `{run.root}` ({n_seeds} training seed{'s' if n_seeds > 1 else ''}): "
        f"{len(by_verdict['holds'])} claims hold, {len(by_verdict['fails'])} fail, {len(by_verdict['mixed'])} are "
        f"mixed and {len(by_verdict['not measured'])} were not measured."
    ]
    for verdict in ("fails", "mixed", "not measured"):
        text += [
            f"*{c['claim']}* ({verdict}): the guide says {c['guide']}, we measured {c['measured']}."
            for c in by_verdict[verdict]
        ]
    if by_verdict["holds"]:
        text.append("Holding: " + "; ".join(f"*{c['claim']}* ({c['measured']})" for c in by_verdict["holds"]) + ".")
    if (saved.get("run") or {}).get("quick"):
        text.append("**A `--quick` run: these verdicts test the machinery, not the guide's claims.**")
    return " ".join(text)
