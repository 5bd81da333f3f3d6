"""Samplers (layer C): MALA for continuous energies, exact Gaussian draws, Gibbs
for binary energies."""

import math

import torch

from ._conditional_quadrature import sample_inverse_cdf

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
    of them in proportion to the weights (:func:`systematic_resample`). The mass of each
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
    return candidates[systematic_resample(log_w, n_samples, generator=generator)]


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


# ---------------------------------------------------------------- binary
# Single-site updates of binary chains. Each class tracks what makes an
# energy change cheap to compute (the local fields of a pairwise model, the
# first pre-activation of a BinaryMLPEnergy, the current energy of any other
# callable), so that a Gibbs sweep never evaluates the full energy d times
# for the structured energies, and the energy of the current state is known
# without an extra evaluation (AIS needs it once per temperature).


def _as_index(sites):
    """A colour class as a slice when its sites are consecutive (a view, no
    gather), else the index tensor."""
    values = sites.tolist()
    if values == list(range(values[0], values[-1] + 1)):
        return slice(values[0], values[-1] + 1)
    return sites


class _SiteUpdates:
    """Chains ``x`` (modified in place) with cheap one-site energy changes.

    ``sites`` below is a slice or an index tensor of sites that do not
    interact (updated together); ``step`` is the change of their values
    when flipped, ``(n, k)``; ``index`` one site per chain (random scan).
    """

    def __init__(self, energy, x, values):
        self.energy_fn = energy
        self.x = x
        self.lo, self.hi = values
        self.rows = torch.arange(x.shape[0], device=x.device)

    def step(self, sites):
        return (self.lo + self.hi) - 2 * self.x[:, sites]

    def step_at(self, index):
        return (self.lo + self.hi) - 2 * self.x[self.rows, index]

    @property
    def sets(self):
        """Sites updated together in a systematic sweep (no interaction)."""
        return [slice(j, j + 1) for j in range(self.x.shape[1])]

    def refresh(self):
        """Recompute cached quantities from ``x`` (bounds rounding drift)."""


class _GenericUpdates(_SiteUpdates):
    """Any callable: one evaluation per update, the current energy tracked."""

    def __init__(self, energy, x, values):
        super().__init__(energy, x, values)
        self.e = energy(x)

    def delta_sites(self, sites, step):
        flipped = self.x.clone()
        flipped[:, sites] += step
        self._pending = self.energy_fn(flipped)
        return (self._pending - self.e)[:, None]

    def flip_sites(self, sites, flip, step):
        self.x[:, sites] += torch.where(flip, step, 0.0)
        self.e = torch.where(flip[:, 0], self._pending, self.e)

    def delta_at(self, index, step):
        flipped = self.x.clone()
        flipped[self.rows, index] += step
        self._pending = self.energy_fn(flipped)
        return self._pending - self.e

    def flip_at(self, index, flip, step):
        self.x[self.rows, index] += torch.where(flip, step, 0.0)
        self.e = torch.where(flip, self._pending, self.e)

    def energy(self):
        return self.e


class _DuckUpdates(_SiteUpdates):
    """User energies with ``flip_difference_at`` (and optionally
    ``independent_site_sets`` / ``flip_differences_on``)."""

    @property
    def sets(self):
        energy = self.energy_fn
        if hasattr(energy, "independent_site_sets") and hasattr(
            energy, "flip_differences_on"
        ):
            return energy.independent_site_sets()
        return super().sets

    def delta_sites(self, sites, step):
        if hasattr(self.energy_fn, "flip_differences_on"):
            return self.energy_fn.flip_differences_on(self.x, sites)
        index = torch.full((self.x.shape[0],), sites.start, device=self.x.device)
        return self.energy_fn.flip_difference_at(self.x, index)[:, None]

    def flip_sites(self, sites, flip, step):
        self.x[:, sites] += torch.where(flip, step, 0.0)

    def delta_at(self, index, step):
        return self.energy_fn.flip_difference_at(self.x, index)

    def flip_at(self, index, flip, step):
        self.x[self.rows, index] += torch.where(flip, step, 0.0)

    def energy(self):
        return self.energy_fn(self.x)


class _PairwiseUpdates(_SiteUpdates):
    """Boltzmann machines and Ising models: the local fields ``b + W x`` are
    kept, so a flip's energy change is one product and a flip updates the
    fields by a row of ``W``; sites of one colour class update together."""

    def __init__(self, energy, x, values):
        super().__init__(energy, x, values)
        self.w = energy.coupling_matrix()
        self.b = energy.bias
        self._sets = [_as_index(s) for s in energy.independent_site_sets()]
        self.refresh()

    def refresh(self):
        self.field = torch.addmm(self.b, self.x, self.w)

    @property
    def sets(self):
        return self._sets

    def delta_sites(self, sites, step):
        return -step * self.field[:, sites]

    def flip_sites(self, sites, flip, step):
        change = torch.where(flip, step, 0.0)
        self.x[:, sites] += change
        self.field.addmm_(change, self.w[sites])

    def delta_at(self, index, step):
        return -step * self.field[self.rows, index]

    def flip_at(self, index, flip, step):
        change = torch.where(flip, step, 0.0)
        self.x[self.rows, index] += change
        self.field.addcmul_(change[:, None], self.w[index])

    def energy(self):
        return -(self.x @ self.b) - 0.5 * (self.x * (self.field - self.b)).sum(1)


class _MLPUpdates(_SiteUpdates):
    """:class:`~skebm.energies.BinaryMLPEnergy`: the first pre-activation is
    kept, a flip moves it by a column of ``W_1`` and costs the head on one
    row of pre-activations (not a full evaluation)."""

    def __init__(self, energy, x, values):
        super().__init__(energy, x, values)
        self.w_t = energy.layers[0].weight.T.contiguous()
        self.field = energy.field()
        self.refresh()

    def refresh(self):
        self.a = self.energy_fn.first_layer(self.x)
        self.g = self.energy_fn.head(self.a)

    def _delta(self, step, w_t, field):
        moved = torch.addcmul(self.a, step[:, None], w_t)
        g = self.energy_fn.head(moved)
        self._pending = (moved, g)
        return g - self.g - field * step / (self.hi - self.lo)

    def delta_sites(self, sites, step):
        j = sites.start
        return self._delta(step[:, 0], self.w_t[j], self.field[j])[:, None]

    def _apply(self, flip, step):
        moved, g = self._pending
        self.a = torch.where(flip[:, None], moved, self.a)
        self.g = torch.where(flip, g, self.g)
        return torch.where(flip, step, 0.0)

    def flip_sites(self, sites, flip, step):
        self.x[:, sites] += self._apply(flip[:, 0], step[:, 0])[:, None]

    def delta_at(self, index, step):
        return self._delta(step, self.w_t[index], self.field[index])

    def flip_at(self, index, flip, step):
        self.x[self.rows, index] += self._apply(flip, step)

    def energy(self):
        bits = (self.x - self.lo) / (self.hi - self.lo)
        return self.g - bits @ self.field


class _SoftplusUpdates(_MLPUpdates):
    """One softplus hidden layer: with ``s = σ(a)`` kept, a flip changes the
    hidden part by ``vᵀ log(1 + s (e^u - 1))`` (``u`` the moved column, two
    tables ``e^{±W} - 1``), and ``s`` moves to ``s e^u / (1 + s (e^u - 1))``:
    a multiply, a log and a dot product per hidden unit, no softplus."""

    def __init__(self, energy, x, values):
        super().__init__(energy, x, values)
        w_t = self.w_t * (self.hi - self.lo)
        self.t_up = torch.expm1(w_t)
        self.t_diff = torch.expm1(-w_t) - self.t_up
        self.v = energy.layers[-1].weight[0]

    def refresh(self):
        super().refresh()
        self.s = torch.sigmoid(self.a)

    def _moved(self, bits, t_up, t_diff):
        t = torch.addcmul(t_up, bits, t_diff)
        q = torch.mul(self.s, t).add_(1.0)
        return t, q, torch.log(q) @ self.v

    def delta_sites(self, sites, step):
        j = sites.start
        bits = (self.x[:, j : j + 1] - self.lo) / (self.hi - self.lo)
        t, q, dg = self._moved(bits, self.t_up[j], self.t_diff[j])
        self._pending = (t, q, dg)
        return (dg - self.field[j] * step[:, 0] / (self.hi - self.lo))[:, None]

    def delta_at(self, index, step):
        bits = ((self.x[self.rows, index] - self.lo) / (self.hi - self.lo))[:, None]
        t, q, dg = self._moved(bits, self.t_up[index], self.t_diff[index])
        self._pending = (t, q, dg)
        return dg - self.field[index] * step / (self.hi - self.lo)

    def _apply(self, flip, step):
        t, q, dg = self._pending
        self.s = torch.where(flip[:, None], self.s * (1 + t) / q, self.s)
        self.g = torch.where(flip, self.g + dg, self.g)
        return torch.where(flip, step, 0.0)


def _site_updates(energy, x, values):
    """The cheapest single-site machinery ``energy`` supports."""
    from .energies import BinaryMLPEnergy, BoltzmannEnergy

    if isinstance(energy, BoltzmannEnergy) and tuple(energy.values) == tuple(
        values
    ):
        return _PairwiseUpdates(energy, x, values)
    if isinstance(energy, BinaryMLPEnergy) and tuple(energy.values) == tuple(values):
        if energy._fusable():
            return _SoftplusUpdates(energy, x, values)
        return _MLPUpdates(energy, x, values)
    if hasattr(energy, "flip_difference_at"):
        return _DuckUpdates(energy, x, values)
    return _GenericUpdates(energy, x, values)


class _ProductBase:
    """``E_0 = -ℓᵀ bits(x)`` with per-chain log-odds ``logits`` (n, d) or
    shared ones (d,): a flip changes it by ``-ℓ_j`` times the bit's step."""

    def __init__(self, logits):
        self.logits = logits if logits.ndim == 2 else logits[None]

    def delta_sites(self, sites, step_bits):
        return -self.logits[:, sites] * step_bits

    def delta_at(self, rows, index, step_bits):
        return -self.logits[rows if self.logits.shape[0] > 1 else 0, index] * step_bits

    def flip_sites(self, sites, flip, step_bits):
        pass

    def flip_at(self, rows, index, flip, step_bits):
        pass


class _MixtureBase:
    """``E_0 = -log Σ_k c_k exp(ℓ_kᵀ bits(x))`` (a mixture of products), with
    the per-chain component terms ``L`` (n, K) kept, so that a flip's change
    is a log-sum-exp over the components; sites are updated one at a time
    (the mixture couples them)."""

    def __init__(self, logits, log_c, bits):
        self.logits = logits  # (K, d)
        self.terms = bits @ logits.T + log_c  # (n, K)
        self.current = torch.logsumexp(self.terms, 1)

    def log_q(self):
        return self.current

    def _delta(self, moved):
        log_q = torch.logsumexp(moved, 1)
        self._pending = (moved, log_q)
        return self.current - log_q

    def delta_sites(self, sites, step_bits):
        j = sites.start
        return self._delta(self.terms + step_bits * self.logits[:, j])[:, None]

    def delta_at(self, rows, index, step_bits):
        return self._delta(self.terms + step_bits[:, None] * self.logits[:, index].T)

    def flip_sites(self, sites, flip, step_bits):
        self.flip_at(None, None, flip[:, 0], step_bits)

    def flip_at(self, rows, index, flip, step_bits):
        moved, log_q = self._pending
        self.terms = torch.where(flip[:, None], moved, self.terms)
        self.current = torch.where(flip, log_q, self.current)


def _sweep(updates, *, scan, generator, beta=1.0, base=None):
    """One Gibbs sweep of ``β E + (1 - β) E_0`` (``base`` gives ``E_0``'s
    flip changes; ignored at ``β = 1``).

    A site flips with probability ``σ(-ΔE)``, i.e. when ``ΔE < -logit(u)``
    for a uniform ``u``: the thresholds of a sweep are drawn at once.
    """
    x = updates.x
    n, d = x.shape
    tempered = beta != 1.0 and base is not None
    width = updates.hi - updates.lo
    updates.refresh()
    if scan == "random":
        sites = torch.randint(d, (d, n), generator=generator, device=x.device)
        u = torch.rand(d, n, generator=generator, dtype=x.dtype, device=x.device)
        threshold = torch.log1p(-u) - torch.log(u)  # -logit(u)
        rows = updates.rows
        for k in range(d):
            index = sites[k]
            step = updates.step_at(index)
            delta = updates.delta_at(index, step)
            if tempered:
                delta = beta * delta + (1 - beta) * base.delta_at(
                    rows, index, step / width
                )
            flip = delta < threshold[k]
            updates.flip_at(index, flip, step)
            if tempered:
                base.flip_at(rows, index, flip, step / width)
        return
    u = torch.rand(n, d, generator=generator, dtype=x.dtype, device=x.device)
    threshold = torch.log1p(-u) - torch.log(u)
    for sites in updates.sets:
        step = updates.step(sites)
        delta = updates.delta_sites(sites, step)
        if tempered:
            delta = beta * delta + (1 - beta) * base.delta_sites(sites, step / width)
        flip = delta < threshold[:, sites]
        updates.flip_sites(sites, flip, step)
        if tempered:
            base.flip_sites(sites, flip, step / width)


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

    What an update costs depends on the energy. Pairwise models
    (:class:`~skebm.energies.BoltzmannEnergy`, :class:`~skebm.energies.IsingEnergy`)
    keep their local fields, so an update is a product and a row of the
    couplings; with ``"systematic"`` scan they are swept one colour class of
    their interaction graph at a time (the sites of a class do not interact,
    so updating them together from their exact conditionals is the same
    Gibbs sampler, with as many vectorized updates per sweep as there are
    classes: two for a lattice). :class:`~skebm.energies.BinaryMLPEnergy`
    keeps its first pre-activation, so an update costs the network above it
    on one row, and a sweep about as much as one evaluation of the energy on
    the chains. User energies with ``flip_difference_at(x, index)`` (and
    optionally ``independent_site_sets()`` with ``flip_differences_on(x,
    sites)``) use those; any other callable is evaluated once per update on
    the flipped chains.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``.
    x0 : Tensor of shape (n_chains, d)
        Initial states (not modified).
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
    updates = _site_updates(energy, x0.detach().clone(), values)
    for _ in range(n_sweeps):
        _sweep(updates, scan=scan, generator=generator)
    return updates.x


def _annealing_schedule(n_steps):
    """``n_steps + 1`` inverse temperatures from 0 to 1, sigmoidal."""
    t = torch.linspace(-5.0, 5.0, n_steps + 1, dtype=torch.float64)
    sig = torch.sigmoid(t)
    return ((sig - sig[0]) / (sig[-1] - sig[0])).tolist()


@torch.no_grad()
def anneal_binary(
    energy,
    probabilities,
    *,
    mixture_weights=None,
    n_chains=256,
    n_steps=200,
    values=(0.0, 1.0),
    scan="systematic",
    generator=None,
    return_components=False,
):
    """Annealed importance sampling chains from a mixture of independent bits.

    The base ``q`` is a mixture of ``K`` products of Bernoullis (weights
    ``mixture_weights``, component ``k`` giving each unit the value
    ``values[1]`` with probability ``probabilities[k, j]``), drawn exactly.
    A mixture fitted to the data puts chains in every mode the data has, in
    about the right proportions, so no chain has to cross between modes: a
    product of Bernoullis (``K = 1``) with the data's marginals sits in
    between the modes of a strongly coupled model, and along the path from
    it the smaller mode only appears where it is already cut off from the
    chains by an energy barrier.

    The chains anneal along ``π_β(x) ∝ q(x)^{1-β} exp(-β E(x))`` with a
    sigmoidal schedule of ``n_steps`` temperatures, one Gibbs sweep per
    temperature; each chain keeps the mixture's component terms, so a site
    update costs a log-sum-exp over the ``K`` components. A mixture couples
    all sites, which rules out updating a colour class of a sparse pairwise
    energy at once (:func:`gibbs`); for those energies (``K > 1``,
    systematic scan) the chains instead live on pairs ``(x, z)`` of a state
    and a component and anneal along
    ``π_β(x, z) ∝ (w_z q_z(x))^{1-β} exp(-β E(x))`` (``z`` drawn from its exact
    conditional, then a coloured sweep of ``x`` given ``z``): vectorized, but
    with noisier weights (measured: 10x the standard error of log Z on a
    16-spin ferromagnet). Each chain's energy is evaluated once per
    temperature.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``.
    probabilities : Tensor of shape (d,) or (K, d)
        Probability of ``values[1]`` per unit, for each component (clipped to
        ``[1e-3, 1 - 1e-3]``); its dtype and device are used.
    mixture_weights : Tensor of shape (K,) or None, default=None
        Component weights (normalized here); None for one component.
    n_chains : int, default=256
        Independent chains.
    n_steps : int, default=200
        Temperatures, one Gibbs sweep each.
    values : tuple of two floats, default=(0.0, 1.0)
        The two values a unit takes.
    scan : {"systematic", "random"}, default="systematic"
        Gibbs site order.
    generator : torch.Generator or None, default=None
        Source of randomness.
    return_components : bool, default=False
        Also return the component each chain started from.

    Returns
    -------
    x : Tensor of shape (n_chains, d)
        The final states, after a last sweep at ``β = 1``.
    log_w : Tensor of shape (n_chains,)
        Log importance weights: ``exp(log_w)`` has mean ``Z`` over the
        chains, and the states weighted by ``exp(log_w)`` are a weighted
        sample of the model.
    start : LongTensor of shape (n_chains,)
        The starting component of each chain; only with
        ``return_components``.

    Examples
    --------
    >>> import math
    >>> import torch
    >>> from skebm.samplers import anneal_binary
    >>> def energy(x):
    ...     return -x.sum(1)  # independent bits: Z = (1 + e)^4
    >>> x, log_w = anneal_binary(energy, torch.full((4,), 0.5, dtype=torch.float64),
    ...                          n_chains=100, n_steps=20,
    ...                          generator=torch.Generator().manual_seed(0))
    >>> log_z = float(torch.logsumexp(log_w, 0)) - math.log(100)
    >>> abs(log_z - 4 * math.log1p(math.e)) < 0.05
    True
    """
    x, log_w, start = _anneal_groups(
        energy,
        [(probabilities, mixture_weights)],
        n_chains,
        n_steps=n_steps,
        values=values,
        scan=scan,
        generator=generator,
    )[0]
    if return_components:
        return x, log_w, start
    return x, log_w


def _anneal_groups(energy, bases, n_chains, *, n_steps, values, scan, generator):
    """AIS chains from several bases in one run: ``n_chains`` per base, each
    a ``(probabilities (K, d) or (d,), weights (K,) or None)`` mixture.
    Returns ``[(x, log_w, start component), ...]``, one per base.

    The chains of all bases share each temperature's operations (per-step
    overhead, not arithmetic, dominates small runs); a chain sees only its
    own base's components (the others at weight zero).
    """
    logits, log_c, probs = [], [], []
    for p, w in bases:
        p = p if p.ndim == 2 else p[None]
        w = p.new_ones(p.shape[0]) if w is None else torch.as_tensor(w).to(p)
        w = w / w.sum()
        p = p.clamp(1e-3, 1 - 1e-3)
        lg = torch.log(p) - torch.log1p(-p)
        logits.append(lg)
        log_c.append(torch.log(w) - torch.nn.functional.softplus(lg).sum(1))
        probs.append(p)
    sizes = [lg.shape[0] for lg in logits]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    logits, p_all = torch.cat(logits), torch.cat(probs)
    dtype, device = logits.dtype, logits.device
    n_groups, n_total = len(bases), sum(sizes)
    rows = torch.full((n_groups * n_chains, n_total), -math.inf, dtype=dtype,
                      device=device)
    z = []
    for g in range(n_groups):
        block = slice(g * n_chains, (g + 1) * n_chains)
        cols = slice(offsets[g], offsets[g] + sizes[g])
        rows[block, cols] = log_c[g]
        z.append(offsets[g] + torch.multinomial(
            torch.softmax(log_c[g] + torch.nn.functional.softplus(
                logits[cols]).sum(1), 0),
            n_chains, replacement=True, generator=generator))
    z = torch.cat(z)
    start = z.clone()
    n, d = rows.shape[0], logits.shape[1]
    lo, hi = values
    u = torch.rand(n, d, generator=generator, dtype=dtype, device=device)
    x = lo + (hi - lo) * (u < p_all[z]).to(dtype)
    updates = _site_updates(energy, x, values)
    # A mixture couples the sites. Where the energy's own updates go one site
    # at a time, the path is q^(1-β) f^β with the mixture's log-density
    # tracked per chain (Gibbs updates of the exact conditionals); where
    # whole colour classes update together (sparse pairwise energies), the
    # chains carry their component z and anneal on (x, z) pairs instead, so
    # that x given z has a product base (noisier weights, but vectorized).
    coloured = scan == "systematic" and any(
        not isinstance(s, slice) or s.stop - s.start > 1 for s in updates.sets
    )
    mixture = max(sizes) > 1
    extended = mixture and coloured
    available = torch.isfinite(rows)
    marginal = mixture and not coloured
    betas = _annealing_schedule(n_steps)
    # The weights accumulate in float64 whatever the dtype of the chains.
    log_w = torch.zeros(n, dtype=torch.float64, device=device)
    base = _ProductBase(logits[z])
    for k in range(1, n_steps + 1):
        bits = (updates.x - lo) / (hi - lo)
        if marginal:
            base = _MixtureBase(logits, rows, bits)
            log_q = base.log_q()
        else:
            terms = bits @ logits.T + rows  # (n, K)
            log_q = terms.gather(1, z[:, None])[:, 0]
        log_w += (betas[k] - betas[k - 1]) * (-updates.energy() - log_q).double()
        beta = betas[k]
        if extended:
            # Within the chain's own base (the other bases' components at -inf).
            allowed = torch.where(available, (1 - beta) * terms, -math.inf)
            z = torch.multinomial(torch.softmax(allowed, 1), 1, generator=generator)[
                :, 0
            ]
            base = _ProductBase(logits[z])
        _sweep(updates, scan=scan, generator=generator, beta=beta, base=base)
    out = []
    for g in range(n_groups):
        block = slice(g * n_chains, (g + 1) * n_chains)
        lw = log_w[block]
        if extended:
            # (x, z) pairs: the model's normalizer times the K components.
            lw = lw - math.log(sizes[g])
        out.append((updates.x[block], lw, start[block] - offsets[g]))
    return out


def systematic_resample(log_w, n_samples, *, generator=None):
    """Indices drawn in proportion to importance weights (systematic).

    Systematic resampling: one uniform offset, ``n_samples`` evenly spaced
    points on the cumulative weights, so each index ``i`` appears
    ``n_samples w_i`` times up to rounding (less variance than multinomial
    draws); the result is randomly permuted.

    Parameters
    ----------
    log_w : Tensor of shape (n,)
        Log importance weights (any common offset).
    n_samples : int
        Number of indices.
    generator : torch.Generator or None, default=None
        Source of randomness.

    Returns
    -------
    index : LongTensor of shape (n_samples,)
        Indices into ``log_w``.

    Examples
    --------
    >>> import torch
    >>> from skebm.samplers import systematic_resample
    >>> log_w = torch.log(torch.tensor([0.1, 0.0, 0.9], dtype=torch.float64))
    >>> idx = systematic_resample(log_w, 10, generator=torch.Generator().manual_seed(0))
    >>> torch.bincount(idx, minlength=3).tolist()
    [1, 0, 9]
    """
    w = torch.softmax(log_w.to(torch.float64), 0)
    cdf = torch.cumsum(w, 0)
    offset = torch.rand(1, generator=generator, dtype=torch.float64, device=w.device)
    points = (torch.arange(n_samples, dtype=torch.float64, device=w.device) + offset)
    index = torch.searchsorted(cdf, points / n_samples).clamp(max=len(w) - 1)
    perm = torch.randperm(n_samples, generator=generator, device=w.device)
    return index[perm]


@torch.no_grad()
def exact_binary_draws(
    energy, n_features, n_samples, *, values=(0.0, 1.0), dtype=torch.float64,
    generator=None, chunk_size=65536,
):
    """Exact draws from ``exp(-E)`` over ``{lo, hi}^d`` by enumeration.

    The ``2^d`` energies are evaluated in chunks (memory: one float per
    state) and ``n_samples`` state codes drawn from the normalized
    probabilities; for ``d`` up to about 20.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``.
    n_features : int
        ``d``.
    n_samples : int
        Number of draws.
    values : tuple of two floats, default=(0.0, 1.0)
        The two values a unit takes.
    dtype : torch.dtype, default=torch.float64
        Dtype of the states.
    generator : torch.Generator or None, default=None
        Source of randomness.
    chunk_size : int, default=65536
        States per energy evaluation.

    Returns
    -------
    x : Tensor of shape (n_samples, n_features)
        Independent exact draws.

    Examples
    --------
    >>> import torch
    >>> from skebm.samplers import exact_binary_draws
    >>> def energy(x):
    ...     return -2.0 * x.sum(1)  # independent bits, P(1) = sigmoid(2)
    >>> x = exact_binary_draws(energy, 3, 20000,
    ...                        generator=torch.Generator().manual_seed(0))
    >>> abs(float(x.mean()) - float(torch.sigmoid(torch.tensor(2.0)))) < 0.01
    True
    """
    from .partition import binary_states

    total = 2**n_features
    device = getattr(generator, "device", "cpu")
    log_p = torch.cat([
        -energy(binary_states(start, min(start + chunk_size, total), n_features,
                              values=values, dtype=dtype, device=device))
        .to(torch.float64)
        for start in range(0, total, chunk_size)
    ])
    p = torch.softmax(log_p, 0)
    codes = torch.multinomial(p, n_samples, replacement=True, generator=generator)
    lo, hi = values
    bits = (codes[:, None] >> torch.arange(n_features, device=codes.device)) & 1
    return lo + (hi - lo) * bits.to(dtype)


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
