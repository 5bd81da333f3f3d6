"""Autoregressive score matching: cost per step, held-out likelihood, exactness.

1. Step. One composite score matching training step (objective with every
   coordinate's first and second derivative in its own variable, backward,
   Adam) over one plain forward and backward pass of the same network (the
   masked network's summed conditional energies, backward, Adam), for
   d = 2, 16, 64, 256, batch 256, one torch thread, both timed in the same
   run (median of repeats). The goal is a ratio flat in d and within 3x;
   exact score matching on the joint needs d backward passes instead.
2. Quality. On the toy densities and the real data sets of
   ``bench_base_density.py`` (its loaders, splits and baselines): held-out
   log-likelihood and fit time of ``AutoregressiveScoreMatchingDensity``
   beside the other skebm estimators, the cross-validated
   ``GaussianMixture``, ``KernelDensity`` and zuko's MAF, over 3 splits. For
   the autoregressive model also: its quadrature error (``log_partition_std_``)
   and the largest change of its held-out ``score_samples`` when the
   quadrature's panels are quadrupled (a check on the test rows themselves).

Run: ``python benchmarks/bench_autoregressive.py`` (``--part step|quality``,
``--quick``: one split and fewer data sets, ``--datasets``, ``--estimators``
from AR, SM, SSM, ED, ``--params`` JSON for the autoregressive estimator,
``--no-baselines``). Needs the ``benchmark`` extra (zuko) and statsmodels.
"""

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_base_density import (  # noqa: E402
    ESTIMATORS as BASE_ESTIMATORS,
)
from bench_base_density import (  # noqa: E402
    REAL,
    TOYS,
    ZukoMAF,
    fit_gmm_cv,
    fit_kde_cv,
    load_splits,
)

from skebm import AutoregressiveScoreMatchingDensity  # noqa: E402
from skebm.base_densities import GaussianMixtureBase  # noqa: E402
from skebm.energies import MaskedAutoregressiveEnergy  # noqa: E402
from skebm.objectives import composite_score_matching_loss  # noqa: E402

ESTIMATORS = {"AR": AutoregressiveScoreMatchingDensity, **BASE_ESTIMATORS}


# ------------------------------------------------------------------- step
def _time_pair(first, second, repeats):
    """Median times of two functions, run alternately (fair on a busy machine)."""
    first(), second()  # warm up
    times = ([], [])
    for _ in range(repeats):
        for fn, out in zip((first, second), times, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def step(dims=(2, 16, 64, 256), batch=256, repeats=30):
    print(
        "\n== one training step / one plain forward+backward of the same network "
        f"(batch {batch}, float32, 1 thread, median of {repeats}) =="
    )
    print(f"{'d':>5}{'plain (ms)':>12}{'CSM step (ms)':>15}{'ratio':>8}")
    for d in dims:
        gen = torch.Generator().manual_seed(0)
        net = MaskedAutoregressiveEnergy(
            d, (64, 64), "silu", generator=gen, output_bound=4.0
        )
        with torch.no_grad():  # a trained-looking network, not a zero output
            net.head_output.normal_(0.0, 0.1, generator=gen)
        a = torch.randn(d, d, generator=gen, dtype=torch.float64)
        base = GaussianMixtureBase(
            torch.ones(1), torch.zeros(1, d), (a @ a.T / d + torch.eye(d))[None]
        )
        x = torch.randn(batch, d, generator=gen)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def plain():
            opt.zero_grad()
            net(x).sum().backward()
            opt.step()

        def csm():
            opt.zero_grad()
            composite_score_matching_loss(net, x, base=base).backward()
            opt.step()

        t_plain, t_csm = _time_pair(plain, csm, repeats)
        print(
            f"{d:>5}{1e3 * t_plain:>12.2f}{1e3 * t_csm:>15.2f}{t_csm / t_plain:>8.2f}",
            flush=True,
        )


# ---------------------------------------------------------------- quality
def _panel_check(est, Z_test):
    """Largest change of the held-out log p when the panels are quadrupled."""
    energy = est.energy_
    x = torch.as_tensor(Z_test, dtype=torch.float64)
    with torch.no_grad():
        used = energy.log_prob(x)
        panels = energy.n_panels
        energy.n_panels = 4 * panels
        finer = energy.log_prob(x)
        energy.n_panels = panels
    return float((used - finer).abs().max())


def quality(datasets, estimators, params, n_splits, baselines=True):
    print(
        f"\n== held-out log-likelihood (nats/sample, standardized), mean +- std "
        f"over {n_splits} split(s); fit seconds in brackets =="
    )
    for name in datasets:
        rows, checks = {}, []
        for seed, (Z, Z_test, truth) in enumerate(load_splits(name, n_splits)):
            if truth is not None:
                rows.setdefault("truth", []).append((truth, 0.0))
            for label, cls in estimators.items():
                est = cls(random_state=seed, **(params if label == "AR" else {}))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    start = time.perf_counter()
                    est.fit(Z)
                    elapsed = time.perf_counter() - start
                rows.setdefault(label, []).append((est.score(Z_test), elapsed))
                if label == "AR":
                    rows.setdefault("AR base", []).append(
                        (float(est.base_.score(Z_test)), 0.0)
                    )
                    checks.append(
                        (
                            est.log_partition_std_,
                            _panel_check(est, Z_test),
                            est.energy_.n_panels,
                            est.n_iter_,
                        )
                    )
            if baselines:
                for label, fit in (
                    ("GMM (CV)", fit_gmm_cv),
                    ("KDE (CV)", fit_kde_cv),
                    ("MAF (zuko)", lambda Z, s: ZukoMAF(s).fit(Z)),
                ):
                    start = time.perf_counter()
                    model = fit(Z, seed)
                    elapsed = time.perf_counter() - start
                    rows.setdefault(label, []).append(
                        (float(np.mean(model.score_samples(Z_test))), elapsed)
                    )
        shape = load_splits(name, 1)[0][0].shape
        print(f"\n{name}  (train {shape[0]} x {shape[1]})")
        reference = rows.get("GMM (CV)")
        for label, vals in rows.items():
            scores = np.array([v[0] for v in vals])
            times = np.array([v[1] for v in vals])
            line = f"  {label:<12}{scores.mean():>10.3f} +- {scores.std():<7.3f}"
            line += f"[{times.mean():6.2f} s]" if times.any() else " " * 10
            if reference is not None and label not in ("GMM (CV)", "truth"):
                diff = scores - np.array([v[0] for v in reference])
                line += f"   vs GMM {diff.mean():+.3f} +- {diff.std():.3f}"
            print(line, flush=True)
        if checks:
            stds, test_changes, panels, epochs = zip(*checks, strict=True)
            print(
                f"  AR quadrature: log_partition_std_ <= {max(stds):.1e}, held-out "
                f"log p moves <= {max(test_changes):.1e} with 4x the panels "
                f"(panels {list(panels)}, epochs {list(epochs)})"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["step", "quality", "all"], default="all")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS))
    parser.add_argument("--params", default="{}", help="JSON of AR params")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--splits", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.part in ("step", "all"):
        step(repeats=10 if args.quick else 30)
    if args.part in ("quality", "all"):
        estimators = {k: ESTIMATORS[k] for k in args.estimators}
        datasets = args.datasets or (
            TOYS[:2] + list(REAL)[2:5] if args.quick else TOYS + list(REAL)
        )
        quality(
            datasets,
            estimators,
            json.loads(args.params),
            args.splits or (1 if args.quick else 3),
            not args.no_baselines,
        )


if __name__ == "__main__":
    main()
