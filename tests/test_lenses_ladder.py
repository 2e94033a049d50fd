"""The readout ladder on a tiny random model: the logit lens's rows equal the logit lens computed on its own path,
the first reading layer follows its threshold, and `workbench introspect readouts` refuses bad input in one line."""

from __future__ import annotations

import pytest
from helpers import assert_one_line_error, cli

from workbench.cli.formatters import ladder_table
from workbench.core.lens import logit_lens
from workbench.lenses.ladder import first_reading_layers, ladder
from workbench.tasks.spec import load_task


@pytest.mark.slow
def test_the_logit_rows_equal_the_logit_lens(tiny_lm):
    spec = load_task("arithmetic")
    result = ladder(tiny_lm, spec, [1, 3], ("logit", "patchscope"), n_fit=16, n_eval=12, echo=lambda line: None)
    from workbench.tasks.data import task_data

    heldout = task_data(spec, 16, 12, 42).heldout[:12]
    prompts = [r["prompt"] for r in heldout]
    expected = [spec.classes[r["classification_target"]] for r in heldout]
    for layer in (1, 3):
        lens = logit_lens(tiny_lm, prompts, list(spec.classes.values()), layer, expected=expected)
        row = next(r for r in result["rows"] if r["readout"] == "logit" and r["layer"] == layer)
        p = [pl.target_probs[e] for pl, e in zip(lens.results, expected)]
        assert row["p_expected"] == pytest.approx(sum(p) / len(p), rel=1e-5)
        assert row["n"] == 12
    # at the last layer the patch goes in after the last block: Patchscope is the logit lens there
    last = ladder(tiny_lm, spec, [tiny_lm.n_layers - 1], ("logit", "patchscope"), n_fit=16, n_eval=12,
                  echo=lambda line: None)["rows"]  # fmt: skip
    assert last[0]["p_expected"] == pytest.approx(last[1]["p_expected"], rel=1e-5)


def test_first_reading_layer_is_the_first_over_the_threshold():
    rows = [{"readout": "a", "layer": L, "top1": t} for L, t in ((0, 0.5), (1, 0.95), (2, 0.7), (3, 1.0))]
    rows += [{"readout": "b", "layer": L, "top1": 0.2} for L in range(4)]
    assert first_reading_layers(rows) == {"a": 1, "b": None}
    assert first_reading_layers(rows, reads=0.99) == {"a": 3, "b": None}


def test_ladder_table_from_a_hand_built_result():
    rows = [{"readout": n, "layer": L, "top1": t, "p_expected": p} for n, L, t, p in
            (("logit", 0, 0.25, 1e-9), ("logit", 1, 1.0, 0.5), ("tuned", 0, 0.5, 0.01), ("tuned", 1, 1.0, 0.75))]  # fmt: skip
    text = ladder_table({"task": "t", "n_eval": 4, "layers": [0, 1], "rows": rows,
                         "first_reading_layer": {"logit": 1, "tuned": None}})  # fmt: skip
    lines = text.splitlines()
    assert lines[2].split() == ["L0", "0.25", "/", "1.0e-09", "0.50", "/", "1.0e-02"]
    assert lines[-1] == "first layer that reads the class: logit L1, tuned none"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--readouts", "logit,lenz"], "--readouts 'logit,lenz': choose from logit, shortcut"),
        (["--tuned", "/nonexistent"], "is not a saved tuned lens folder"),
        (["--task", "nope"], "unknown task 'nope'"),
    ],
)
def test_readouts_bad_input_is_one_line(tmp_path, capsys, args, needle):
    code, _, err = cli(capsys, "introspect", "readouts", "-o", tmp_path / "r.json", *args)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "r.json").exists()


def test_the_readouts_page_from_a_hand_built_record(tmp_path):
    import json

    from workbench.core.errors import WorkbenchError
    from workbench.experiment.readouts_page import page_text, readouts_record

    rows = [{"readout": n, "layer": L, "top1": t, "p_expected": p} for n, L, t, p in
            (("logit", 0, 0.25, 1e-9), ("logit", 1, 0.5, 2e-3), ("shortcut", 0, 0.5, 0.01), ("shortcut", 1, 1.0, 0.75))]  # fmt: skip
    result = {"kind": "introspect.readouts", "task": "arithmetic", "classes": {}, "layers": [0, 1], "n_eval": 4,
              "rows": rows, "first_reading_layer": {"logit": None, "shortcut": 1}, "seconds": {}, "created": "2026-12-07T13:00",
              "provenance": {"tuned": {}},
              "settings": {"model": "default", "task": "arithmetic", "readouts": ["logit", "shortcut"], "n_eval": 4, "layers": [0, 1],
                           "n_fit": 8, "corpus_tokens": 512, "tuned_steps": 0, "jacobian_prompts": 2, "adapter": None}}  # fmt: skip
    good = tmp_path / "r.json"
    good.write_text(json.dumps(result))
    text = page_text(readouts_record([good], "abc"))
    assert "### arithmetic on default (base)" in text
    assert "| 1 | 0.50 / 2.0e-03 | 1.00 / 7.5e-01 |" in text
    assert "First layer that reads the class (top-1 on at least 90% of the prompts): logit none, shortcut L1." in text
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"kind": "introspect.classifier"}))
    with pytest.raises(WorkbenchError, match="is a 'introspect.classifier' result"):
        readouts_record([other], None)


def _result(task="arithmetic", adapter=None, reads_at=None, steering=True):
    """A hand-built ladder result: two layers (0 and the classifier layer 1), the logit lens and the probe through
    the unembedding; the logit lens reads at ``reads_at`` (None: nowhere), the probe everywhere."""
    rows = []
    for layer in (0, 1):
        top1 = 1.0 if layer == reads_at else 0.25
        rows.append({"readout": "logit", "layer": layer, "top1": top1, "top1_ci": [top1 - 0.1, min(1.0, top1 + 0.1)],
                     "p_expected": 0.5 if layer == reads_at else 1e-9, "rank": 1.0})  # fmt: skip
        rows.append({"readout": "unembed_probe", "layer": layer, "top1": 1.0, "top1_ci": [0.9, 1.0],
                     "p_expected": 0.02, "rank": 3.0})  # fmt: skip
    result = {"task": task, "classifier_layer": 1, "n_eval": 8, "rows": rows, "layers": [0, 1],
              "first_reading_layer": first_reading_layers(rows), "settings": {"model": "m", "adapter": adapter}}  # fmt: skip
    if steering:
        cells = [{"layer": layer, "steerable": steerable} for layer, steerable in ((0, True), (1, True), (1, False))]
        result["steering"] = {"strength": 0.5, "cells": cells,
                              "by_readout": {"logit": {"spearman_rho": 0.5}, "unembed_probe": {"spearman_rho": None}}}  # fmt: skip
    return result


def test_the_run_summary_and_its_claims_from_hand_built_ladders():
    from workbench.experiment.readouts import default_layers, findings, summarise, verdicts

    summary = summarise({"base": _result(), "seed-42": _result(adapter="s/seed-42/phase1_adapter", reads_at=1)})
    base, trained = summary["models"]["base"], summary["models"]["seed-42"]
    assert summary["classifier_layer"] == 1 and base["first_reading_layer"] == {"logit": None, "unembed_probe": 0}
    assert trained["first_reading_layer"]["logit"] == 1
    # two steerable cells (L0, L1); after training the logit lens decodes at L1, so one of them is read by no lens
    assert base["steering"]["steerable"] == 2 and base["steering"]["steerable_not_decodable"] == 2
    assert trained["steering"]["steerable_not_decodable"] == 1
    rows = {r["id"]: r for r in verdicts(summary, max_prob=0.005)}
    assert rows["base_readout_logit"]["verdict"] == "holds"  # 1e-9 < 0.005
    assert rows["base_readout_unembed_probe"]["verdict"] == "reported"  # fitted on labels: not the guide's claim
    assert "top-1 among the class words 0.25 (95% CI 0.15-0.35)" in rows["base_readout_logit"]["measured"]
    assert rows["readouts_first_layer"]["measured"] == (
        "base model: logit lens no layer; probe through the unembedding L0. After phase 1 (seed-42): logit lens L1; "
        "probe through the unembedding L0"
    )
    assert rows["steerable_not_decodable"]["verdict"] == "reported"
    text = findings(summary)
    assert "No vocabulary readout (logit lens) reads the class there" in text and "logit lens L1" in text
    assert "there is no '0%' here" in findings(summarise({"base": _result(reads_at=1)}))
    assert default_layers(30, 16) == [0, 3, 6, 9, 12, 15, 16, 18, 21, 24, 27, 29]
    assert default_layers(4, 2) == [0, 1, 2, 3]


def test_the_readouts_headline_from_hand_built_results():
    from workbench.experiment.readouts_page import headline

    lines = headline([_result(), _result(adapter="s/seed-42/phase1_adapter", reads_at=1, steering=False)])
    assert lines[0].startswith("| task | model | weights | logit | unembed_probe | vocabulary readout at the")
    assert lines[2] == "| arithmetic | m | base | — | L0 | L1: no (best logit 0.25 [0.15, 0.35]) | 2/3 (2) |"
    assert lines[3] == "| arithmetic | m | `seed-42/phase1_adapter` | L1 | L0 | L1: yes (logit) | — |"


def test_class_words_are_read_without_the_bos_a_tokenizer_puts_first(tiny_lm, monkeypatch):
    """Gemma's tokenizer starts every text with <bos>: the class word's first sub-token is the one after it."""
    from tokenizers.processors import TemplateProcessing

    from workbench.lenses.ladder import class_token_ids

    spec = load_task("arithmetic")
    backend = tiny_lm.tokenizer._tokenizer
    monkeypatch.setattr(backend, "post_processor", TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)]))
    assert tiny_lm.token_ids(" add")[0] == 2  # the trap: the model's tokenization starts with <s>
    words = [tiny_lm.tokenizer(w, add_special_tokens=False).input_ids[0] for w in spec.classes.values()]
    assert class_token_ids(tiny_lm, spec).tolist() == words and 2 not in words


def test_class_words_sharing_a_first_token_are_one_line(tiny_lm):
    from workbench.core.errors import WorkbenchError
    from workbench.lenses.ladder import class_token_ids

    spec = load_task("arithmetic").model_copy(update={"classes": {"a": " 7", "b": " 78"}})
    with pytest.raises(WorkbenchError, match="two class words begin with the same token"):
        class_token_ids(tiny_lm, spec)
