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
    assert result.layer == tiny_lm.classifier_layer
    assert [r.expected for r in result.results] == TARGETS
    correct = sum(r.top_token_id == next(t.token_id for t in result.targets if t.word == r.expected) for r in result.results)
    assert result.score == {"correct": correct, "total": 4, "fraction": correct / 4}
    mean = sum(r.target_probs[r.expected] for r in result.results) / 4
    assert result.mean_expected_prob == pytest.approx(mean)


def test_explicit_expected_overrides_operator(tiny_lm):
    result = logit_lens(tiny_lm, PROMPTS[:2], TARGETS, expected=["add", "add"])
    assert [r.expected for r in result.results] == ["add", "add"]
    with pytest.raises(WorkbenchError, match="one per prompt"):
        logit_lens(tiny_lm, PROMPTS[:2], TARGETS, expected=["add"])
    with pytest.raises(WorkbenchError, match="not among"):
        logit_lens(tiny_lm, PROMPTS[:2], TARGETS, expected=["add", "modulo"])


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


@pytest.mark.parametrize("targets,match", [(["zzzz"], "not in the model's vocabulary"), ([" "], "empty"), ([], "no targets"), (["add", "add"], "repeat")])
def test_bad_targets(tiny_lm, targets, match):
    with pytest.raises(WorkbenchError, match=match):
        resolve_targets(tiny_lm, targets)


def test_layer_out_of_range(tiny_lm):
    with pytest.raises(WorkbenchError, match="out of range"):
        logit_lens(tiny_lm, PROMPTS, TARGETS, layer=tiny_lm.n_layers)


def test_ranks_of():
    lp = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))
    assert ranks_of(lp, torch.tensor([0, 1, 2])).tolist() == [[3, 1, 2], [1, 3, 2]]
