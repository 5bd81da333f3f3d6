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
    """Pseudo-log-likelihood ``Σ_j log p(x_j | x_-j)`` of each sample.

    All ``d`` flips are evaluated in one batch (for pairwise energies from
    the quadratic form directly).

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``.
    x : Tensor of shape (n, d)
        States with entries in ``values``.
    values : tuple of two floats, default=(0.0, 1.0)
        The two values a unit takes.

    Returns
    -------
    pseudo_log_likelihood : Tensor of shape (n,)
        Sum over sites of the log conditional of the observed value.

    Examples
    --------
    >>> import math
    >>> import torch
    >>> from skebm.objectives import pseudo_log_likelihood
    >>> def flat(x):
    ...     return torch.zeros(x.shape[0])  # uniform: each conditional is 1/2
    >>> pll = pseudo_log_likelihood(flat, torch.tensor([[0.0, 1.0]]))
    >>> round(float(pll[0]), 6) == round(2 * math.log(0.5), 6)
    True
    """
    delta = flip_energy_differences(energy, x, values=values)
    return F.logsigmoid(delta).sum(1)
