"""The guide's comparison tables, measured: training methods and LoRA targets under one step budget and one evaluation.

Methods (the guide's "Training Requirements" table, plus Q/K for its "V/O vs Q/K" table):

  none            no training
  lora_standard   LoRA on q,k,v,o, next-token loss on the whole sequence (prompt included)
  sft_answers     LoRA on v,o, loss on the answer tokens only (the prompt masked)
  grpo            RL with verifiable rewards: GRPO on "Calculate: a op b = ", the guide's first-integer reward
  dual_vo         dual reward (lens loss at the classifier layer + answer loss), LoRA on v,o
  dual_qk         the same with LoRA on q,k

Every method is measured the same way on the same held-out "a op b = " prompts: the lens at the classifier layer
(mean correct-operation probability, top-1 count), the top-1 score on the guide's eight prompts, teacher-forced exact
match and greedy answer accuracy. With a task (`run compare --task`), its held-out prompts, class words, eight
held-out prompts and answer rule; GRPO then rewards the class word (``rewards.class_word_reward``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.data import read_jsonl, write_jsonl
from ..core.errors import WorkbenchError
from ..core.guide import DUAL_REWARD_WEIGHT, METHOD_FIGURES, TARGET_FIGURES
from ..core.models import load_model
from ..core.readouts import lens_readout
from ..core.results import cached_result
from ..core.stats import over_seeds, spread
from ..tasks.data import TaskData, lens_prompts
from ..tasks.source import source_of
from ..tasks.spec import TaskSpec, load_task
from ..training.config import build_config
from ..training.evaluation import heldout_measurement
from ..training.grpo import load_grpo_config, train_grpo
from ..training.loop import train
from ..training.records import Measurement

METHODS = ("none", "lora_standard", "sft_answers", "grpo", "dual_vo", "dual_qk")
LABELS = {
    "none": "No training",
    "lora_standard": "Standard LoRA (q,k,v,o; whole sequence)",
    "sft_answers": "SFT on answers (v,o; prompt masked)",
    "grpo": "RL with verifiable rewards (GRPO)",
    "dual_vo": "Dual-reward V/O",
    "dual_qk": "Dual-reward Q/K",
}
SFT_SETTINGS = {
    "lora_standard": {"lora_targets": "q_proj,k_proj,v_proj,o_proj", "mask_prompt": False},
    "sft_answers": {"lora_targets": "v_proj,o_proj", "mask_prompt": True},
    "dual_vo": {"lora_targets": "v_proj,o_proj", "intermediate_loss": {"enabled": True}},
    "dual_qk": {"lora_targets": "q_proj,k_proj", "intermediate_loss": {"enabled": True}},
}


def measure(
    spec: str,
    heldout: list[dict],
    adapter: Path | None = None,
    device: str | None = None,
    known: dict | None = None,
    task: TaskSpec | None = None,
) -> dict:
    """The one evaluation every method gets: ``evaluation.heldout_measurement`` (reusing ``known``, the trainer's own
    after-training numbers) plus eight prompts (the guide's; a task's: eight held out, classes taking turns). The row
    keeps the full measurement under "measurement"."""
    task = task or load_task()
    lm = load_model(spec, device=device, adapter=adapter)
    full = heldout_measurement(lm, heldout, known, classes=task.classes, answer=task.answer)
    prompts, expected = lens_prompts(task, TaskData(task, [], heldout, []), 8)
    with torch.inference_mode():
        eight = lens_readout(lm, prompts, list(task.classes.values()), expected=expected)
    m = Measurement.from_dict(full)
    return {
        "layer": lm.classifier_layer,
        "heldout_correct_prob": m.lens.mean_correct_target_prob,
        "heldout_top1": m.lens.top1_score.correct,
        "heldout_prompts": m.lens.prompts,
        "eight_top1": eight["score"]["correct"],
        "eight_total": eight["score"]["total"],
        "eight_mean_prob": eight["mean_expected_prob"],
        "exact_match": m.answer_exact_match,
        "answer_loss": m.answer_loss,
        "greedy_accuracy": m.greedy_accuracy,
        "measurement": full,
    }


def rl_data(records: list[dict], task: TaskSpec) -> list[dict]:
    """GRPO's prompts, as the task's source makes them: the guide's ("Calculate: a op b = ", + - * only) for
    arithmetic, else the task's own prompts with their class words as answers."""
    return source_of(task).grpo_prompts(records)


def run_method(
    method: str,
    spec: str,
    out: Path,
    train_data: Path,
    heldout_data: Path,
    seed: int | None,
    steps: int,
    rank: int = 16,
    weight: float = DUAL_REWARD_WEIGHT,
    learning_rate: float = 1e-3,
    grpo_learning_rate: float = 1e-4,
    grpo_prompts_per_step: int = 2,
    grpo_generations: int = 4,
    grpo_reward: str | None = None,
    base: dict | None = None,
    device: str | None = None,
    task: TaskSpec | None = None,
) -> dict:
    """Train ``method`` for ``steps`` steps into ``out`` and measure it (on ``task``'s terms; None: arithmetic). The SFT methods see one example per step (the
    seed's phase 1); GRPO sees ``grpo_prompts_per_step`` prompts x ``grpo_generations`` sampled completions per step at
    TRL's scale of learning rate (1e-4), on the + - * records of the same training data — its own budget differs, and
    the tables say so. ``base``: the untrained model's "measurement" (method "none"), reused as GRPO's starting point.
    "none" trains nothing and does not depend on the seed."""
    if method not in METHODS:
        raise WorkbenchError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
    task = task or load_task()
    heldout = read_jsonl(heldout_data)
    if method == "none":
        return {"method": method, "seed": None, "steps": 0, **measure(spec, heldout, device=device, task=task)}
    if method == "grpo":  # the same training records as RL prompts (the guide's: "Calculate: ...", + - * only)
        prompts = write_jsonl(out.parent / "rl_prompts.jsonl", rl_data(read_jsonl(train_data), task))
        cfg = load_grpo_config(
            None,
            {
                "model": spec,
                "output": str(out),
                "max_steps": steps,
                "seed": seed,
                "lora_rank": rank,
                "learning_rate": grpo_learning_rate,
                "data": str(prompts),
                "eval_data": str(heldout_data),
                "eval_samples": len(heldout),
                "prompts_per_step": grpo_prompts_per_step,
                "num_generations": grpo_generations,
                **({"reward": grpo_reward} if grpo_reward else {}),
                **source_of(task).grpo_config(grpo_reward),  # arithmetic: the config's defaults; else the class word
            },
        )
        metrics = train_grpo(cfg, before=base)
    else:
        settings = SFT_SETTINGS[method]
        loss = (
            {**settings["intermediate_loss"], "weight": weight, "targets": task.classes}
            if "intermediate_loss" in settings
            else None
        )
        cfg = build_config(
            {
                "model": spec,
                "data": str(train_data),
                "eval_data": str(heldout_data),
                "output": str(out),
                "max_steps": steps,
                "batch_size": 1,
                "learning_rate": learning_rate,
                "seed": seed,
                "lora_rank": rank,
                "eval_samples": len(heldout),
                **{k: v for k, v in settings.items() if k != "intermediate_loss"},
                "intermediate_loss": loss or {"targets": task.classes},  # the lens the evaluation reads
            },
            source=f"method {method}",
        )
        metrics = train(cfg, device=device, progress=False)
    return {
        "method": method,
        "seed": seed,
        "steps": steps,
        **measure(spec, heldout, adapter=out, device=device, known=metrics["after"], task=task),
    }


def run_methods(
    spec: str,
    root: Path,
    train_data: Path,
    heldout_data: Path,
    seeds: list[int],
    steps: int,
    methods: list[str],
    settings: dict,
    rank: int = 16,
    weight: float = DUAL_REWARD_WEIGHT,
    grpo_prompts_per_step: int = 2,
    grpo_generations: int = 4,
    task: TaskSpec | None = None,
) -> list[dict]:
    """ "none" once into ``root/none/`` (the untrained model does not depend on the seed), every other method for every
    seed into ``root/<method>/seed-<s>/``. A saved ``result.json`` made with the same ``settings`` and the same values of
    what the method uses (model, steps, rank, the dual weight, GRPO's batch) is read back instead of trained again, so a
    stopped run resumes."""
    grpo = {"grpo_prompts_per_step": grpo_prompts_per_step, "grpo_generations": grpo_generations}

    def cached(method: str, seed: int | None, base: dict | None) -> dict:
        folder = Path(root) / method / ("" if seed is None else f"seed-{seed}")
        params = {"model": spec, **settings}
        if method != "none":
            params.update(
                steps=steps,
                lora_rank=rank,
                **({"weight": weight} if method.startswith("dual") else {}),
                **(grpo if method == "grpo" else {}),
            )
        make = lambda: run_method(method, spec, folder / "adapter", train_data, heldout_data, seed, steps, rank=rank,
                                  weight=weight, base=base, task=task, **grpo)  # fmt: skip
        return cached_result(folder / "result.json", "compare.method", params, make)

    rows = [cached("none", None, None)] if "none" in methods else []
    base = rows[0]["measurement"] if rows else None
    rows += [cached(method, seed, base) for seed in seeds for method in methods if method != "none"]
    return rows


def summarize(rows: list[dict]) -> dict:
    """Mean and spread over seeds per method: {method: {metric: {"mean", "std", "min", "max", "values"}}}."""
    out: dict = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        out[method] = {}
        for key in ("heldout_correct_prob", "heldout_top1", "eight_top1", "exact_match", "greedy_accuracy"):
            out[method][key] = over_seeds([r[key] for r in mine])
        out[method]["seeds"] = [r["seed"] for r in mine]
        out[method]["eight_total"] = mine[0]["eight_total"]
    return out


def _percent(v: float) -> str:
    return f"{100 * v:.3g}%"


def _points(v: float) -> str:
    return f"{100 * v:.1f}%"


def _count(v: float) -> str:
    return f"{v:.3g}"


def methods_table(summary: dict) -> str:
    lines = [
        "| method | the guide (vocab-aligned) | held-out p(correct op) at the classifier layer | guide's eight, top-1 "
        "| exact match | greedy correct |",
        "|---|---|---|---|---|---|",
    ]
    for method in [m for m in METHODS if m in summary and m != "dual_qk"]:
        s = summary[method]
        eight = spread(s["eight_top1"], _count, f"/{s['eight_total']}")
        lines.append(
            f"| {LABELS[method]} | {METHOD_FIGURES[method]} | {spread(s['heldout_correct_prob'], _percent)} "
            f"| {eight} | {spread(s['exact_match'], _points)} "
            f"| {spread(s['greedy_accuracy'], _points)} |"
        )
    return "\n".join(lines)


def targets_table(summary: dict) -> str:
    lines = [
        "| LoRA targets | the guide | guide's eight, top-1 | held-out p(correct op) | exact match |",
        "|---|---|---|---|---|",
    ]
    for method, label in (("dual_vo", "V/O only"), ("dual_qk", "Q/K only")):
        if method in summary:
            s = summary[method]
            eight = spread(s["eight_top1"], _count, f"/{s['eight_total']}")
            lines.append(
                f"| {label} | {TARGET_FIGURES[method]} | {eight} "
                f"| {spread(s['heldout_correct_prob'], _percent)} | {spread(s['exact_match'], _points)} |"
            )
    return "\n".join(lines)


def findings(doc: dict) -> str:
    """What the tables say, in words, built from ``doc`` (``comparisons.json``) alone."""
    s = doc["summary"]
    text = []
    if "dual_vo" in s and "dual_qk" in s:
        vo, qk = s["dual_vo"], s["dual_qk"]
        text.append(
            f"**V/O vs Q/K.** With the same {doc['steps']} dual-reward steps, V/O reads "
            f"{vo['eight_top1']['mean']:.3g}/8 of the guide's prompts at top-1 and Q/K {qk['eight_top1']['mean']:.3g}/8 "
            f"(the guide: 8/8 and 0/8); held-out correct-operation probability "
            f"{100 * vo['heldout_correct_prob']['mean']:.3g}% vs {100 * qk['heldout_correct_prob']['mean']:.3g}%."
        )
    others = [m for m in ("none", "lora_standard", "sft_answers", "grpo") if m in s]
    if others:
        text.append(
            "**Methods.** Held-out correct-operation probability: "
            + "; ".join(
                f"{LABELS[m]} {100 * s[m]['heldout_correct_prob']['mean']:.3g}% (the guide: {METHOD_FIGURES[m]})"
                for m in others
            )
            + "."
        )
    text.append(f"{len(doc['seeds'])} seed(s), {doc['eval_samples']} held-out prompts.")
    return " ".join(text)


FIGURES = (
    ("Training methods: held-out lens probability", "comparisons_methods"),
    ("Top-1 on the guide's eight prompts", "comparisons_eight"),
)


def figure_lines(out: Path) -> list[str]:
    """The comparison's figures whose PNG is in ``out``, as markdown images."""
    return [f"![{title}]({name}.png)" for title, name in FIGURES if (Path(out) / f"{name}.png").is_file()]


def markdown(doc: dict, figures: list[str]) -> str:
    """``comparisons.md``: both tables, the findings and the ``figures`` lines."""
    n = len(doc["seeds"])
    grpo = doc.get("grpo", {})
    lines = [
        f"## The guide's comparison tables ({n} seed{'s' if n > 1 else ''}, {doc['steps']} steps per method, "
        f"{doc['eval_samples']} held-out prompts)",
        "",
        "Mean ± sample standard deviation over the training seeds. No training is measured once: the untrained "
        "model does not depend on the seed. The SFT-style methods see one example per step at learning rate 1e-3; "
        f"GRPO sees {grpo.get('prompts_per_step', '?')} prompts x {grpo.get('generations', '?')} sampled "
        "completions per step at 1e-4.",
        "",
        "### Training requirements",
        "",
        doc["tables"]["methods"],
        "",
        "### V/O vs Q/K",
        "",
        doc["tables"]["targets"],
        "",
        findings(doc),
        "",
    ]
    for line in figures:
        lines += [line, ""]
    return "\n".join(lines)
