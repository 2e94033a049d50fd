"""The batched probe fit against scikit-learn's pipeline (``solver="reference"``), on synthetic data shaped like the
guide's (a few prompts per class x d_model features) and on edge cases: the same fold and control accuracies, the
same test probabilities."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from workbench.core import probes
from workbench.core.logistic import solve_logistic
from workbench.core.probes import probe_layers


def _data(seed, n_per=4, d=64, classes=("a", "b", "c", "d"), layers=3, signal=1.0, tests=3):
    """Layer i shifts each class's own feature by signal * i: layer 0 is noise, later layers separate the classes."""
    rng = np.random.default_rng(seed)
    labels = [c for c in classes for _ in range(n_per)]
    x = rng.normal(size=(len(labels), layers, d))
    for i, y in enumerate(labels):
        x[i, :, classes.index(y)] += signal * np.arange(layers)
    return x, labels, rng.normal(size=(tests, layers, d))


def _both(x, labels, test, seed=0):
    layers = list(range(x.shape[1]))
    prompts = [f"t{i}" for i in range(len(test))]
    batched = probe_layers(x, labels, layers, seed, test, prompts).to_dict()
    reference = probe_layers(x, labels, layers, seed, test, prompts, solver="reference").to_dict()
    return batched, reference


def _assert_same(batched, reference, prob_tol=1e-6):
    assert batched.keys() == reference.keys()
    for a, b in zip(batched["layer_results"], reference["layer_results"]):
        assert a["layer"] == b["layer"]
        assert a["fold_accuracies"] == pytest.approx(b["fold_accuracies"], abs=1e-3)
        for key in ("accuracy", "std", "control_accuracy", "selectivity"):
            assert a[key] == pytest.approx(b[key], abs=1e-3), key
    assert len(batched["test_predictions"]) == len(reference["test_predictions"])
    for a, b in zip(batched["test_predictions"], reference["test_predictions"]):
        assert (a["prompt"], a["layer"], a["predicted"]) == (b["prompt"], b["layer"], b["predicted"])
        assert list(a["probabilities"]) == list(b["probabilities"])  # sklearn's classes_ order
        for c in a["probabilities"]:
            assert a["probabilities"][c] == pytest.approx(b["probabilities"][c], abs=prob_tol)
    assert {k: v for k, v in batched.items() if k not in ("layer_results", "test_predictions")} == {
        k: v for k, v in reference.items() if k not in ("layer_results", "test_predictions")
    }


@pytest.mark.parametrize(
    "case",
    [
        dict(seed=0),  # the guide's shape: 4 classes x 4 prompts, 4 folds
        dict(seed=1, d=576, layers=2),  # d_model of the embedded model
        dict(seed=2, classes=("a", "b"), n_per=6),  # binomial
        dict(seed=3, classes=("x", "y", "z"), n_per=7, d=20),  # 5 folds of unequal size
        dict(seed=4, signal=4.0),  # separable from layer 1 on
        dict(seed=5, signal=0.0),  # no signal anywhere
        dict(seed=6, n_per=9, d=8),  # more prompts than features
    ],
)
def test_batched_fit_gives_sklearns_numbers(case):
    batched, reference = _both(*_data(**case))
    _assert_same(batched, reference)


def test_a_constant_feature_keeps_scale_one_as_in_standard_scaler():
    x, labels, test = _data(7, d=32)
    x[:, :, 3] = 2.5  # constant in every fold
    x[:, :, 4] = 0.0
    test[:, :, 3] = 9.0  # a test prompt off the constant: (x - mean) / 1 enters the decision
    batched, reference = _both(x, labels, test)
    _assert_same(batched, reference)


def test_probabilities_match_sklearn_closely_where_its_fit_stops_early():
    """sklearn's lbfgs stops at gtol 1e-4, far from the optimum; the batched fit follows the same iterates."""
    rng = np.random.default_rng(8)
    x, y, t = rng.normal(size=(12, 576)), np.repeat(np.arange(4), 3), rng.normal(size=(5, 576))
    scaler = StandardScaler().fit(x)
    ref = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x), y).predict_proba(scaler.transform(t))
    optimum = LogisticRegression(C=1.0, max_iter=2000, tol=1e-12).fit(scaler.transform(x), y)
    far = np.abs(optimum.predict_proba(scaler.transform(t)) - ref).max()
    probs, _ = solve_logistic(torch.tensor(x)[None], torch.ones(1, 12, dtype=torch.float64), torch.tensor(y)[None],
                              torch.tensor(t)[None], 4)  # fmt: skip
    assert np.abs(probs[0].numpy() - ref).max() < 1e-8 < far


def test_fold_accuracies_are_sklearns_cross_val_scores():
    from sklearn.model_selection import cross_val_score

    x, labels, _ = _data(9, n_per=5, layers=2, signal=0.5)
    fit = probes.fit_batched(x, labels, seed=3)
    for layer in range(2):
        for task, y in enumerate(probes.task_labels(labels, 3)):
            folds = StratifiedKFold(n_splits=probes.n_folds(labels), shuffle=True, random_state=3)
            expected = cross_val_score(probes.make_probe(3), x[:, layer], y, cv=folds)
            assert fit["fold_accuracies"][layer, task] == pytest.approx(expected, abs=1e-3)


def test_layer_groups_give_the_same_numbers(monkeypatch):
    x, labels, test = _data(10, layers=4)
    whole = probes.fit_batched(x, labels, 0, test)
    monkeypatch.setattr(probes, "STACK_BYTES", 1)  # one layer per group
    grouped = probes.fit_batched(x, labels, 0, test)
    assert np.array_equal(whole["fold_accuracies"], grouped["fold_accuracies"])
    assert np.allclose(whole["test_probabilities"], grouped["test_probabilities"], rtol=0, atol=1e-12)


def test_unknown_solver_is_refused():
    x, labels, _ = _data(11, layers=1)
    with pytest.raises(ValueError, match="solver"):
        probe_layers(x, labels, [0], solver="newton")
