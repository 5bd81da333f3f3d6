"""Training on a Dask array block by block: dask-ml's Incremental over partial_fit.

A 10^6 x 10 float32 Dask array, generated block by block on a LocalCluster (it is
never whole in this process), drives ``partial_fit`` of an estimator through
``dask_ml.wrappers.Incremental``. Prints the wall time, the peak resident memory
of this process above what it held before, that peak as a multiple of one block
and of the whole array, and the held-out log-likelihood against the same
estimator fitted in memory on the same rows (one epoch, as the stream). Run::

    python benchmarks/bench_incremental.py [--n-samples 1000000] [--chunk 100000]

Needs the ``test`` extra (dask, distributed, dask-ml).
"""

import argparse
import resource
import time
import warnings

import numpy as np


def _rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _mixture_block(block_id, chunk, d):
    rng = np.random.default_rng(block_id[0])
    centres = np.stack([np.full(d, -1.5), np.full(d, 1.5)])
    z = rng.integers(2, size=chunk)
    return (centres[z] + rng.standard_normal((chunk, d))).astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--n-features", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--estimator", default="SlicedScoreMatchingDensity")
    args = parser.parse_args()

    import dask.array as da
    from dask_ml.wrappers import Incremental
    from distributed import Client, LocalCluster

    import skebm

    n, d, chunk = args.n_samples, args.n_features, args.chunk
    n_blocks = n // chunk
    X = da.map_blocks(
        lambda block_id=None: _mixture_block(block_id, chunk, d),
        dtype=np.float32, chunks=((chunk,) * n_blocks, (d,)),
    )
    test = _mixture_block((10_000,), 20_000, d)
    make = getattr(skebm, args.estimator)
    params = dict(hidden_layer_sizes=(64,), batch_size=1024, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True)
        with cluster, Client(cluster):
            before = _rss()
            start = time.perf_counter()
            inc = Incremental(make(**params)).fit(X)
            seconds = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            whole = X.compute()
        streamed = inc.estimator_.score(test)
        # The same data in memory, one epoch (as the stream had): the base is
        # then chosen on all rows rather than on the first block.
        in_memory = make(max_iter=1, early_stopping=False, **params).fit(whole)
        in_memory = in_memory.score(test)
    block_bytes = chunk * d * 4
    above = max(0, peak - before)
    print(f"{n} x {d} float32 ({n * d * 4 / 2**20:.0f} MiB) in {n_blocks} blocks "
          f"of {block_bytes / 2**20:.1f} MiB, {args.estimator}")
    print(f"Incremental.fit: {seconds:.1f} s, peak memory above start "
          f"{above / 2**20:.0f} MiB = {above / block_bytes:.1f} blocks = "
          f"{above / (n * d * 4):.2f} x the whole array")
    print(f"held-out log-likelihood: streamed {streamed:.3f}, the same rows in "
          f"memory (one epoch) {in_memory:.3f}")


if __name__ == "__main__":
    main()
