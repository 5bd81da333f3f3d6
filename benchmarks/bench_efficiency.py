"""Efficiency diagnostics of score matching and pseudo-likelihood (issue 20).

Prints, for fits whose asymptotic covariance is known in closed form, how
many times the data the method needs to match maximum likelihood's precision
(the largest variance ratio: the worst direction) and on average over
directions, with the time of the fit and of the diagnostic:

1. Score matching, 1-D double well ``exp(-(x² - mu²)² / (8 mu²))`` (wells at
   ±mu of unit curvature, barrier ``mu² / 8`` nats), 5000 exact draws, three
   families of statistics: the symmetric ``(x², x⁴)``, the tilted
   ``(x, x², x⁴)`` and ``(x², x⁴, tanh x)``, whose last statistic moves mass
   between the wells without changing their shapes. Fisher information by
   quadrature.
2. Score matching, a 2-D Gaussian (``energy="quadratic"``, closed form): the
   ratio is 1.
3. Pseudo-likelihood, Curie-Weiss model on 10 spins (``J_ij = beta / d``, no
   field, critical at beta = 1), 5000 exact draws, ``alpha=0``: Fisher
   information by enumeration.
4. Pseudo-likelihood on 4 x 4 and 6 x 6 open lattices (couplings 0.3-0.5 of
   random sign; 5000 Gibbs samples): enumeration at 16 spins, annealed Gibbs
   samples at 36.

A monotone growth of the ratio with mu and beta, and ratios near 1 at mu or
beta small, are what the theory predicts (Koehler, Heckett & Risteski 2022).

Run: ``python benchmarks/bench_efficiency.py [--quick] [--lattices-only]``
(``--quick`` skips the 6 x 6 lattice).
"""

import argparse
import time

import numpy as np
import torch

from skebm import PseudoLikelihoodIsing, ScoreMatchingDensity
from skebm.datasets import make_ising_lattice
from skebm.energies import IsingEnergy, LinearInParametersEnergy
from skebm.metrics import pseudo_likelihood_efficiency, score_matching_efficiency
from skebm.samplers import exact_binary_draws, gibbs


class Statistics(LinearInParametersEnergy):
    def __init__(self, functions):
        super().__init__(n_statistics=len(functions))
        self.functions = functions

    def statistics(self, x):
        return torch.cat([f(x) for f in self.functions], dim=1)


FAMILIES = {
    "x2,x4": [lambda x: x**2, lambda x: x**4],
    "x,x2,x4": [lambda x: x, lambda x: x**2, lambda x: x**4],
    "x2,x4,tanh": [lambda x: x**2, lambda x: x**4, torch.tanh],
}


def double_well(mu, n, seed):
    grid = np.linspace(-mu - 8, mu + 8, 200001)
    log_p = -((grid**2 - mu**2) ** 2) / (8 * mu**2)
    cdf = np.cumsum(np.exp(log_p - log_p.max()))
    cdf /= cdf[-1]
    return np.interp(np.random.RandomState(seed).rand(n), cdf, grid)[:, None]


def row(label, diagnostic, fit_s, diag_s):
    print(
        f"{label:<34} {diagnostic.variance_ratio:>9.2f} "
        f"{diagnostic.mean_variance_ratio:>8.2f} {diagnostic.ml_method:>11} "
        f"{fit_s:>7.2f} {diag_s:>7.2f}"
    )


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def header(title):
    print(f"\n{title}")
    print(f"{'':<34} {'worst':>9} {'mean':>8} {'Fisher':>11} {'fit s':>7} "
          f"{'diag s':>7}")


def score_matching_rows():
    header("Score matching, 1-D double well, 5000 draws: variance ratio to ML")
    for name, functions in FAMILIES.items():
        for mu in (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
            X = double_well(mu, 5000, seed=1)
            est, fit_s = timed(
                lambda X=X, f=functions: ScoreMatchingDensity(
                    energy=Statistics(f)
                ).fit(X)
            )
            diagnostic, diag_s = timed(
                lambda est=est, X=X: score_matching_efficiency(
                    est, X, warn_above=None
                )
            )
            row(f"{name:<11} mu={mu:<4} barrier={mu**2 / 8:5.2f}", diagnostic,
                fit_s, diag_s)
    header("Score matching, 2-D Gaussian, 8000 draws")
    rng = np.random.RandomState(0)
    X = rng.multivariate_normal([1.0, -1.0], [[1.0, 0.6], [0.6, 2.0]], size=8000)
    est, fit_s = timed(lambda: ScoreMatchingDensity(energy="quadratic").fit(X))
    diagnostic, diag_s = timed(lambda: score_matching_efficiency(est, X))
    row("quadratic energy", diagnostic, fit_s, diag_s)


def curie_weiss(d, beta, n, seed):
    energy = IsingEnergy(d).double()
    J = torch.full((d, d), beta / d, dtype=torch.float64)
    energy.set_parameters(torch.zeros(d, dtype=torch.float64), J)
    return exact_binary_draws(
        energy, d, n, values=(-1.0, 1.0), generator=torch.Generator().manual_seed(seed)
    ).numpy()


def lattice_samples(side, n, seed):
    J, h = make_ising_lattice(side, coupling_range=(0.3, 0.5), field_scale=0.2,
                              random_state=seed)
    energy = IsingEnergy(side * side).double()
    energy.set_parameters(torch.as_tensor(h), torch.as_tensor(J))
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.where(
        torch.rand(n, side * side, generator=generator) < 0.5, -1.0, 1.0
    ).double()
    return gibbs(energy, x0, n_sweeps=200, values=(-1.0, 1.0),
                 generator=generator).numpy()


def pseudo_likelihood_rows(quick, lattices_only=False):
    header("Pseudo-likelihood, Curie-Weiss, 10 spins, 5000 exact draws")
    for beta in () if lattices_only else (0.0, 0.5, 1.0, 1.25, 1.5, 1.75, 2.0):
        X = curie_weiss(10, beta, 5000, seed=0)
        est, fit_s = timed(lambda X=X: PseudoLikelihoodIsing(alpha=0.0).fit(X))
        diagnostic, diag_s = timed(
            lambda est=est, X=X: pseudo_likelihood_efficiency(
                est, X, warn_above=None
            )
        )
        row(f"beta={beta}", diagnostic, fit_s, diag_s)
    header("Pseudo-likelihood, open lattices, 5000 Gibbs samples")
    for side in (4,) if quick else (4, 6):
        X = lattice_samples(side, 5000, seed=0)
        est, fit_s = timed(
            lambda X=X: PseudoLikelihoodIsing(alpha=0.0, random_state=0).fit(X)
        )
        diagnostic, diag_s = timed(
            lambda est=est, X=X: pseudo_likelihood_efficiency(
                est, X, random_state=0, warn_above=None
            )
        )
        row(f"{side}x{side} lattice ({side * side} spins)", diagnostic, fit_s,
            diag_s)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--lattices-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.lattices_only:
        score_matching_rows()
    pseudo_likelihood_rows(args.quick, args.lattices_only)


if __name__ == "__main__":
    main()
