"""Samplers (layer C): MALA for continuous energies, exact Gaussian draws, Gibbs
for binary energies."""

import math

import torch

from ._conditional_quadrature import sample_inverse_cdf

__all__ = [
    "gibbs",
    "importance_resample",
    "mala",
    "random_walk_metropolis",
    "sample_conditional",
    "sample_gaussian",
]


def sample_gaussian(mean, covariance, n_samples, *, generator=None):
    """Exact draws from ``N(mean, covariance)``.

    Parameters
    ----------
    mean : Tensor of shape (d,)
        Mean; its dtype and device are those of the draws.
    covariance : Tensor of shape (d, d)
        Symmetric positive definite covariance.
    n_samples : int
        Number of draws.
    generator : torch.Generator, default=None
        Source of randomness.

    Returns
    -------
    x : Tensor of shape (n_samples, d)
        The draws.

    Examples
    --------
    >>> import torch
    >>> from skebm.samplers import sample_gaussian
    >>> cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    >>> x = sample_gaussian(torch.zeros(2, dtype=torch.float64), cov, 5000,
    ...                     generator=torch.Generator().manual_seed(0))
    >>> x.shape
    torch.Size([5000, 2])
    >>> round(float(torch.corrcoef(x.T)[0, 1]), 1)
    0.8
    """
    chol = torch.linalg.cholesky(covariance)
    noise = torch.randn(
        n_samples,
        mean.shape[0],
        generator=generator,
        dtype=mean.dtype,
        device=mean.device,
    )
    return mean + noise @ chol.T


@torch.no_grad()
def sample_conditional(
    log_weights,
    means,
    stds,
    correction,
    *,
    lower=None,
    upper=None,
    n_panels=8,
    n_grid=64,
    generator=None,
):
    """One draw per row from ``q(t) exp(-f(t))`` on an interval, by inverse CDF.

    ``q`` is a 1-D Gaussian mixture and ``f`` a smooth correction, as in
    :func:`skebm.partition.log_partition_conditional`, whose quadrature
    panels this uses: a panel of a component is chosen with its quadrature
    mass, then a point in it by inverting the cumulative integral of the
    density interpolated linearly on ``n_grid`` equal cells of the panel
    (exact for the interpolant, a quadratic per cell). Draws stay inside
    ``[lower, upper]``. One coordinate of an autoregressive model's ancestral
    sampler.

    Parameters
    ----------
    log_weights, means, stds : Tensor of shape (n, n_components)
        One mixture per row.
    correction : callable
        Maps points of shape ``(n, m)`` to ``f`` at them.
    lower, upper : Tensor of shape (n,), default=None
        The interval (``-inf`` / ``inf`` allowed; None: the real line).
    n_panels : int, default=8
        Panels per component.
    n_grid : int, default=64
        Cells per panel of the interpolated density.
    generator : torch.Generator, default=None
        Source of the two uniforms per row.

    Returns
    -------
    t : Tensor of shape (n,)

    Examples
    --------
    Draws from a standard normal restricted to ``t >= 1``:

    >>> import torch
    >>> from skebm.samplers import sample_conditional
    >>> zero = torch.zeros(2000, 1, dtype=torch.float64)
    >>> t = sample_conditional(
    ...     zero, zero, zero + 1, torch.zeros_like, lower=torch.ones(2000),
    ...     generator=torch.Generator().manual_seed(0))
    >>> bool((t >= 1).all()), round(t.mean().item(), 1)  # mean phi(1)/(1-Phi(1))
    (True, 1.5)
    """
    n = means.shape[0]
    inf = torch.full((n,), math.inf, dtype=means.dtype, device=means.device)
    lower = -inf if lower is None else lower.to(means.dtype).broadcast_to((n,))
    upper = inf if upper is None else upper.to(means.dtype).broadcast_to((n,))
    return sample_inverse_cdf(
        log_weights,
        means,
        stds.broadcast_to(means.shape),
        correction,
        lower,
        upper,
        int(n_panels),
        int(n_grid),
        generator,
    )


def importance_resample(
    energy,
    proposal,
    n_samples,
    *,
    n_candidates=None,
    contains=None,
    generator=None,
    chunk_size=65536,
):
    """Sampling-importance-resampling from ``exp(-E)`` with a proposal ``q``.

    Draws ``n_candidates`` points from ``q``, weighs each by
    ``exp(-E(x)) / q(x)`` (zero outside the domain), and draws ``n_samples``
    of them with replacement in proportion to the weights. The mass of each
    region, each mode included, is the target's up to an error of order
    ``1 / n_candidates`` wherever ``q`` covers it: unlike chains started at
    the data, which carry the data's mode masses, not the model's. Repeated
    candidates are left for a few MCMC steps (:func:`mala`) to separate.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``.
    proposal : object
        ``sample(n, generator=)`` and ``log_prob(x)`` (such as
        :class:`~skebm.base_densities.GaussianMixtureBase`).
    n_samples : int
        Draws returned.
    n_candidates : int or None, default=None
        Candidates drawn from ``q``; None is ``max(16 * n_samples, 16384)``.
    contains : callable or None, default=None
        ``x -> bool tensor``: the domain; candidates outside weigh zero.
    generator : torch.Generator, default=None
        Source of randomness.
    chunk_size : int, default=65536
        Candidates per energy evaluation.

    Returns
    -------
    x : Tensor of shape (n_samples, d)
        The resampled points.

    Examples
    --------
    Resampling a wide normal proposal towards a standard normal:

    >>> import torch
    >>> from skebm.base_densities import GaussianMixtureBase
    >>> from skebm.samplers import importance_resample
    >>> proposal = GaussianMixtureBase(torch.ones(1), torch.zeros(1, 1),
    ...                                9.0 * torch.ones(1, 1, 1))
    >>> def energy(x):
    ...     return 0.5 * (x**2).sum(1)
    >>> x = importance_resample(energy, proposal, 4000,
    ...                         generator=torch.Generator().manual_seed(0))
    >>> round(float(x.std()), 1)
    1.0
    """
    if n_candidates is None:
        n_candidates = max(16 * n_samples, 16384)
    candidates = proposal.sample(n_candidates, generator=generator)
    log_w = torch.cat(
        [-energy(c) - proposal.log_prob(c) for c in candidates.split(chunk_size)]
    )
    if contains is not None:
        log_w = torch.where(contains(candidates), log_w, -math.inf)
    log_w = torch.nan_to_num(log_w, nan=-math.inf)
    if not bool(torch.isfinite(log_w).any()):
        raise ValueError(
            "No proposal draw has a positive weight: the proposal puts no mass "
            "where the target lives (or inside the domain)."
        )
    weights = torch.exp(log_w - log_w.max())
    index = torch.multinomial(weights, n_samples, replacement=True, generator=generator)
    return candidates[index]


def _energy_and_grad(energy, x):
    x = x.detach().requires_grad_(True)
    e = energy(x)
    (grad,) = torch.autograd.grad(e.sum(), x)
    return e.detach(), grad.detach()


def mala(
    energy,
    x0,
    *,
    n_steps,
    step_size=None,
    generator=None,
    adapt=True,
    target_accept=0.574,
    contains=None,
):
    """Metropolis-adjusted Langevin chains targeting ``exp(-E)``.

    One chain per row of ``x0``. The step size is adapted towards
    ``target_accept`` (the optimal MALA acceptance rate, Roberts & Rosenthal
    1998) during the first half of the steps only and then held fixed, so
    the second half is a proper Markov chain. Proposals outside the domain
    (``contains(x)`` False) are rejected, so chains never leave it.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``, differentiable in ``x``.
    x0 : Tensor of shape (n_chains, d)
        Starting points, one chain per row.
    n_steps : int
        Number of MALA steps.
    step_size : float, default=None
        Initial step size ``tau`` of the proposal
        ``x - tau grad E(x) + sqrt(2 tau) xi``; None is 0.01.
    generator : torch.Generator, default=None
        Source of randomness.
    adapt : bool, default=True
        Adapt the step size during the first half of the steps.
    target_accept : float, default=0.574
        Acceptance rate the adaptation aims at.
    contains : callable or None, default=None
        ``x -> bool tensor (n,)``: the domain; proposals outside are rejected.

    Returns
    -------
    x : Tensor, shape like ``x0``
        The last state of each chain.
    step_size : float
        The final step size.
    acceptance_rate : float
        Mean acceptance over the non-adaptive half of the steps.

    Examples
    --------
    >>> import torch
    >>> from skebm.samplers import mala
    >>> def energy(x):
    ...     return 0.5 * (x**2).sum(1)  # standard normal
    >>> x0 = torch.zeros(2000, 2, dtype=torch.float64)
    >>> x, step_size, acceptance = mala(
    ...     energy, x0, n_steps=200, generator=torch.Generator().manual_seed(0))
    >>> [round(v, 1) for v in x.var(0).tolist()]
    [1.0, 1.0]
    >>> round(acceptance, 2)
    0.57
    """
    x = x0.detach().clone()
    n, d = x.shape
    dtype, device = x.dtype, x.device
    if step_size is None:
        step_size = 0.01
    e, grad = _energy_and_grad(energy, x)
    n_adapt = n_steps // 2 if adapt else 0
    accepted, counted = 0.0, 0
    for k in range(n_steps):
        xi = torch.randn(x.shape, generator=generator, dtype=dtype, device=device)
        proposal = x - step_size * grad + math.sqrt(2 * step_size) * xi
        e_p, grad_p = _energy_and_grad(energy, proposal)
        fwd = ((proposal - x + step_size * grad) ** 2).sum(1) / (4 * step_size)
        bwd = ((x - proposal + step_size * grad_p) ** 2).sum(1) / (4 * step_size)
        log_accept = -e_p + e - bwd + fwd
        u = torch.rand(n, generator=generator, dtype=dtype, device=device)
        accept = (torch.log(u) < log_accept) & torch.isfinite(e_p)
        if contains is not None:
            accept = accept & contains(proposal)
        x = torch.where(accept[:, None], proposal, x)
        e = torch.where(accept, e_p, e)
        grad = torch.where(accept[:, None], grad_p, grad)
        rate = float(accept.to(dtype).mean())
        if k < n_adapt:
            step_size *= math.exp(rate - target_accept)
        else:
            accepted += rate
            counted += 1
    acceptance = accepted / counted if counted else float("nan")
    return x, step_size, acceptance


@torch.no_grad()
def random_walk_metropolis(
    energy,
    x0,
    *,
    n_steps,
    step_size=None,
    generator=None,
    adapt=True,
    target_accept=0.234,
    contains=None,
):
    """Random-walk Metropolis chains targeting ``exp(-E)``: no gradients.

    For energies that can be evaluated but not differentiated in ``x``
    (energy discrepancy trains such energies). Gaussian proposals
    ``x + sqrt(step_size) xi``; the step size is adapted towards
    ``target_accept`` (0.234, optimal for random-walk proposals in many
    dimensions) during the first half of the steps, then held fixed.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``.
    x0 : Tensor of shape (n_chains, d)
        Starting points, one chain per row.
    n_steps : int
        Number of steps.
    step_size : float, default=None
        Initial proposal variance; None is ``0.01``.
    generator : torch.Generator, default=None
        Source of randomness.
    adapt : bool, default=True
        Adapt the step size during the first half of the steps.
    target_accept : float, default=0.234
        Acceptance rate the adaptation aims at.
    contains : callable or None, default=None
        ``x -> bool tensor (n,)``: the domain; proposals outside are rejected.

    Returns
    -------
    x : Tensor, shape like ``x0``
        The last state of each chain.
    step_size : float
        The final step size.
    acceptance_rate : float
        Mean acceptance over the non-adaptive half of the steps.

    Examples
    --------
    >>> import torch
    >>> from skebm.samplers import random_walk_metropolis
    >>> def energy(x):
    ...     return torch.round(0.5 * (x**2).sum(1) * 1000) / 1000  # no gradient
    >>> x, _, _ = random_walk_metropolis(
    ...     energy, torch.zeros(4000, 1, dtype=torch.float64), n_steps=300,
    ...     generator=torch.Generator().manual_seed(0))
    >>> round(float(x.var()), 1)
    1.0
    """
    x = x0.detach().clone()
    n = x.shape[0]
    dtype, device = x.dtype, x.device
    if step_size is None:
        step_size = 0.01
    e = energy(x)
    n_adapt = n_steps // 2 if adapt else 0
    accepted, counted = 0.0, 0
    for k in range(n_steps):
        xi = torch.randn(x.shape, generator=generator, dtype=dtype, device=device)
        proposal = x + math.sqrt(step_size) * xi
        e_p = energy(proposal)
        u = torch.rand(n, generator=generator, dtype=dtype, device=device)
        accept = (torch.log(u) < e - e_p) & torch.isfinite(e_p)
        if contains is not None:
            accept = accept & contains(proposal)
        x = torch.where(accept[:, None], proposal, x)
        e = torch.where(accept, e_p, e)
        rate = float(accept.to(dtype).mean())
        if k < n_adapt:
            step_size *= math.exp(rate - target_accept)
        else:
            accepted += rate
            counted += 1
    acceptance = accepted / counted if counted else float("nan")
    return x, step_size, acceptance


def has_input_gradient(energy, x):
    """Whether ``energy`` can be differentiated in its input at ``x``."""
    x = x.detach()[:2].clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            e = energy(x)
            if not e.requires_grad:
                return False
            (grad,) = torch.autograd.grad(e.sum(), x, allow_unused=True)
    except RuntimeError:
        return False
    return grad is not None and bool(torch.isfinite(grad).all())


@torch.no_grad()
def gibbs(
    energy, x0, *, n_sweeps, values=(0.0, 1.0), scan="systematic", generator=None
):
    """Gibbs (heat-bath, Glauber) chains on binary states targeting ``exp(-E)``.

    One chain per row of ``x0``, whose entries are ``values[0]`` or
    ``values[1]``. A sweep is ``d`` single-site updates: ``"systematic"`` visits
    the sites in order, ``"random"`` draws a site per update and chain. A site
    takes its other value with its conditional probability
    ``σ(E(x) - E(flip_j x))``. All chains update together; the updates within
    a sweep are sequential, as Gibbs sampling is.

    Energies with ``flip_difference_at(x, index)`` (pairwise models) give the
    energy change directly; any other energy is evaluated once per update on
    the batch of flipped chains. Energies that also have
    ``independent_site_sets()`` and ``flip_differences_on(x, sites)``
    (pairwise models: the colour classes of their interaction graph) are
    swept, with ``"systematic"`` scan, one set at a time: the sites of a set
    do not interact, so updating them together from their exact
    conditionals is the same Gibbs sampler as updating them in turn, with
    as many vectorized updates per sweep as there are sets (two for a
    lattice) instead of ``d``.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``.
    x0 : Tensor of shape (n_chains, d)
        Initial states (not modified): training points for persistent or
        data-started chains, noise for short-run chains from noise.
    n_sweeps : int
        Sweeps of ``d`` single-site updates.
    values : tuple of two floats, default=(0.0, 1.0)
        The two values a unit takes: ``(0, 1)`` bits or ``(-1, 1)`` spins.
    scan : {"systematic", "random"}, default="systematic"
        Site order within a sweep.
    generator : torch.Generator or None, default=None
        Source of randomness.

    Returns
    -------
    x : Tensor of shape (n_chains, d)
        The states after ``n_sweeps`` sweeps.

    Examples
    --------
    >>> import torch
    >>> from skebm.samplers import gibbs
    >>> def energy(x):
    ...     return -2.0 * x.sum(1)  # independent bits, P(1) = sigmoid(2)
    >>> x = gibbs(energy, torch.zeros(4000, 3), n_sweeps=1,
    ...           generator=torch.Generator().manual_seed(0))
    >>> abs(float(x.mean()) - float(torch.sigmoid(torch.tensor(2.0)))) < 0.02
    True
    """
    if scan not in ("systematic", "random"):
        raise ValueError(f"scan must be 'systematic' or 'random', got {scan!r}.")
    x = x0.detach().clone()
    n, d = x.shape
    lo, hi = values
    if (
        scan == "systematic"
        and hasattr(energy, "independent_site_sets")
        and hasattr(energy, "flip_differences_on")
    ):
        return _gibbs_by_sets(energy, x, n_sweeps, lo + hi, generator)
    rows = torch.arange(n, device=x.device)
    local = getattr(energy, "flip_difference_at", None)
    e = None if local is not None else energy(x)
    for _ in range(n_sweeps):
        if scan == "random":
            sites = torch.randint(d, (d, n), generator=generator, device=x.device)
        u = torch.rand(d, n, generator=generator, dtype=x.dtype, device=x.device)
        for k in range(d):
            if scan == "random":
                idx = sites[k]
            else:
                idx = torch.full((n,), k, dtype=torch.long, device=x.device)
            current = x[rows, idx]
            other = (lo + hi) - current
            if local is not None:
                delta = local(x, idx)
            else:
                flipped = x.clone()
                flipped[rows, idx] = other
                e_flipped = energy(flipped)
                delta = e_flipped - e
            flip = u[k] < torch.sigmoid(-delta)
            x[rows, idx] = torch.where(flip, other, current)
            if local is None:
                e = torch.where(flip, e_flipped, e)
    return x


def _gibbs_by_sets(energy, x, n_sweeps, total, generator):
    """Systematic-scan Gibbs sweeps updating each set of non-interacting
    sites at once (``x`` is modified and returned)."""
    sets = energy.independent_site_sets()
    for _ in range(n_sweeps):
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        for sites in sets:
            delta = energy.flip_differences_on(x, sites)
            current = x[:, sites]
            flip = u[:, sites] < torch.sigmoid(-delta)
            x[:, sites] = torch.where(flip, total - current, current)
    return x
