"""Samplers (layer C): exact Gaussian and conditional draws, MALA, random-walk
Metropolis and Langevin chains for continuous energies; Gibbs chains, annealing
and exact draws for binary energies; resampling by importance weights.

One file a family: :mod:`~skebm.samplers.continuous`,
:mod:`~skebm.samplers.binary` (Gibbs sweeps through the local updates an
energy provides, exact draws), :mod:`~skebm.samplers.annealing` (annealed Gibbs
chains from independent bits), :mod:`~skebm.samplers.resampling`.
"""

from .annealing import anneal_binary
from .binary import exact_binary_draws, gibbs
from .continuous import (
    langevin,
    mala,
    random_walk_metropolis,
    sample_conditional,
    sample_gaussian,
)
from .resampling import importance_resample, systematic_resample

__all__ = [
    "anneal_binary",
    "exact_binary_draws",
    "gibbs",
    "importance_resample",
    "langevin",
    "mala",
    "random_walk_metropolis",
    "sample_conditional",
    "sample_gaussian",
    "systematic_resample",
]
