"""How cost grows: fit, score_samples and sample at n = 10^3 ... 10^6 rows.

Every skebm estimator against scikit-learn's GaussianMixture and KernelDensity and
a zuko normalizing flow (continuous data), or BernoulliRBM (binary data): wall
time and peak memory of each operation, each measured in a fresh process, the
ratio to GaussianMixture (BernoulliRBM for binary data) at the same n, and the
growth exponent b of time ~ n^b fitted over the n measured.

- ``fit``: on n rows (skebm: ``max_iter`` epochs, default 5; the flow the same
  number of epochs; GaussianMixture and BernoulliRBM their defaults);
- ``score``: ``score_samples`` of n rows, the model fitted once on 4000 rows;
- ``sample``: ``sample(n)`` of that model (KernelDensity: its own sample).

Data: a 2-mode Gaussian mixture in d dimensions (binary: its signs). A
measurement over ``--budget`` seconds stops the larger n of its row. Run::

    python benchmarks/bench_scale.py                        # d = 2, 10, 30
    python benchmarks/bench_scale.py --d 10 --n 1000 10000 --ops score sample

Needs the ``benchmark`` extra (zuko). Times on a shared machine are noisy:
compare the ratios within one run.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np

CONTINUOUS = [
    "ScoreMatchingDensity",
    "SlicedScoreMatchingDensity",
    "EnergyDiscrepancyDensity",
    "AutoregressiveScoreMatchingDensity",
    "MCMCLikelihoodDensity",
    "GaussianMixture",
    "KernelDensity",
    "zuko.MAF",
]
BINARY = [
    "RatioMatchingBinary",
    "PseudoLikelihoodIsing",
    "MCMCLikelihoodBinary",
    "BernoulliRBM",
]
REFERENCE = {"continuous": "GaussianMixture", "binary": "BernoulliRBM"}
N_FIT_FOR_SCORING = 4000


def _data(n, d, binary, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.stack([np.full(d, -1.5), np.full(d, 1.5)])
    X = centres[rng.integers(2, size=n)] + rng.standard_normal((n, d))
    X = X.astype(np.float32)
    return (X > 0).astype(np.float32) if binary else X


class _Flow:
    """A zuko masked autoregressive flow behind fit / score_samples / sample."""

    def __init__(self, epochs):
        self.epochs = epochs

    def fit(self, X):
        import torch
        import zuko

        X = torch.as_tensor(X)
        self.flow = zuko.flows.MAF(X.shape[1], transforms=3, hidden_features=(64, 64))
        opt = torch.optim.Adam(self.flow.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(0)
        for _ in range(self.epochs):
            for idx in torch.randperm(len(X), generator=gen).split(512):
                loss = -self.flow().log_prob(X[idx]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        return self

    def score_samples(self, X):
        import torch

        out = []
        with torch.no_grad():
            for chunk in torch.as_tensor(X).split(65536):
                out.append(self.flow().log_prob(chunk))
        return torch.cat(out).numpy()

    def sample(self, n):
        import torch

        with torch.no_grad():
            return self.flow().sample((n,)).numpy()


def _model(name, epochs):
    if name == "zuko.MAF":
        return _Flow(epochs)
    if name == "GaussianMixture":
        from sklearn.mixture import GaussianMixture

        return GaussianMixture(n_components=10, random_state=0)
    if name == "KernelDensity":
        from sklearn.neighbors import KernelDensity

        return KernelDensity(bandwidth="scott")
    if name == "BernoulliRBM":
        from sklearn.neural_network import BernoulliRBM

        return BernoulliRBM(n_components=64, random_state=0)
    import skebm

    params = {"random_state": 0}
    if name != "PseudoLikelihoodIsing":
        params["max_iter"] = epochs
    return getattr(skebm, name)(**params)


def _current_rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def measure(name, op, n, d, epochs):
    """One measurement, in this process: seconds and peak memory above the
    memory held before the operation."""
    import torch  # noqa: F401  (charged to the baseline, not the operation)

    binary = name in BINARY
    n_fit = n if op == "fit" else min(n, N_FIT_FOR_SCORING)
    X = _data(n_fit, d, binary)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _model(name, epochs)
        if op != "fit":
            model.fit(X)
            X = _data(n, d, binary, seed=1)

        def run(rows):
            if op == "fit":
                model.fit(rows)
            elif op == "score":
                # BernoulliRBM's score_samples is a pseudo-likelihood: the
                # only score it has.
                model.score_samples(rows)
            elif name == "BernoulliRBM":
                model.gibbs(np.zeros((len(rows), d), dtype=np.float32))  # one step
            elif name in ("zuko.MAF", "GaussianMixture"):
                model.sample(len(rows))
            else:
                model.sample(len(rows), random_state=0)

        if op != "fit":
            run(X[:100])  # first-call costs (lazy imports, allocator) not charged
        baseline = _current_rss()
        seconds = math.inf
        for _ in range(3 if op != "fit" else 1):
            start = time.perf_counter()
            run(X)
            seconds = min(seconds, time.perf_counter() - start)
            if seconds > 1.0:
                break  # long enough to time once
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "peak_mb": max(0, peak - baseline) / 2**20}


def _run_child(name, op, n, d, epochs, timeout):
    cmd = [sys.executable, __file__, "--one", name, op, str(n), str(d),
           "--epochs", str(epochs)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return {"seconds": math.inf, "peak_mb": math.nan, "note": "timeout"}
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:]
        return {"seconds": math.nan, "peak_mb": math.nan, "note": " ".join(tail)}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _exponent(ns, times):
    pts = [(math.log(n), math.log(t)) for n, t in zip(ns, times, strict=True)
           if np.isfinite(t) and t > 0]
    if len(pts) < 2:
        return math.nan
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=4, metavar=("MODEL", "OP", "N", "D"))
    parser.add_argument("--n", type=int, nargs="+",
                        default=[1000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--d", type=int, nargs="+", default=[2, 10, 30])
    parser.add_argument("--ops", nargs="+", default=["fit", "score", "sample"])
    parser.add_argument("--models", nargs="+", default=CONTINUOUS + BINARY)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--budget", type=float, default=120.0,
                        help="seconds; a slower measurement stops its row")
    args = parser.parse_args()
    if args.one:
        name, op, n, d = args.one
        print(json.dumps(measure(name, op, int(n), int(d), args.epochs)))
        return
    results = {}
    for d in args.d:
        for op in args.ops:
            for name in args.models:
                row = []
                for n in sorted(args.n):
                    r = _run_child(name, op, n, d, args.epochs, 4 * args.budget)
                    row.append((n, r))
                    print(f"d={d:<3} {op:<6} {name:<36} n={n:<8} "
                          f"{r['seconds']:9.3f} s {r['peak_mb']:9.1f} MB "
                          f"{r.get('note', '')}", flush=True)
                    if not r["seconds"] <= args.budget:
                        break
                results[(d, op, name)] = row
    print("\nSummary: seconds (ratio to the reference at the same n), peak MB, "
          "growth exponent b of time ~ n^b")
    for (d, op, name), row in results.items():
        family = "binary" if name in BINARY else "continuous"
        ref = dict(results.get((d, op, REFERENCE[family]), []))
        cells = []
        for n, r in row:
            ratio = r["seconds"] / ref[n]["seconds"] if n in ref else math.nan
            cells.append(f"n={n}: {r['seconds']:.3g}s ({ratio:.3g}x) "
                         f"{r['peak_mb']:.0f}MB")
        b = _exponent([n for n, _ in row], [r["seconds"] for _, r in row])
        print(f"d={d} {op} {name}: " + "; ".join(cells) + f"; b={b:.2f}")


if __name__ == "__main__":
    main()
