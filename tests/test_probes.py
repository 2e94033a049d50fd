import numpy as np

from workbench.core.probes import control_labels, n_folds, probe_layers


def _data(separable: bool, seed=0, n_per=8, d=10, classes=("a", "b", "c", "d")):
    rng = np.random.default_rng(seed)
    labels = [c for c in classes for _ in range(n_per)]
    x = rng.normal(size=(len(labels), 2, d))
    if separable:  # layer 1 carries the class in its first dims; layer 0 is noise
        for i, y in enumerate(labels):
            x[i, 1, classes.index(y)] += 10.0
    return x, labels


def test_separable_layer_is_perfect_and_noise_is_near_chance():
    x, y = _data(separable=True)
    result = probe_layers(x, y, layers=[0, 1], seed=0)
    noise, signal = result.layer_results
    assert signal.accuracy == 1.0 and signal.std == 0.0
    assert noise.accuracy < 0.6
    assert signal.selectivity > 0.5 and signal.control_accuracy < 0.6
    assert result.best.layer == 1 and result.folds == 5


def test_folds_follow_smallest_class():
    assert n_folds(["a"] * 4 + ["b"] * 3) == 3
    assert n_folds(["a"] * 9 + ["b"] * 9) == 5


def test_control_labels_keep_class_sizes():
    labels = ["a"] * 5 + ["b"] * 3
    ctl = control_labels(labels, seed=1, k=0)
    assert sorted(ctl.tolist()) == sorted(labels) and ctl.tolist() != labels


def test_test_predictions_have_probabilities_per_layer():
    x, y = _data(separable=True)
    test = x[[0, 8]]
    result = probe_layers(x, y, layers=[0, 1], seed=0, test_features=test, test_prompts=["p0", "p8"])
    assert len(result.test_predictions) == 4
    at1 = [t for t in result.test_predictions if t.layer == 1]
    assert [t.predicted for t in at1] == ["a", "b"]
    for t in result.test_predictions:  # the label named is the one the probe gives the most probability
        assert max(t.probabilities, key=t.probabilities.get) == t.predicted
    assert min(t.probabilities[t.predicted] for t in at1) > 0.9  # a separable layer: confident


def test_same_seed_same_numbers():
    x, y = _data(separable=False, seed=3)
    a = probe_layers(x, y, layers=[0, 1], seed=7).to_dict()
    b = probe_layers(x, y, layers=[0, 1], seed=7).to_dict()
    assert a == b
