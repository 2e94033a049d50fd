"""The CLI: seed syntax works, and bad input is one line on stderr, exit status 2, no traceback, nothing clobbered."""

import json
import subprocess
import sys

import pytest

from workbench.cli import main

CLASSES = ["--classes", "multiply:7 * 8 = |12 * 5 = |3 * 9 = ", "--classes", "add:23 + 45 = |17 + 38 = |11 + 22 = "]


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize("classes,needle", [
    (["--classes", "multiply 7 * 8 = "], "no ':'"),
    (["--classes", ":7 * 8 = |1 * 2 = ", "--classes", "add:1 + 2 = |3 + 4 = "], "empty label"),
    (["--classes", "multiply:7 * 8 = |1 * 2 = "], "at least 2 classes"),
    (["--classes", "multiply:7 * 8 = |1 * 2 = ", "--classes", "add:1 + 2 = "], "at least 2 per class"),
    (["--classes", "multiply:7 * 8 = | |1 * 2 = ", "--classes", "add:1 + 2 = |3 + 4 = "], "empty prompt"),
])
def test_malformed_classes_subprocess(tmp_path, classes, needle):
    out = tmp_path / "r.json"
    out.write_text("precious")
    code, _, err = run_cli("introspect", "classifier", "-m", "default", *classes, "--output", str(out))
    assert_one_line_error(code, err, needle)
    assert out.read_text() == "precious"


def test_unknown_option_and_missing_option_are_one_line(tmp_path):
    code, _, err = run_cli("introspect", "logit-lens", "--prompts", "1 + 2 = ", "--output", str(tmp_path / "x.json"))
    assert_one_line_error(code, err, "--targets")
    code, _, err = run_cli("introspect", "classifier", "--bogus")
    assert_one_line_error(code, err, "--bogus")


def test_unknown_model_leaves_existing_output(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("precious")
    code, _, err = run_cli("introspect", "classifier", "-m", "no-such-model", *CLASSES, "--output", str(out))
    assert_one_line_error(code, err, "unknown model", "-m default")
    assert out.read_text() == "precious"


def cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def test_classifier_on_tiny_model_writes_json_and_figure(tiny_dir, tmp_path, capsys):
    out = tmp_path / "res" / "classifier.json"
    code, stdout, err = cli(capsys, "introspect", "classifier", "-m", str(tiny_dir), *CLASSES,
                            "--test", "6 * 9 = |13 + 14 = ", "--layers", "1-3", "--seed", "3", "--output", str(out))
    assert code == 0, err
    doc = json.loads(out.read_text())
    for key in ("model", "num_layers", "classes", "layer_results", "best_layer", "best_accuracy", "test_predictions", "settings"):
        assert key in doc
    assert [r["layer"] for r in doc["layer_results"]] == [1, 2, 3]
    assert doc["classes"] == ["multiply", "add"] and doc["num_layers"] == 4 and doc["seed"] == 3
    assert len(doc["test_predictions"]) == 2 * 3
    html = out.with_suffix(".html").read_text()
    assert "plotly" in html and "task accuracy" in html
    assert "best layer" in stdout


def test_logit_lens_on_tiny_model(tiny_dir, tmp_path, capsys):
    out = tmp_path / "lens.json"
    code, stdout, err = cli(capsys, "introspect", "logit-lens", "-m", str(tiny_dir), "--prompts", "7 * 8 = |23 + 45 = ",
                            "--targets", "multiply", "--targets", "add", "--targets", "multiply add", "--all-layers",
                            "--output", str(out))
    assert code == 0, err
    assert "warning: target 'multiply add' is 2 tokens" in err
    doc = json.loads(out.read_text())
    assert doc["layer"] == 2 and doc["num_layers"] == 4 and len(doc["results"]) == 2
    assert set(doc["results"][0]["target_probs"]) == {"multiply", "add", "multiply add"}
    assert doc["targets"][2]["n_subtokens"] == 2 and doc["score"]["total"] == 2
    assert len(doc["all_layers"]["target_probs"]["add"]) == 4


@pytest.mark.parametrize("args,needle", [
    (["--layers", "2-9"], "out of range"),
    (["--layers", "3-1"], "reversed"),
])
def test_classifier_layer_errors(tiny_dir, tmp_path, capsys, args, needle):
    code, _, err = cli(capsys, "introspect", "classifier", "-m", str(tiny_dir), *CLASSES, *args, "--output", str(tmp_path / "r.json"))
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("args,needle", [
    (["--layer", "4"], "out of range"),
    (["--targets", "zzzz"], "not in the model's vocabulary"),
    (["--adapter", "/nonexistent/adapter"], "adapter_config.json"),
])
def test_logit_lens_errors(tiny_dir, tmp_path, capsys, args, needle):
    out = tmp_path / "lens.json"
    out.write_text("precious")
    code, _, err = cli(capsys, "introspect", "logit-lens", "-m", str(tiny_dir), "--prompts", "7 * 8 = ",
                       "--targets", "multiply", *args, "--output", str(out))
    assert_one_line_error(code, err, needle)
    assert out.read_text() == "precious"


def test_unwritable_output_fails_before_loading(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, _, err = cli(capsys, "introspect", "logit-lens", "-m", "default", "--prompts", "7 * 8 = ",
                       "--targets", "multiply", "--output", str(tmp_path / "afile" / "lens.json"))
    assert_one_line_error(code, err, "cannot write output")
