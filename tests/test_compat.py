"""Model compatibility: the architectures of the guide's three models (TinyLlama and Llama-3.2-1B are Llama,
granite-3.1-2b is Granite) and of the embedded SmolLM2 (Llama), each built tiny from its config class with the real
model's number of layers, load through the loader, boot into the bridge, and run the lens, the probe and a
dual-reward training step at the classifier layer int(0.55 * n_layers).

The guide's compatibility table says L9 for Llama-3.2-1B; int(0.55 * 16) is 8. The workbench uses the rule and says so.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import build_tiny_tokenizer

from workbench.core.arithmetic import generate_arithmetic
from workbench.core.data import write_jsonl
from workbench.core.guide import classifier_layer
from workbench.core.lens import lens_log_probs, logit_lens
from workbench.core.models import load_model
from workbench.core.readouts import classifier_probe
from workbench.core.tasks import parse_classes
from workbench.training.config import build_config
from workbench.training.evaluation import lens_metrics
from workbench.training.loop import train

pytestmark = pytest.mark.slow  # a model of the real depth per architecture, trained two steps: seconds each
# (the guide's model, architecture, its layers, int(0.55 * layers))
MODELS = [
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "llama", 22, 12),
    ("meta-llama/Llama-3.2-1B", "llama", 16, 8),  # the guide's table says 9 (core.guide.LLAMA_32_1B_LAYER)
    ("ibm-granite/granite-3.1-2b-base", "granite", 40, 22),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "llama", 30, 16),
]
OPS = {op: op for op in ("multiply", "add", "subtract", "divide")}
GRANITE = {
    "embedding_multiplier": 12.0,
    "residual_multiplier": 0.22,
    "attention_multiplier": 0.015625,
    "logits_scaling": 8.0,
}  # granite-3.1-2b-base's own scalings


def _build(path, arch: str, n_layers: int):
    from transformers import GraniteConfig, GraniteForCausalLM, LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer()
    common = dict(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=n_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
    )
    torch.manual_seed(n_layers)
    if arch == "granite":
        model = GraniteForCausalLM(GraniteConfig(**common, **GRANITE))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("name,arch,n_layers,layer", MODELS, ids=[m[0].split("/")[1] for m in MODELS])
def test_architecture_loads_boots_and_trains(tmp_path, name, arch, n_layers, layer):
    assert classifier_layer(n_layers) == layer
    model_dir = _build(tmp_path / arch, arch, n_layers)
    lm = load_model(str(model_dir), device="cpu")
    assert lm.n_layers == n_layers and lm.classifier_layer == layer
    assert type(lm.hf_model).__name__ == ("GraniteForCausalLM" if arch == "granite" else "LlamaForCausalLM")

    ids = torch.tensor([lm.token_ids("7 * 8 = ")])
    with torch.no_grad():
        bridge_logits, hf_logits = lm.bridge(ids), lm.hf_model(ids).logits
    assert torch.allclose(bridge_logits, hf_logits, atol=1e-5)
    # the lens at the last layer is the model's own next-token distribution (Granite's logit scaling included)
    from workbench.core.activations import capture_last_token

    last = capture_last_token(lm, ["7 * 8 = "], [n_layers - 1])[:, 0]
    assert torch.allclose(lens_log_probs(lm, last)[0], torch.log_softmax(hf_logits[0, -1].float(), -1), atol=1e-4)
    lens = logit_lens(lm, ["7 * 8 = ", "23 + 45 = "], ["multiply", "add"])  # its default layer: the rule's
    assert lens.layer == layer and len(lens.results) == 2

    data = parse_classes(["multiply:7 * 8 = |12 * 5 = |3 * 9 = ", "add:23 + 45 = |17 + 38 = |11 + 22 = "])
    probe = classifier_probe(lm, data, layers=[0, layer, n_layers - 1])
    assert [r["layer"] for r in probe["layer_results"]] == [0, layer, n_layers - 1]
    assert probe["classifier_layer_default"] == layer

    records = tmp_path / "train.jsonl"
    write_jsonl(records, generate_arithmetic(16, 42))
    write_jsonl(tmp_path / "eval.jsonl", generate_arithmetic(8, 5))
    out = tmp_path / "adapter"
    metrics = train(
        build_config(
            {
                "model": str(model_dir),
                "data": str(records),
                "eval_data": str(tmp_path / "eval.jsonl"),
                "output": str(out),
                "max_steps": 2,
                "batch_size": 4,
                "lora_rank": 4,
                "intermediate_loss": {"enabled": True, "layer": "auto"},
            }
        ),
        device="cpu",
        progress=False,
    )
    assert (
        metrics["layer"] == layer and json.loads((out / "config.json").read_text())["intermediate_loss_layer"] == layer
    )
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(torch.isfinite(torch.tensor([r["loss"], r["classifier_loss"]])).all() for r in log)
    # the saved adapter, loaded afresh, gives the trainer's own after-training lens number
    tuned = load_model(str(model_dir), device="cpu", adapter=out)
    held = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert lens_metrics(tuned, held, OPS, layer)["mean_correct_target_prob"] == pytest.approx(
        metrics["after"]["lens"]["mean_correct_target_prob"], rel=1e-5
    )
