"""Benchmark for PseudoLikelihoodIsing (issue 6).

1. 8 x 8 open lattice (64 spins, couplings of magnitude 0.3-0.5 with random
   signs, small fields), 10,000 Gibbs samples: wall time, relative Frobenius
   error of the couplings (penalized and after refitting the selected graph)
   and edge recovery, against neighbourhood selection with 64 per-node
   L1 ``LogisticRegression`` fits (Ravikumar et al. 2010; AND rule, refit by
   unpenalized per-node regressions on the selected neighbourhoods).
   The same ``alpha`` is used for both: the per-node penalty of
   ``LogisticRegression`` is matched to the joint one by ``C = 4 / (alpha n)``
   (its coefficient of spin j in the logit of spin i is ``2 J_ij``, and a
   coupling enters two conditionals of the joint objective).
2. 16 x 16 lattice (256 spins), 50,000 samples: time to fit.
3. The unpenalized pseudo-likelihood of the 8 x 8 data with ebmkit's
   ``PseudoLikelihood`` loss (a Python loop over the spins, two energy
   evaluations per spin) on the same fully visible Boltzmann energy, minimized
   by full-batch ``torch.optim.LBFGS``: time of one loss+gradient evaluation
   and of the fit, against skebm.

Samples are drawn by chessboard Gibbs sampling (the two colours of a lattice
do not interact, so each colour is updated at once from its exact
conditionals). ``PseudoLikelihoodIsing.fit`` times include its log Z (annealed
importance sampling for d > 20); the "solve" rows time the convex solve alone.
Neighbourhood selection and the solve are timed best of 3 runs.

4. The whole ``PseudoLikelihoodIsing().fit`` (defaults: L2, alpha=1e-2,
   log Z included: enumeration at d=16, AIS above) against d per-spin
   L2 ``LogisticRegression`` fits with the matched penalty
   (``C = 8 / (alpha n)``: a coupling is ``w / 2`` of the regression weight and
   its penalty is split between its two conditionals), on lattices of
   d = 16 (4x4, n=25000), 64 (8x8, n=10000) and 256 (16x16, n=20000), with
   numpy's BLAS and torch on one thread. Best of 3 (2 at d = 256).

Run: ``python benchmarks/bench_ising.py [--quick]`` (``--quick`` skips d=256
and shortens the ebmkit fit). Needs ``ebmkit`` for part 3 (skipped without it).
"""

import argparse
import time
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from skebm import PseudoLikelihoodIsing
from skebm._ising_solver import (
    _pseudo_likelihood_value_and_gradient,
    _solve_pseudo_likelihood,
    _Workspace,
)
from skebm.datasets import make_ising_lattice
from skebm.energies import BoltzmannEnergy


def lattice(side, low, high, seed):
    return make_ising_lattice(
        side, coupling_range=(low, high), field_scale=0.1, random_state=seed
    )


def chessboard_gibbs(J, h, side, n, n_sweeps, seed):
    rng = np.random.RandomState(seed)
    d = side * side
    colour = (np.arange(d) % side + np.arange(d) // side) % 2
    Js = sp.csr_matrix(J)
    X = rng.choice([-1.0, 1.0], size=(n, d))
    for _ in range(n_sweeps):
        for c in (0, 1):
            sites = np.flatnonzero(colour == c)
            field = h[sites] + (Js[sites] @ X.T).T
            p_up = 1.0 / (1.0 + np.exp(-2.0 * field))
            X[:, sites] = np.where(rng.rand(n, sites.size) < p_up, 1.0, -1.0)
    return X


def rel_err(J_hat, J):
    return np.linalg.norm(J_hat - J) / np.linalg.norm(J)


def edge_counts(J_hat, J):
    est, true = np.triu(J_hat != 0, 1), np.triu(J != 0, 1)
    return int((est & ~true).sum()), int((true & ~est).sum())


def neighbourhood_selection(X, alpha):
    """64 per-node L1 logistic regressions, AND rule, then per-node refit."""
    n, d = X.shape
    B = np.zeros((d, d))
    t0 = time.perf_counter()
    for i in range(d):
        rest = np.delete(np.arange(d), i)
        clf = LogisticRegression(
            l1_ratio=1.0, C=4.0 / (alpha * n), solver="liblinear"
        ).fit(X[:, rest], X[:, i])
        B[i, rest] = clf.coef_[0]
    t_pen = time.perf_counter() - t0
    support = (B != 0) & (B.T != 0)
    J_pen = np.where(support, (B + B.T) / 4, 0.0)
    R = np.zeros((d, d))
    for i in range(d):
        nb = np.flatnonzero(support[i])
        if nb.size:
            clf = LogisticRegression(C=np.inf, tol=1e-8, max_iter=1000)
            R[i, nb] = clf.fit(X[:, nb], X[:, i]).coef_[0]
    t_all = time.perf_counter() - t0
    return J_pen, np.where(support, (R + R.T) / 4, 0.0), t_pen, t_all


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


REPEATS = 3


def best_of(fn):
    times = []
    for _ in range(REPEATS):
        out, t = timed(fn)
        times.append(t)
    return out, min(times)


def part_lattice(alphas):
    J, h = lattice(8, 0.3, 0.5, seed=0)
    X, t = timed(lambda: chessboard_gibbs(J, h, 8, 10000, 500, seed=1))
    print(f"8x8 lattice, n=10000 samples (chessboard Gibbs, 500 sweeps: {t:.1f} s)")
    head = (f"{'alpha':>6} {'method':<34} {'time s':>7} {'spurious':>8} "
            f"{'missed':>6} {'rel.err':>7}")
    print(head)
    print("-" * len(head))
    rows = {}
    for alpha in alphas:
        # Best of REPEATS runs for both methods (the machine is shared).
        runs = [neighbourhood_selection(X, alpha) for _ in range(REPEATS)]
        J_pen, J_ref = runs[0][:2]
        t_pen = min(r[2] for r in runs)
        t_all = min(r[3] for r in runs)
        for name, Jh, tt in [
            ("64 x LogisticRegression(l1)", J_pen, t_pen),
            ("64 x LR(l1) + refit", J_ref, t_all),
        ]:
            print(f"{alpha:6.3f} {name:<34} {tt:7.2f} {edge_counts(Jh, J)[0]:8d} "
                  f"{edge_counts(Jh, J)[1]:6d} {rel_err(Jh, J):7.3f}")
        spins = torch.as_tensor(X)
        zeros = (np.zeros(64), np.zeros((64, 64)))
        for refit in (False, True):
            (hh, Jh, *_), ts = best_of(lambda refit=refit: _solve_pseudo_likelihood(
                spins, *zeros, penalty="l1", alpha=alpha, refit=refit,
                max_iter=1000, tol=1e-6))
            est, tf = timed(lambda refit=refit: PseudoLikelihoodIsing(
                penalty="l1", alpha=alpha, refit=refit, random_state=0).fit(X))
            tag = "+ refit" if refit else ""
            sp_, mi = edge_counts(Jh, J)
            print(f"{alpha:6.3f} {'skebm l1 ' + tag + ' (solve)':<34} {ts:7.2f} "
                  f"{sp_:8d} {mi:6d} {rel_err(Jh, J):7.3f}")
            print(f"{alpha:6.3f} {'skebm l1 ' + tag + ' (fit, AIS log Z)':<34} "
                  f"{tf:7.2f} {sp_:8d} {mi:6d} {rel_err(est.couplings_, J):7.3f}")
            rows[(alpha, refit)] = ts
        rows[("base", alpha)] = (t_pen, t_all)
    print("speed-up of the skebm solve over neighbourhood selection:")
    for alpha in alphas:
        t_pen, t_all = rows[("base", alpha)]
        print(f"  alpha={alpha}: penalized {t_pen / rows[(alpha, False)]:.1f}x, "
              f"with refit {t_all / rows[(alpha, True)]:.1f}x")
    return J, h, X


def part_large(n_sweeps):
    J, h = lattice(16, 0.3, 0.5, seed=2)
    X, t = timed(lambda: chessboard_gibbs(J, h, 16, 50000, n_sweeps, seed=3))
    print(f"\n16x16 lattice, d=256, n=50000 (Gibbs {n_sweeps} sweeps: {t:.1f} s)")
    spins = torch.as_tensor(X)
    zeros = (np.zeros(256), np.zeros((256, 256)))
    for penalty, alpha, refit in [("l2", 1e-4, False), ("l1", 0.03, True)]:
        (hh, Jh, _, _, n_iter, conv, kkt), ts = timed(
            lambda p=penalty, a=alpha, r=refit: _solve_pseudo_likelihood(
                spins, *zeros, penalty=p, alpha=a, refit=r, max_iter=1000, tol=1e-6))
        sp_, mi = edge_counts(Jh, J) if penalty == "l1" else (-1, -1)
        print(f"  {penalty} alpha={alpha} refit={refit}: solve {ts:.1f} s, "
              f"{n_iter} iterations, KKT {kkt:.1e}, rel.err {rel_err(Jh, J):.3f}"
              + (f", spurious {sp_}, missed {mi}" if penalty == "l1" else ""))
    est, tf = timed(lambda: PseudoLikelihoodIsing(
        penalty="l1", alpha=0.03, refit=True, random_state=0).fit(X))
    print(f"  PseudoLikelihoodIsing(l1, refit).fit: {tf:.1f} s "
          f"(log Z by AIS = {est.log_partition_:.2f} +/- {est.log_partition_std_:.2f})")


def part_ebmkit(J, X, max_evals):
    try:
        from ebm.losses import PseudoLikelihood
    except ImportError:
        print("\nebmkit not installed: part 3 skipped (pip install ebmkit).")
        return
    print("\nunpenalized pseudo-likelihood of the 8x8 data, n=10000, float64")
    n, d = X.shape
    x01 = torch.as_tensor((X + 1) / 2)
    loss_fn = PseudoLikelihood()
    energy = BoltzmannEnergy(d).double()

    def ebmkit_eval():
        energy.zero_grad()
        loss = loss_fn(energy, x01).loss
        loss.backward()
        return loss

    _, t_e = timed(ebmkit_eval)
    _, t_e = timed(ebmkit_eval)
    spins = torch.as_tensor(X)
    args = (spins, torch.zeros(d, dtype=torch.float64),
            torch.zeros(d, d, dtype=torch.float64), _Workspace(spins))
    _pseudo_likelihood_value_and_gradient(*args)
    _, t_s = timed(lambda: _pseudo_likelihood_value_and_gradient(*args))
    print(f"  one loss + gradient: ebmkit {t_e * 1e3:.0f} ms, skebm {t_s * 1e3:.1f} ms "
          f"({t_e / t_s:.0f}x)")

    (h, Js, value, _, n_iter, _, _), t_fit = timed(lambda: _solve_pseudo_likelihood(
        spins, np.zeros(d), np.zeros((d, d)), penalty="l2", alpha=0.0, refit=False,
        max_iter=1000, tol=1e-6))
    est, t_est = timed(lambda: PseudoLikelihoodIsing(alpha=0.0).fit(X))
    print(f"  skebm: solve {t_fit:.2f} s ({n_iter} iterations, KKT <= 1e-6), "
          f"fit with AIS log Z {t_est:.2f} s, rel.err {rel_err(Js, J):.3f}")

    energy = BoltzmannEnergy(d).double()
    opt = torch.optim.LBFGS(energy.parameters(), max_iter=max_evals,
                            max_eval=max_evals, tolerance_grad=1e-6 / d,
                            tolerance_change=0.0, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(energy, x01).loss
        loss.backward()
        return loss

    _, t_fit_e = timed(lambda: opt.step(closure))
    with torch.no_grad():
        W = energy.coupling_matrix().numpy()
        final = float(loss_fn(energy, x01).loss)
    # ebmkit's loss is the mean over spins; skebm's the sum (minus the ridge).
    gap = final * d - value
    print(f"  ebmkit PseudoLikelihood + LBFGS ({max_evals} evaluations max): "
          f"{t_fit_e:.1f} s, objective gap to skebm's optimum {gap:.1e} (x d), "
          f"rel.err {rel_err(W / 4, J):.3f}")
    print(f"  fit time ratio ebmkit / skebm solve: {t_fit_e / t_fit:.0f}x")


def per_spin_logistic(X, alpha):
    """d per-spin L2 LogisticRegressions with the penalty matched to the joint
    pseudo-likelihood's ``alpha/2 sum_{i<j} J_ij^2``."""
    n, d = X.shape
    for i in range(d):
        rest = np.delete(np.arange(d), i)
        LogisticRegression(C=8.0 / (alpha * n)).fit(X[:, rest], X[:, i])


def part_whole_fit(sides):
    print("\nwhole fit: PseudoLikelihoodIsing() (log Z: enumeration in fit up to 20 "
          "spins, AIS on first use above) vs d per-spin "
          "LogisticRegression(l2, C=8/(alpha n)), one thread")
    print(f"{'d':>5}{'n':>7}{'fit s':>8}{'solve s':>9}{'log Z':>7}{'d x LR s':>10}"
          f"{'LR / fit':>10}{'LR / solve':>12}")
    for side, n in sides:
        J, h = lattice(side, 0.3, 0.5, seed=0)
        X = chessboard_gibbs(J, h, side, n, 200, seed=1)
        d = side * side
        repeats = 2 if side > 8 else REPEATS
        times_s, times_solve, times_lr = [], [], []
        for _ in range(repeats):
            est, t = timed(lambda: PseudoLikelihoodIsing(random_state=0).fit(X))
            times_s.append(t)
            _, t = timed(lambda: _solve_pseudo_likelihood(
                torch.as_tensor(X), np.zeros(d), np.zeros((d, d)), penalty="l2",
                alpha=est.alpha, refit=False, max_iter=1000, tol=1e-6))
            times_solve.append(t)
            _, t = timed(lambda: per_spin_logistic(X, est.alpha))
            times_lr.append(t)
        t_s, t_solve, t_lr = min(times_s), min(times_solve), min(times_lr)
        print(f"{d:>5}{n:>7}{t_s:>8.2f}{t_solve:>9.2f}"
              f"{est.log_partition_method_:>7}{t_lr:>10.2f}{t_lr / t_s:>9.1f}x"
              f"{t_lr / t_solve:>11.1f}x", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--whole-fit-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", ConvergenceWarning)
    with threadpool_limits(limits=1, user_api="blas"):
        sides = [(4, 25000), (8, 10000)] + ([] if args.quick else [(16, 20000)])
        part_whole_fit(sides)
        if args.whole_fit_only:
            return
        alphas = [0.05, 0.1] if args.quick else [0.05, 0.1, 0.15]
        J, _, X = part_lattice(alphas)
        if not args.quick:
            part_large(n_sweeps=200)
        part_ebmkit(J, X, max_evals=10 if args.quick else 25)


if __name__ == "__main__":
    main()
