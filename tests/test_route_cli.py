"""`workbench route` on the tiny random Llama: one JSON line per prompt, a fitted router saved and reloaded, a user's
expert, fallbacks recorded, and every bad input one line with exit status 2 and nothing written."""

from __future__ import annotations

import json

import pytest
from helpers import assert_one_line_error, cli

from workbench.routing import prompts


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_route_prints_one_json_line_per_prompt_and_writes_the_result(capsys, tiny_dir, tmp_path):
    out = tmp_path / "route.json"
    code, stdout, err = cli(
        capsys, "route", "--router", "regex", "-m", tiny_dir, "--prompts", "7 * 8 = |12 / 0 = |hello", "-o", out
    )
    assert code == 0, err
    rows = _lines(stdout)
    assert [r["prompt"] for r in rows] == ["7 * 8 = ", "12 / 0 = ", "hello"]
    assert (rows[0]["decision"], rows[0]["expert"], rows[0]["answer"]) == ("multiply", "calculator", "56")
    assert (rows[1]["expert"], rows[1]["fallback"]) == ("model", "declined: division by zero")
    assert rows[2]["decision"] == "none" and rows[2]["expert"] == "model"
    for row in rows:
        assert {"confidence", "decision_s", "answer_s", "total_s", "new_tokens"} <= set(row)
    doc = json.loads(out.read_text())
    assert doc["kind"] == "route" and doc["settings"]["router"] == "regex" and len(doc["rows"]) == 3


def test_a_fitted_router_file_reproduces_its_decisions(capsys, tiny_dir, tmp_path):
    fitted = tmp_path / "probe.json"
    text = "7 * 8 = |What is 9 plus 3?|The capital of France is"
    code, first, err = cli(capsys, "route", "--router", "probe", "-m", tiny_dir, "--prompts", text, "--fit", fitted)
    assert code == 0, err and fitted.is_file()
    code, again, err = cli(
        capsys, "route", "--router", "probe", "-m", tiny_dir, "--prompts", text, "--router-file", fitted
    )
    assert code == 0, err
    for a, b in zip(_lines(first), _lines(again), strict=True):
        assert a["decision"] == b["decision"] and a["confidence"] == pytest.approx(b["confidence"], abs=1e-5)


def test_eval_scores_the_built_in_set(capsys, tiny_dir, tmp_path):
    out = tmp_path / "eval.json"
    code, stdout, err = cli(
        capsys,
        "route",
        "--router",
        "regex",
        "-m",
        tiny_dir,
        "--eval",
        "--per-kind",
        "2",
        "--max-new-tokens",
        "2",
        "-o",
        out,
    )
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert len(doc["rows"]) == len(prompts.evaluation_items(per_kind=2))
    assert doc["metrics"]["by_kind"]["symbol"]["answer_accuracy"] == 1.0
    assert "regex: routing accuracy" in err


def test_a_users_expert_answers_and_a_raising_one_falls_back(capsys, tiny_dir, tmp_path, monkeypatch):
    (tmp_path / "my_expert.py").write_text(
        "import pathlib\n"
        f"LOG = pathlib.Path({str(tmp_path / 'calls.log')!r})\n"
        "def answer(prompt, operation):\n    with LOG.open('a') as f:\n        f.write(prompt + '\\n')\n"
        "    return f'{operation}!'\n\ndef broken(prompt, operation):\n    raise KeyError(prompt)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code, stdout, err = cli(
        capsys, "route", "--router", "regex", "-m", tiny_dir, "--prompts", "7 * 8 = ", "--expert", "my_expert:answer"
    )
    assert code == 0, err
    (row,) = _lines(stdout)
    assert (row["expert"], row["answer"]) == ("my_expert:answer", "multiply!")
    assert (tmp_path / "calls.log").read_text() == "7 * 8 = \n"  # the warm-up never calls an expert
    code, stdout, err = cli(
        capsys,
        "route",
        "--router",
        "regex",
        "-m",
        tiny_dir,
        "--prompts",
        "7 * 8 = ",
        "--expert",
        "my_expert:broken",
        "--max-new-tokens",
        "2",
    )
    (row,) = _lines(stdout)
    assert row["expert"] == "model" and row["fallback"].startswith("raised KeyError")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--router", "magic", "--prompts", "x"], ["--router 'magic'", "probe"]),
        (["--router", "regex"], ["--prompts", "--eval"]),
        (["--router", "regex", "--prompts", "x", "--eval"], ["one of the two"]),
        (["--router", "regex", "--prompts", "x|"], ["empty prompt at position 2"]),
        (["--router", "regex", "--prompts", "x", "--fit", "f.json"], ["--fit is for fitted routers"]),
        (["--router", "probe", "--prompts", "x", "--fit", "f.json", "--router-file", "g.json"], ["exclude each other"]),
        (["--router", "lens", "--prompts", "x"], ["--adapter"]),
        (["--router", "lens", "--prompts", "x", "--adapter", "a", "--threshold", "2"], ["--threshold 2.0"]),
        (
            ["--router", "regex", "--prompts", "x", "--threshold", "high"],
            ["Invalid value for '--threshold'", "valid number"],
        ),
        (["--router", "regex", "--prompts", "x", "--expert", "nomodule_here:f"], ["cannot import expert module"]),
        (["--router", "probe", "--prompts", "x", "--layer", "9"], ["--layer 9 is out of range"]),
        (["--router", "probe", "--prompts", "x", "--router-file", "missing.json"], ["does not exist"]),
        (["--router", "lens", "--prompts", "x", "--adapter", "no_such_adapter"], ["adapter_config.json"]),
    ],
)
def test_bad_input_is_one_line_and_nothing_is_written(capsys, tiny_dir, tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.json"
    code, _, err = cli(capsys, "route", "-m", tiny_dir, *args, "-o", out)
    assert_one_line_error(code, err, *needles)
    assert not out.exists() and not (tmp_path / "f.json").exists()


def test_a_router_file_from_another_model_is_refused(capsys, tiny_dir, tmp_path):
    fitted = tmp_path / "probe.json"
    code, _, err = cli(capsys, "route", "--router", "probe", "-m", tiny_dir, "--prompts", "7 * 8 = ", "--fit", fitted)
    assert code == 0, err
    doc = json.loads(fitted.read_text())
    fitted.write_text(json.dumps(doc | {"model": "HuggingFaceTB/SmolLM2-135M", "n_layers": 30, "d_model": 576}))
    out = tmp_path / "out.json"
    code, _, err = cli(
        capsys, "route", "--router", "probe", "-m", tiny_dir, "--prompts", "x", "--router-file", fitted, "-o", out
    )
    assert_one_line_error(code, err, "fitted on HuggingFaceTB/SmolLM2-135M", "fit it again")
    assert not out.exists()
