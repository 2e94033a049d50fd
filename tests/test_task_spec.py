"""Tasks as data: task files validated with one-line errors, examples read line by line, splits by item, group and
subset, balanced sampling, the arithmetic task equal to the guide's generator, the bag-of-tokens baseline."""

from __future__ import annotations

import json
import warnings

import pytest
from conftest import build_tiny_tokenizer
from helpers import assert_one_line_error, cli

from workbench.core import guide
from workbench.core.arithmetic import generate_arithmetic, held_out
from workbench.core.errors import WorkbenchError
from workbench.core.surface import bag_of_tokens, token_counts
from workbench.tasks.data import (
    balanced,
    check_class_words,
    heldout_test_prompts,
    lens_prompts,
    load_examples,
    probe_set,
    split_examples,
    task_data,
)
from workbench.tasks.spec import builtin_names, load_task

TASK = """name: kinds
classes: {fruit: " fruit", tool: " tool"}
template: "{text}. It is a"
source: {jsonl: examples.jsonl}
split: {by: group, heldout: 0.25}
"""


def write_task(folder, examples: list[dict], text: str = TASK):
    (folder / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples), encoding="utf-8")
    (folder / "kinds.yaml").write_text(text, encoding="utf-8")
    return folder / "kinds.yaml"


def kinds(n_groups: int = 8, per_group: int = 3) -> list[dict]:
    return [
        {"text": f"{label} item {g}-{i}", "label": label, "group": f"doc-{g}"}
        for g in range(n_groups)
        for i in range(per_group)
        for label in ("fruit", "tool")
    ]


def test_every_builtin_task_loads_and_arithmetic_is_the_guides_generator():
    assert builtin_names() == ["arithmetic", "category", "code", "language", "sentiment"]
    for name in builtin_names():
        spec = load_task(name)
        assert spec.name == name and "{text}" in spec.template
    spec = load_task("arithmetic")
    data = task_data(spec, 50, 20, seed=7)
    records = generate_arithmetic(50, 7)
    assert data.train == records and data.heldout == held_out(records, 20) and data.ood == []
    assert probe_set(spec, data).prompts[:4] == ["7 * 8 = ", "12 * 5 = ", "3 * 9 = ", "6 * 7 = "]
    assert heldout_test_prompts(spec, data) == ["11 * 12 = ", "6 * 9 = ", "13 + 14 = ", "25 + 17 = "]
    assert lens_prompts(spec, data, 8) == (list(guide.EIGHT_PROMPTS), None)  # expected: read from the operator


def test_a_user_task_splits_by_group_and_fills_the_template(tmp_path):
    spec = load_task(write_task(tmp_path, kinds()))
    train, heldout, ood = split_examples(spec, load_examples(spec))
    assert ood == [] and len(train) + len(heldout) == 48
    assert {e["group"] for e in heldout} & {e["group"] for e in train} == set()
    assert len({e["group"] for e in heldout}) == 2  # round(0.25 * 8) whole groups
    data = task_data(spec, 10, 6, seed=1)
    assert [r["classification_target"] for r in data.train] == ["fruit", "tool"] * 5  # classes take turns
    r = data.train[0]
    assert r["prompt"] == r["prompt"].split(".")[0] + ". It is a" and r["response"] == " fruit"
    again = task_data(spec, 10, 6, seed=1)
    assert again.train == data.train and task_data(spec, 10, 6, seed=2).train != data.train
    assert task_data(spec, 10, 6, seed=2).heldout == data.heldout  # the split is the task's, not the seed's


def test_subsets_pick_training_held_out_and_out_of_distribution(tmp_path):
    rows = [
        {"text": f"{s} {label} {i}", "label": label, "subset": s}
        for s in ("easy", "hard", "tweets")
        for label in ("fruit", "tool")
        for i in range(4)
    ]
    text = TASK.replace(
        "split: {by: group, heldout: 0.25}",
        "split: {train_subsets: [easy], heldout_subsets: [hard], ood_subsets: [tweets]}",
    )
    spec = load_task(write_task(tmp_path, rows, text))
    train, heldout, ood = split_examples(spec, load_examples(spec))
    assert {e["subset"] for e in train} == {"easy"} and {e["subset"] for e in heldout} == {"hard"}
    assert {e["subset"] for e in ood} == {"tweets"} and len(ood) == 8


def test_balanced_takes_turns_and_stops_at_n():
    items = [{"label": "a"}] * 5 + [{"label": "b"}] * 2
    got = balanced(items, 6)
    assert [i["label"] for i in got] == ["a", "b", "a", "b", "a", "a"]
    assert len(balanced(items, 100)) == 7


@pytest.mark.parametrize(
    "text, needle",
    [
        (TASK + "templat: x\n", "unknown key 'templat'; did you mean 'template'?"),
        (TASK.replace("{text}. It is a", "It is a"), "no {text} slot"),
        (TASK.replace('tool: " tool"', 'tool: " fruit"'), "share a class word"),
        (TASK.replace(', tool: " tool"', ""), "at least 2 classes"),
        (TASK.replace("source: {jsonl: examples.jsonl}", "source: {builtin: nope}"), "source.builtin"),
        (TASK.replace("heldout: 0.25", "heldot: 0.25"), "unknown key 'split.heldot'; did you mean 'heldout'?"),
        (TASK + "answer: computed\n", "answer 'computed' is the arithmetic generator's"),
        (TASK + "nouns: {ones: kind}\n", "unknown key 'nouns.ones'; did you mean 'one'?"),
    ],
)
def test_a_bad_task_file_is_one_line_naming_the_key(tmp_path, capsys, text, needle):
    path = write_task(tmp_path, kinds(), text)
    with pytest.raises(WorkbenchError, match="kinds.yaml"):
        load_task(path)
    code, _, err = cli(capsys, "data", "generate", "--task", path, "-o", tmp_path / "out.jsonl")
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    "line, needle",
    [
        ('{"text": "a plum"}', "field 'label' is missing"),
        ('{"text": "a plum", "label": "vegetable"}', "label 'vegetable' is not a class"),
        ('{"text": "a plum", "label": ', "broken JSON"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_a_broken_examples_line_names_file_and_line(tmp_path, line, needle):
    path = write_task(tmp_path, kinds(2, 1))
    with (tmp_path / "examples.jsonl").open("a") as fh:
        fh.write(line + "\n")
    with pytest.raises(WorkbenchError, match=rf"examples.jsonl:5: .*{needle}"):
        load_examples(load_task(path))


def test_too_few_examples_for_the_split_and_unknown_tasks(tmp_path, capsys):
    rows = [e for e in kinds(8, 1) if e["label"] == "fruit"]
    rows += [{"text": f"t{i}", "label": "tool", "group": "doc-0"} for i in range(3)]  # one group: all in or all out
    spec = load_task(write_task(tmp_path, rows))
    with pytest.raises(WorkbenchError, match="class 'tool' has .* it needs at least 2 and 1"):
        split_examples(spec, load_examples(spec))
    code, _, err = cli(capsys, "data", "generate", "--task", "no-such-task", "-o", tmp_path / "x.jsonl")
    assert_one_line_error(code, err, "unknown task 'no-such-task'", "sentiment")
    code, _, err = cli(capsys, "data", "generate", "--task", tmp_path / "missing.yaml", "-o", tmp_path / "x.jsonl")
    assert_one_line_error(code, err, "does not exist")


def test_a_builtin_task_without_its_data_says_fetch(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "empty-cache"))
    code, _, err = cli(capsys, "run", "all", "--task", "sentiment", "--out", tmp_path / "run")
    assert_one_line_error(code, err, "workbench data fetch sentiment")
    assert not (tmp_path / "run").exists()  # nothing written
    code, out, _ = cli(capsys, "data", "fetch", "arithmetic")
    assert code == 0 and "nothing to fetch" in out


def test_class_words_of_several_tokens_warn_and_a_shared_first_token_is_an_error(tmp_path):
    tokenizer = build_tiny_tokenizer()  # its words are one token each; " a1" is two, the first unknown
    spec = load_task(write_task(tmp_path, kinds(), TASK.replace('" fruit"', '" add"').replace('" tool"', '" sub"')))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_class_words(spec, tokenizer) == {"fruit": [" add"], "tool": [" sub"]}
    spec = load_task(write_task(tmp_path, kinds(), TASK.replace('" fruit"', '" a1"').replace('" tool"', '" sub"')))
    with pytest.warns(UserWarning, match=r"class word ' a1' is 2 tokens .*first sub-token '<unk>'"):
        check_class_words(spec, tokenizer)
    spec = load_task(write_task(tmp_path, kinds(), TASK.replace('" fruit"', '" a1"').replace('" tool"', '" b2"')))
    with pytest.raises(WorkbenchError, match="both begin with token '<unk>'"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_class_words(spec, tokenizer)


def test_bag_of_tokens_reads_a_class_token_and_not_a_shuffled_one():
    prompts = [[5, 7, 1], [5, 8, 1], [6, 7, 2], [6, 8, 2]] * 5  # token 1 means "a", token 2 means "b"
    labels = ["a", "a", "b", "b"] * 5
    assert token_counts([[3, 3, 4]]).tolist() == [[2.0, 1.0]]
    assert bag_of_tokens(prompts, labels)["accuracy"] == 1.0
    no_signal = [[5, 7]] * 20  # every prompt the same: the classes cannot be told apart
    assert bag_of_tokens(no_signal, labels)["accuracy"] <= 0.5


def test_a_tasks_nouns_name_its_things_in_the_claims(tmp_path):
    """A task file's nouns are what verification writes (arithmetic's own file names an operation and the guide's
    eight; a task without nouns says class and eight held-out prompts)."""
    from test_verify import GOOD, make_run

    from workbench.experiment.claims import collect, judge

    path = write_task(tmp_path, kinds(), TASK + "nouns: {one: kind, many: kinds, eight: the eight tool prompts}\n")
    run = make_run(tmp_path / "run", {42: GOOD})
    (run / "run.json").write_text(json.dumps({"settings": {"task": "kinds", "task_file": str(path)}}))
    claims = {c["id"]: c for c in judge(collect(run))}
    assert claims["base_probe_all_layers"]["claim"] == "Base model: a linear probe reads the kind at every layer"
    assert claims["phase1_eight"]["claim"] == "V/O only: the eight tool prompts read correctly at top-1"
    assert "correct-kind probability" in claims["phase1_lens"]["measured"]
    assert "class-word answers correct" in claims["phase2_answers"]["measured"]  # not given: the default
    (run / "run.json").write_text(json.dumps({"settings": {}}))  # the guide's arithmetic
    claims = {c["id"]: c for c in judge(collect(run))}
    assert claims["phase1_eight"]["claim"] == "V/O only: the guide's eight prompts read correctly at top-1"
    assert "greedy answers correct" in claims["phase2_answers"]["measured"]
