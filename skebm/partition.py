"""Estimates of the log-partition function log Z = log ∫ exp(-E(x)) dx (layer C).

Every estimator returns ``(log_z, stderr)`` as Python floats: ``stderr`` is 0
for a closed form, a discretization error estimate for quadrature, and the
Monte Carlo standard error for annealed importance sampling.
"""

import math

import numpy as np
import torch

from ._conditional_quadrature import log_integral
from .samplers import _anneal_groups, anneal_binary

__all__ = [
    "PartitionEstimate",
    "grow_importance_estimate",
    "importance_estimate",
    "log_partition_ais",
    "log_partition_ais_binary",
    "log_partition_conditional",
    "log_partition_enumerate",
    "log_partition_gaussian",
    "log_partition_importance",
    "log_partition_quadrature",
    "pareto_tail_index",
]


def log_partition_gaussian(precision):
    """Closed form for ``E = 1/2 (x - m)^T P (x - m)``.

    log Z = d/2 log(2 pi) - 1/2 log det P.

    Parameters
    ----------
    precision : Tensor of shape (d, d)
        The symmetric positive definite precision ``P``.

    Returns
    -------
    log_z : float
        log Z.
    stderr : float
        0.0: the value is exact.

    Examples
    --------
    >>> import torch
    >>> from skebm.partition import log_partition_gaussian
    >>> log_partition_gaussian(torch.eye(2, dtype=torch.float64))
    (1.8378770664093453, 0.0)
    """
    d = precision.shape[0]
    _, logdet = torch.linalg.slogdet(precision)
    return 0.5 * d * math.log(2 * math.pi) - 0.5 * float(logdet), 0.0


@torch.no_grad()
def _negative_energy_on(energy, points, chunk_size):
    out = [
        -energy(points[i : i + chunk_size]) for i in range(0, len(points), chunk_size)
    ]
    return torch.cat(out)


def _grid_log_integral(energy, lower, upper, n_points, chunk_size, contains, hard):
    """Trapezoid rule for exp(-E) on a regular grid, masked to the domain.

    Returns the log integral, the difference from the same rule on every other
    node, and the log-ratio of the peak to the largest value on the edges that
    are not domain bounds (``hard``: a ``(d, 2)`` mask of lower / upper edges
    that lie on the domain's boundary, where the density need not be small).
    """
    d = lower.shape[0]
    axes = [
        torch.linspace(
            float(lower[j]),
            float(upper[j]),
            n_points,
            dtype=lower.dtype,
            device=lower.device,
        )
        for j in range(d)
    ]
    mesh = torch.meshgrid(*axes, indexing="ij")
    points = torch.stack([m.reshape(-1) for m in mesh], dim=1)
    log_f = _negative_energy_on(energy, points, chunk_size)
    if contains is not None:
        log_f = torch.where(contains(points), log_f, -math.inf)
    log_f = log_f.reshape((n_points,) * d)

    def trapezoid(values, spacing_factor):
        # Half weight on the first and last node of each axis.
        log_w = torch.zeros_like(values)
        for j in range(d):
            index = [slice(None)] * d
            for end in (0, -1):
                index[j] = end
                log_w[tuple(index)] -= math.log(2.0)
        cell = math.prod(
            spacing_factor * float(upper[j] - lower[j]) / (n_points - 1)
            for j in range(d)
        )
        return float(torch.logsumexp((values + log_w).reshape(-1), 0)) + math.log(cell)

    full = trapezoid(log_f, 1)
    # Every other node: the same rule with twice the spacing.
    coarse = trapezoid(log_f[(slice(None, None, 2),) * d], 2)
    soft_edges = []
    for j in range(d):
        for side, end in ((0, 0), (1, -1)):
            if not hard[j, side]:
                index = [slice(None)] * d
                index[j] = end
                soft_edges.append(log_f[tuple(index)].max())
    edge = max((float(v) for v in soft_edges), default=-math.inf)
    edge_gap = float(log_f.max()) - edge
    return full, abs(full - coarse), edge_gap


def log_partition_quadrature(
    energy,
    lower,
    upper,
    *,
    domain=None,
    n_points=None,
    chunk_size=65536,
    max_expansions=4,
):
    """log Z by the trapezoid rule on a regular grid, for ``d <= 2``.

    The box ``[lower, upper]`` is widened (doubled about its centre) until
    ``exp(-E)`` on its edges is below ``e^-20`` of its peak, so that no mass is
    cut off. With a ``domain`` (:class:`skebm.domains.Domain`) the integral runs
    over the domain only: the box is clipped to the domain's bounding box, a
    clipped edge lies on the boundary (grid nodes on it, so the trapezoid rule
    keeps its accuracy for box-shaped domains) and is not widened, and nodes
    outside the domain count zero. The error estimate is the difference from
    the same rule on every other grid node.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``.
    lower, upper : Tensor of shape (d,)
        Initial integration box.
    domain : Domain or None, default=None
        Integrate over this domain only.
    n_points : int, default=None
        Nodes per axis (odd); 8193 in 1-D and 401 in 2-D by default.
    chunk_size : int, default=65536
        Grid nodes per energy evaluation (bounds memory).
    max_expansions : int, default=4
        Most doublings of the box before the last grid is used as it is.

    Returns
    -------
    log_z : float
        log Z.
    stderr : float
        The discretization error estimate.

    Examples
    --------
    >>> import torch
    >>> from skebm.partition import log_partition_quadrature
    >>> def energy(x):
    ...     return 0.5 * (x**2).sum(1)  # standard normal: log Z = log(2 pi)
    >>> lower = torch.full((2,), -3.0, dtype=torch.float64)
    >>> log_z, err = log_partition_quadrature(energy, lower, -lower)
    >>> round(log_z, 6), err < 1e-8
    (1.837877, True)
    """
    d = lower.shape[0]
    if d > 2:
        raise ValueError(f"Quadrature is only available for d <= 2, got d={d}.")
    if n_points is None:
        n_points = 8193 if d == 1 else 401
    if domain is None:
        dom_lower = torch.full_like(lower, -math.inf)
        dom_upper = torch.full_like(upper, math.inf)
        contains = None
    else:
        dom_lower, dom_upper = domain.bounds(d, dtype=lower.dtype, device=lower.device)
        contains = domain.contains
    lower, upper = lower.clone(), upper.clone()
    for _ in range(max_expansions + 1):
        lower = torch.maximum(lower, dom_lower)
        upper = torch.minimum(upper, dom_upper)
        hard = torch.stack([lower <= dom_lower, upper >= dom_upper], dim=1)
        log_z, err, edge_gap = _grid_log_integral(
            energy, lower, upper, n_points, chunk_size, contains, hard
        )
        if edge_gap > 20.0:
            break
        center, half = (upper + lower) / 2, (upper - lower) / 2
        lower, upper = center - 2 * half, center + 2 * half
    return log_z, err


# An importance-sampling estimate is trusted when its weights have at least
# this many effective samples and a Pareto tail index at most this large
# (above 0.7 the weights' variance is effectively infinite, and no standard
# error means anything: Vehtari, Simpson, Gelman, Yao and Gabry, 2024).
MIN_EFFECTIVE_SAMPLES = 100
MAX_PARETO_K = 0.7
# Independent batches whose spread gives the second error estimate.
_N_ERROR_BATCHES = 8


class PartitionEstimate(tuple):
    """``(log_z, stderr)`` with the diagnostics of how it was obtained.

    Unpacks as the pair every log Z method returns; sampling-based methods
    also fill the attributes.

    Parameters
    ----------
    log_z : float
        The estimate of log Z.
    stderr : float
        Its standard error.
    ess : float, default=inf
        Effective sample size of the importance weights.
    pareto_k : float, default=nan
        Pareto tail index of the weights.
    n_draws : int, default=0
        Importance draws or annealing chains behind the estimate.
    min_ess : float, default=MIN_EFFECTIVE_SAMPLES
        Effective sample size below which it is not ``reliable``.

    Attributes
    ----------
    log_z : float
    stderr : float
    ess : float
        Effective sample size of the importance weights (``inf`` for exact
        and deterministic methods).
    pareto_k : float
        Pareto tail index of the weights (``nan`` where it does not apply).
    n_draws : int
        Importance draws (or annealing chains) behind the estimate.
    reliable : bool
        Whether the error bar can be trusted: ``ess`` and ``pareto_k`` within
        ``min_ess`` and :data:`MAX_PARETO_K`.

    Examples
    --------
    >>> from skebm.partition import PartitionEstimate
    >>> log_z, stderr = PartitionEstimate(1.5, 0.1, ess=20.0, n_draws=500)
    >>> log_z, PartitionEstimate(1.5, 0.1, ess=20.0).reliable
    (1.5, False)
    """

    def __new__(
        cls,
        log_z,
        stderr,
        *,
        ess=math.inf,
        pareto_k=math.nan,
        n_draws=0,
        min_ess=MIN_EFFECTIVE_SAMPLES,
    ):
        self = super().__new__(cls, (float(log_z), float(stderr)))
        self.ess = float(ess)
        self.pareto_k = float(pareto_k)
        self.n_draws = int(n_draws)
        self.reliable = bool(
            self.ess >= min_ess and not (self.pareto_k > MAX_PARETO_K)
        )
        return self

    @property
    def log_z(self):
        return self[0]

    @property
    def stderr(self):
        return self[1]

    def __reduce__(self):
        return (
            _rebuild_estimate,
            (self[0], self[1], self.ess, self.pareto_k, self.n_draws),
        )

    def __repr__(self):
        return (
            f"PartitionEstimate(log_z={self[0]!r}, stderr={self[1]!r}, "
            f"ess={self.ess:.4g}, pareto_k={self.pareto_k:.3g}, "
            f"n_draws={self.n_draws})"
        )

def log_partition_conditional(
    log_weights, means, stds, correction, *, lower=None, upper=None, n_panels=8
):
    """log Z of 1-D conditionals ``q(t) exp(-f(t))``, batched, by quadrature.

    The normalizers of an autoregressive model's conditionals: ``q`` a 1-D
    Gaussian mixture (a base density's conditional), ``f`` a smooth
    correction, the integral over ``[lower, upper]``. Each component is
    integrated in its own standardized coordinate over the range where it has
    its mass (clipped to the interval; the thin layer next to a bound when its
    mean lies far outside), in ``n_panels`` equal panels of 8 Gauss-Legendre
    nodes; everything in log space. With ``f = 0`` the result is the mixture's
    mass on the interval to about ``1e-12`` from 8 panels on.

    Parameters
    ----------
    log_weights, means, stds : Tensor of shape (..., n_components)
        The mixtures: normalized log-weights, means and standard deviations.
    correction : callable
        Maps points of shape ``(..., m)`` (``m`` per mixture) to ``f`` at them.
    lower, upper : Tensor of shape (...), default=None
        The interval (``-inf`` / ``inf`` allowed; None: the real line).
    n_panels : int, default=8
        Panels per component.

    Returns
    -------
    log_z : Tensor of shape (...)

    Examples
    --------
    A standard normal tilted by ``f(t) = -t`` integrates to ``exp(1/2)``:

    >>> import torch
    >>> from skebm.partition import log_partition_conditional
    >>> zero = torch.zeros(1, 1, dtype=torch.float64)
    >>> log_z = log_partition_conditional(zero, zero, zero + 1, lambda t: -t)
    >>> round(log_z.item(), 10)
    0.5
    """
    shape = means.shape[:-1]
    inf = torch.full(shape, math.inf, dtype=means.dtype, device=means.device)
    lower = -inf if lower is None else lower.broadcast_to(shape)
    upper = inf if upper is None else upper.broadcast_to(shape)
    return log_integral(
        log_weights,
        means,
        stds.broadcast_to(means.shape),
        correction,
        lower,
        upper,
        int(n_panels),
    )



def _rebuild_estimate(log_z, stderr, ess, pareto_k, n_draws):
    return PartitionEstimate(
        log_z, stderr, ess=ess, pareto_k=pareto_k, n_draws=n_draws
    )


def pareto_tail_index(log_w):
    """Pareto tail index ``k`` of importance weights given by their logs.

    A generalized Pareto distribution is fitted to the ``M = min(n / 5,
    3 sqrt(n))`` largest weights above the next one, by the empirical Bayes
    estimate of Zhang and Stephens (2009) with the weak prior of Vehtari et
    al. (2024) towards ``k = 0.5``. ``k < 0.5``: the weights have a finite
    variance and the usual standard error holds; ``0.5 <= k <= 0.7``: it
    converges slowly; ``k > 0.7``: the estimate of the mean is unreliable at
    any practical sample size, whatever the standard error says.

    Parameters
    ----------
    log_w : array-like of shape (n,)
        Log importance weights (any common offset).

    Returns
    -------
    k : float
        The tail index; ``nan`` for fewer than 25 finite weights, ``-inf`` when
        the largest weights are all equal.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm.partition import pareto_tail_index
    >>> rng = np.random.default_rng(0)
    >>> light = pareto_tail_index(rng.normal(0, 0.3, 4000))   # log-normal, tame
    >>> heavy = pareto_tail_index(np.log(rng.pareto(1.0, 4000)))  # k = 1
    >>> bool(light < 0.5), bool(heavy > 0.7)
    (True, True)
    """
    log_w = np.asarray(log_w, dtype=np.float64)
    log_w = log_w[np.isfinite(log_w)]
    n = log_w.size
    if n < 25:
        return math.nan
    n_tail = int(min(n / 5.0, 3.0 * math.sqrt(n)))
    w = np.sort(np.exp(log_w - log_w.max()))
    y = w[-n_tail:] - w[-n_tail - 1]
    if y[-1] <= 0:
        return -math.inf
    # Profile likelihood of the GPD in theta = -k / sigma over a grid of
    # theta placed by the sample quartile (Zhang & Stephens, 2009, eq. 8).
    n_grid = 30 + int(math.sqrt(n_tail))
    quartile = y[max(int(n_tail / 4.0 + 0.5) - 1, 0)]
    if quartile <= 0:
        quartile = y[y > 0][0]
    j = np.arange(1, n_grid + 1, dtype=np.float64)
    theta = 1.0 / y[-1] + (1.0 - np.sqrt(n_grid / (j - 0.5))) / (3.0 * quartile)
    k_of_theta = np.log1p(-theta[:, None] * y).mean(axis=1)
    profile = n_tail * (np.log(-theta / k_of_theta) - k_of_theta - 1.0)
    weights = np.exp(profile - profile.max())
    theta_hat = float((theta * weights).sum() / weights.sum())
    k = float(np.log1p(-theta_hat * y).mean())
    # Weak prior towards k = 0.5 worth 10 tail draws (Vehtari et al., 2024).
    return (n_tail * k + 10 * 0.5) / (n_tail + 10)


def importance_estimate(log_w, *, log_offset=0.0, min_ess=MIN_EFFECTIVE_SAMPLES):
    """log of the mean of ``exp(log_w)`` with an error bar that does not lie.

    The standard error is the larger of two estimates: the delta-method
    error of the weights, and the spread of the same estimate over
    :data:`_N_ERROR_BATCHES` independent batches of the draws. The first
    saturates near 1 when one weight carries all the mass (its ratio of
    standard deviation to mean cannot exceed ``sqrt(n)``); the second does
    not: a batch that holds the dominant weight sits far above the others.
    The effective sample size and the Pareto tail index say whether either
    can be trusted (:attr:`PartitionEstimate.reliable`).

    Parameters
    ----------
    log_w : Tensor or ndarray of shape (n,)
        Log importance weights; ``-inf`` entries (zero weights) allowed.
    log_offset : float, default=0.0
        Added to the estimate (the log normalizer of the proposal).
    min_ess : float, default=MIN_EFFECTIVE_SAMPLES
        Effective sample size below which the estimate is not reliable.

    Returns
    -------
    PartitionEstimate
        ``log(mean(exp(log_w))) + log_offset`` and its standard error, the
        effective sample size ``(sum w)^2 / sum w^2``, the Pareto index.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm.partition import importance_estimate
    >>> log_w = np.random.default_rng(0).normal(0.0, 0.5, 10000)
    >>> est = importance_estimate(log_w)   # E[exp(log_w)] = exp(0.125)
    >>> abs(est.log_z - 0.125) < 3 * est.stderr, est.reliable
    (True, True)
    """
    if isinstance(log_w, torch.Tensor):
        log_w = log_w.detach().cpu().double().numpy()
    log_w = np.asarray(log_w, dtype=np.float64).reshape(-1)
    n = log_w.size
    if n == 0 or not np.isfinite(log_w).any():
        return PartitionEstimate(-math.inf, math.inf, ess=0.0, n_draws=n)
    top = log_w.max()
    w = np.exp(log_w - top)
    mean_w = w.mean()
    log_mean = top + math.log(mean_w)
    ess = float(w.sum() ** 2 / (w * w).sum())
    delta = float(w.std(ddof=1) / (math.sqrt(n) * mean_w)) if n > 1 else math.inf
    spread = 0.0
    if n >= 4 * _N_ERROR_BATCHES:
        batches = w[: n - n % _N_ERROR_BATCHES].reshape(_N_ERROR_BATCHES, -1)
        with np.errstate(divide="ignore"):
            log_batch = np.log(batches.mean(axis=1))
        if not np.isfinite(log_batch).all():
            # A batch with no weight at all: its log is -inf and the spread is
            # unbounded; bound it by the smallest positive weight's scale.
            # In logs: the smallest positive weight over a batch size can
            # underflow to 0 (log_w 744 below the largest).
            floor = float(np.min(log_w[w > 0] - top)) - math.log(batches.shape[1])
            log_batch = np.maximum(log_batch, floor)
        spread = float(log_batch.std(ddof=1) / math.sqrt(_N_ERROR_BATCHES))
    return PartitionEstimate(
        log_mean + log_offset,
        max(delta, spread),
        ess=ess,
        pareto_k=pareto_tail_index(log_w),
        n_draws=n,
        min_ess=min_ess,
    )


def grow_importance_estimate(
    draw_log_weights,
    n_draws,
    *,
    max_draws,
    log_offset=0.0,
    min_ess=MIN_EFFECTIVE_SAMPLES,
):
    """Pool batches of importance draws, doubling, until the estimate is reliable.

    Parameters
    ----------
    draw_log_weights : callable
        ``n -> Tensor (n,)``: ``n`` fresh independent log importance weights
        (importance draws, or annealing chains).
    n_draws : int
        Draws of the first batch.
    max_draws : int
        Stop growing once this many draws are pooled.
    log_offset : float, default=0.0
        Passed to :func:`importance_estimate`.
    min_ess : float, default=MIN_EFFECTIVE_SAMPLES
        Effective sample size wanted.

    Returns
    -------
    PartitionEstimate
        Over all pooled draws; ``reliable`` False when ``max_draws`` was
        reached first.

    Examples
    --------
    Importance sampling ``N(0, 1)`` from the wider proposal ``N(0, 3^2)``
    (``Z = sqrt(2 pi)``):

    >>> import math
    >>> import torch
    >>> from skebm.partition import grow_importance_estimate
    >>> gen = torch.Generator().manual_seed(0)
    >>> def draw(n):
    ...     x = 3.0 * torch.randn(n, generator=gen, dtype=torch.float64)
    ...     log_q = -0.5 * (x / 3.0) ** 2 - math.log(3.0 * math.sqrt(2 * math.pi))
    ...     return -0.5 * x**2 - log_q
    >>> est = grow_importance_estimate(draw, 64, max_draws=4096)
    >>> est.reliable, abs(est.log_z - 0.5 * math.log(2 * math.pi)) < 3 * est.stderr
    (True, True)
    """
    pooled = [draw_log_weights(int(n_draws))]
    total = int(n_draws)
    while True:
        estimate = importance_estimate(
            torch.cat(pooled), log_offset=log_offset, min_ess=min_ess
        )
        if estimate.reliable or total >= max_draws:
            return estimate
        more = min(total, int(max_draws) - total)
        pooled.append(draw_log_weights(more))
        total += more


@torch.no_grad()
def log_partition_importance(
    energy,
    proposal,
    *,
    n_draws=16384,
    max_draws=None,
    domain=None,
    generator=None,
    chunk_size=65536,
):
    """log Z by importance sampling from a normalized proposal ``q``.

    ``Z = E_q[exp(-E(x)) / q(x)]`` (over the domain only, if one is given):
    for a model that corrects a base density, ``E = f - log q``, the weights
    are ``exp(-f)`` and the proposal is the base itself. Batches of draws are
    pooled, doubling, until the weights have :data:`MIN_EFFECTIVE_SAMPLES`
    effective samples and a Pareto tail index of at most
    :data:`MAX_PARETO_K`, or ``max_draws`` is reached
    (:func:`grow_importance_estimate`).

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``.
    proposal : object
        With ``sample(n, generator=...) -> (n, d)`` and ``log_prob(x) -> (n,)``
        (such as :class:`~skebm.base_densities.GaussianMixtureBase`), in the
        dtype and on the device of the computation.
    n_draws : int, default=16384
        Draws of the first batch.
    max_draws : int or None, default=None
        Most draws pooled; None is ``16 * n_draws``.
    domain : Domain or None, default=None
        Integrate over this domain only (draws outside weigh zero).
    generator : torch.Generator, default=None
        Source of the draws.
    chunk_size : int, default=65536
        Draws per energy evaluation.

    Returns
    -------
    PartitionEstimate
        With the effective sample size and Pareto index of the weights.

    Examples
    --------
    >>> import math
    >>> import torch
    >>> from skebm.base_densities import GaussianMixtureBase
    >>> from skebm.partition import log_partition_importance
    >>> proposal = GaussianMixtureBase(torch.ones(1), torch.zeros(1, 2),
    ...                                4.0 * torch.eye(2)[None])
    >>> def energy(x):
    ...     return 0.5 * (x**2).sum(1)  # standard normal: log Z = log(2 pi)
    >>> est = log_partition_importance(energy, proposal,
    ...                                generator=torch.Generator().manual_seed(0))
    >>> abs(est.log_z - math.log(2 * math.pi)) < 3 * est.stderr, est.reliable
    (True, True)
    """
    if max_draws is None:
        max_draws = 16 * n_draws

    def draw_log_weights(n):
        x = proposal.sample(n, generator=generator)
        chunks = x.split(chunk_size)
        log_w = torch.cat([-energy(c) - proposal.log_prob(c) for c in chunks])
        if domain is not None:
            log_w = torch.where(domain.contains(x), log_w, -math.inf)
        return log_w

    return grow_importance_estimate(draw_log_weights, n_draws, max_draws=max_draws)


def _log_normalizer_truncated(a, b):
    """log(Phi(b) - Phi(a)) per coordinate, stable in both tails."""
    flip = a > 0
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    return log_hi + torch.log1p(-torch.exp(log_lo - log_hi))


def _gaussian_base(mean, covariance, generator, n):
    """Full-covariance Gaussian: ``(x0, log_q)`` with ``x0`` drawn from it."""
    d = mean.shape[0]
    chol = torch.linalg.cholesky(covariance)
    prec_chol = torch.linalg.inv(chol)  # whitening map
    log_det = 2 * torch.log(torch.diagonal(chol)).sum()
    log_norm = -0.5 * d * math.log(2 * math.pi) - 0.5 * log_det

    def log_q(x):
        z = (x - mean) @ prec_chol.T
        return log_norm - 0.5 * (z * z).sum(1)

    noise = torch.randn(n, d, generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + noise @ chol.T, log_q


def _truncated_diagonal_base(mean, covariance, lower, upper, generator, n):
    """Independent normals truncated to the box ``[lower, upper]``.

    Exact draws by the inverse CDF and an exact normalizer; ``log_q`` is the
    smooth (untruncated) formula, valid inside the box, where it is used.
    """
    std = torch.sqrt(torch.diagonal(covariance))
    a, b = (lower - mean) / std, (upper - mean) / std
    log_norm = (
        -0.5 * math.log(2 * math.pi) - torch.log(std) - _log_normalizer_truncated(a, b)
    ).sum()

    def log_q(x):
        z = (x - mean) / std
        return log_norm - 0.5 * (z * z).sum(1)

    flip = a > 0  # sample the upper tail as the mirrored lower tail
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    p_lo, p_hi = torch.special.ndtr(lo), torch.special.ndtr(hi)
    u = torch.rand(
        n, mean.shape[0], generator=generator, dtype=mean.dtype, device=mean.device
    )
    z = torch.special.ndtri(p_lo + (p_hi - p_lo) * u)
    z = torch.where(flip, -z, z)
    z = torch.minimum(torch.maximum(z, a), b)
    return mean + std * z, log_q


def log_partition_ais(
    energy,
    base_mean=None,
    base_covariance=None,
    *,
    proposal=None,
    domain=None,
    n_chains=256,
    max_chains=None,
    n_steps=200,
    generator=None,
    initial_step_size=None,
    target_accept=0.574,
):
    """log Z by annealed importance sampling (Neal, 2001).

    Anneals from a normalized density ``q`` to ``exp(-E)`` along the geometric
    path ``q^{1-b} exp(-E)^b`` with a sigmoidal schedule of ``n_steps``
    temperatures, one MALA transition per temperature (step size adapted to
    the acceptance rate). ``q`` is the ``proposal`` (for a model that corrects
    a base density, the base: the path is then ``q exp(-b f)``), or else the
    Gaussian ``N(base_mean, base_covariance)`` fitted to the data and widened
    by the caller. Each step evaluates the energy and its gradient once, at
    the MALA proposal: the current state's values are cached, and the
    gradient of the path's log-density is recombined from the cached
    gradients of ``log q`` and ``-E`` at each temperature.

    The chains' log weights go through :func:`importance_estimate` (an error
    that does not saturate, the effective sample size, the Pareto tail
    index); while they are unreliable, batches of chains are added, doubling,
    up to ``max_chains`` (:func:`grow_importance_estimate`).

    With a ``domain``, ``Z = ∫_D exp(-E)``. The Gaussian base is then a
    product of one-dimensional normals (mean ``base_mean``, variances the
    diagonal of ``base_covariance``) truncated to the domain's bounding box,
    with exact draws and an exact normalizer, and the target is
    ``exp(-E) 1_D``: every intermediate density ``q^{1-b} (exp(-E) 1_D)^b``
    with ``b > 0`` lives on ``D``, MALA rejects proposals outside it, and a
    chain whose start falls outside ``D`` gets weight zero. For box-shaped
    domains and the Gaussian base no chain is lost; otherwise the share of
    chains lost is ``q``'s mass outside the domain, which the weights and
    their error account for.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``, differentiable in ``x``.
    base_mean : Tensor of shape (d,), default=None
        Mean of the Gaussian base distribution (without a ``proposal``).
    base_covariance : Tensor of shape (d, d), default=None
        Its covariance; broader than the target keeps the weights' variance
        finite.
    proposal : object, default=None
        The start density instead of the Gaussian: ``sample(n, generator=)``
        and a differentiable ``log_prob(x)``.
    domain : Domain or None, default=None
        Integrate over this domain only.
    n_chains : int, default=256
        Independent annealing chains of the first batch.
    max_chains : int or None, default=None
        Most chains pooled while the weights are unreliable; None is
        ``4 * n_chains``.
    n_steps : int, default=200
        Temperatures; more steps reduce the variance of the weights and the
        downward bias of log Z.
    generator : torch.Generator, default=None
        Source of randomness.
    initial_step_size : float, default=None
        First MALA step size; None scales it to the base's variance.
    target_accept : float, default=0.574
        Acceptance rate the step size is adapted towards.

    Returns
    -------
    PartitionEstimate
        ``(log_z, stderr)``: the log of the mean importance weight (its
        exponential is unbiased for ``Z``; log Z itself is biased low by
        about ``stderr^2 / 2``) and its error, with the effective sample
        size and the Pareto index of the weights.

    Examples
    --------
    >>> import math
    >>> import torch
    >>> from skebm.partition import log_partition_ais
    >>> def energy(x):
    ...     return 0.5 * (x**2).sum(1)  # standard normal: log Z = log(2 pi)
    >>> mean, cov = torch.zeros(2, dtype=torch.float64), 2.25 * torch.eye(2)
    >>> log_z, stderr = log_partition_ais(
    ...     energy, mean, cov.double(), n_steps=100,
    ...     generator=torch.Generator().manual_seed(0))
    >>> abs(log_z - math.log(2 * math.pi)) < 3 * stderr
    True
    """
    if proposal is None:
        dtype, device = base_mean.dtype, base_mean.device
        d = base_mean.shape[0]
        scale = float(torch.diagonal(base_covariance).mean())
    else:
        probe = proposal.sample(1, generator=generator)
        dtype, device, d = probe.dtype, probe.device, probe.shape[1]
        scale = float(proposal.sample(256, generator=generator).var(0).mean())
    contains = None if domain is None else domain.contains

    def start(n):
        """``(x0, log_q)`` for ``n`` chains."""
        if proposal is not None:
            return proposal.sample(n, generator=generator), proposal.log_prob
        if domain is None:
            return _gaussian_base(base_mean, base_covariance, generator, n)
        lower, upper = domain.bounds(d, dtype=dtype, device=device)
        return _truncated_diagonal_base(
            base_mean, base_covariance, lower, upper, generator, n
        )

    t = torch.linspace(-5.0, 5.0, n_steps + 1, dtype=torch.float64)
    sig = torch.sigmoid(t)
    betas = ((sig - sig[0]) / (sig[-1] - sig[0])).tolist()
    if initial_step_size is None:
        initial_step_size = 0.1 * scale / d ** (1 / 3)

    def values_and_gradients(x, log_q):
        """``-E``, ``log q`` and their gradients at ``x`` (one pass each)."""
        x = x.detach().requires_grad_(True)
        neg_e, lq = -energy(x), log_q(x)
        (grad_e,) = torch.autograd.grad(neg_e.sum(), x)
        (grad_q,) = torch.autograd.grad(lq.sum(), x)
        return neg_e.detach(), lq.detach(), grad_e, grad_q

    def chains_log_weights(n):
        x, log_q = start(n)
        if contains is not None and not bool(contains(x).any()):
            raise ValueError(
                "No annealed importance sampling chain started inside the domain; "
                "the start density puts almost no mass in it. Increase "
                "n_ais_chains."
            )
        neg_e, lq, grad_e, grad_q = values_and_gradients(x, log_q)
        log_w = torch.zeros(n, dtype=dtype, device=device)
        if contains is not None:
            log_w = torch.where(contains(x), log_w, -math.inf)
        step = initial_step_size
        for k in range(1, n_steps + 1):
            beta = betas[k]
            log_w = log_w + (beta - betas[k - 1]) * (neg_e - lq)
            # One MALA transition leaving q^{1-beta} exp(-E)^beta invariant.
            log_f = (1 - beta) * lq + beta * neg_e
            grad = (1 - beta) * grad_q + beta * grad_e
            xi = torch.randn(x.shape, generator=generator, dtype=dtype, device=device)
            proposal_x = x + step * grad + math.sqrt(2 * step) * xi
            neg_e_p, lq_p, grad_e_p, grad_q_p = values_and_gradients(
                proposal_x, log_q
            )
            log_f_p = (1 - beta) * lq_p + beta * neg_e_p
            grad_p = (1 - beta) * grad_q_p + beta * grad_e_p
            fwd = ((proposal_x - x - step * grad) ** 2).sum(1) / (4 * step)
            bwd = ((x - proposal_x - step * grad_p) ** 2).sum(1) / (4 * step)
            u = torch.rand(n, generator=generator, dtype=dtype, device=device)
            accept = (torch.log(u) < log_f_p - log_f - bwd + fwd) & torch.isfinite(
                log_f_p
            )
            if contains is not None:
                accept = accept & contains(proposal_x)
            keep = accept[:, None]
            x = torch.where(keep, proposal_x, x)
            neg_e = torch.where(accept, neg_e_p, neg_e)
            lq = torch.where(accept, lq_p, lq)
            grad_e = torch.where(keep, grad_e_p, grad_e)
            grad_q = torch.where(keep, grad_q_p, grad_q)
            alive = torch.isfinite(log_w)  # chains that started inside the domain
            rate = float(accept[alive].to(dtype).mean())
            step *= math.exp(0.5 * (rate - target_accept))
        return log_w

    if max_chains is None:
        max_chains = 4 * n_chains
    return grow_importance_estimate(
        chains_log_weights, n_chains, max_draws=max(max_chains, n_chains)
    )


def binary_states(start, stop, n_features, *, values=(0.0, 1.0), dtype, device):
    """States ``start .. stop - 1`` of ``{lo, hi}^d`` in binary counting order.

    Bit ``j`` of the integer code is unit ``j``.
    """
    lo, hi = values
    codes = torch.arange(start, stop, device=device)
    bits = (codes[:, None] >> torch.arange(n_features, device=device)) & 1
    return lo + (hi - lo) * bits.to(dtype)


@torch.no_grad()
def log_partition_enumerate(
    energy,
    n_features,
    *,
    values=(0.0, 1.0),
    dtype=torch.float64,
    device="cpu",
    chunk_size=65536,
):
    """Exact log Z of a binary energy by summing over all ``2^d`` states.

    States are generated and evaluated in chunks of ``chunk_size``, so memory
    stays bounded; time grows as ``2^d`` (about a second at ``d = 20`` for a
    small model).

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``.
    n_features : int
        ``d``.
    values : tuple of two floats, default=(0.0, 1.0)
        The two values a unit takes: ``(0, 1)`` bits or ``(-1, 1)`` spins.
    dtype : torch.dtype, default=torch.float64
        Dtype of the enumerated states.
    device : str or torch.device, default="cpu"
        Where the states are evaluated.
    chunk_size : int, default=65536
        States per energy evaluation.

    Returns
    -------
    log_z : float
        log Z.
    stderr : float
        0.0: the sum is exact.

    Examples
    --------
    >>> import math
    >>> import torch
    >>> from skebm.partition import log_partition_enumerate
    >>> def energy(x):
    ...     return -x.sum(1)  # independent bits: Z = (1 + e)^d
    >>> log_z, _ = log_partition_enumerate(energy, 3)
    >>> round(log_z, 6) == round(3 * math.log1p(math.e), 6)
    True
    """
    total = 2**n_features
    parts = []
    for start in range(0, total, chunk_size):
        x = binary_states(
            start,
            min(start + chunk_size, total),
            n_features,
            values=values,
            dtype=dtype,
            device=device,
        )
        parts.append(torch.logsumexp(-energy(x), 0))
    return float(torch.logsumexp(torch.stack(parts), 0)), 0.0


# Below this share of effective chains the annealing path is too coarse for
# the chains to track it: more temperatures help more than more chains.
_MIN_EFFECTIVE_SHARE = 0.1


@torch.no_grad()
def log_partition_ais_binary(
    energy,
    probabilities,
    *,
    mixture_weights=None,
    values=(0.0, 1.0),
    n_chains=256,
    n_steps=200,
    max_growth=1,
    scan="systematic",
    generator=None,
):
    """log Z of a binary energy by annealed importance sampling (Neal, 2001).

    Anneals from a mixture of products of independent Bernoullis (fitted to
    the data by the caller: exact draws, known normalizer) to ``exp(-E)``,
    with a sigmoidal schedule of ``n_steps`` temperatures and one Gibbs sweep
    per temperature (:func:`skebm.samplers.anneal_binary`). A mixture with a
    component in each mode of the model starts chains in every mode, so none
    has to cross a barrier; a single product of the data's marginals is the
    case ``K = 1``.

    The error is that of :func:`importance_estimate` (the larger of the
    delta method and the spread over batches of chains, with the effective
    sample size and the Pareto tail index). While the estimate is not
    reliable the budget doubles, up to ``max_growth`` times ``n_chains x
    n_steps`` chain-sweeps: the temperatures double (a fresh run) while
    fewer than 10% of the chains are effective (a path too coarse for the
    chains), the chains double (pooled with the previous ones) otherwise.
    With ``K > 1`` components, pilot chains (a quarter of ``n_chains``, at
    least 64) from the mixture and as many from the product of its marginals
    run together, and choose the base: the higher estimate when they
    differ by more than three errors (a base that misses a mode estimates
    low, however consistent its weights), else the one with the smaller
    error (a model that is a mild correction of independent units is
    closest to the product). The chosen base's pilot chains are kept and
    topped up to ``n_chains``. Before
    growing, a mixture's weights are adapted once: each component gets the
    share of the importance weight its chains carried (80%, plus 20% of its
    old weight), since the model's mode masses need not be the data's. The
    estimate says whether it ended reliable; its attributes ``n_steps``,
    ``probabilities`` and ``mixture_weights`` give the temperatures and the
    base of the last run.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``; pairwise energies and
        :class:`~skebm.energies.BinaryMLPEnergy` get cheap Gibbs updates.
    probabilities : Tensor of shape (d,) or (K, d)
        Probability of ``values[1]`` for each unit, per component (clipped to
        ``[1e-3, 1 - 1e-3]``); its dtype and device are used.
    mixture_weights : Tensor of shape (K,) or None, default=None
        Component weights; None for one component.
    values : tuple of two floats, default=(0.0, 1.0)
        The two values a unit takes.
    n_chains : int, default=256
        Annealing chains of the first run.
    n_steps : int, default=200
        Intermediate temperatures of the first run, one Gibbs sweep each.
    max_growth : int, default=1
        Most budget, as a multiple of the first run's, spent while the
        estimate is unreliable (1: no growth).
    scan : {"systematic", "random"}, default="systematic"
        Gibbs site order (see :func:`skebm.samplers.gibbs`).
    generator : torch.Generator or None, default=None
        Source of randomness.

    Returns
    -------
    PartitionEstimate
        ``(log_z, stderr)`` with the effective sample size, the Pareto tail
        index, the number of chains, and ``n_steps``.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import BoltzmannEnergy
    >>> from skebm.partition import log_partition_ais_binary, log_partition_enumerate
    >>> energy = BoltzmannEnergy(8).double()
    >>> with torch.no_grad():
    ...     _ = energy.weight_raw.normal_(0, 0.3,
    ...                                   generator=torch.Generator().manual_seed(0))
    >>> exact, _ = log_partition_enumerate(energy, 8)
    >>> ais, stderr = log_partition_ais_binary(
    ...     energy, torch.full((8,), 0.5, dtype=torch.float64), n_chains=100,
    ...     n_steps=50, generator=torch.Generator().manual_seed(0))
    >>> abs(ais - exact) < 3 * stderr
    True
    """

    def draw(chains, steps, probs, weights):
        _, log_w, start = anneal_binary(
            energy,
            probs,
            mixture_weights=weights,
            n_chains=chains,
            n_steps=steps,
            values=values,
            scan=scan,
            generator=generator,
            return_components=True,
        )
        return log_w, start

    probs = probabilities if probabilities.ndim == 2 else probabilities[None]
    n_components = probs.shape[0]
    weights = torch.ones(n_components, dtype=probs.dtype, device=probs.device)
    if mixture_weights is not None:
        weights = torch.as_tensor(mixture_weights, dtype=probs.dtype,
                                  device=probs.device)
    weights = weights / weights.sum()
    budget = max(1, max_growth) * n_chains * n_steps
    steps = n_steps
    pooled = []
    if n_components > 1:
        # Chains from the mixture and from the product of its marginals
        # (closer to a model that is a mild correction of independent
        # units), in one run. A base that misses mass gives a lower estimate,
        # consistent weights or not: keep the higher one when they disagree,
        # the one with the smaller error otherwise.
        product = (weights[:, None] * probs).sum(0, keepdim=True)
        runs = [(probs, weights), (product, weights.new_ones(1))]
        pilot = max(64, n_chains // 4)
        drawn = _anneal_groups(
            energy, runs, min(pilot, n_chains), n_steps=steps, values=values,
            scan=scan, generator=generator,
        )
        pilots = [importance_estimate(log_w) for _, log_w, _ in drawn]
        gap = pilots[0].log_z - pilots[1].log_z
        spread = 3 * math.hypot(pilots[0].stderr, pilots[1].stderr)
        if gap > spread:
            choice = 0
        elif gap < -spread:
            choice = 1
        else:
            choice = int(pilots[1].stderr < pilots[0].stderr)
        probs, weights = runs[choice]
        n_components = probs.shape[0]
        _, log_w, start = drawn[choice]
        if n_chains > pilot:
            more, more_start = draw(n_chains - pilot, steps, probs, weights)
            log_w = torch.cat([log_w, more])
            start = torch.cat([start, more_start])
    else:
        log_w, start = draw(n_chains, steps, probs, weights)
    pooled = [log_w]
    adapted = n_components == 1
    while True:
        log_w = torch.cat(pooled)
        estimate = importance_estimate(log_w)
        estimate.n_steps = steps
        estimate.probabilities = probs
        estimate.mixture_weights = weights
        chains = log_w.shape[0]
        if estimate.reliable or 2 * chains * steps > budget:
            return estimate
        if not adapted:
            # The model's mode masses need not be the data's: give each
            # component the share of the weight its chains carried (mixed
            # with its old weight, so that none is dropped), and start again.
            adapted = True
            share = torch.zeros(n_components, dtype=log_w.dtype, device=log_w.device)
            share.index_add_(0, start, torch.softmax(log_w, 0))
            weights = 0.8 * share + 0.2 * weights
            log_w, start = draw(chains, steps, probs, weights)
            pooled = [log_w]
        elif estimate.ess < _MIN_EFFECTIVE_SHARE * chains:
            steps *= 2
            pooled = [draw(chains, steps, probs, weights)[0]]
        else:
            pooled.append(draw(chains, steps, probs, weights)[0])
