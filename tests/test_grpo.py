"""RL with verifiable rewards (`workbench train grpo`): the guide's reward, its prompts, the config's one-line errors,
and a real GRPO run through TRL and peft on the tiny random Llama whose reward has variance, so gradients flow."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from test_cli import assert_one_line_error, cli
from workbench.core.errors import WorkbenchError
from workbench.train.grpo import load_grpo_config, load_reward, rl_records, train_grpo
from workbench.train.rewards import arithmetic_reward

pytest.importorskip("trl")


def test_the_seeds_reward_reads_the_first_integer():
    completions = ["56 is the answer", " 12\n13", "no number", "-3", [{"content": "42"}]]
    assert arithmetic_reward(completions, answer=["56", "13", "0", "-3", "42"]) == [1.0, 0.0, 0.0, 1.0, 1.0]


def test_rl_prompts_are_the_seeds():
    records = rl_records(40, 42)
    assert len(records) == 40 and all(r["prompt"].startswith("Calculate: ") for r in records)
    assert {r["operation"] for r in records} == {"multiply", "add", "subtract"}
    for r in records:
        a, op, b = r["prompt"].removeprefix("Calculate: ").removesuffix(" = ").split(" ")
        assert str({"*": int(a) * int(b), "+": int(a) + int(b), "-": int(a) - int(b)}[op]) == r["answer"]


def test_config_and_reward_errors(tmp_path, capsys):
    bad = tmp_path / "g.yaml"
    bad.write_text("num_generation: 4\n")
    with pytest.raises(WorkbenchError, match="unknown key 'num_generation'; did you mean 'num_generations'"):
        load_grpo_config(bad)
    with pytest.raises(WorkbenchError, match="not module:function"):
        load_reward("workbench.rewards")
    with pytest.raises(WorkbenchError, match="cannot be loaded"):
        load_reward("workbench.rewards:nope")
    code, _, err = cli(capsys, "train", "grpo", "--config", str(bad))
    assert_one_line_error(code, err, "num_generations")
    code, _, err = cli(capsys, "train", "grpo", "--reward", "no.such.module:f", "--output", str(tmp_path / "o"))
    assert_one_line_error(code, err, "no.such.module:f")
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_grpo_trains_lora_and_logs_reward_kl_and_length(tiny_dir, tmp_path, monkeypatch):
    module = tmp_path / "lengthy.py"  # reward with variance: longer completions score higher
    module.write_text("def longer(completions, **_):\n    return [float(len(c)) / 10 for c in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "grpo"
    cfg = load_grpo_config(None, {"model": str(tiny_dir), "output": str(out), "reward": "lengthy:longer", "max_steps": 3,
                                  "samples": 16, "eval_samples": 8, "prompts_per_step": 2, "num_generations": 4,
                                  "lora_rank": 4, "learning_rate": 5e-3, "temperature": 1.5})
    metrics = train_grpo(cfg)
    log = [json.loads(line) for line in (out / "grpo_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    for row in log:
        assert {"reward", "kl", "completions/mean_length", "loss"} <= set(row)
        assert 0 < row["completions/mean_length"] <= 8
    assert any(r["reward_std"] > 0 for r in log)  # the groups differ, so there is a signal
    weights = load_file(out / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in weights.items())  # B starts at zero: it was trained
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    assert metrics["kind"] == "train.grpo" and metrics["eval_prompts"] == 8
    for side in ("before", "after"):
        assert 0 <= metrics[side]["greedy_accuracy"] <= 1 and metrics[side]["lens"]["prompts"] == 8
    assert all(r["prompt"].startswith("Calculate: ") for r in map(json.loads, (out / "grpo_prompts.jsonl").read_text().splitlines()))
