"""LoRA ablation on the tiny random Llama with a random (non-zero) adapter: removing every layer's LoRA gives the base
model's logits, removing none changes nothing, the scalings come back after the block (even on an error), one layer's
removal changes only what follows it, and asking for a module the adapter lacks is one error naming what it has."""

from __future__ import annotations

import pytest
import torch

from workbench.causal import ablation
from workbench.core.errors import WorkbenchError
from workbench.core.models import load_model

PROMPTS = ["7 * 8 = ", "12 + 5 = ", "9 - 3 = ", "8 / 2 = "]
TARGETS = ["multiply", "add", "subtract", "divide"]


@pytest.fixture(scope="module")
def adapted(tiny_dir, adapter):
    return load_model(str(tiny_dir), device="cpu", adapter=adapter)


def _logits(lm, prompt="7 * 8 = "):
    with torch.no_grad():
        return lm.bridge(torch.tensor([lm.token_ids(prompt)]))[0]


def test_removing_every_lora_is_the_base_model_and_none_changes_nothing(adapted, tiny_lm):
    whole = _logits(adapted)
    assert not torch.allclose(whole, _logits(tiny_lm))  # the adapter does something
    with ablation.without_lora(adapted, ablation.select(adapted)):
        torch.testing.assert_close(_logits(adapted), _logits(tiny_lm), rtol=1e-5, atol=1e-5)
    with ablation.without_lora(adapted, []):
        torch.testing.assert_close(_logits(adapted), whole, rtol=0, atol=0)
    torch.testing.assert_close(_logits(adapted), whole, rtol=0, atol=0)  # restored


def test_scalings_are_restored_after_an_error(adapted):
    whole = _logits(adapted)
    with pytest.raises(RuntimeError, match="inside"):
        with ablation.without_lora(adapted, ablation.select(adapted, [0, 1])):
            raise RuntimeError("inside")
    torch.testing.assert_close(_logits(adapted), whole, rtol=0, atol=0)


def test_one_layers_removal_leaves_the_layers_below_it_alone(adapted):
    from workbench.core.activations import capture_positions

    before = capture_positions(adapted, "12 + 5 = ", [0, 1, 2])
    with ablation.without_lora(adapted, ablation.select(adapted, [2])):
        after = capture_positions(adapted, "12 + 5 = ", [0, 1, 2])
    torch.testing.assert_close(after[:2], before[:2], rtol=0, atol=0)
    assert not torch.allclose(after[2], before[2])


def test_select_by_group_and_bad_requests(adapted, tiny_lm):
    assert ablation.select(adapted, [1], ["vo"]) == [(1, "o_proj"), (1, "v_proj")]
    assert ablation.select(adapted, None, ["v_proj"]) == [(i, "v_proj") for i in range(4)]
    with pytest.raises(WorkbenchError, match="has no LoRA on k_proj, q_proj: it has o_proj, v_proj"):
        ablation.select(adapted, None, ["qk"])
    with pytest.raises(WorkbenchError, match="layer 7 is out of range"):
        ablation.select(adapted, [7])
    with pytest.raises(WorkbenchError, match="has no adapter"):
        ablation.select(tiny_lm)


def test_the_sweep_brackets_each_layer_between_whole_and_none(adapted, tiny_lm):
    from workbench.core.lens import logit_lens

    result = ablation.ablation_sweep(adapted, PROMPTS, TARGETS, TARGETS, readout_layer=2, max_new_tokens=2)
    assert [r["removed"] for r in result["rows"]] == ["L0", "L1", "L2", "L3"]
    base = logit_lens(tiny_lm, PROMPTS, TARGETS, layer=2, expected=TARGETS)
    assert result["no_adapter"]["lens_expected_p"] == pytest.approx(base.mean_expected_prob, rel=1e-4)
    whole = logit_lens(adapted, PROMPTS, TARGETS, layer=2, expected=TARGETS)
    assert result["whole_adapter"]["lens_expected_p"] == pytest.approx(whole.mean_expected_prob, rel=1e-6)
    above = next(r for r in result["rows"] if r["removed"] == "L3")  # above the readout layer: the lens cannot see it
    assert above["lens_expected_p"] == pytest.approx(result["whole_adapter"]["lens_expected_p"], rel=1e-6)
    per_module = ablation.ablation_sweep(
        adapted, PROMPTS, TARGETS, TARGETS, readout_layer=2, per="module", max_new_tokens=0
    )
    assert [r["removed"] for r in per_module["rows"]] == ["o_proj", "v_proj"] and per_module["whole_adapter"][
        "answers"
    ] is None


def test_ablate_cli_writes_the_sweep_and_bad_input_is_one_line(capsys, tiny_dir, adapter, tmp_path):
    import json

    from helpers import assert_one_line_error, cli

    out = tmp_path / "ablate.json"
    prompts = "|".join(PROMPTS)
    code, stdout, err = cli(
        capsys,
        "introspect",
        "ablate",
        "-o",
        out,
        "-m",
        tiny_dir,
        "--adapter",
        adapter,
        "--prompts",
        prompts,
        "--readout-layer",
        "2",
        "--max-new-tokens",
        "2",
    )
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["kind"] == "introspect.ablate" and [r["removed"] for r in doc["rows"]] == ["L0", "L1", "L2", "L3"]
    assert "no adapter" in stdout and "-L3" in stdout
    for args, needle in [
        (["--per", "head"], "--per 'head'"),
        (["--modules", "qk"], "has no LoRA on k_proj, q_proj"),
        (["--readout-layer", "9"], "out of range"),
    ]:
        bad = tmp_path / "bad.json"
        code, _, err = cli(
            capsys, "introspect", "ablate", "-o", bad, "-m", tiny_dir, "--adapter", adapter, "--prompts", prompts, *args
        )
        assert_one_line_error(code, err, needle)
        assert not bad.exists()
    code, _, err = cli(
        capsys, "introspect", "ablate", "-o", tmp_path / "x.json", "-m", tiny_dir, "--adapter", tmp_path / "none"
    )
    assert_one_line_error(code, err, "adapter_config.json")
