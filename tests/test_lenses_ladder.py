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
