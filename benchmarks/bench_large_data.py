"""Peak memory of fitting 10^6 x 20 float32 data (issue: scale and reliability).

Fitting streams minibatches from the numpy array: no full copy into a tensor and
no float64 copy of X. The goal is a peak resident memory, above what the process
held with the data loaded, under 3x the data's size. Prints the measured ratio.

Run: ``python benchmarks/bench_large_data.py [--n-samples 1000000]``.
"""

import argparse
import resource
import time
import warnings

import numpy as np


def peak_rss_bytes():
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--n-features", type=int, default=20)
    parser.add_argument("--estimator", default="ScoreMatchingDensity")
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()

    import torch

    import skebm

    n, d = args.n_samples, args.n_features
    # Warm torch and the estimator code up on tiny data first, so that their
    # one-off allocations are not charged to the large fit.
    est_cls = getattr(skebm, args.estimator)
    params = dict(
        batch_size=args.batch_size,
        max_iter=1,
        n_ais_chains=256,
        n_ais_steps=100,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est_cls(**params).fit(
            np.random.RandomState(0).normal(size=(5000, d)).astype(np.float32)
        )
    X = np.empty((n, d), dtype=np.float32)
    rng = np.random.default_rng(0)
    for start in range(0, n, 100_000):
        X[start : start + 100_000] = rng.standard_normal(
            (min(100_000, n - start), d), dtype=np.float32
        )
    data_bytes = X.nbytes
    before = peak_rss_bytes()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = est_cls(**params).fit(X)
    elapsed = time.perf_counter() - start
    growth = peak_rss_bytes() - before
    print(
        f"{args.estimator}: n={n} d={d} float32, data {data_bytes / 2**20:.1f} MiB, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    print(
        f"fit time (1 epoch, batch {args.batch_size}): {elapsed:.1f} s; "
        f"log Z = {est.log_partition_:.3f} +/- {est.log_partition_std_:.3f}"
    )
    print(
        f"peak memory above the loaded data: {growth / 2**20:.1f} MiB = "
        f"{growth / data_bytes:.2f}x the data (goal < 3x)"
    )
    print(
        f"fitted parameters float32: "
        f"{all(p.dtype == torch.float32 for p in est.energy_.parameters())}"
    )


if __name__ == "__main__":
    main()
