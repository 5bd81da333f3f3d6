"""Score matching estimators (layer A): exact and sliced, on R^d or a domain."""

import numbers
from functools import partial

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from ._continuous import _BaseDomainDensity
from ._torch_utils import as_tensor
from ._training import TrainingResult
from .energies import LinearInParametersEnergy, QuadraticEnergy
from .objectives.score_matching import (
    exact_score_matching_loss,
    solve_gaussian_generalized_score_matching,
    solve_gaussian_score_matching,
    solve_linear_score_matching,
)
from .objectives.sliced_score_matching import (
    PROJECTIONS,
    finite_difference_score_matching_loss,
    sliced_score_matching_loss,
)

# The closed form of a quadratic energy on a domain is a dense solve in
# d(d+1)/2 + d unknowns; above this many features the energy is trained instead.
_MAX_CLOSED_FORM_FEATURES = 100


# Radii, in units of the data's extent, along which a fitted linear-in-
# parameters energy must grow for exp(-E) to be integrable.
_TAIL_RADII = 2.0 ** np.arange(1, 8)
_N_TAIL_DIRECTIONS = 32


def _check_normalizable(energy, X, domain):
    """A ValueError when ``exp(-E)`` of the fitted energy is not integrable.

    Along rays from the data's mean (both directions of every axis and random
    ones, inside the domain), ``E`` must grow at least like ``(d + 1) log r``
    between 2 and 128 times the data's extent; otherwise the density does not
    decay fast enough to be integrable there. The message names the statistic
    whose term makes the energy fall along the worst ray. Decided numerically
    from the tails, which is exact for polynomial statistics.
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    center = X.mean(0)
    extent = max(float(np.abs(X - center).max()), 1e-12)
    rng = np.random.default_rng(0)
    random = rng.standard_normal((_N_TAIL_DIRECTIONS, d))
    directions = np.concatenate(
        [np.eye(d), -np.eye(d), random / np.linalg.norm(random, axis=1, keepdims=True)]
    )
    radii = extent * _TAIL_RADII
    points = center + radii[None, :, None] * directions[:, None, :]  # (m, r, d)
    flat = torch.as_tensor(points.reshape(-1, d), dtype=energy.theta.dtype)
    if domain is not None:
        inside = domain.contains(flat).reshape(len(directions), len(radii))
        keep = inside.all(1).numpy()
        directions, points = directions[keep], points[keep]
        if not len(directions):
            return  # bounded domain: a finite energy is integrable on it
        flat = torch.as_tensor(points.reshape(-1, d), dtype=energy.theta.dtype)
    with torch.no_grad():
        stats = energy.statistics(flat).reshape(len(directions), len(radii), -1)
        terms = (stats * energy.theta).double().numpy()  # (m, r, k)
    energies = terms.sum(-1)
    growth = energies[:, -1] - energies[:, 0]
    needed = (d + 1) * np.log(_TAIL_RADII[-1] / _TAIL_RADII[0])
    bad = np.flatnonzero(~(growth >= needed))
    if not bad.size:
        return
    worst = bad[np.argmin(growth[bad])]
    change = terms[worst, -1] - terms[worst, 0]
    culprit = int(np.argmin(change))
    theta = energy.theta.detach().double().numpy()
    raise ValueError(
        f"The fitted {type(energy).__name__} is not normalizable: exp(-E) is not "
        f"integrable, since along the direction {np.round(directions[worst], 3)} "
        f"from the data's mean the energy changes by {growth[worst]:.3g} between "
        f"{_TAIL_RADII[0]:.0f} and {_TAIL_RADII[-1]:.0f} times the data's extent "
        f"(it must grow without bound, at least like (d + 1) log r). The "
        f"coefficient theta[{culprit}] = {theta[culprit]:.4g} of statistic "
        f"{culprit} makes it fall there. Score matching does not see "
        "normalizability: use statistics whose leading term keeps a positive "
        "coefficient on this data (e.g. a quadratic term for heavy tails), a "
        "domain, or energy='mlp'."
    )


class ScoreMatchingDensity(_BaseDomainDensity):
    """Energy-based density estimation by Hyvärinen's exact score matching.

    Fits ``p(x) = exp(-E(x)) / Z`` by minimizing the score matching objective,
    which needs neither ``Z`` nor samples from the model. The trace of the
    Hessian is computed exactly, batched over samples, at the cost of one
    backward pass per feature: for many features prefer
    :class:`SlicedScoreMatchingDensity`. For ``energy="quadratic"`` and any
    :class:`~skebm.energies.LinearInParametersEnergy`, the objective is
    quadratic in the parameters and is solved in closed form, without
    iterations, on R^d and on a ``domain`` alike. ``log_partition_`` comes in
    closed form for a quadratic energy on R^d, by quadrature for
    ``n_features <= 2``, and by annealed importance sampling otherwise.

    Parameters
    ----------
    energy : {"mlp", "quadratic"}, torch.nn.Module or None, default=None
        The energy ``E``. ``"mlp"`` (the default, also for None) is a
        multilayer perceptron with a confining quadratic
        (:class:`~skebm.energies.MLPEnergy`); ``"quadratic"`` is a Gaussian
        with learned mean and precision. A module maps a tensor of shape
        ``(n, n_features)`` to ``(n,)``, twice differentiable; it is deep-copied,
        never trained in place.
    base : {"gmm", "gaussian"}, GaussianMixture, BayesianGaussianMixture or None, \
            default="gmm"
        The base density ``q`` that the energy corrects: the model is
        ``log p(x) = log q(x) - f(x) - log Z_f`` with ``f`` the ``"mlp"`` (or
        your module), whose output starts at zero, so that the untrained model
        is ``q``. ``"gmm"``: a :class:`~sklearn.mixture.GaussianMixture` whose
        number of components and covariance type are chosen by held-out
        log-likelihood on the training data; ``"gaussian"``: the
        maximum-likelihood Gaussian; a mixture instance: cloned and fitted;
        None: no base, ``energy`` is the whole energy. Epochs are chosen by
        held-out log-likelihood with the base itself a candidate, ``log Z_f``
        is estimated by importance sampling from ``q`` and :meth:`sample`
        resamples draws from ``q``. Ignored for ``energy="quadratic"`` and
        linear-in-parameters energies (complete models with closed forms).
    hidden_layer_sizes : tuple of int, default=(64, 64)
        Hidden layer widths of the ``"mlp"`` energy.
    activation : {"silu", "softplus", "tanh", "sigmoid", "gelu"}, default="silu"
        Smooth hidden activation of the ``"mlp"`` energy. The defaults were
        chosen by held-out likelihood on standardized toy densities (see
        ``benchmarks/bench_score_matching.py``).
    alpha : float, default=1e-4
        L2 penalty: the loss minimized is ``J + alpha / (2 n) ||params||^2``
        (``alpha / 2 ||params||^2`` on the summed loss). For linear-in-parameters
        energies it is the ridge of the closed-form solve.
    batch_size : int, default=256
        Minibatch size (clipped to the number of training samples).
    learning_rate_init : float, default=1e-2
        Adam's learning rate. The default suits a correction of the base
        density (a network whose output starts at zero has to leave a plateau
        first); with ``base=None`` a smaller one, such as ``2e-3``, is safer.
    max_iter : int, default=100
        Maximum number of epochs.
    tol : float, default=1e-4
        Training stops when the monitored loss (validation loss when
        ``early_stopping``) has not improved by ``tol`` for
        ``n_iter_no_change`` consecutive epochs.
    n_iter_no_change : int, default=20
        Patience, in epochs.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the data, monitor the objective on
        it and keep the parameters of the best epoch.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping``.
    warm_start : bool, default=False
        Continue from the previous fit's energy instead of a fresh one.
    log_partition_method : {"auto", "closed_form", "quadrature", \
            "importance_sampling", "ais"}, default="auto"
        How ``log_partition_`` is estimated. ``"auto"``: the closed form for a
        quadratic energy without a domain, quadrature for ``n_features <= 2``,
        importance sampling from the base density when there is one (annealed
        importance sampling from the base when its weights are unreliable),
        annealed importance sampling otherwise. On a domain, log Z integrates
        over the domain only.
    n_ais_chains : int, default=512
        Annealed importance sampling chains (standard error ~ 1/sqrt(chains)).
    n_ais_steps : int, default=300
        Annealing temperatures (one MALA step each); more reduce the bias.
    n_sampling_steps : int, default=100
        MALA steps run by :meth:`sample` for non-Gaussian energies, after
        the chains' starts (see ``sampling_init``). From a base (``"auto"``,
        ``"base"``), at most this many, and only on the draws the resampling
        repeated, until they are apart: a model whose correction was
        discarded is its base, drawn exactly with no step.
    sampling_init : {"auto", "base", "data", "noise"}, default="auto"
        Where :meth:`sample`'s MALA chains start. ``"base"``: draws from the
        base density resampled by their importance weights ``exp(-f)``, so
        that each mode carries the model's mass (sampling-importance-
        resampling); ``"auto"``: that, and without a base the same resampling
        from the Gaussian fitted to the data, widened 1.5 times; ``"data"``:
        training points, and ``"noise"``: draws from the data's Gaussian (short
        chains from these reproduce where they start, e.g. the data's mode
        masses, not the model's). Restricted to the domain, if any.
    device : str, default="cpu"
        Torch device for fitting and scoring: ``"cpu"``, ``"cuda"``,
        ``"cuda:1"`` or ``"auto"``. The fitted model always lives on the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds initialization, batch order, log Z estimation; fits with the
        same seed are identical on the CPU. Global RNGs are not touched.
    verbose : bool, default=False
        Print the loss every epoch.
    domain : None, "nonnegative", tuple (lower, upper) or Domain, default=None
        Support of the density. None is all of R^d; ``"nonnegative"`` the
        orthant ``x >= 0``; ``(lower, upper)`` a box (scalars or arrays, ``-inf``
        / ``inf`` allowed per coordinate); or a :class:`skebm.domains.Domain`
        (:class:`~skebm.domains.Ball`, :class:`~skebm.domains.Polytope`, or your
        own subclass). On a domain the objective is generalized score matching,
        with a boundary weight that vanishes on the boundary; training data
        outside it is a ValueError, :meth:`score_samples` is ``-inf`` outside,
        :meth:`sample` stays inside and log Z integrates over it.
    boundary_weight_cap : float or None, default=None
        The cap ``C`` of the boundary weight ``h = min(distance to the boundary,
        C)`` (per coordinate for boxes). None leaves it uncapped. A cap near
        the data's typical distance to the boundary weighs the interior less
        and can reduce the variance (Yu, Drton & Shojaie, 2019). Ignored
        without a domain.

    Attributes
    ----------
    energy_ : torch.nn.Module
        The fitted energy, on the CPU.
    location_ : ndarray of shape (n_features,)
        For ``energy="quadratic"``: the mean of the fitted Gaussian.
    precision_ : ndarray of shape (n_features, n_features)
        For ``energy="quadratic"``: its precision matrix.
    coef_ : ndarray of shape (n_statistics,)
        For a :class:`~skebm.energies.LinearInParametersEnergy`: the fitted
        ``theta``.
    log_partition_ : float
        Estimated log Z of ``exp(-energy_)``.
    log_partition_std_ : float
        Standard error of ``log_partition_`` (0 for a closed form; the
        discretization error estimate for quadrature).
    log_partition_ess_ : float
        Effective sample size of the importance weights behind a sampling
        estimate of log Z (``inf`` for exact methods). Below 100, or with
        heavy-tailed weights, a :class:`~skebm.exceptions.LogPartitionWarning`
        says that ``log_partition_std_`` cannot be trusted.
    log_partition_method_ : str
        The method that estimated it.
    loss_curve_ : list of float
        Training objective per epoch (the value at the solution for a closed
        form).
    validation_loss_curve_ : list of float or None
        Validation objective per epoch when ``early_stopping``.
    best_loss_ : float
        Best monitored loss.
    n_iter_ : int
        Epochs run (1 for a closed-form solve).
    domain_ : Domain or None
        The resolved domain the density lives on (None: all of R^d).
    base_ : GaussianMixture or BayesianGaussianMixture or None
        The fitted base density the energy corrects (a kernel density is a
        ``GaussianMixture`` with a component a row and ``kernel_bandwidth_``).
    validation_scores_ : list of float or None
        Held-out log-likelihood before training (index 0, the base) and after
        each epoch, when the epochs are selected.
    best_validation_score_ : float or None
        Its value at the epoch kept.
    n_epochs_kept_ : int or None
        Epochs of the correction kept; 0 when none beat the base (the model
        is then its base, ``log_partition_ == 0``, and ``fit`` raises a
        :class:`~skebm.exceptions.CorrectionDiscardedWarning`); None when
        every epoch is kept (``early_stopping=False``) or there is no base.
    correction_gain_ : float or None
        Held-out log-likelihood gain of the epoch kept over the base, in nats
        per sample.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    SlicedScoreMatchingDensity : Score matching with random projections.
    EnergyDiscrepancyDensity : Energy discrepancy, for multimodal data.
    sklearn.neighbors.KernelDensity : Kernel density estimation.
    sklearn.mixture.GaussianMixture : Gaussian mixture density.
    sklearn.neural_network.BernoulliRBM : Restricted Boltzmann machine.

    Notes
    -----
    With the model score :math:`-\\nabla_x E`, score matching minimizes

    .. math::
        J(\\theta) = \\mathbb{E}_{x \\sim p_{data}} \\left[
        \\tfrac12 \\|\\nabla_x E_\\theta(x)\\|^2 - \\operatorname{tr}
        \\nabla_x^2 E_\\theta(x) \\right],

    which equals the Fisher divergence to the data up to a constant.
    For :math:`E = \\tfrac12 (x-m)^T P (x-m)` the minimizer is the sample mean
    and the inverse of the (biased) sample covariance: the maximum likelihood
    estimate.

    On a domain the integration by parts behind :math:`J` leaves a boundary
    term, and plain score matching is biased. Generalized score matching
    [2]_ [3]_ weighs coordinate :math:`j` by :math:`h_j(x) \\ge 0`, zero on the
    boundary:

    .. math::
        J_h(\\theta) = \\mathbb{E}\\Big[\\sum_j \\tfrac12 h_j (\\partial_j E)^2
        - h_j \\partial_j^2 E - (\\partial_j h_j)\\, \\partial_j E\\Big],

    with :math:`h_j = \\min(x_j - l_j, u_j - x_j, C)` on a box and
    :math:`h_j = \\min(\\operatorname{dist}(x, \\partial D), C)` on other
    domains. For ``energy="quadratic"``, :math:`E = \\tfrac12 x^T P x - \\eta^T x`
    is linear in :math:`(P, \\eta)`, so :math:`J_h` is quadratic and is solved
    exactly (a linear system in the symmetric :math:`P` and :math:`\\eta`; a
    :math:`P` that is not positive definite is a ValueError).

    References
    ----------
    .. [1] A. Hyvärinen, "Estimation of non-normalized statistical models by
       score matching", Journal of Machine Learning Research 6, 2005.
    .. [2] S. Yu, M. Drton and A. Shojaie, "Generalized score matching for
       non-negative data", Journal of Machine Learning Research 20, 2019.
    .. [3] S. Liu, T. Kanamori and D. J. Williams, "Estimating density models
       with truncation boundaries using score matching", Journal of Machine
       Learning Research 23, 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm import ScoreMatchingDensity
    >>> X = np.random.RandomState(0).normal(size=(500, 2))
    >>> est = ScoreMatchingDensity(energy="quadratic").fit(X)
    >>> est.score_samples(X[:3]).shape
    (3,)
    >>> round(est.score(X), 2)
    -2.81
    >>> est.sample(4, random_state=0).shape
    (4, 2)

    On the non-negative orthant:

    >>> X_pos = np.abs(X)
    >>> est = ScoreMatchingDensity(energy="quadratic", domain="nonnegative")
    >>> est.fit(X_pos).score_samples([[-1.0, 1.0]])
    array([-inf])
    >>> bool((est.sample(100, random_state=0) >= 0).all())
    True
    """

    def __init__(
        self,
        *,
        energy=None,
        base="gmm",
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
        log_partition_method="auto",
        n_ais_chains=512,
        n_ais_steps=300,
        n_sampling_steps=100,
        sampling_init="auto",
        device="cpu",
        random_state=None,
        verbose=False,
        domain=None,
        boundary_weight_cap=None,
    ):
        super().__init__(
            energy=energy,
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate_init=learning_rate_init,
            max_iter=max_iter,
            tol=tol,
            n_iter_no_change=n_iter_no_change,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            warm_start=warm_start,
            log_partition_method=log_partition_method,
            n_ais_chains=n_ais_chains,
            n_ais_steps=n_ais_steps,
            n_sampling_steps=n_sampling_steps,
            sampling_init=sampling_init,
            device=device,
            random_state=random_state,
            verbose=verbose,
        )
        self.base = base
        self.domain = domain
        self.boundary_weight_cap = boundary_weight_cap

    def _objective(self):
        return partial(
            exact_score_matching_loss, boundary_weight=self._boundary_weight()
        )

    def _closed_form_fit(self, energy, X, *, device, dtype):
        boundary_weight = self._boundary_weight()
        if isinstance(energy, QuadraticEnergy):
            x = as_tensor(X, device=device, dtype=torch.float64)
            if boundary_weight is None:
                mean, precision, value = self._solve_gaussian(x)
            elif X.shape[1] <= _MAX_CLOSED_FORM_FEATURES:
                mean, precision, value = self._solve_gaussian_on_domain(
                    x, boundary_weight
                )
            else:
                return None
            self._check_precision_fits_dtype(precision, dtype)
            energy.set_gaussian(mean.to(dtype), precision.to(dtype))
            return TrainingResult(
                loss_curve=[value], n_iter=1, converged=True, best_loss=value
            )
        if isinstance(energy, LinearInParametersEnergy):
            x = as_tensor(X, device=device, dtype=dtype)
            theta, value = solve_linear_score_matching(
                energy.statistics, x, alpha=self.alpha, boundary_weight=boundary_weight
            )
            if not bool(torch.isfinite(theta).all()):
                raise ValueError(
                    "The closed-form score matching solve produced non-finite "
                    "parameters; the statistics may be linearly dependent on this "
                    "data. Increase alpha."
                )
            with torch.no_grad():
                energy.theta.copy_(theta)
            _check_normalizable(energy, X, self._domain())
            return TrainingResult(
                loss_curve=[value], n_iter=1, converged=True, best_loss=value
            )
        return None

    @staticmethod
    def _check_precision_fits_dtype(precision, dtype):
        # The solve runs in float64; a precision that is positive definite
        # there can lose it when stored in float32 (found by hypothesis: two
        # float32 samples of scale 1e8 on a box). Condition numbers beyond what
        # the fitted dtype resolves make no Gaussian in that dtype.
        eigvals = torch.linalg.eigvalsh(precision)
        resolution = 100 * torch.finfo(dtype).eps
        if float(eigvals.min()) <= resolution * float(eigvals.abs().max()):
            raise ValueError(
                "The score matching solution of the quadratic energy has a "
                "precision matrix that is numerically singular in "
                f"{str(dtype).removeprefix('torch.')} (eigenvalues from "
                f"{float(eigvals.min()):.3g} to {float(eigvals.max()):.3g}): the "
                "features are (nearly) collinear or too few samples were given. "
                "Collect more samples, remove redundant features, or standardize "
                "the data, e.g. make_pipeline(StandardScaler(), estimator)."
            )

    @staticmethod
    def _solve_gaussian(x):
        mean, precision, covariance = solve_gaussian_score_matching(x)
        eigvals = torch.linalg.eigvalsh(covariance)
        singular = float(eigvals.min()) <= 1e-10 * float(eigvals.max())
        if singular or not bool(torch.isfinite(precision).all()):
            raise ValueError(
                "The sample covariance is singular (collinear features or "
                "fewer samples than features), so the Gaussian score matching "
                "solution does not exist. Remove redundant features (e.g. "
                "with PCA) or collect more samples."
            )
        # J at the optimum: 1/2 tr(P) - tr(P) = -1/2 tr(P).
        return mean, precision, -0.5 * float(torch.trace(precision))

    def _solve_gaussian_on_domain(self, x, boundary_weight):
        h, dh = boundary_weight(x)
        try:
            mean, precision, value = solve_gaussian_generalized_score_matching(x, h, dh)
        except RuntimeError as exc:  # torch.linalg: a singular system
            raise ValueError(
                "The generalized score matching system for the quadratic energy "
                "is singular: too few samples away from the boundary of the "
                "domain, or collinear features."
            ) from exc
        eigvals = torch.linalg.eigvalsh(precision)
        if not bool(torch.isfinite(eigvals).all()) or float(eigvals.min()) <= 0:
            raise ValueError(
                "The generalized score matching solution of the quadratic energy "
                f"on {self._domain()!r} has a precision matrix that is not positive "
                f"definite (smallest eigenvalue {float(eigvals.min()):.3g}), so it "
                "is not a Gaussian. The data may be too few or not Gaussian-like "
                "on this domain; collect more samples, change "
                "boundary_weight_cap, or use energy='mlp'."
            )
        return mean, precision, value


class SlicedScoreMatchingDensity(_BaseDomainDensity):
    """Energy-based density estimation by sliced score matching.

    Score matching with the trace of the Hessian replaced by random
    projections: each training step costs ``n_projections`` Hessian-vector
    products (``method="sliced"`` or ``"sliced_vr"``) or ``2 n_projections + 1``
    energy evaluations (``"finite_difference"``) instead of one backward pass
    per feature, so it scales to many features. Every method is an unbiased
    estimate of the exact score matching objective of
    :class:`ScoreMatchingDensity`, on R^d and on a ``domain`` alike; it is
    always minimized by stochastic gradients (even for ``energy="quadratic"``,
    whose closed form is :class:`ScoreMatchingDensity`'s).

    Parameters
    ----------
    method : {"sliced", "sliced_vr", "finite_difference"}, default="sliced_vr"
        ``"sliced"``: the projected objective
        ``1/2 (v^T ∇E)^2 - v^T ∇²E v``; ``"sliced_vr"``: its variance-reduced
        form with ``1/2 ||∇E||^2`` computed exactly; ``"finite_difference"``:
        the sliced objective from energy evaluations at ``x`` and
        ``x ± eps v`` only (no double backward), all in one batched call.
    n_projections : int, default=1
        Random projections per sample and step, evaluated in one batch.
    projection : {"gaussian", "rademacher"}, default="rademacher"
        Distribution of the projections; both have ``E[v v^T] = I``.
        Rademacher (±1) projections estimate the trace with lower variance.
    fd_epsilon : float or None, default=None
        Step length of ``"finite_difference"``, relative to the batch's
        root-mean-square feature standard deviation; the step is taken along
        the unit projection direction, so it does not grow with the dimension.
        None uses ``eps ** (1/6)`` of the floating-point type (about ``7e-2``
        in float32, ``2.5e-3`` in float64), which balances the truncation and
        the rounding error of the second difference for network energies.
    energy : {"mlp", "quadratic"}, torch.nn.Module or None, default=None
        The energy ``E``. ``"mlp"`` (the default, also for None) is a
        multilayer perceptron with a confining quadratic
        (:class:`~skebm.energies.MLPEnergy`); ``"quadratic"`` is a Gaussian
        with learned mean and precision. A module maps a tensor of shape
        ``(n, n_features)`` to ``(n,)``, twice differentiable; it is deep-copied,
        never trained in place.
    base : {"gmm", "gaussian"}, GaussianMixture, BayesianGaussianMixture or None, \
            default="gmm"
        The base density ``q`` that the energy corrects: the model is
        ``log p(x) = log q(x) - f(x) - log Z_f`` with ``f`` the ``"mlp"`` (or
        your module), whose output starts at zero, so that the untrained model
        is ``q``. ``"gmm"``: a :class:`~sklearn.mixture.GaussianMixture` whose
        number of components and covariance type are chosen by held-out
        log-likelihood on the training data; ``"gaussian"``: the
        maximum-likelihood Gaussian; a mixture instance: cloned and fitted;
        None: no base, ``energy`` is the whole energy. Epochs are chosen by
        held-out log-likelihood with the base itself a candidate, ``log Z_f``
        is estimated by importance sampling from ``q`` and :meth:`sample`
        resamples draws from ``q``. Ignored for ``energy="quadratic"`` and
        linear-in-parameters energies (complete models with closed forms).
    hidden_layer_sizes : tuple of int, default=(64, 64)
        Hidden layer widths of the ``"mlp"`` energy.
    activation : {"silu", "softplus", "tanh", "sigmoid", "gelu"}, default="silu"
        Smooth hidden activation of the ``"mlp"`` energy.
    alpha : float, default=1e-4
        L2 penalty: the loss minimized is ``J + alpha / (2 n) ||params||^2``
        (``alpha / 2 ||params||^2`` on the summed loss). For linear-in-parameters
        energies it is the ridge of the closed-form solve.
    batch_size : int, default=256
        Minibatch size (clipped to the number of training samples).
    learning_rate_init : float, default=1e-2
        Adam's learning rate. The default suits a correction of the base
        density (a network whose output starts at zero has to leave a plateau
        first); with ``base=None`` a smaller one, such as ``2e-3``, is safer.
    max_iter : int, default=100
        Maximum number of epochs.
    tol : float, default=1e-4
        Training stops when the monitored loss (validation loss when
        ``early_stopping``) has not improved by ``tol`` for
        ``n_iter_no_change`` consecutive epochs.
    n_iter_no_change : int, default=20
        Patience, in epochs.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the data, monitor the objective on
        it and keep the parameters of the best epoch.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping``.
    warm_start : bool, default=False
        Continue from the previous fit's energy instead of a fresh one.
    log_partition_method : {"auto", "closed_form", "quadrature", \
            "importance_sampling", "ais"}, default="auto"
        How ``log_partition_`` is estimated. ``"auto"``: the closed form for a
        quadratic energy without a domain, quadrature for ``n_features <= 2``,
        importance sampling from the base density when there is one (annealed
        importance sampling from the base when its weights are unreliable),
        annealed importance sampling otherwise. On a domain, log Z integrates
        over the domain only.
    n_ais_chains : int, default=512
        Annealed importance sampling chains (standard error ~ 1/sqrt(chains)).
    n_ais_steps : int, default=300
        Annealing temperatures (one MALA step each); more reduce the bias.
    n_sampling_steps : int, default=100
        MALA steps run by :meth:`sample` for non-Gaussian energies, after
        the chains' starts (see ``sampling_init``). From a base (``"auto"``,
        ``"base"``), at most this many, and only on the draws the resampling
        repeated, until they are apart: a model whose correction was
        discarded is its base, drawn exactly with no step.
    sampling_init : {"auto", "base", "data", "noise"}, default="auto"
        Where :meth:`sample`'s MALA chains start. ``"base"``: draws from the
        base density resampled by their importance weights ``exp(-f)``, so
        that each mode carries the model's mass (sampling-importance-
        resampling); ``"auto"``: that, and without a base the same resampling
        from the Gaussian fitted to the data, widened 1.5 times; ``"data"``:
        training points, and ``"noise"``: draws from the data's Gaussian (short
        chains from these reproduce where they start, e.g. the data's mode
        masses, not the model's). Restricted to the domain, if any.
    device : str, default="cpu"
        Torch device for fitting and scoring: ``"cpu"``, ``"cuda"``,
        ``"cuda:1"`` or ``"auto"``. The fitted model always lives on the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds initialization, batch order, log Z estimation; fits with the
        same seed are identical on the CPU. Global RNGs are not touched.
    verbose : bool, default=False
        Print the loss every epoch.
    domain : None, "nonnegative", tuple (lower, upper) or Domain, default=None
        Support of the density. None is all of R^d; ``"nonnegative"`` the
        orthant ``x >= 0``; ``(lower, upper)`` a box (scalars or arrays, ``-inf``
        / ``inf`` allowed per coordinate); or a :class:`skebm.domains.Domain`
        (:class:`~skebm.domains.Ball`, :class:`~skebm.domains.Polytope`, or your
        own subclass). On a domain the objective is generalized score matching,
        with a boundary weight that vanishes on the boundary; training data
        outside it is a ValueError, :meth:`score_samples` is ``-inf`` outside,
        :meth:`sample` stays inside and log Z integrates over it.
    boundary_weight_cap : float or None, default=None
        The cap ``C`` of the boundary weight ``h = min(distance to the boundary,
        C)`` (per coordinate for boxes). None leaves it uncapped. A cap near
        the data's typical distance to the boundary weighs the interior less
        and can reduce the variance (Yu, Drton & Shojaie, 2019). Ignored
        without a domain.

    Attributes
    ----------
    energy_ : torch.nn.Module
        The fitted energy, on the CPU.
    location_ : ndarray of shape (n_features,)
        For ``energy="quadratic"``: the mean of the fitted Gaussian.
    precision_ : ndarray of shape (n_features, n_features)
        For ``energy="quadratic"``: its precision matrix.
    log_partition_ : float
        Estimated log Z of ``exp(-energy_)``.
    log_partition_std_ : float
        Standard error of ``log_partition_`` (0 for a closed form; the
        discretization error estimate for quadrature).
    log_partition_ess_ : float
        Effective sample size of the importance weights behind a sampling
        estimate of log Z (``inf`` for exact methods). Below 100, or with
        heavy-tailed weights, a :class:`~skebm.exceptions.LogPartitionWarning`
        says that ``log_partition_std_`` cannot be trusted.
    log_partition_method_ : str
        The method that estimated it.
    loss_curve_ : list of float
        Training objective per epoch (the value at the solution for a closed
        form).
    validation_loss_curve_ : list of float or None
        Validation objective per epoch when ``early_stopping``.
    best_loss_ : float
        Best monitored loss.
    n_iter_ : int
        Epochs run (1 for a closed-form solve).
    domain_ : Domain or None
        The resolved domain the density lives on (None: all of R^d).
    base_ : GaussianMixture or BayesianGaussianMixture or None
        The fitted base density the energy corrects (a kernel density is a
        ``GaussianMixture`` with a component a row and ``kernel_bandwidth_``).
    validation_scores_ : list of float or None
        Held-out log-likelihood before training (index 0, the base) and after
        each epoch, when the epochs are selected.
    best_validation_score_ : float or None
        Its value at the epoch kept.
    n_epochs_kept_ : int or None
        Epochs of the correction kept; 0 when none beat the base (the model
        is then its base, ``log_partition_ == 0``, and ``fit`` raises a
        :class:`~skebm.exceptions.CorrectionDiscardedWarning`); None when
        every epoch is kept (``early_stopping=False``) or there is no base.
    correction_gain_ : float or None
        Held-out log-likelihood gain of the epoch kept over the base, in nats
        per sample.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    ScoreMatchingDensity : Exact score matching; closed form for Gaussians.
    EnergyDiscrepancyDensity : Energy discrepancy, for multimodal data.
    sklearn.neighbors.KernelDensity : Kernel density estimation.
    sklearn.mixture.GaussianMixture : Gaussian mixture density.
    sklearn.neural_network.BernoulliRBM : Restricted Boltzmann machine.

    Notes
    -----
    With projections :math:`v`, :math:`\\mathbb{E}[v v^T] = I` [1]_:

    .. math::
        J_{sliced} = \\mathbb{E}_{x, v}\\big[\\tfrac12 (v^T \\nabla E)^2
        - v^T \\nabla^2 E\\, v\\big], \\qquad
        J_{vr} = \\mathbb{E}_{x, v}\\big[\\tfrac12 \\|\\nabla E\\|^2
        - v^T \\nabla^2 E\\, v\\big],

    both equal to the exact objective in expectation. The finite-difference
    form [2]_ uses :math:`v^T \\nabla^2 E\\, v \\approx (E(x+\\epsilon v) - 2E(x)
    + E(x-\\epsilon v)) / \\epsilon^2` and :math:`v^T \\nabla E \\approx
    (E(x+\\epsilon v) - E(x-\\epsilon v)) / (2\\epsilon)`.

    On a domain with weights :math:`h_j` (see :class:`ScoreMatchingDensity`),
    the projections become :math:`u = \\sqrt{h} \\odot v`, so that
    :math:`\\mathbb{E}[u^T \\nabla^2 E\\, u] = \\sum_j h_j \\partial_j^2 E` and
    :math:`\\mathbb{E}[(u^T \\nabla E)^2] = \\sum_j h_j (\\partial_j E)^2`;
    the term :math:`-\\sum_j \\partial_j h_j\\, \\partial_j E` is added exactly
    (by a central difference along :math:`\\partial h` for
    ``"finite_difference"``). Each method is then unbiased for the generalized
    objective.

    References
    ----------
    .. [1] Y. Song, S. Garg, J. Shi and S. Ermon, "Sliced score matching: a
       scalable approach to density and score estimation", UAI 2019.
    .. [2] T. Pang, K. Xu, C. Li, Y. Song, S. Ermon and J. Zhu, "Efficient
       learning of generative models via finite-difference score matching",
       NeurIPS 2020.
    .. [3] S. Yu, M. Drton and A. Shojaie, "Generalized score matching for
       non-negative data", Journal of Machine Learning Research 20, 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm import SlicedScoreMatchingDensity
    >>> X = np.random.RandomState(0).normal(size=(500, 2))
    >>> est = SlicedScoreMatchingDensity(energy="quadratic", max_iter=20,
    ...                                  random_state=0).fit(X)
    >>> est.score_samples(X[:3]).shape
    (3,)
    >>> est.sample(4, random_state=0).shape
    (4, 2)
    """

    _parameter_constraints: dict = {
        **_BaseDomainDensity._parameter_constraints,
        "method": [StrOptions({"sliced", "sliced_vr", "finite_difference"})],
        "n_projections": [Interval(numbers.Integral, 1, None, closed="left")],
        "projection": [StrOptions(set(PROJECTIONS))],
        "fd_epsilon": [Interval(numbers.Real, 0, None, closed="neither"), None],
    }

    def __init__(
        self,
        *,
        method="sliced_vr",
        n_projections=1,
        projection="rademacher",
        fd_epsilon=None,
        energy=None,
        base="gmm",
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
        log_partition_method="auto",
        n_ais_chains=512,
        n_ais_steps=300,
        n_sampling_steps=100,
        sampling_init="auto",
        device="cpu",
        random_state=None,
        verbose=False,
        domain=None,
        boundary_weight_cap=None,
    ):
        super().__init__(
            energy=energy,
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate_init=learning_rate_init,
            max_iter=max_iter,
            tol=tol,
            n_iter_no_change=n_iter_no_change,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            warm_start=warm_start,
            log_partition_method=log_partition_method,
            n_ais_chains=n_ais_chains,
            n_ais_steps=n_ais_steps,
            n_sampling_steps=n_sampling_steps,
            sampling_init=sampling_init,
            device=device,
            random_state=random_state,
            verbose=verbose,
        )
        self.base = base
        self.method = method
        self.n_projections = n_projections
        self.projection = projection
        self.fd_epsilon = fd_epsilon
        self.domain = domain
        self.boundary_weight_cap = boundary_weight_cap

    def _objective(self):
        common = dict(
            n_projections=self.n_projections,
            projection=self.projection,
            boundary_weight=self._boundary_weight(),
        )
        if self.method == "finite_difference":
            return partial(
                finite_difference_score_matching_loss,
                epsilon=self.fd_epsilon,
                **common,
            )
        return partial(
            sliced_score_matching_loss,
            variance_reduced=self.method == "sliced_vr",
            **common,
        )
