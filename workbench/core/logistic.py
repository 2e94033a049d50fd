"""scikit-learn's logistic regression, batched: many small problems solved at once in float64 torch, with sklearn's
numbers.

Each problem is ``make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))`` as scikit-learn fits
it: the features are standardised on that problem's training rows as StandardScaler does (population std; a feature it calls constant
keeps scale 1); the objective is sklearn's (mean cross-entropy + ``||W||^2 / (2 C n)``, intercept unpenalised;
multinomial softmax over K coefficient rows for three or more classes, binomial with one row for two); and the
solver is scipy's L-BFGS-B as sklearn calls it (memory 10, gtol 1e-4 on sklearn's gradient, ftol 64 eps, the
MINPACK-2 line search), replayed elementwise over the stack. sklearn's fits stop at gtol 1e-4, well short of the
optimum (probabilities off by up to 1e-2 there), so a solver run to convergence would not give sklearn's numbers;
replaying its iterations does: the same predictions and probabilities within about 1e-10. The penalty keeps every
iterate in the span of the training rows, and L-BFGS only takes inner products, so each problem runs in an
orthonormal basis of that span (a QR of its standardised rows): n_train + 1 parameters per class instead of
d_model + 1, the same iterates.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float

C = 1.0  # inverse L2 strength, sklearn's LogisticRegression default


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
