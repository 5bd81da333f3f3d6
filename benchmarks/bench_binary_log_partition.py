"""Benchmark: log Z and sampling of binary models (issue 13).

For binary models with 16, 20, 64 and 256 units: the annealed importance
sampling estimate of log Z that the estimators use above 20 features (from a
mixture of independent Bernoullis fitted to the training data), its reported
error, its effective sample size and time, and its difference to the truth:
exact enumeration for d <= 20, otherwise a run with 16x the chains and 5x the
temperatures (80x the budget), whose own error is printed. Each row also
shows the previous method ("legacy": AIS from the data's marginals, one
product of Bernoullis, delta-method error, every energy evaluated again for
the weights), on the same energy, in the same run; ``z`` is the difference
over the reported error.

Models: all-to-all ferromagnets (J = 0.3, h = -0.05: two modes, the minority
one with 0.17 / 0.12 of the mass) at d = 16 and 20; Ising models fitted by
PseudoLikelihoodIsing (L1) to both magnetized states of a ferromagnetic 8x8 and
16x16 lattice (bimodal fitted models); RatioMatchingBinary (MLP energy) on
binarized digits (8x8, d = 64) and on digits resized to 16x16 (d = 256).

For the bimodal models, the share of ``sample()`` in the plus mode (mean
spin > 0; 20000 samples) from the default start (annealed importance samples,
resampled) and from short-run chains from noise, from the data, and from 4
persistent chains, against the model's own share (enumeration for d <= 20,
the importance-weighted share of the 80x reference run above).

Run: ``python benchmarks/bench_binary_log_partition.py [--quick]``.
"""

import argparse
import math
import time
import warnings

import numpy as np
import torch
from scipy.ndimage import zoom
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

import skebm._binary
from skebm import PseudoLikelihoodIsing, RatioMatchingBinary
from skebm._bernoulli_mixture import fit_bernoulli_mixture
from skebm.datasets import make_ising_lattice
from skebm.energies import IsingEnergy
from skebm.exceptions import LogPartitionWarning
from skebm.partition import (
    binary_states,
    log_partition_ais_binary,
    log_partition_enumerate,
)
from skebm.samplers import anneal_binary, gibbs


class _LegacyTempered:
    """The previous AIS path: ``β E + (1 - β) E_0``, ``E_0`` one product of
    Bernoullis, with the energy's own flip methods (as the previous code)."""

    def __init__(self, energy, logits, values, beta):
        self.energy, self.logits, self.beta = energy, logits, beta
        self.lo, self.hi = values
        if hasattr(energy, "flip_difference_at"):
            self.flip_difference_at = self._flip_difference_at
        if hasattr(energy, "independent_site_sets"):
            self._sets = energy.independent_site_sets()
            self.independent_site_sets = lambda: self._sets
            self.flip_differences_on = self._flip_differences_on

    def base(self, x):
        return -((x - self.lo) / (self.hi - self.lo)) @ self.logits

    def __call__(self, x):
        return self.beta * self.energy(x) + (1 - self.beta) * self.base(x)

    def _flip_differences_on(self, x, sites):
        bit = (x[:, sites] - self.lo) / (self.hi - self.lo)
        base = -self.logits[sites] * (1 - 2 * bit)
        return (self.beta * self.energy.flip_differences_on(x, sites)
                + (1 - self.beta) * base)

    def _flip_difference_at(self, x, index):
        bit = (x.gather(1, index[:, None]).squeeze(1) - self.lo) / (self.hi - self.lo)
        base = -self.logits[index] * (1 - 2 * bit)
        return (self.beta * self.energy.flip_difference_at(x, index)
                + (1 - self.beta) * base)


@torch.no_grad()
def legacy_ais(energy, probabilities, values, n_chains, n_steps, seed):
    """The previous estimator, as it was: data marginals, delta-method error."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = values
    p = probabilities.clamp(1e-3, 1 - 1e-3)
    logits = torch.log(p) - torch.log1p(-p)
    log_z0 = float(torch.nn.functional.softplus(logits).sum())
    bits = torch.rand(n_chains, p.shape[0], generator=gen, dtype=p.dtype) < p
    x = lo + (hi - lo) * bits.to(p.dtype)
    t = torch.linspace(-5.0, 5.0, n_steps + 1, dtype=torch.float64)
    sig = torch.sigmoid(t)
    betas = ((sig - sig[0]) / (sig[-1] - sig[0])).tolist()
    log_w = torch.zeros(n_chains, dtype=p.dtype)
    path = _LegacyTempered(energy, logits, values, 0.0)
    for k in range(1, n_steps + 1):
        log_w = log_w + (betas[k] - betas[k - 1]) * (path.base(x) - energy(x))
        path.beta = betas[k]
        x = gibbs(path, x, n_sweeps=1, values=values, generator=gen)
    w = torch.exp(log_w - log_w.max())
    log_z = float(log_w.max() + torch.log(w.mean())) + log_z0
    stderr = float(w.std() / (math.sqrt(n_chains) * w.mean()))
    return log_z, stderr


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def ferromagnet(d):
    energy = IsingEnergy(d).double()
    energy.set_parameters(torch.full((d,), -0.05, dtype=torch.float64),
                          torch.full((d, d), 0.3, dtype=torch.float64))
    return energy


def exact_draws(energy, d, n, seed):
    states = binary_states(0, 2**d, d, values=(-1.0, 1.0), dtype=torch.float64,
                           device="cpu")
    with torch.no_grad():
        p = torch.softmax(-energy(states), 0).numpy()
    idx = np.random.RandomState(seed).choice(2**d, size=n, p=p)
    return states.numpy()[idx]


def lattice_model(side, n, quick):
    """PseudoLikelihoodIsing (L1, a sparse fitted graph) fitted to Gibbs
    samples of a ferromagnetic lattice started in both magnetized states
    (2/3 plus, 1/3 minus)."""
    J, h = make_ising_lattice(side, coupling_range=(0.45, 0.6), field_scale=0.02,
                              random_state=0)
    J = np.abs(J)
    energy = IsingEnergy(side * side).double()
    energy.set_parameters(torch.as_tensor(h), torch.as_tensor(J))
    x0 = torch.ones(n, side * side, dtype=torch.float64)
    x0[: n // 3] = -1.0
    X = gibbs(energy, x0, n_sweeps=50 if quick else 200, values=(-1.0, 1.0),
              generator=torch.Generator().manual_seed(0)).numpy()
    est = PseudoLikelihoodIsing(penalty="l1", alpha=0.01, random_state=0).fit(X)
    return est, X


def digits_model(side, quick):
    images = load_digits().data.reshape(-1, 8, 8)
    if side != 8:
        images = np.stack([zoom(im, side / 8, order=1) for im in images])
    X = (images.reshape(len(images), -1) > 7).astype(np.float32)
    epochs = {8: 60, 16: 10} if not quick else {8: 10, 16: 2}
    with warnings.catch_warnings():
        # log Z of the fit is skipped (2 chains, 1 step): the rows do it.
        warnings.simplefilter("ignore", LogPartitionWarning)
        est = RatioMatchingBinary(max_iter=epochs[side], early_stopping=False,
                                  n_ais_chains=2, n_ais_steps=1,
                                  random_state=0).fit(X)
    return est, X


def plus_share(S):
    return float((S.mean(1) > 0).mean())


def row(name, d, energy, values, data_bits, truth, truth_err, n_chains, n_steps,
        legacy=True):
    w, p = fit_bernoulli_mixture(data_bits, np.random.RandomState(0))
    est, t = timed(lambda: log_partition_ais_binary(
        energy, torch.as_tensor(p), mixture_weights=torch.as_tensor(w),
        values=values, n_chains=n_chains, n_steps=n_steps,
        max_growth=16, generator=torch.Generator().manual_seed(1)))
    if truth is None:
        ref, t_ref = timed(lambda: log_partition_ais_binary(
            energy, torch.as_tensor(p), mixture_weights=torch.as_tensor(w),
            values=values, n_chains=16 * n_chains, n_steps=5 * n_steps,
            generator=torch.Generator().manual_seed(2)))
        truth, truth_err = ref.log_z, ref.stderr
    diff = est.log_z - truth
    print(f"{name:<30}{d:>4} {'new':<7}{est.log_z:>11.3f}{est.stderr:>8.3f}"
          f"{diff:>+9.3f}{diff / max(est.stderr, 1e-12):>+7.1f}{est.ess:>8.0f}"
          f"{est.n_draws:>6}{est.probabilities.shape[0]:>3}{t:>7.1f}   "
          f"truth {truth:.3f} +- {truth_err:.3f}", flush=True)
    if legacy:
        marg = torch.as_tensor(data_bits.mean(0), dtype=torch.float64)
        (lz, err), t_old = timed(lambda: legacy_ais(energy, marg, values,
                                                    n_chains, n_steps, 1))
        diff = lz - truth
        print(f"{'':<30}{'':>4} {'legacy':<7}{lz:>11.3f}{err:>8.3f}{diff:>+9.3f}"
              f"{diff / max(err, 1e-12):>+7.1f}{'':>8}{n_chains:>6}{1:>3}{t_old:>7.1f}"
              f"   time new/legacy {t / t_old:.2f}", flush=True)
    return w, p, truth


def model_plus_share(energy, d, values, w, p, n_chains, n_steps):
    if d <= 20:
        states = binary_states(0, 2**d, d, values=values, dtype=torch.float64,
                               device="cpu")
        with torch.no_grad():
            q = torch.softmax(-energy(states), 0)
        return float(q[states.mean(1) > 0].sum()), 0.0
    x, log_w = anneal_binary(energy, torch.as_tensor(p),
                             mixture_weights=torch.as_tensor(w),
                             n_chains=16 * n_chains, n_steps=5 * n_steps,
                             values=values, generator=torch.Generator().manual_seed(3))
    wts = torch.softmax(log_w, 0)
    share = float(wts[x.mean(1) > 0].sum())
    ess = float(1 / (wts**2).sum())
    return share, math.sqrt(share * (1 - share) / ess)


def sample_rows(est, energy, d, values, w, p, n_samples, n_chains, n_steps):
    share, err = model_plus_share(energy, d, values, w, p, n_chains, n_steps)
    print(f"    model's plus-mode share {share:.4f} (+- {err:.4f}); "
          f"sample() of {n_samples}:", flush=True)
    rows = [("default (annealed)", dict(sampling_init="annealed",
                                        n_sampling_chains=None))]
    if d <= 20:
        rows[0] = ("default (exact, d <= 20)", rows[0][1])
        rows.append(("annealed (forced)", dict(sampling_init="annealed",
                                               n_sampling_chains=None)))
    for label, params in rows + [
        ("short-run from noise", dict(sampling_init="noise", n_sampling_chains=None)),
        ("short-run from data", dict(sampling_init="data", n_sampling_chains=None)),
        ("4 persistent from noise", dict(sampling_init="noise", n_sampling_chains=4)),
    ]:
        if params["n_sampling_chains"] and d > 64:
            continue
        forced = label.startswith("annealed (forced)")
        limit = skebm._binary._MAX_AUTO_ENUMERATION
        skebm._binary._MAX_AUTO_ENUMERATION = 0 if forced else limit
        try:
            S, t = timed(lambda params=params: est.set_params(**params).sample(
                n_samples, random_state=0))
        finally:
            skebm._binary._MAX_AUTO_ENUMERATION = limit
        print(f"      {label:<26} {plus_share(S):.4f}  ({plus_share(S) - share:+.4f})"
              f"  {t:6.1f} s", flush=True)
    est.set_params(sampling_init="annealed", n_sampling_chains=None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", ConvergenceWarning)
    n_chains, n_steps = 256, 200
    n_samples = 4000 if args.quick else 20000
    print(f"AIS: {n_chains} chains (doubling up to 16x while unreliable), "
          f"{n_steps} temperatures")
    print(f"{'model':<30}{'d':>4} {'method':<7}{'log Z':>11}{'+-':>8}"
          f"{'diff':>9}{'z':>7}{'ESS':>8}{'chains':>6}{'K':>3}{'time s':>7}")
    for d in (16, 20):
        energy = ferromagnet(d)
        truth, _ = log_partition_enumerate(energy, d, values=(-1.0, 1.0))
        X = exact_draws(energy, d, 4000, 0)
        row("ferromagnet J=0.3 h=-0.05", d, energy, (-1.0, 1.0), (X > 0) * 1.0,
            truth, 0.0, n_chains, n_steps)
        est = PseudoLikelihoodIsing(alpha=0.0, log_partition_method="ais",
                                    random_state=0).fit(X)
        truth_fit, _ = log_partition_enumerate(est.energy_.double(), d,
                                               values=(-1.0, 1.0))
        print(f"{'  its PseudoLikelihoodIsing(0)':<30}{d:>4} {'fit':<7}"
              f"{est.log_partition_:>11.3f}{est.log_partition_std_:>8.3f}"
              f"{est.log_partition_ - truth_fit:>+9.3f}"
              f"{(est.log_partition_ - truth_fit) / est.log_partition_std_:>+7.1f}"
              f"{est.log_partition_ess_:>8.0f}   truth {truth_fit:.3f}", flush=True)
        # A fitted bimodal model whose mode masses are not the data's.
        small = IsingEnergy(d).double()
        small.set_parameters(torch.full((d,), -0.02, dtype=torch.float64),
                             torch.full((d, d), 3.0 / d, dtype=torch.float64))
        Xs = exact_draws(small, d, 20000, 1)
        fitted = PseudoLikelihoodIsing(random_state=0).fit(Xs)
        print("  sampling a PseudoLikelihoodIsing fitted to a J=3/d, h=-0.02 "
              f"ferromagnet (data's plus share {plus_share(Xs):.3f}):")
        sample_rows(fitted, fitted.energy_.double(), d, (-1.0, 1.0),
                    *fit_bernoulli_mixture((Xs > 0) * 1.0, np.random.RandomState(0)),
                    n_samples, n_chains, n_steps)
    for side in (8, 16):
        d = side * side
        est, X = lattice_model(side, 5000 if args.quick else 10000, args.quick)
        energy = est.energy_.double()
        w, p, _ = row(f"Ising fitted to {side}x{side} lattice", d, energy,
                      (-1.0, 1.0), (X > 0) * 1.0, None, None, n_chains, n_steps)
        print(f"  fit: log_partition_ {est.log_partition_:.3f} +- "
              f"{est.log_partition_std_:.3f}, ESS {est.log_partition_ess_:.0f}")
        sample_rows(est, energy, d, (-1.0, 1.0), w, p,
                    n_samples if d <= 64 else n_samples // 5, n_chains, n_steps)
    for side in (8, 16):
        est, X = digits_model(side, args.quick)
        energy = est.energy_.double()
        row(f"RatioMatchingBinary digits {side}x{side}", side * side, energy,
            (0.0, 1.0), X, None, None, n_chains, n_steps)


if __name__ == "__main__":
    main()
