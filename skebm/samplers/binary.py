"""Gibbs chains on binary states, through the local updates an energy provides,
and exact draws by enumeration."""

import torch

from .._enumeration import binary_states
from ..energies._site_updates import SiteUpdates


class _GenericUpdates(SiteUpdates):
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


class _DuckUpdates(SiteUpdates):
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


def local_updates(energy, x, values):
    """The cheapest single-site machinery ``energy`` supports.

    An energy that knows its local fields (:class:`~skebm.energies.BoltzmannEnergy`,
    :class:`~skebm.energies.BinaryMLPEnergy`) builds its own updates in
    ``site_updates(x, values)`` (None when it cannot, e.g. for other unit
    values); a user's energy with ``flip_difference_at`` gets one flip
    difference per update; any other callable one evaluation per update.
    """
    build = getattr(energy, "site_updates", None)
    updates = build(x, values) if build is not None else None
    if updates is not None:
        return updates
    if hasattr(energy, "flip_difference_at"):
        return _DuckUpdates(energy, x, values)
    return _GenericUpdates(energy, x, values)


def gibbs_sweep(updates, *, scan, generator, beta=1.0, base=None):
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
    updates = local_updates(energy, x0.detach().clone(), values)
    for _ in range(n_sweeps):
        gibbs_sweep(updates, scan=scan, generator=generator)
    return updates.x



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
