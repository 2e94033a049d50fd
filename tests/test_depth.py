"""Any depth: on tiny random Llamas with the guide's depths the runner trains phase 1's lens loss, freezes phase 2,
checks the classifier and writes claims and report, all at the classifier layer int(0.55 n) of the loaded model: 8, 12
and 22 (never SmolLM2's 16). The 22-layer model (TinyLlama's depth) goes through `workbench run all --quick`; the 16-
and 40-layer ones through the phases that read the layer (`run phase1`, `run phase2`, `run verify` on data that
`workbench data generate` wrote), which keeps the test to a few minutes of CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import build_tiny_llama, build_tiny_tokenizer

from workbench.core.guide import classifier_layer

pytestmark = [pytest.mark.integration, pytest.mark.notebook]
DEPTHS = (16, 22, 40)


def _commands(model, out) -> list[list[str]]:
    if model.name.endswith("-22"):
        return [["run", "all", "--quick", "--model", str(model), "--out", str(out)]]
    data = out / "data"
    return [
        [
            "data",
            "generate",
            "--samples",
            "64",
            "--output",
            str(data / "train.jsonl"),
            "--held-out",
            str(data / "heldout.jsonl"),
            "--held-out-samples",
            "32",
        ],
        *(["run", phase, "--quick", "--model", str(model), "--out", str(out)] for phase in ("phase1", "phase2")),
        ["run", "verify", "--model", str(model), "--out", str(out)],
    ]


@pytest.fixture(scope="module")
def depth_runs(tmp_path_factory):
    """The 22-layer run beside the 16- then 40-layer ones (the machine has 2 cores)."""
    root = tmp_path_factory.mktemp("depth")
    # HTML figures only (PNG export is not what this test is about); one thread each: two processes share 2 cores, and
    # two threads each would spin against each other (every tiny matmul then waits for the other process)
    env = {**os.environ, "WORKBENCH_PNG": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    chains = {}
    for n in DEPTHS:
        model = root / f"llama-{n}"
        tokenizer = build_tiny_tokenizer()
        build_tiny_llama(len(tokenizer), n_layers=n).save_pretrained(model)
        tokenizer.save_pretrained(model)
        chains[n] = _commands(model, root / f"run-{n}")
    base = [sys.executable, "-m", "workbench.cli"]
    script = " && ".join(" ".join(map(repr, base + c)) for n in (16, 40) for c in chains[n])
    procs = {
        22: subprocess.Popen(base + chains[22][0], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "16, 40": subprocess.Popen(
            ["bash", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ),
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=1200)
        assert proc.returncode == 0, f"{name} layers: {err[-2000:]}"
    return {n: root / f"run-{n}" for n in DEPTHS}


def _json(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("n_layers", DEPTHS)
def test_every_phase_works_at_the_classifier_layer_of_the_model(depth_runs, n_layers):
    run, layer = depth_runs[n_layers], classifier_layer(n_layers)
    assert layer in (8, 12, 22) and layer != 16
    if n_layers == 22:  # the whole experiment: the baseline too
        assert _json(run / "baseline_classifier.json")["classifier_layer_default"] == layer
        assert _json(run / "baseline_logit_lens.json")["layer"] == layer

    phase1 = _json(run / "seed-42" / "phase1_adapter" / "config.json")
    assert phase1["intermediate_loss_layer"] == phase1["intermediate_loss"]["layer"] == phase1["eval_layer"] == layer
    assert phase1["as_written"] == {"intermediate_loss.layer": "auto", "dtype": "auto"}
    assert _json(run / "seed-42" / "phase1_adapter" / "metrics.json")["after"]["lens"]["layer"] == layer

    phase2 = _json(run / "seed-42" / "phase2_adapter" / "config.json")
    assert phase2["frozen_layers"] == list(range(layer + 1)) and phase2["freeze_layers"] == f"0-{layer}"
    assert (
        phase2["as_written"] == {"freeze_layers": "through-classifier", "dtype": "auto"}
        and phase2["eval_layer"] == layer
    )
    check = _json(run / "seed-42" / "phase2_classifier_check.json")
    assert check["layer"] == layer and check["frozen_layers"] == list(range(layer + 1)) and check["unchanged"]
    assert check["moved_layers"] and min(check["moved_layers"]) > layer  # later layers trained, frozen ones not

    claims = {c["id"]: c for c in _json(run / "claims.json")["claims"]}
    if n_layers == 22:
        assert f"at L{layer} " in claims["base_probe_classifier_layer"]["measured"]
    assert f"at L{layer} " in claims["phase2_unchanged"]["measured"]
    assert f"(layers L0-L{layer} frozen)" in claims["phase2_unchanged"]["measured"]
    assert claims["phase2_unchanged"]["verdict"] == "holds"
    report = (run / "report.md").read_text(encoding="utf-8")
    assert f"(layers L0-L{layer} frozen)" in report
    assert (f"at L{layer} (control" in report) is (n_layers == 22)  # the baseline probe, where it ran
