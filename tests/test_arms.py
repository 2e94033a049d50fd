"""The causal experiment's control arms (``workbench.experiment.arms``) from a run's resolved configs: each arm is its
seed's phase-1 or phase-2 settings with one change, the values the run wrote as ``auto``/``through-classifier`` stay
so (each depth resolves its own layer), the run's data/ is used wherever the folder now is, and a missing adapter is
one line naming the phase that makes it."""

from __future__ import annotations

import json

import pytest

from workbench.core.errors import WorkbenchError
from workbench.experiment.arms import arm_config, run_arms
from workbench.experiment.layout import RunLayout
from workbench.training.config import build_config
from workbench.training.loop import as_resolved


def _resolved(cfg_values: dict, frozen: list[int], loss_layer: int | None) -> dict:
    """A config.json as `train` writes it: the resolved values, ``as_written`` and the extra keys."""
    cfg = build_config(cfg_values)
    return {**as_resolved(cfg, loss_layer, frozen, "float32"), "eval_layer": 12, "total_steps": 4}


@pytest.fixture
def run(tmp_path):
    layout = RunLayout(tmp_path / "moved")
    files = layout.seed(42)
    for path in (files.phase1_adapter, files.phase2_adapter, layout.data_dir):
        path.mkdir(parents=True)
    layout.train_data.write_text("")
    layout.heldout_data.write_text("")
    common = {"model": "m", "data": "/old/run/data/train.jsonl", "eval_data": "/old/run/data/heldout.jsonl",
              "max_steps": 4, "seed": 42, "learning_rate": 1e-3}  # fmt: skip
    phase1 = {**common, "output": "/old/p1", "intermediate_loss": {"enabled": True, "layer": "auto", "weight": 0.4}}
    phase2 = {**common, "output": "/old/p2", "adapter": "/old/p1", "freeze_layers": "through-classifier",
              "learning_rate": 5e-4, "mask_prompt": True}  # fmt: skip
    files.phase1_config.write_text(json.dumps(_resolved(phase1, [], 12)))
    files.phase2_config.write_text(json.dumps(_resolved(phase2, list(range(13)), None)))
    return layout


def test_each_arm_is_its_phases_settings_with_one_change(run):
    files = run.seed(42)
    qk, noclip, control = (arm_config(files, arm) for arm in ("qk", "noclip", "control"))
    assert qk.lora_targets == "q_proj,k_proj" and noclip.max_grad_norm == 0 and control.adapter is None
    assert qk.intermediate_loss.layer == "auto" and qk.intermediate_loss.weight == 0.4 and qk.learning_rate == 1e-3
    assert noclip.lora_targets == "v_proj,o_proj" and noclip.max_steps == 4 and noclip.seed == 42
    assert control.freeze_layers == "through-classifier" and control.learning_rate == 5e-4 and control.mask_prompt
    assert {c.data for c in (qk, noclip, control)} == {str(run.train_data)}  # the run's data/, not the old path
    assert {c.eval_data for c in (qk, noclip, control)} == {str(run.heldout_data)}
    assert qk.output == str(files.arm_adapter("qk")) and control.resume


def test_a_missing_adapter_names_the_phase_that_makes_it(run):
    with pytest.raises(WorkbenchError, match=r"phase1_adapter has no adapter: run `workbench run phase1 --out"):
        run_arms(run, [42])
    (run.seed(42).phase1_adapter / "adapter_config.json").write_text("{}")
    (run.seed(42).phase2_adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(WorkbenchError, match=r"qk_adapter is not trained: run `workbench run causal --out"):
        run_arms(run, [42], train_missing=False)
