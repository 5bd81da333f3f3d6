"""Energy discrepancy estimator (layer A)."""

import numbers
from functools import partial

from sklearn.utils._param_validation import Interval

from ._continuous import _BaseContinuousDensity
from .objectives.energy_discrepancy import energy_discrepancy_loss


class EnergyDiscrepancyDensity(_BaseContinuousDensity):
    """Energy-based density estimation by energy discrepancy.

    Fits ``p(x) = exp(-E(x)) / Z`` by contrasting the energy of each data
    point with the energies of ``n_negatives`` Gaussian perturbations of it:
    no scores (so no second derivatives, any energy that can be evaluated
    works), no MCMC. Unlike score matching, which only sees the local shape
    of the density, the contrast reaches across modes, so the relative
    weights of well-separated modes are learned; as ``noise_scale`` grows the
    loss approaches maximum likelihood, as it shrinks, score matching. log Z
    comes in closed form for a quadratic energy, by quadrature for
    ``n_features <= 2`` and by annealed importance sampling otherwise.

    Parameters
    ----------
    noise_scale : float, default=0.5
        Standard deviation ``s`` of each of the two Gaussian perturbation
        steps, in units of the (standardized) data: the negatives are
        ``x + s xi + s xi'``. Larger values see further across the density
        (the weights of modes separated by gaps of several ``s``), smaller
        values resolve sharp features faster: the default was the best of
        0.3, 0.5 and 1.0 on the standardized toy densities; raise it for
        well-separated modes.
    n_negatives : int, default=16
        Negatives ``M`` per data point, evaluated in one batched call with the
        data. The estimate of the contrast's log-mean is biased by ``O(1/M)``.
    stabilizer : float, default=1.0
        ``w >= 0``: the term ``w / M`` inside the logarithm bounds the loss
        below by ``log(w / M)`` and stops the energy of the data from running
        off to ``-inf`` when all negatives happen to have high energy.
        ``0`` is the unstabilized estimator.
    energy : {"mlp", "quadratic"}, torch.nn.Module or None, default=None
        The energy ``E``. ``"mlp"`` (the default, also for None) is a
        multilayer perceptron with a confining quadratic
        (:class:`~skebm.energies.MLPEnergy`); ``"quadratic"`` is a Gaussian
        with learned mean and precision. A module maps a tensor of shape
        ``(n, n_features)`` to ``(n,)``; it need not be differentiable in its
        input. It is deep-copied, never trained in place.
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
        Hidden activation of the ``"mlp"`` energy.
    alpha : float, default=1e-4
        L2 penalty: the loss minimized is ``L + alpha / (2 n) ||params||^2``.
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
        Hold out ``validation_fraction`` of the data, monitor the loss on it
        and keep the parameters of the best epoch.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping``.
    warm_start : bool, default=False
        Continue from the previous fit's energy instead of a fresh one.
    log_partition_method : {"auto", "closed_form", "quadrature", \
            "importance_sampling", "ais"}, default="auto"
        How ``log_partition_`` is estimated. ``"auto"``: the closed form for a
        quadratic energy, quadrature for ``n_features <= 2``, importance
        sampling from the base density when there is one (annealed importance
        sampling from the base when its weights are unreliable), annealed
        importance sampling otherwise. Energy discrepancy fits densities on
        all of R^d: it takes no ``domain`` (score matching does).
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
        masses, not the model's).
    device : str, default="cpu"
        Torch device for fitting and scoring: ``"cpu"``, ``"cuda"``,
        ``"cuda:1"`` or ``"auto"``. The fitted model always lives on the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds initialization, batch order, perturbations and log Z estimation;
        fits with the same seed are identical on the CPU. Global RNGs are not
        touched.
    verbose : bool, default=False
        Print the loss every epoch.

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
        Training loss per epoch.
    validation_loss_curve_ : list of float or None
        Validation loss per epoch when ``early_stopping``.
    best_loss_ : float
        Best monitored loss.
    n_iter_ : int
        Epochs run.
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
    SlicedScoreMatchingDensity : Score matching for many features.
    sklearn.neighbors.KernelDensity : Kernel density estimation.
    sklearn.mixture.GaussianMixture : Gaussian mixture density.

    Notes
    -----
    With a perturbation shared by the ``M`` negatives of ``x_i`` and one per
    negative, ``y_ij = x_i + s xi_i + s xi'_ij``, the loss minimized is [1]_

    .. math::
        L = \\frac1n \\sum_i \\log\\Big(\\frac{w}{M} + \\frac1M
        \\sum_{j=1}^M e^{E(x_i) - E(y_{ij})}\\Big).

    As ``M -> infinity`` and ``w -> 0`` it is the energy discrepancy, whose
    unique minimizer is the data density; it tends to the negative
    log-likelihood (up to a constant) as ``s`` grows and to ``s^2`` times the
    score matching objective as ``s -> 0``. The data and all ``n M``
    negatives go through the energy in one call per step: a step costs
    ``M + 1`` forward and backward passes of the energy, whatever the number
    of features.

    References
    ----------
    .. [1] T. Schröder, Z. Ou, J. N. Lim, Y. Li, S. J. Vollmer and A. B.
       Duncan, "Energy discrepancies: a score-independent loss for
       energy-based models", NeurIPS 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm import EnergyDiscrepancyDensity
    >>> X = np.random.RandomState(0).normal(size=(500, 2))
    >>> est = EnergyDiscrepancyDensity(energy="quadratic", max_iter=20,
    ...                                random_state=0).fit(X)
    >>> est.score_samples(X[:3]).shape
    (3,)
    >>> est.sample(4, random_state=0).shape
    (4, 2)
    """

    _parameter_constraints: dict = {
        **_BaseContinuousDensity._parameter_constraints,
        "noise_scale": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_negatives": [Interval(numbers.Integral, 1, None, closed="left")],
        "stabilizer": [Interval(numbers.Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        *,
        noise_scale=0.5,
        n_negatives=16,
        stabilizer=1.0,
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
        self.noise_scale = noise_scale
        self.n_negatives = n_negatives
        self.stabilizer = stabilizer

    def _objective(self):
        return partial(
            energy_discrepancy_loss,
            noise_scale=float(self.noise_scale),
            n_negatives=int(self.n_negatives),
            stabilizer=float(self.stabilizer),
        )
