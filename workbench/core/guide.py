"""The guide (CLASSIFIER_EXPERIMENTS_GUIDE.md) as data: its prompts, its figures, the thresholds that judge them,
and the depth rule that picks the classifier layer. Nothing else in the package types these values.

"guide" always means that document; "seed" always means a random seed.
"""

from __future__ import annotations

OPERATIONS = ("multiply", "add", "subtract", "divide")
# The guide's `generate` defaults: 1000 training records with seed 42, and 200 held out (another seed's)
TRAIN_SAMPLES, EVAL_SAMPLES, DATA_SEED = 1000, 200, 42

# The guide's probe prompts (its `--classes`, four per operation), its `--test` prompts and its logit-lens prompts.
CLASSES = {
    "multiply": ["7 * 8 = ", "12 * 5 = ", "3 * 9 = ", "6 * 7 = "],
    "add": ["23 + 45 = ", "17 + 38 = ", "11 + 22 = ", "5 + 9 = "],
    "subtract": ["50 - 23 = ", "89 - 34 = ", "77 - 11 = ", "40 - 15 = "],
    "divide": ["48 / 6 = ", "81 / 9 = ", "36 / 4 = ", "24 / 3 = "],
}
TEST_PROMPTS = ["11 * 12 = ", "6 * 9 = ", "13 + 14 = ", "25 + 17 = "]
LENS_PROMPTS = ["7 * 8 = ", "12 * 5 = ", "23 + 45 = ", "17 + 38 = "]
TARGETS = list(OPERATIONS)
# The eight lens prompts it scores trained models on: two per operation.
EIGHT_PROMPTS = [
    "7 * 8 = ",
    "12 * 5 = ",
    "23 + 45 = ",
    "17 + 38 = ",
    "50 - 23 = ",
    "89 - 34 = ",
    "48 / 6 = ",
    "81 / 9 = ",
]

# The depth rule: the classifier layer sits at 55% depth (TinyLlama 22 -> 12, Llama-3.2-1B 16 -> 8, granite 40 -> 22).
CLASSIFIER_DEPTH = 0.55
LLAMA_32_1B_LAYER = 9  # what the guide's table says for Llama-3.2-1B, although its own rule gives int(0.55 * 16) = 8


def classifier_layer(n_layers: int) -> int:
    """The guide's rule: int(0.55 * n_layers)."""
    return int(CLASSIFIER_DEPTH * n_layers)


DUAL_REWARD_WEIGHT = 0.4  # w in w * lens CE + (1 - w) * answer CE

# The guide's figures, as it writes them, and the numbers behind them.
LENS_RANGE = (0.36, 0.81)  # "36-81%": the trained lens's correct-operation probability
FIGURES = {
    "probe": "100%",
    "probe_all_layers": "100% at all layers",
    "base_lens": "0%",
    "trained_lens": "36-81%",
    "eight": "8/8",
    "frozen": "frozen (layers 0-12 of 22)",
    "routing": "enables circuit routing (no figure)",
    "answers": "not reported",
    "mechanism": "V/O controls value composition (no figure)",
    "phase1_as_written": "no gradient clipping in phase 1 (no figure)",
}
METHOD_FIGURES = {
    "none": "0%",
    "lora_standard": "~1%",
    "sft_answers": "0%",
    "grpo": "0%",
    "dual_vo": "36-81%",
    "dual_qk": "0/8",
}
TARGET_FIGURES = {"dual_vo": "100% (8/8)", "dual_qk": "0% (0/8)"}

# Verification thresholds: the guide's figures where it gives one, ours where it does not (marked).
THRESHOLDS: dict[str, float] = {
    "probe_accuracy": 1.0,  # the guide's "100%" for the hidden-space classifier
    "min_selectivity": 0.5,  # ours: probe accuracy minus control-task accuracy, at the classifier layer
    "base_lens_max_prob": 0.005,  # below this every target probability rounds to the guide's "0%"
    "trained_lens_min_prob": LENS_RANGE[0],  # the low end of the guide's "36-81%"
    "eight_min_score": 8,  # the guide's "V/O only 8/8"
    "phase2_tolerance": 1e-5,  # ours: the largest lens change at the classifier layer still called unchanged
    "min_answer_gain": 0.01,  # ours: phase 2 must raise greedy answer accuracy by at least this much
    # ours, for notebook 08's causal claims, written before the first causal measurement (issue 15)
    "classifier_min_top1": 0.9,  # a classifier exists: held-out lens top-1 share at the classifier layer
    "qk_max_top1": 0.5,  # "V/O is the mechanism" predicts Q/K-only training stays below this
    "min_routing_dependence": 0.1,  # routing arm minus control arm, answer difference recovered by the state patch
    "max_collapse": 0.5,  # a classifier reading more than this share of prompts as one word has collapsed
}
THRESHOLD_HELP = {
    "probe_accuracy": "probe accuracy that counts as the guide's 100%",
    "min_selectivity": "lowest probe selectivity (accuracy - control) at the classifier layer",
    "base_lens_max_prob": "highest base-model target probability that still rounds to the guide's 0%",
    "trained_lens_min_prob": "lowest held-out correct-operation probability after phase 1 (the guide: 0.36-0.81)",
    "eight_min_score": "lowest top-1 score on the guide's eight prompts after phase 1 (the guide: 8)",
    "phase2_tolerance": "largest lens change at the classifier layer in phase 2 still called unchanged",
    "min_answer_gain": "smallest rise in greedy answer accuracy that phase 2 must bring",
    "classifier_min_top1": "lowest held-out lens top-1 share that counts as a classifier (notebook 08)",
    "qk_max_top1": "highest Q/K-only lens top-1 share still consistent with 'V/O is the mechanism'",
    "min_routing_dependence": "smallest routing-minus-control gain in answer dependence on the classifier state",
    "max_collapse": "largest share of prompts read as one class word before a classifier counts as collapsed",
}
