"""RL with verifiable rewards (`workbench train grpo`): the guide's reward, its prompts, the config's one-line errors,
and a real GRPO run through TRL and peft on the tiny random Llama whose reward has variance, so gradients flow."""

from __future__ import annotations

import json

import pytest
from helpers import assert_one_line_error, cli
from safetensors.torch import load_file

from workbench.core.arithmetic import held_out
from workbench.core.models import load_model
from workbench.core.readouts import lens_readout
from workbench.training.grpo import load_grpo_config, rl_records, train_grpo
from workbench.training.rewards import arithmetic_reward

pytest.importorskip("trl")
OPERATIONS = ["multiply", "add", "subtract", "divide"]


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
    code, _, err = cli(capsys, "train", "grpo", "--config", str(bad))
    assert_one_line_error(code, err, str(bad), "unknown key 'num_generation'; did you mean 'num_generations'")
    code, _, err = cli(capsys, "train", "grpo", "--reward", "workbench.rewards", "--output", str(tmp_path / "o"))
    assert_one_line_error(code, err, "'workbench.rewards' is not module:function")
    code, _, err = cli(capsys, "train", "grpo", "--reward", "no.such.module:f", "--output", str(tmp_path / "o"))
    assert_one_line_error(code, err, "'no.such.module:f' cannot be loaded")
    code, _, err = cli(
        capsys, "train", "grpo", "--reward", "workbench.training.rewards:nope", "--output", str(tmp_path / "o")
    )
    assert_one_line_error(code, err, "'workbench.training.rewards:nope' cannot be loaded")
    assert not (tmp_path / "o" / "metrics.json").exists()


@pytest.mark.slow
def test_grpo_trains_lora_and_logs_reward_kl_and_length(tiny_dir, tmp_path, monkeypatch):
    module = tmp_path / "lengthy.py"  # reward with variance: longer completions score higher
    module.write_text("def longer(completions, **_):\n    return [float(len(c)) / 10 for c in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "grpo"
    cfg = load_grpo_config(
        None,
        {
            "model": str(tiny_dir),
            "output": str(out),
            "reward": "lengthy:longer",
            "max_steps": 3,
            "samples": 16,
            "eval_samples": 8,
            "prompts_per_step": 2,
            "num_generations": 4,
            "lora_rank": 4,
            "learning_rate": 5e-3,
            "temperature": 1.5,
        },
    )
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
    assert metrics["before"]["lens"]["prompts"] == metrics["after"]["lens"]["prompts"] == 8
    prompts = [json.loads(line)["prompt"] for line in (out / "grpo_prompts.jsonl").read_text().splitlines()]
    assert len(prompts) == 16 and all(p.startswith("Calculate: ") for p in prompts)
    # the saved adapter, read by the logit lens (not the trainer's evaluation code), gives the numbers in metrics.json
    heldout = [r["prompt"] for r in held_out([{"prompt": p.removeprefix("Calculate: ")} for p in prompts], 8)]
    for side, adapter in (("before", None), ("after", out)):
        lens = lens_readout(load_model(str(tiny_dir), device="cpu", adapter=adapter), heldout, OPERATIONS)
        assert lens["mean_expected_prob"] == pytest.approx(metrics[side]["lens"]["mean_correct_target_prob"], rel=1e-5)
