"""Helpers notebooks 03 and 04 call: greedy decoding and adapter comparison (workbench.evaluation), training-run
summaries and tables (workbench.summary), and the training figures (workbench.plots). Only the tiny random Llama."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from workbench.core.arithmetic import first_integer, integer_complete
from workbench.core.errors import WorkbenchError
from workbench.core.generation import greedy_answers
from workbench.experiment import summary
from workbench.training.evaluation import adapter_layer_changes, greedy_eval
from workbench.ui import plots

PROMPTS = ["7 * 8 = ", "12 * 5 = ", "1 + 2 = ", "48 / 6 = "]  # two token lengths, so two decoding groups


# ---------------------------------------------------------------- greedy decoding


def test_greedy_answers_equal_hf_generate(tiny_lm, tiny_dir):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation="eager").eval()
    got = greedy_answers(tiny_lm, PROMPTS, max_new_tokens=5)
    for prompt, text in zip(PROMPTS, got):
        ids = torch.tensor([tiny_lm.token_ids(prompt)])
        gen = hf.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=5,
            do_sample=False,
            eos_token_id=tiny_lm.tokenizer.eos_token_id,
            pad_token_id=tiny_lm.tokenizer.pad_token_id,
        )
        new = [t for t in gen[0, ids.shape[1] :].tolist() if t != tiny_lm.tokenizer.eos_token_id]
        assert text == tiny_lm.tokenizer.decode(new, skip_special_tokens=True)
    assert greedy_answers(tiny_lm, PROMPTS[::-1], max_new_tokens=5) == got[::-1]  # order-independent batching


def test_greedy_answers_stop_at_eos(tiny_lm):
    full = greedy_answers(tiny_lm, ["7 * 8 = "], max_new_tokens=3)[0]
    ids = tiny_lm.token_ids("7 * 8 = ")
    with torch.inference_mode():
        first = int(tiny_lm.bridge(torch.tensor([ids]))[0, -1].argmax())
        second = int(tiny_lm.bridge(torch.tensor([ids + [first]]))[0, -1].argmax())
    assert greedy_answers(tiny_lm, ["7 * 8 = "], max_new_tokens=3, eos_token_id=first) == [""]
    if second != first:
        assert greedy_answers(tiny_lm, ["7 * 8 = "], max_new_tokens=3, eos_token_id=second) == [
            tiny_lm.tokenizer.decode([first])
        ]
    assert full.startswith(tiny_lm.tokenizer.decode([first]))


class ScriptedBridge:
    """Stands in for the bridge: after each prompt it 'predicts' a scripted continuation, one token per call, and
    counts the rows it was asked for (a finished prompt must leave its batch)."""

    def __init__(self, lm, scripts: dict[str, list[int]]):
        self.by_ids = {tuple(lm.token_ids(p)): tokens for p, tokens in scripts.items()}
        self.rows_seen = 0
        self.vocab = lm.tokenizer.vocab_size

    def __call__(self, seq):
        logits = torch.zeros(*seq.shape, self.vocab)
        for row, ids in enumerate(seq.tolist()):
            prompt = next(p for p in self.by_ids if tuple(ids[: len(p)]) == p)
            logits[row, -1, self.by_ids[prompt][len(ids) - len(prompt)]] = 1.0
        self.rows_seen += seq.shape[0]
        return logits


def test_greedy_until_integer_stops_once_the_answer_is_fixed(tiny_lm):
    assert integer_complete("56.") and integer_complete("-3 ") and not integer_complete("56")
    assert not integer_complete("-") and not integer_complete("") and not integer_complete("the ")
    tok = tiny_lm.tokenizer
    piece = {c: tok.convert_tokens_to_ids(c) for c in "0123456789.-x"}
    eos = tok.eos_token_id
    scripts = {
        "7 * 8 = ": [piece[c] for c in "56.xxxxx"],
        "1 + 2 = ": [piece[c] for c in "x3xxxxxx"],
        "9 - 12 = ": [piece["-"], piece["3"], eos, *[piece["x"]] * 5],
        "12 * 5 = ": [piece[c] for c in "6000000x"],
    }
    prompts = list(scripts)
    fake = dataclasses.replace(tiny_lm, bridge=ScriptedBridge(tiny_lm, scripts))
    full = greedy_answers(fake, prompts, max_new_tokens=8, use_cache=False)  # the script is cache-free
    assert full == ["56.xxxxx", "x3xxxxxx", "-3", "6000000x"]
    steps_full = fake.bridge.rows_seen
    fake.bridge.rows_seen = 0
    short = greedy_answers(fake, prompts, max_new_tokens=8, until_integer=True, use_cache=False)
    assert short == ["56.", "x3x", "-3", "6000000x"]
    assert [first_integer(t) for t in short] == [first_integer(t) for t in full]
    assert fake.bridge.rows_seen == 3 + 3 + 3 + 8 and steps_full == 8 + 8 + 3 + 8  # finished rows leave the batch


def test_first_integer_and_greedy_eval(tiny_lm, monkeypatch):
    assert first_integer("56\n7") == 56 and first_integer(" -3 apples") == -3 and first_integer("none") is None
    import workbench.training.evaluation as ev

    monkeypatch.setattr(ev, "greedy_answers", lambda lm, prompts, n, until_integer: ["56", " 60 or so", "x"])
    records = [
        {"prompt": "7 * 8 = ", "response": "56", "operation": "multiply"},
        {"prompt": "12 * 5 = ", "response": "60", "operation": "multiply"},
        {"prompt": "1 + 2 = ", "response": "3", "operation": "add"},
    ]
    result = greedy_eval(tiny_lm, records, max_new_tokens=4)
    assert [r["correct"] for r in result["rows"]] == [True, True, False]
    assert [r["answer"] for r in result["rows"]] == [56, 60, None]
    assert result["accuracy"] == pytest.approx(2 / 3) and result["max_new_tokens"] == 4


# ---------------------------------------------------------------- adapter comparison


def test_adapter_layer_changes(tmp_path):
    def adapter(folder, shift):
        folder.mkdir()
        tensors = {
            f"base_model.model.model.layers.{i}.self_attn.v_proj.lora_A.weight": torch.full(
                (2, 3), float(i >= 1) * shift + i
            )
            for i in range(3)
        }
        save_file(tensors, folder / "adapter_model.safetensors")
        return folder

    a, b = adapter(tmp_path / "a", 0.0), adapter(tmp_path / "b", 0.5)
    rows = adapter_layer_changes(a, b)
    assert [r["layer"] for r in rows] == [0, 1, 2] and [r["tensors"] for r in rows] == [1, 1, 1]
    assert [r["max_abs_change"] for r in rows] == [0.0, 0.5, 0.5]
    (tmp_path / "c").mkdir()
    save_file({"other": torch.zeros(1)}, tmp_path / "c" / "adapter_model.safetensors")
    with pytest.raises(WorkbenchError, match="different tensors"):
        adapter_layer_changes(a, tmp_path / "c")
    fig = plots.adapter_changes_figure(rows, frozen=[0])
    assert list(fig.data[0].marker.color) == ["#7f7f7f", "#1f77b4", "#1f77b4"]


# ---------------------------------------------------------------- summaries of training runs


def test_rolling_mean():
    assert summary.rolling_mean([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert summary.rolling_mean([2.0, 4.0], 10) == [2.0, 3.0]
    assert summary.rolling_mean([], 3) == []
    with pytest.raises(WorkbenchError, match="at least 1"):
        summary.rolling_mean([1.0], 0)


def _side(mean, correct, per_op, loss, exact):
    return {
        "lens": {
            "layer": 2,
            "prompts": 4,
            "mean_correct_target_prob": mean,
            "top1_score": {"correct": correct, "total": 4, "fraction": correct / 4},
            "per_operation_prob": per_op,
        },
        "answer_loss": loss,
        "answer_exact_match": exact,
        "prompts": 4,
    }


def _metrics():
    return {
        "kind": "train.sft",
        "model": "m",
        "layer": 2,
        "steps": 4,
        "eval_prompts": 4,
        "config": {},
        "before": _side(1e-9, 0, {"multiply": 1e-9, "add": 2e-9}, 3.0, 0.0),
        "after": _side(0.5, 3, {"add": 0.2, "multiply": 0.8}, 1.0, 0.25),
    }  # held-out order; shown in the guide's


LOG = [
    {"step": i + 1, "loss": 10.0 - i, "answer_loss": 3.0, "classifier_loss": 20.0 - 2 * i, "seconds": 0.5}
    for i in range(4)
]


def test_training_summary():
    s = summary.training_summary(_metrics(), LOG, window=2)
    assert (s["layer"], s["steps"], s["eval_prompts"], s["top1_total"]) == (2, 4, 4, 4)
    assert s["before_mean_prob"] == 1e-9 and s["after_mean_prob"] == 0.5 and s["after_mean_percent"] == 50.0
    assert (s["before_top1_correct"], s["after_top1_correct"]) == (0, 3)
    assert s["after_weakest_operation"] == "add" and s["after_strongest_operation"] == "multiply"
    assert (s["before_answer_loss"], s["after_answer_loss"], s["after_exact_match"]) == (3.0, 1.0, 0.25)
    assert (
        s["loss_start"] == 9.5
        and s["loss_end"] == 7.5
        and s["classifier_loss_start"] == 19.0
        and s["classifier_loss_end"] == 15.0
    )
    assert s["answer_loss_start"] == s["answer_loss_end"] == 3.0 and s["train_seconds"] == 2.0 and s["window"] == 2
    phase2 = summary.training_summary(_metrics(), [{k: v for k, v in r.items() if k != "classifier_loss"} for r in LOG])
    assert "classifier_loss_start" not in phase2 and phase2["window"] == 4 and phase2["loss_end"] == 8.5
    resumed = summary.training_summary({**_metrics(), "before": None})
    assert (
        resumed["before_mean_prob"] is None and resumed["before_mean_percent"] is None and "loss_start" not in resumed
    )


def test_metrics_rows():
    rows = summary.metrics_rows(_metrics())
    assert [r["metric"] for r in rows][:2] == [
        "mean correct-target probability (lens, L2)",
        "top-1 is the target (lens, L2, of 4)",
    ]
    assert rows[2] == {"metric": "p(multiply) on multiply prompts (lens, L2)", "before": 1e-9, "after": 0.8}
    assert rows[-1] == {"metric": "answer exact match (teacher-forced argmax)", "before": 0.0, "after": 0.25}


def _lens(probs, top_ids=(1, 1), layer=2):
    rows = [
        {
            "prompt": p,
            "expected": e,
            "top_prob": 0.5,
            "top_token_id": t,
            "target_probs": dict(zip(("multiply", "add"), pr)),
        }
        for p, e, pr, t in zip(("2 * 3 = ", "hi"), ("multiply", None), probs, top_ids)
    ]
    return {"layer": layer, "results": rows, "mean_expected_prob": probs[0][0]}


def test_lens_change():
    before = _lens([(0.5, 0.1), (0.2, 0.3)])
    same = summary.lens_change(before, _lens([(0.5, 0.1), (0.2, 0.3)]))
    assert same["max_abs_diff_target_prob"] == 0.0 and same["same_top_token"] == 2 and same["n_prompts"] == 2
    moved = summary.lens_change(before, _lens([(0.5, 0.1), (0.2, 0.7)], top_ids=(1, 9)))
    assert moved["max_abs_diff_target_prob"] == pytest.approx(0.4) and moved["max_abs_diff_expected_prob"] == 0.0
    assert moved["same_top_token"] == 1
    with pytest.raises(WorkbenchError, match="different prompts"):
        summary.lens_change(before, {**before, "results": before["results"][:1]})
    with pytest.raises(WorkbenchError, match="same layer"):
        summary.lens_change(before, _lens([(0.5, 0.1), (0.2, 0.3)], layer=3))


def test_greedy_rows():
    row = lambda p, g, c: {"prompt": p, "response": "6", "greedy": g, "correct": c}
    before, after = {"rows": [row("2 * 3 = ", "12", False)]}, {"rows": [row("2 * 3 = ", "6", True)]}
    assert summary.greedy_rows(before, after) == [
        {
            "prompt": "2 * 3 = ",
            "answer": "6",
            "before": "'12'",
            "before correct": False,
            "after": "'6'",
            "after correct": True,
        }
    ]
    with pytest.raises(WorkbenchError, match="different prompts"):
        summary.greedy_rows(before, {"rows": []})


# ---------------------------------------------------------------- figures


def test_training_loss_figure_panels_and_rolling_mean():
    fig = plots.training_loss_figure(LOG, window=2)
    assert len(fig.data) == 6  # total, classifier, answer: raw + rolling mean each
    assert list(fig.data[1].y) == [10.0, 9.5, 8.5, 7.5] and list(fig.data[0].x) == [1, 2, 3, 4]
    answers_only = plots.training_loss_figure([{"step": 1, "loss": 2.0, "answer_loss": 2.0}], keys=["answer_loss"])
    assert len(answers_only.data) == 2 and answers_only.layout.yaxis.title.text == "answer_loss"
    assert answers_only.layout.yaxis.type is None
    assert {fig.layout[f"yaxis{i}"].type for i in ("", "2", "3")} == {None}
    logged = plots.training_loss_figure(LOG, window=2, log_y=True)
    assert {logged.layout[f"yaxis{i}"].type for i in ("", "2", "3")} == {"log"}


def test_operation_before_after_figure():
    fig = plots.operation_before_after_figure(_metrics())
    assert [t.name for t in fig.data] == ["before", "after"] and list(fig.data[1].y) == [0.8, 0.2]
    assert list(fig.data[0].x) == ["multiply", "add"] and fig.layout.yaxis.type == "log"
    resumed = plots.operation_before_after_figure({**_metrics(), "before": None}, log_y=False)
    assert list(resumed.data[0].y) == [None, None] and resumed.layout.yaxis.type is None


def test_expected_prob_range():
    r = summary.expected_prob_range(
        {
            "results": [
                {"prompt": "2 * 3 = ", "expected": "multiply", "target_probs": {"multiply": 0.4, "add": 0.1}},
                {"prompt": "2 + 3 = ", "expected": "add", "target_probs": {"multiply": 0.9, "add": 0.7}},
                {"prompt": "hi", "expected": None, "target_probs": {"multiply": 0.0, "add": 0.99}},
            ]
        }
    )
    assert (r["min"], r["max"], r["min_prompt"], r["max_prompt"], r["n"]) == (0.4, 0.7, "2 * 3 = ", "2 + 3 = ", 2)
    with pytest.raises(WorkbenchError, match="no prompt"):
        summary.expected_prob_range({"results": [{"prompt": "hi", "expected": None, "target_probs": {}}]})


def test_metrics_lens_change():
    change = summary.metrics_lens_change(_metrics())
    assert change["max_abs_diff"] == pytest.approx(0.8 - 1e-9) and change["same_top1_correct"] is False
    assert change["max_abs_diff_per_operation"]["add"] == pytest.approx(0.2 - 2e-9)
    same = summary.metrics_lens_change({**_metrics(), "after": _metrics()["before"]})
    assert same["max_abs_diff"] == 0.0 and same["same_top1_correct"] is True and same["layer"] == 2


def test_ordered_operations_and_fmt_prob():
    assert list(summary.ordered_operations({"divide": 1, "other": 2, "add": 3, "multiply": 4})) == [
        "multiply",
        "add",
        "divide",
        "other",
    ]
    assert list(summary.training_summary(_metrics())["after_per_operation"]) == ["multiply", "add"]
    assert (
        summary.fmt_prob(0.4234) == "42.3%"
        and summary.fmt_prob(0.01) == "1.0%"
        and summary.fmt_prob(3.21e-9) == "3.2e-09"
    )
    assert summary.fmt_prob(0.99943) == "99.94%" and summary.fmt_prob(0.989) == "98.9%"
    assert summary.fmt_prob(0.0) == "0.0e+00" and summary.fmt_prob(None) == "n/a"


def test_classifier_check():
    lens = summary.lens_change(_lens([(0.5, 0.1), (0.2, 0.3)]), _lens([(0.5, 0.1), (0.2, 0.3)]))
    same = summary.metrics_lens_change({**_metrics(), "after": _metrics()["before"]})
    weights = [
        {"layer": 0, "tensors": 4, "max_abs_change": 0.0},
        {"layer": 1, "tensors": 4, "max_abs_change": 0.0},
        {"layer": 2, "tensors": 4, "max_abs_change": 0.01},
    ]
    ok = summary.classifier_check(lens, same, weights, frozen=[0, 1])
    assert ok["unchanged"] is True and ok["max_abs_diff"] == 0.0 and ok["frozen_layers_moved"] == []
    assert (
        ok["still_layers"] == [0, 1]
        and ok["moved_layers"] == [2]
        and ok["max_weight_change"] == 0.01
        and ok["layer"] == 2
    )
    assert summary.classifier_check(lens, same, weights, frozen=[0, 1, 2])["frozen_layers_moved"] == [2]
    assert summary.classifier_check(lens, same, weights, frozen=[0, 1, 2])["unchanged"] is False
    drift = {**lens, "max_abs_diff_target_prob": 2e-5}
    assert summary.classifier_check(drift, same, weights, frozen=[0])["unchanged"] is False
    assert summary.classifier_check(drift, same, weights, frozen=[0], tolerance=1e-4)["unchanged"] is True
