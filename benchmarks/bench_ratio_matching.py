"""Benchmark for RatioMatchingBinary (issues 5 and 16).

1. Binarized digits (``load_digits``, 64 pixels, ``x > 7``), 70/30 split:
   held-out mean log-likelihood (log Z by annealed importance sampling, with
   its standard error) and exact held-out pseudo-log-likelihood, in nats per
   image, with fit times, for RatioMatchingBinary (defaults, ggis, Boltzmann),
   BernoulliRBM (64, 128 and 256 components, learning rate chosen from
   0.01-0.1 by held-out pseudo-likelihood; its pseudo-likelihood is computed
   exactly over all 64 pixels, since ``BernoulliRBM.score_samples`` flips one
   random pixel; its log Z by AIS on its free energy) and independent
   Bernoulli pixels.
2. One exact ratio matching loss + gradient against ebmkit's
   ``RatioMatching`` (a Python loop over the bits), same network, float32,
   at d = 16, 64, 256: the Boltzmann machine (closed-form flips), the MLP
   energy (``BinaryMLPEnergy``, one softplus layer of 128: fused flips) and
   the same MLP hidden in a plain module (skebm's blocked generic path).
3. Whole fit, exact vs ggis, at d = 64, 256, 784 (digits resized to 8x8,
   16x16, 28x28 and binarized; 1024 rows, ``--epochs`` epochs, default log Z
   settings), with its breakdown into training, log Z and the rest; and the
   held-out exact pseudo-log-likelihood of each.

Run: ``python benchmarks/bench_ratio_matching.py [--quick] [--epochs 2]``
(``--skip-digits`` / ``--skip-loss`` / ``--skip-fit`` skip a part).
"""

import argparse
import time
import warnings

import numpy as np
import torch
from scipy.ndimage import zoom
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import BernoulliRBM

import skebm._base
from skebm import RatioMatchingBinary
from skebm._binary import _BaseBinaryEnergyDensity
from skebm.energies import BinaryMLPEnergy, BoltzmannEnergy
from skebm.objectives import pseudo_log_likelihood, ratio_matching_loss
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


def rbm_free_energy(rbm):
    """The free energy ``F(v) = -b.v - sum_j softplus(c_j + W_j.v)`` of a
    BernoulliRBM, as a BinaryMLPEnergy (one softplus layer, output weights
    -1), so that its flips and Gibbs updates take skebm's fast paths."""
    d, h = rbm.components_.shape[1], rbm.components_.shape[0]
    energy = BinaryMLPEnergy(d, (h,), zero_output=True).double()
    with torch.no_grad():
        energy.layers[0].weight.copy_(torch.as_tensor(rbm.components_))
        energy.layers[0].bias.copy_(torch.as_tensor(rbm.intercept_hidden_))
        energy.layers[1].weight.fill_(-1.0)
        energy.bias.copy_(torch.as_tensor(rbm.intercept_visible_))
    return energy


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
        energy = rbm_free_energy(rbm)
        pll = exact_pll(energy, Xte)
        if best is None or pll > best[1]:
            best = (rbm, pll, t, lr)
    rbm, pll, t, lr = best
    energy = rbm_free_energy(rbm)
    log_z, std = log_partition_ais_binary(
        energy,
        torch.as_tensor(Xtr.mean(0), dtype=torch.float64),
        n_chains=256,
        n_steps=300 if quick else 1000,
        max_growth=16,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        ll = float((-energy(torch.as_tensor(Xte).double())).mean()) - log_z
    return f"BernoulliRBM({n_components}) lr={lr}", ll, std, pll, t


RM_CONFIGS = [("mlp", "exact"), ("mlp", "ggis"), ("boltzmann", "exact")]
# The defaults, except a larger step for the (convex-like) Boltzmann machine.
RM_PARAMS = {"mlp": {}, "boltzmann": {"learning_rate_init": 0.01}}


def digits_table(quick):
    Xtr, Xte = digits()
    print(f"\n== binarized digits, d=64, n_train={len(Xtr)}, n_test={len(Xte)} ==")
    print(f"{'model':<38}{'loglik':>9}{'+-':>6}{'pseudo-LL':>11}{'fit s':>8}"
          "   (log Z, estimated on first use, apart)")
    rows = []
    p = (Xtr.sum(0) + 1) / (len(Xtr) + 2)
    ind = float((Xte * np.log(p) + (1 - Xte) * np.log1p(-p)).sum(1).mean())
    rows.append(("independent Bernoulli", ind, 0.0, ind, 0.0))
    print("{:<38}{:>9.2f}{:>6.2f}{:>11.2f}{:>8.1f}".format(*rows[-1]), flush=True)
    for n_components in (64, 128, 256):
        rows.append(rbm_row(n_components, Xtr, Xte, quick))
        print("{:<38}{:>9.2f}{:>6.2f}{:>11.2f}{:>8.1f}".format(*rows[-1]), flush=True)
    for energy, method in RM_CONFIGS:
        kw = dict(energy=energy, method=method, random_state=0,
                  **RM_PARAMS[energy])
        if quick:
            kw.update(max_iter=20)
        est, t = timed(lambda kw=kw: RatioMatchingBinary(**kw).fit(Xtr))
        _, t_log_z = timed(lambda est=est: est.log_partition_)  # first use: AIS
        pll = float(est.pseudo_log_likelihood(Xte).mean())
        rows.append(
            (f"RatioMatchingBinary({energy}, {method})", est.score(Xte),
             est.log_partition_std_, pll, t)
        )
        print("{:<38}{:>9.2f}{:>6.2f}{:>11.2f}{:>8.1f}".format(*rows[-1])
              + f"   + log Z {t_log_z:.1f} s", flush=True)
    rbm_ll = max(r[1] for r in rows if r[0].startswith("BernoulliRBM"))
    rbm_pll = max(r[3] for r in rows if r[0].startswith("BernoulliRBM"))
    for r in rows:
        if r[0].startswith("RatioMatching"):
            print(f"{r[0]}: minus the best RBM's: log-likelihood "
                  f"{r[1] - rbm_ll:+.2f}, pseudo-LL {r[3] - rbm_pll:+.2f} nats")


class Hidden(torch.nn.Module):
    """The same network as a plain module: skebm cannot see its structure."""

    def __init__(self, energy):
        super().__init__()
        self.energy = energy

    def forward(self, x):
        return self.energy(x)


def best_time(fn, repeats=3):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def loss_table(quick):
    try:
        from ebm.losses import RatioMatching
    except ImportError:
        print("\nebmkit not installed: loss comparison skipped (pip install ebmkit).")
        return
    n = 1024 if quick else 4096
    print(f"\n== one exact ratio matching loss + gradient, n={n}, float32, "
          "best of 3 ==")
    print(f"{'d':>5} {'energy':<28}{'ebmkit ms':>10}{'skebm ms':>10}{'ratio':>8}")
    ebm_loss = RatioMatching()
    for d in (16, 64, 256):
        x = (torch.rand(n, d, generator=torch.Generator().manual_seed(0)) < 0.3)
        x = x.float()
        gen = torch.Generator().manual_seed(0)
        boltzmann = BoltzmannEnergy(d)
        with torch.no_grad():
            boltzmann.weight_raw.normal_(0, 0.1, generator=gen)
        mlp = BinaryMLPEnergy(d, (128,), zero_output=False, generator=gen)
        for name, energy, ours in [
            ("Boltzmann", boltzmann, boltzmann),
            ("MLP (128,) softplus", mlp, mlp),
            ("MLP as a plain module", mlp, Hidden(mlp)),
        ]:
            def run_ebm(energy=energy):
                energy.zero_grad()
                ebm_loss(energy, x).loss.backward()

            def run_ours(energy=energy, ours=ours):
                energy.zero_grad()
                ratio_matching_loss(ours, x).backward()

            t_e, t_s = best_time(run_ebm, 1 if d == 256 else 3), best_time(run_ours)
            print(f"{d:>5} {name:<28}{t_e * 1e3:>10.1f}{t_s * 1e3:>10.1f}"
                  f"{t_e / t_s:>7.1f}x", flush=True)


class Breakdown:
    """Times train_minibatch and the log Z estimate of every fit."""

    def __init__(self):
        self.train = self.log_z = 0.0

    def __enter__(self):
        self._train = skebm._base.train_minibatch
        self._log_z = _BaseBinaryEnergyDensity._estimate_log_partition
        outer = self

        def train(*args, **kwargs):
            start = time.perf_counter()
            try:
                return outer._train(*args, **kwargs)
            finally:
                outer.train += time.perf_counter() - start

        def log_z(*args, **kwargs):
            start = time.perf_counter()
            try:
                return outer._log_z(*args, **kwargs)
            finally:
                outer.log_z += time.perf_counter() - start

        skebm._base.train_minibatch = train
        _BaseBinaryEnergyDensity._estimate_log_partition = log_z
        return self

    def __exit__(self, *exc):
        skebm._base.train_minibatch = self._train
        _BaseBinaryEnergyDensity._estimate_log_partition = self._log_z


def fit_table(quick, epochs):
    print(f"\n== whole fit, 1024 rows, {epochs} epochs, default log Z settings ==")
    print("(above 20 features log Z is estimated on first use: 'log Z s' is the "
          "first read of log_partition_ after fit)")
    print(f"{'d':>5} {'method':<7}{'fit s':>8}{'train s':>9}{'other s':>9}"
          f"{'log Z s':>9}{'log Z':>10}{'+-':>7}{'pseudo-LL':>11}")
    for side in (8, 16) if quick else (8, 16, 28):
        Xtr, Xte = digits(side)
        Xtr, Xte = Xtr[:1024], Xte[:300]
        times, totals = {}, {}
        for method in ("exact", "ggis"):
            with Breakdown() as parts:
                est, t = timed(lambda method=method: RatioMatchingBinary(
                    method=method, max_iter=epochs, early_stopping=False,
                    random_state=0).fit(Xtr))
                in_fit = parts.log_z
                _, t_log_z = timed(lambda est=est: est.log_partition_)
            times[method] = t
            totals[method] = t + t_log_z
            pll = float(est.pseudo_log_likelihood(Xte).mean())
            print(f"{side * side:>5} {method:<7}{t:>8.2f}{parts.train:>9.2f}"
                  f"{t - parts.train - in_fit:>9.2f}{in_fit + t_log_z:>9.1f}"
                  f"{est.log_partition_:>10.2f}{est.log_partition_std_:>7.3f}"
                  f"{pll:>11.2f}", flush=True)
        print(f"      fit exact / ggis: {times['exact'] / times['ggis']:.1f}x; "
              f"fit + log Z: {totals['exact'] / totals['ggis']:.1f}x", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--skip-loss", action="store_true")
    parser.add_argument("--skip-fit", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.skip_digits:
        digits_table(args.quick)
    if not args.skip_loss:
        loss_table(args.quick)
    if not args.skip_fit:
        fit_table(args.quick, args.epochs)


if __name__ == "__main__":
    main()
