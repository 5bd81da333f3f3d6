"""Helpers for fitted density estimators and the pipelines that end in them."""

import inspect

from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

__all__ = ["sample_pipeline"]


def sample_pipeline(estimator, n_samples=1, *, random_state=None):
    """Draw samples in the data's space from a density at the end of a pipeline.

    A ``Pipeline(StandardScaler(), density)`` models the *transformed* data:
    ``pipe[-1].sample(n)`` returns standardized points. This draws from the
    final step and maps the draws back through every transformer's
    ``inverse_transform``, last step first; it is the one-liner
    ``pipe[:-1].inverse_transform(pipe[-1].sample(n))`` with the checks a
    user would otherwise write. A density estimator that is not a pipeline is
    sampled as it is.

    Parameters
    ----------
    estimator : Pipeline or estimator
        A fitted density estimator with a ``sample`` method (any skebm
        estimator, ``KernelDensity``, ``GaussianMixture``), or a fitted
        ``Pipeline`` ending in one whose other steps have
        ``inverse_transform`` (``"passthrough"`` steps are skipped).

    n_samples : int, default=1
        Number of samples to draw.

    random_state : int, RandomState instance or None, default=None
        Passed to the final step's ``sample`` where it takes one
        (``GaussianMixture.sample`` uses the mixture's own ``random_state``).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        Samples in the space of the data the pipeline was fitted on.

    Raises
    ------
    AttributeError
        If the final step cannot sample or a transformer has no
        ``inverse_transform``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skebm import ScoreMatchingDensity
    >>> from skebm.utils import sample_pipeline
    >>> X = np.random.RandomState(0).normal(loc=5.0, scale=10.0, size=(2000, 2))
    >>> pipe = make_pipeline(StandardScaler(), ScoreMatchingDensity(energy="quadratic"))
    >>> S = sample_pipeline(pipe.fit(X), 5000, random_state=0)
    >>> S.mean(axis=0).round(0), S.std(axis=0).round(0)   # like the data's
    (array([5., 5.]), array([10., 10.]))
    """
    if isinstance(estimator, Pipeline):
        final, transformers = estimator[-1], estimator[:-1]
    else:
        final, transformers = estimator, None
    if not hasattr(final, "sample"):
        raise AttributeError(
            f"{type(final).__name__} has no sample method: the last step must be "
            "a density estimator (a skebm estimator, KernelDensity, GaussianMixture)."
        )
    check_is_fitted(final)
    if "random_state" in inspect.signature(final.sample).parameters:
        samples = final.sample(n_samples, random_state=random_state)
    else:
        samples = final.sample(n_samples)
    if isinstance(samples, tuple):  # GaussianMixture.sample returns (X, labels)
        samples = samples[0]
    if transformers is None:
        return samples
    for name, step in reversed(transformers.steps):
        if step is None or step == "passthrough":
            continue
        if not hasattr(step, "inverse_transform"):
            raise AttributeError(
                f"Step {name!r} ({type(step).__name__}) has no inverse_transform: "
                "samples of the final step cannot be mapped back to the data's "
                "space. Sample the final step instead (pipe[-1].sample)."
            )
        samples = step.inverse_transform(samples)
    return samples
