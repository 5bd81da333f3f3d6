"""Warnings of skebm's own (as :mod:`sklearn.exceptions`).

Warnings are filtered by class, so each kind of problem has one::

    import warnings
    from skebm.exceptions import LogPartitionWarning
    warnings.simplefilter("error", LogPartitionWarning)   # fail instead of warn
"""

__all__ = [
    "CorrectionDiscardedWarning",
    "DataResolutionWarning",
    "EfficiencyWarning",
    "InconsistentVersionWarning",
    "LogPartitionWarning",
    "ModelFileError",
]


class LogPartitionWarning(UserWarning):
    """An estimate of log Z whose error bar cannot be trusted.

    Raised when a sampling-based estimate of the log-partition function
    (importance sampling, annealed importance sampling) still has too few
    effective samples, or importance weights too heavy-tailed for a standard
    error to mean anything, after its budget was grown to the limit. The
    message names the effective sample size and the Pareto tail index of the
    weights and what to change; ``log_partition_`` (and so ``score``) may then
    be off by more than ``log_partition_std_`` says.

    Parameters
    ----------
    message : str
        What went wrong and what to do.
    ess : float, default=nan
        Effective sample size of the importance weights.
    pareto_k : float, default=nan
        Estimated Pareto tail index of the weights (above 0.7 the variance of
        the weights is effectively infinite).

    Attributes
    ----------
    ess : float
        Effective sample size of the importance weights.
    pareto_k : float
        Estimated Pareto tail index of the weights.

    Examples
    --------
    >>> import warnings
    >>> from skebm.exceptions import LogPartitionWarning
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn(LogPartitionWarning("too few effective samples", ess=3.0))
    >>> caught[0].category.__name__, caught[0].message.ess
    ('LogPartitionWarning', 3.0)
    """

    def __init__(self, message, *, ess=float("nan"), pareto_k=float("nan")):
        super().__init__(message)
        self.ess = ess
        self.pareto_k = pareto_k


class EfficiencyWarning(UserWarning):
    """A fit far less statistically efficient than maximum likelihood.

    Emitted by :func:`skebm.metrics.score_matching_efficiency` and
    :func:`skebm.metrics.pseudo_likelihood_efficiency` when the variance of
    the estimate is more than ``warn_above`` (10 by default) times that of
    maximum likelihood from the same data: the method then needs that many
    times the data for the same precision. The message says what helps.

    Parameters
    ----------
    message : str
        What was measured and what to do.
    ratio : float, default=nan
        The variance ratio that exceeded the threshold.

    Attributes
    ----------
    ratio : float
        The variance ratio that exceeded the threshold.

    Examples
    --------
    >>> import warnings
    >>> from skebm.exceptions import EfficiencyWarning
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn(EfficiencyWarning("25 times the variance", ratio=25.0))
    >>> caught[0].category.__name__, caught[0].message.ratio
    ('EfficiencyWarning', 25.0)
    """

    def __init__(self, message, *, ratio=float("nan")):
        super().__init__(message)
        self.ratio = ratio


class InconsistentVersionWarning(UserWarning):
    """A fitted skebm estimator was unpickled with another skebm release.

    Parameters
    ----------
    estimator_name : str
        Class name of the unpickled estimator.
    original_version : str
        The release that pickled the estimator.
    current_version : str
        The release that loads it.

    Attributes
    ----------
    estimator_name : str
    original_version : str
    current_version : str

    Examples
    --------
    >>> from skebm.exceptions import InconsistentVersionWarning
    >>> w = InconsistentVersionWarning(estimator_name="ScoreMatchingDensity",
    ...                                original_version="0.1.0",
    ...                                current_version="0.2.0")
    >>> str(w).split(".")[0]
    'Trying to unpickle estimator ScoreMatchingDensity from skebm version 0'
    """

    def __init__(self, *, estimator_name, original_version, current_version):
        self.estimator_name = estimator_name
        self.original_version = original_version
        self.current_version = current_version

    def __str__(self):
        return (
            f"Trying to unpickle estimator {self.estimator_name} from skebm version "
            f"{self.original_version} when using version {self.current_version}. "
            "This might lead to breaking code or invalid results. Use at your own "
            "risk; refit the estimator with this version if you can."
        )


class DataResolutionWarning(UserWarning):
    """A column of the training data has many repeated (rounded) values.

    A continuous density fitted to rounded data can put a spike on each
    repeated value: its likelihood grows without bound there, and a held-out
    score that shares the rounding rewards it. The base density of the
    continuous estimators floors its standard deviations at each column's
    resolution (the rounding step over ``sqrt(12)``) and warns, naming the
    columns. Add uniform noise of one rounding step to such columns
    (dequantize) to compare continuous models on them fairly.

    Examples
    --------
    >>> from skebm.exceptions import DataResolutionWarning
    >>> issubclass(DataResolutionWarning, UserWarning)
    True
    """


class CorrectionDiscardedWarning(UserWarning):
    """The trained energy added nothing over the base density.

    The continuous estimators keep the training epoch with the best
    held-out log-likelihood, the base density alone (epoch 0) included.
    When no epoch beats the base by a clear margin, the correction is
    discarded: the fitted model is its base (``n_epochs_kept_ == 0``,
    ``log_partition_ == 0``), and the network's parameters had no effect on
    the fit -- a grid search over them compares copies of one model.

    Examples
    --------
    >>> import warnings
    >>> from skebm.exceptions import CorrectionDiscardedWarning
    >>> with warnings.catch_warnings():   # silence it for one block
    ...     warnings.simplefilter("ignore", CorrectionDiscardedWarning)
    """


class ModelFileError(ValueError):
    """A model file that is not a skebm model, or is damaged or inconsistent.

    Raised by :func:`skebm.io.load` for a file that is not a ``skops`` zip
    archive (a pickle is refused: it could run code), whose content cannot be
    read, or whose arrays and tensors do not fit together (a truncated or
    crafted file). Nothing is returned half-built.

    Examples
    --------
    >>> from skebm.exceptions import ModelFileError
    >>> from skebm.io import loads
    >>> try:
    ...     loads(b"not a model")
    ... except ModelFileError as exc:
    ...     print(str(exc).split(":")[0])
    not a skops model file (a zip archive with schema.json)
    """
