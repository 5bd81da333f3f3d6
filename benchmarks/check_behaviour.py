"""Fingerprint every estimator's and building block's outputs, to check that a
refactoring changes no number.

Every estimator (in several configurations) is fitted with a fixed seed on small
data; its fitted attributes, trained weights, ``score_samples`` and ``sample``
are hashed byte for byte, and so are the outputs of the samplers and log Z
methods called directly. Save the fingerprints before a change and compare
after::

    python benchmarks/check_behaviour.py --save /tmp/before.json
    # ... the change ...
    python benchmarks/check_behaviour.py --compare /tmp/before.json

The comparison prints every entry that differs and exits 1 if any does. It
takes about a minute on two cores. It checks bit-identity, so compare on the
same machine, torch build and thread count.
"""

import argparse
import hashlib
import json
import sys
import warnings

import numpy as np
import torch

torch.set_num_threads(1)


def _digest(value):
    """A stable hash of a value's bytes (arrays, tensors, modules, numbers)."""
    h = hashlib.sha256()

    def feed(v):
        if isinstance(v, torch.nn.Module):
            for name, tensor in v.state_dict().items():
                h.update(name.encode())
                feed(tensor)
        elif isinstance(v, torch.Tensor):
            feed(v.detach().cpu().numpy())
        elif isinstance(v, np.ndarray):
            h.update(str(v.dtype).encode() + str(v.shape).encode())
            h.update(np.ascontiguousarray(v).tobytes())
        elif isinstance(v, (list, tuple)):
            h.update(b"[")
            for item in v:
                feed(item)
            h.update(b"]")
        elif isinstance(v, dict):
            for key in sorted(v, key=str):
                h.update(str(key).encode())
                feed(v[key])
        elif isinstance(v, (bool, int, float, str, type(None), np.generic)):
            h.update(repr(v).encode())
        elif hasattr(v, "get_params") and hasattr(v, "__dict__"):
            # a fitted scikit-learn object (the base mixture): its fitted state
            feed({k: w for k, w in vars(v).items() if k.endswith("_")})
        else:
            h.update(type(v).__name__.encode())

    feed(value)
    return h.hexdigest()[:16]


def _estimators():
    from skebm import (
        AutoregressiveScoreMatchingDensity,
        EnergyDiscrepancyDensity,
        MCMCLikelihoodBinary,
        MCMCLikelihoodDensity,
        PseudoLikelihoodIsing,
        RatioMatchingBinary,
        ScoreMatchingDensity,
        SlicedScoreMatchingDensity,
    )

    small = dict(hidden_layer_sizes=(16,), max_iter=4, n_ais_chains=64, n_ais_steps=30)
    binary = dict(n_ais_chains=64, n_ais_steps=20, n_sweeps=5)
    return {
        "continuous": [
            ("sm_mlp", ScoreMatchingDensity(**small, early_stopping=False)),
            ("sm_mlp_es", ScoreMatchingDensity(**small)),
            ("sm_quadratic", ScoreMatchingDensity(energy="quadratic")),
            ("sm_orthant", ScoreMatchingDensity(domain="nonnegative", **small)),
            ("sm_box", ScoreMatchingDensity(domain=([0.0, 0.0], [6.0, 6.0]), **small)),
            ("ssm_sliced", SlicedScoreMatchingDensity(method="sliced", **small)),
            ("ssm_vr", SlicedScoreMatchingDensity(method="sliced_vr", **small)),
            (
                "ssm_fd",
                SlicedScoreMatchingDensity(method="finite_difference", **small),
            ),
            ("ed", EnergyDiscrepancyDensity(n_negatives=4, **small)),
            ("ed_quadratic", EnergyDiscrepancyDensity(energy="quadratic", max_iter=5)),
            ("ar", AutoregressiveScoreMatchingDensity(hidden_layer_sizes=(16,),
                                                      max_iter=4)),
            (
                "ar_orthant",
                AutoregressiveScoreMatchingDensity(
                    hidden_layer_sizes=(16,), max_iter=4, domain="nonnegative",
                    order="reversed", base="gaussian",
                ),
            ),
            ("mcmc", MCMCLikelihoodDensity(n_mcmc_steps=5, **small)),
            (
                "mcmc_pcd_mala",
                MCMCLikelihoodDensity(energy="quadratic", chains="persistent",
                                      sampler="mala", n_mcmc_steps=3, max_iter=4),
            ),
        ],
        "binary": [
            ("rm_mlp", RatioMatchingBinary(hidden_layer_sizes=(16,), max_iter=4,
                                           **binary)),
            (
                "rm_boltzmann_ggis",
                RatioMatchingBinary(energy="boltzmann", method="ggis",
                                    n_flip_samples=2, max_iter=4, **binary),
            ),
            (
                "rm_random_scan",
                RatioMatchingBinary(hidden_layer_sizes=(16,), max_iter=3,
                                    scan="random", sampling_init="noise", **binary),
            ),
            ("pl", PseudoLikelihoodIsing(**binary)),
            ("pl_l1", PseudoLikelihoodIsing(penalty="l1", alpha=0.05, refit=True,
                                            **binary)),
            ("pl_ais", PseudoLikelihoodIsing(log_partition_method="ais", **binary)),
            (
                "mcmc_binary",
                MCMCLikelihoodBinary(hidden_layer_sizes=(16,), n_mcmc_steps=2,
                                     max_iter=4, **binary),
            ),
            (
                "mcmc_binary_pcd",
                MCMCLikelihoodBinary(energy="boltzmann", chains="persistent",
                                     noise="uniform", n_mcmc_steps=2, max_iter=4,
                                     **binary),
            ),
        ],
    }


def _fitted_state(est):
    state = {}
    for key, value in sorted(vars(est).items()):
        if key.endswith("_") and not key.startswith("_"):
            state[key] = _digest(value)
    return state


def fingerprint_estimators():
    from skebm.datasets import make_two_moons

    x = make_two_moons(300, random_state=0)
    x_test = make_two_moons(100, random_state=1)
    x = x - x.min(0) + 0.1  # non-negative, for the orthant configurations
    x_test = np.abs(x_test - x.min(0) + 0.1)
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(6, 6))
    b = (rng.normal(size=(300, 6)) @ mixing > 0).astype(float)
    b_test = (rng.normal(size=(100, 6)) @ mixing > 0).astype(float)
    out = {}
    for family, data, test in [("continuous", x, x_test), ("binary", b, b_test)]:
        for name, est in _estimators()[family]:
            est.set_params(random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(data)
                entry = _fitted_state(est)
                entry["score_samples"] = _digest(est.score_samples(test))
                entry["sample"] = _digest(est.sample(40, random_state=3))
            out[f"estimator/{name}"] = entry
    return out


def fingerprint_building_blocks():
    from skebm import energies, partition, samplers

    out = {}
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    d = 6
    bits = torch.bernoulli(torch.full((50, d), 0.5), generator=g()).double()
    probs = torch.full((d,), 0.4, dtype=torch.float64)
    torch.manual_seed(0)
    binary_energies = {
        "boltzmann": energies.BoltzmannEnergy(d).double(),
        "ising": energies.IsingEnergy(d).double(),
        "binary_mlp": energies.BinaryMLPEnergy(d, hidden_layer_sizes=(8,)).double(),
        "binary_mlp_2": energies.BinaryMLPEnergy(
            d, hidden_layer_sizes=(8, 4)
        ).double(),
        "binary_mlp_tanh": energies.BinaryMLPEnergy(
            d, hidden_layer_sizes=(8,), activation="tanh"
        ).double(),
    }
    for module in binary_energies.values():
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g(), dtype=p.dtype))
    binary_energies["callable"] = lambda z: binary_energies["boltzmann"](z) + 0.1 * (
        z.sum(1) ** 2
    )
    for name, energy in binary_energies.items():
        values = (-1.0, 1.0) if name == "ising" else (0.0, 1.0)
        states = bits * (values[1] - values[0]) + values[0]
        for scan in ("systematic", "random"):
            x = samplers.gibbs(energy, states.clone(), n_sweeps=3, scan=scan,
                               values=values, generator=g())
            out[f"gibbs/{name}/{scan}"] = _digest(x)
            res = samplers.anneal_binary(energy, probs, n_chains=30, n_steps=10,
                                         values=values, scan=scan, generator=g())
            out[f"anneal_binary/{name}/{scan}"] = _digest(res)
        res = samplers.anneal_binary(
            energy, torch.stack([probs, 1 - probs]), n_chains=30, n_steps=10,
            mixture_weights=torch.tensor([0.3, 0.7], dtype=torch.float64),
            values=values, generator=g(),
        )
        out[f"anneal_binary_mixture/{name}"] = _digest(res)
        out[f"log_partition_ais_binary/{name}"] = _digest(
            tuple(partition.log_partition_ais_binary(energy, probs, n_chains=40,
                                                     n_steps=10, values=values,
                                                     generator=g()))
        )
        out[f"log_partition_ais_binary_mixture/{name}"] = _digest(
            tuple(partition.log_partition_ais_binary(
                energy, torch.stack([probs, 1 - probs]), n_chains=40, n_steps=10,
                values=values, generator=g()))
        )
        out[f"log_partition_enumerate/{name}"] = _digest(
            tuple(partition.log_partition_enumerate(energy, d, values=values))
        )
        out[f"exact_binary_draws/{name}"] = _digest(
            samplers.exact_binary_draws(energy, d, 25, values=values, generator=g())
        )
        with torch.no_grad():
            out[f"flip_energy_differences/{name}"] = _digest(
                energies.flip_energy_differences(energy, states, values=values)
            )

    quad = energies.QuadraticEnergy(2).double()
    mlp = energies.MLPEnergy(2, hidden_layer_sizes=(8,)).double()
    x0 = torch.randn(30, 2, generator=g(), dtype=torch.float64)
    one = torch.ones(2, dtype=torch.float64)
    for name, energy in {"quadratic": quad, "mlp": mlp}.items():
        out[f"mala/{name}"] = _digest(
            samplers.mala(energy, x0.clone(), n_steps=5, step_size=0.1, generator=g())
        )
        out[f"langevin/{name}"] = _digest(
            samplers.langevin(energy, x0.clone(), n_steps=5, step_size=0.1,
                              generator=g())
        )
        out[f"random_walk_metropolis/{name}"] = _digest(
            samplers.random_walk_metropolis(energy, x0.clone(), n_steps=5,
                                            generator=g())
        )
        mean = torch.zeros(2, dtype=torch.float64)
        cov = torch.eye(2, dtype=torch.float64) * 2
        out[f"log_partition_ais/{name}"] = _digest(
            tuple(partition.log_partition_ais(energy, mean, cov, n_chains=32,
                                              n_steps=10, generator=g()))
        )
        out[f"log_partition_quadrature/{name}"] = _digest(
            tuple(partition.log_partition_quadrature(energy, -6 * one, 6 * one,
                                                     n_points=101))
        )
    from skebm.base_densities import GaussianMixtureBase
    from skebm.domains import Box

    proposal = GaussianMixtureBase(
        torch.tensor([0.3, 0.7], dtype=torch.float64),
        torch.tensor([[-1.0, 0.0], [1.0, 0.5]], dtype=torch.float64),
        torch.eye(2, dtype=torch.float64).repeat(2, 1, 1),
    )
    box = Box([-2.0, -2.0], [2.0, 2.0])
    for name, energy in {"quadratic": quad, "mlp": mlp}.items():
        out[f"log_partition_ais_proposal/{name}"] = _digest(
            tuple(partition.log_partition_ais(energy, proposal=proposal, n_chains=32,
                                              n_steps=10, generator=g()))
        )
        out[f"log_partition_ais_box/{name}"] = _digest(
            tuple(partition.log_partition_ais(energy, mean, cov, domain=box,
                                              n_chains=32, n_steps=10,
                                              generator=g()))
        )
        out[f"log_partition_importance/{name}"] = _digest(
            tuple(partition.log_partition_importance(energy, proposal, n_draws=500,
                                                     generator=g()))
        )
    out["sample_gaussian"] = _digest(
        samplers.sample_gaussian(torch.zeros(2, dtype=torch.float64),
                                 torch.eye(2, dtype=torch.float64), 10, generator=g())
    )
    log_w = torch.randn(200, generator=g(), dtype=torch.float64)
    out["systematic_resample"] = _digest(
        samplers.systematic_resample(log_w, 50, generator=g())
    )
    out["importance_estimate"] = _digest(tuple(partition.importance_estimate(log_w)))
    out["binary_states"] = _digest(
        partition.binary_states(0, 16, 4, dtype=torch.float64, device="cpu")
    )
    return out


def fingerprint():
    torch.manual_seed(0)
    return {**fingerprint_building_blocks(), **fingerprint_estimators()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", help="write the fingerprints to this JSON file")
    group.add_argument("--compare", help="compare with fingerprints saved before")
    args = parser.parse_args()
    current = fingerprint()
    if args.save:
        with open(args.save, "w") as f:
            json.dump(current, f, indent=1, sort_keys=True)
        print(f"{len(current)} fingerprints written to {args.save}")
        return 0
    with open(args.compare) as f:
        before = json.load(f)
    differences = []
    for key in sorted(set(before) | set(current)):
        if before.get(key) != current.get(key):
            differences.append((key, before.get(key), current.get(key)))
    for key, old, new in differences:
        print(f"DIFFERS {key}:\n  before {old}\n  after  {new}")
    print(f"{len(current)} entries compared, {len(differences)} differ")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
