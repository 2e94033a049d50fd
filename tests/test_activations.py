import torch

from workbench.core.activations import capture_last_token

PROMPTS = ["7 * 8 = ", "12 * 5 = ", "123 + 4567 = ", "1 - 1 = ", "48 / 6 = "]


def test_capture_equals_hf_hidden_states_at_last_token(tiny_lm):
    feats = capture_last_token(tiny_lm, PROMPTS)
    assert feats.shape == (len(PROMPTS), tiny_lm.n_layers, tiny_lm.d_model)
    for i, prompt in enumerate(PROMPTS):
        ids = torch.tensor([tiny_lm.token_ids(prompt)])
        with torch.no_grad():
            hidden = tiny_lm.hf_model(ids, output_hidden_states=True).hidden_states
        for layer in range(tiny_lm.n_layers - 1):  # HF applies the final norm to its last hidden state
            torch.testing.assert_close(feats[i, layer], hidden[layer + 1][0, -1], atol=1e-5, rtol=1e-5)


def test_padded_batch_equals_one_at_a_time(tiny_lm):
    batched = capture_last_token(tiny_lm, PROMPTS, batch_size=len(PROMPTS))
    single = torch.cat([capture_last_token(tiny_lm, [p]) for p in PROMPTS])
    assert (batched - single).abs().max() < 1e-4


def test_layer_subset_in_requested_order(tiny_lm):
    full = capture_last_token(tiny_lm, PROMPTS)
    sub = capture_last_token(tiny_lm, PROMPTS, layers=[2, 0])
    assert torch.equal(sub[:, 0], full[:, 2]) and torch.equal(sub[:, 1], full[:, 0])


def test_capture_leaves_no_hooks_behind_and_the_model_still_runs(tiny_lm):
    capture_last_token(tiny_lm, PROMPTS, layers=[1])
    capture_last_token(tiny_lm, PROMPTS)
    assert sum(len(hp._forward_hooks) for hp in tiny_lm.bridge.hook_dict.values()) == 0
    ids = tiny_lm.tokenize(PROMPTS[:1]).input_ids
    with torch.no_grad():
        assert torch.equal(tiny_lm.bridge(ids), tiny_lm.hf_model(ids).logits)
