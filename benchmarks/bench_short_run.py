"""Benchmark for MCMCLikelihoodDensity / MCMCLikelihoodBinary (issue 20).

1. 2-D toys (eight Gaussians, two moons; standardized; ``--n`` training and
   as many held-out points): held-out mean log-likelihood (log Z by
   quadrature; +- the standard error over the held-out points), fit time,
   and the energy distance between 2000 samples and the held-out data
   (beside the distance between two fresh draws of the true density: the
   floor that sampling noise alone gives) for short-run training (its
   short-run samples and the same energy's equilibrium samples), PCD,
   EnergyDiscrepancyDensity and an 8-component GaussianMixture.
2. Binarized digits (``load_digits``, 64 pixels, ``x > 7``, 70/30 split):
   held-out log-likelihood (log Z by annealed importance sampling, with its
   standard error), fit time and the energy distance of 1000 samples to the
   held-out images, for MCMCLikelihoodBinary (short-run from noise, its
   equilibrium, PCD), RatioMatchingBinary and BernoulliRBM (samples: 100
   Gibbs steps from random states; log Z of its free energy by the same
   AIS).
3. Peers, on the same MLP energy, batch and ``k``: one loss + gradient +
   Adam step, and a whole fit of ``--epochs`` epochs, as ratios to skebm:
   torchebm's ``ContrastiveDivergence`` (CD-k from data and its persistent
   variant) and ebmkit's ``ContrastiveDivergence`` (chains from noise, and a
   ``ReplayBuffer``: persistent). Binary: ebmkit's RBM with its block Gibbs
   sampler against MCMCLikelihoodBinary's sweeps on the RBM's free energy.
   Held-out log-likelihood of the peers' trained energies by the same
   quadrature.

Run: ``python benchmarks/bench_short_run.py [--n 1000] [--epochs 30]
[--digits-epochs 5]``
(``--skip-toys`` / ``--skip-digits`` / ``--skip-peers``).
"""

import argparse
import time
import warnings

import numpy as np
import torch
from scipy.spatial.distance import cdist
from sklearn.datasets import load_digits
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.neural_network import BernoulliRBM
from sklearn.preprocessing import StandardScaler

from skebm import (
    EnergyDiscrepancyDensity,
    MCMCLikelihoodBinary,
    MCMCLikelihoodDensity,
    RatioMatchingBinary,
)
from skebm.datasets import make_eight_gaussians, make_two_moons, toy_log_density
from skebm.energies import BinaryMLPEnergy, MLPEnergy
from skebm.objectives import NegativeChains, mcmc_likelihood_loss
from skebm.partition import log_partition_ais_binary, log_partition_quadrature
from skebm.samplers import gibbs, langevin

warnings.filterwarnings("ignore")
K, TAU, BATCH = 20, 0.05, 256
# MCMCLikelihoodDensity's learning rate here: 3e-3 reached -2.17 held-out on
# eight Gaussians in 20 epochs where the default 1e-3 reached -2.83; 1e-2
# diverged (-88.6).
LR = 3e-3


def energy_distance(a, b):
    """``2 E|A - B| - E|A - A'| - E|B - B'|`` (Szekely): zero iff equal laws."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return 2 * cdist(a, b).mean() - cdist(a, a).mean() - cdist(b, b).mean()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def mean_se(values):
    values = np.asarray(values, float)
    return values.mean(), values.std() / np.sqrt(len(values))


def quadrature_ll(energy, Z, Z_test):
    energy = energy.to(torch.float64).eval()
    lower = torch.as_tensor(Z.min(0) - 1.0, dtype=torch.float64)
    upper = torch.as_tensor(Z.max(0) + 1.0, dtype=torch.float64)
    with torch.no_grad():
        log_z, _ = log_partition_quadrature(energy, lower, upper)
        scores = -energy(torch.as_tensor(Z_test, dtype=torch.float64)) - log_z
    return mean_se(scores.numpy())


# ----------------------------------------------------------------- 1. toys
def toys(n, epochs, seed):
    print(f"\n1. 2-D toys: {n} training / {n} held-out points, standardized; "
          f"{epochs} epochs; k = {K} Langevin steps of tau = {TAU}")
    print(f"{'data':<15}{'estimator':<34}{'held-out LL':>18}{'fit s':>8}"
          f"{'energy dist':>13}")
    for name, make in [("eight_gaussians", make_eight_gaussians),
                       ("two_moons", make_two_moons)]:
        X, X_test = make(n, random_state=seed), make(n, random_state=seed + 1)
        scaler = StandardScaler().fit(X)
        Z, Z_test = scaler.transform(X), scaler.transform(X_test)
        truth = toy_log_density(name, X_test) + np.log(scaler.scale_).sum()
        floor = energy_distance(scaler.transform(make(2000, random_state=seed + 2)),
                                Z_test)
        print(f"{name:<15}{'true density':<34}{mean_se(truth)[0]:>10.3f}"
              f" +- {mean_se(truth)[1]:.3f}{'':>8}{floor:>13.4f}")
        common = dict(max_iter=epochs, random_state=seed, n_mcmc_steps=K,
                      mcmc_step_size=TAU, learning_rate_init=LR)
        rows = [
            ("MCMCLikelihood short-run", MCMCLikelihoodDensity(**common)),
            ("MCMCLikelihood PCD", MCMCLikelihoodDensity(chains="persistent",
                                                         **common)),
            ("EnergyDiscrepancyDensity", EnergyDiscrepancyDensity(
                max_iter=epochs, random_state=seed)),
            ("GaussianMixture(8)", GaussianMixture(8, random_state=seed)),
        ]
        for label, est in rows:
            est, t = timed(lambda est=est: est.fit(Z))
            ll = mean_se(est.score_samples(Z_test))
            err = getattr(est, "log_partition_std_", 0.0)
            if isinstance(est, GaussianMixture):  # no random_state in sample
                samples = est.sample(2000)[0]
            else:
                samples = est.sample(2000, random_state=0)
            print(f"{'':<15}{label:<34}{ll[0]:>10.3f} +- {ll[1] + err:.3f}"
                  f"{t:>8.1f}{energy_distance(samples, Z_test):>13.4f}")
            if label == "MCMCLikelihood short-run":
                est.set_params(sampling_init="equilibrium")
                eq = est.sample(2000, random_state=0)
                print(f"{'':<15}{'  same energy, equilibrium samples':<34}"
                      f"{'':>26}{energy_distance(eq, Z_test):>13.4f}")


# --------------------------------------------------------------- 2. digits
def rbm_free_energy(rbm):
    d, h = rbm.components_.shape[1], rbm.components_.shape[0]
    energy = BinaryMLPEnergy(d, (h,), zero_output=True).double()
    with torch.no_grad():
        energy.layers[0].weight.copy_(torch.as_tensor(rbm.components_))
        energy.layers[0].bias.copy_(torch.as_tensor(rbm.intercept_hidden_))
        energy.layers[1].weight.fill_(-1.0)
        energy.bias.copy_(torch.as_tensor(rbm.intercept_visible_))
    return energy


def digits(epochs, seed):
    images = load_digits().data
    X = (images > 7).astype(np.float64)
    X, X_test = train_test_split(X, test_size=0.3, random_state=seed)
    floor = energy_distance(X[: len(X_test)], X_test)
    print(f"\n2. Binarized digits: {len(X)} training / {len(X_test)} held-out "
          f"images, 64 pixels; {epochs} epochs")
    print(f"{'estimator':<36}{'held-out LL':>20}{'fit s':>8}{'energy dist':>13}")
    print(f"{'training images (floor)':<36}{'':>28}{floor:>13.4f}")
    rows = [
        ("MCMCLikelihoodBinary short-run", MCMCLikelihoodBinary(
            max_iter=epochs, random_state=seed)),
        ("MCMCLikelihoodBinary PCD", MCMCLikelihoodBinary(
            chains="persistent", max_iter=epochs, random_state=seed)),
        ("RatioMatchingBinary", RatioMatchingBinary(
            max_iter=epochs, random_state=seed)),
    ]
    for label, est in rows:
        est, t = timed(lambda est=est: est.fit(X))
        ll = mean_se(est.score_samples(X_test))
        samples = est.sample(1000, random_state=0)
        print(f"{label:<36}{ll[0]:>10.2f} +- {ll[1] + est.log_partition_std_:.2f}"
              f"{t:>8.1f}{energy_distance(samples, X_test):>13.4f}")
        if label.endswith("short-run"):
            est.set_params(sampling_init="equilibrium")
            eq = est.sample(1000, random_state=0)
            print(f"{'  same energy, equilibrium samples':<36}{'':>28}"
                  f"{energy_distance(eq, X_test):>13.4f}")
    rbm_row(X, X_test, epochs, seed)


def rbm_row(X, X_test, epochs, seed):
    rbm = BernoulliRBM(n_components=256, learning_rate=0.05, n_iter=epochs,
                       random_state=seed)
    rbm, t = timed(lambda: rbm.fit(X))
    energy = rbm_free_energy(rbm).float()
    p = torch.full((64,), float(X.mean()), dtype=torch.float32)
    est = log_partition_ais_binary(energy, p, n_chains=256, n_steps=500,
                                   generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        scores = -energy.double()(torch.as_tensor(X_test)).numpy() - est[0]
    ll = mean_se(scores)
    g = torch.Generator().manual_seed(0)
    x0 = (torch.rand(1000, 64, generator=g) < 0.5).double()
    samples = gibbs(energy.double(), x0, n_sweeps=100, generator=g).numpy()
    print(f"{'BernoulliRBM(256), PCD':<36}{ll[0]:>10.2f} +- {ll[1] + est.stderr:.2f}"
          f"{t:>8.1f}{energy_distance(samples, X_test):>13.4f}")


# ---------------------------------------------------------------- 3. peers
class _TorchebmModel:
    """Built lazily: torchebm's BaseModel around one of our modules."""

    @staticmethod
    def wrap(module):
        from torchebm.core import BaseModel

        class Wrapped(BaseModel):
            def __init__(self, inner):
                super().__init__(dtype=torch.float32)
                self.inner = inner

            def forward(self, x):
                return self.inner(x)

        return Wrapped(module)


def median_time(fn, warmup=3, repeats=15):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def peers(n, epochs, seed):
    print(f"\n3. Peers on two moons ({n} points, standardized), MLP (64, 64) "
          f"silu, batch {BATCH}, k = {K}, float32")
    X = make_two_moons(n, random_state=seed)
    X_test = make_two_moons(n, random_state=seed + 1)
    scaler = StandardScaler().fit(X)
    Z = scaler.transform(X).astype(np.float32)
    Z_test = scaler.transform(X_test)
    data = torch.as_tensor(Z)

    def module():
        return MLPEnergy(2, (64, 64), "silu",
                         generator=torch.Generator().manual_seed(seed)).float()

    def loop(step, n_epochs):
        gen = torch.Generator().manual_seed(seed)
        for _ in range(n_epochs):
            order = torch.randperm(len(data), generator=gen)
            for i in range(0, len(data), BATCH):
                step(data[order[i : i + BATCH]])

    mean, cov = Z.mean(0), np.cov(Z.T)
    chol = torch.as_tensor(np.linalg.cholesky(cov), dtype=torch.float32)

    def ours(start):
        energy = module()
        opt = torch.optim.Adam(energy.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(seed)
        chains = NegativeChains(
            start, K,
            transition=lambda e, x0, k, g: langevin(e, x0, n_steps=k,
                                                    step_size=TAU, generator=g),
            noise=lambda m, g: torch.as_tensor(mean, dtype=torch.float32)
            + torch.randn(m, 2, generator=g) @ chol.T,
        )

        def step(xb):
            opt.zero_grad(set_to_none=True)
            mcmc_likelihood_loss(energy, xb, chains=chains, generator=gen).backward()
            opt.step()

        return energy, step

    def torchebm_cd(persistent):
        from torchebm.losses import ContrastiveDivergence
        from torchebm.samplers import LangevinDynamics

        energy = module()
        model = _TorchebmModel.wrap(energy)
        sampler = LangevinDynamics(model, step_size=TAU, noise_scale=1.0)
        loss_fn = ContrastiveDivergence(
            model, sampler, k_steps=K, persistent=persistent,
            buffer_size=max(BATCH, 1000), energy_reg_weight=0.0,
        )
        opt = torch.optim.Adam(energy.parameters(), lr=1e-3)

        def step(xb):
            opt.zero_grad(set_to_none=True)
            loss, _ = loss_fn(xb)
            loss.backward()
            opt.step()

        return energy, step

    def ebmkit_cd(persistent):
        import ebm

        energy = module()
        buffer = ebm.ReplayBuffer(10000, (2,)) if persistent else None
        loss_fn = ebm.ContrastiveDivergence(
            ebm.LangevinDynamics(step_size=TAU, steps=K), buffer=buffer
        )
        opt = torch.optim.Adam(energy.parameters(), lr=1e-3)

        def step(xb):
            opt.zero_grad(set_to_none=True)
            loss_fn(energy, xb).loss.backward()
            opt.step()

        return energy, step

    rows = [
        ("skebm short-run (noise)", lambda: ours("noise")),
        ("skebm PCD", lambda: ours("persistent")),
        ("skebm CD-k (data)", lambda: ours("data")),
        ("torchebm CD-k (data)", lambda: torchebm_cd(False)),
        ("torchebm PCD (buffer)", lambda: torchebm_cd(True)),
        ("ebmkit CD (noise starts)", lambda: ebmkit_cd(False)),
        ("ebmkit PCD (replay buffer)", lambda: ebmkit_cd(True)),
    ]
    print(f"{'method':<30}{'step ms':>9}{'ratio':>7}{'fit s':>8}{'ratio':>7}"
          f"{'held-out LL':>18}")
    reference = None
    for label, make in rows:
        try:
            energy, step = make()
        except ImportError as exc:
            print(f"{label:<30} skipped ({exc})")
            continue
        t_step = median_time(lambda step=step: step(data[:BATCH]))
        energy, step = make()
        _, t_fit = timed(lambda step=step: loop(step, epochs))
        if reference is None:
            reference = (t_step, t_fit)
        ll = quadrature_ll(energy, Z, Z_test)
        print(f"{label:<30}{t_step * 1e3:>9.1f}{t_step / reference[0]:>7.2f}"
              f"{t_fit:>8.1f}{t_fit / reference[1]:>7.2f}"
              f"{ll[0]:>11.3f} +- {ll[1]:.3f}")
    binary_peers(seed)


def binary_peers(seed):
    """One CD step on binarized digits: ebmkit's RBM block Gibbs (v -> h ->
    v') against our sweeps on the same RBM's free energy (no hidden units:
    a sweep is 64 single-site updates)."""
    try:
        import ebm
        from ebm.nets import RBM
    except ImportError as exc:
        print(f"ebmkit not installed: binary comparison skipped ({exc})")
        return
    X = torch.as_tensor((load_digits().data > 7).astype(np.float32))
    rbm = RBM(64, 128)
    loss_fn = ebm.ContrastiveDivergence(
        ebm.GibbsSampler(steps=1),
        init_fn=lambda shape: (torch.rand(shape) < 0.5).float(),
    )
    opt = torch.optim.Adam(rbm.parameters(), lr=1e-3)

    def theirs():
        opt.zero_grad(set_to_none=True)
        loss_fn(rbm, X[:BATCH]).loss.backward()
        opt.step()

    energy = BinaryMLPEnergy(64, (128,), zero_output=True)
    opt2 = torch.optim.Adam(energy.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    chains = NegativeChains(
        "noise", 1,
        transition=lambda e, x0, k, g: gibbs(e, x0, n_sweeps=k, generator=g),
        noise=lambda m, g: (torch.rand(m, 64, generator=g) < 0.5).float(),
    )

    def ours():
        opt2.zero_grad(set_to_none=True)
        mcmc_likelihood_loss(energy, X[:BATCH], chains=chains,
                             generator=gen).backward()
        opt2.step()

    try:
        t_theirs = median_time(theirs)
    except Exception as exc:  # noqa: BLE001 - report, do not crash the run
        print(f"ebmkit RBM step failed: {exc!r}")
        return
    t_ours = median_time(ours)
    print(f"\nbinary, one step from noise, batch {BATCH}, 64 pixels, 128 hidden:"
          f" ebmkit RBM block Gibbs (1 step) {t_theirs * 1e3:.1f} ms, skebm "
          f"single-site sweep of the free energy (1 sweep) {t_ours * 1e3:.1f} ms"
          f" (ratio {t_theirs / t_ours:.2f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--digits-epochs", type=int, default=5,
                        help="epochs on digits (a Gibbs step of the 256-unit MLP "
                        "energy costs about a forward pass per site)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-toys", action="store_true")
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--skip-peers", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # Warm-up: the first Adam step of a process imports torch._dynamo.
    MCMCLikelihoodDensity(hidden_layer_sizes=(4,), max_iter=1).fit(
        np.random.RandomState(0).normal(size=(50, 2)))
    if not args.skip_toys:
        toys(args.n, args.epochs, args.seed)
    if not args.skip_digits:
        digits(args.digits_epochs, args.seed)
    if not args.skip_peers:
        peers(args.n, args.epochs, args.seed)


if __name__ == "__main__":
    main()
