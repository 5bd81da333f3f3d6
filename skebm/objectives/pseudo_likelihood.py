"""Pseudo-likelihood of binary energies (layer C).

Besag's pseudo-likelihood replaces the likelihood by the product of the
one-site conditionals, ``Σ_j log p(x_j | x_-j)``. For a binary unit the
conditional of the observed value is ``σ(ΔE_j)`` with
``ΔE_j = E(flip_j x) - E(x)``, so it needs no normalizer.
"""

from torch.nn import functional as F

from ..energies import flip_energy_differences

__all__ = ["pseudo_log_likelihood"]


def pseudo_log_likelihood(energy, x, *, values=(0.0, 1.0)):
    """``Σ_j log p(x_j | x_-j)`` for each sample, shape ``(n,)``.

    All ``d`` flips are evaluated in one batch (for pairwise energies from
    the quadratic form directly).
    """
    delta = flip_energy_differences(energy, x, values=values)
    return F.logsigmoid(delta).sum(1)
