"""Per-layer linear probes: multinomial logistic regression, stratified k-fold CV, a control task for selectivity.

Selectivity follows Hewitt & Liang (2019): the control task gives every prompt (here each prompt is its own word
type) a random label with the class sizes kept; selectivity = task accuracy - control accuracy. A probe that only
memorises its inputs scores as well on the control task and so has selectivity near zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from jaxtyping import Float, Shaped
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

PROBE_METHOD = (
    "StandardScaler + multinomial LogisticRegression(C=1.0, lbfgs, max_iter=2000); "
    "StratifiedKFold(k=min(5, smallest class), shuffle, seed); features = resid_post at the last prompt token"
)
CONTROL_PERMUTATIONS = 3
# The probes fit a few dozen prompts x d_model: multi-threaded BLAS only adds sync overhead at that size, and on a
# loaded 2-core machine it made the 30-layer seed probe 3-10x slower (11 s single-threaded vs 32-123 s), same numbers.
PROBE_BLAS_THREADS = 1


def make_probe(seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))


@dataclass
class LayerProbe:
    layer: int
    accuracy: float  # mean CV accuracy on the task
    std: float  # std of the per-fold accuracies
    fold_accuracies: list[float]
    control_accuracy: float  # mean CV accuracy on the control task (random labels, class sizes kept)
    selectivity: float  # accuracy - control_accuracy


@dataclass
class TestPrediction:
    prompt: str
    layer: int
    predicted: str
    probabilities: dict[str, float]


def n_folds(labels: list[str]) -> int:
    return min(5, min(labels.count(c) for c in set(labels)))


def control_labels(labels: list[str], seed: int, k: int) -> Shaped[np.ndarray, " prompt"]:
    """Random labels with the same class sizes (the k-th control permutation of this seed)."""
    return np.random.default_rng([seed, k]).permutation(np.asarray(labels))


def probe_layer(features: Float[np.ndarray, "prompt d_model"], labels: list[str], layer: int, seed: int) -> LayerProbe:
    """Cross-validated probe accuracy at one layer."""
    y = np.asarray(labels)
    folds = StratifiedKFold(n_splits=n_folds(labels), shuffle=True, random_state=seed)
    scores = cross_val_score(make_probe(seed), features, y, cv=folds)
    control = [
        cross_val_score(make_probe(seed), features, control_labels(labels, seed, k), cv=folds).mean()
        for k in range(CONTROL_PERMUTATIONS)
    ]
    acc, ctl = float(scores.mean()), float(np.mean(control))
    return LayerProbe(layer, acc, float(scores.std()), [float(s) for s in scores], ctl, acc - ctl)


def predict_tests(
    features: Float[np.ndarray, "prompt d_model"],
    labels: list[str],
    test_features: Float[np.ndarray, "test d_model"],
    test_prompts: list[str],
    layer: int,
    seed: int,
) -> list[TestPrediction]:
    """Refit the probe on all labelled prompts at this layer and predict the test prompts with class probabilities."""
    probe = make_probe(seed).fit(features, np.asarray(labels))
    probs = probe.predict_proba(test_features)
    classes = [str(c) for c in probe.classes_]
    return [
        TestPrediction(p, layer, classes[int(row.argmax())], {c: float(v) for c, v in zip(classes, row)})
        for p, row in zip(test_prompts, probs)
    ]


@dataclass
class ProbeResult:
    layer_results: list[LayerProbe]
    test_predictions: list[TestPrediction]
    classes: list[str]
    folds: int
    seed: int

    @property
    def best(self) -> LayerProbe:
        return max(self.layer_results, key=lambda r: (r.accuracy, -r.layer))

    def to_dict(self) -> dict:
        return {
            "classes": self.classes,
            "folds": self.folds,
            "seed": self.seed,
            "probe": PROBE_METHOD,
            "control_task": f"random labels, class sizes kept, {CONTROL_PERMUTATIONS} permutations (Hewitt & Liang 2019)",
            "layer_results": [asdict(r) for r in self.layer_results],
            "best_layer": self.best.layer,
            "best_accuracy": self.best.accuracy,
            "test_predictions": [asdict(t) for t in self.test_predictions],
        }


def probe_layers(
    features: Float[np.ndarray, "prompt layer d_model"],
    labels: list[str],
    layers: list[int],
    seed: int = 0,
    test_features: Float[np.ndarray, "test layer d_model"] | None = None,
    test_prompts: list[str] | None = None,
) -> ProbeResult:
    """Probe every layer (``layer`` in the shapes runs over ``layers``)."""
    features = np.asarray(features, dtype=np.float64)
    results, tests = [], []
    with threadpool_limits(limits=PROBE_BLAS_THREADS, user_api="blas"):
        for i, layer in enumerate(layers):
            results.append(probe_layer(features[:, i], labels, layer, seed))
            if test_features is not None and len(test_features):
                tests += predict_tests(
                    features[:, i], labels, np.asarray(test_features[:, i], dtype=np.float64), test_prompts, layer, seed
                )
    return ProbeResult(results, tests, list(dict.fromkeys(labels)), n_folds(labels), seed)
