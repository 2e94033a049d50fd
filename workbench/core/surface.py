"""The surface baseline: how well the prompt's tokens alone, without the model, predict the class. A probe on the
residual stream that does no better than this reads the prompt's surface, not a hidden-space classifier."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from .logistic import C
from .probes import n_folds

BAG_OF_TOKENS_METHOD = (
    "multinomial LogisticRegression(C=1.0, lbfgs, max_iter=2000) on the prompt's token counts (the model's own "
    "tokenization); StratifiedKFold(k=min(5, smallest class), shuffle, seed), the probe's folds"
)


def token_counts(token_ids: list[list[int]]) -> np.ndarray:
    """[prompt, distinct token] counts over the tokens these prompts use."""
    vocab = {t: i for i, t in enumerate(sorted({t for ids in token_ids for t in ids}))}
    counts = np.zeros((len(token_ids), len(vocab)))
    for row, ids in enumerate(token_ids):
        for t in ids:
            counts[row, vocab[t]] += 1
    return counts


def bag_of_tokens(token_ids: list[list[int]], labels: list[str], seed: int = 0) -> dict:
    """Cross-validated accuracy of a logistic regression on token counts, with the probe's fold rule and seed."""
    folds = StratifiedKFold(n_splits=n_folds(labels), shuffle=True, random_state=seed)
    model = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    scores = cross_val_score(model, token_counts(token_ids), np.asarray(labels), cv=folds)
    return {
        "method": BAG_OF_TOKENS_METHOD,
        "accuracy": float(scores.mean()),
        "std": float(scores.std()),
        "fold_accuracies": [float(s) for s in scores],
        "distinct_tokens": len({t for ids in token_ids for t in ids}),
    }
