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


def test_a_task_asks_its_source_the_arithmetic_generator_or_its_examples(tmp_path):
    """One interface for where records come from: ``source_of`` picks the generator for arithmetic and examples for
    every other task, each with every member of ``TaskSource``; the answer rule is the source's."""
    from workbench.tasks.source import TaskSource, source_of
    from workbench.tasks.sources.arithmetic import ArithmeticSource
    from workbench.tasks.sources.examples import ExamplesSource

    members = [m for m in vars(TaskSource) if not m.startswith("_")] + list(TaskSource.__annotations__)
    for cls in (ArithmeticSource, ExamplesSource):
        assert all(callable(getattr(cls, m)) for m in vars(TaskSource) if not m.startswith("_")), cls
        assert all(hasattr(cls, m) for m in members), cls
    arithmetic, kinds_spec = load_task("arithmetic"), load_task(write_task(tmp_path, kinds()))
    assert [type(source_of(load_task(n))) for n in builtin_names()] == [ArithmeticSource] + [ExamplesSource] * 4
    assert (arithmetic.answer, kinds_spec.answer) == ("computed", "class_word")  # filled in from the source
    assert source_of(arithmetic).expected_class("7 * 8 = ") == "multiply"
    assert source_of(kinds_spec).expected_class("7 * 8 = ") is None  # an example's class is its label
    with pytest.raises(WorkbenchError, match="no example file"):
        load_examples(arithmetic)
    text = "name: a\nclasses: {add: add, multiply: multiply}\nsource: {builtin: arithmetic}\nanswer: class_word\n"
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(WorkbenchError, match="answer 'class_word' is the examples source's: use answer: computed"):
        load_task(tmp_path / "a.yaml")


def test_patching_pairs_and_held_out_records_come_from_the_source(tmp_path):
    from workbench.causal.patching import arithmetic_pairs, pairs_from_records, task_heldout

    arithmetic, spec = load_task("arithmetic"), load_task(write_task(tmp_path, kinds()))
    assert task_heldout(arithmetic, 300) == held_out(generate_arithmetic(), 300)  # from seed 42's 1000
    heldout = task_heldout(spec, 5)
    assert heldout == task_data(spec, 1, 200).heldout  # the split's, whatever the training size
    records = held_out(generate_arithmetic(), 200)
    assert pairs_from_records(arithmetic, records, "multiply", "add", 4) == arithmetic_pairs(
        records, "multiply", "add", 4
    )
    pairs = pairs_from_records(spec, heldout, "tool", "fruit", 3)
    fruit = [r["prompt"] for r in heldout if r["label"] == "fruit"]
    assert [p.target for p in pairs] == fruit[:3] and {p.source_class for p in pairs} == {"tool"}
    assert {(p.source_answer, p.target_answer) for p in pairs} == {(" tool", " fruit")}
    with pytest.raises(WorkbenchError, match="is not one of task 'kinds'"):
        pairs_from_records(spec, heldout, "add", "fruit", 3)


def test_grpo_prompts_and_settings_come_from_the_source(tmp_path):
    from workbench.core.arithmetic import rl_prompts
    from workbench.experiment.compare import rl_data
    from workbench.tasks.source import source_of

    arithmetic, spec = load_task("arithmetic"), load_task(write_task(tmp_path, kinds()))
    records = generate_arithmetic(30, 1)
    assert rl_data(records, arithmetic) == rl_prompts(records)
    assert {r["operation"] for r in rl_data(records, arithmetic)} <= {"multiply", "add", "subtract"}
    train = task_data(spec, 4, 2).train
    assert rl_data(train, spec) == [{"prompt": r["prompt"], "answer": r["response"]} for r in train]
    assert source_of(arithmetic).grpo_config(None) == {}  # the GRPO config's defaults are the guide's
    assert source_of(spec).grpo_config(None) == {
        "lens_targets": spec.classes,
        "answer": "class_word",
        "reward": "workbench.training.rewards:class_word_reward",
    }
    assert source_of(spec).grpo_config("m:f")["reward"] == "m:f"


def test_probe_test_rows_read_the_expected_class_from_the_results_task(tmp_path):
    from workbench.experiment.summary import probe_test_rows

    path = write_task(tmp_path, kinds())
    result = {
        "classes": ["fruit", "tool"],
        "classifier_layer_default": 0,
        "test_predictions": [
            {"prompt": p, "layer": 0, "predicted": "fruit", "probabilities": {"fruit": 0.6, "tool": 0.4}}
            for p in ("a plum. It is a", "7 * 8 = ")
        ],
    }
    for settings in ({"task": str(path)}, {"task": str(tmp_path / "gone.yaml")}):
        assert [r["expected"] for r in probe_test_rows({**result, "settings": settings})] == [None, None]
    result["classes"] = ["multiply", "add"]
    for t in result["test_predictions"]:
        t.update(predicted="add", probabilities={"multiply": 0.4, "add": 0.6})
    assert [r["expected"] for r in probe_test_rows(result)] == [None, "multiply"]  # no task: the guide's arithmetic


def test_a_source_describes_how_its_records_are_made(tmp_path):
    from workbench.tasks.source import source_of

    spec = load_task(write_task(tmp_path, kinds()))
    text = source_of(spec).describe(spec)
    assert '`" fruit"`' in text and '`" tool"`' in text and "`examples.jsonl`" in text
    assert "by group: 25% of the groups are held out" in text and "balanced across classes" in text
    guide_text = source_of(load_task("arithmetic")).describe(load_task("arithmetic"))
    assert "[1, 50]" in guide_text and "[10, 100]" in guide_text and "[1, 12]" in guide_text
