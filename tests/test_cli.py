"""The CLI: seed syntax works, and bad input is one line on stderr, exit status 2, no traceback, nothing clobbered."""

import json

import pytest
from helpers import assert_one_line_error, cli, run_cli

CLASSES = ["--classes", "multiply:7 * 8 = |12 * 5 = |3 * 9 = ", "--classes", "add:23 + 45 = |17 + 38 = |11 + 22 = "]


@pytest.mark.slow
def test_malformed_classes_in_a_real_process(tmp_path):
    """Through `python -m workbench.cli` itself: a bad spec fails before the embedded model is loaded, as one line."""
    out = tmp_path / "r.json"
    out.write_text("precious")
    proc = run_cli("introspect", "classifier", "-m", "default", "--classes", "multiply 7 * 8 = ", "--output", out)
    assert_one_line_error(proc.returncode, proc.stderr, "no ':'")
    assert out.read_text() == "precious"


@pytest.mark.slow
def test_unknown_option_and_missing_option_are_one_line(tmp_path):
    proc = run_cli("introspect", "logit-lens", "--prompts", "1 + 2 = ", "--output", tmp_path / "x.json")
    assert_one_line_error(proc.returncode, proc.stderr, "--targets")
    proc = run_cli("introspect", "classifier", "--bogus")
    assert_one_line_error(proc.returncode, proc.stderr, "--bogus")


@pytest.mark.parametrize(
    "spec,needles",
    [
        ("", ("empty model spec", "-m default")),
        ("no-such-model", ("unknown model 'no-such-model'", "-m default")),
        ("./missing_dir", ("unknown model './missing_dir'",)),
        ("a/b/c", ("unknown model 'a/b/c'", "hub id (org/name)")),
        ("/nope/x.gguf", ("GGUF file '/nope/x.gguf' does not exist",)),
        ("{tmp}", ("is a directory without config.json",)),
    ],
)
def test_unknown_model_is_one_line_and_leaves_existing_output(tmp_path, capsys, spec, needles):
    out = tmp_path / "r.json"
    out.write_text("precious")
    code, _, err = cli(capsys, "introspect", "classifier", "-m", spec.format(tmp=tmp_path), *CLASSES, "--output", out)
    assert_one_line_error(code, err, *needles)
    assert out.read_text() == "precious"


@pytest.mark.slow  # five-fold probes on three layers, and the figure's PNG
def test_classifier_on_tiny_model_writes_json_and_figure(tiny_dir, tmp_path, capsys):
    out = tmp_path / "res" / "classifier.json"
    code, stdout, err = cli(
        capsys,
        "introspect",
        "classifier",
        "-m",
        str(tiny_dir),
        *CLASSES,
        "--test",
        "6 * 9 = |13 + 14 = ",
        "--layers",
        "1-3",
        "--seed",
        "3",
        "--output",
        str(out),
    )
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["settings"]["model"] == str(tiny_dir) and doc["settings"]["layers"] == "1-3"
    assert [r["layer"] for r in doc["layer_results"]] == [1, 2, 3]
    assert doc["classes"] == ["multiply", "add"] and doc["num_layers"] == 4 and doc["seed"] == 3
    best = next(r for r in doc["layer_results"] if r["layer"] == doc["best_layer"])
    assert best["accuracy"] == doc["best_accuracy"] == max(r["accuracy"] for r in doc["layer_results"])
    assert len(doc["test_predictions"]) == 2 * 3
    html = out.with_suffix(".html").read_text()
    assert "plotly" in html and "task accuracy" in html
    assert f"best layer {doc['best_layer']}: accuracy {doc['best_accuracy']:.3f}" in stdout


@pytest.mark.slow  # writes the figure's PNG through Chromium where there is one
def test_logit_lens_on_tiny_model(tiny_dir, tmp_path, capsys):
    out = tmp_path / "lens.json"
    code, stdout, err = cli(
        capsys,
        "introspect",
        "logit-lens",
        "-m",
        str(tiny_dir),
        "--prompts",
        "7 * 8 = |23 + 45 = ",
        "--targets",
        "multiply",
        "--targets",
        "add",
        "--targets",
        "multiply add",
        "--all-layers",
        "--output",
        str(out),
    )
    assert code == 0, err
    assert "warning: target 'multiply add' is 2 tokens" in err
    doc = json.loads(out.read_text())
    assert doc["layer"] == 2 and doc["num_layers"] == 4 and len(doc["results"]) == 2
    assert set(doc["results"][0]["target_probs"]) == {"multiply", "add", "multiply add"}
    assert doc["targets"][2]["n_subtokens"] == 2 and doc["score"]["total"] == 2
    assert len(doc["all_layers"]["target_probs"]["add"]) == 4


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--layer", "4"], "out of range"),
        (["--adapter", "/nonexistent/adapter"], "adapter_config.json"),
    ],
)
def test_logit_lens_errors(tiny_dir, tmp_path, capsys, args, needle):
    out = tmp_path / "lens.json"
    out.write_text("precious")
    code, _, err = cli(
        capsys,
        "introspect",
        "logit-lens",
        "-m",
        str(tiny_dir),
        "--prompts",
        "7 * 8 = ",
        "--targets",
        "multiply",
        *args,
        "--output",
        str(out),
    )
    assert_one_line_error(code, err, needle)
    assert out.read_text() == "precious"


def test_unwritable_output_fails_before_loading(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, _, err = cli(
        capsys,
        "introspect",
        "logit-lens",
        "-m",
        "default",
        "--prompts",
        "7 * 8 = ",
        "--targets",
        "multiply",
        "--output",
        str(tmp_path / "afile" / "lens.json"),
    )
    assert_one_line_error(code, err, "cannot write output")
