"""A scorer that compares density estimators of every kind.

scikit-learn's density estimators disagree on what ``score`` means:
``GaussianMixture.score`` and skebm's are the *mean* log-likelihood per
sample, ``KernelDensity.score`` is the *sum* over samples (so it grows with
the size of a validation fold), and ``BernoulliRBM.score_samples`` is a
random pseudo-likelihood. A ``GridSearchCV`` without ``scoring`` that mixes
them compares numbers of different kinds; :func:`mean_log_likelihood_scorer`
compares the same thing for all of them: the mean of ``score_samples``.
"""

import numpy as np

__all__ = [
    "mean_log_likelihood_scorer",
    "neg_training_loss_scorer",
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
