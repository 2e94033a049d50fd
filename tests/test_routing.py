"""Virtual experts on the tiny random Llama: the calculator against hand-computed answers, each router against an
independent path (HF's own hidden states, scikit-learn's own probe, a hand-computed difference of means), the early exit
(no block above the router's layer runs), fitted routers saved and refused on another model, fallbacks, and scoring."""

from __future__ import annotations

import json
import time
from fractions import Fraction

import numpy as np
import pytest
import torch

from workbench.core.errors import WorkbenchError
from workbench.core.generation import greedy_answers
from workbench.core.guide import OPERATIONS
from workbench.routing import compare, experts, prompts, routers, virtual
from workbench.routing.prompts import RouteItem

# --- the evaluation set -----------------------------------------------------------------------------------------------


def test_every_arithmetic_item_is_answered_exactly_by_the_calculator():
    items = prompts.evaluation_items(per_kind=40) + prompts.training_items(per_kind=32)
    arithmetic = [i for i in items if i.operation]
    assert {i.kind for i in arithmetic} == {"symbol", "word", "mixed"}
    for item in arithmetic:
        assert experts.calculator(item.prompt, item.operation) == str(item.answer), item


def test_training_and_evaluation_sets_do_not_overlap_and_mixed_phrasings_are_held_out():
    train, test = prompts.training_items(), prompts.evaluation_items()
    assert not {i.prompt for i in train} & {i.prompt for i in test if i.kind == "negative"}
    assert {i.kind for i in train} == {"symbol", "word", "negative"}
    counts = {k: sum(i.kind == k for i in test) for k in prompts.KINDS}
    assert counts == {"symbol": 40, "word": 40, "mixed": 40, "negative": len(prompts.NEGATIVES) // 2}
    assert [i.operation for i in test[:8]] == list(OPERATIONS) * 2  # the four operations in turn
    assert prompts.evaluation_items() == test  # a seed fixes the set


def test_negatives_hold_no_two_operand_arithmetic_the_regex_would_take():
    regex = routers.RegexRouter()
    assert all(regex.decide(None, p).operation is None for p in prompts.NEGATIVES)


# --- the calculator ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "operation", "answer"),
    [
        ("7 * 8 = ", "multiply", "56"),
        ("What is seven times eight?", "multiply", "56"),
        ("forty-two minus 50", "subtract", "-8"),
        ("twenty one plus ninety-nine", "add", "120"),
        ("7 / 2 = ", "divide", "3.5"),
        ("1 / 3 = ", "divide", "0.333333"),
        ("84 divided by twelve", "divide", "7"),
        ("__import__('os').system('x') or 1 + 2", "add", "3"),  # operands are read, nothing is evaluated
    ],
)
def test_calculator_answers_exactly(prompt, operation, answer):
    assert experts.calculator(prompt, operation) == answer


@pytest.mark.parametrize(
    ("prompt", "operation", "why"),
    [
        ("12 / 0 = ", "divide", "division by zero"),
        ("The capital of France is", "add", "holds 0 numbers"),
        ("1 + 2 + 3 = ", "add", "holds 3 numbers"),
        ("7 ** 8", "power", "no operation"),
    ],
)
def test_calculator_declines_what_it_cannot_answer(prompt, operation, why):
    with pytest.raises(experts.ExpertDeclined, match=why):
        experts.calculator(prompt, operation)


def test_operands_read_digits_and_words():
    assert experts.operands("What is 12 times thirty-four?") == (Fraction(12), Fraction(34))
    assert experts.operands("seven divided by eight") == (Fraction(7), Fraction(8))


def test_call_expert_records_why_an_expert_did_not_answer():
    def raises(prompt, operation):
        raise RuntimeError("boom")

    def slow(prompt, operation):
        time.sleep(2)
        return "1"

    assert experts.call_expert(experts.calculator, "7 * 8 = ", "multiply", 5) == ("56", None)
    assert experts.call_expert(raises, "x", "add", 5) == (None, "raised RuntimeError: boom")
    assert experts.call_expert(slow, "x", "add", 0.05) == (None, "timed out after 0.05 s")
    assert experts.call_expert(experts.calculator, "9 / 0 = ", "divide", 5) == (None, "declined: division by zero")
    assert experts.call_expert(lambda p, o: None, "x", "add", 5) == (None, "returned no answer")


def test_load_expert_takes_module_function_and_names_what_is_wrong(tmp_path, monkeypatch):
    (tmp_path / "my_experts.py").write_text("def double(prompt, operation):\n    return 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert experts.load_expert("my_experts:double")("p", "add") == 2
    for target, needle in [
        ("my_experts", "module:function"),
        ("nope_module:f", "cannot import"),
        ("my_experts:x", "no function"),
    ]:
        with pytest.raises(WorkbenchError, match=needle):
            experts.load_expert(target)


# --- routers ----------------------------------------------------------------------------------------------------------


def test_regex_router_is_the_original_tools_pattern():
    regex = routers.RegexRouter()
    assert [regex.decide(None, p).operation for p in ["7 * 8 = ", "12 + 5", "9 - 3 =", "8 / 2 = "]] == [
        "multiply",
        "add",
        "subtract",
        "divide",
    ]
    assert regex.decide(None, "What is 7 * 8?").operation is None  # the original anchors at the end
    assert regex.decide(None, "seven times eight").operation is None


def _blocks_run(lm, fn) -> list[int]:
    """Which of the bridge's blocks ran while ``fn()`` did (forward pre-hooks on every block)."""
    ran: list[int] = []
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: ran.append(i)) for i, b in enumerate(lm.bridge.blocks)]
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
    return ran


def test_early_exit_runs_no_block_above_the_router_layer_and_reads_hfs_hidden_state(tiny_lm):
    layer = 1
    probe = routers.fit_router("probe", tiny_lm, prompts.training_items(per_kind=8), layer=layer)
    ran = _blocks_run(tiny_lm, lambda: probe.decide(tiny_lm, "7 * 8 = "))
    assert sorted(set(ran)) == [0, 1]
    assert _blocks_run(tiny_lm, lambda: tiny_lm.bridge(torch.tensor([tiny_lm.token_ids("7 * 8 = ")]))) == [0, 1, 2, 3]
    ids = torch.tensor([tiny_lm.token_ids("7 * 8 = ")])
    with torch.no_grad():
        expected = tiny_lm.hf_model(ids, output_hidden_states=True).hidden_states[layer + 1][0, -1]
    torch.testing.assert_close(routers.early_state(tiny_lm, "7 * 8 = ", layer), expected, rtol=1e-4, atol=1e-5)
    assert probe.decide(tiny_lm, "7 * 8 = ").blocks_run == layer + 1


def test_probe_router_gives_scikit_learns_own_probabilities(tiny_lm):
    from workbench.core.probes import make_probe

    items = prompts.training_items(per_kind=8)
    layer = tiny_lm.classifier_layer
    probe = routers.fit_router("probe", tiny_lm, items, seed=3)
    features = routers.layer_features(tiny_lm, [i.prompt for i in items], layer)
    reference = make_probe(3).fit(features.astype(np.float64), [i.label for i in items])
    tests = [i.prompt for i in prompts.evaluation_items(per_kind=4)]
    expected = reference.predict_proba(routers.layer_features(tiny_lm, tests, layer).astype(np.float64))
    for prompt, row in zip(tests, expected):
        decision = probe.decide(tiny_lm, prompt)
        got = probe.probabilities(routers.early_state(tiny_lm, prompt, layer)).numpy()
        np.testing.assert_allclose(got, row, rtol=1e-3, atol=1e-4)
        label = list(reference.classes_)[int(row.argmax())]
        assert decision.label == label and decision.confidence == pytest.approx(row.max(), abs=1e-4)


def test_direction_router_on_a_hand_computed_example():
    # two arithmetic classes at (2, 0) and (2, 2); negatives at (0, 0): direction = (2, 1), threshold = midpoint
    features = np.array([[2, 0], [2, 0], [2, 2], [2, 2], [0, 0], [0, 0]], dtype=float)
    labels = ["add", "add", "multiply", "multiply", "none", "none"]
    where = dict(layer=0, model="m", d_model=2, n_layers=1)
    router = routers.DirectionRouter.fit(features, labels, **where)
    assert router.direction.tolist() == [2.0, 1.0]
    assert router.threshold == pytest.approx((5.0 + 0.0) / 2) and router.scale == pytest.approx(2.5)
    assert router.classify(torch.tensor([2.0, 0.1])).operation == "add"
    assert router.classify(torch.tensor([2.1, 1.9])).operation == "multiply"
    assert router.classify(torch.tensor([1.0, 0.4])).operation is None  # 2.4 < 2.5: below the midpoint
    assert router.classify(torch.tensor([1.0, 0.6])).operation is not None  # 2.6 > 2.5
    assert router.classify(torch.tensor([0.0, 0.0])).detail["margin"] == pytest.approx(-1.0)  # the negatives' mean


@pytest.mark.parametrize("kind", routers.FITTED)
def test_a_fitted_router_saved_and_loaded_decides_the_same(tiny_lm, tmp_path, kind):
    router = routers.fit_router(kind, tiny_lm, prompts.training_items(per_kind=8), seed=1)
    path = router.save(tmp_path / f"{kind}.json")
    doc = json.loads(path.read_text())
    assert (doc["router"], doc["model"], doc["layer"], doc["task"]) == (kind, tiny_lm.model_id, 2, "arithmetic")
    assert doc["seed"] == 1 and sum(doc["training_counts"].values()) == 16 + len(prompts.NEGATIVES) // 2
    loaded = routers.load_router(path, tiny_lm)
    for item in prompts.evaluation_items(per_kind=4):
        a, b = router.decide(tiny_lm, item.prompt), loaded.decide(tiny_lm, item.prompt)
        assert (a.operation, a.confidence) == (b.operation, pytest.approx(b.confidence, abs=1e-6))


def test_a_router_file_is_refused_on_another_model_or_when_broken(tiny_lm, tmp_path):
    path = routers.fit_router("probe", tiny_lm, prompts.training_items(per_kind=4)).save(tmp_path / "probe.json")
    doc = json.loads(path.read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc | {"model": "HuggingFaceTB/SmolLM2-135M", "n_layers": 30, "d_model": 576}))
    with pytest.raises(WorkbenchError, match="fitted on HuggingFaceTB/SmolLM2-135M .* fit it again on this model"):
        routers.load_router(other, tiny_lm)
    other.write_text(json.dumps(doc | {"layer": 9}))
    with pytest.raises(WorkbenchError, match="layer 9 is out of range"):
        routers.load_router(other, tiny_lm)
    other.write_text("{not json")
    with pytest.raises(WorkbenchError, match="is not a fitted router"):
        routers.load_router(other, tiny_lm)
    with pytest.raises(WorkbenchError, match="does not exist"):
        routers.load_router(tmp_path / "missing.json", tiny_lm)
    with pytest.raises(WorkbenchError, match="holds a probe router, not direction"):
        routers.build_router("direction", tiny_lm, router_file=path)
    with pytest.raises(WorkbenchError, match="fitted at layer 2, not --layer 1"):
        routers.build_router("probe", tiny_lm, router_file=path, layer=1)


def test_lens_router_reads_the_models_own_final_norm_and_unembedding(tiny_lm):
    layer = 2
    words = {"multiply": "multiply", "add": "add", "subtract": "subtract", "divide": "divide"}
    lens = routers.LensRouter(tiny_lm, layer, words, threshold=0.0)
    hf = tiny_lm.hf_model
    for prompt in ["7 * 8 = ", "12 + 5 = ", "The capital"]:
        ids = torch.tensor([tiny_lm.token_ids(prompt)])
        with torch.no_grad():
            resid = hf(ids, output_hidden_states=True).hidden_states[layer + 1][0, -1]
            probs = hf.lm_head(hf.model.norm(resid)).softmax(-1)
        word_ids = [tiny_lm.tokenizer(w, add_special_tokens=False).input_ids[0] for w in words.values()]
        expected = probs[word_ids]
        decision = lens.decide(tiny_lm, prompt)
        assert decision.operation == list(words)[int(expected.argmax())]
        assert decision.confidence == pytest.approx(float(expected.max()), rel=1e-3)
        assert sorted(set(_blocks_run(tiny_lm, lambda p=prompt: lens.decide(tiny_lm, p)))) == [0, 1, 2]
    strict = routers.LensRouter(tiny_lm, layer, words, threshold=1.0)
    assert strict.decide(tiny_lm, "7 * 8 = ").operation is None  # below the threshold the model answers
    with pytest.raises(WorkbenchError, match="out of range"):
        routers.LensRouter(tiny_lm, 4, words)


def test_neural_router_parses_the_word_the_model_writes(tiny_lm):
    neural = routers.NeuralRouter(template="{prompt}", max_new_tokens=3)
    for prompt in ["7 * 8 = ", "12 + 5 = "]:
        written = greedy_answers(tiny_lm, [prompt], 3, use_cache=False)[0]
        decision = neural.decide(tiny_lm, prompt)
        assert written.startswith(decision.detail["written"].split("\n")[0])
        word = (written.strip().split() or [""])[0].strip(".,:;!").lower()
        assert decision.operation == (word if word in OPERATIONS else None)
        assert decision.blocks_run == tiny_lm.n_layers * max(1, decision.detail["new_tokens"])
    with pytest.raises(WorkbenchError, match="no \\{prompt\\}"):
        routers.NeuralRouter(template="no slot")


def test_build_router_names_what_does_not_fit(tiny_lm, tmp_path):
    with pytest.raises(WorkbenchError, match="unknown router 'magic'"):
        routers.build_router("magic", tiny_lm)
    with pytest.raises(WorkbenchError, match="--router-file is for fitted routers"):
        routers.build_router("regex", tiny_lm, router_file=tmp_path / "x.json")
    with pytest.raises(WorkbenchError, match="--layer 7 is out of range"):
        routers.build_router("probe", tiny_lm, layer=7)


# --- the pipeline and its scores --------------------------------------------------------------------------------------


class _Fixed:
    """A router that always picks one operation (what a router sends the calculator decides the fallback)."""

    name = "fixed"

    def __init__(self, operation):
        self.operation = operation

    def decide(self, lm, prompt):
        return routers.Decision(self.operation, 1.0, 0)

    def describe(self):
        return {"router": self.name}


def test_route_answers_with_the_expert_or_falls_back_to_the_model(tiny_lm):
    routed = virtual.route(tiny_lm, _Fixed("multiply"), "7 * 8 = ")
    assert (routed.expert, routed.answer, routed.fallback, routed.new_tokens) == ("calculator", "56", None, 0)
    zero = virtual.route(tiny_lm, _Fixed("divide"), "7 / 0 = ", max_new_tokens=3)
    model_text = greedy_answers(tiny_lm, ["7 / 0 = "], 3, until_integer=True)[0]
    assert (zero.expert, zero.fallback, zero.answer) == ("model", "declined: division by zero", model_text)
    assert zero.new_tokens == len(tiny_lm.tokenizer(model_text, add_special_tokens=False).input_ids)
    kept = virtual.route(tiny_lm, _Fixed(None), "7 * 8 = ", max_new_tokens=3)
    assert (kept.expert, kept.decision, kept.fallback) == ("model", "none", None)
    assert kept.total_s == pytest.approx(kept.decision_s + kept.answer_s)


def test_score_counts_by_hand():
    items = [
        RouteItem("7 * 8 = ", "symbol", "multiply", 56),
        RouteItem("seven plus one", "word", "add", 8),
        RouteItem("2 - 1", "mixed", "subtract", 1),
        RouteItem("Hello", "negative", None, None),
    ]

    def row(decision, expert, answer, tokens=0):
        return virtual.Routed("p", "r", decision, 1.0, 1, expert, answer, None, 0.01, 0.02, tokens, {})

    rows = [
        row("multiply", "calculator", "56"),
        row("none", "model", "9 is it", tokens=3),  # missed: the model answers wrong
        row("add", "calculator", "3"),  # routed, wrong operation
        row("add", "calculator", "?"),  # a negative sent to the calculator
    ]
    scores = virtual.score(items, rows)
    overall = scores["overall"]
    assert overall["routing_accuracy"] == 1 / 4
    assert overall["precision"] == 2 / 3 and overall["recall"] == 2 / 3
    assert overall["answer_accuracy"] == 1 / 3 and overall["expert_call_rate"] == 3 / 4
    assert scores["by_kind"]["negative"]["routing_accuracy"] == 0.0
    counts = dict(zip(scores["confusion"]["labels"], scores["confusion"]["counts"]))
    assert counts["add"][routers.LABELS.index("none")] == 1 and counts["none"][routers.LABELS.index("add")] == 1
    assert scores["timing"]["model_tokens"] == 3 and scores["timing"]["tokens_per_s"] == pytest.approx(3 / 0.02)
    assert scores["timing"]["total_s"]["median"] == pytest.approx(0.03)


def test_evaluate_on_the_tiny_model_keeps_one_row_per_item(tiny_lm):
    items = prompts.evaluation_items(per_kind=2)
    result = virtual.evaluate(tiny_lm, routers.RegexRouter(), items, warmup=1, max_new_tokens=2)
    assert [r["prompt"] for r in result["rows"]] == [i.prompt for i in items]
    symbol = result["metrics"]["by_kind"]["symbol"]
    assert symbol["routing_accuracy"] == 1.0 and symbol["answer_accuracy"] == 1.0  # regex + calculator on symbols
    assert result["metrics"]["by_kind"]["word"]["recall"] == 0.0
    timing = result["metrics"]["timing"]
    assert timing["full_forward_s"]["n"] == len(items) and all(r["full_forward_s"] > 0 for r in result["rows"])
    assert timing["decision_vs_full_forward"] == timing["decision_s"]["median"] / timing["full_forward_s"]["median"]


def test_a_training_seed_may_not_draw_the_evaluation_set_and_adapters_match_seeds():
    with pytest.raises(WorkbenchError, match="evaluation set's own prompts"):
        prompts.training_items(seed=prompts.EVAL_SEED)
    with pytest.raises(WorkbenchError, match="1 adapters for 2 seeds"):
        compare.compare_routers(adapters=["a"], seeds=[1, 2], routers=["lens"])
    with pytest.raises(WorkbenchError, match="unknown router 'magic'"):
        compare.compare_routers(routers=["magic"])


# --- the comparison table and its findings ----------------------------------------------------------------------------


def _metrics(accuracy, symbol, word, decision_s):
    block = {"routing_accuracy": accuracy, "precision": 1.0, "recall": accuracy, "answer_accuracy": accuracy}
    return {
        "overall": block | {"expert_call_rate": 0.5},
        "by_kind": {
            "symbol": {"answer_accuracy": symbol},
            "word": {"answer_accuracy": word},
            "mixed": {"answer_accuracy": word},
            "negative": {"routing_accuracy": 1.0},
        },
        "timing": {
            "decision_s": {"median": decision_s},
            "total_s": {"median": decision_s * 2},
            "full_forward_s": {"median": 0.1},  # timed beside the decisions, as ``evaluate`` does
        },
    }


def test_router_table_and_findings_read_the_numbers():
    comparison = {
        "settings": {"model_id": "m", "n_items": 10, "layer": 16, "n_layers": 30},
        "full_forward_s": {"median": 0.1},
        "results": [
            {"seed": None, "router": {"router": "regex"}, "metrics": _metrics(0.5, 1.0, 0.0, 1e-5)},
            {"seed": 1, "router": {"router": "probe"}, "metrics": _metrics(0.9, 1.0, 0.8, 0.05)},
            {"seed": 2, "router": {"router": "probe"}, "metrics": _metrics(0.7, 0.9, 0.6, 0.07)},
            {"seed": None, "router": {"router": "neural"}, "metrics": _metrics(0.6, 0.5, 0.5, 0.9)},
        ],
    }
    rows = {r["router"]: r for r in compare.router_table(comparison)}
    probe = rows["probe"]
    assert probe["seeds"] == 2 and probe["routing_accuracy"]["mean"] == pytest.approx(0.8)
    assert probe["routing_accuracy"]["std"] == pytest.approx(np.std([0.9, 0.7], ddof=1))
    assert probe["decision_vs_full_forward"] == pytest.approx(0.6) and probe["neural_vs_decision"] == pytest.approx(15)
    text = compare.findings(comparison)
    assert "the early-exit probe router decides in 60 ms, 0.6x of a full forward (meets the 0.6x target)" in text
    assert "15.0x faster than the neural router's generated decision (meets 10x)" in text
    assert "probe answers 95.0% of symbol prompts right (meets 95%)" in text
    assert "neural answers 50.0% of symbol prompts right (misses 95%)" in text
    assert "on word prompts the probe router beats regex (70.0% vs 0.0% answered right)" in text
    assert "on the mixed phrasings no router was fitted on the probe router beats regex (70.0% vs 0.0%" in text
    markdown = compare.table_markdown(compare.router_table(comparison))
    assert "| probe | 2 | 0.800 ± 0.141 |" in markdown and markdown.count("\n") == 5


@pytest.mark.integration
def test_on_smollm2_the_probe_router_sends_every_symbol_prompt_to_the_calculator_after_17_blocks(smol):
    probe = routers.fit_router("probe", smol, prompts.training_items(), seed=0)
    assert probe.layer == 16
    symbol = [i for i in prompts.evaluation_items(per_kind=12) if i.kind == "symbol"]
    result = virtual.evaluate(smol, probe, symbol, warmup=1)
    assert result["metrics"]["overall"]["routing_accuracy"] == 1.0
    assert result["metrics"]["overall"]["answer_accuracy"] == 1.0
    assert {r["blocks_run"] for r in result["rows"]} == {17}
    assert sorted(set(_blocks_run(smol, lambda: probe.decide(smol, symbol[0].prompt)))) == list(range(17))


def test_the_page_text_is_the_table_the_source_and_the_findings():
    comparison = {
        "settings": {"model_id": "m", "n_items": 10, "layer": 16, "n_layers": 30, "per_kind": 2, "seeds": [1]},
        "full_forward_s": {"median": 0.1},
        "results": [{"seed": 1, "router": {"router": "probe"}, "metrics": _metrics(0.9, 1.0, 0.8, 0.05)}],
    }
    text = compare.page_text(comparison)
    assert compare.table_markdown(compare.router_table(comparison)) in text and "| probe | 1 | 0.900 |" in text
    assert text.endswith("**What we found.** " + compare.findings(comparison) + "\n") and "Made by" not in text
    source = {"command": "workbench run route --out runs/x", "git_commit": "abc", "updated": "2026-12-07T10:00"}
    assert "Made by `workbench run route --out runs/x` (git commit `abc`), 2026-12-07." in compare.page_text(
        {**comparison, "source": source}
    )
