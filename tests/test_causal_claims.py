"""The causal experiment's measurements (tiny random Llama + random LoRA) and its verdicts (hand-made summaries)."""

from __future__ import annotations

import json

import pytest

from workbench.causal.patching import arithmetic_pairs, most_common_length
from workbench.core.data import generate_arithmetic
from workbench.core.lens import logit_lens
from workbench.core.models import load_model
from workbench.experiment.causal import interval, measure_adapter, summarise, verdicts

TARGETS = ["multiply", "add", "subtract", "divide"]
PROMPTS = ["7 * 8 = ", "3 + 4 = ", "9 - 2 = ", "8 / 4 = "]


def test_measure_adapter_against_its_parts(tiny_dir, adapter):
    lm = load_model(str(tiny_dir), device="cpu", adapter=str(adapter))
    pairs = most_common_length(lm, arithmetic_pairs(generate_arithmetic(200, 3), "multiply", "add", 6))
    row = measure_adapter(lm, pairs, PROMPTS, TARGETS, TARGETS, layer=2)
    lens = logit_lens(lm, PROMPTS, TARGETS, layer=2, expected=TARGETS)
    assert row["lens"]["top1"] == lens.score["fraction"]
    read = [max(r.target_probs, key=r.target_probs.get) for r in lens.results]
    assert row["lens"]["collapse"] == max(read.count(w) for w in read) / len(read)
    patch = row["state_patch"]
    assert 0 <= patch["follows"] <= 1 and patch["pairs"] <= len(pairs)
    span = patch["answer_diff_source"] - patch["answer_diff_target"]
    assert patch["recovered"] == pytest.approx((patch["answer_diff_patched"] - patch["answer_diff_target"]) / span)
    ablation = row["ablation"]
    assert ablation["whole"] == pytest.approx(lens.mean_expected_prob)
    assert set(ablation["drop_by_layer"]) == {f"L{i}" for i in range(4)}
    assert set(ablation["by_module"]) == {"v_proj", "o_proj"}


def test_interval_is_the_t_interval():
    stat = interval([1.0, 2.0, 3.0])
    assert stat["mean"] == 2.0 and stat["std"] == 1.0
    assert stat["ci"] == pytest.approx([2 - 4.302653 / 3**0.5, 2 + 4.302653 / 3**0.5], rel=1e-5)
    assert interval([0.5])["ci"] is None and interval([])["mean"] is None


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


def test_measured_once_reads_back_only_the_same_settings(tmp_path):
    from workbench.experiment.causal import measured_once

    calls = []

    def measure():
        calls.append(1)
        return {"value": len(calls)}

    path = tmp_path / "m.json"
    assert measured_once(path, {"n": 1}, measure)["value"] == 1
    assert measured_once(path, {"n": 1}, measure)["value"] == 1 and len(calls) == 1
    assert measured_once(path, {"n": 2}, measure)["value"] == 2 and len(calls) == 2


def test_docs_block_replaces_only_its_own_section(tmp_path):
    from workbench.experiment.causal import DOCS_END, DOCS_START, docs_block, write_docs_block

    summary = summarise({"vo": [_row(1.0, 0.4), _row(0.9, 0.6)], "qk": [_row(0.7, 0.2)]})
    document = {"summary": summary, "claims": verdicts(summary), "model": "tiny", "layer": 2, "n_pairs": 6,
                "n_prompts": 8, "seeds": [1, 2]}  # fmt: skip
    block = docs_block(document, "papermill x")
    assert "| phase 1, LoRA on v_proj,o_proj (the guide) | 2 | 0.95 ± 0.07 |" in block
    assert "| phase 1, LoRA on q_proj,k_proj | 1 | 0.70 |" in block and "**fails**" in block
    page = tmp_path / "causal.md"
    page.write_text(f"# Causal\n\nkept\n\n{DOCS_START}\nOLD-BLOCK\n{DOCS_END}\n\ntail\n")
    write_docs_block(document, page, "papermill x")
    text = page.read_text()
    assert text.startswith("# Causal\n\nkept\n\n") and text.endswith("\ntail\n") and "OLD-BLOCK" not in text
    assert block.strip() in text


def test_training_stats_read_the_log(tmp_path):
    from workbench.experiment.causal import training_stats

    rows = [{"step": i, "grad_norm": g, "classifier_loss": 0.1 * i} for i, g in enumerate([0.5, 3.0, 1.0, 2.0], 1)]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert training_stats(tmp_path) == {"steps": 4, "max_grad_norm": 3.0, "share_above_clip": 0.5,
                                        "final_classifier_loss": pytest.approx(0.4)}  # fmt: skip
    assert training_stats(tmp_path / "missing") is None


def test_readme_block_is_rows_of_the_claims_table(tmp_path):
    from workbench.experiment.causal import write_docs_block

    summary = summarise({"vo": [_row(1.0, 0.4)], "qk": [_row(0.7, 0.2)]})
    document = {"summary": summary, "claims": verdicts(summary), "model": "tiny"}
    page = tmp_path / "README.md"
    page.write_text("# Title\n\n| claim | the guide | measured here | verdict | threshold |\n")
    write_docs_block(document, page, "", readme=True)
    lines = page.read_text().splitlines()
    row = next(line for line in lines if line.startswith("| V/O projections are the mechanism"))
    assert row.count(" | ") == 4 and "**fails**" in row and "(docs/causal.md)" in page.read_text()
    assert len(lines) == 3 + 1 + 7  # title, blank, header; a blank; the block: markers, intro, blank, header, rule, row
