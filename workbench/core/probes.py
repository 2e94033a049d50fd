"""Per-layer linear probes: multinomial logistic regression, stratified k-fold CV, a control task for selectivity.

Selectivity follows Hewitt & Liang (2019): the control task gives every prompt (here each prompt is its own word
type) a random label with the class sizes kept; selectivity = task accuracy - control accuracy. A probe that only
memorises its inputs scores as well on the control task and so has selectivity near zero.

How the probes are fitted: every problem of a call (each layer x each fold x the task and its control permutations,
plus one refit per layer on all prompts for the test predictions: 510 for the guide's classes) is stacked and solved at
once by ``logistic.solve_logistic``, which gives scikit-learn's own numbers (see there). ``solver="reference"`` is the
scikit-learn pipeline itself, one fit per problem, which the tests compare against. The folds are always
scikit-learn's StratifiedKFold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from jaxtyping import Float, Shaped
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from .logistic import C, solve_logistic

# Unchanged by the batched solver, which gives scikit-learn's numbers (tests/test_probes_batched.py).
PROBE_METHOD = (
    "StandardScaler + multinomial LogisticRegression(C=1.0, lbfgs, max_iter=2000); "
    "StratifiedKFold(k=min(5, smallest class), shuffle, seed); features = resid_post at the last prompt token"
)
CONTROL_PERMUTATIONS = 3
# The fits are a few dozen prompts x d_model: multi-threaded BLAS only adds sync overhead at that size, and on a
# loaded 2-core machine it made the 30-layer seed probe 3-10x slower (11 s single-threaded vs 32-123 s). The batched
# solve's torch ops are small too (about 100 rounds of ops on [510, 68] tensors): torch runs it on this many threads.
PROBE_BLAS_THREADS = 1
SOLVERS = ("batched", "reference")
STACK_BYTES = 512 * 2**20  # layers are solved in groups whose stacked training features fit in this


def make_probe(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))


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


def task_labels(labels: list[str], seed: int) -> list[Shaped[np.ndarray, " prompt"]]:
    """The task's labels, then its CONTROL_PERMUTATIONS control tasks."""
    return [np.asarray(labels)] + [control_labels(labels, seed, k) for k in range(CONTROL_PERMUTATIONS)]


def cv_folds(y: Shaped[np.ndarray, " prompt"], k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) indices: StratifiedKFold on these labels, as ``cross_val_score(..., cv=folds)`` splits."""
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros((len(y), 1)), y))


def _layer_probe(layer: int, scores: np.ndarray, control: list[np.ndarray]) -> LayerProbe:
    acc, ctl = float(scores.mean()), float(np.mean([c.mean() for c in control]))
    return LayerProbe(layer, acc, float(scores.std()), [float(s) for s in scores], ctl, acc - ctl)


def probe_layer(
    features: Float[np.ndarray, "prompt d_model"],
    labels: list[str],
    layer: int,
    seed: int,
    solver: str = "batched",
    scores: tuple[np.ndarray, list[np.ndarray]] | None = None,
) -> LayerProbe:
    """Cross-validated probe accuracy at one layer. ``scores``: this layer's (task fold accuracies, one array of fold
    accuracies per control task) when a batched fit over all layers has computed them already."""
    if scores is None:
        if solver == "reference":
            from sklearn.model_selection import cross_val_score

            y = np.asarray(labels)
            folds = StratifiedKFold(n_splits=n_folds(labels), shuffle=True, random_state=seed)
            task = cross_val_score(make_probe(seed), features, y, cv=folds)
            control = [
                cross_val_score(make_probe(seed), features, control_labels(labels, seed, k), cv=folds)
                for k in range(CONTROL_PERMUTATIONS)
            ]
            return _layer_probe(layer, task, control)
        fit = fit_batched(np.asarray(features, dtype=np.float64)[:, None], labels, seed)
        scores = fit["fold_accuracies"][0, 0], list(fit["fold_accuracies"][0, 1:])
    return _layer_probe(layer, scores[0], scores[1])


def predict_tests(
    features: Float[np.ndarray, "prompt d_model"],
    labels: list[str],
    test_features: Float[np.ndarray, "test d_model"],
    test_prompts: list[str],
    layer: int,
    seed: int,
    probabilities: Float[np.ndarray, "test cls"] | None = None,
) -> list[TestPrediction]:
    """Refit the probe on all labelled prompts at this layer and predict the test prompts with class probabilities
    (``probabilities``: the refit's, classes in sorted order, when a batched fit has computed them already)."""
    classes = [str(c) for c in np.unique(np.asarray(labels))]
    if probabilities is None:
        probe = make_probe(seed).fit(features, np.asarray(labels))
        probabilities = probe.predict_proba(test_features)
        classes = [str(c) for c in probe.classes_]
    return [
        TestPrediction(p, layer, classes[int(row.argmax())], {c: float(v) for c, v in zip(classes, row)})
        for p, row in zip(test_prompts, probabilities)
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
    solver: str = "batched",
    device: str | torch.device | None = None,
) -> ProbeResult:
    """Probe every layer (``layer`` in the shapes runs over ``layers``). ``solver``: "batched" (all fits in one
    batched solve, on ``device``, default CPU) or "reference" (scikit-learn, one fit per problem)."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, not {solver!r}")
    features = np.asarray(features, dtype=np.float64)
    with_tests = test_features is not None and len(test_features) > 0
    test = np.asarray(test_features, dtype=np.float64) if with_tests else None
    results, tests = [], []
    with threadpool_limits(limits=PROBE_BLAS_THREADS, user_api="blas"):
        fit = fit_batched(features, labels, seed, test, device) if solver == "batched" else None
        for i, layer in enumerate(layers):
            scores = None if fit is None else (fit["fold_accuracies"][i, 0], list(fit["fold_accuracies"][i, 1:]))
            results.append(probe_layer(features[:, i], labels, layer, seed, solver, scores))
            if with_tests:
                probs = None if fit is None else fit["test_probabilities"][i]
                tests += predict_tests(features[:, i], labels, test[:, i], test_prompts, layer, seed, probs)
    return ProbeResult(results, tests, list(dict.fromkeys(labels)), n_folds(labels), seed)


def fit_batched(
    features: Float[np.ndarray, "prompt layer d_model"],
    labels: list[str],
    seed: int,
    test_features: Float[np.ndarray, "test layer d_model"] | None = None,
    device: str | torch.device | None = None,
) -> dict[str, np.ndarray]:
    """Every probe of ``probe_layers`` in one batched solve (in groups of layers when the stack would pass
    STACK_BYTES).

    Returns ``fold_accuracies`` [layer, task (0: the task, 1..: control permutations), fold] and, with test features,
    ``test_probabilities`` [layer, test, class] of the refit on all prompts (classes in sorted order, as sklearn's
    ``classes_``)."""
    n, n_layers, d = features.shape
    per_layer = (len(task_labels(labels, seed)) * n_folds(labels) + 1) * n * d * 8 * 3
    group = max(1, STACK_BYTES // per_layer)
    if group < n_layers:
        parts = [
            _fit_stack(
                features[:, s : s + group],
                labels,
                seed,
                None if test_features is None else test_features[:, s : s + group],
                device,
            )
            for s in range(0, n_layers, group)
        ]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    return _fit_stack(features, labels, seed, test_features, device)


def _fit_stack(features, labels, seed, test_features, device):
    n, n_layers, _ = features.shape
    k = n_folds(labels)
    classes = np.unique(np.asarray(labels))
    tasks = [np.searchsorted(classes, y) for y in task_labels(labels, seed)]
    # one problem per (layer, task, fold), layer-major; then one refit per layer on all prompts
    splits = [cv_folds(y, k, seed) for y in task_labels(labels, seed)]
    train_idx = [tr for folds in splits for tr, _ in folds]
    val_idx = [va for folds in splits for _, va in folds]
    codes = [y for y, folds in zip(tasks, splits) for _ in folds]
    n_cv = len(train_idx)
    if test_features is not None:
        train_idx.append(np.arange(n))
        val_idx.append(None)
        codes.append(tasks[0])
    n_train = max(len(t) for t in train_idx)
    n_val = max(len(v) for v in val_idx if v is not None)
    n_eval = max(n_val, 0 if test_features is None else test_features.shape[0])
    n_problems = len(train_idx)

    # gather indices (padded with row 0, weight 0) shared by every layer
    tr = np.zeros((n_problems, n_train), dtype=np.int64)
    w = np.zeros((n_problems, n_train))
    y = np.zeros((n_problems, n_train), dtype=np.int64)
    ev = np.zeros((n_problems, n_eval), dtype=np.int64)
    for p, (t, v, c) in enumerate(zip(train_idx, val_idx, codes)):
        tr[p, : len(t)], w[p, : len(t)], y[p, : len(t)] = t, 1.0, c[t]
        y[p, len(t) :] = c[t[0]]  # padding rows: a present class (weight 0)
        if v is not None:
            ev[p, : len(v)] = v

    device = torch.device(device or "cpu")
    x = torch.as_tensor(features, dtype=torch.float64, device=device).transpose(0, 1)  # [layer, prompt, d]
    x_train = x[:, torch.as_tensor(tr, device=device)]  # [layer, problem, n_train, d]
    x_eval = x[:, torch.as_tensor(ev, device=device)]
    if test_features is not None:  # the refits evaluate the test prompts
        t = torch.as_tensor(test_features, dtype=torch.float64, device=device).transpose(0, 1)
        x_eval[:, -1, : t.shape[1]] = t
    flat = (n_layers * n_problems,)
    threads = torch.get_num_threads()
    torch.set_num_threads(PROBE_BLAS_THREADS)
    try:
        probs, logits = solve_logistic(
            x_train.reshape(flat + x_train.shape[2:]),
            torch.as_tensor(w, device=device).repeat(n_layers, 1),
            torch.as_tensor(y, device=device).repeat(n_layers, 1),
            x_eval.reshape(flat + x_eval.shape[2:]),
            len(classes),
        )
    finally:
        torch.set_num_threads(threads)
    logits = logits.reshape(n_layers, n_problems, n_eval, -1).cpu().numpy()
    out = {}
    acc = np.zeros((n_layers, n_cv))
    for p in range(n_cv):
        v = val_idx[p]
        predicted = logits[:, p, : len(v)].argmax(-1)  # sklearn's predict: the first largest decision value
        acc[:, p] = (predicted == codes[p][v][None]).sum(-1) / len(v)
    out["fold_accuracies"] = acc.reshape(n_layers, len(tasks), k)
    if test_features is not None:
        out["test_probabilities"] = probs.reshape(n_layers, n_problems, n_eval, -1)[:, -1, : test_features.shape[0]]
        out["test_probabilities"] = out["test_probabilities"].cpu().numpy()
    return out
