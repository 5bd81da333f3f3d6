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

__all__ = ["mean_log_likelihood_scorer"]


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
