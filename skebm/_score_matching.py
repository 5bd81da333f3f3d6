"""Score matching estimators (layer A)."""

import torch

from ._base import _BaseEnergyDensity
from ._training import TrainingResult
from .energies import LinearInParametersEnergy, QuadraticEnergy
from .objectives.score_matching import (
    exact_score_matching_loss,
    solve_gaussian_score_matching,
    solve_linear_score_matching,
)


class ScoreMatchingDensity(_BaseEnergyDensity):
    """Energy-based density estimation by Hyvärinen's exact score matching.

    Fits ``p(x) = exp(-E(x)) / Z`` by minimizing the score matching objective,
    which needs neither ``Z`` nor samples from the model. The trace of the
    Hessian is computed exactly, batched over samples, at the cost of one
    backward pass per feature: for many features prefer
    :class:`SlicedScoreMatchingDensity`. For ``energy="quadratic"`` and any
    :class:`~skebm.energies.LinearInParametersEnergy`, the objective is
    quadratic in the parameters and is solved in closed form, without
    iterations. ``log_partition_`` comes in closed form for a quadratic
    energy, by quadrature for ``n_features <= 2``, and by annealed importance
    sampling otherwise.

    Parameters
    ----------
    energy : {"mlp", "quadratic"}, torch.nn.Module or None, default=None
        The energy ``E``. ``"mlp"`` (the default, also for None) is a
        multilayer perceptron with a confining quadratic
        (:class:`~skebm.energies.MLPEnergy`); ``"quadratic"`` is a Gaussian
        with learned mean and precision. A module maps a tensor of shape
        ``(n, n_features)`` to ``(n,)``, twice differentiable; it is deep-copied,
        never trained in place.
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
    batch_size : int, default=32
        Minibatch size (clipped to the number of training samples).
    learning_rate_init : float, default=2e-3
        Adam's learning rate.
    max_iter : int, default=100
        Maximum number of epochs.
    tol : float, default=1e-4
        Training stops when the monitored loss (validation loss when
        ``early_stopping``) has not improved by ``tol`` for
        ``n_iter_no_change`` consecutive epochs.
    n_iter_no_change : int, default=10
        Patience, in epochs.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the data, monitor the objective on
        it and keep the parameters of the best epoch.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping``.
    warm_start : bool, default=False
        Continue from the previous fit's energy instead of a fresh one.
    log_partition_method : {"auto", "closed_form", "quadrature", "ais"}, default="auto"
        How ``log_partition_`` is estimated; ``"auto"`` uses the closed form for
        a quadratic energy, quadrature for ``n_features <= 2``, AIS otherwise.
    n_ais_chains : int, default=512
        Annealed importance sampling chains (standard error ~ 1/sqrt(chains)).
    n_ais_steps : int, default=300
        Annealing temperatures (one MALA step each); more reduce the bias.
    n_sampling_steps : int, default=500
        MALA steps run by :meth:`sample` for non-Gaussian energies.
    sampling_init : {"data", "noise"}, default="data"
        Start :meth:`sample`'s chains at training points or at draws from a
        Gaussian fitted to the data.
    device : str, default="cpu"
        Torch device for fitting and scoring: ``"cpu"``, ``"cuda"``,
        ``"cuda:1"`` or ``"auto"``. The fitted model always lives on the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds initialization, batch order, log Z estimation; fits with the
        same seed are identical on the CPU. Global RNGs are not touched.
    verbose : bool, default=False
        Print the loss every epoch.

    Attributes
    ----------
    energy_ : torch.nn.Module
        The fitted energy, on the CPU.
    log_partition_ : float
        Estimated log Z of ``exp(-energy_)``.
    log_partition_std_ : float
        Standard error of ``log_partition_`` (0 for a closed form; the
        discretization error estimate for quadrature).
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
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
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

    References
    ----------
    .. [1] A. Hyvärinen, "Estimation of non-normalized statistical models by
       score matching", Journal of Machine Learning Research 6, 2005.

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
    """

    def __init__(
        self,
        *,
        energy=None,
        hidden_layer_sizes=(64, 64),
        activation="silu",
        alpha=1e-4,
        batch_size=32,
        learning_rate_init=2e-3,
        max_iter=100,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=True,
        validation_fraction=0.1,
        warm_start=False,
        log_partition_method="auto",
        n_ais_chains=512,
        n_ais_steps=300,
        n_sampling_steps=500,
        sampling_init="data",
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

    def _objective(self):
        return exact_score_matching_loss

    def _closed_form_fit(self, energy, X, *, device, dtype):
        if isinstance(energy, QuadraticEnergy):
            x = torch.as_tensor(X, device=device, dtype=torch.float64)
            mean, precision, covariance = solve_gaussian_score_matching(x)
            eigvals = torch.linalg.eigvalsh(covariance)
            if float(eigvals.min()) <= 1e-10 * float(eigvals.max()):
                raise ValueError(
                    "The sample covariance is singular (collinear features or "
                    "fewer samples than features), so the Gaussian score matching "
                    "solution does not exist. Remove redundant features (e.g. "
                    "with PCA) or collect more samples."
                )
            energy.set_gaussian(mean.to(dtype), precision.to(dtype))
            # J at the optimum: 1/2 tr(P) - tr(P) = -1/2 tr(P).
            value = -0.5 * float(torch.trace(precision))
            return TrainingResult(
                loss_curve=[value], n_iter=1, converged=True, best_loss=value
            )
        if isinstance(energy, LinearInParametersEnergy):
            x = torch.as_tensor(X, device=device, dtype=dtype)
            theta, value = solve_linear_score_matching(
                energy.statistics, x, alpha=self.alpha
            )
            if not bool(torch.isfinite(theta).all()):
                raise ValueError(
                    "The closed-form score matching solve produced non-finite "
                    "parameters; the statistics may be linearly dependent on this "
                    "data. Increase alpha."
                )
            with torch.no_grad():
                energy.theta.copy_(theta)
            return TrainingResult(
                loss_curve=[value], n_iter=1, converged=True, best_loss=value
            )
        return None
