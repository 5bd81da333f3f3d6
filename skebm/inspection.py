"""Pictures of a fitted density, in scikit-learn's Display convention.

``DensityDisplay`` draws a 2-D density as contours with the model's samples
next to the data; ``MarginalsDisplay`` draws, for data of any dimension, each
coordinate's histogram of the data against the model's samples. Both follow
``sklearn.inspection.DecisionBoundaryDisplay``: ``from_estimator`` computes
and draws, ``plot(ax=...)`` redraws, and the matplotlib artists are kept as
attributes ending in ``_``. Both take a fitted density estimator or a fitted
``Pipeline`` ending in one, and work in the data's space: a pipeline's
samples are mapped back through its transformers
(:func:`skebm.utils.sample_pipeline`) and its log-density includes the
transformers' Jacobian.

matplotlib is optional (``pip install "skebm[plot]"``) and imported only
when a display draws.
"""

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from .utils import sample_pipeline

__all__ = ["DensityDisplay", "MarginalsDisplay"]

_DATA_STYLE = dict(s=4, c="0.35", alpha=0.5, linewidths=0, label="data")
_SAMPLES_STYLE = dict(s=4, c="tab:orange", alpha=0.6, linewidths=0, label="samples")


def _pyplot(caller):
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            f"{caller} requires matplotlib, an optional dependency of skebm: "
            'pip install "skebm[plot]" (or pip install matplotlib).'
        ) from error
    return plt


def _name(estimator):
    final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    return type(final).__name__


def _feature_names(X, feature_names, n_features):
    if feature_names is None:
        columns = getattr(X, "columns", None)
        feature_names = (
            [str(c) for c in columns] if columns is not None else None
        ) or [f"x{j}" for j in range(n_features)]
    if len(feature_names) != n_features:
        raise ValueError(
            f"feature_names has {len(feature_names)} names for {n_features} features."
        )
    return list(feature_names)


def _data_space_log_density(estimator, X):
    """log-density of ``estimator`` at the rows of ``X``, in the data's space.

    For a pipeline, ``log p(x) = log q(T(x)) + log |det dT/dx|``: the final
    step's density ``q`` of the transformed point plus the transformers'
    log-Jacobian, by finite differences (exact for affine scalers)."""
    if not isinstance(estimator, Pipeline):
        return estimator.score_samples(X)
    transformers, final = estimator[:-1], estimator[-1]
    Z = transformers.transform(X)
    if Z.shape[1] != X.shape[1]:
        raise ValueError(
            f"The pipeline's transformers map {X.shape[1]} features to "
            f"{Z.shape[1]}: a density of the transformed data has no density in "
            "the data's space."
        )
    span = np.ptp(X, axis=0)
    steps = 1e-4 * np.where(span > 0, span, 1.0)
    jacobian = np.empty((len(X), Z.shape[1], X.shape[1]))
    for j, h in enumerate(steps):
        shifted = X.copy()
        shifted[:, j] += h
        jacobian[:, :, j] = (transformers.transform(shifted) - Z) / h
    log_det = np.linalg.slogdet(jacobian)[1]
    return final.score_samples(Z) + log_det


class DensityDisplay:
    """Contours of a fitted 2-D density with its samples next to the data.

    Build it with :meth:`from_estimator`; the constructor only stores what
    :meth:`plot` draws.

    Parameters
    ----------
    xx0 : ndarray of shape (grid_resolution, grid_resolution)
        First coordinate of the grid (as from ``np.meshgrid``).

    xx1 : ndarray of shape (grid_resolution, grid_resolution)
        Second coordinate of the grid.

    log_density : ndarray of shape (grid_resolution, grid_resolution)
        The model's log-density at the grid, in the data's space.

    X : ndarray of shape (n_samples, 2), default=None
        The data, drawn as grey points.

    samples : ndarray of shape (n_model_samples, 2), default=None
        The model's samples, drawn as orange points.

    feature_names : list of str, default=None
        Axis labels.

    estimator_name : str, default=None
        Title of the plot.

    Attributes
    ----------
    ax_ : matplotlib Axes
        The axes the display drew on.

    figure_ : matplotlib Figure
        The figure holding ``ax_``.

    contour_ : matplotlib QuadContourSet
        The filled density contours.

    data_ : matplotlib PathCollection or None
        The data's points.

    samples_ : matplotlib PathCollection or None
        The model's samples.

    See Also
    --------
    MarginalsDisplay : Each coordinate of data of any dimension.
    sklearn.inspection.DecisionBoundaryDisplay : The convention followed here.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skebm import ScoreMatchingDensity
    >>> from skebm.datasets import make_two_moons
    >>> from skebm.inspection import DensityDisplay
    >>> X = make_two_moons(500, random_state=0)
    >>> est = ScoreMatchingDensity(energy="quadratic").fit(X)
    >>> display = DensityDisplay.from_estimator(est, X, random_state=0)
    >>> display.samples_.get_offsets().shape
    (500, 2)
    """

    def __init__(
        self,
        *,
        xx0,
        xx1,
        log_density,
        X=None,
        samples=None,
        feature_names=None,
        estimator_name=None,
    ):
        self.xx0 = xx0
        self.xx1 = xx1
        self.log_density = log_density
        self.X = X
        self.samples = samples
        self.feature_names = feature_names
        self.estimator_name = estimator_name

    def plot(
        self, ax=None, *, levels=8, log_scale=False, contour_kw=None, scatter_kw=None
    ):
        """Draw the contours, the data and the samples.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.

        levels : int or array-like, default=8
            Contour levels, passed to ``contourf``.

        log_scale : bool, default=False
            Contour the log-density (shows the tails) instead of the density.

        contour_kw : dict, default=None
            Keyword arguments for ``ax.contourf``.

        scatter_kw : dict, default=None
            Keyword arguments for both ``ax.scatter`` calls (data and samples).

        Returns
        -------
        display : DensityDisplay
            The display, with its matplotlib objects set.
        """
        plt = _pyplot("DensityDisplay.plot")
        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 4), layout="constrained")
        response = self.log_density if log_scale else np.exp(self.log_density)
        if log_scale:  # the tails, down to 10 nats under the mode
            response = np.maximum(response, np.max(response) - 10.0)
        self.contour_ = ax.contourf(
            self.xx0,
            self.xx1,
            response,
            levels=levels,
            **{"cmap": "Blues", "alpha": 0.8, **(contour_kw or {})},
        )
        self.data_ = self.samples_ = None
        if self.X is not None:
            self.data_ = ax.scatter(
                self.X[:, 0], self.X[:, 1], **{**_DATA_STYLE, **(scatter_kw or {})}
            )
        if self.samples is not None:
            self.samples_ = ax.scatter(
                self.samples[:, 0],
                self.samples[:, 1],
                **{**_SAMPLES_STYLE, **(scatter_kw or {})},
            )
        if self.data_ is not None or self.samples_ is not None:
            ax.legend(loc="upper right", fontsize="small", markerscale=3)
        names = self.feature_names or ["x0", "x1"]
        ax.set(xlabel=names[0], ylabel=names[1])
        if self.estimator_name:
            ax.set_title(self.estimator_name, fontsize="medium")
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        *,
        grid_resolution=100,
        margin=0.1,
        n_samples=None,
        random_state=None,
        feature_names=None,
        ax=None,
        **kwargs,
    ):
        """Draw a fitted density of 2-D data: contours, samples and the data.

        Parameters
        ----------
        estimator : estimator or Pipeline
            A fitted density estimator of two features (``score_samples``,
            ``sample``), or a fitted ``Pipeline`` ending in one whose
            transformers keep two features and have ``inverse_transform``.

        X : array-like of shape (n_samples, 2)
            The data: sets the grid's extent and is drawn as points.

        grid_resolution : int, default=100
            Grid points along each axis.

        margin : float, default=0.1
            The grid extends past the data by this fraction of its range.

        n_samples : int, default=None
            Number of model samples to draw (``len(X)`` when None, at most
            2000); 0 draws none.

        random_state : int, RandomState instance or None, default=None
            Seed of the samples.

        feature_names : list of str, default=None
            Axis labels (a DataFrame's columns, or ``x0``, ``x1``).

        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.

        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : DensityDisplay
            The display, drawn.
        """
        _pyplot("DensityDisplay.from_estimator")
        check_is_fitted(estimator)
        names = _feature_names(X, feature_names, np.shape(X)[1])
        X = check_array(X)
        if X.shape[1] != 2:
            raise ValueError(
                f"DensityDisplay draws densities of 2 features; X has {X.shape[1]}. "
                "Use MarginalsDisplay to compare each coordinate."
            )
        low, high = X.min(axis=0), X.max(axis=0)
        pad = margin * (high - low)
        axes = [
            np.linspace(lo - p, hi + p, grid_resolution)
            for lo, hi, p in zip(low, high, pad, strict=True)
        ]
        xx0, xx1 = np.meshgrid(*axes)
        grid = np.c_[xx0.ravel(), xx1.ravel()]
        log_density = _data_space_log_density(estimator, grid).reshape(xx0.shape)
        if n_samples is None:
            n_samples = min(len(X), 2000)
        samples = (
            sample_pipeline(estimator, n_samples, random_state=random_state)
            if n_samples
            else None
        )
        display = cls(
            xx0=xx0,
            xx1=xx1,
            log_density=log_density,
            X=X,
            samples=samples,
            feature_names=names,
            estimator_name=_name(estimator),
        )
        return display.plot(ax=ax, **kwargs)


class MarginalsDisplay:
    """Each coordinate of the model's samples against a histogram of the data.

    For data of any dimension: one panel a feature, the data's histogram
    (grey) and the model samples' histogram (orange outline) on the same
    bins, as densities. Build it with :meth:`from_estimator`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The data, restricted to the features shown.

    samples : ndarray of shape (n_model_samples, n_features)
        The model's samples, restricted to the same features.

    feature_names : list of str, default=None
        Panel titles.

    estimator_name : str, default=None
        Figure title (when the display made the figure).

    Attributes
    ----------
    axes_ : ndarray of matplotlib Axes
        One axes a feature, in order.

    figure_ : matplotlib Figure
        The figure holding ``axes_``.

    bin_edges_ : list of ndarray
        The bins of each panel.

    See Also
    --------
    DensityDisplay : Contours of a 2-D density.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skebm import ScoreMatchingDensity
    >>> from skebm.inspection import MarginalsDisplay
    >>> X = np.random.RandomState(0).normal(size=(500, 3))
    >>> est = ScoreMatchingDensity(energy="quadratic").fit(X)
    >>> display = MarginalsDisplay.from_estimator(est, X, random_state=0)
    >>> display.axes_.shape
    (3,)
    """

    def __init__(self, *, X, samples, feature_names=None, estimator_name=None):
        self.X = X
        self.samples = samples
        self.feature_names = feature_names
        self.estimator_name = estimator_name

    def plot(self, ax=None, *, n_cols=4, bins=30, hist_kw=None):
        """Draw one panel a feature.

        Parameters
        ----------
        ax : matplotlib Axes or array-like of Axes, default=None
            Where to draw: None makes a figure; one Axes is divided into a
            grid of panels (as ``PartialDependenceDisplay`` does); an array
            gives one Axes a feature.

        n_cols : int, default=4
            Panels a row, when the display lays them out.

        bins : int, default=30
            Bins a panel, shared by data and samples.

        hist_kw : dict, default=None
            Keyword arguments for the samples' ``ax.hist``.

        Returns
        -------
        display : MarginalsDisplay
            The display, with its matplotlib objects set.
        """
        plt = _pyplot("MarginalsDisplay.plot")
        n_features = self.X.shape[1]
        n_cols = min(n_cols, n_features)
        n_rows = -(-n_features // n_cols)
        if ax is None:
            figure, grid = plt.subplots(
                n_rows,
                n_cols,
                figsize=(2.6 * n_cols, 2.2 * n_rows),
                squeeze=False,
                layout="constrained",
            )
            axes = grid.ravel()
            if self.estimator_name:
                figure.suptitle(self.estimator_name, fontsize="medium")
        elif hasattr(ax, "get_subplotspec"):  # one Axes: divide it
            figure = ax.figure
            ax.set_axis_off()
            spec = ax.get_subplotspec().subgridspec(n_rows, n_cols)
            axes = np.array(
                [
                    figure.add_subplot(spec[i // n_cols, i % n_cols])
                    for i in range(n_rows * n_cols)
                ]
            )
        else:
            axes = np.asarray(ax, dtype=object).ravel()
            if len(axes) != n_features:
                raise ValueError(
                    f"Expected ax to have {n_features} axes, got {len(axes)}."
                )
            figure = axes[0].figure
        names = self.feature_names or [f"x{j}" for j in range(n_features)]
        self.bin_edges_ = []
        for j, panel in enumerate(axes):
            if j >= n_features:
                panel.set_visible(False)
                continue
            both = np.concatenate([self.X[:, j], self.samples[:, j]])
            low, high = np.quantile(both, [0.001, 0.999])
            edges = np.histogram_bin_edges(both, bins=bins, range=(low, high))
            panel.hist(
                self.X[:, j], bins=edges, density=True, color="0.75", label="data"
            )
            style = dict(histtype="step", color="tab:orange", linewidth=1.5)
            panel.hist(
                self.samples[:, j],
                bins=edges,
                density=True,
                **{**style, "label": "samples", **(hist_kw or {})},
            )
            panel.set_title(names[j], fontsize="small")
            panel.tick_params(labelsize="x-small")
            panel.set_yticks([])
            self.bin_edges_.append(edges)
        axes[0].legend(fontsize="x-small")
        self.axes_ = axes[:n_features]
        self.figure_ = figure
        return self

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        *,
        features=None,
        n_samples=None,
        random_state=None,
        feature_names=None,
        ax=None,
        **kwargs,
    ):
        """Draw each coordinate of the model's samples against the data.

        Parameters
        ----------
        estimator : estimator or Pipeline
            A fitted density estimator (``sample``), or a fitted ``Pipeline``
            ending in one whose transformers have ``inverse_transform``.

        X : array-like of shape (n_samples, n_features)
            The data to compare with.

        features : list of int, default=None
            The features to show (all when None).

        n_samples : int, default=None
            Number of model samples (``len(X)`` when None, at least 2000).

        random_state : int, RandomState instance or None, default=None
            Seed of the samples.

        feature_names : list of str, default=None
            Names of all features (a DataFrame's columns, or ``x0``, ...).

        ax : matplotlib Axes or array-like of Axes, default=None
            See :meth:`plot`.

        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : MarginalsDisplay
            The display, drawn.
        """
        _pyplot("MarginalsDisplay.from_estimator")
        check_is_fitted(estimator)
        names = _feature_names(X, feature_names, np.shape(X)[1])
        X = check_array(X)
        features = list(range(X.shape[1])) if features is None else list(features)
        if n_samples is None:
            n_samples = max(len(X), 2000)
        samples = np.asarray(
            sample_pipeline(estimator, n_samples, random_state=random_state)
        )
        display = cls(
            X=X[:, features],
            samples=samples[:, features],
            feature_names=[names[j] for j in features],
            estimator_name=_name(estimator),
        )
        return display.plot(ax=ax, **kwargs)
