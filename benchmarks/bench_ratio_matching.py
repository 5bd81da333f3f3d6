"""Benchmark for RatioMatchingBinary (issue 5).

1. Binarized digits (``load_digits``, 64 pixels, ``x > 7``), 70/30 split:
   held-out mean log-likelihood (log Z by annealed importance sampling, with
   its standard error) and exact held-out pseudo-log-likelihood, in nats per
   image, with fit times, for RatioMatchingBinary (both methods),
   BernoulliRBM (64 and 128 components, learning rate chosen from a small
   grid by held-out pseudo-likelihood; its pseudo-likelihood is computed
   exactly over all 64 pixels, since ``BernoulliRBM.score_samples`` flips one
   random pixel; its log Z by the same AIS on its free energy) and
   independent Bernoulli pixels.
2. Time and peak memory of one training step (MLP energy, float32, batch
   128), exact vs ggis, at d = 64, 256, 784 (digits resized to 8x8, 16x16,
   28x28 and binarized), each step in a fresh subprocess so that its peak
   resident memory can be read; and the held-out exact pseudo-log-likelihood
   of both methods after the same number of epochs (``--epochs``).

Run: ``python benchmarks/bench_ratio_matching.py [--quick] [--epochs 3]``
(``--skip-digits`` / ``--skip-scaling`` run one part).
"""

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import torch
from scipy.ndimage import zoom
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import BernoulliRBM

from skebm import RatioMatchingBinary
from skebm.energies import MLPEnergy
from skebm.objectives import (
    ggis_ratio_matching_loss,
    pseudo_log_likelihood,
    ratio_matching_loss,
)
from skebm.partition import log_partition_ais_binary

warnings.filterwarnings("ignore", category=ConvergenceWarning)


def digits(side=8, seed=0):
    images = load_digits().data.reshape(-1, 8, 8)
    if side != 8:
        images = np.stack([zoom(im, side / 8, order=1) for im in images])
    X = (images.reshape(len(images), -1) > 7).astype(np.float32)
    return train_test_split(X, test_size=0.3, random_state=seed)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


class RBMFreeEnergy(torch.nn.Module):
    """Free energy F(v) = -b.v - sum_j softplus(c_j + W_j.v) of a BernoulliRBM."""

    def __init__(self, rbm):
        super().__init__()
        self.w = torch.as_tensor(rbm.components_, dtype=torch.float64)
        self.b = torch.as_tensor(rbm.intercept_visible_, dtype=torch.float64)
        self.c = torch.as_tensor(rbm.intercept_hidden_, dtype=torch.float64)

    def forward(self, v):
        v = v.to(torch.float64)
        hidden = torch.nn.functional.softplus(v @ self.w.T + self.c)
        return -(v @ self.b) - hidden.sum(1)


def exact_pll(energy, X):
    with torch.no_grad():
        return float(pseudo_log_likelihood(energy, torch.as_tensor(X).double()).mean())


def rbm_row(n_components, Xtr, Xte, quick):
    best = None
    for lr in (0.02, 0.05) if quick else (0.01, 0.02, 0.05, 0.1):
        rbm, t = timed(
            lambda lr=lr: BernoulliRBM(
                n_components=n_components,
                learning_rate=lr,
                batch_size=10,
                n_iter=30 if quick else 100,
                random_state=0,
            ).fit(Xtr)
        )
        energy = RBMFreeEnergy(rbm)
        pll = exact_pll(energy, Xte)
        if best is None or pll > best[1]:
            best = (rbm, pll, t, lr)
    rbm, pll, t, lr = best
    energy = RBMFreeEnergy(rbm)
    log_z, std = log_partition_ais_binary(
        energy,
        torch.as_tensor(Xtr.mean(0), dtype=torch.float64),
        n_chains=256,
        n_steps=300 if quick else 1000,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        ll = float((-energy(torch.as_tensor(Xte).double())).mean()) - log_z
    return f"BernoulliRBM({n_components}) lr={lr}", ll, std, pll, t


RM_CONFIGS = [("mlp", "exact"), ("mlp", "ggis"), ("boltzmann", "exact"),
              ("boltzmann", "ggis")]
# The defaults, except a larger step for the (convex-like) Boltzmann machine.
RM_PARAMS = {"mlp": {}, "boltzmann": {"learning_rate_init": 0.01}}


def digits_table(quick):
    Xtr, Xte = digits()
    print(f"\n== binarized digits, d=64, n_train={len(Xtr)}, n_test={len(Xte)} ==")
    print(f"{'model':<38}{'loglik':>9}{'+-':>6}{'pseudo-LL':>11}{'fit s':>8}")
    rows = []
    p = (Xtr.sum(0) + 1) / (len(Xtr) + 2)
    ind = float((Xte * np.log(p) + (1 - Xte) * np.log1p(-p)).sum(1).mean())
    rows.append(("independent Bernoulli", ind, 0.0, ind, 0.0))
    print("{:<38}{:>9.2f}{:>6.2f}{:>11.2f}{:>8.1f}".format(*rows[-1]), flush=True)
    for n_components in (64, 128):
        rows.append(rbm_row(n_components, Xtr, Xte, quick))
        print("{:<38}{:>9.2f}{:>6.2f}{:>11.2f}{:>8.1f}".format(*rows[-1]), flush=True)
    for energy, method in RM_CONFIGS:
        kw = dict(energy=energy, method=method, random_state=0, n_ais_chains=256,
                  n_ais_steps=1000, **RM_PARAMS[energy])
        if quick:
            kw.update(max_iter=20, n_ais_steps=300)
        est, t = timed(lambda kw=kw: RatioMatchingBinary(**kw).fit(Xtr))
        pll = float(est.pseudo_log_likelihood(Xte).mean())
        rows.append(
            (f"RatioMatchingBinary({energy}, {method})", est.score(Xte),
             est.log_partition_std_, pll, t)
        )
        print("{:<38}{:>9.2f}{:>6.2f}{:>11.2f}{:>8.1f}".format(*rows[-1]), flush=True)
    rbm_best = max(r[3] for r in rows if r[0].startswith("BernoulliRBM"))
    for r in rows:
        if r[0].startswith("RatioMatching"):
            print(f"{r[0]}: pseudo-LL minus best RBM's = {r[3] - rbm_best:+.2f} nats")


def step_worker(d, method, batch_size, n_steps):
    """One subprocess: time and peak RSS of training steps at dimension d."""
    torch.set_num_threads(1)
    side = int(round(d**0.5))
    Xtr, _ = digits(side)
    gen = torch.Generator().manual_seed(0)
    energy = MLPEnergy(d, (128,), "softplus", generator=gen)
    opt = torch.optim.Adam(energy.parameters(), lr=1e-3)
    if method == "exact":
        loss_fn = ratio_matching_loss
    else:
        def loss_fn(e, x):
            return ggis_ratio_matching_loss(e, x, n_flip_samples=8, generator=gen)

    x = torch.as_tensor(Xtr[:batch_size])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(n_steps + 1):
        start = time.perf_counter()
        opt.zero_grad()
        loss_fn(energy, x).backward()
        opt.step()
        times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"time": float(np.median(times[1:])),
                      "peak_mib": (after - before) / 1024}))


def scaling_table(quick, epochs):
    print("\n== one training step, MLP (128,) energy, float32, batch 128 ==")
    print(f"{'d':>5}{'exact s':>10}{'ggis s':>9}{'speed-up':>10}"
          f"{'exact MiB':>11}{'ggis MiB':>10}")
    dims = (64, 256) if quick else (64, 256, 784)
    for d in dims:
        res = {}
        for method in ("exact", "ggis"):
            out = subprocess.run(
                [sys.executable, __file__, "--step-worker", str(d), method],
                capture_output=True, text=True, check=True,
            )
            res[method] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{d:>5}{res['exact']['time']:>10.3f}{res['ggis']['time']:>9.3f}"
              f"{res['exact']['time'] / res['ggis']['time']:>9.1f}x"
              f"{res['exact']['peak_mib']:>11.0f}{res['ggis']['peak_mib']:>10.0f}",
              flush=True)
    d = dims[-1]
    side = int(round(d**0.5))
    Xtr, Xte = digits(side)
    Xte = Xte[:200]
    print(f"\n== held-out exact pseudo-LL at d={d}, batch 128, lr 3e-3 ==")
    print(f"{'method':<8}{'epochs':>7}{'pseudo-LL':>11}{'fit s':>8}")
    runs = {}
    for method, n_epochs in (("exact", epochs), ("ggis", epochs),
                             ("ggis", 10 * epochs)):
        est, t = timed(lambda method=method, n_epochs=n_epochs: RatioMatchingBinary(
            method=method, max_iter=n_epochs, batch_size=128, early_stopping=False,
            learning_rate_init=3e-3,
            log_partition_method="ais", n_ais_chains=2, n_ais_steps=1,
            random_state=0).fit(Xtr))
        pll = float(est.pseudo_log_likelihood(Xte).mean())
        runs[method, n_epochs] = (pll, t)
        print(f"{method:<8}{n_epochs:>7}{pll:>11.2f}{t:>8.1f}", flush=True)
    exact_pll, exact_t = runs["exact", epochs]
    for n_epochs in (epochs, 10 * epochs):
        pll, t = runs["ggis", n_epochs]
        print(f"ggis ({n_epochs} epochs) vs exact ({epochs}): pseudo-LL "
              f"{100 * (pll - exact_pll) / abs(exact_pll):+.1f}%, "
              f"fit {exact_t / t:.0f}x faster")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--step-worker", nargs=2, metavar=("D", "METHOD"))
    args = parser.parse_args()
    if args.step_worker:
        d, method = args.step_worker
        step_worker(int(d), method, batch_size=128, n_steps=3)
        return
    torch.set_num_threads(1)
    if not args.skip_digits:
        digits_table(args.quick)
    if not args.skip_scaling:
        scaling_table(args.quick, args.epochs)


if __name__ == "__main__":
    main()
