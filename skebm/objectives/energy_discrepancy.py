"""Energy discrepancy with a Gaussian perturbation (layer C).

For data ``x_i``, a perturbation shared by the ``M`` negatives of ``x_i`` and
one more per negative (standard deviation ``s`` each),

.. math::
    y_{ij} = x_i + s\\,\\xi_i + s\\,\\xi'_{ij}, \\qquad
    \\xi_i, \\xi'_{ij} \\sim \\mathcal N(0, I),

the stabilized loss is

.. math::
    L = \\frac1n \\sum_i \\log\\Big( \\frac{w}{M}
        + \\frac1M \\sum_{j=1}^M \\exp\\big(E(x_i) - E(y_{ij})\\big) \\Big).

The negatives are a two-step perturbation: ``y - x`` has variance ``2 s^2``.
As ``M -> infinity`` and ``w -> 0`` the loss is the energy discrepancy
``E_x[E(x)] - E_x E_{x'|x}[-log E_{y|x'} exp(-E(y))]``, whose unique
minimizer is the data density, and which tends to maximum likelihood as
``s`` grows (T. Schröder, Z. Ou, J. N. Lim, Y. Li, S. J. Vollmer and A. B.
Duncan, "Energy discrepancies: a score-independent loss for energy-based
models", NeurIPS 2023: the energy discrepancy and its stabilized
estimator). ``w > 0`` bounds the loss below by ``log(w / M)`` and stops
the energy of data from running off to ``-inf`` where all ``M`` negatives
happen to have high energy.
"""

import math

import torch

__all__ = ["energy_discrepancy_loss", "gaussian_negatives"]


def gaussian_negatives(x, *, noise_scale, n_negatives, generator=None):
    """Draw the ``M`` Gaussian negatives of each data point.

    Parameters
    ----------
    x : Tensor of shape (n, d)
        The data batch.
    noise_scale : float
        Standard deviation ``s`` of each of the two perturbation steps.
    n_negatives : int
        Negatives ``M`` per data point.
    generator : torch.Generator, default=None
        Source of the perturbations (on ``x``'s device).

    Returns
    -------
    negatives : Tensor of shape (n, M, d)
        ``x_i + s xi_i + s xi'_ij``: the first step ``xi_i`` is shared by the
        ``M`` negatives of ``x_i``, the second is one per negative.

    Examples
    --------
    >>> import torch
    >>> from skebm.objectives import gaussian_negatives
    >>> x = torch.zeros(3, 2)
    >>> gaussian_negatives(x, noise_scale=1.0, n_negatives=5,
    ...                    generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 5, 2])
    """
    n, d = x.shape
    shared = torch.randn((n, 1, d), generator=generator, device=x.device, dtype=x.dtype)
    own = torch.randn(
        (n, n_negatives, d), generator=generator, device=x.device, dtype=x.dtype
    )
    return x[:, None, :] + noise_scale * (shared + own)


def energy_discrepancy_loss(
    energy,
    x,
    *,
    generator=None,
    noise_scale=1.0,
    n_negatives=32,
    stabilizer=1.0,
    base=None,
):
    """Mean stabilized energy discrepancy loss of ``energy`` on the batch ``x``.

    The data and all ``n * M`` negatives go through the energy in one call.

    Parameters
    ----------
    energy : callable
        Maps a tensor of shape ``(m, d)`` to ``(m,)``; only evaluated, never
        differentiated in ``x``.
    x : Tensor of shape (n, d)
        The data batch.
    generator : torch.Generator, default=None
        Source of the perturbations (on ``x``'s device).
    noise_scale : float, default=1.0
        Standard deviation ``s`` of each of the two Gaussian perturbation steps.
    n_negatives : int, default=32
        Negatives ``M`` per data point.
    stabilizer : float, default=1.0
        ``w >= 0``, the weight of the extra term ``w / M`` inside the
        logarithm (``w = 0`` is the unstabilized estimator).
    base : GaussianMixtureBase or None, default=None
        A base density ``q``: ``energy`` is then the correction ``f``, and the
        total energy ``f - log q`` is what is contrasted.

    Returns
    -------
    loss : Tensor of shape ()
        The mean loss, differentiable in the energy's parameters.

    Examples
    --------
    >>> import torch
    >>> from skebm.objectives import energy_discrepancy_loss
    >>> x = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    >>> def energy(z):
    ...     return 0.5 * (z ** 2).sum(1)
    >>> loss = energy_discrepancy_loss(
    ...     energy, x, generator=torch.Generator().manual_seed(1))
    >>> bool(torch.isfinite(loss))
    True
    """
    n, d = x.shape
    x = x.detach()
    negatives = gaussian_negatives(
        x, noise_scale=noise_scale, n_negatives=n_negatives, generator=generator
    )
    points = torch.cat([x, negatives.reshape(n * n_negatives, d)])
    energies = energy(points)
    if base is not None:
        energies = energies - base.log_prob(points)
    positive, negative = energies[:n], energies[n:].reshape(n, n_negatives)
    terms = positive[:, None] - negative
    # log(w/M + 1/M sum_j exp(t_j)) as one log-sum-exp with the extra term log w.
    log_w = math.log(stabilizer) if stabilizer > 0 else -math.inf
    stabilizing = torch.full((n, 1), log_w, device=x.device, dtype=terms.dtype)
    log_mean = torch.logsumexp(torch.cat([terms, stabilizing], 1), 1)
    return (log_mean - math.log(n_negatives)).mean()
