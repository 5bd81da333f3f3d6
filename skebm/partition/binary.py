"""log Z of binary energies: exact enumeration, and annealed importance sampling
from a mixture of independent bits."""

import math

import torch

from .._enumeration import binary_states
from ..samplers.annealing import anneal_binary, anneal_groups
from .estimate import importance_estimate


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
    weights = torch.ones(probs.shape[0], dtype=probs.dtype, device=probs.device)
    if mixture_weights is not None:
        weights = torch.as_tensor(mixture_weights, dtype=probs.dtype,
                                  device=probs.device)
    weights = weights / weights.sum()
    if probs.shape[0] > 1:
        probs, weights, log_w, start = _choose_start_by_pilot(
            energy, draw, probs, weights, n_chains, n_steps=n_steps,
            values=values, scan=scan, generator=generator,
        )
    else:
        log_w, start = draw(n_chains, n_steps, probs, weights)
    budget = max(1, max_growth) * n_chains * n_steps
    return _grow_until_reliable(draw, log_w, start, probs, weights, n_steps, budget)


def _choose_start_by_pilot(
    energy, draw, probs, weights, n_chains, *, n_steps, values, scan, generator
):
    """Chains from the mixture and from the product of its marginals (closer
    to a model that is a mild correction of independent units), in one pilot
    run; the rest of ``n_chains`` from the chosen start.

    A base that misses mass gives a lower estimate, consistent weights or
    not: keep the higher one when they disagree, the one with the smaller
    error otherwise. Returns ``(probs, weights, log_w, start)``.
    """
    product = (weights[:, None] * probs).sum(0, keepdim=True)
    runs = [(probs, weights), (product, weights.new_ones(1))]
    pilot = max(64, n_chains // 4)
    drawn = anneal_groups(
        energy, runs, min(pilot, n_chains), n_steps=n_steps, values=values,
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
    _, log_w, start = drawn[choice]
    if n_chains > pilot:
        more, more_start = draw(n_chains - pilot, n_steps, probs, weights)
        log_w = torch.cat([log_w, more])
        start = torch.cat([start, more_start])
    return probs, weights, log_w, start


def _grow_until_reliable(draw, log_w, start, probs, weights, steps, budget):
    """More chains, or longer ones, until the estimate is reliable or the
    chains x steps budget is spent.

    A mixture start first re-weights its components by the weight their
    chains carried; too few effective chains double the temperatures (the
    path is too coarse for the chains to track it); otherwise more chains
    are pooled.
    """
    n_components = probs.shape[0]
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
