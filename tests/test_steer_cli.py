"""`workbench introspect steer` on the tiny random Llama: the sweep's JSON and figure, strength 0 as the baseline,
and bad input (a strength that is not a number, a layer out of range, a vector of the wrong width) as one line with
nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_one_line_error, cli

PROMPTS = "7 * 8 = |12 + 5 = |9 - 3 = |8 / 2 = "


def test_steer_writes_the_sweep_and_its_figure(capsys, tiny_dir, tmp_path):
    out = tmp_path / "steer.json"
    args = ["--direction", "mean-diff:multiply,add", "--prompts", PROMPTS, "--targets", "multiply", "--targets", "add"]
    code, stdout, err = cli(
        capsys,
        "introspect",
        "steer",
        "-o",
        out,
        "-m",
        tiny_dir,
        *args,
        "--layers",
        "0,2",
        "--strengths",
        "0,1.5",
        "--max-new-tokens",
        "2",
    )
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["kind"] == "introspect.steer" and doc["settings"]["strengths"] == [0.0, 1.5]
    assert {(c["layer"], c["strength"], c["kind"]) for c in doc["cells"]} == {
        (layer, s, k) for layer in (0, 2) for s in (0.0, 1.5) for k in ("direction", "control")
    }
    zero = next(c for c in doc["cells"] if c["strength"] == 0.0)
    assert zero["output_p"] == pytest.approx(doc["baseline"]["output_p"]) and zero["answers_changed"] == 0
    assert out.with_suffix(".html").is_file() and "change per layer x strength" in stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--direction", "unembed:multiply", "--strengths", "1,strong"], ["--strengths '1,strong'", "numbers"]),
        (["--direction", "unembed:multiply", "--layers", "7"], ["7"]),
        (["--direction", "sideways:1"], ["mean-diff:CLASS_A,CLASS_B"]),
        (["--direction", "unembed:multiply", "--readout-layer", "9"], ["layer 9 is out of range"]),
    ],
)
def test_bad_input_is_one_line_and_nothing_is_written(capsys, tiny_dir, tmp_path, args, needles):
    out = tmp_path / "steer.json"
    code, _, err = cli(capsys, "introspect", "steer", "-o", out, "-m", tiny_dir, "--prompts", PROMPTS, *args)
    assert_one_line_error(code, err, *needles)
    assert not out.exists() and not out.with_suffix(".html").exists()


def test_a_vector_of_the_wrong_width_is_one_line(capsys, tiny_dir, tmp_path):
    np.save(tmp_path / "v.npy", np.ones(7, dtype=np.float32))
    out = tmp_path / "steer.json"
    code, _, err = cli(
        capsys,
        "introspect",
        "steer",
        "-o",
        out,
        "-m",
        tiny_dir,
        "--prompts",
        PROMPTS,
        "--direction",
        f"file:{tmp_path / 'v.npy'}",
    )
    assert_one_line_error(code, err, "holds (7,) values, the model's width is 32")
    assert not out.exists()
