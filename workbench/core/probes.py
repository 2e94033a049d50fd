"""Per-layer linear probes: multinomial logistic regression, stratified k-fold CV, a control task for selectivity.

Selectivity follows Hewitt & Liang (2019): the control task gives every prompt (here each prompt is its own word
type) a random label with the class sizes kept; selectivity = task accuracy - control accuracy. A probe that only
memorises its inputs scores as well on the control task and so has selectivity near zero.

How the probes are fitted (``solver="batched"``, the default): every problem of a call (each layer x each fold x the
task and its control permutations, plus one refit per layer on all prompts for the test predictions: 510 for the
guide's classes) is stacked and solved at once in float64 torch, on one thread. Each problem is exactly
``make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))`` fitted by scikit-learn: the features
are standardised on that problem's training rows as StandardScaler does (population std; a feature it calls constant
keeps scale 1); the objective is sklearn's (mean cross-entropy + ``||W||^2 / (2 C n)``, intercept unpenalised;
multinomial softmax over K coefficient rows for three or more classes, binomial with one row for two); and the
solver is scipy's L-BFGS-B as sklearn calls it (memory 10, gtol 1e-4 on sklearn's gradient, ftol 64 eps, the
MINPACK-2 line search), replayed elementwise over the stack. sklearn's fits stop at gtol 1e-4, well short of the
optimum (probabilities off by up to 1e-2 there), so a solver run to convergence would not give sklearn's numbers;
replaying its iterations does: the same predictions and probabilities within about 1e-10. The penalty keeps every
iterate in the span of the training rows, and L-BFGS only takes inner products, so each problem runs in an
orthonormal basis of that span (a QR of its standardised rows): n_train + 1 parameters per class instead of
d_model + 1, the same iterates. ``solver="reference"`` is the scikit-learn pipeline itself, one fit per problem,
which the tests compare against. The folds are always scikit-learn's StratifiedKFold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from jaxtyping import Float, Shaped
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

# Unchanged by the batched solver, which gives these fits' numbers (tests/test_golden.py compares this text too).
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
C = 1.0  # inverse L2 strength, sklearn's LogisticRegression default
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


def standardize(
    x: Float[torch.Tensor, "problem n d"], w: Float[torch.Tensor, "problem n"]
) -> tuple[Float[torch.Tensor, "problem 1 d"], Float[torch.Tensor, "problem 1 d"]]:
    """StandardScaler's mean and scale over the rows with weight 1: population variance; a feature whose variance is
    within the two-pass algorithm's error bound of zero (sklearn's ``_is_constant_feature``) keeps scale 1."""
    count = w.sum(1)[:, None, None]
    mean = (x * w[..., None]).sum(1, keepdim=True) / count
    var = (((x - mean) * w[..., None]) ** 2).sum(1, keepdim=True) / count
    eps = torch.finfo(torch.float64).eps
    constant = var <= count * eps * var + (count * mean * eps) ** 2
    return mean, torch.where(constant, torch.ones_like(var), var.sqrt())


def solve_logistic(
    x_train: Float[torch.Tensor, "problem n d"],
    w_train: Float[torch.Tensor, "problem n"],
    y_train: torch.Tensor,
    x_eval: Float[torch.Tensor, "problem m d"],
    n_classes: int,
    c: float = C,
) -> tuple[Float[torch.Tensor, "problem m cls"], Float[torch.Tensor, "problem m cls"]]:
    """``make_pipeline(StandardScaler(), LogisticRegression(C=c)).fit(x_train[p][w_train[p] == 1], y)`` for every
    problem p at once; returns its ``predict_proba`` and decision values on ``x_eval[p]`` (classes absent from a
    problem's training rows: probability 0, decision -inf). Rows of weight 0 are padding."""
    mean, scale = standardize(x_train, w_train)
    xs = (x_train - mean) / scale * w_train[..., None]
    xe = (x_eval - mean) / scale
    # the coefficients stay in the span of the standardised training rows: work in an orthonormal basis of it
    basis, _ = torch.linalg.qr(xs.transpose(1, 2))  # [problem, d, r]
    z = torch.cat([xs @ basis, torch.ones_like(xs[..., :1])], -1) * w_train[..., None]  # [problem, n, r + 1]
    ze = torch.cat([xe @ basis, torch.ones_like(xe[..., :1])], -1)
    onehot = torch.nn.functional.one_hot(y_train, n_classes).to(z.dtype) * w_train[..., None]
    present = onehot.sum(1) > 0  # [problem, cls]
    n_present = present.sum(1)
    if bool((n_present < 2).any()):
        raise ValueError("a probe's training fold holds only one class")
    # two classes: sklearn's binomial model, one coefficient row (for the second class); the first row stays 0
    first = present & (present.cumsum(1) == 1)
    free = present & ~(first & (n_present == 2)[:, None])
    problem = _Problem(z, w_train, onehot, present, free, basis, c)
    theta = _lbfgsb(problem).reshape(z.shape[0], n_classes, z.shape[-1])
    logits = (ze @ theta.transpose(1, 2)).masked_fill(~present[:, None], -torch.inf)
    return torch.softmax(logits, -1), logits


class _Problem:
    """sklearn's objective for a stack of problems, in the reduced coordinates: mean CE over the training rows plus
    ``||W||^2 / (2 C n)``, and the largest |gradient| in sklearn's own coordinates (W = B basis^T)."""

    def __init__(self, z, w, onehot, present, free, basis, c):
        self.z, self.w, self.onehot, self.basis = z, w, onehot, basis
        self.mask = torch.zeros_like(onehot[:, :1]).masked_fill(~present[:, None], -torch.inf)
        self.count = w.sum(1)
        self.l2 = 1.0 / (c * self.count)
        n_classes, dim = onehot.shape[-1], z.shape[-1]
        self.shape = (n_classes, dim)
        self.fixed = ~free[..., None].expand(-1, n_classes, dim).reshape(len(z), n_classes * dim)

    def __call__(self, x, i):
        """Objective and gradient at x [len(i), K * (r + 1)] for the problems i."""
        th = x.reshape(len(i), *self.shape)
        z, w, onehot, count, l2 = self.z[i], self.w[i], self.onehot[i], self.count[i], self.l2[i]
        logits = z @ th.transpose(1, 2) + self.mask[i]
        lse = torch.logsumexp(logits, -1, keepdim=True)
        ce = ((lse[..., 0] - (logits.masked_fill(onehot == 0, 0) * onehot).sum(-1)) * w).sum(-1)
        coef = th[..., :-1]
        f = ce / count + 0.5 * l2 * (coef**2).sum((1, 2))
        resid = (torch.exp(logits - lse) - onehot) * w[..., None] / count[:, None, None]
        grad = resid.transpose(1, 2) @ z
        grad[..., :-1] += l2[:, None, None] * coef
        return f, grad.reshape(len(i), -1).masked_fill(self.fixed[i], 0.0)

    def converged(self, g, i, tol):
        """sklearn's stopping test: max |gradient| over its coef (K x d) and intercepts <= tol. A coef row's entries
        are its reduced row's dot products with orthonormal vectors, so they lie between that row's norm / sqrt(d) and
        its norm: only the problems those bounds leave open need the rows in full."""
        g = g.reshape(len(i), *self.shape)
        intercept = g[..., -1].abs().amax(1)
        row = g[..., :-1].norm(dim=-1).amax(1)
        out = torch.maximum(intercept, row) <= tol
        open_ = ~out & (torch.maximum(intercept, row / self.basis.shape[1] ** 0.5) <= tol)
        if bool(open_.any()):
            j = open_.nonzero().squeeze(1)
            full = (g[j, :, :-1] @ self.basis[i[j]].transpose(1, 2)).abs().amax((1, 2))
            out[j] = torch.maximum(full, intercept[j]) <= tol
        return out


# scipy's L-BFGS-B as sklearn calls it: maxcor 10, gtol = tol = 1e-4, ftol 64 eps, maxls 50; MINPACK-2 line search
# (dcsrch) with ftol 1e-3, gtol 0.9, xtol 0.1. With no bounds L-BFGS-B's step is the L-BFGS step -H g (H from B0 =
# theta I), the first one -g scaled to length 1, and the line search starts from 1.
LBFGS_MEMORY, LBFGS_GTOL, LBFGS_MAXITER, LBFGS_MAXLS = 10, 1e-4, 2000, 50
LS_FTOL, LS_GTOL, LS_XTOL, STPMAX = 1e-3, 0.9, 0.1, 1e10
EPS = float(np.finfo(float).eps)


def _where(cond, a, b):
    return torch.where(cond, a, b)


def _dcstep(stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax):
    """MINPACK-2 dcstep, elementwise: a safeguarded cubic/quadratic step and the new bracketing interval."""
    sgnd = dp * torch.sign(dx)
    c1 = fp > fx
    c2 = ~c1 & (sgnd < 0)
    c3 = ~c1 & ~c2 & (dp.abs() < dx.abs())
    c4 = ~c1 & ~c2 & ~c3

    theta = 3 * (fx - fp) / (stp - stx) + dx + dp
    s = torch.maximum(torch.maximum(theta.abs(), dx.abs()), dp.abs())
    disc = (theta / s) ** 2 - (dx / s) * (dp / s)
    # case 1: a higher function value, the minimum is bracketed
    g1 = s * disc.sqrt()
    g1 = _where(stp < stx, -g1, g1)
    r1 = ((g1 - dx) + theta) / (((g1 - dx) + g1) + dp)
    stpc1 = stx + r1 * (stp - stx)
    stpq1 = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2) * (stp - stx)
    f1 = _where((stpc1 - stx).abs() < (stpq1 - stx).abs(), stpc1, stpc1 + (stpq1 - stpc1) / 2)
    # case 2: lower value, derivatives of opposite sign
    g2 = s * disc.sqrt()
    g2 = _where(stp > stx, -g2, g2)
    r2 = ((g2 - dp) + theta) / (((g2 - dp) + g2) + dx)
    stpc2 = stp + r2 * (stx - stp)
    stpq = stp + (dp / (dp - dx)) * (stx - stp)
    f2 = _where((stpc2 - stp).abs() > (stpq - stp).abs(), stpc2, stpq)
    # case 3: lower value, same sign, the derivative's magnitude decreases
    g3 = s * disc.clamp(min=0).sqrt()
    g3 = _where(stp > stx, -g3, g3)
    r3 = ((g3 - dp) + theta) / ((g3 + (dx - dp)) + g3)
    stpc3 = _where((r3 < 0) & (g3 != 0), stp + r3 * (stx - stp), _where(stp > stx, stpmax, stpmin))
    f3b = _where((stpc3 - stp).abs() < (stpq - stp).abs(), stpc3, stpq)
    f3b = _where(stp > stx, torch.minimum(stp + 0.66 * (sty - stp), f3b), torch.maximum(stp + 0.66 * (sty - stp), f3b))
    f3u = _where((stpc3 - stp).abs() > (stpq - stp).abs(), stpc3, stpq)
    f3u = torch.maximum(stpmin, torch.minimum(stpmax, f3u))
    f3 = _where(brackt, f3b, f3u)
    # case 4: lower value, same sign, the derivative does not decrease
    theta4 = 3 * (fp - fy) / (sty - stp) + dy + dp
    s4 = torch.maximum(torch.maximum(theta4.abs(), dy.abs()), dp.abs())
    g4 = s4 * ((theta4 / s4) ** 2 - (dy / s4) * (dp / s4)).sqrt()
    g4 = _where(stp > sty, -g4, g4)
    r4 = ((g4 - dp) + theta4) / (((g4 - dp) + g4) + dy)
    f4 = _where(brackt, stp + r4 * (sty - stp), _where(stp > stx, stpmax, stpmin))

    stpf = _where(c1, f1, _where(c2, f2, _where(c3, f3, f4)))
    brackt = brackt | c1 | c2
    new_y = c1 | (~c1 & (sgnd < 0))
    y_from_p = c1
    sty, fy, dy = (
        _where(y_from_p, stp, _where(new_y, stx, sty)),
        _where(y_from_p, fp, _where(new_y, fx, fy)),
        _where(y_from_p, dp, _where(new_y, dx, dy)),
    )
    stx, fx, dx = _where(c1, stx, stp), _where(c1, fx, fp), _where(c1, dx, dp)
    del c4
    return stx, fx, dx, sty, fy, dy, stpf, brackt


class _LineSearch:
    """MINPACK-2 dcsrch for a stack of problems (elementwise state)."""

    def start(self, f, g, stp):
        self.brackt = torch.zeros_like(f, dtype=torch.bool)
        self.stage1 = torch.ones_like(f, dtype=torch.bool)
        self.finit, self.ginit, self.gtest = f, g, LS_FTOL * g
        self.width = torch.full_like(f, STPMAX)
        self.width1 = self.width / 0.5
        zero = torch.zeros_like(f)
        self.stx, self.fx, self.gx = zero, f, g
        self.sty, self.fy, self.gy = zero, f, g
        self.stmin, self.stmax = zero, stp + 4.0 * stp

    def restrict(self, keep):
        for name, value in vars(self).items():
            setattr(self, name, value[keep])

    def extend(self, other, take):
        """Replace the state of the problems ``take`` (a mask) by ``other``'s (same length)."""
        for name, value in vars(self).items():
            setattr(self, name, torch.where(take, getattr(other, name), value))

    def step(self, f, g, stp):
        """One dcsrch call after an evaluation; returns (finished: CONVERGENCE or a WARNING, the next stp)."""
        ftest = self.finit + stp * self.gtest
        self.stage1 = self.stage1 & ~((f <= ftest) & (g >= 0))
        warn = (self.brackt & ((stp <= self.stmin) | (stp >= self.stmax))) | (
            self.brackt & (self.stmax - self.stmin <= LS_XTOL * self.stmax)
        )
        warn = warn | ((stp == STPMAX) & (f <= ftest) & (g <= self.gtest))
        warn = warn | ((stp == 0) & ((f > ftest) | (g >= self.gtest)))
        finished = warn | ((f <= ftest) & (g.abs() <= LS_GTOL * (-self.ginit)))
        modified = self.stage1 & (f <= self.fx) & (f > ftest)
        gt = self.gtest
        fx = _where(modified, self.fx - self.stx * gt, self.fx)
        fy = _where(modified, self.fy - self.sty * gt, self.fy)
        gx = _where(modified, self.gx - gt, self.gx)
        gy = _where(modified, self.gy - gt, self.gy)
        fp = _where(modified, f - stp * gt, f)
        gp = _where(modified, g - gt, g)
        stx, fx, gx, sty, fy, gy, new, brackt = _dcstep(
            self.stx, fx, gx, self.sty, fy, gy, stp, fp, gp, self.brackt, self.stmin, self.stmax
        )
        fx = _where(modified, fx + stx * gt, fx)
        fy = _where(modified, fy + sty * gt, fy)
        gx = _where(modified, gx + gt, gx)
        gy = _where(modified, gy + gt, gy)
        bisect = brackt & ((sty - stx).abs() >= 0.66 * self.width1)
        new = _where(bisect, stx + 0.5 * (sty - stx), new)
        width1 = _where(brackt, self.width, self.width1)
        width = _where(brackt, (sty - stx).abs(), self.width)
        stmin = _where(brackt, torch.minimum(stx, sty), new + 1.1 * (new - stx))
        stmax = _where(brackt, torch.maximum(stx, sty), new + 4.0 * (new - stx))
        new = new.clamp(0.0, STPMAX)
        stuck = (brackt & ((new <= stmin) | (new >= stmax))) | (brackt & (stmax - stmin <= LS_XTOL * stmax))
        new = _where(stuck, stx, new)
        keep = finished  # a finished search keeps its state as it was
        for name, value in (
            ("stx", stx), ("fx", fx), ("gx", gx), ("sty", sty), ("fy", fy), ("gy", gy), ("brackt", brackt),
            ("width", width), ("width1", width1), ("stmin", stmin), ("stmax", stmax),
        ):  # fmt: skip
            setattr(self, name, _where(keep, getattr(self, name), value))
        return finished, _where(finished, stp, new)


def _lbfgsb(problem: _Problem) -> torch.Tensor:
    """scipy.optimize.minimize(method="L-BFGS-B") from x = 0 with sklearn's options, for every problem at once."""
    z = problem.z
    n_prob, size = z.shape[0], problem.fixed.shape[1]
    dev, dt = z.device, z.dtype
    every = torch.arange(n_prob, device=dev)
    x = torch.zeros(n_prob, size, dtype=dt, device=dev)
    f, g = problem(x, every)
    done = problem.converged(g, every, LBFGS_GTOL)
    s_hist = torch.zeros(n_prob, LBFGS_MEMORY, size, dtype=dt, device=dev)  # newest last
    y_hist = torch.zeros_like(s_hist)
    rho = torch.zeros(n_prob, LBFGS_MEMORY, dtype=dt, device=dev)
    col = torch.zeros(n_prob, dtype=torch.long, device=dev)
    theta = torch.ones(n_prob, dtype=dt, device=dev)
    iters = torch.zeros(n_prob, dtype=torch.long, device=dev)
    d = torch.zeros_like(x)
    t, fold, gold = x.clone(), f.clone(), g.clone()
    stp, gdold = torch.zeros_like(f), torch.zeros_like(f)
    ifun = torch.zeros_like(col)
    ls = _LineSearch()
    ls.start(f, f, f)

    def direction(i):
        """-H g, H the L-BFGS inverse from B0 = theta I over the stored pairs (newest last); -g / theta with none."""
        q = g[i]
        used = int(col[i].max())
        sh, yh = s_hist[i, LBFGS_MEMORY - used :], y_hist[i, LBFGS_MEMORY - used :]
        rh = rho[i, LBFGS_MEMORY - used :] * (
            torch.arange(used, device=dev)[None] >= (used - col[i])[:, None]
        )  # slots a problem has not filled count for nothing
        alpha = []
        for j in range(used - 1, -1, -1):
            a = rh[:, j] * (sh[:, j] * q).sum(-1)
            alpha.append(a)
            q = q - a[:, None] * yh[:, j]
        r = q / theta[i, None]
        for j in range(used):
            b = rh[:, j] * (yh[:, j] * r).sum(-1)
            r = r + sh[:, j] * (alpha[used - 1 - j] - b)[:, None]
        return -r

    def begin(i):
        """Start an iteration (a new direction and line search) for the problems i; returns those that failed."""
        d[i] = direction(i)
        dnorm = d[i].norm(dim=-1)
        stp[i] = _where(iters[i] == 0, torch.clamp(1.0 / dnorm, max=STPMAX), torch.ones_like(dnorm))
        t[i], fold[i], gold[i] = x[i], f[i], g[i]
        gd = (g[i] * d[i]).sum(-1)
        gdold[i] = gd
        fresh = _LineSearch()
        fresh.start(f, f, f)
        fresh.restrict(torch.zeros(n_prob, dtype=torch.bool, device=dev))
        sub = _LineSearch()
        sub.start(f[i], gd, stp[i])
        for name in vars(ls):
            full = getattr(ls, name).clone()
            full[i] = getattr(sub, name)
            setattr(ls, name, full)
        x[i] = t[i] + stp[i, None] * d[i]
        ifun[i] = 1
        return i[gd >= 0]

    def restart(i):
        """Line search failure: back to the iteration's start point, memory dropped (an error with no memory)."""
        x[i], f[i], g[i] = t[i], fold[i], gold[i]
        hopeless = col[i] == 0
        done[i[hopeless]] = True
        again = i[~hopeless]
        col[again], theta[again] = 0, 1.0
        if len(again):
            failed = begin(again)
            if len(failed):
                done[failed] = True

    todo = every[~done]
    if len(todo):
        failed = begin(todo)
        if len(failed):
            restart(failed)
    for _ in range(LBFGS_MAXITER * 4):
        i = (~done).nonzero().squeeze(1)
        if len(i) == 0:
            break
        f[i], g[i] = problem(x[i], i)
        gd = (g[i] * d[i]).sum(-1)
        sub = _LineSearch()
        for name in vars(ls):
            setattr(sub, name, getattr(ls, name)[i])
        finished, new_stp = sub.step(f[i], gd, stp[i])
        for name in vars(ls):
            full = getattr(ls, name).clone()
            full[i] = getattr(sub, name)
            setattr(ls, name, full)
        # an unfinished search tries its next step
        go_on = i[~finished]
        stp[go_on] = new_stp[~finished]
        ifun[go_on] += 1
        too_many = go_on[ifun[go_on] - 1 >= LBFGS_MAXLS]
        x[go_on] = t[go_on] + stp[go_on, None] * d[go_on]
        if len(too_many):
            restart(too_many)
        # a finished search ends the iteration: the stopping tests, then the memory update
        end = i[finished]
        if len(end) == 0:
            continue
        gde = gd[finished]
        iters[end] += 1
        converged = problem.converged(g[end], end, LBFGS_GTOL)
        ddum = torch.maximum(torch.maximum(fold[end].abs(), f[end].abs()), torch.ones_like(f[end]))
        converged = converged | ((fold[end] - f[end]) <= EPS * 64.0 * ddum) | (iters[end] >= LBFGS_MAXITER)
        done[end[converged]] = True
        nxt = end[~converged]
        if len(nxt) == 0:
            continue
        gde = gde[~converged]
        st = stp[nxt]
        yv = g[nxt] - gold[nxt]
        sv = st[:, None] * d[nxt]
        dr = (gde - gdold[nxt]) * st
        ok = dr > EPS * (-gdold[nxt] * st)
        upd = nxt[ok]
        if len(upd):
            s_hist[upd] = torch.cat([s_hist[upd, 1:], sv[ok][:, None]], 1)
            y_hist[upd] = torch.cat([y_hist[upd, 1:], yv[ok][:, None]], 1)
            rho[upd] = torch.cat([rho[upd, 1:], (1.0 / dr[ok])[:, None]], 1)
            theta[upd] = (yv[ok] ** 2).sum(-1) / dr[ok]
            col[upd] = torch.clamp(col[upd] + 1, max=LBFGS_MEMORY)
        failed = begin(nxt)
        if len(failed):
            restart(failed)
    return x
