"""One-dimensional conditionals of autoregressive models (layer C, private).

An autoregressive conditional here is ``p(t) ∝ q(t) exp(-f(t))`` on an interval
``[lower, upper]``: ``q`` a 1-D Gaussian mixture (the base's conditional,
``sum_k w_k N(t; m_k, s_k)``) and ``f`` a smooth correction. Its normalizer is

.. math::
    Z = \\sum_k w_k \\int_{A_k}^{B_k} \\phi(z)\\, e^{-f(m_k + s_k z)}\\, dz,
    \\qquad A_k = (lower - m_k) / s_k,\\ B_k = (upper - m_k) / s_k,

one integral per component in its own standardized coordinate, so that nodes
sit where the component has its mass, however far apart the components are.
Each integral runs over the part of ``[A_k, B_k]`` where ``phi`` is within
``exp(-_LOG_MASS_CUT)`` of its largest value on ``[A_k, B_k]`` (the whole
component, or the thin layer near the bound when the component's mean lies far
outside the interval), split into ``n_panels`` equal panels, each integrated by
Gauss-Legendre. Everything is batched over any leading shape and computed in
log space. :func:`skebm.partition.log_partition_conditional` and
:func:`skebm.samplers.sample_conditional` are the public entry points.
"""

import math

import numpy as np
import torch

# The integration range of a component drops the mass where phi is below
# exp(-_LOG_MASS_CUT) of its peak on the interval: at most ~1e-17 of it, well
# below float64 rounding even after a correction of exp(8).
_LOG_MASS_CUT = 40.0
# Gauss-Legendre nodes per panel.
GAUSS_LEGENDRE_ORDER = 8
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gauss_legendre(order, *, dtype, device):
    """Nodes on ``[-1, 1]`` and the logarithms of their weights."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    return (
        torch.as_tensor(nodes, dtype=dtype, device=device),
        torch.as_tensor(np.log(weights), dtype=dtype, device=device),
    )


def component_ranges(means, stds, lower, upper):
    """Standardized integration range ``[a, b]`` of every component, ``(..., K)``.

    ``phi`` restricted to ``[A, B]`` peaks at ``z* = clip(0, A, B)``; the range
    keeps ``|z|^2 <= z*^2 + 2 _LOG_MASS_CUT``, which always contains ``z*``.
    """
    lo = (lower[..., None] - means) / stds
    hi = (upper[..., None] - means) / stds
    peak = torch.clamp(torch.zeros_like(lo), min=lo, max=hi)
    radius = torch.sqrt(peak * peak + 2 * _LOG_MASS_CUT)
    return torch.maximum(lo, -radius), torch.minimum(hi, radius)


def panel_nodes(means, stds, lower, upper, n_panels, order=GAUSS_LEGENDRE_ORDER):
    """Gauss-Legendre nodes of every component's panels.

    Parameters
    ----------
    means, stds : Tensor of shape (..., K)
    lower, upper : Tensor of shape (...)
        Interval bounds (``-inf`` / ``inf`` allowed).
    n_panels : int
    order : int

    Returns
    -------
    t : Tensor of shape (..., K, n_panels, order)
        The nodes, in the original coordinate.
    log_terms : Tensor of shape (..., K, n_panels, order)
        ``log(quadrature weight * phi(z))`` at each node (``z`` standardized).
    """
    a, b = component_ranges(means, stds, lower, upper)
    xi, log_omega = gauss_legendre(order, dtype=means.dtype, device=means.device)
    half = (b - a) / (2 * n_panels)  # (..., K)
    panel = torch.arange(n_panels, dtype=means.dtype, device=means.device)
    centers = a[..., None] + (2 * panel + 1) * half[..., None]  # (..., K, P)
    z = centers[..., None] + half[..., None, None] * xi  # (..., K, P, Q)
    log_terms = log_omega + torch.log(half)[..., None, None] - 0.5 * z * z
    t = means[..., None, None] + stds[..., None, None] * z
    return t, log_terms - _HALF_LOG_2PI


def _log_interval_mass(a, b):
    """``log(Phi(b) - Phi(a))`` for ``a <= b``, stable in both tails."""
    flip = a > 0
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_hi = torch.special.log_ndtr(hi)
    gap = torch.clamp(torch.special.log_ndtr(lo) - log_hi, max=0)
    return log_hi + torch.log(-torch.expm1(gap))


def prune_components(log_weights, means, stds, lower, upper, bound):
    """Drop the components that cannot matter to any row of the batch.

    A component's share of ``Z`` is at most ``exp(2 bound)`` times its share
    of the base's mass on the interval; the ones whose share is below
    ``exp(-_LOG_MASS_CUT - 2 bound)`` in every row are dropped (fewer than
    ``1e-17`` of ``Z`` each), the others kept in every row (shapes stay
    fixed), which for a conditional that a few components dominate saves most
    of the work.

    Returns
    -------
    log_weights, means, stds : Tensor of shape (..., J)
    """
    k = means.shape[-1]
    if k == 1:
        return log_weights, means, stds
    stds = stds.expand_as(means)
    lo = (lower[..., None] - means) / stds
    hi = (upper[..., None] - means) / stds
    share = log_weights + _log_interval_mass(lo, hi)
    share = share - torch.logsumexp(share, dim=-1, keepdim=True)
    keep = share > -_LOG_MASS_CUT - 2 * bound
    j = int(keep.sum(-1).max()) if keep.numel() else k
    if j >= k:
        return log_weights, means, stds
    index = torch.topk(share, max(j, 1), dim=-1).indices
    return tuple(t.gather(-1, index) for t in (log_weights, means, stds))


def log_integral(log_weights, means, stds, correction, lower, upper, n_panels):
    """``log ∫_lower^upper q(t) exp(-f(t)) dt`` for a batch of 1-D mixtures.

    ``correction`` maps nodes of shape ``(..., M)`` to ``f`` at them; it is
    called once, on all components' nodes together.
    """
    t, log_terms = panel_nodes(means, stds, lower, upper, n_panels)
    shape = t.shape
    f = correction(t.reshape(*shape[:-3], -1)).reshape(shape)
    log_terms = log_terms - f + log_weights[..., None, None]
    return torch.logsumexp(log_terms.reshape(*shape[:-3], -1), dim=-1)


def sample_inverse_cdf(
    log_weights, means, stds, correction, lower, upper, n_panels, n_grid, generator
):
    """One draw from ``q exp(-f)`` on ``[lower, upper]`` per row.

    A panel of a component is chosen with its quadrature mass (the same sums
    that give the normalizer), then a point inside it by inverting the
    cumulative integral of the density interpolated linearly between
    ``n_grid + 1`` equally spaced points of the panel (exact for the
    interpolant: a quadratic per cell, solved in closed form).

    Parameters
    ----------
    log_weights, means, stds : Tensor of shape (n, K)
    correction : callable
        ``(n, M) -> (n, M)``, ``f`` at ``M`` points of each row.
    lower, upper : Tensor of shape (n,)
    n_panels, n_grid : int
    generator : torch.Generator or None

    Returns
    -------
    t : Tensor of shape (n,)
    """
    n, k = means.shape
    dtype, device = means.dtype, means.device
    t, log_terms = panel_nodes(means, stds, lower, upper, n_panels)
    f = correction(t.reshape(n, -1)).reshape(t.shape)
    panel_log_mass = torch.logsumexp(log_terms - f, dim=-1) + log_weights[..., None]
    panel_log_mass = panel_log_mass.reshape(n, -1)  # (n, K * P)
    u = torch.rand(n, 2, generator=generator, dtype=dtype, device=device)
    choice = _inverse_discrete(panel_log_mass, u[:, 0])
    component, panel = choice // n_panels, choice % n_panels
    rows = torch.arange(n, device=device)
    a, b = component_ranges(means, stds, lower, upper)
    a, b = a[rows, component], b[rows, component]
    mean, std = means[rows, component], stds[rows, component]
    width = (b - a) / n_panels
    start = a + panel.to(dtype) * width
    h = width / n_grid
    grid = start[:, None] + h[:, None] * torch.arange(
        n_grid + 1, dtype=dtype, device=device
    )
    log_density = -0.5 * grid * grid - correction(mean[:, None] + std[:, None] * grid)
    density = torch.exp(log_density - log_density.max(dim=1, keepdim=True).values)
    left, right = density[:, :-1], density[:, 1:]
    cell_mass = 0.5 * (left + right)  # in units of h
    cumulative = torch.cumsum(cell_mass, dim=1)
    target = u[:, 1] * cumulative[:, -1]
    cell = torch.searchsorted(cumulative, target[:, None]).squeeze(1)
    cell = torch.clamp(cell, max=n_grid - 1)
    before = torch.where(
        cell > 0,
        cumulative[rows, torch.clamp(cell - 1, min=0)],
        torch.zeros_like(target),
    )
    rest = torch.clamp(target - before, min=0)
    y0, y1 = left[rows, cell], right[rows, cell]
    # Solve y0 s + (y1 - y0) s^2 / 2 = rest for s in [0, 1] (cell units), in
    # the form that is stable when y1 is close to y0.
    root = torch.sqrt(torch.clamp(y0 * y0 + 2 * (y1 - y0) * rest, min=0))
    s = torch.clamp(
        2 * rest / torch.clamp(y0 + root, min=torch.finfo(dtype).tiny), 0, 1
    )
    z = start + h * (cell.to(dtype) + s)
    return torch.clamp(mean + std * z, min=lower, max=upper)


def _inverse_discrete(log_mass, u):
    """Index drawn with probabilities ``softmax(log_mass)``, from uniforms ``u``."""
    prob = torch.softmax(log_mass, dim=1)
    cumulative = torch.cumsum(prob, dim=1)
    index = torch.searchsorted(
        cumulative, (u * cumulative[:, -1])[:, None], side="right"
    )
    return torch.clamp(index.squeeze(1), max=log_mass.shape[1] - 1)
