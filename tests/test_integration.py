"""The embedded SmolLM2-135M through every real path: GGUF, safetensors cache, bridge, the guide's two commands."""

import json

import pytest
import torch
from helpers import cli

from workbench.core import model_sources, models
from workbench.core.activations import capture_last_token
from workbench.core.guide import CLASSES, LENS_PROMPTS, TEST_PROMPTS
from workbench.core.lens import lens_log_probs, logit_lens

pytestmark = pytest.mark.integration


def test_embedded_model_facts(smol):
    assert smol.model_id == "HuggingFaceTB/SmolLM2-135M-Instruct" and smol.source.kind == "embedded"
    assert (smol.n_layers, smol.d_model, smol.classifier_layer) == (30, 576, 16)
    assert smol.tokenizer.convert_ids_to_tokens(smol.token_ids("7 * 8 = ")) == ["7", "Ġ*", "Ġ", "8", "Ġ=", "Ġ"]


def test_cache_hit_does_not_touch_the_gguf(smol, monkeypatch):
    assert (model_sources.embedded_cache_dir() / "model.safetensors").is_file()

    def no_gguf(*a, **k):
        raise AssertionError("cache hit must not reconvert the GGUF")

    monkeypatch.setattr(model_sources, "_load_gguf", no_gguf)
    again = models.load_model("smollm2-135m", device="cpu")
    for (name, a), b in zip(smol.hf_model.state_dict().items(), again.hf_model.state_dict().values()):
        assert torch.equal(a, b), name


def test_gguf_file_path_equals_cached_model(smol):
    gguf = models.load_model(str(model_sources.embedded_gguf_path()), device="cpu")
    assert gguf.source.kind == "gguf" and gguf.n_layers == 30
    assert gguf.hf_model.config.architectures == ["LlamaForCausalLM"]  # a GGUF config lacks it; TL picks by it
    ids = torch.tensor([smol.token_ids("12 * 5 = ")])
    with torch.no_grad():
        assert torch.equal(gguf.bridge(ids), smol.bridge(ids))


def test_bridge_logits_equal_hf(smol):
    batch = smol.tokenize(LENS_PROMPTS)
    with torch.no_grad():
        assert torch.equal(smol.bridge(batch.input_ids), smol.hf_model(batch.input_ids).logits)


def test_padded_batch_equals_one_prompt_at_a_time(smol):
    """Within 1e-4 relative to each residual vector's norm: SmolLM2's residuals reach |x| ~ 900, where one fp32 ulp is
    6e-5, and batched GEMMs alone (no padding) already differ by ~1e-3 absolute. Lens probabilities within 1e-4."""
    prompts = [p for ps in CLASSES.values() for p in ps] + ["123 * 45 = ", "1 + 1 = "]
    batched = capture_last_token(smol, prompts, batch_size=len(prompts))
    single = torch.cat([capture_last_token(smol, [p]) for p in prompts])
    relative = (batched - single).norm(dim=-1) / single.norm(dim=-1)
    assert relative.max().item() < 1e-4
    with torch.no_grad():
        p_batched = lens_log_probs(smol, batched[:, 16]).exp()
        p_single = lens_log_probs(smol, single[:, 16]).exp()
    assert (p_batched - p_single).abs().max().item() < 1e-4


def test_seed_classifier_command(tmp_path, capsys):
    out = tmp_path / "results" / "classifier.json"
    classes = [a for k, v in CLASSES.items() for a in ("--classes", f"{k}:{'|'.join(v)}")]
    code, _, err = cli(
        capsys, "introspect", "classifier", "-m", "default", *classes, "--test", "|".join(TEST_PROMPTS), "-o", out
    )
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and doc["num_layers"] == 30
    assert doc["classes"] == list(CLASSES) and doc["folds"] == 4
    assert [r["layer"] for r in doc["layer_results"]] == list(range(30))
    assert doc["best_accuracy"] == max(r["accuracy"] for r in doc["layer_results"])
    # the operation is linearly decodable from the residual at the classifier layer, well above the control task
    at16 = doc["layer_results"][16]
    assert at16["accuracy"] >= 0.9 and at16["selectivity"] >= 0.4
    assert len(doc["test_predictions"]) == 4 * 30
    assert out.with_suffix(".html").is_file()


def test_seed_logit_lens_command(tmp_path, capsys):
    out = tmp_path / "results" / "logit_lens.json"
    code, _, err = cli(
        capsys,
        "introspect",
        "logit-lens",
        "-m",
        "default",
        "--prompts",
        "|".join(LENS_PROMPTS),
        "--targets",
        "multiply",
        "--targets",
        "add",
        "--targets",
        "subtract",
        "--targets",
        "divide",
        "--all-layers",
        "--output",
        str(out),
    )
    assert code == 0, err
    assert "warning: target 'subtract' is 2 tokens" in err
    doc = json.loads(out.read_text())
    assert doc["layer"] == 16 and doc["num_layers"] == 30 and len(doc["results"]) == 4
    assert doc["target_token_ids"]["subtract"] == smol_token("sub")
    assert [r["expected"] for r in doc["results"]] == ["multiply", "multiply", "add", "add"]  # from the operators
    for row in doc["results"]:
        assert set(row["target_probs"]) == {"multiply", "add", "subtract", "divide"}
    # the guide's claim for the base model: no vocabulary-aligned classifier (target probability ~ 0%)
    assert doc["mean_expected_prob"] < 0.01 and doc["score"]["correct"] == 0
    assert len(doc["all_layers"]["layers"]) == 30


def smol_token(text):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_sources.embedded_cache_dir())(text, add_special_tokens=False).input_ids[
        0
    ]


def test_lens_at_the_classifier_layer_is_hfs_hidden_state_through_its_own_norm_and_head(smol):
    """The oracle for the lens numbers on the real model: HF's own hidden state after block 16 (``hidden_states[17]``)
    through HF's final norm and lm_head, softmax over the vocabulary, at the last prompt token."""
    words = ["multiply", "add", "subtract", "divide"]
    result = logit_lens(smol, LENS_PROMPTS, words, layer=16)
    ids = {w: smol_token(w) for w in words}
    for prompt, row in zip(LENS_PROMPTS, result.results):
        with torch.no_grad():
            out = smol.hf_model(torch.tensor([smol.token_ids(prompt)]), output_hidden_states=True)
            probs = smol.hf_model.lm_head(smol.hf_model.model.norm(out.hidden_states[17][0, -1])).softmax(-1)
        assert row.top_token_id == int(probs.argmax())
        for word in words:
            assert row.target_probs[word] == pytest.approx(float(probs[ids[word]]), rel=1e-3)
