"""Benchmark for EnergyDiscrepancyDensity (issue: energy discrepancy).

Held-out mean log-likelihood (nats per sample, standardized data) on every toy
density of ``skebm.datasets``: EnergyDiscrepancyDensity, ScoreMatchingDensity,
SlicedScoreMatchingDensity (all with their defaults), KernelDensity (bandwidth
by 3-fold CV), GaussianMixture (components by BIC) and the truth, with fit
times, and the gap of energy discrepancy to the truth and to the better of KDE
and GMM.

Run: ``python benchmarks/bench_energy_discrepancy.py [--n-train 20000]
[--densities eight_gaussians checkerboard]``.
"""

import argparse
import warnings

import numpy as np
from bench_score_matching import fit_gmm, fit_kde, timed
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from skebm import (
    EnergyDiscrepancyDensity,
    ScoreMatchingDensity,
    SlicedScoreMatchingDensity,
)
from skebm.datasets import TOY_DENSITIES, toy_log_density

MODELS = {
    "ED": EnergyDiscrepancyDensity,
    "SM": ScoreMatchingDensity,
    "SSM": SlicedScoreMatchingDensity,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--densities", nargs="+", default=list(TOY_DENSITIES), choices=TOY_DENSITIES
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--steps",
        type=int,
        default=3000,
        help="training budget of the skebm models in minibatch steps: max_iter is "
        "set to steps * batch_size / n_train epochs (default 3000)",
    )
    args = parser.parse_args()
    print(
        f"held-out log-likelihood (nats/sample), n_train={args.n_train}, "
        f"n_test={args.n_test}, standardized; fit times in seconds"
    )
    names = args.models + ["KDE", "GMM"]
    print(
        f"{'density':<16}{'truth':>8}"
        + "".join(f"{n:>8}" for n in names)
        + f"{'ED-truth':>9}{'ED-best':>9}"
        + "".join(f"{'t ' + n:>8}" for n in names)
    )
    for name in args.densities:
        make = TOY_DENSITIES[name][0]
        X = make(args.n_train, random_state=args.seed)
        X_test = make(args.n_test, random_state=args.seed + 1)
        scaler = StandardScaler().fit(X)
        Z, Z_test = scaler.transform(X), scaler.transform(X_test)
        truth = (toy_log_density(name, X_test) + np.log(scaler.scale_).sum()).mean()
        scores, times = {}, {}
        for label in args.models:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est = MODELS[label](random_state=args.seed)
                epochs = -(-args.steps * est.batch_size // args.n_train)
                model, times[label] = timed(
                    lambda est=est, n=epochs: est.set_params(max_iter=n).fit(Z)
                )
            scores[label] = model.score(Z_test)
        kde, times["KDE"] = timed(lambda: fit_kde(Z))
        gmm, times["GMM"] = timed(lambda: fit_gmm(Z, args.seed))
        scores["KDE"] = kde.score_samples(Z_test).mean()
        scores["GMM"] = gmm.score(Z_test)
        best = max(scores["KDE"], scores["GMM"])
        ed = scores.get("ED", np.nan)
        print(
            f"{name:<16}{truth:>8.3f}"
            + "".join(f"{scores[n]:>8.3f}" for n in names)
            + f"{ed - truth:>9.3f}{ed - best:>9.3f}"
            + "".join(f"{times[n]:>8.1f}" for n in names),
            flush=True,
        )


if __name__ == "__main__":
    main()
