"""Three readouts beside the logit lens, each checked against a path that does not go through it: Patchscope (the
identity patch gives the model's own output; another state changes it), the Jacobian lens (TransformerLens's fit
against ``torch.autograd.functional.jacobian`` on the bridge; the last layer is the logit lens) and the probe through
the unembedding (synthetic states: a linear class reaches accuracy 1, the control task stays near chance)."""

import pytest
import torch

from workbench.core.activations import capture_last_token, capture_positions, resid_hook_name
from workbench.core.errors import WorkbenchError
from workbench.lenses.base import LogitLens
from workbench.lenses.jacobian import JacobianReadout, fit_jacobian_lens
from workbench.lenses.patchscope import IDENTITY_PROMPT, Patchscope
from workbench.lenses.unembed_probe import fit_unembed_probe

FIT_PROMPTS = ["7 * 8 = 56", "12 + 5 = 17", "9 - 3 = 6"]


def own_logits(lm, prompt: str) -> torch.Tensor:
    """The HF model's next-token logits at the prompt's last token (no bridge, no hooks)."""
    with torch.no_grad():
        return lm.hf_model(torch.tensor([lm.token_ids(prompt)])).logits[0, -1]


# Patchscope


def test_patchscope_placeholder_is_the_target_prompts_last_token(tiny_lm):
    scope = Patchscope(tiny_lm)
    assert scope.position == len(tiny_lm.token_ids(IDENTITY_PROMPT)) - 1
    assert scope.provenance()["target_prompt"] == IDENTITY_PROMPT
    assert scope.provenance()["placeholder_token"] == "?"
    with pytest.raises(WorkbenchError, match="no tokens"):
        Patchscope(tiny_lm, "")


def test_patchscope_of_the_targets_own_state_is_the_models_output_at_every_layer(tiny_lm):
    scope = Patchscope(tiny_lm, batch_size=2)
    own = capture_positions(tiny_lm, IDENTITY_PROMPT)[:, -1]  # [layer, d]: the state already at the placeholder
    expected = own_logits(tiny_lm, IDENTITY_PROMPT)
    for layer in range(tiny_lm.n_layers):
        got = scope.logits(layer, own[layer].expand(3, -1))  # three rows: two batches
        assert got.shape == (3, expected.shape[0])
        torch.testing.assert_close(got, expected.expand(3, -1), atol=1e-5, rtol=1e-5)


def test_patchscope_of_another_state_changes_the_output_row_by_row(tiny_lm):
    scope = Patchscope(tiny_lm)
    own = capture_positions(tiny_lm, IDENTITY_PROMPT)[:, -1]
    other = capture_last_token(tiny_lm, ["7 * 8 = "])[0]  # [layer, d]
    expected = own_logits(tiny_lm, IDENTITY_PROMPT)
    for layer in range(tiny_lm.n_layers):
        got = scope.logits(layer, torch.stack([other[layer], own[layer]]))
        assert (got[0] - expected).abs().max() > 1e-2  # the patch takes effect
        torch.testing.assert_close(got[1], expected, atol=1e-5, rtol=1e-5)  # and stays in its own row
    last = tiny_lm.n_layers - 1  # patched after the last block: the logit lens of that state
    torch.testing.assert_close(scope.logits(last, other[last:]), LogitLens(tiny_lm).logits(last, other[last:]))


# Jacobian lens


def test_jacobian_lens_matches_autograd_on_the_bridge(tiny_lm):
    layer, prompt, final = 1, FIT_PROMPTS[0], tiny_lm.n_layers - 1
    readout = fit_jacobian_lens(tiny_lm, [prompt], [layer], skip_first_positions=1)
    ids = torch.tensor([tiny_lm.token_ids(prompt)])  # no BOS: the workbench's tokenization

    def final_resid(x):  # the layer's output replaced by x [seq, d] -> the last block's output [seq, d]
        out = {}

        def keep(resid, hook):
            out["h"] = resid[0]
            return resid

        put = [(resid_hook_name(layer), lambda resid, hook: x[None]), (resid_hook_name(final), keep)]
        tiny_lm.bridge.run_with_hooks(ids, fwd_hooks=put)
        return out["h"]

    base = capture_positions(tiny_lm, prompt, [layer])[0].clone()  # a normal tensor, not an inference one
    jac = torch.autograd.functional.jacobian(final_resid, base)  # [seq, d, seq, d]
    valid = list(range(1, ids.shape[1] - 1))  # the first token skipped, the final position left out
    # per source position t: its effects on every valid position (t' >= t by causality) summed; then the mean over t
    expected = torch.stack([jac[valid, :, t, :].sum(0) for t in valid]).mean(0)
    assert readout.lens.n_prompts == 1
    torch.testing.assert_close(readout.lens.jacobians[layer], expected, atol=1e-5, rtol=1e-4)
    resid = torch.randn(2, tiny_lm.d_model)
    torch.testing.assert_close(readout.logits(layer, resid), LogitLens(tiny_lm).logits(layer, resid @ expected.T),
                               atol=1e-4, rtol=1e-4)  # fmt: skip


def test_jacobian_lens_last_layer_is_the_logit_lens_and_it_saves(tiny_lm, tmp_path):
    final = tiny_lm.n_layers - 1
    readout = fit_jacobian_lens(tiny_lm, FIT_PROMPTS)
    assert readout.layers == list(range(tiny_lm.n_layers))
    assert readout.provenance()["n_prompts"] == 3 and readout.provenance()["skip_first_positions"] == 1
    states = capture_last_token(tiny_lm, FIT_PROMPTS)
    got = readout.logits(final, states[:, final])
    expected = torch.stack([own_logits(tiny_lm, p) for p in FIT_PROMPTS])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(readout.logits(1, states[:, 1]), LogitLens(tiny_lm).logits(1, states[:, 1]))
    readout.save(tmp_path / "lens.pt")
    loaded = JacobianReadout.load(tiny_lm, tmp_path / "lens.pt")
    torch.testing.assert_close(loaded.logits(1, states[:, 1]), readout.logits(1, states[:, 1]))
    only_last = fit_jacobian_lens(tiny_lm, FIT_PROMPTS, [final])
    assert only_last.lens is None and only_last.provenance() == {}
    with pytest.raises(WorkbenchError, match="not fitted at layer 0"):
        only_last.logits(0, states[:, 0])
    with pytest.raises(WorkbenchError, match="cannot fit the Jacobian lens"), pytest.warns(UserWarning, match="skip"):
        fit_jacobian_lens(tiny_lm, ["7"], [0])  # one token: no source position


# Probe through the unembedding

CLASS_WORDS = {"mul": "multiply", "add": "add", "div": "divide"}


def synthetic(lm, n_per_class: int = 12, seed: int = 0):
    """States whose class is a linear function of the state: three well-separated clusters in d_model."""
    gen = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(3, lm.d_model, generator=gen)
    y = torch.arange(3).repeat_interleave(n_per_class)
    states = centres[y] + 0.5 * torch.randn(len(y), lm.d_model, generator=gen)
    return states, [list(CLASS_WORDS)[i] for i in y]


def test_unembed_probe_classifies_a_linear_class_and_not_the_control_task(tiny_lm):
    states, labels = synthetic(tiny_lm)
    probe = fit_unembed_probe(tiny_lm, states, labels, CLASS_WORDS, layer=2)
    assert probe.accuracy == 1.0 and probe.train_accuracy == 1.0 and probe.linear_accuracy == 1.0
    assert probe.control_accuracy < 0.6  # chance is 1/3
    assert probe.selectivity == pytest.approx(probe.accuracy - probe.control_accuracy)
    assert probe.rank <= 3
    logits = probe.logits(2, states)
    assert logits.shape == (len(labels), tiny_lm.bridge.cfg.d_vocab)
    ids = torch.tensor([tiny_lm.tokenizer(w, add_special_tokens=False).input_ids[0] for w in CLASS_WORDS.values()])
    among = logits[:, ids].argmax(-1)
    assert [list(CLASS_WORDS)[i] for i in among] == probe.predict(states) == labels
    # the readout is the model's unembedding of A h + b, without the final norm
    torch.testing.assert_close(logits, probe.target(states).float() @ tiny_lm.hf_model.lm_head.weight.T)
    provenance = probe.provenance()
    assert provenance["n_prompts"] == len(labels) and provenance["C"] == 1.0 and provenance["folds"] == 5
    with pytest.raises(WorkbenchError, match="fitted at layer 2"):
        probe.logits(1, states)


def test_unembed_probe_refuses_labels_without_a_word(tiny_lm):
    states, labels = synthetic(tiny_lm, 3)
    with pytest.raises(WorkbenchError, match="no class word"):
        fit_unembed_probe(tiny_lm, states, labels, {"mul": "multiply"}, layer=0)
