import pytest
import torch

from workbench.core.errors import WorkbenchError
from workbench.core.lens import logit_lens, ranks_of, resolve_targets

PROMPTS = ["7 * 8 = ", "12 + 5 = ", "9 - 3 = ", "8 / 2 = "]
TARGETS = ["multiply", "add", "subtract", "divide"]


def test_lens_at_last_layer_is_the_models_own_distribution(tiny_lm):
    result = logit_lens(tiny_lm, PROMPTS, TARGETS, layer=tiny_lm.n_layers - 1)
    for row in result.results:
        ids = torch.tensor([tiny_lm.token_ids(row.prompt)])
        with torch.no_grad():
            probs = tiny_lm.hf_model(ids).logits[0, -1].softmax(-1)
        assert row.top_token_id == int(probs.argmax())
        assert row.top_prob == pytest.approx(float(probs.max()), rel=1e-4)
        for t in result.targets:
            assert row.target_probs[t.word] == pytest.approx(float(probs[t.token_id]), rel=1e-4, abs=1e-9)
            assert row.target_ranks[t.word] == int((probs > probs[t.token_id]).sum()) + 1


def test_expected_targets_from_operator_and_score(tiny_lm):
    result = logit_lens(tiny_lm, PROMPTS, TARGETS)
    layer = tiny_lm.classifier_layer
    assert result.layer == layer
    assert [r.expected for r in result.results] == TARGETS
    # score and mean read straight off HF: hidden_states[layer + 1] through the model's own final norm and unembedding
    hf, correct, probs_of_expected = tiny_lm.hf_model, 0, []
    for prompt, word in zip(PROMPTS, TARGETS):
        ids = torch.tensor([tiny_lm.token_ids(prompt)])
        with torch.no_grad():
            resid = hf(ids, output_hidden_states=True).hidden_states[layer + 1][0, -1]
            probs = hf.lm_head(hf.model.norm(resid)).softmax(-1)
        (target,) = tiny_lm.tokenizer(word, add_special_tokens=False).input_ids
        correct += int(probs.argmax()) == target
        probs_of_expected.append(float(probs[target]))
    assert result.score == {"correct": correct, "total": 4, "fraction": correct / 4}
    assert result.mean_expected_prob == pytest.approx(sum(probs_of_expected) / 4, rel=1e-4)


def test_explicit_expected_overrides_operator(tiny_lm):
    result = logit_lens(tiny_lm, PROMPTS[:2], TARGETS, expected=["add", "add"])
    assert [r.expected for r in result.results] == ["add", "add"]


def test_all_layers_matches_single_layer_runs(tiny_lm):
    full = logit_lens(tiny_lm, PROMPTS, TARGETS, all_layers=True)
    assert full.layers == list(range(tiny_lm.n_layers))
    for layer in (0, tiny_lm.n_layers - 1):
        single = logit_lens(tiny_lm, PROMPTS, TARGETS, layer=layer)
        for i, row in enumerate(single.results):
            for word in TARGETS:
                assert full.layer_target_probs[word][layer][i] == pytest.approx(row.target_probs[word], rel=1e-5)
                assert full.layer_target_ranks[word][layer][i] == row.target_ranks[word]


def test_multi_token_target_warns_and_reads_first_subtoken(tiny_lm):
    with pytest.warns(UserWarning, match="first sub-token"):
        (t,) = resolve_targets(tiny_lm, ["multiply add"])
    assert t.n_subtokens == 2 and t.token == "multiply"


def test_no_targets(tiny_lm):
    """The other bad targets are CLI cases (test_robustness); an empty list cannot come from the command line."""
    with pytest.raises(WorkbenchError, match="no targets"):
        resolve_targets(tiny_lm, [])


def test_ranks_of():
    lp = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))
    assert ranks_of(lp, torch.tensor([0, 1, 2])).tolist() == [[3, 1, 2], [1, 3, 2]]
