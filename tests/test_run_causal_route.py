"""`workbench run causal` and `workbench run route` on a copy of the session's ``tiny_run`` (a sentiment run on a tiny
22-layer Llama: classifier layer 12): the causal phase trains each control arm from the run's own settings with its one
change, at the run's classifier layer, and measures every arm into ``causal/`` and ``causal_summary.json``; the route
phase routes with the run's phase-1 adapters and takes the run's task as negatives. Both are side phases that keep the
experiment's settings, and a done phase is not run again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import cli
from safetensors.torch import load_file

from workbench.core.layers import layer_of
from workbench.experiment.arms import ARM_CHANGES, ARMS, run_arms
from workbench.experiment.layout import RunLayout

pytestmark = [pytest.mark.integration, pytest.mark.notebook]


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def copy(tiny_run, tmp_path, monkeypatch):
    out, code, _, err, env = tiny_run
    assert code == 0, err
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    shutil.copytree(out, tmp_path / "run")
    return tmp_path / "run"


def test_run_causal_trains_the_controls_at_the_runs_classifier_layer_and_measures_every_arm(copy, capsys):
    code, _, err = cli(capsys, "run", "causal", "--quick", "--seeds", "1", "--out", copy)
    assert code == 0, err
    layout = RunLayout(copy)
    files = layout.seed(42)
    phase1, phase2 = _read(files.phase1_config), _read(files.phase2_config)
    for arm, (phase, change) in ARM_CHANGES.items():
        config = _read(files.arm_adapter(arm) / "config.json")
        same = phase1 if phase == 1 else phase2
        assert {k: config[k] for k in change} == change, arm
        for key in ("max_steps", "learning_rate", "seed", "batch_size", "eval_layer"):
            assert config[key] == same[key], (arm, key)
        assert config["data"] == str(layout.train_data) and config["eval_layer"] == 12
    qk = load_file(files.arm_adapter("qk") / "adapter_model.safetensors")
    assert {k.split(".")[-3] for k in qk if "lora_A" in k} == {"q_proj", "k_proj"}
    assert _read(files.arm_adapter("qk") / "config.json")["intermediate_loss_layer"] == 12
    control = _read(files.arm_adapter("control") / "config.json")
    assert (
        control["frozen_layers"] == list(range(13)) and control["as_written"]["freeze_layers"] == "through-classifier"
    )
    weights = load_file(files.arm_adapter("control") / "adapter_model.safetensors")
    assert all(v.abs().sum() == 0 for k, v in weights.items() if "lora_B" in k and layer_of(k) <= 12)
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k and layer_of(k) > 12)
    assert _read(files.arm_adapter("noclip") / "config.json")["max_grad_norm"] == 0

    doc = _read(layout.causal_summary)
    assert doc["layer"] == 12 and doc["task"] == "sentiment" and doc["seeds"] == [42]
    assert set(doc["summary"]) >= {"base", *ARMS} and all(doc["summary"][a]["seeds"] == 1 for a in ARMS)
    measured = sorted(p.name for p in (layout.causal_dir / "measurements").iterdir())
    assert measured == sorted(["base.json", *(f"{arm}-seed-42.json" for arm in ARMS)])
    run = _read(layout.run_json)
    assert run["phases"]["causal"]["status"] == "done" and run["settings"]["phase"] == "all"  # a side phase
    assert run_arms(layout, [42], train_missing=False, echo=None)["qk"] == [str(files.arm_adapter("qk"))]
    code, stdout, err = cli(capsys, "run", "causal", "--quick", "--seeds", "1", "--out", copy)
    assert code == 0 and "phase causal: done already" in stdout


def test_run_route_routes_with_the_runs_adapters_and_its_task_as_negatives(copy, capsys):
    code, _, err = cli(capsys, "run", "route", "--quick", "--seeds", "1", "--out", copy)
    assert code == 0, err
    layout = RunLayout(copy)
    doc = _read(layout.route_compare)
    settings = doc["settings"]
    assert settings["layer"] == 12 and settings["n_layers"] == 22 and settings["per_kind"] == 4
    assert settings["adapters"] == [str(layout.seed(42).phase1_adapter)]
    assert Path(settings["negatives_task"]).stem == "sentiment" and settings["extra_negatives"] > 0
    lens = [r for r in doc["results"] if r["router"]["router"] == "lens"]
    assert [r["seed"] for r in lens] == [42]
    assert _read(layout.run_json)["phases"]["route"]["status"] == "done"


def test_run_readouts_measures_the_base_model_and_each_seeds_adapter_and_verification_judges_them(copy, capsys):
    code, _, err = cli(capsys, "run", "readouts", "--quick", "--seeds", "1", "--out", copy)
    assert code == 0, err
    layout = RunLayout(copy)
    base, trained = (_read(layout.readouts_dir / f"ladder-{name}.json") for name in ("base", "seed-42"))
    assert base["kind"] == trained["kind"] == "introspect.readouts"
    assert base["settings"]["adapter"] is None
    assert trained["settings"]["adapter"] == str(layout.seed(42).phase1_adapter)
    assert base["classifier_layer"] == 12 and 12 in base["layers"] and {0, 21} <= set(base["layers"])
    assert {r["readout"] for r in base["rows"]} == {"logit", "shortcut", "tuned", "jacobian", "patchscope",
                                                    "unembed_probe"}  # fmt: skip
    # the adapter changes what the logit lens reads at the layers it trained (LoRA from the classifier layer down)
    logit = {(doc["settings"]["adapter"], r["layer"]): r["p_expected"] for doc in (base, trained) for r in doc["rows"]
             if r["readout"] == "logit"}  # fmt: skip
    assert logit[(trained["settings"]["adapter"], 12)] != logit[(None, 12)]
    assert len(base["steering"]["cells"]) == 2 * len(base["layers"])  # two classes, each steered to the other
    summary = _read(layout.readouts_summary)
    assert set(summary["models"]) == {"base", "seed-42"} and summary["classifier_layer"] == 12
    code, _, err = cli(capsys, "run", "verify", "--seeds", "1", "--out", copy)
    assert code == 0, err
    claims = {c["id"]: c for c in _read(layout.claims)["claims"]}
    at = summary["models"]["base"]["at_classifier_layer"]
    for name in ("logit", "shortcut", "tuned", "jacobian", "patchscope", "unembed_probe"):
        row = claims[f"base_readout_{name}"]
        judged = "holds" if at[name]["p_expected"] < 0.005 else "fails"
        assert row["verdict"] == ("reported" if name == "unembed_probe" else judged)
        assert row["source"] == "readouts_summary.json"
    assert claims["readouts_first_layer"]["verdict"] == "reported"
    assert claims["steerable_not_decodable"]["measured"].startswith("base: ")
