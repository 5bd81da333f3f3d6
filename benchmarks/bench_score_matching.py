"""Benchmark for ScoreMatchingDensity (issue: foundation).

1. Held-out mean log-likelihood (nats per sample, standardized data) on every toy
   density of ``skebm.datasets``: ScoreMatchingDensity (defaults), KernelDensity
   (bandwidth by 3-fold CV), GaussianMixture (components by BIC) and the truth,
   with fit times.
2. Time of one training step of exact score matching at d = 2, 16, 64, 128, as a
   ratio to one forward+backward of the same MLP energy, so the growth with d
   is visible.

Run: ``python benchmarks/bench_score_matching.py [--n-train 2000] [--quick]``.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity
from sklearn.preprocessing import StandardScaler

from skebm import ScoreMatchingDensity
from skebm.datasets import TOY_DENSITIES, toy_log_density
from skebm.energies import MLPEnergy
from skebm.objectives import exact_score_matching_loss


def fit_kde(Z):
    grid = GridSearchCV(
        KernelDensity(), {"bandwidth": np.logspace(-1.5, 0.5, 16)}, cv=3
    )
    return grid.fit(Z).best_estimator_


def fit_gmm(Z, seed=0):
    models = [GaussianMixture(k, random_state=seed).fit(Z) for k in range(1, 16)]
    return min(models, key=lambda m: m.bic(Z))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def heldout_table(n_train, n_test, seed):
    print(
        f"\n== held-out log-likelihood, n_train={n_train}, n_test={n_test}, "
        "standardized =="
    )
    header = (
        f"{'density':<16}{'truth':>9}{'SM':>9}{'KDE':>9}{'GMM':>9}"
        f"{'SM-best':>9}{'t SM':>8}{'t KDE':>8}{'t GMM':>8}"
    )
    print(header)
    for name, (make, _) in TOY_DENSITIES.items():
        X = make(n_train, random_state=seed)
        X_test = make(n_test, random_state=seed + 1)
        scaler = StandardScaler().fit(X)
        Z, Z_test = scaler.transform(X), scaler.transform(X_test)
        truth = (toy_log_density(name, X_test) + np.log(scaler.scale_).sum()).mean()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            sm, t_sm = timed(lambda: ScoreMatchingDensity(random_state=seed).fit(Z))
        kde, t_kde = timed(lambda: fit_kde(Z))
        gmm, t_gmm = timed(lambda: fit_gmm(Z, seed))
        ll_sm = sm.score(Z_test)
        ll_kde = kde.score_samples(Z_test).mean()
        ll_gmm = gmm.score(Z_test)
        print(
            f"{name:<16}{truth:>9.3f}{ll_sm:>9.3f}{ll_kde:>9.3f}{ll_gmm:>9.3f}"
            f"{ll_sm - max(ll_kde, ll_gmm):>9.3f}"
            f"{t_sm:>8.1f}{t_kde:>8.1f}{t_gmm:>8.1f}",
            flush=True,
        )


def step_time(fn, repeats):
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def step_table(batch_size, repeats):
    print(
        f"\n== one training step, MLP energy 128-128 softplus, batch {batch_size}, "
        f"float32, {torch.get_num_threads()} thread(s) =="
    )
    print(f"{'d':>5}{'fwd+bwd (ms)':>14}{'exact SM (ms)':>15}{'ratio':>8}")
    for d in (2, 16, 64, 128):
        gen = torch.Generator().manual_seed(0)
        energy = MLPEnergy(d, (128, 128), generator=gen)
        x = torch.randn(batch_size, d, generator=gen)
        opt = torch.optim.Adam(energy.parameters(), lr=1e-4)

        def plain():
            opt.zero_grad()
            energy(x).mean().backward()
            opt.step()

        def exact():
            opt.zero_grad()
            exact_score_matching_loss(energy, x).backward()
            opt.step()

        t_plain = step_time(plain, repeats)
        t_exact = step_time(exact, max(2, repeats // 10) if d >= 64 else repeats)
        print(
            f"{d:>5}{1e3 * t_plain:>14.2f}{1e3 * t_exact:>15.2f}"
            f"{t_exact / t_plain:>8.1f}",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="step timings only")
    args = parser.parse_args()
    step_table(batch_size=256, repeats=50)
    if not args.quick:
        heldout_table(args.n_train, args.n_test, args.seed)


if __name__ == "__main__":
    main()
