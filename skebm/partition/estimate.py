"""What a log Z estimate reports (value, standard error, effective sample size,
Pareto tail index), and the importance-sampling estimate from log weights."""

import math

import numpy as np
import torch

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
