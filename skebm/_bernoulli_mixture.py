"""Mixtures of independent Bernoullis, fitted by EM (private, numpy).

The proposal of the binary estimators' annealed importance sampling and
sampling: chains drawn from a mixture fitted to the training data start in
every mode the data has, in about the data's proportions
(:func:`skebm.samplers.anneal_binary`).
"""

import math

import numpy as np

# Rows used to fit the mixture (a random subset above this): the proposal
# need not be a good density estimate, only cover the modes.
_MAX_ROWS = 2000
# Components tried: 1, 2, ... while BIC improves (with this patience), at
# most _MAX_COMPONENTS.
_MAX_COMPONENTS = 32
_PATIENCE = 2
_MAX_EM_ITER = 50
# Beta(1, 1) prior on every probability and Dirichlet(1) on the weights: a
# component never puts probability 0 or 1 on a unit.
_PRIOR = 1.0


def _em(rows, counts, n_components, rng):
    """EM for a mixture of ``n_components`` Bernoulli products on the distinct
    ``rows`` (with ``counts``): ``(log-likelihood, weights, probabilities)``."""
    n = counts.sum()
    # Seeding as k-means++: spread the first centres over the distinct rows.
    first = rng.choice(len(rows), p=counts / n)
    centres = [first]
    dist = np.abs(rows - rows[first]).sum(1).astype(np.float64)
    for _ in range(1, n_components):
        p = counts * dist
        if p.sum() <= 0:
            break
        centres.append(rng.choice(len(rows), p=p / p.sum()))
        dist = np.minimum(dist, np.abs(rows - rows[centres[-1]]).sum(1))
    if len(centres) < n_components:
        return -math.inf, None, None
    probs = 0.1 + 0.8 * rows[centres]
    weights = np.full(n_components, 1.0 / n_components)
    previous = -math.inf
    for _ in range(_MAX_EM_ITER):
        log_p, log_1mp = np.log(probs), np.log1p(-probs)
        joint = rows @ (log_p - log_1mp).T + log_1mp.sum(1) + np.log(weights)
        top = joint.max(1, keepdims=True)
        log_rows = top[:, 0] + np.log(np.exp(joint - top).sum(1))
        log_lik = float(counts @ log_rows)
        resp = np.exp(joint - log_rows[:, None]) * counts[:, None]
        mass = resp.sum(0)
        weights = (mass + _PRIOR) / (n + n_components * _PRIOR)
        probs = (resp.T @ rows + _PRIOR) / (mass[:, None] + 2 * _PRIOR)
        if log_lik - previous <= 1e-4 * n:
            break
        previous = log_lik
    return log_lik, weights, probs


def fit_bernoulli_mixture(bits, rng):
    """Mixture of independent Bernoullis fitted to ``bits`` in {0, 1}.

    The number of components is chosen by BIC (1, 2, ... until it stops
    improving). Returns ``(weights (K,), probabilities (K, d))``, float64.
    """
    bits = np.asarray(bits, dtype=np.float64)
    if len(bits) > _MAX_ROWS:
        bits = bits[rng.choice(len(bits), _MAX_ROWS, replace=False)]
    n, d = bits.shape
    rows, counts = np.unique(bits, axis=0, return_counts=True)
    counts = counts.astype(np.float64)
    best = None
    since = 0
    for k in range(1, min(_MAX_COMPONENTS, len(rows)) + 1):
        log_lik, weights, probs = _em(rows, counts, k, rng)
        if weights is None:
            break
        bic = -2 * log_lik + (k * d + k - 1) * math.log(n)
        if best is None or bic < best[0]:
            best, since = (bic, weights, probs), 0
        else:
            since += 1
            if since >= _PATIENCE:
                break
    return best[1], best[2]
