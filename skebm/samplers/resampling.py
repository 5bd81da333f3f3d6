"""Resampling by importance weights: systematic resampling and sampling-importance
resampling of candidate draws."""

import math

import torch


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
