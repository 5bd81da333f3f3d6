"""Samplers of continuous energies: exact Gaussian and conditional draws, MALA,
random-walk Metropolis and unadjusted Langevin chains."""

import math

import torch

from .._conditional_quadrature import sample_inverse_cdf


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



def langevin(energy, x0, *, n_steps, step_size, generator=None):
    """Unadjusted Langevin chains: ``x <- x - tau grad E(x) + sqrt(2 tau) xi``.

    No Metropolis correction and a fixed step: the chains are the
    discretized Langevin diffusion, whose stationary law is ``exp(-E)`` only
    as ``tau -> 0`` (for a Gaussian energy of precision ``P`` its variance
    along an eigenvector of eigenvalue ``lambda`` is ``2 / (lambda (2 - tau
    lambda))``, not ``1 / lambda``). Each step is an affine map of the state
    for a quadratic energy, which makes a short run of it solvable; it is
    the sampler of short-run MCMC training (Nijkamp et al. 2019). Gradients
    are taken in ``x`` only: no graph of the energy's parameters is kept.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``, differentiable in ``x``.
    x0 : Tensor of shape (n_chains, d)
        Starting points, one chain per row (not modified).
    n_steps : int
        Number of steps.
    step_size : float
        ``tau``: the drift is ``tau`` times the score, the noise has variance
        ``2 tau``.
    generator : torch.Generator, default=None
        Source of randomness.

    Returns
    -------
    x : Tensor, shape like ``x0``
        The states after ``n_steps`` steps.

    Examples
    --------
    >>> import torch
    >>> from skebm.samplers import langevin
    >>> def energy(x):
    ...     return 0.5 * (x**2).sum(1)  # standard normal
    >>> x = langevin(energy, torch.zeros(20000, 1, dtype=torch.float64),
    ...              n_steps=50, step_size=0.5,
    ...              generator=torch.Generator().manual_seed(0))
    >>> round(float(x.var()), 1)  # 2 / (2 - 0.5), not 1: the step's bias
    1.3
    """
    x = x0.detach().clone()
    noise_scale = math.sqrt(2.0 * step_size)
    for _ in range(n_steps):
        _, grad = _energy_and_grad(energy, x)
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x - step_size * grad + noise_scale * xi
    return x
