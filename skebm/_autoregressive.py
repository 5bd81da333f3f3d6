"""Autoregressive score matching (layer A): a product of corrected conditionals,
fitted by composite score matching, normalized by 1-D quadrature, sampled
ancestrally."""

import copy
import math
import numbers
import warnings
from functools import partial

import numpy as np
import torch
from sklearn.mixture._base import BaseMixture
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from ._continuous import CORRECTION_BOUND, _BaseDomainDensity
from ._mixture_base import mixture_to_torch, select_base
from ._torch_utils import (
    draw_seed,
    make_generator,
    numpy_dtype_for,
    resolve_device,
    to_numpy,
)
from .base_densities import GaussianMixtureBase
from .domains import Box
from .energies import (
    AutoregressiveCorrectedEnergy,
    BoundedConditionals,
    MaskedAutoregressiveEnergy,
)
from .exceptions import LogPartitionWarning
from .objectives.composite_score_matching import composite_score_matching_loss
from .partition import PartitionEstimate

# base="gmm" tries full covariances only: a full mixture's conditionals regress
# each coordinate on the previous ones (means linear in the context), which the
# correction builds on; a diagonal one's ignore the context but through the
# weights. Measured (3 splits): wine 13-d -15.05 -> -14.90, breast_cancer 30-d
# -6.24 -> -6.10, macrodata 12-d 4.2 -> 9.3; diabetes and the 2-4-d sets equal.
_COVARIANCE_TYPES = ("full",)
# Units of each coordinate's head in the "made" network.
_HEAD_SIZE = 32
# Quadrature panels (8 Gauss-Legendre nodes each, per mixture component) of the
# validation log-likelihood that chooses the epochs: its error (measured below
# 1e-5 nats) is far below the differences between epochs.
_MONITOR_PANELS = 4
# Panels tried for the fitted model, coarsest first: the first whose log p
# changes by less than the tolerance when the panels are quadrupled is kept.
_PANEL_CHOICES = (4, 8, 16, 32)
_QUADRATURE_TOL = 1e-6
# log p above this error (nats per row) is worth a warning.
_QUADRATURE_WARN = 1e-3
# Draws from the base added to the training rows on which the quadrature
# error is measured (where the model has its mass).
_N_ERROR_DRAWS = 256
# Rows of a user module's output checked for the autoregressive structure.
_N_STRUCTURE_CHECKS = 16


def _model_base(mixture, order):
    """The fitted mixture as a :class:`GaussianMixtureBase` in the model's order."""
    base = mixture_to_torch(mixture)
    index = torch.as_tensor(order)
    covariances = base.cholesky @ base.cholesky.transpose(1, 2)
    return GaussianMixtureBase(
        torch.exp(base.log_weights),
        base.means[:, index],
        covariances[:, index][:, :, index],
    )


class _ExactLikelihoodMonitor:
    """``correction -> (validation log-likelihoods, 0)``: exact up to quadrature.

    ``model`` holds the correction being trained (the same module), so its
    log-likelihood follows the training.
    """

    def __init__(self, model, X_val, *, device, dtype):
        self.model = model
        self.x = torch.as_tensor(X_val, device=device, dtype=dtype)

    def __call__(self, correction):
        return self.model.log_prob(self.x), 0.0


class AutoregressiveScoreMatchingDensity(_BaseDomainDensity):
    """Autoregressive density estimation by composite score matching.

    The density is a product of one-dimensional conditionals, each the
    conditional of a fitted Gaussian mixture (the ``base``) corrected by a
    learned energy:

    ``log p(x) = sum_i [log q(x_i | x_<i) - g_i(x_i; x_<i) - log Z_i(x_<i)]``.

    All ``d`` corrections ``g_i`` come from one masked autoregressive network
    (:class:`~skebm.energies.MaskedAutoregressiveEnergy`) in one forward pass,
    trained by composite score matching: each conditional's one-dimensional
    score matching objective in its own variable, at the cost of two backward
    passes whatever the dimension. Each ``Z_i(x_<i)`` is an integral over one
    variable, computed for every row by Gauss-Legendre quadrature on nodes
    placed by the base's conditional, so :meth:`score_samples` is exact (up to
    a quadrature error reported in ``log_partition_std_``) in any dimension,
    with no annealed importance sampling, and :meth:`sample` draws exactly,
    one coordinate after another, with no Markov chain.

    Parameters
    ----------
    energy : "made", torch.nn.Module or None, default=None
        The correction. ``"made"`` (also for None): a masked autoregressive
        network with ``hidden_layer_sizes``, a head of 32 units per coordinate
        and a zero output layer, so that the untrained model is the base. A
        module must have ``conditional_energies(context, own) -> (n,
        n_features)`` whose column ``i`` reads ``context`` through
        ``context[:, :i]`` and ``own`` through ``own[:, i]`` only (checked at
        fit), in the model's ``order``, twice differentiable in ``own``; it is
        deep-copied, never trained in place.
    base : {"gmm", "gaussian"}, GaussianMixture or BayesianGaussianMixture, \
            default="gmm"
        The base density ``q`` whose conditionals are corrected.
        ``"gmm"``: a :class:`~sklearn.mixture.GaussianMixture` whose number of
        components and covariance type are chosen by held-out log-likelihood
        on the training data; ``"gaussian"``: the maximum-likelihood Gaussian;
        a mixture instance: cloned and fitted. A base is required: its
        conditionals place the quadrature nodes and give every conditional
        Gaussian tails.
    order : {"natural", "reversed", "random"} or array-like of int, \
            default="natural"
        The order of the coordinates in the chain rule: the features' order,
        its reverse, a random permutation drawn from ``random_state``, or a
        permutation of ``range(n_features)``. Different orders give different
        models; compare them by held-out ``score`` (e.g. in
        :class:`~sklearn.model_selection.GridSearchCV`).
    hidden_layer_sizes : tuple of int, default=(64, 64)
        Hidden layer widths of the ``"made"`` network. A layer narrower than
        ``n_features - 1`` lets a coordinate see only part of its context.
    activation : {"silu", "softplus", "tanh", "sigmoid", "gelu"}, default="silu"
        Smooth activation of the ``"made"`` network.
    alpha : float, default=1e-4
        L2 penalty: the loss minimized is ``J + alpha / (2 n) ||params||^2``.
    batch_size : int, default=256
        Minibatch size (clipped to the number of training samples).
    learning_rate_init : float, default=1e-2
        Adam's learning rate.
    max_iter : int, default=100
        Maximum number of epochs.
    tol : float, default=1e-4
        Training stops when the monitored quantity (the lower confidence
        bound of the validation log-likelihood's gain over the base when
        ``early_stopping``, else the training loss) has not improved by
        ``tol`` for ``n_iter_no_change`` consecutive epochs.
    n_iter_no_change : int, default=20
        Patience, in epochs.
    early_stopping : bool, default=True
        Choose the epoch by held-out log-likelihood (exact, by quadrature),
        the base itself (epoch 0) a candidate: one split of
        ``validation_fraction`` of the rows, or cross-fitting over 5 folds
        when that would hold fewer than 100 rows.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping``.
    warm_start : bool, default=False
        Continue from the previous fit's correction, base and order.
    device : str, default="cpu"
        Torch device for fitting and scoring: ``"cpu"``, ``"cuda"``,
        ``"cuda:1"`` or ``"auto"``. The fitted model always lives on the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds the base, the initialization, the batch order and a random
        ``order``; fits with the same seed are identical on the CPU. Global
        RNGs are not touched.
    verbose : bool, default=False
        Print the loss every epoch.
    domain : None, "nonnegative", tuple (lower, upper) or Box, default=None
        Support of the density, a product of intervals: None is all of R^d;
        ``"nonnegative"`` the orthant ``x >= 0``; ``(lower, upper)`` or a
        :class:`~skebm.domains.Box` a box (``-inf`` / ``inf`` allowed per
        coordinate). Each conditional lives on its coordinate's interval: the
        objective is generalized score matching there, the quadrature and
        the samples stay inside. Other domains (a ball, a polytope) are a
        ValueError: their conditionals are not intervals known in advance.
    boundary_weight_cap : float or None, default=None
        The cap ``C`` of the boundary weight ``h_i = min(x_i - lower_i,
        upper_i - x_i, C)`` on a domain (see :class:`ScoreMatchingDensity`).

    Attributes
    ----------
    energy_ : AutoregressiveCorrectedEnergy
        The fitted model (on the CPU); ``energy_(X)`` is ``-log p(X)``,
        normalized.
    base_ : GaussianMixture or BayesianGaussianMixture
        The fitted base density, in the features' order.
    order_ : ndarray of shape (n_features,)
        The coordinates' order in the chain rule.
    log_partition_ : float
        0.0: each conditional is normalized, row by row, by its own
        ``log Z_i(x_<i)`` inside :meth:`score_samples`, so the model
        integrates to one and there is no global constant left.
    log_partition_std_ : float
        The quadrature error: the largest change of ``log p(x)`` (a sum of
        ``n_features`` per-row ``log Z_i``) when the quadrature's nodes are
        quadrupled, over up to 1000 training rows and 256 draws from the base.
    log_partition_ess_ : float
        ``inf`` (no sampling is involved).
    log_partition_method_ : str
        ``"quadrature"``.
    loss_curve_ : list of float
        Composite score matching loss per epoch.
    validation_loss_curve_ : None
        Epochs are chosen by log-likelihood, not by a validation loss.
    validation_scores_ : list of float or None
        Validation log-likelihood before training (index 0, the base) and
        after each epoch (with cross-fitting: over all folds).
    best_validation_score_ : float or None
        Its value at the chosen epoch.
    best_loss_ : float
        Best monitored quantity.
    n_iter_ : int
        Epochs run.
    domain_ : Box or None
        The resolved domain (None: all of R^d).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    ScoreMatchingDensity : Exact score matching of the joint energy.
    SlicedScoreMatchingDensity : Score matching with random projections.
    EnergyDiscrepancyDensity : Energy discrepancy, for multimodal data.
    sklearn.neighbors.KernelDensity : Kernel density estimation.
    sklearn.mixture.GaussianMixture : Gaussian mixture density.
    sklearn.neural_network.BernoulliRBM : Restricted Boltzmann machine.

    Notes
    -----
    With ``E_i = -log q(x_i | x_<i) + g_i`` the energy of conditional ``i``,
    composite score matching [1]_ minimizes

    .. math::
        J(\\theta) = \\mathbb{E}_{x \\sim p_{data}} \\sum_{i=1}^d \\Big[
        \\tfrac12 \\big(\\partial_{x_i} E_i\\big)^2
        - \\partial_{x_i}^2 E_i \\Big],

    the sum of the conditionals' one-dimensional Fisher divergences, which
    needs no ``Z_i``. The network is evaluated at two copies of ``x``, one read
    by coordinate ``i`` through ``x_<i`` and one through ``x_i`` only, so that
    two backward passes give every ``∂E_i/∂x_i`` and ``∂²E_i/∂x_i²``. On a box,
    each term becomes the generalized objective of a density on an interval,
    ``½ h_i (∂_i E_i)² - h_i ∂_i² E_i - (∂_i h_i) ∂_i E_i`` [2]_.

    The correction is bounded, ``g_i = 4 tanh(f_i / 4)``: each conditional
    stays within ``exp(±4)`` of the base's conditional, a 1-D Gaussian mixture
    (:meth:`~skebm.base_densities.GaussianMixtureBase.conditionals`), so
    ``Z_i(x_<i) = ∫ q(t | x_<i) e^{-g_i(t)} dt`` is a smooth, Gaussian-tailed
    integral: for each mixture component, Gauss-Legendre panels over its
    standardized range (clipped to the coordinate's interval). Scoring costs
    ``n_features x n_components x nodes`` evaluations of the network's head
    per row; sampling runs the network once per coordinate.

    References
    ----------
    .. [1] C. Meng, L. Yu, Y. Song, J. Song and S. Ermon, "Autoregressive
       score matching", NeurIPS 2020.
    .. [2] S. Yu, M. Drton and A. Shojaie, "Generalized score matching for
       non-negative data", Journal of Machine Learning Research 20, 2019.
    .. [3] M. Germain, K. Gregor, I. Murray and H. Larochelle, "MADE: masked
       autoencoder for distribution estimation", ICML 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm import AutoregressiveScoreMatchingDensity
    >>> X = np.random.RandomState(0).normal(size=(300, 3))
    >>> est = AutoregressiveScoreMatchingDensity(
    ...     hidden_layer_sizes=(16,), max_iter=5, random_state=0).fit(X)
    >>> est.score_samples(X[:3]).shape
    (3,)
    >>> est.log_partition_, est.log_partition_std_ < 1e-6
    (0.0, True)
    >>> est.sample(4, random_state=0).shape
    (4, 3)
    """

    _energy_names = ("made",)

    _parameter_constraints: dict = {
        **{
            key: value
            for key, value in _BaseDomainDensity._parameter_constraints.items()
            if key
            not in {
                "log_partition_method",
                "n_ais_chains",
                "n_ais_steps",
                "n_sampling_steps",
                "sampling_init",
            }
        },
        "energy": [StrOptions({"made"}), torch.nn.Module, None],
        "base": [StrOptions({"gmm", "gaussian"}), BaseMixture],
        "order": [StrOptions({"natural", "reversed", "random"}), "array-like"],
    }

    def __init__(
        self,
        *,
        energy=None,
        base="gmm",
        order="natural",
        hidden_layer_sizes=(64, 64),
        activation="silu",
        alpha=1e-4,
        batch_size=256,
        learning_rate_init=1e-2,
        max_iter=100,
        tol=1e-4,
        n_iter_no_change=20,
        early_stopping=True,
        validation_fraction=0.1,
        warm_start=False,
        device="cpu",
        random_state=None,
        verbose=False,
        domain=None,
        boundary_weight_cap=None,
    ):
        self.energy = energy
        self.base = base
        self.order = order
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.warm_start = warm_start
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.domain = domain
        self.boundary_weight_cap = boundary_weight_cap

    # ------------------------------------------------------------ the model
    def _objective(self, domain=None):
        """Composite score matching, generalized on ``domain`` (model order)."""
        weight = None
        if domain is not None:
            weight = partial(domain.boundary_weight, cap=self.boundary_weight_cap)
        return partial(composite_score_matching_loss, boundary_weight=weight)

    def _resolve_order(self, n_features, seed):
        order = self.order
        if isinstance(order, str):
            if order == "natural":
                return np.arange(n_features)
            if order == "reversed":
                return np.arange(n_features)[::-1].copy()
            return np.random.default_rng(seed).permutation(n_features)
        array = np.asarray(order)
        if (
            array.shape != (n_features,)
            or not np.issubdtype(array.dtype, np.integer)
            or not np.array_equal(np.sort(array), np.arange(n_features))
        ):
            raise ValueError(
                f"order must be 'natural', 'reversed', 'random' or a permutation of "
                f"range(n_features) = range({n_features}); got {order!r}."
            )
        return array.astype(np.int64)

    def _intervals(self, domain, n_features):
        """Each coordinate's interval (data order), or None for all of R^d."""
        if domain is None:
            return None, None
        if not isinstance(domain, Box):
            raise ValueError(
                f"{type(self).__name__} needs a domain whose coordinates each range "
                f"over an interval (a Box, the orthant); got {domain!r}, whose "
                "conditionals are not intervals known in advance. Use "
                "ScoreMatchingDensity or SlicedScoreMatchingDensity for it."
            )
        return domain.bounds(n_features, dtype=torch.float64)

    def _build_correction(self, n_features, *, seed):
        """The bounded correction: the "made" network or the user's module."""
        spec = "made" if self.energy is None else self.energy
        if isinstance(spec, torch.nn.Module):
            if not callable(getattr(spec, "conditional_energies", None)):
                raise ValueError(
                    f"energy={type(spec).__name__}(...) has no conditional_energies"
                    "(context, own) method; an autoregressive correction must give "
                    "all n_features conditional energies (see "
                    "skebm.energies.MaskedAutoregressiveEnergy)."
                )
            return BoundedConditionals(copy.deepcopy(spec), CORRECTION_BOUND)
        return MaskedAutoregressiveEnergy(
            n_features,
            self._hidden_layer_sizes(),
            self.activation,
            head_size=_HEAD_SIZE,
            generator=make_generator(seed, "cpu"),
            zero_output=True,
            output_bound=CORRECTION_BOUND,
        )

    @staticmethod
    def _check_structure(correction, X, *, device, dtype):
        """A user module's output has shape (n, d) and the autoregressive structure."""
        n, d = min(len(X), 4), X.shape[1]
        x = torch.as_tensor(X[:n], device=device, dtype=dtype)
        context = x + 0.1 * torch.arange(1, d + 1, device=device, dtype=dtype)
        context = context.requires_grad_(True)
        own = (x - 0.2).requires_grad_(True)
        out = correction.conditional_energies(context, own)
        if not isinstance(out, torch.Tensor) or out.shape != (n, d):
            shape = getattr(out, "shape", type(out).__name__)
            raise ValueError(
                "energy.conditional_energies(context, own) must return a tensor of "
                f"shape (n_samples, n_features) = {(n, d)}; got {tuple(shape)}."
            )
        rows = np.unique(np.linspace(0, d - 1, min(d, _N_STRUCTURE_CHECKS)).round())
        for i in rows.astype(int):
            grads = torch.autograd.grad(
                out[:, i].sum(),
                (context, own),
                retain_graph=True,
                allow_unused=True,
                materialize_grads=True,
            )
            leaks = grads[0][:, i:].abs().sum() + grads[1][:, :i].abs().sum()
            leaks = leaks + grads[1][:, i + 1 :].abs().sum()
            if float(leaks) > 0:
                raise ValueError(
                    f"energy.conditional_energies is not autoregressive: its column "
                    f"{i} depends on context[:, {i}:] or on own[:, j] with j != {i}. "
                    "Column i may read context[:, :i] and own[:, i] only."
                )

    # ------------------------------------------------------------------- fit
    def _fit_energy(self, X, domain, *, seed_init, seed_train, device, dtype, task):
        self._check_scale_for_training(X)
        n_samples, d = X.shape
        lower, upper = self._intervals(domain, d)
        previous = self._previous_fit(d)
        if previous is not None:
            base_fitted, correction, order = previous
            mixture = None
        else:
            order = self._resolve_order(d, seed_init)
            base_fitted = correction = None
        folds = self._validation_folds(n_samples, seed_train)
        if previous is None:
            base_task = task.subtask("base density")
            mixture = select_base(
                self.base,
                X,
                seed=seed_init,
                covariance_types=_COVARIANCE_TYPES,
                kernel=False,
            )
            base_task.end()
        X_model = np.ascontiguousarray(X[:, order])
        model_domain = None
        if domain is not None:
            model_domain = Box(to_numpy(lower[order]), to_numpy(upper[order]))
        # Trained in float32 as the other continuous estimators (twice as fast
        # on the CPU at the same held-out likelihood); the base's derivatives
        # in the objective stay float64; evaluated in X's dtype.
        train_dtype = torch.float32

        def assemble(base_fitted, correction, to_dtype, n_panels):
            model = AutoregressiveCorrectedEnergy(
                _model_base(base_fitted, order),
                correction,
                order=order,
                lower=lower,
                upper=upper,
                n_panels=n_panels,
            )
            return model.to(device=device, dtype=to_dtype)

        def fit_correction(rows, val_rows, base_fitted, correction, **train):
            """Train a correction of ``base_fitted``'s conditionals on ``X[rows]``."""
            cross_fit = train.get("task_name") == "cross-fit"
            if correction is None:
                correction = self._build_correction(d, seed=seed_init)
            correction = correction.to(device=device, dtype=train_dtype)
            if isinstance(correction, BoundedConditionals):
                self._check_structure(
                    correction, X_model, device=device, dtype=train_dtype
                )
            base64 = _model_base(base_fitted, order).to(device)
            objective = partial(self._objective(model_domain), base=base64)
            model = assemble(base_fitted, correction, train_dtype, _MONITOR_PANELS)
            score_X = None
            if val_rows is not None:
                score_X = X[val_rows]
                monitor = _ExactLikelihoodMonitor(
                    model, score_X, device=device, dtype=train_dtype
                )
                # A cross-fitting fold only records its curve (the folds'
                # pooled curves choose the epochs, with the confidence bound):
                # it stops when its mean gain stalls, not its noisier bound.
                margin = 0.0 if cross_fit else self._MONITOR_MARGIN
                train.update(monitor=monitor, monitor_margin=margin)

            def snapshot(correction, result):
                # The model at an epoch, for callbacks that score it.
                return {
                    "energy_": copy.deepcopy(model).to("cpu", dtype),
                    "log_partition_": 0.0,
                    "loss_curve_": list(result.loss_curve),
                    "validation_scores_": list(result.validation_score_curve),
                    "order_": order,
                    "_fit_dtype": dtype,
                    "domain_": domain,
                }

            result = self._train(
                correction,
                objective,
                X_model[rows],
                seed=seed_train,
                device=device,
                dtype=train_dtype,
                task=task,
                score_X=score_X,
                snapshot=snapshot,
                **train,
            )
            return correction, result

        base_fitted, correction, result = self._fit_on_splits(
            X, folds, mixture, base_fitted, correction, fit_correction
        )
        energy = assemble(base_fitted, correction, dtype, _PANEL_CHOICES[0])
        fitted = {**self._validation_attributes(base_fitted, result), "order_": order}
        return energy, result, fitted

    def _previous_fit(self, n_features):
        """``(base_, correction, order_)`` to continue from under ``warm_start``."""
        if not self._continues():
            return None
        if self.n_features_in_ != n_features:
            return None
        return self.base_, copy.deepcopy(self.energy_.correction), self.order_

    # ----------------------------------------------------------------- log Z
    def _estimate_log_partition(self, energy, summary, domain, *, seed, device, dtype):
        """Choose the quadrature's panels; its error is ``log_partition_std_``.

        The model is normalized row by row, so log Z is 0. The error of
        ``log p`` is measured on training rows and draws from the base, as the
        change when the panels are quadrupled; the coarsest panels within
        ``_QUADRATURE_TOL`` (looser in float32, whose rounding it would not
        beat) are kept, or the finest tried.
        """
        generator = make_generator(seed, device)
        rows = torch.as_tensor(summary["init_points"], device=device, dtype=dtype)
        with torch.no_grad():
            draws = energy.base.sample(_N_ERROR_DRAWS, generator=generator)
            draws = draws[:, energy.inverse_order]
            if domain is not None:
                draws = draws[domain.contains(draws)]
            x = torch.cat([rows, draws])[:, energy.order]
            tol = max(_QUADRATURE_TOL, 100 * torch.finfo(dtype).eps * energy.n_features)
            sums = {}

            def log_p_offset(n_panels):  # the per-row sum of the log Z_i
                if n_panels not in sums:
                    sums[n_panels] = energy.log_normalizers(x, n_panels=n_panels).sum(1)
                return sums[n_panels]

            for n_panels in _PANEL_CHOICES:
                error = (log_p_offset(n_panels) - log_p_offset(4 * n_panels)).abs()
                error = float(error.max())
                if error <= tol:
                    break
        energy.n_panels = n_panels
        if error > _QUADRATURE_WARN:
            warnings.warn(
                LogPartitionWarning(
                    f"{type(self).__name__}: the quadrature of the conditionals' "
                    f"normalizers changes log p by up to {error:.3g} nats when its "
                    f"nodes are quadrupled ({n_panels} panels per component). The "
                    "correction varies on scales finer than its base; try a larger "
                    "alpha or fewer epochs.",
                    ess=math.inf,
                    pareto_k=math.nan,
                ),
                stacklevel=4,
            )
        return PartitionEstimate(0.0, error), "quadrature"

    # -------------------------------------------------------------- scoring
    def unnormalized_score_samples(self, X):
        """Log-density of each sample: the same as :meth:`score_samples`.

        The model has no global normalizing constant (``log_partition_`` is
        0): each conditional is normalized by its own ``log Z_i(x_<i)``, which
        depends on the row, so the normalized log-density is the only
        meaningful one. It is exact up to ``log_partition_std_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
        """
        return super().unnormalized_score_samples(X)

    # -------------------------------------------------------------- sampling
    def sample(self, n_samples=1, random_state=None):
        """Draw exact samples from the fitted density.

        Ancestral sampling: each coordinate, in ``order_``, is drawn from its
        conditional given those drawn before it, by inverting its cumulative
        distribution function on the quadrature's panels (a panel chosen by
        its mass, then a point by the density interpolated linearly on 64
        cells of it). No Markov chain, no burn-in.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples.
        random_state : int, RandomState instance or None, default=None
            Seeds the draw.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(
                f"n_samples must be a positive integer, got {n_samples!r}."
            )
        rng = check_random_state(random_state)
        device = resolve_device(self.device, strict=False)
        generator = make_generator(draw_seed(rng), device)
        energy = copy.deepcopy(self.energy_).to(device)
        with torch.no_grad():
            x = energy.sample(int(n_samples), generator=generator)
        return to_numpy(x).astype(numpy_dtype_for(self._fit_dtype), copy=False)
