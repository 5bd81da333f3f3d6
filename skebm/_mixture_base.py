"""Choosing and fitting the base density of a continuous model (layer A).

The base ``q`` is a scikit-learn ``GaussianMixture``: its number of components
and covariance type -- or a Gaussian kernel density, a mixture with one
component per (subsampled) training row -- are chosen by cross-validated
held-out log-likelihood, as a user's ``GridSearchCV`` over ``GaussianMixture``
and ``KernelDensity`` would choose them (BIC with full covariances picked
models 70 nats per sample worse than a KDE on 89 rows of 13-d data).

Every covariance is floored, column by column, at the data's resolution:
a component may not collapse onto a repeated (rounded) value, where the
likelihood would grow without bound and a held-out score that shares the
rounding would reward it.
"""

import warnings

import numpy as np
import torch
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky
from sklearn.model_selection import KFold

from . import distributed
from .base_densities import GaussianMixtureBase
from .exceptions import DataResolutionWarning

_COVARIANCE_TYPES = ("full", "diag")
# Every number of components from 1 to _FULL_GRID (what a user's grid search
# tries), until _COMPONENT_PATIENCE of them in a row bring no gain (a noisy
# point alone does not stop it; a search past a plateau of three costs fits
# that never won in the benchmark); beyond it the grid is roughly geometric,
# so that a search reaches the 30-50 components that thin, curved structures
# need (rings: -2.58 at 10 components, -1.95 at 30), while each step gains.
_COMPONENT_GRID = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 30, 40, 50)
_FULL_GRID = 10
_COMPONENT_PATIENCE = 3
_COMPONENT_PATIENCE_BEYOND = 1
# Folds of the cross-validation that chooses the base (GridSearchCV's cv=3).
_N_SELECTION_FOLDS = 3
# EM starts of the chosen mixture's final fit (the best likelihood is kept):
# one start sometimes ended in a poor local optimum that the cross-validation
# had not seen.
_N_INIT = 3
# Fewest training rows per component (the smallest fold decides).
_ROWS_PER_COMPONENT = 4
# The kernel density candidate: at most this many centres (a random subsample
# of the rows beyond it), bandwidths relative to each column's standard
# deviation.
_MAX_KERNEL_CENTRES = 2000
_KERNEL_BANDWIDTHS = tuple(np.logspace(-2.0, 0.0, 13))
# Covariance floor of a column without repeated values, relative to its
# standard deviation (the variance floor is 1e-6 of its variance).
_RELATIVE_FLOOR = 1e-3
# A column whose rows are at least this fraction repeats is "rounded": its
# floor is its resolution; at least _WARN_REPEATED, fit warns.
_ROUNDED_FRACTION = 0.05
_WARN_REPEATED = 0.2
# The floor of a rounded column never exceeds this fraction of its spread.
_MAX_FLOOR_FRACTION = 0.25


def column_resolution(X):
    """Per-column standard deviation floor, and the repeated fraction.

    A column whose values repeat (rounded, heaped or discrete values) has a
    resolution: the smallest gap between consecutive repeated values, or
    from a lone repeated value to its nearest neighbour. A rounding step of
    ``r`` spreads a value uniformly over ``r``, of standard deviation
    ``r / sqrt(12)``: no component may be narrower than that in the column.
    A column without repeats gets ``1e-3`` of its standard deviation.

    Returns
    -------
    floor : ndarray of shape (n_features,)
    repeated_fraction : ndarray of shape (n_features,)
        ``1 - n_distinct / n_samples`` of each column.
    """
    n, d = X.shape
    std = X.std(axis=0)
    scale = np.where(std > 0, std, max(float(np.mean(std)), 1.0))
    floor = _RELATIVE_FLOOR * scale
    repeated = np.zeros(d)
    for j in range(d):
        values, counts = np.unique(X[:, j], return_counts=True)
        repeated[j] = 1.0 - len(values) / n
        if repeated[j] < _ROUNDED_FRACTION or len(values) < 2:
            continue
        ties = values[counts > 1]
        if len(ties) >= 2:
            step = float(np.min(np.diff(ties)))
        else:
            i = int(np.searchsorted(values, ties[0]))
            gaps = np.diff(values)[max(i - 1, 0) : i + 1]
            step = float(np.min(gaps))
        floor[j] = max(
            floor[j], min(step / np.sqrt(12.0), _MAX_FLOOR_FRACTION * scale[j])
        )
    return floor, repeated


def _warn_repeated_columns(repeated, floor):
    columns = np.flatnonzero(repeated >= _WARN_REPEATED)
    if len(columns) == 0:
        return
    shown = ", ".join(
        f"{j} ({100 * repeated[j]:.0f}% repeats, floor {floor[j]:.3g})"
        for j in columns[:5]
    )
    more = f" and {len(columns) - 5} more" if len(columns) > 5 else ""
    warnings.warn(
        f"Columns {shown}{more} have many repeated values (rounded or "
        "discrete data): the base density's standard deviations are floored "
        "at each column's resolution there, so that no component collapses "
        "onto a repeated value. The model is a continuous density; "
        "dequantize such columns (add uniform noise of one rounding step) to "
        "compare its likelihood with other continuous models fairly.",
        DataResolutionWarning,
        stacklevel=9,  # the caller of fit (through select_base)
    )


class _FlooredMixture:
    """An unfitted ``GaussianMixture`` whose covariances are floored per column.

    scikit-learn's ``reg_covar`` adds one number to every variance; fitting
    in coordinates scaled by the floor makes ``reg_covar=1`` the floor of
    each column, and the fitted mixture is mapped back to the data's
    coordinates. ``fit`` returns a plain, fitted ``GaussianMixture``.
    """

    def __init__(self, n_components, covariance_type, floor, seed, n_init=1):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.floor = floor
        self.seed = seed
        self.n_init = n_init

    def fit(self, X):
        center = X.mean(axis=0)
        inner = GaussianMixture(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            reg_covar=1.0,
            n_init=self.n_init,
            random_state=self.seed,
        )
        _fit_quietly(inner, (X - center) / self.floor)
        return _rescaled(inner, center, self.floor, self.seed)

    def __repr__(self):
        return (
            f"GaussianMixture(n_components={self.n_components}, "
            f"covariance_type={self.covariance_type!r})"
        )


class _KernelMixture:
    """A Gaussian kernel density as an unfitted mixture: a component a row.

    Centres are the rows (a random subsample of ``_MAX_KERNEL_CENTRES`` when
    there are more), each with the diagonal covariance
    ``bandwidth**2 * var_j + floor_j**2``, equal weights.
    """

    def __init__(self, bandwidth, floor, seed):
        self.bandwidth = bandwidth
        self.floor = floor
        self.seed = seed

    def fit(self, X):
        centres = X
        if len(X) > _MAX_KERNEL_CENTRES:
            rows = np.random.default_rng(self.seed).choice(
                len(X), _MAX_KERNEL_CENTRES, replace=False
            )
            centres = X[np.sort(rows)]
        variances = self.bandwidth**2 * X.var(axis=0) + self.floor**2
        k = len(centres)
        mixture = GaussianMixture(
            n_components=k, covariance_type="diag", random_state=self.seed
        )
        fitted = _set_fitted(
            mixture,
            np.full(k, 1.0 / k),
            np.array(centres, dtype=np.float64),
            np.tile(variances, (k, 1)),
        )
        fitted.kernel_bandwidth_ = self.bandwidth
        return fitted

    def __repr__(self):
        return f"kernel density (bandwidth {self.bandwidth:.3g} standard deviations)"


def _set_fitted(mixture, weights, means, covariances):
    """``mixture`` with the given fitted parameters (scikit-learn's attributes)."""
    mixture.weights_ = weights
    mixture.means_ = means
    mixture.covariances_ = covariances
    mixture.precisions_cholesky_ = _compute_precision_cholesky(
        covariances, mixture.covariance_type
    )
    if mixture.covariance_type == "full":
        mixture.precisions_ = np.einsum(
            "kij,klj->kil", mixture.precisions_cholesky_, mixture.precisions_cholesky_
        )
    else:
        mixture.precisions_ = mixture.precisions_cholesky_**2
    mixture.converged_ = True
    mixture.n_iter_ = 0
    mixture.lower_bound_ = -np.inf
    mixture.n_features_in_ = means.shape[1]
    return mixture


def _rescaled(inner, center, scale, seed):
    """``inner`` (fitted on ``(X - center) / scale``) in X's coordinates."""
    kind = inner.covariance_type
    cov = inner.covariances_
    if kind == "full":
        cov = cov * np.outer(scale, scale)
    elif kind == "diag":
        cov = cov * scale**2
    else:  # pragma: no cover - only full and diag are searched
        raise ValueError(kind)
    mixture = GaussianMixture(
        n_components=inner.n_components,
        covariance_type=kind,
        reg_covar=float(np.mean(scale**2)),
        random_state=seed,
    )
    fitted = _set_fitted(mixture, inner.weights_, center + inner.means_ * scale, cov)
    fitted.converged_ = inner.converged_
    fitted.n_iter_ = inner.n_iter_
    return fitted


def _fit_quietly(mixture, X):
    # A mixture that has not converged in its EM budget is still a valid
    # density; its held-out score decides whether it is used.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return mixture.fit(X)


def _fit(candidate, X):
    if isinstance(candidate, _FlooredMixture | _KernelMixture):
        return candidate.fit(X)
    return _fit_quietly(clone(candidate), X)


def _held_out_scores(candidate, X, folds):
    """Held-out log-likelihood of every row of the folds (fitting each), or None."""
    scores = []
    for train, val in folds:
        try:
            fitted = _fit(candidate, X[train])
        except (ValueError, np.linalg.LinAlgError):  # singular, too few rows
            return None
        scores.append(fitted.score_samples(X[val]))
    scores = np.concatenate(scores)
    return scores if np.isfinite(scores).all() else None


def _kernel_held_out_scores(X, folds, floor, seed):
    """``{bandwidth: held-out scores}`` of every kernel density candidate.

    Where the floors are negligible next to the bandwidths, the kernels'
    covariances are ``h**2`` times the columns' variances, so one matrix of
    standardized squared distances per fold serves every bandwidth ``h``;
    otherwise each candidate is fitted and scored.
    """
    bandwidths = np.asarray(_KERNEL_BANDWIDTHS)
    variance = X.var(axis=0)
    if np.any(floor**2 > 1e-4 * bandwidths.min() ** 2 * variance):
        out = {}
        for h in bandwidths:
            scores = _held_out_scores(_KernelMixture(float(h), floor, seed), X, folds)
            if scores is not None:
                out[float(h)] = scores
        return out
    scores = [[] for _ in bandwidths]
    for train, val in folds:
        centres = _KernelMixture(1.0, floor, seed).fit(X[train]).means_
        scale = np.sqrt(X[train].var(axis=0))
        c, v = centres / scale, X[val] / scale
        distances = np.maximum(
            (v**2).sum(1)[:, None] - 2 * v @ c.T + (c**2).sum(1)[None], 0.0
        )
        for i, h in enumerate(bandwidths):
            log_norm = -0.5 * np.log(2 * np.pi * h**2 * scale**2).sum() - np.log(len(c))
            scores[i].append(logsumexp(-0.5 * distances / h**2, axis=1) + log_norm)
    return {
        float(h): np.concatenate(s) for h, s in zip(bandwidths, scores, strict=True)
    }


def _n_parameters(n_components, covariance_type, n_features):
    per_component = {"full": n_features * (n_features + 1) / 2, "diag": n_features}
    return n_components * (1 + n_features + per_component[covariance_type])


def _selection_folds(n_samples, seed):
    n_splits = min(_N_SELECTION_FOLDS, n_samples)
    return list(
        KFold(n_splits, shuffle=True, random_state=seed).split(np.zeros(n_samples))
    )


def select_base(spec, X, *, seed, covariance_types=_COVARIANCE_TYPES, kernel=True):
    """The unfitted base that ``base=spec`` stands for, chosen on ``X``.

    For ``"gmm"``, mixtures of every covariance type in
    ``covariance_types`` with 1 to 10 components (until three in a row
    bring no gain; then more along a geometric grid while the score
    improves) and, with ``kernel``, Gaussian
    kernel densities over a grid of bandwidths are scored by 3-fold
    cross-validated log-likelihood, and the best is chosen (fewer
    parameters break ties). Covariances are floored at each column's
    resolution (:func:`column_resolution`), with a
    :class:`~skebm.exceptions.DataResolutionWarning` when a column has many
    repeated values. (The one-standard-error rule, the fewest parameters
    within a standard error of the best, was tried: on the rings toy density
    it chose 0.055 nats per sample below a cross-validated mixture.)

    Parameters
    ----------
    spec : {"gmm", "gaussian"} or mixture instance
        The estimator's ``base``.
    X : ndarray of shape (n_samples, n_features)
        Training data.
    seed : int
        Seeds the folds and the mixtures' initialization.
    covariance_types : tuple of str, default=("full", "diag")
        The covariance types ``"gmm"`` tries.
    kernel : bool, default=True
        Whether kernel densities are candidates.

    Returns
    -------
    base : unfitted base
        Fit it with :func:`fit_base`; its ``repr`` names it.

    Notes
    -----
    Inside :func:`skebm.distributed.data_parallel`, the base is chosen by
    rank 0 on the rows gathered from every rank, and sent to the others.
    """
    parallel = distributed._active()
    if parallel is not None:
        return parallel.on_root(
            _select_base,
            spec,
            distributed.gathered(X),
            seed=seed,
            covariance_types=covariance_types,
            kernel=kernel,
        )
    return _select_base(
        spec, X, seed=seed, covariance_types=covariance_types, kernel=kernel
    )


def _select_base(spec, X, *, seed, covariance_types, kernel):
    """:func:`select_base` in one process."""
    if not isinstance(spec, str):
        return clone(spec)
    n_samples = X.shape[0]
    if n_samples < 3:
        raise ValueError(
            f"n_samples={n_samples} is too few to fit a base density: at least 3 "
            "rows are needed (base=None fits the energy alone)."
        )
    floor, repeated = column_resolution(X)
    _warn_repeated_columns(repeated, floor)  # (its stacklevel counts this call)
    if spec == "gaussian":
        return _FlooredMixture(1, "full", floor, seed)
    folds = _selection_folds(n_samples, seed)
    smallest_train = min(len(train) for train, _ in folds)
    max_components = max(1, smallest_train // _ROWS_PER_COMPONENT)
    grid = [k for k in _COMPONENT_GRID if k <= max_components]
    candidates = []  # (mean held-out score, -n_parameters, candidate)
    for covariance_type in covariance_types:
        type_best, misses = -np.inf, 0
        for k in grid:
            candidate = _FlooredMixture(k, covariance_type, floor, seed)
            scores = _held_out_scores(candidate, X, folds)
            score = -np.inf if scores is None else float(scores.mean())
            if scores is not None:
                size = _n_parameters(k, covariance_type, X.shape[1])
                candidates.append((score, -size, candidate))
            if score > type_best:
                type_best, misses = score, 0
            else:
                misses += 1
                patience = (
                    _COMPONENT_PATIENCE
                    if k < _FULL_GRID
                    else _COMPONENT_PATIENCE_BEYOND
                )
                if misses >= patience:
                    break
    if kernel and n_samples >= 2 * _N_SELECTION_FOLDS:
        size = min(smallest_train, _MAX_KERNEL_CENTRES) * X.shape[1]
        for bandwidth, scores in _kernel_held_out_scores(X, folds, floor, seed).items():
            if np.isfinite(scores).all():
                candidate = _KernelMixture(bandwidth, floor, seed)
                candidates.append((float(scores.mean()), -size, candidate))
    if not candidates:
        raise ValueError(
            "No Gaussian mixture base could be fitted to this data (every "
            "candidate was singular). Remove constant or duplicated features, or "
            "use base=None."
        )
    best = max(candidates, key=lambda c: c[:2])[2]
    if isinstance(best, _FlooredMixture) and best.n_components > 1:
        best.n_init = _N_INIT
    return best


def fit_base(base, X):
    """Fit ``base`` (from :func:`select_base`) to ``X``: a fitted mixture.

    A singular fit is a clear ValueError. Inside
    :func:`skebm.distributed.data_parallel`, rank 0 fits it on the rows
    gathered from every rank and sends it to the others.
    """
    parallel = distributed._active()
    if parallel is not None:
        return parallel.on_root(_fit_base, base, distributed.gathered(X))
    return _fit_base(base, X)


def _fit_base(base, X):
    try:
        return _fit(base, X)
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise ValueError(
            f"The base density {base!r} could not be fitted: {exc} Try a "
            "larger reg_covar, fewer components, or base='gaussian'."
        ) from exc


def describe_base(mixture):
    """A short name of a fitted base: ``"GMM, 5 full"`` or ``"KDE, 2000 rows"``."""
    if getattr(mixture, "kernel_bandwidth_", None) is not None:
        return f"KDE, {mixture.n_components} centres"
    return f"GMM, {mixture.n_components} {mixture.covariance_type}"


def mixture_to_torch(mixture):
    """A :class:`~skebm.base_densities.GaussianMixtureBase` from a fitted mixture.

    Every covariance type becomes full covariances (float64, CPU).
    """
    weights = np.asarray(mixture.weights_, dtype=np.float64)
    means = np.asarray(mixture.means_, dtype=np.float64)
    k, d = means.shape
    cov = np.asarray(mixture.covariances_, dtype=np.float64)
    kind = mixture.covariance_type
    if kind == "full":
        covariances = cov
    elif kind == "tied":
        covariances = np.broadcast_to(cov, (k, d, d))
    elif kind == "diag":
        covariances = cov[:, :, None] * np.eye(d)
    else:  # spherical
        covariances = cov[:, None, None] * np.eye(d)
    return GaussianMixtureBase(
        torch.as_tensor(weights),
        torch.as_tensor(means),
        torch.as_tensor(np.ascontiguousarray(covariances)),
    )
