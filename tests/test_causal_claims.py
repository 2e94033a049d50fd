"""The causal experiment's measurements (tiny random Llama + random LoRA) and its verdicts (hand-made summaries)."""

from __future__ import annotations

import json

import pytest
import torch

from workbench.causal.patching import Pair, arithmetic_pairs, most_common_length
from workbench.core.arithmetic import generate_arithmetic
from workbench.core.lens import logit_lens
from workbench.core.models import load_model
from workbench.experiment.causal import findings, measure_adapter, summarise, verdicts

TARGETS = ["multiply", "add", "subtract", "divide"]
PROMPTS = ["7 * 8 = ", "3 + 4 = ", "9 - 2 = ", "8 / 4 = "]


def _hf_answer_diff(lm, pair, layer, patch_from=None):
    """log p(source answer's first token) - log p(target answer's first token) at the target's last prompt token,
    from HF's own forward; with ``patch_from`` the state entering block ``layer + 1`` at the last token is the one
    that prompt has there (a plain forward pre-hook: no TransformerLens, no workbench)."""
    block = lm.hf_model.model.layers[layer + 1]
    if patch_from is not None:
        with torch.no_grad():
            hidden = lm.hf_model(torch.tensor([lm.token_ids(patch_from)]), output_hidden_states=True).hidden_states
        state = hidden[layer + 1][0, -1]

        def put(module, args, kwargs):
            x = args[0].clone()
            x[0, -1] = state
            return (x, *args[1:]), kwargs

        handle = block.register_forward_pre_hook(put, with_kwargs=True)
    try:
        with torch.no_grad():
            logp = torch.log_softmax(lm.hf_model(torch.tensor([lm.token_ids(pair.target)])).logits[0, -1], -1)
    finally:
        if patch_from is not None:
            handle.remove()
    first = {}
    for prompt, answer in ((pair.source, pair.source_answer), (pair.target, pair.target_answer)):
        prompt_ids, full = lm.token_ids(prompt), lm.token_ids(prompt + answer)
        first[prompt] = full[len(prompt_ids)]
    return float(logp[first[pair.source]] - logp[first[pair.target]])


def test_measure_adapter_against_its_parts(tiny_dir, adapter):
    """Each number against an independent path: the lens against ``logit_lens``, the state patch against HF's own
    forward with the classifier-layer state swapped in by a plain hook, the whole-adapter ablation row against the
    lens."""
    lm = load_model(str(tiny_dir), device="cpu", adapter=str(adapter))
    pairs = most_common_length(lm, arithmetic_pairs(generate_arithmetic(200, 3), "multiply", "add", 6))
    row = measure_adapter(lm, pairs, PROMPTS, TARGETS, TARGETS, layer=2)
    lens = logit_lens(lm, PROMPTS, TARGETS, layer=2, expected=TARGETS)
    assert row["lens"]["top1"] == lens.score["fraction"]
    read = [max(r.target_probs, key=r.target_probs.get) for r in lens.results]
    assert row["lens"]["collapse"] == max(read.count(w) for w in read) / len(read)
    used = [p for p in pairs if lm.token_ids(p.source + p.source_answer)[len(lm.token_ids(p.source))]
            != lm.token_ids(p.target + p.target_answer)[len(lm.token_ids(p.target))]]  # fmt: skip
    patched = [_hf_answer_diff(lm, p, 2, patch_from=p.source) for p in used]
    plain = [_hf_answer_diff(lm, p, 2) for p in used]
    source = [-_hf_answer_diff(lm, Pair(p.target, p.source, p.target_class, p.source_class, p.target_answer,
                                        p.source_answer), 2) for p in used]  # fmt: skip
    patch = row["state_patch"]
    assert patch["pairs"] == len(used) > 0
    assert patch["answer_diff_patched"] == pytest.approx(sum(patched) / len(used), rel=1e-4, abs=1e-5)
    assert patch["answer_diff_target"] == pytest.approx(sum(plain) / len(used), rel=1e-4, abs=1e-5)
    assert patch["answer_diff_source"] == pytest.approx(sum(source) / len(used), rel=1e-4, abs=1e-5)
    assert patch["follows"] == sum(d > 0 for d in patched) / len(used)
    ablation = row["ablation"]
    assert ablation["whole"] == pytest.approx(lens.mean_expected_prob)
    assert set(ablation["drop_by_layer"]) == {f"L{i}" for i in range(4)}
    assert set(ablation["by_module"]) == {"v_proj", "o_proj"}


def _row(top1, recovered, collapse=0.25):
    return {"lens": {"top1": top1, "collapse": collapse}, "state_patch": {"recovered": recovered}}


def test_verdicts_follow_the_thresholds():
    summary = summarise(
        {
            "vo": [_row(1.0, 0.4), _row(0.95, 0.5)],
            "qk": [_row(0.9, 0.3), _row(0.7, 0.2)],
            "routing": [_row(1.0, 0.5), _row(1.0, 0.6), _row(1.0, 0.55)],
            "control": [_row(0.0, 0.2), _row(0.0, 0.3), _row(0.0, 0.25)],
            "noclip": [_row(1.0, 0.1), _row(0.25, 0.1, collapse=1.0)],
        }
    )
    by_id = {row["id"]: row for row in verdicts(summary)}
    assert by_id["mechanism_vo"]["verdict"] == "fails"  # Q/K reaches 0.8 > 0.5
    assert summary["routing_minus_control"]["mean"] == pytest.approx(0.3)
    assert by_id["routing_uses_classifier"]["verdict"] == "holds"
    assert by_id["phase1_as_written"]["verdict"] == "mixed"
    assert verdicts(summary, {"qk_max_top1": 0.9})[0]["verdict"] == "holds"
    assert {r["id"] for r in verdicts(summarise({"vo": [_row(1.0, 0.4)]}))} == set()


def test_verification_judges_notebook_08s_summary_with_its_thresholds(tmp_path):
    from workbench.core.results import write_result
    from workbench.experiment.claims import collect, judge

    assert not [r for r in judge(collect(tmp_path)) if r["id"] == "mechanism_vo"]  # no summary: no causal rows
    summary = summarise({"vo": [_row(1.0, 0.4), _row(0.95, 0.5)], "qk": [_row(0.9, 0.3), _row(0.7, 0.2)]})
    write_result(tmp_path / "causal_summary.json", "causal.summary", {"summary": summary, "claims": []})
    row = next(r for r in judge(collect(tmp_path)) if r["id"] == "mechanism_vo")
    assert row["verdict"] == "fails" and row["source"] == "causal_summary.json" and "Q/K 0.80" in row["measured"]
    row = next(r for r in judge(collect(tmp_path), {"qk_max_top1": 0.9}) if r["id"] == "mechanism_vo")
    assert row["verdict"] == "holds"


def test_cached_result_reads_back_only_the_same_settings(tmp_path):
    from workbench.core.results import cached_result

    calls = []

    def measure():
        calls.append(1)
        return {"value": len(calls)}

    path = tmp_path / "m.json"
    assert cached_result(path, "causal.measure", {"n": 1}, measure) == {"value": 1}
    assert cached_result(path, "causal.measure", {"n": 1}, measure) == {"value": 1} and len(calls) == 1
    assert cached_result(path, "causal.measure", {"n": 2}, measure) == {"value": 2} and len(calls) == 2


def test_page_text_is_the_arms_table_the_claims_and_the_findings():
    from workbench.experiment.causal import page_text

    summary = summarise({"vo": [_row(1.0, 0.4), _row(0.9, 0.6)], "qk": [_row(0.7, 0.2)]})
    document = {"summary": summary, "claims": verdicts(summary), "model": "tiny", "layer": 2, "n_pairs": 6,
                "n_prompts": 8, "seeds": [1, 2], "task": "sentiment", "pair": ["good =", "bad ="]}  # fmt: skip
    text = page_text(document)
    assert "| phase 1, LoRA on v_proj,o_proj (the guide) | 2 | 0.95 ± 0.07 |" in text
    assert "| phase 1, LoRA on q_proj,k_proj | 1 | 0.70 |" in text and "**fails**" in text
    assert "task sentiment, classifier layer 2, 6 prompt pairs such as `good =` → `bad =`" in text
    assert text.rstrip().endswith(findings(summary, verdicts(summary))) and "Made by" not in text
    source = {"command": "workbench run causal --out runs/x", "git_commit": "abc", "updated": "2026-12-07T10:00"}
    assert "Made by `workbench run causal --out runs/x` (git commit `abc`), 2026-12-07." in page_text(
        {**document, "source": source}
    )


def test_training_stats_read_the_log(tmp_path):
    from workbench.experiment.causal import training_stats

    rows = [{"step": i, "grad_norm": g, "classifier_loss": 0.1 * i} for i, g in enumerate([0.5, 3.0, 1.0, 2.0], 1)]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert training_stats(tmp_path) == {"steps": 4, "max_grad_norm": 3.0, "share_above_clip": 0.5,
                                        "final_classifier_loss": pytest.approx(0.4)}  # fmt: skip
    assert training_stats(tmp_path / "missing") is None
