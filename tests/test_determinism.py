"""Same seed, same machine: two fresh processes give identical probe results, lens numbers, training losses and
adapters (everything but timestamps, timings and the output paths themselves). Each process runs the three commands
through the CLI's own entry point, one after the other."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from workbench.core.arithmetic import generate_arithmetic
from workbench.core.data import write_jsonl

pytestmark = pytest.mark.slow  # two fresh processes
VOLATILE = {"created", "timings_s", "seconds", "output", "settings"}


COMMANDS = """
import json, sys
from workbench.cli import main
for args in json.loads(sys.argv[1]):
    try:
        main(args)
    except SystemExit as exc:
        if exc.code:
            raise
"""


def _fresh_process(*commands: list) -> None:
    """The commands, in order, in one new interpreter."""
    argv = json.dumps([[str(a) for a in c] for c in commands])
    proc = subprocess.run([sys.executable, "-c", COMMANDS, argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def _stable(doc):
    if isinstance(doc, dict):
        return {k: _stable(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_stable(v) for v in doc]
    return doc


def test_two_fresh_processes_give_identical_results(tiny_dir, tmp_path):
    data = tmp_path / "train.jsonl"
    write_jsonl(data, generate_arithmetic(32, 42))
    write_jsonl(tmp_path / "eval.jsonl", generate_arithmetic(8, 3))
    classes = ["--classes", "multiply:7 * 8 = |12 * 5 = |3 * 9 = ", "--classes", "add:23 + 45 = |17 + 38 = |11 + 22 = "]
    for run in ("a", "b"):
        _fresh_process(
            ["introspect", "classifier", "-m", tiny_dir, *classes, "--test", "6 * 9 = ", "--seed", 5,
             "--output", tmp_path / run / "probe.json"],
            ["introspect", "logit-lens", "-m", tiny_dir, "--prompts", "7 * 8 = |23 + 45 = ", "--targets", "multiply",
             "--targets", "add", "--all-layers", "--output", tmp_path / run / "lens.json"],
            ["train", "sft", "--model", tiny_dir, "--data", data, "--eval-data", tmp_path / "eval.jsonl",
             "--output", tmp_path / run / "adapter", "--max-steps", 6, "--batch-size", 4, "--seed", 3,
             "--intermediate-layer", 2, "--no-progress"],
        )  # fmt: skip
    for name in ("probe.json", "lens.json"):
        a, b = (json.loads((tmp_path / run / name).read_text()) for run in ("a", "b"))
        assert _stable(a) == _stable(b), name
    probe = json.loads((tmp_path / "a" / "probe.json").read_text())
    assert len(probe["layer_results"]) == 4 and probe["seed"] == 5  # a real result, not an empty one
    logs = [
        [json.loads(line) for line in (tmp_path / run / "adapter" / "train_log.jsonl").read_text().splitlines()]
        for run in ("a", "b")
    ]
    assert [_stable(r) for r in logs[0]] == [_stable(r) for r in logs[1]] and len(logs[0]) == 6
    assert len({r["loss"] for r in logs[0]}) > 1  # the losses move, and move the same way
    x, y = (load_file(tmp_path / run / "adapter" / "adapter_model.safetensors") for run in ("a", "b"))
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    m = [json.loads((tmp_path / run / "adapter" / "metrics.json").read_text()) for run in ("a", "b")]
    assert m[0]["before"] == m[1]["before"] and m[0]["after"] == m[1]["after"]
