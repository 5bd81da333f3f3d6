"""log Z of continuous energies: Gaussian closed form, grid and conditional
quadrature, importance sampling and annealed importance sampling."""

import math

import torch

from .._conditional_quadrature import log_integral
from .estimate import grow_importance_estimate


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
    start, scale, d = _ais_start(
        base_mean, base_covariance, proposal, domain, generator
    )
    contains = None if domain is None else domain.contains
    betas = _sigmoid_schedule(n_steps)
    if initial_step_size is None:
        initial_step_size = 0.1 * scale / d ** (1 / 3)

    def chains_log_weights(n):
        return _ais_chains_log_weights(
            energy, start, n, betas=betas, contains=contains,
            initial_step_size=initial_step_size, target_accept=target_accept,
            generator=generator,
        )

    if max_chains is None:
        max_chains = 4 * n_chains
    return grow_importance_estimate(
        chains_log_weights, n_chains, max_draws=max(max_chains, n_chains)
    )


def _ais_start(base_mean, base_covariance, proposal, domain, generator):
    """The start density of AIS chains: ``start(n) -> (x0, log_q)``, with the
    start's mean variance per coordinate and the dimension."""
    if proposal is None:
        dtype, device = base_mean.dtype, base_mean.device
        d = base_mean.shape[0]
        scale = float(torch.diagonal(base_covariance).mean())
    else:
        probe = proposal.sample(1, generator=generator)
        dtype, device, d = probe.dtype, probe.device, probe.shape[1]
        scale = float(proposal.sample(256, generator=generator).var(0).mean())

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

    return start, scale, d


def _sigmoid_schedule(n_steps):
    """Inverse temperatures 0 = beta_0 < ... < beta_n = 1, spaced as a sigmoid:
    dense at both ends, where the intermediate densities change fastest."""
    t = torch.linspace(-5.0, 5.0, n_steps + 1, dtype=torch.float64)
    sig = torch.sigmoid(t)
    return ((sig - sig[0]) / (sig[-1] - sig[0])).tolist()


def _values_and_gradients(energy, x, log_q):
    """``-E``, ``log q`` and their gradients at ``x`` (one pass each)."""
    x = x.detach().requires_grad_(True)
    neg_e, lq = -energy(x), log_q(x)
    (grad_e,) = torch.autograd.grad(neg_e.sum(), x)
    (grad_q,) = torch.autograd.grad(lq.sum(), x)
    return neg_e.detach(), lq.detach(), grad_e, grad_q


def _ais_chains_log_weights(
    energy, start, n, *, betas, contains, initial_step_size, target_accept,
    generator,
):
    """The log importance weights of ``n`` AIS chains from ``start``, one MALA
    transition per temperature, its step adapted to ``target_accept``."""
    x, log_q = start(n)
    dtype, device = x.dtype, x.device
    if contains is not None and not bool(contains(x).any()):
        raise ValueError(
            "No annealed importance sampling chain started inside the domain; "
            "the start density puts almost no mass in it. Increase "
            "n_ais_chains."
        )
    state = _values_and_gradients(energy, x, log_q)
    log_w = torch.zeros(n, dtype=dtype, device=device)
    if contains is not None:
        log_w = torch.where(contains(x), log_w, -math.inf)
    step = initial_step_size
    for k in range(1, len(betas)):
        beta = betas[k]
        neg_e, lq = state[0], state[1]
        log_w = log_w + (beta - betas[k - 1]) * (neg_e - lq)
        x, state, accept = _tempered_mala_step(
            energy, x, state, log_q, beta, step, contains, generator
        )
        alive = torch.isfinite(log_w)  # chains that started inside the domain
        rate = float(accept[alive].to(dtype).mean())
        step *= math.exp(0.5 * (rate - target_accept))
    return log_w


def _tempered_mala_step(energy, x, state, log_q, beta, step, contains, generator):
    """One MALA transition leaving ``q^{1-beta} exp(-E)^beta`` invariant;
    ``state`` holds ``-E``, ``log q`` and their gradients at ``x``."""
    neg_e, lq, grad_e, grad_q = state
    n, dtype, device = x.shape[0], x.dtype, x.device
    log_f = (1 - beta) * lq + beta * neg_e
    grad = (1 - beta) * grad_q + beta * grad_e
    xi = torch.randn(x.shape, generator=generator, dtype=dtype, device=device)
    proposal_x = x + step * grad + math.sqrt(2 * step) * xi
    neg_e_p, lq_p, grad_e_p, grad_q_p = _values_and_gradients(
        energy, proposal_x, log_q
    )
    log_f_p = (1 - beta) * lq_p + beta * neg_e_p
    grad_p = (1 - beta) * grad_q_p + beta * grad_e_p
    fwd = ((proposal_x - x - step * grad) ** 2).sum(1) / (4 * step)
    bwd = ((x - proposal_x - step * grad_p) ** 2).sum(1) / (4 * step)
    u = torch.rand(n, generator=generator, dtype=dtype, device=device)
    accept = (torch.log(u) < log_f_p - log_f - bwd + fwd) & torch.isfinite(log_f_p)
    if contains is not None:
        accept = accept & contains(proposal_x)
    keep = accept[:, None]
    x = torch.where(keep, proposal_x, x)
    state = (
        torch.where(accept, neg_e_p, neg_e),
        torch.where(accept, lq_p, lq),
        torch.where(keep, grad_e_p, grad_e),
        torch.where(keep, grad_q_p, grad_q),
    )
    return x, state, accept
