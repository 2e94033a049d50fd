import shutil

import pytest
import torch

from workbench.core.errors import WorkbenchError
from workbench.core.guide import classifier_layer
from workbench.core.model_sources import resolve
from workbench.core.models import load_model


@pytest.mark.parametrize("n_layers,expected", [(22, 12), (16, 8), (40, 22), (30, 16), (4, 2)])
def test_classifier_layer_rule(n_layers, expected):
    assert classifier_layer(n_layers) == expected


@pytest.mark.parametrize("spec", ["default", "smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_embedded_aliases(spec):
    source = resolve(spec)
    assert source.kind == "embedded" and source.model_id == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_resolve_kinds(tiny_dir, tmp_path):
    assert resolve(str(tiny_dir)).kind == "local"
    assert resolve("TinyLlama/TinyLlama-1.1B-Chat-v1.0").kind == "hub"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve(str(gguf)).kind == "gguf"


def test_local_dir_loads_and_bridge_logits_equal_hf(tiny_lm):
    assert tiny_lm.n_layers == 4 and tiny_lm.classifier_layer == 2 and tiny_lm.source.kind == "local"
    batch = tiny_lm.tokenize(["7 * 8 = ", "12 + 5 = "])
    with torch.no_grad():
        hf = tiny_lm.hf_model(batch.input_ids).logits
        tl = tiny_lm.bridge(batch.input_ids)
    assert torch.equal(hf, tl)


def test_tokenize_right_pads_and_records_lengths(tiny_lm):
    batch = tiny_lm.tokenize(["7 * 8 = ", "12 * 5 = "])
    tokens = tiny_lm.tokenizer.convert_ids_to_tokens(batch.input_ids[0, : batch.lengths[0]])
    assert tokens == ["7", " *", " ", "8", " =", " "]
    assert batch.lengths.tolist() == [6, 7]
    assert batch.input_ids[0, 6].item() == tiny_lm.tokenizer.pad_token_id


def test_a_prompt_without_tokens_is_rejected(tiny_lm):
    """(Too long a prompt is a CLI case in test_robustness; an empty one never gets past the CLI's prompt parser.)"""
    with pytest.raises(WorkbenchError, match="no tokens"):
        tiny_lm.tokenize([""])


def _hub_cache(tiny_dir, cache, repo_id):
    """Lay out a model like huggingface_hub's cache does after a download (models--org--name/snapshots/<rev>)."""
    revision = "0" * 40
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(tiny_dir, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


def test_hub_id_loads_through_from_pretrained_offline(tiny_dir, tmp_path, monkeypatch):
    _hub_cache(tiny_dir, tmp_path, "tiny-org/tiny-llama")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    lm = load_model("tiny-org/tiny-llama", device="cpu")
    assert lm.source.kind == "hub" and lm.model_id == "tiny-org/tiny-llama" and lm.n_layers == 4


def test_hub_id_missing_offline_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(WorkbenchError, match="-m default"):
        load_model("nobody/no-such-model", device="cpu")
