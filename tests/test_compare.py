"""The comparison methods on the tiny random Llama: each one trains what it says (its LoRA targets, its loss) for the
same number of steps, and every one is measured by the same evaluation; the tables show mean ± spread over seeds."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from workbench.core.arithmetic import generate_arithmetic, held_out
from workbench.core.data import read_jsonl, write_jsonl
from workbench.core.errors import WorkbenchError
from workbench.core.readouts import lens_readout
from workbench.experiment import compare
from workbench.experiment.compare import (
    METHODS,
    measure,
    methods_table,
    run_method,
    run_methods,
    summarize,
    targets_table,
)

pytest.importorskip("trl")
pytestmark = pytest.mark.slow  # each test trains and measures several adapters (tens of seconds)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    records = generate_arithmetic(32, 42)
    write_jsonl(root / "train.jsonl", records)
    write_jsonl(root / "heldout.jsonl", held_out(records, 8))
    return root


def test_each_method_trains_its_own_targets_and_is_measured_alike(tiny_dir, tiny_lm, data, tmp_path, monkeypatch):
    (tmp_path / "lengthy.py").write_text(
        "def longer(completions, **_):\n    return [len(c) / 10 for c in completions]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # the guide's reward is always 0 on a random model: no GRPO signal
    rows = []
    for method in METHODS:
        out = tmp_path / method
        row = run_method(
            method,
            str(tiny_dir),
            out,
            data / "train.jsonl",
            data / "heldout.jsonl",
            seed=0,
            steps=2,
            rank=4,
            learning_rate=1e-2,
            grpo_learning_rate=1e-2,
            grpo_reward="lengthy:longer",
        )
        rows.append(row)
        assert row["method"] == method and row["heldout_prompts"] == 8 and row["eight_total"] == 8
        if method == "none":
            assert row["steps"] == 0 and row["seed"] is None and not out.exists()
            # the untrained model's held-out number is what the logit lens itself reads on those prompts
            prompts = [r["prompt"] for r in read_jsonl(data / "heldout.jsonl")]
            lens = lens_readout(tiny_lm, prompts, ["multiply", "add", "subtract", "divide"])
            assert row["heldout_correct_prob"] == pytest.approx(lens["mean_expected_prob"], rel=1e-5)
            continue
        weights = load_file(out / "adapter_model.safetensors")
        modules = {k.split(".")[-3] for k in weights if "lora_A" in k}
        assert any("lora_B" in k and v.abs().max() > 0 for k, v in weights.items()), method  # B starts at 0: trained
        expected = {
            "lora_standard": {"q_proj", "k_proj", "v_proj", "o_proj"},
            "grpo": {"q_proj", "k_proj", "v_proj", "o_proj"},
            "sft_answers": {"v_proj", "o_proj"},
            "dual_vo": {"v_proj", "o_proj"},
            "dual_qk": {"q_proj", "k_proj"},
        }
        assert modules == expected[method], (method, modules)
        if method == "grpo":  # trained on the same records, as "Calculate: a op b = " over + - *
            prompts = [json.loads(x)["prompt"] for x in (out / "grpo_prompts.jsonl").read_text().splitlines()]
            assert prompts and all(p.startswith("Calculate: ") and " / " not in p for p in prompts)
        else:
            config = json.loads((out / "config.json").read_text())
            assert config["max_steps"] == 2 and config["mask_prompt"] is (method != "lora_standard")
            assert (config["intermediate_loss_layer"] is not None) is method.startswith("dual")
    base = rows[0]
    assert any(
        r["heldout_correct_prob"] != base["heldout_correct_prob"] for r in rows[1:]
    )  # training changed something
    second = run_method(
        "dual_vo",
        str(tiny_dir),
        tmp_path / "dual_vo_1",
        data / "train.jsonl",
        data / "heldout.jsonl",
        seed=1,
        steps=2,
        rank=4,
        learning_rate=1e-2,
    )
    summary = summarize([*rows, second])
    vo = summary["dual_vo"]
    assert vo["seeds"] == [0, 1] and len(vo["heldout_correct_prob"]["values"]) == 2
    assert "± " in targets_table(summary) and "Dual-reward Q/K" not in methods_table(summary)
    assert methods_table(summary).count("\n") == 2 + 4  # header, rule and five methods
    words = compare.findings({"summary": summary, "steps": 2, "seeds": [0, 1], "eval_samples": 8})
    assert f"V/O reads {vo['eight_top1']['mean']:.3g}/8" in words and "(the guide: 8/8 and 0/8)" in words
    assert "2 seed(s), 8 held-out prompts" in words
    with pytest.raises(WorkbenchError, match="unknown method"):
        run_method("magic", str(tiny_dir), tmp_path / "m", data / "train.jsonl", data / "heldout.jsonl", 0, 2)


def test_run_methods_measures_the_base_once_reuses_the_trainers_numbers_and_resumes(
    tiny_dir, data, tmp_path, monkeypatch
):
    args = (
        str(tiny_dir),
        tmp_path,
        data / "train.jsonl",
        data / "heldout.jsonl",
        [0, 1],
        1,
        ["none", "sft_answers"],
        {"eval_samples": 8},
    )
    rows = run_methods(*args, rank=4)
    assert [(r["method"], r["seed"]) for r in rows] == [("none", None), ("sft_answers", 0), ("sft_answers", 1)]
    assert (tmp_path / "none" / "result.json").is_file() and not (tmp_path / "none" / "seed-0").exists()
    summary = summarize(rows)
    assert summary["none"]["seeds"] == [None] and len(summary["sft_answers"]["exact_match"]["values"]) == 2
    # the trainer's own after-training numbers are what a fresh measurement of the saved adapter gives
    fresh = measure(
        str(tiny_dir), read_jsonl(data / "heldout.jsonl"), adapter=tmp_path / "sft_answers" / "seed-0" / "adapter"
    )
    assert {k: v for k, v in fresh.items() if k != "measurement"} == {
        k: v for k, v in rows[1].items() if k in fresh and k != "measurement"
    }
    monkeypatch.setattr(compare, "run_method", lambda *a, **k: pytest.fail("a saved result was trained again"))
    assert run_methods(*args, rank=4) == rows  # read back
    trained = []
    monkeypatch.setattr(
        compare, "run_method", lambda method, *a, **k: trained.append((method, a[4])) or {"method": method}
    )
    run_methods(*args, rank=4, weight=0.9, grpo_generations=8)  # settings SFT on answers does not use
    assert trained == []
    run_methods(*args[:5], 2, *args[6:], rank=4)  # another step budget: every trained method again, the base not
    assert trained == [("sft_answers", 0), ("sft_answers", 1)]
