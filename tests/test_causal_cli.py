"""`workbench introspect patch | attribute | interchange | ablate --heads` on the tiny random Llama: each writes its
JSON with its settings, and bad input (uneven pairs, an unknown head or layer, a missing module, a bad method) is one
line, exit 2, nothing written."""

from __future__ import annotations

import json

import pytest
from helpers import assert_one_line_error, cli

PROMPTS = "7 * 8 = |12 * 5 = |9 * 3 = |8 * 2 = "


def _pairs_file(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_patch_from_a_pairs_file_writes_result_and_figure(capsys, tiny_dir, tmp_path):
    pairs = _pairs_file(tmp_path / "pairs.jsonl", [
        {"source": "7 * 8 = ", "target": "7 + 8 = ", "source_class": "multiply", "target_class": "add",
         "source_answer": "56", "target_answer": "15"},
        {"source": "3 * 9 = ", "target": "3 + 9 = ", "source_class": "multiply", "target_class": "add",
         "source_answer": "27", "target_answer": "12"},
    ])  # fmt: skip
    out = tmp_path / "patch.json"
    code, stdout, err = cli(capsys, "introspect", "patch", "-o", out, "-m", tiny_dir, "--pairs", pairs, "--layers",
                            "0-1", "--readout-layer", "1", "--what", "heads")  # fmt: skip
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["kind"] == "introspect.patch" and doc["settings"]["what"] == "heads" and doc["n_pairs"] == 2
    assert len(doc["cells"]) == 2 * 4 and set(doc["metrics"]) == {"lens_diff", "answer_diff"}
    assert out.with_suffix(".html").is_file() and "lens_diff over 2 pairs" in stdout


@pytest.mark.slow  # four commands on the tiny model
def test_attribute_and_interchange_and_head_ablation_write_their_results(capsys, tiny_dir, tmp_path):
    out = tmp_path / "dla.json"
    code, stdout, err = cli(capsys, "introspect", "attribute", "-o", out, "-m", tiny_dir, "--word", "multiply",
                            "--other", "add", "--prompts", PROMPTS, "--layer", "2")  # fmt: skip
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["layer"] == 2 and len(doc["layers"]) == 3 and "largest heads" in stdout
    out = tmp_path / "ap.json"
    code, _, err = cli(capsys, "introspect", "attribute", "-o", out, "-m", tiny_dir, "--word", "multiply",
                       "--other", "add", "--method", "patching", "--n-pairs", "2", "--layer", "2")  # fmt: skip
    assert code == 0, err
    assert json.loads(out.read_text())["granularity"] == "node"
    out = tmp_path / "ix.json"
    code, stdout, err = cli(capsys, "introspect", "interchange", "-o", out, "-m", tiny_dir, "--basis", "mean-diff",
                            "--n-pairs", "4", "--layer", "1")  # fmt: skip
    assert code == 0, err
    assert set(json.loads(out.read_text())["effects"]) == {"basis", "placebo", "random"} and "placebo:" in stdout
    out = tmp_path / "heads.json"
    code, stdout, err = cli(capsys, "introspect", "ablate", "-o", out, "-m", tiny_dir, "--heads", "zero",
                            "--head-layers", "0", "--prompts", PROMPTS, "--max-new-tokens", "0")  # fmt: skip
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["kind"] == "introspect.ablate_heads" and {r["head"] for r in doc["rows"]} == {0, 1, 2, 3, "all"}


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["patch", "--source-class", "power"], ["'power'", "multiply"]),
        (["patch", "--what", "mlp"], ["--what 'mlp'"]),
        (["patch", "--layers", "9"], ["9"]),
        (["attribute", "--word", "multiply", "--method", "magic"], ["--method 'magic'"]),
        (
            ["attribute", "--word", "multiply", "--method", "patching", "--granularity", "edge", "--n-pairs", "1"],
            ["GQA", "node"],
        ),
        (["ablate", "--heads", "zero", "--head-layers", "7"], ["7"]),
        (["ablate", "--heads", "half"], ["--heads 'half'"]),
        (["ablate"], ["--adapter", "--heads"]),
    ],
)
def test_bad_input_is_one_line_and_nothing_is_written(capsys, tiny_dir, tmp_path, args, needles):
    out = tmp_path / "out.json"
    code, _, err = cli(capsys, "introspect", args[0], "-o", out, "-m", tiny_dir, *args[1:])
    assert_one_line_error(code, err, *needles)
    assert not out.exists() and not out.with_suffix(".html").exists()


def test_uneven_pairs_name_both_lengths(capsys, tiny_dir, tmp_path):
    pairs = _pairs_file(tmp_path / "pairs.jsonl", [
        {"source": "7 * 8 = ", "target": "17 + 28 = ", "source_class": "multiply", "target_class": "add"},
    ])  # fmt: skip
    out = tmp_path / "patch.json"
    code, _, err = cli(capsys, "introspect", "patch", "-o", out, "-m", tiny_dir, "--pairs", pairs)
    assert_one_line_error(code, err, "has 6 tokens", "has 8", "--align last")
    assert not out.exists()
    code, _, err = cli(capsys, "introspect", "patch", "-o", out, "-m", tiny_dir, "--pairs", pairs, "--align", "last",
                       "--layers", "0")  # fmt: skip
    assert code == 0, err
