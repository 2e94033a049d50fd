"""The text the commands print (workbench.cli.formatters), on hand-built results: every expected line is written out
here by hand, column widths and rounding included."""

from __future__ import annotations

from workbench.cli import formatters as f
from workbench.core.memory import GIB, Estimate
from workbench.training.records import TrainMetrics


def test_probe_table_has_a_row_per_layer_the_best_layer_the_baseline_and_the_best_layers_predictions():
    result = {
        "layer_results": [
            {"layer": 0, "accuracy": 0.5, "std": 0.1, "control_accuracy": 0.5, "selectivity": 0.0},
            {"layer": 12, "accuracy": 1.0, "std": 0.0, "control_accuracy": 0.25, "selectivity": 0.75},
        ],
        "best_layer": 12,
        "best_accuracy": 1.0,
        "folds": 3,
        "bag_of_tokens": {"accuracy": 0.8333, "std": 0.2357},
        "test_predictions": [
            {"layer": 0, "prompt": "4 * 4 = ", "predicted": "add", "probabilities": {"add": 0.6, "multiply": 0.4}},
            {"layer": 12, "prompt": "4 * 4 = ", "predicted": "multiply", "probabilities": {"multiply": 0.9994}},
        ],
    }
    assert f.probe_table(result) == (
        "layer  accuracy     std  control  selectivity\n"
        "    0     0.500   0.100    0.500        0.000\n"
        "   12     1.000   0.000    0.250        0.750\n"
        "best layer 12: accuracy 1.000 (3-fold CV)\n"
        "bag-of-tokens baseline (the prompt's token counts): accuracy 0.833 ± 0.236\n"
        "  '4 * 4 = ' -> multiply (0.999) at layer 12"
    )
    assert f.probe_table({**result, "test_predictions": []}).splitlines()[-1].startswith("bag-of-tokens baseline")


def test_lens_table_has_a_column_per_target_and_a_score_only_when_expected_targets_were_given():
    result = {
        "layer": 2,
        "num_layers": 4,
        "model": "tiny",
        "target_token_ids": {"multiply": 5, "add": 6},
        "results": [
            {"prompt": "7 * 8 = ", "top_token": " ", "top_prob": 0.0134, "target_probs": {"multiply": 0.00906, "add": 0.00785}},
            {"prompt": "12 + 5 = ", "top_token": "17", "top_prob": 0.5, "target_probs": {"multiply": 1e-05, "add": 0.25}},
        ],
        "score": {"correct": 1, "total": 2},
        "mean_expected_prob": 0.0088,
    }  # fmt: skip
    table = (
        "logit lens at layer 2 of 4 (tiny)\n"
        "prompt           top token         p    multiply         add\n"
        "'7 * 8 = '       ' '           0.013    9.06e-03    7.85e-03\n"
        "'12 + 5 = '      '17'          0.500    1.00e-05    2.50e-01"
    )
    score = "score: 1/2 prompts have the expected target as top-1 token; mean expected-target probability 8.80e-03"
    assert f.lens_table(result) == table + "\n" + score
    assert f.lens_table({**result, "score": {"correct": 0, "total": 0}}) == table


STEER = {
    "targets": [" multiply", " add"],
    "baseline": {"output_p": {" multiply": 0.01, " add": 0.02}},
    "cells": [
        {"layer": 1, "strength": 0.0, "kind": "direction", "output_p": {" multiply": 0.01}, "answers_changed": 0.0},
        {"layer": 1, "strength": 0.0, "kind": "control", "output_p": {" multiply": 0.01}, "answers_changed": 0.0},
        {"layer": 1, "strength": 1.5, "kind": "direction", "output_p": {" multiply": 0.035}, "answers_changed": 0.5},
        {"layer": 1, "strength": 1.5, "kind": "control", "output_p": {" multiply": 0.009}, "answers_changed": 0.25},
    ],
}


def test_steer_table_shows_the_first_targets_change_against_the_control_and_the_answers_only_when_generated():
    assert f.steer_table(STEER, [1], [0.0, 1.5], generate=True) == (
        "baseline p(multiply) 0.01; change per layer x strength:\n"
        "layer strength  direction    control  answers changed (dir/ctl)\n"
        "    1        0         +0         +0  0.00/0.00\n"
        "    1      1.5     +0.025     -0.001  0.50/0.25"
    )
    assert f.steer_table(STEER, [1], [1.5], generate=False) == (
        "baseline p(multiply) 0.01; change per layer x strength:\n"
        "layer strength  direction    control\n"
        "    1      1.5     +0.025     -0.001"
    )


def test_lora_ablation_table_rows_whole_none_and_each_removal_with_none_where_not_measured():
    result = {
        "readout_layer": 2,
        "whole_adapter": {"lens_expected_p": 0.5, "lens_top1": 0.75},
        "no_adapter": {"lens_expected_p": 0.25, "lens_top1": 0.0},
        "rows": [
            {"removed": "L0", "lens_expected_p": 0.41236, "lens_top1": 0.125},
            {"removed": "v_proj", "lens_expected_p": None, "lens_top1": None},
        ],
    }
    assert f.lora_ablation_table(result) == (
        "lens at layer 2: mean p(expected class word), top-1 share\n"
        "       whole      0.5000    0.75\n"
        "  no adapter      0.2500    0.00\n"
        "         -L0      0.4124    0.12\n"
        "     -v_proj        None    None"
    )


def test_head_ablation_table_lists_the_ablations_that_lower_the_lens_most_first():
    result = {
        "readout_layer": 1,
        "mode": "mean",
        "baseline": {"lens_expected_p": 0.5},
        "rows": [
            {"layer": 0, "head": "all", "lens_expected_p": 0.3},
            {"layer": 0, "head": 0, "lens_expected_p": 0.45},
            {"layer": 0, "head": 1, "lens_expected_p": 0.55},
            {"layer": 1, "head": 0, "lens_expected_p": 0.2},
        ],
    }
    assert f.head_ablation_table(result, most=3) == (
        "lens at layer 1: mean p(expected class word) 0.5000 unablated; mean-ablated:\n"
        "  L1 head 0: 0.2000\n"
        "  L0 head all: 0.3000\n"
        "  L0 head 0: 0.4500"
    )
    assert len(f.head_ablation_table(result).splitlines()) == 5  # at most 10 rows by default: all four


def test_attribution_summaries_name_the_word_minus_the_other_and_the_largest_heads_by_size():
    result = {
        "layer": 2,
        "total": 0.155,
        "embed": 0.2049,
        "layers": [{"layer": 0, "heads": [-0.017, -0.014, -0.022]}, {"layer": 2, "heads": [0.027, 0.001, 0.0]}],
    }
    assert f.dla_summary(result, "multiply", "add", 6, most=3) == (
        "DLA of multiply - add at layer 2, 6 prompts: total +0.155, embedding +0.205\n"
        "largest heads: L2H0 +0.027, L0H2 -0.022, L0H0 -0.017"
    )
    assert f.dla_summary(result, "multiply", None, 1).startswith("DLA of multiply at layer 2, 1 prompts:")
    assert (
        f.attribution_patching_summary("node", "multiply", None, 2)
        == "attribution patching (node) of multiply, 2 pairs"
    )
    assert (
        f.attribution_patching_summary("edge", "add", "sub", 5) == "attribution patching (edge) of add - sub, 5 pairs"
    )


def test_interchange_table_has_a_line_per_basis():
    result = {
        "effects": {
            "basis": {"lens_effect_mean": -0.013, "lens_effect_std": 0.003, "output_effect_mean": -0.011,
                      "output_effect_std": 0.0031},
            "placebo": {"lens_effect_mean": 0.0, "lens_effect_std": 0.0, "output_effect_mean": 0.002,
                        "output_effect_std": 0.001},
        }
    }  # fmt: skip
    assert f.interchange_table(result) == (
        "   basis: lens effect -0.013 ± 0.003, output effect -0.011 ± 0.003\n"
        " placebo: lens effect +0.000 ± 0.000, output effect +0.002 ± 0.001"
    )


def test_patch_summary_names_each_metrics_largest_cell_and_its_recovered_share_where_measured():
    result = {
        "cells": [{"layer": 0, "pos": -1}, {"layer": 1, "pos": -1}],
        "metrics": {
            "lens_diff": {"pairs": 3, "target_mean": 0.28, "source_mean": 0.306, "mean": [0.28, 0.29],
                          "recovered": [0.0, 0.384]},
            "answer_diff": {"pairs": 2, "target_mean": -0.5, "source_mean": 1.25, "mean": [0.5, -0.1], "recovered": []},
        },
    }  # fmt: skip
    assert f.patch_summary(result) == (
        "lens_diff over 3 pairs: target +0.280, source +0.306\n"
        "  largest: {'layer': 1, 'pos': -1} -> +0.290, recovers 0.38\n"
        "answer_diff over 2 pairs: target -0.500, source +1.250\n"
        "  largest: {'layer': 0, 'pos': -1} -> +0.500"
    )


def test_route_eval_summary_in_milliseconds():
    metrics = {
        "overall": {"routing_accuracy": 0.846, "answer_accuracy": 1 / 3},
        "timing": {"decision_s": {"median": 0.00012}},
    }
    assert f.route_eval_summary("regex", metrics) == (
        "regex: routing accuracy 0.846, answer accuracy 0.333, decision 0.1 ms median"
    )


def _measurement(p: float, correct: int, loss: float, exact: float, greedy: float | None = None) -> dict:
    lens = {"layer": 16, "prompts": 8, "mean_correct_target_prob": p, "top1_score": {"correct": correct, "total": 8},
            "per_operation_prob": {}}  # fmt: skip
    return {"lens": lens, "answer_loss": loss, "answer_exact_match": exact, "prompts": 8, "greedy_accuracy": greedy}


def _metrics(steps: int, before: dict | None, after: dict) -> TrainMetrics:
    doc = {"kind": "sft", "model": "m", "steps": steps, "eval_prompts": 8, "before": before, "after": after}
    return TrainMetrics.from_dict({**doc, "config": {}})


def test_sft_summary_before_and_after_and_only_the_steps_without_a_before():
    metrics = _metrics(50, _measurement(0.000123, 0, 2.5, 0.1), _measurement(0.4567, 6, 0.25, 0.875))
    assert f.sft_summary(metrics, "runs/x") == (
        "trained 50 steps; adapter and metrics in runs/x\n"
        "correct-operation lens probability at layer 16: 1.230e-04 -> 0.457; top-1 6/8\n"
        "held-out answer loss 2.500 -> 0.250; exact match 0.100 -> 0.875"
    )
    resumed = _metrics(50, None, _measurement(0.4567, 6, 0.25, 0.875))
    assert f.sft_summary(resumed, "runs/x") == "trained 50 steps; adapter and metrics in runs/x"


def test_grpo_summary_greedy_accuracy_and_lens_before_and_after():
    metrics = _metrics(4, _measurement(1.5e-05, 0, 3.0, 0.0, greedy=0.25), _measurement(0.002, 1, 2.0, 0.5, greedy=0.5))
    assert f.grpo_summary(metrics, "out") == (
        "trained 4 GRPO steps; adapter, grpo_log.jsonl and metrics.json in out\n"
        "greedy answers correct 0.250 -> 0.500; correct-operation lens probability at layer 16: 1.500e-05 -> 2.000e-03"
    )


def test_memory_summary_in_gib_with_the_shards_and_the_verdict():
    est = Estimate(weights=2 * GIB, trainable=GIB // 2, gradients_and_optimizer=GIB, activations=GIB // 4,
                   what="training step of 4 x 512 tokens")  # fmt: skip
    assert f.memory_summary("m", "bfloat16", est, 2, "cuda", 10 * GIB) == (
        "m in bfloat16: training step of 4 x 512 tokens, sharded over 2\n"
        "  weights 2.00 GiB, trainable 0.50 GiB, gradients + optimizer 1.00 GiB, activations 0.25 GiB\n"
        "  total 3.75 GiB; cuda has 10.0 GiB free: fits"
    )
    lines = f.memory_summary("m", "float32", est, 1, "cpu", 3 * GIB).splitlines()
    assert lines[0] == "m in float32: training step of 4 x 512 tokens"
    assert lines[2] == "  total 3.75 GiB; cpu has 3.0 GiB free: does NOT fit"


def test_run_and_claims_summaries():
    phases = {"generate": {"status": "done", "seconds": 1.4}, "baseline": {"status": "skipped"}}
    assert f.run_summary("runs/x", phases, "runs/x/run.json") == (
        "run folder runs/x: generate done (1 s), baseline skipped (0 s); details in runs/x/run.json"
    )
    claims = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    assert f.claims_summary(claims, claims[1:2], "runs/x/report.md") == (
        "claims: 2 of 3 hold or are reported; report in runs/x/report.md"
    )
