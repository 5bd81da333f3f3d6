"""Honest log Z and samples that follow the model: continuous estimators.

1. log Z of fitted models in 2, 10 and 30 dimensions (two moons; two moons
   embedded in 10 dimensions with 8 noise features, rotated; the 30 features
   of scikit-learn's breast cancer data), with a base density (the default:
   importance sampling from the base) and without (``base=None``: annealed
   importance sampling from the data's Gaussian). For each: the estimate, its
   reported error, the effective sample size and Pareto index, the time, and
   the difference to the truth: quadrature in 2-d, otherwise a run with 10x
   the budget; ``z`` is that difference over the reported error. "old AIS" is
   the pre-issue estimator (512 chains x 300 steps, delta-method error, no
   growth) on the same energy, with its time.
2. Mode masses of ``sample`` on a 0.2 / 0.8 mixture in 2-d, against the
   model's own masses by quadrature, for ``sampling_init="auto"`` (importance
   resampling from the base, then MALA) and ``"data"`` (MALA from training
   points).

Run: ``python benchmarks/bench_log_partition.py``.
"""

import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from skebm import EnergyDiscrepancyDensity, SlicedScoreMatchingDensity
from skebm.datasets import make_two_moons
from skebm.exceptions import LogPartitionWarning
from skebm.partition import (
    log_partition_ais,
    log_partition_importance,
    log_partition_quadrature,
)


def ten_dim(n, seed=0):
    rng = np.random.RandomState(seed)
    X = np.c_[make_two_moons(n, random_state=seed), rng.normal(size=(n, 8))]
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    return StandardScaler().fit_transform(X @ Q)


DATA = {
    "2-d two moons": lambda: StandardScaler().fit_transform(
        make_two_moons(2000, random_state=0)
    ),
    "10-d embedded moons": lambda: ten_dim(3000),
    "30-d breast cancer": lambda: StandardScaler().fit_transform(
        load_breast_cancer().data
    ),
}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def fit(X, base):
    params = dict(random_state=0, max_iter=30)
    if base is None:
        params.update(base=None, learning_rate_init=2e-3)
    else:
        params.update(early_stopping=False)  # keep a correction far from zero
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", LogPartitionWarning)
        return SlicedScoreMatchingDensity(**params).fit(X)


def old_ais(energy, est, seed):
    """The estimator before this work: AIS, 512 x 300, delta-method error."""
    mean = torch.as_tensor(est._fit_summary["mean"])
    cov = torch.as_tensor(est._fit_summary["covariance"]) * 2.25
    est_ = log_partition_ais(
        energy, mean, cov, n_chains=512, max_chains=512, n_steps=300,
        generator=torch.Generator().manual_seed(seed),
    )
    return est_


def estimator_run(est, energy, base, method):
    """``scale -> PartitionEstimate``: the estimator's method at ``scale`` x budget."""
    generator = torch.Generator().manual_seed(7)
    mean = torch.as_tensor(est._fit_summary["mean"])
    cov = torch.as_tensor(est._fit_summary["covariance"]) * 2.25

    def run(scale):
        if base is not None and method != "ais":
            return log_partition_importance(
                energy, energy.base, n_draws=16384 * scale,
                max_draws=262144 * scale, generator=generator,
            )
        if base is not None:
            return log_partition_ais(
                energy, proposal=energy.base, n_chains=512 * scale,
                max_chains=2048 * scale, n_steps=300, generator=generator,
            )
        return log_partition_ais(
            energy, mean, cov, n_chains=512 * scale, max_chains=2048 * scale,
            n_steps=300, generator=generator,
        )

    return run


def log_z_table():
    print("\n== log Z of fitted models (SlicedScoreMatchingDensity) ==")
    print(
        f"{'data':<22}{'base':<7}{'method':<20}{'log Z':>9}{'error':>8}{'ESS':>8}"
        f"{'k':>6}{'truth':>9}{'z':>7}{'time s':>8}{'old AIS':>16}{'old s':>7}"
    )
    for name, make in DATA.items():
        X = make()
        d = X.shape[1]
        for base in ("gmm", None):
            est = fit(X, base)
            energy = est.energy_.double()
            method = est.log_partition_method_
            run = estimator_run(est, energy, base, method)
            estimate, t = timed(lambda run=run: run(1))
            if d <= 2:
                lo = torch.as_tensor(X.min(0) - 3.0)
                hi = torch.as_tensor(X.max(0) + 3.0)
                truth, _ = log_partition_quadrature(energy, lo, hi)
                label = "(quadrature)"
            else:
                truth = run(10).log_z
                label = "(10x run)"
            z = (estimate.log_z - truth) / max(estimate.stderr, 1e-12)
            old, t_old = timed(lambda: old_ais(energy, est, 3))
            print(
                f"{name:<22}{str(base):<7}{method:<20}{estimate.log_z:>9.3f}"
                f"{estimate.stderr:>8.3f}{estimate.ess:>8.0f}"
                f"{estimate.pareto_k:>6.2f}{truth:>9.3f}{z:>7.1f}{t:>8.1f}"
                f"{old.log_z:>9.3f} +-{old.stderr:>4.2f}{t_old:>7.1f}   {label}",
                flush=True,
            )


def mode_masses():
    print("\n== sample mode masses on a 0.2 / 0.8 mixture (2-d) ==")
    rng = np.random.RandomState(0)
    left = rng.rand(4000) < 0.2
    X = np.where(left[:, None], [-3.0, 0.0], [3.0, 0.0]) + 0.6 * rng.normal(
        size=(4000, 2)
    )
    grid = np.linspace(-8, 8, 401)
    xx, yy = np.meshgrid(grid, grid, indexing="ij")
    points = np.c_[xx.ravel(), yy.ravel()]
    for cls in (EnergyDiscrepancyDensity, SlicedScoreMatchingDensity):
        for base in ("gmm", None):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est = cls(random_state=0, base=base, max_iter=30).fit(X)
            density = np.exp(est.score_samples(points))
            model = density[points[:, 0] < 0].sum() / density.sum()
            for init in ("auto", "data"):
                est.set_params(sampling_init=init)
                S, t = timed(lambda est=est: est.sample(20000, random_state=0))
                share = (S[:, 0] < 0).mean()
                print(
                    f"{cls.__name__:<28} base={str(base):<5} sampling_init={init:<5}"
                    f" model {model:.3f}  samples {share:.3f}  "
                    f"diff {share - model:+.3f}  ({t:.1f} s)",
                    flush=True,
                )


if __name__ == "__main__":
    torch.set_num_threads(1)
    log_z_table()
    mode_masses()
