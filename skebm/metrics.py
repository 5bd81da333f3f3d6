"""Metrics of density estimators: scorers for every kind, efficiency diagnostics.

scikit-learn's density estimators disagree on what ``score`` means:
``GaussianMixture.score`` and skebm's are the *mean* log-likelihood per
sample, ``KernelDensity.score`` is the *sum* over samples (so it grows with
the size of a validation fold), and ``BernoulliRBM.score_samples`` is a
random pseudo-likelihood. A ``GridSearchCV`` without ``scoring`` that mixes
them compares numbers of different kinds; :func:`mean_log_likelihood_scorer`
compares the same thing for all of them: the mean of ``score_samples``.

The efficiency diagnostics, :func:`score_matching_efficiency` and
:func:`pseudo_likelihood_efficiency`, say how much precision a fit lost by
not using maximum likelihood (see the user guide's page on statistical
efficiency).
"""

import copy
import functools
import numbers
import warnings
from typing import NamedTuple

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._efficiency import (
    gaussian_quadratic_covariance,
    ising_fisher_enumerate,
    ising_pseudo_likelihood_sandwich,
    ising_statistics,
    linear_score_matching_sandwich,
    quadratic_parameters,
    quadratic_statistics,
    quadrature_nodes,
    weighted_covariance,
)
from ._torch_utils import to_numpy
from .energies import LinearInParametersEnergy, QuadraticEnergy

# The Fisher information of an Ising model is summed over the 2^d states up
# to this many spins: 2^d k^2 operations with k = d (d + 1) / 2 statistics,
# measured 0.07 s at 12 spins, 1.5 s at 16 and 29 s at 20 (one core of a
# loaded machine). Above, it is the covariance of the statistics over model
# samples, which PseudoLikelihoodIsing.sample draws exactly (by enumeration)
# up to 20 spins and with annealed Gibbs chains above.
_MAX_ENUMERATED_SPINS = 16
# PseudoLikelihoodIsing.sample draws exactly (by enumeration) up to this many
# spins; above, the Fisher information takes consecutive sweeps of annealed
# chains, this many per chain.
_MAX_EXACT_DRAW_SPINS = 20
_SWEEPS_PER_CHAIN = 10

__all__ = [
    "EfficiencyDiagnostic",
    "mean_log_likelihood_scorer",
    "neg_training_loss_scorer",
    "pseudo_likelihood_efficiency",
    "score_matching_efficiency",
    "validation_scorer",
]


def mean_log_likelihood_scorer(estimator, X, y=None):
    """Mean held-out log-likelihood per sample, from ``score_samples``.

    A scorer in scikit-learn's sense (``scorer(estimator, X, y)``): pass it as
    ``scoring=`` to ``GridSearchCV`` or ``cross_val_score`` to select among
    ``KernelDensity``, ``GaussianMixture``, skebm's estimators and any other
    estimator (or pipeline) with ``score_samples`` returning log-densities.
    For a ``Pipeline`` the log-density is that of the transformed data, the
    same for every candidate that shares the transformers.

    Parameters
    ----------
    estimator : estimator with ``score_samples``
        A fitted density estimator.
    X : array-like of shape (n_samples, n_features)
        Held-out data.
    y : None
        Ignored.

    Returns
    -------
    score : float
        ``mean(estimator.score_samples(X))``; higher is better.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn.neighbors import KernelDensity
    >>> from skebm.metrics import mean_log_likelihood_scorer
    >>> X = np.random.RandomState(0).normal(size=(300, 1))
    >>> search = GridSearchCV(KernelDensity(), {"bandwidth": [0.05, 0.5, 5.0]},
    ...                       scoring=mean_log_likelihood_scorer, cv=3).fit(X)
    >>> search.best_params_
    {'bandwidth': 0.5}
    """
    return float(np.mean(estimator.score_samples(X)))


def neg_training_loss_scorer(estimator, X=None, y=None):
    """Minus the last epoch's training objective, for per-epoch monitoring.

    The models a callback sees during ``fit`` (``fitted_estimator`` of
    :class:`sklearn.callback.ScoringMonitor`) carry the run so far:
    ``ScoringMonitor(scoring={"training": neg_training_loss_scorer,
    "validation": validation_scorer})`` logs the training objective and the
    validation criterion once per epoch. Negated so that higher is better,
    as every scikit-learn score.

    Parameters
    ----------
    estimator : skebm estimator
        A fitted (or partly fitted) estimator with ``loss_curve_``.
    X : ignored
    y : ignored

    Returns
    -------
    score : float
        ``-estimator.loss_curve_[-1]``; nan before the first epoch.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm import ScoreMatchingDensity
    >>> from skebm.metrics import neg_training_loss_scorer
    >>> X = np.random.RandomState(0).normal(size=(300, 2))
    >>> est = ScoreMatchingDensity(base=None, max_iter=3, hidden_layer_sizes=(8,),
    ...                            random_state=0).fit(X)
    >>> neg_training_loss_scorer(est) == -est.loss_curve_[-1]
    True
    """
    curve = getattr(estimator, "loss_curve_", None)
    return float(-curve[-1]) if curve else float("nan")


def validation_scorer(estimator, X=None, y=None):
    """The last epoch's validation criterion, for per-epoch monitoring.

    With a base density, the held-out log-likelihood the epochs are chosen
    by (``validation_scores_``); without, minus the validation objective
    (``validation_loss_curve_``). Higher is better. See
    :func:`neg_training_loss_scorer`.

    Parameters
    ----------
    estimator : skebm estimator
        A fitted (or partly fitted) estimator.
    X : ignored
    y : ignored

    Returns
    -------
    score : float
        The criterion at the last epoch; nan where there is none.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm import ScoreMatchingDensity
    >>> from skebm.metrics import validation_scorer
    >>> X = np.random.RandomState(0).normal(size=(1200, 2))
    >>> est = ScoreMatchingDensity(base="gaussian", hidden_layer_sizes=(8,),
    ...                            max_iter=3, random_state=0).fit(X)
    >>> validation_scorer(est) == est.validation_scores_[-1]
    True
    """
    scores = getattr(estimator, "validation_scores_", None)
    if scores:
        return float(scores[-1])
    curve = getattr(estimator, "validation_loss_curve_", None)
    return float(-curve[-1]) if curve else float("nan")


# ------------------------------------------------------------ efficiency
# The default threshold of the EfficiencyWarning: a method that needs ten
# times the data maximum likelihood needs for the same precision (standard
# errors 3.2 times as large). Unimodal fits stay well below it (measured:
# 1.0 for Gaussians, 1.3 for the quartic exp(-x^4/4), 1.1 for an Ising
# ferromagnet at a tenth of its critical coupling; see the user guide), and
# its estimate is not pushed past it by noise while the samples are at least
# _RELIABLE_SAMPLES_PER_PARAMETER per parameter (the largest eigenvalue of a
# covariance estimated from n samples of p variables is biased by about
# (1 + sqrt(p / n))^2, 1.7 at p / n = 0.1).
_WARN_ABOVE = 10.0
_RELIABLE_SAMPLES_PER_PARAMETER = 10
# Directions of the objective's Hessian with eigenvalues below this share of
# the largest are not determined by the objective (a constant statistic).
_NULL_TOLERANCE = 1e-10


class EfficiencyDiagnostic:
    """Asymptotic covariance of a fit against maximum likelihood's.

    Returned by :func:`score_matching_efficiency` and
    :func:`pseudo_likelihood_efficiency`. All covariances are those of the
    estimate from the ``n_samples`` rows given (the asymptotic covariance of
    ``sqrt(n) (theta_hat - theta)`` divided by ``n``), in the parameterization
    named by ``parameter_names``. The ratios compare the two covariances
    direction by direction: ``variance_ratios`` are the generalized
    eigenvalues of ``(covariance, ml_covariance)``, ``c^T covariance c /
    c^T ml_covariance c`` at its stationary directions ``c``, which do not
    depend on the parameterization. A ratio of ``r`` means that the method
    needs ``r`` times as many samples as maximum likelihood to estimate
    ``c^T theta`` as precisely.

    Parameters
    ----------
    method : str
        ``"score_matching"`` or ``"pseudo_likelihood"``.
    parameter_names : list of str
        One name per parameter.
    estimate : ndarray of shape (n_parameters,)
        The fitted parameters.
    covariance : ndarray of shape (n_parameters, n_parameters)
        The method's sandwich covariance.
    ml_covariance : ndarray of shape (n_parameters, n_parameters)
        Maximum likelihood's: the inverse Fisher information of the fitted
        model, divided by ``n_samples``.
    variance_ratios : ndarray of shape (n_identified,)
        The generalized eigenvalues, largest first: one per direction of
        the parameters that the objective determines (fewer than the
        parameters when statistics are constant or linearly dependent).
    worst_direction : ndarray of shape (n_parameters,)
        The unit vector ``c`` of the largest ratio.
    n_samples : int
        Rows the sandwich was estimated from.
    ml_method : str
        How the Fisher information was computed: ``"closed_form"``,
        ``"quadrature"``, ``"exact"`` (enumeration) or ``"sampling"``.
    n_model_samples : int or None
        Model samples behind a ``"sampling"`` Fisher information.
    excluded : list of str
        Parameters left out of the comparison (not determined by the
        objective or by the data, e.g. a constant statistic, the field of a
        spin that is constant in the data, a coupling an L1 fit set to zero).

    Attributes
    ----------
    variance_ratio : float
        The largest ratio: how many times the data the method needs in its
        worst direction.
    relative_efficiency : float
        ``1 / variance_ratio``, in ``(0, 1]`` up to estimation noise (1: as
        efficient as maximum likelihood).
    mean_variance_ratio : float
        The mean of ``variance_ratios``, ``tr(I C) / k`` with ``I`` the Fisher
        information: linear in the Fisher information and in the gradient
        covariance, so, unlike the largest ratio, it is hardly biased
        upwards when there are few samples per parameter.
    trace_ratio : float
        ``tr(covariance) / tr(ml_covariance)`` (depends on the
        parameterization).
    reliable : bool
        Whether the samples (and model samples) number at least ten per
        compared parameter, so that ``variance_ratio`` is not dominated by
        estimation noise; otherwise prefer ``mean_variance_ratio``.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm import ScoreMatchingDensity
    >>> from skebm.metrics import score_matching_efficiency
    >>> X = np.random.RandomState(0).normal(size=(2000, 1))
    >>> est = ScoreMatchingDensity(energy="quadratic").fit(X)
    >>> diagnostic = score_matching_efficiency(est, X)
    >>> diagnostic.parameter_names
    ['precision[0,0]', 'eta[0]']
    >>> bool(0.8 < diagnostic.variance_ratio < 1.2)  # Gaussian: SM = MLE
    True
    """

    def __init__(
        self,
        *,
        method,
        parameter_names,
        estimate,
        covariance,
        ml_covariance,
        variance_ratios,
        worst_direction,
        n_samples,
        ml_method,
        n_model_samples,
        excluded,
    ):
        self.method = method
        self.parameter_names = list(parameter_names)
        self.estimate = estimate
        self.covariance = covariance
        self.ml_covariance = ml_covariance
        self.variance_ratios = variance_ratios
        self.worst_direction = worst_direction
        self.n_samples = int(n_samples)
        self.ml_method = ml_method
        self.n_model_samples = n_model_samples
        self.excluded = list(excluded)

    @property
    def variance_ratio(self):
        return float(self.variance_ratios[0])

    @property
    def relative_efficiency(self):
        return 1.0 / self.variance_ratio

    @property
    def mean_variance_ratio(self):
        return float(np.mean(self.variance_ratios))

    @property
    def trace_ratio(self):
        return float(np.trace(self.covariance) / np.trace(self.ml_covariance))

    @property
    def reliable(self):
        needed = _RELIABLE_SAMPLES_PER_PARAMETER * len(self.variance_ratios)
        sampled = self.ml_method == "sampling"
        return self.n_samples >= needed and (
            not sampled or self.n_model_samples >= needed
        )

    def __repr__(self):
        return (
            f"EfficiencyDiagnostic(method={self.method!r}, "
            f"variance_ratio={self.variance_ratio:.4g}, "
            f"mean_variance_ratio={self.mean_variance_ratio:.4g}, "
            f"n_parameters={len(self.parameter_names)}, "
            f"n_samples={self.n_samples}, ml_method={self.ml_method!r})"
        )


def _compare(hessian, gradient_covariance, fisher, n, *, keep=None):
    """Sandwich against inverse Fisher on the identified subspace (numpy).

    Returns ``(covariance, ml_covariance, ratios, worst, dropped)`` with the
    covariances in the full parameterization (zero off the subspace) and
    ``dropped`` the indices of the coordinate axes orthogonal to it.
    """
    k = hessian.shape[0]
    keep = np.arange(k) if keep is None else np.asarray(keep)
    H = hessian[np.ix_(keep, keep)]
    S = gradient_covariance[np.ix_(keep, keep)]
    F = fisher[np.ix_(keep, keep)]
    eigval, eigvec = np.linalg.eigh(0.5 * (H + H.T))
    good = eigval > _NULL_TOLERANCE * max(eigval.max(), 0.0)
    U = eigvec[:, good]
    H_inv = U / eigval[good]  # H^+ restricted: U diag(1/lambda)
    sandwich = H_inv.T @ S @ H_inv  # in U coordinates
    F_sub = U.T @ F @ U
    try:
        L = np.linalg.cholesky(0.5 * (F_sub + F_sub.T))
    except np.linalg.LinAlgError:
        raise ValueError(
            "The Fisher information of the fitted model is singular on the "
            "parameters the objective determines: maximum likelihood does not "
            "identify them (e.g. linearly dependent statistics). Remove the "
            "redundant statistics."
        ) from None
    ratios, u = np.linalg.eigh(L.T @ sandwich @ L)
    order = np.argsort(ratios)[::-1]
    ratios, u = ratios[order], u[:, order]
    worst_sub = L @ u[:, 0]  # c with F C c = lambda c
    worst = np.zeros(k)
    worst[keep] = U @ worst_sub
    worst /= np.linalg.norm(worst)
    if worst[np.argmax(np.abs(worst))] < 0:
        worst = -worst
    cov = np.zeros((k, k))
    ml = np.zeros((k, k))
    cov[np.ix_(keep, keep)] = U @ sandwich @ U.T / n
    L_inv_U = np.linalg.solve(L, U.T)
    ml[np.ix_(keep, keep)] = L_inv_U.T @ L_inv_U / n
    # Coordinate axes the objective does not determine: kept rows whose
    # projection onto U vanishes, and every row left out by ``keep``.
    weak = np.linalg.norm(U, axis=1) < 1e-8
    dropped = sorted(set(range(k)) - set(keep.tolist()) | set(keep[weak].tolist()))
    return cov, ml, ratios, worst, dropped


def _efficiency_diagnostic(
    method, names, estimate, hessian, gradient_covariance, fisher, n, ml_method,
    n_model_samples, *, keep=None,
):
    """The :class:`EfficiencyDiagnostic` of a sandwich (numpy) against the
    Fisher information (see :func:`_compare`)."""
    cov, ml, ratios, worst, dropped = _compare(
        hessian, gradient_covariance, fisher, n, keep=keep
    )
    return EfficiencyDiagnostic(
        method=method,
        parameter_names=names,
        estimate=estimate,
        covariance=cov,
        ml_covariance=ml,
        variance_ratios=ratios,
        worst_direction=worst,
        n_samples=n,
        ml_method=ml_method,
        n_model_samples=n_model_samples,
        excluded=[names[i] for i in dropped],
    )


def _warn_if_inefficient(diagnostic, warn_above, advice):
    from .exceptions import EfficiencyWarning

    if warn_above is None:
        return
    if diagnostic.reliable:
        ratio, which = diagnostic.variance_ratio, "in its worst direction"
    else:
        ratio, which = diagnostic.mean_variance_ratio, "on average over directions"
    if not ratio > warn_above:
        return
    name = diagnostic.method.replace("_", " ")
    warnings.warn(
        EfficiencyWarning(
            f"{name.capitalize()} is far less efficient than maximum likelihood "
            f"on this fit: {which} its variance is {ratio:.3g} times maximum "
            f"likelihood's, so it needs about {ratio:.3g} times as many samples "
            f"for the same precision (standard errors {np.sqrt(ratio):.2g} "
            f"times as large). {advice}",
            ratio=ratio,
        ),
        stacklevel=3,
    )


def _check_n_model_samples(n_model_samples, n_parameters):
    if n_model_samples is None:
        return max(10_000, 20 * n_parameters)
    if not isinstance(n_model_samples, numbers.Integral) or n_model_samples < 2:
        raise ValueError(
            f"n_model_samples must be an integer >= 2, got {n_model_samples!r}."
        )
    return int(n_model_samples)


def score_matching_efficiency(
    estimator, X, *, n_model_samples=None, random_state=None, warn_above=_WARN_ABOVE
):
    """Asymptotic covariance of a score matching fit against maximum likelihood.

    For a :class:`~skebm.ScoreMatchingDensity` whose energy is linear in its
    parameters, ``E(x) = t(x)^T theta`` (``energy="quadratic"`` or a
    :class:`~skebm.energies.LinearInParametersEnergy`; on ``R^d`` or a
    ``domain``), the score matching objective is
    ``J(theta) = 1/2 theta^T Gamma theta - b^T theta`` and its estimate has
    the sandwich covariance ``Gamma^-1 Sigma Gamma^-1 / n``, with ``Sigma``
    the covariance of the per-sample gradients ``Gamma_i theta - b_i``, both
    estimated on ``X``. Maximum likelihood's is the inverse Fisher
    information ``Cov_theta(t(x))^-1 / n`` of the fitted model: in closed
    form for a Gaussian, by quadrature for one or two features, and from
    ``n_model_samples`` draws of :meth:`~skebm.ScoreMatchingDensity.sample`
    otherwise. The ridge ``alpha`` is left out: this is the efficiency of
    the method, not of the penalty.

    Parameters
    ----------
    estimator : ScoreMatchingDensity
        Fitted, with ``energy="quadratic"`` or a linear-in-parameters energy.
    X : array-like of shape (n_samples, n_features)
        Data, normally the training data, from which the sandwich is
        estimated.
    n_model_samples : int or None, default=None
        Model samples for the Fisher information where it has no closed form
        or quadrature; None is ``max(10000, 20 k)`` for ``k`` parameters.
    random_state : int, RandomState instance or None, default=None
        Seeds those samples.
    warn_above : float or None, default=10.0
        Emit an :class:`~skebm.exceptions.EfficiencyWarning` when the
        variance ratio exceeds this (the largest ratio when ``reliable``, the
        mean ratio otherwise); None never warns.

    Returns
    -------
    diagnostic : EfficiencyDiagnostic
        Both covariances and their ratios. Parameters: for
        ``energy="quadratic"``, ``E = 1/2 x^T P x - eta^T x`` with
        ``eta = P location_``, the entries ``P_ij`` for ``i <= j`` (named
        ``precision[i,j]``) and ``eta`` (``eta[i]``); for a linear energy,
        ``theta`` (``theta[i]``).

    Raises
    ------
    ValueError
        For another estimator or energy, or data outside the domain.

    See Also
    --------
    pseudo_likelihood_efficiency : The same for pseudo-likelihood (Ising).

    Notes
    -----
    Score matching is consistent, but its variance is governed by the
    isoperimetry of the distribution: for exponential families it stays
    within a factor of maximum likelihood's set by the Poincaré (and
    log-Sobolev) constants, which are small for a unimodal, log-concave
    density and grow exponentially with the barrier between separated modes
    [1]_. For a Gaussian, score matching and maximum likelihood give the same
    estimate, and the ratios are 1 up to the noise of their estimates.

    References
    ----------
    .. [1] F. Koehler, A. Heckett and A. Risteski, "Statistical efficiency
       of score matching: the view from isoperimetry", ICLR 2023
       (arXiv:2210.00726).

    Examples
    --------
    A tilted double well ``E(x) = theta_1 x + theta_2 x^2 + theta_3 x^4``,
    fitted to data with modes at ±3: the tilt moves mass between the wells,
    which maximum likelihood sees and score matching hardly does.

    >>> import numpy as np
    >>> import torch
    >>> from skebm import ScoreMatchingDensity
    >>> from skebm.energies import LinearInParametersEnergy
    >>> from skebm.metrics import score_matching_efficiency
    >>> class Quartic(LinearInParametersEnergy):
    ...     def __init__(self):
    ...         super().__init__(n_statistics=3)
    ...     def statistics(self, x):
    ...         return torch.cat([x, x**2, x**4], dim=1)
    >>> rng = np.random.RandomState(0)
    >>> X = rng.choice([-3.0, 3.0], size=(4000, 1)) + 0.5 * rng.normal(size=(4000, 1))
    >>> est = ScoreMatchingDensity(energy=Quartic()).fit(X)
    >>> diagnostic = score_matching_efficiency(est, X, warn_above=None)
    >>> bool(diagnostic.variance_ratio > 10)  # measured 33
    True
    """
    from ._score_matching import ScoreMatchingDensity

    check_is_fitted(estimator)
    if not isinstance(estimator, ScoreMatchingDensity):
        raise ValueError(
            "score_matching_efficiency takes a fitted ScoreMatchingDensity, got "
            f"{type(estimator).__name__}."
        )
    linear = _linear_parameterization(estimator)
    X = estimator._validate_X(X, reset=False)
    x, domain, hessian, gradient_covariance = _score_matching_sandwich(
        estimator, X, linear
    )
    fisher, ml_method, n_used = _score_matching_fisher(
        estimator, linear, x, domain, n_model_samples, random_state
    )
    diagnostic = _efficiency_diagnostic(
        "score_matching", linear.names, linear.theta.detach().numpy().copy(),
        hessian.detach().numpy(), gradient_covariance.detach().numpy(),
        fisher.detach().numpy(), len(X), ml_method, n_used,
    )
    _warn_if_inefficient(diagnostic, warn_above, _SCORE_MATCHING_ADVICE)
    return diagnostic


_SCORE_MATCHING_ADVICE = (
    "The gap grows as the modes of the density separate (score matching "
    "sees each mode's shape, hardly their relative masses). What helps: "
    "more data; EnergyDiscrepancyDensity, whose objective compares the "
    "model across modes; a base density that carries the mode masses "
    "(ScoreMatchingDensity(energy='mlp', base='gmm'))."
)


class _LinearParameterization(NamedTuple):
    """A fitted score matching energy as ``E(x) = t(x)^T theta``."""

    # t, on float64 inputs.
    statistics: object
    theta: torch.Tensor
    names: list
    # energy="quadratic": the fitted location and precision; else None.
    mean: object
    precision: object
    # A LinearInParametersEnergy: its float64 copy, whose t this is; else None.
    energy64: object


def _linear_parameterization(estimator):
    """The :class:`_LinearParameterization` of a fitted
    :class:`~skebm.ScoreMatchingDensity`'s energy; a ValueError for an
    energy that is not linear in its parameters."""
    energy = estimator.energy_
    mean = precision = energy64 = None
    if isinstance(energy, QuadraticEnergy):
        statistics = quadratic_statistics
        mean = torch.as_tensor(estimator.location_, dtype=torch.float64)
        precision = torch.as_tensor(estimator.precision_, dtype=torch.float64)
        theta = quadratic_parameters(mean, precision)
        d = mean.shape[0]
        rows, cols = np.triu_indices(d)
        names = [f"precision[{i},{j}]" for i, j in zip(rows, cols, strict=True)]
        names += [f"eta[{i}]" for i in range(d)]
    elif isinstance(energy, LinearInParametersEnergy):
        energy64 = copy.deepcopy(energy).double()
        statistics = energy64.statistics
        theta = energy64.theta.detach()
        names = [f"theta[{i}]" for i in range(theta.shape[0])]
    else:
        raise ValueError(
            "score_matching_efficiency needs an energy linear in its parameters "
            "(energy='quadratic' or a LinearInParametersEnergy), whose score "
            f"matching objective is quadratic; the fitted energy is a "
            f"{type(energy).__name__}."
        )
    return _LinearParameterization(
        statistics, theta, names, mean, precision, energy64
    )


def _score_matching_sandwich(estimator, X, linear):
    """``(x, domain, hessian, gradient_covariance)``: the validated ``X`` as a
    float64 tensor, the estimator's domain (or None) and the Hessian and
    per-sample gradient covariance of the score matching objective on it."""
    domain = getattr(estimator, "domain_", None)
    x = torch.as_tensor(X, dtype=torch.float64)
    boundary_weight = None
    if domain is not None:
        if not bool(domain.contains(x).all()):
            raise ValueError(
                f"X has rows outside the estimator's domain {domain!r}."
            )
        boundary_weight = functools.partial(
            domain.boundary_weight, cap=estimator.boundary_weight_cap
        )
    hessian, gradient_covariance = linear_score_matching_sandwich(
        linear.statistics, x, linear.theta, boundary_weight=boundary_weight
    )
    return x, domain, hessian, gradient_covariance


def _score_matching_fisher(estimator, linear, x, domain, n_model_samples, random_state):
    """``(fisher, ml_method, n_model_samples)``: the Fisher information of the
    fitted model, ``Cov(t(x))``: in closed form for a Gaussian on ``R^d``, by
    quadrature over the range of ``x`` widened by half its width on each side
    for one or two features, else from model samples (``n_model_samples`` is
    None unless sampled)."""
    energy = estimator.energy_
    statistics = linear.statistics
    k = linear.theta.shape[0]
    n_used = None
    if isinstance(energy, QuadraticEnergy) and domain is None:
        fisher = gaussian_quadratic_covariance(
            linear.mean, torch.linalg.inv(linear.precision)
        )
        ml_method = "closed_form"
    elif x.shape[1] <= 2:
        energy_fn = (
            copy.deepcopy(energy).double()
            if isinstance(energy, QuadraticEnergy)
            else linear.energy64
        )
        low, high = x.min(0).values, x.max(0).values
        pad = 0.5 * (high - low) + 1e-3
        with torch.no_grad():
            points, weights = quadrature_nodes(
                energy_fn, low - pad, high + pad, domain=domain
            )
            fisher = weighted_covariance(statistics(points), weights)
        ml_method = "quadrature"
    else:
        n_used = _check_n_model_samples(n_model_samples, k)
        draws = estimator.sample(n_used, random_state=random_state)
        with torch.no_grad():
            t = statistics(torch.as_tensor(draws, dtype=torch.float64))
        fisher = weighted_covariance(t)
        ml_method = "sampling"
    return fisher, ml_method, n_used


def pseudo_likelihood_efficiency(
    estimator, X, *, n_model_samples=None, random_state=None, warn_above=_WARN_ABOVE
):
    """Asymptotic covariance of a pseudo-likelihood Ising fit against maximum
    likelihood.

    For a fitted :class:`~skebm.PseudoLikelihoodIsing`, the sandwich
    covariance ``H^-1 Sigma H^-1 / n`` of its estimate of
    ``theta = (h, J_ij for i < j)``, with ``H`` the Hessian of the
    pseudo-likelihood objective and ``Sigma`` the covariance of its
    per-sample gradients, both estimated on ``X``; maximum likelihood's is the
    inverse Fisher information ``Cov(sigma_i, sigma_i sigma_j)^-1 / n`` of the
    fitted model, summed over the ``2^d`` states for ``n_features <= 16``, and
    above from ``n_model_samples`` draws of
    :meth:`~skebm.PseudoLikelihoodIsing.sample` (exact draws by enumeration
    up to 20 spins; above, annealed Gibbs chains run ``n_sweeps`` sweeps and
    then read after each of 10 further sweeps, unless the estimator sets
    ``n_sampling_chains`` itself). The penalty is left
    out (the efficiency of the method, not of the penalty); with
    ``penalty="l1"`` the couplings the fit set to zero are held at zero in
    both (the comparison is for the selected graph), and the parameters of
    spins that are constant in ``X`` are left out (``excluded``).

    Parameters
    ----------
    estimator : PseudoLikelihoodIsing
        Fitted.
    X : array-like of shape (n_samples, n_features)
        Data, normally the training data, encoded as for ``fit``.
    n_model_samples : int or None, default=None
        Model samples for the Fisher information above 16 spins; None is
        ``max(10000, 20 k)`` for ``k`` compared parameters.
    random_state : int, RandomState instance or None, default=None
        Seeds those samples.
    warn_above : float or None, default=10.0
        Emit an :class:`~skebm.exceptions.EfficiencyWarning` when the
        variance ratio exceeds this (the largest ratio when ``reliable``, the
        mean ratio otherwise); None never warns.

    Returns
    -------
    diagnostic : EfficiencyDiagnostic
        Both covariances and their ratios; parameters named ``h[i]`` and
        ``J[i,j]``.

    Raises
    ------
    ValueError
        For another estimator.

    See Also
    --------
    score_matching_efficiency : The same for score matching.

    Notes
    -----
    Pseudo-likelihood is to the Glauber (single-spin Gibbs) dynamics what
    score matching is to Langevin dynamics: its loss of efficiency against
    maximum likelihood is bounded through the approximate tensorization of
    entropy, which holds while the dynamics mixes fast, and it grows as
    strong couplings make the model nearly bimodal [1]_. At zero coupling
    the pseudo-likelihood is the likelihood and the ratios are 1.

    References
    ----------
    .. [1] F. Koehler, A. Heckett and A. Risteski, "Statistical efficiency
       of score matching: the view from isoperimetry", ICLR 2023
       (arXiv:2210.00726).

    Examples
    --------
    >>> import numpy as np
    >>> from skebm import PseudoLikelihoodIsing
    >>> from skebm.metrics import pseudo_likelihood_efficiency
    >>> X = np.random.RandomState(0).choice([-1.0, 1.0], size=(3000, 4))
    >>> est = PseudoLikelihoodIsing(alpha=0.0).fit(X)
    >>> diagnostic = pseudo_likelihood_efficiency(est, X)
    >>> len(diagnostic.parameter_names)  # 4 fields, 6 couplings
    10
    >>> bool(0.8 < diagnostic.variance_ratio < 1.3)  # independent spins: PL = ML
    True
    """
    from ._ising import PseudoLikelihoodIsing

    check_is_fitted(estimator)
    if not isinstance(estimator, PseudoLikelihoodIsing):
        raise ValueError(
            "pseudo_likelihood_efficiency takes a fitted PseudoLikelihoodIsing, "
            f"got {type(estimator).__name__}."
        )
    spins = torch.as_tensor(
        estimator._validate_X(X, reset=False), dtype=torch.float64
    )
    h = torch.as_tensor(estimator.fields_, dtype=torch.float64)
    J = torch.as_tensor(estimator.couplings_, dtype=torch.float64)
    n, d = spins.shape
    rows, cols = np.triu_indices(d, 1)
    names = [f"h[{i}]" for i in range(d)]
    names += [f"J[{i},{j}]" for i, j in zip(rows, cols, strict=True)]
    keep = _compared_ising_parameters(estimator, spins, rows, cols)
    hessian, gradient_covariance = ising_pseudo_likelihood_sandwich(spins, h, J)
    fisher, ml_method, n_used = _ising_fisher(
        estimator, h, J, keep.size, n_model_samples, random_state
    )
    theta = np.concatenate([estimator.fields_, estimator.couplings_[rows, cols]])
    diagnostic = _efficiency_diagnostic(
        "pseudo_likelihood", names, theta, hessian.numpy(),
        gradient_covariance.numpy(), fisher.numpy(), n, ml_method, n_used,
        keep=keep,
    )
    _warn_if_inefficient(diagnostic, warn_above, _PSEUDO_LIKELIHOOD_ADVICE)
    return diagnostic


_PSEUDO_LIKELIHOOD_ADVICE = (
    "The gap grows with the strength of the couplings, as the model "
    "approaches a mixture of ordered states that single-spin updates "
    "cross rarely. What helps: more data, or a penalty (alpha, or "
    "penalty='l1' for a sparse graph) that trades variance for bias."
)


def _compared_ising_parameters(estimator, spins, rows, cols):
    """Indices of the parameters ``(h, J[rows, cols])`` compared: all but
    those of spins constant in ``spins`` and, for an L1 fit, the couplings
    it set to zero."""
    d = spins.shape[1]
    constant = to_numpy(spins.min(0).values == spins.max(0).values)
    free = np.concatenate([~constant, ~constant[rows] & ~constant[cols]])
    if estimator.penalty == "l1":
        free[d:] &= estimator.couplings_[rows, cols] != 0
    keep = np.flatnonzero(free)
    if not keep.size:
        raise ValueError("Every spin is constant in X: no parameter to compare.")
    return keep


def _ising_fisher(estimator, h, J, n_compared, n_model_samples, random_state):
    """``(fisher, ml_method, n_model_samples)``: the Fisher information of the
    Ising model ``(h, J)``, summed over the states up to
    ``_MAX_ENUMERATED_SPINS`` spins, else from ``estimator``'s samples
    (``n_model_samples`` is None unless sampled)."""
    d = h.shape[0]
    n_used = None
    if d <= _MAX_ENUMERATED_SPINS:
        fisher = ising_fisher_enumerate(h, J)
        ml_method = "exact"
    else:
        n_used = _check_n_model_samples(n_model_samples, n_compared)
        sampler = estimator
        if d > _MAX_EXACT_DRAW_SPINS and estimator.n_sampling_chains is None:
            # Annealed chains, each read after _SWEEPS_PER_CHAIN sweeps
            # (sample's persistent mode): a tenth of the annealing of one
            # chain per sample (measured 9.5 s against 140 s for 13320
            # samples of a 36-spin lattice on a loaded machine).
            sampler = copy.deepcopy(estimator)
            sampler.n_sampling_chains = max(
                estimator.n_ais_chains, -(-n_used // _SWEEPS_PER_CHAIN)
            )
        draws = sampler.sample(n_used, random_state=random_state)
        s = torch.as_tensor(np.where(draws > 0, 1.0, -1.0), dtype=torch.float64)
        fisher = weighted_covariance(ising_statistics(s))
        ml_method = "sampling"
    return fisher, ml_method, n_used
