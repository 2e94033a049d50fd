"""`--task` on the commands, on the tiny random Llama: the probe, the lens and training read a user's task file, and
the class-word answer equals the argmax over the HF model's own logits."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import build_tiny_tokenizer
from helpers import cli

from workbench.tasks.spec import load_task
from workbench.training.evaluation import class_word_eval
from workbench.training.rewards import class_word_reward

TASK = """name: signs
classes: {plus: " add", minus: " sub"}
template: "{text} ="
source: {jsonl: examples.jsonl}
split: {by: item, heldout: 0.25}
probe_per_class: 6
"""


@pytest.fixture()
def task_file(tmp_path):
    rows = [
        {"text": f"{a} {op} {b}", "label": "plus" if op == "+" else "minus"}
        for a in range(1, 7)
        for b in range(1, 4)
        for op in "+-"
    ]
    (tmp_path / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "signs.yaml").write_text(TASK, encoding="utf-8")
    return tmp_path / "signs.yaml"


def test_the_class_word_answer_is_the_argmax_of_the_models_own_logits(tiny_lm):
    classes = {"plus": " add", "minus": " sub"}
    records = [
        {"prompt": p, "response": classes[c], "classification_target": c}
        for p, c in (("1 + 2 =", "plus"), ("3 - 1 =", "minus"), ("2 + 2 =", "plus"), ("5 - 4 =", "minus"))
    ]
    result = class_word_eval(tiny_lm, records, classes)
    ids = {w: tiny_lm.tokenizer(w, add_special_tokens=False).input_ids[0] for w in classes.values()}
    for r, row in zip(records, result["rows"]):
        with torch.no_grad():
            logits = tiny_lm.hf_model(torch.tensor([tiny_lm.token_ids(r["prompt"])])).logits[0, -1]
        best = max(ids, key=lambda w: logits[ids[w]])
        assert row["answer"] == best and row["correct"] == (best == r["response"])
        assert row["greedy"] == tiny_lm.tokenizer.decode([int(logits.argmax())])
    assert result["accuracy"] == sum(r["correct"] for r in result["rows"]) / 4


def test_classifier_and_lens_read_the_task(task_file, tiny_dir, tmp_path, capsys):
    out = tmp_path / "probe.json"
    code, stdout, err = cli(capsys, "introspect", "classifier", "--task", task_file, "-m", tiny_dir, "-o", out)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert set(doc["prompts"]) == {"plus", "minus"} and all(len(v) == 6 for v in doc["prompts"].values())
    assert all(p.endswith(" =") for v in doc["prompts"].values() for p in v)
    assert doc["bag_of_tokens"]["accuracy"] == 1.0  # the operator token names the class: the surface alone reads it
    assert "bag-of-tokens baseline" in stdout and doc["settings"]["task"] == str(task_file)

    out = tmp_path / "lens.json"
    code, _, err = cli(capsys, "introspect", "logit-lens", "--task", task_file, "-m", tiny_dir, "-o", out)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert list(doc["target_token_ids"]) == [" add", " sub"]
    for row in doc["results"]:
        assert row["expected"] == (" add" if " + " in row["prompt"] else " sub")
    assert doc["score"]["total"] == 4  # two held-out prompts per class


def test_train_sft_on_a_task_writes_its_records_and_targets_its_class_words(task_file, tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "sft", "--task", task_file, "-m", tiny_dir, "-o", out, "--max-steps", "2", "--no-progress"]
    code, _, err = cli(capsys, *args, "--intermediate-layer", "auto", "--eval-samples", "4")
    assert code == 0, err
    train = [json.loads(x) for x in (out / "data" / "train.jsonl").read_text().splitlines()]
    spec = load_task(task_file)
    assert train and all(r["prompt"].endswith(" =") and r["response"] == spec.classes[r["label"]] for r in train)
    config = json.loads((out / "config.json").read_text())
    ids = {c: build_tiny_tokenizer()(w, add_special_tokens=False).input_ids[0] for c, w in spec.classes.items()}
    assert config["target_token_ids"] == ids and config["intermediate_loss"]["targets"] == spec.classes
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["after"]["lens"]["per_operation_prob"]) == {"plus", "minus"}
    assert metrics["eval_prompts"] == 4


def test_class_word_reward_wants_the_whole_word():
    rewards = class_word_reward(
        [" positive.", " positively", "negative", [{"content": " positive"}]], [" positive"] * 4
    )
    assert rewards == [1.0, 0.0, 0.0, 1.0]


@pytest.mark.slow
def test_the_comparison_on_a_task_trains_and_measures_its_class_words(task_file, tiny_dir, tmp_path):
    """`run compare --task`: the dual reward targets the class words, GRPO's prompts are the task's own with the class
    word as the answer (and the class-word reward), and every method is measured on the task's lens and answers."""
    pytest.importorskip("trl")
    from workbench.core.data import write_jsonl
    from workbench.experiment.compare import run_method
    from workbench.tasks.data import task_data

    spec = load_task(task_file)
    data = task_data(spec, 16, 8)
    write_jsonl(tmp_path / "train.jsonl", data.train)
    write_jsonl(tmp_path / "heldout.jsonl", data.heldout)
    files = (tmp_path / "train.jsonl", tmp_path / "heldout.jsonl")
    for method in ("dual_vo", "grpo"):
        row = run_method(method, str(tiny_dir), tmp_path / method, *files, seed=0, steps=2, rank=4, task=spec)
        lens = row["measurement"]["lens"]
        assert set(lens["per_operation_prob"]) == {"plus", "minus"} and set(lens["target_tokens"]) == {" add", " sub"}
        assert row["eight_total"] == 8 and row["heldout_prompts"] == len(data.heldout)
        config = json.loads((tmp_path / method / "config.json").read_text())
        if method == "grpo":
            prompts = [json.loads(x) for x in (tmp_path / method / "grpo_prompts.jsonl").read_text().splitlines()]
            assert [p["prompt"] for p in prompts] == [r["prompt"] for r in data.train]
            assert {p["answer"] for p in prompts} == {" add", " sub"}
            assert config["reward"].endswith(":class_word_reward") and config["lens_targets"] == spec.classes
        else:
            assert config["intermediate_loss"]["targets"] == spec.classes
