from pathlib import Path

import pytest

from workbench.core.errors import WorkbenchError
from workbench.training.config import build_config, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_seed_configs_load_verbatim():
    p1 = load_config(CONFIGS / "dual_reward_phase1.yaml")
    assert (p1.model, p1.max_steps, p1.batch_size, p1.learning_rate) == (
        "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
        500,
        1,
        0.001,
    )
    assert p1.target_modules == ["v_proj", "o_proj"] and p1.lora_rank == 16
    assert p1.intermediate_loss.enabled and p1.intermediate_loss.layer == 12 and p1.intermediate_loss.weight == 0.4
    p2 = load_config(CONFIGS / "routing_phase2.yaml")
    assert p2.freeze_layers == "0-12" and p2.mask_prompt and p2.adapter == "checkpoints/phase1_classifier"


def test_flags_override_the_file():
    cfg = load_config(CONFIGS / "dual_reward_phase1.yaml", {"model": "default", "max_steps": 7})
    assert cfg.model == "default" and cfg.max_steps == 7 and cfg.learning_rate == 0.001


def test_yaml_is_read_safely(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(WorkbenchError, match="invalid YAML"):
        load_config(path)


def test_lists_are_accepted_for_targets_and_freeze():
    cfg = build_config({"lora_targets": ["q_proj", "k_proj"], "freeze_layers": [0, 1, 2]})
    assert cfg.target_modules == ["q_proj", "k_proj"] and cfg.freeze_layers == "0,1,2"


def test_mask_prompt_follows_the_dual_reward_definition_unless_given():
    assert build_config({}).mask_prompt is False
    assert build_config({"intermediate_loss": {"enabled": True}}).mask_prompt is True  # answer CE on responses only
    assert build_config({"intermediate_loss": {"enabled": True}, "mask_prompt": False}).mask_prompt is False
    assert load_config(CONFIGS / "dual_reward_phase1.yaml").mask_prompt is True
