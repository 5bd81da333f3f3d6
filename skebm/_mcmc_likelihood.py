"""Maximum likelihood with MCMC negatives: short-run (default), CD-k and PCD
(layer A).

Both estimators keep their siblings' parameters, fit template, log Z and
equilibrium samplers; they add where the chains of the negative phase start
(``chains``), how long they run (``n_mcmc_steps``), the noise short runs
start from (``noise``) and the sampler's step, and a :meth:`sample` that by
default draws from the process the model was trained with.
"""

import copy
import functools
import numbers
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import _column_statistics
from ._binary import _BaseBinaryEnergyDensity
from ._continuous import _BaseContinuousDensity
from ._torch_utils import (
    draw_seed,
    limit_threads,
    make_generator,
    numpy_dtype_for,
    resolve_device,
    to_numpy,
)
from .objectives.mcmc_likelihood import NegativeChains, mcmc_likelihood_loss
from .samplers import gibbs, langevin, mala, sample_gaussian

# Patience standing for "no patience": every one of max_iter epochs runs.
_NO_PATIENCE = 2**62


def _continuous_transition(sampler, step_size):
    """``(energy, x0, n_steps, generator) -> x``: fixed-step Langevin or MALA."""
    if sampler == "mala":

        def run(energy, x0, n_steps, generator):
            x, _, _ = mala(
                energy, x0, n_steps=n_steps, step_size=step_size,
                generator=generator, adapt=False,
            )
            return x

        return run

    def run(energy, x0, n_steps, generator):
        return langevin(
            energy, x0, n_steps=n_steps, step_size=step_size, generator=generator
        )

    return run


def _continuous_noise(spec):
    """``(n, generator) -> x`` draws from the noise ``spec`` (float64, on the
    generator's device)."""

    def draw(n, generator):
        device = generator.device if generator is not None else "cpu"
        like = dict(device=device, dtype=torch.float64)
        if spec["kind"] == "uniform":
            lower = torch.as_tensor(spec["lower"], **like)
            upper = torch.as_tensor(spec["upper"], **like)
            u = torch.rand(n, lower.shape[0], generator=generator, **like)
            return lower + (upper - lower) * u
        mean = torch.as_tensor(spec["mean"], **like)
        cov = torch.as_tensor(spec["covariance"], **like)
        return sample_gaussian(mean, cov, n, generator=generator)

    return draw


def _binary_noise(probabilities, values):
    """``(n, generator) -> x``: independent units, ``values[1]`` with the
    given probabilities."""
    lo, hi = values

    def draw(n, generator):
        device = generator.device if generator is not None else "cpu"
        p = torch.as_tensor(probabilities, device=device, dtype=torch.float64)
        u = torch.rand(n, p.shape[0], generator=generator, device=device,
                       dtype=torch.float64)
        return lo + (hi - lo) * (u < p).to(torch.float64)

    return draw


class _MCMCLikelihoodMixin:
    """What the two estimators share: the negative chains, the patience rule,
    and the choice of :meth:`sample`'s distribution."""

    def _negative_chains(self):
        return NegativeChains(
            self.chains,
            self.n_mcmc_steps,
            transition=self._transition(self._process),
            noise=self._noise(self._process),
        )

    def _objective(self):
        return functools.partial(mcmc_likelihood_loss, chains=self._negative_chains())

    def _train(self, energy, objective, X, **kwargs):
        if self.n_iter_no_change is None:
            kwargs.setdefault("n_iter_no_change", _NO_PATIENCE)
        result = super()._train(energy, objective, X, **kwargs)
        if self.n_iter_no_change is None:
            # Running every epoch is the rule asked for, not a failure to converge.
            result.converged = True
        return result

    def _sampling_mode(self):
        init = self.sampling_init
        if init == "auto":
            return "short_run" if self.chains == "noise" else "equilibrium"
        return init

    def _with_sampling_init(self, value):
        """A shallow copy whose inherited sampler reads ``sampling_init=value``."""
        other = copy.copy(self)
        other.__dict__ = dict(self.__dict__, sampling_init=value)
        return other

    def _fit(self, X):
        super()._fit(X)
        # The process the model was trained with, kept for sample(): set_params
        # after fit does not change it.
        self._short_run_process = self.__dict__.pop("_process")
        return self

    @limit_threads
    def _short_run_sample(self, n_samples, random_state):
        check_is_fitted(self)
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(
                f"n_samples must be a positive integer, got {n_samples!r}."
            )
        rng = check_random_state(random_state)
        device = resolve_device(self.device, strict=False)
        dtype = self._fit_dtype
        generator = make_generator(draw_seed(rng), device)
        energy = copy.deepcopy(self.energy_).to(device)
        process = self._short_run_process
        x0 = self._noise(process)(int(n_samples), generator).to(dtype)
        x = self._transition(process)(energy, x0, process["n_steps"], generator)
        return to_numpy(x.detach()).astype(numpy_dtype_for(dtype), copy=False)


_SAMPLING_INIT = ["auto", "short_run", "equilibrium", "data", "noise"]


class MCMCLikelihoodDensity(_MCMCLikelihoodMixin, _BaseContinuousDensity):
    """Energy-based density estimation by maximum likelihood with MCMC negatives.

    Each training step lowers the energy of a data batch and raises it at
    negatives drawn by ``n_mcmc_steps`` Langevin (or MALA) steps of the
    current energy: the loss is ``mean E(data) - mean E(negatives)``, the
    negatives held fixed. Where the chains start (``chains``) decides what is
    learned:

    - ``"noise"`` (the default): short runs from fresh noise each step
      (non-persistent short-run MCMC). The fixed point makes the ``k``-step
      *sampling process from noise* reproduce the data's statistics (for an
      exponential family, exactly its sufficient statistics), not the
      energy's equilibrium ``exp(-E) / Z``: the two are different
      distributions, and it is the process that is fitted.
    - ``"data"``: contrastive divergence, ``k`` steps from the data batch.
    - ``"persistent"``: persistent chains (PCD), carried over between steps;
      with enough steps and a small learning rate, maximum likelihood.

    Two distributions come out of a fit, and the methods say which one they
    describe. :meth:`sample` draws, by default (``sampling_init="auto"``), from
    the process the model was trained with: for ``chains="noise"``, ``k``
    steps of the same sampler and step size from the same noise; with
    ``sampling_init="equilibrium"`` (and by default for the other chains)
    from the energy's equilibrium, by the siblings' importance-resampled MALA
    chains. :meth:`score_samples` and :meth:`score` are always the energy's
    normalized log-density ``-E(x) - log Z``, with the library's log Z and its
    error: the short-run process has no tractable density.

    Parameters
    ----------
    chains : {"noise", "data", "persistent"}, default="noise"
        Where the negative chains start at each step: fresh ``noise``
        draws (short-run MCMC), the data batch (CD-k) or where the previous
        step's chains stopped (PCD; as many chains as ``batch_size``, started
        from noise).
    n_mcmc_steps : int, default=20
        ``k``: sampler steps per training step.
    mcmc_step_size : float, default=0.05
        ``tau`` of the sampler steps ``x - tau grad E(x) + sqrt(2 tau) xi``, in
        the units of the data (standardized data: of order one). Fixed, not
        adapted: the trained process is this sampler.
    sampler : {"langevin", "mala"}, default="langevin"
        Unadjusted Langevin steps (:func:`~skebm.samplers.langevin`, the
        short-run papers' sampler) or Metropolis-adjusted ones
        (:func:`~skebm.samplers.mala`, no adaptation).
    noise : {"gaussian", "uniform"}, default="gaussian"
        What short runs start from: the Gaussian with the training data's
        mean and covariance, or the uniform distribution on the box of the
        training data's per-feature minima and maxima (the papers' choice for
        images; far from the data in many dimensions).
    energy : {"mlp", "quadratic"}, torch.nn.Module or None, default=None
        The energy ``E``. ``"mlp"`` (the default, also for None) is a
        multilayer perceptron with a confining quadratic
        (:class:`~skebm.energies.MLPEnergy`); ``"quadratic"`` is a Gaussian
        (:class:`~skebm.energies.QuadraticEnergy`), started at the data's mean
        and variances. A module maps ``(n, n_features)`` to ``(n,)`` and must
        be differentiable in its input; it is deep-copied, never trained in
        place.
    base : {"gmm", "gaussian"}, GaussianMixture, BayesianGaussianMixture or None, \
            default=None
        As for :class:`EnergyDiscrepancyDensity`: ``energy`` becomes the
        correction ``f`` of a fitted base ``q`` and the chains run on
        ``f - log q``, epochs chosen by held-out log-likelihood. The default is
        None, unlike the siblings': a short run from noise on a base's energy
        learns a correction that makes the *process* match the data, which
        the base's equilibrium already did, and the held-out likelihood that
        chooses the epochs is the equilibrium's, not the process's. A base
        suits ``chains="persistent"`` (maximum likelihood).
    hidden_layer_sizes : tuple of int, default=(64, 64)
        Hidden layer widths of the ``"mlp"`` energy.
    activation : {"silu", "softplus", "tanh", "sigmoid", "gelu"}, default="silu"
        Hidden activation of the ``"mlp"`` energy.
    alpha : float, default=1e-4
        L2 penalty: the loss minimized is ``L + alpha / (2 n) ||params||^2``.
    batch_size : int, default=256
        Minibatch size (clipped to the number of training samples); also the
        number of negatives per step.
    learning_rate_init : float, default=1e-3
        Adam's learning rate.
    max_iter : int, default=100
        Epochs.
    tol : float, default=1e-4
        With ``n_iter_no_change`` set: training stops when the monitored loss
        has not improved by ``tol`` for ``n_iter_no_change`` epochs.
    n_iter_no_change : int or None, default=None
        None runs all ``max_iter`` epochs (as ``BernoulliRBM`` runs
        ``n_iter``): the loss ``mean E(data) - mean E(negatives)`` hovers
        around zero once the negatives agree with the data, so its "best"
        epoch says little. An int: patience, as in the siblings.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data and keep the best epoch:
        by held-out log-likelihood of the energy where it is cheap (a base, or
        ``energy="quadratic"``), which suits ``chains="persistent"`` and
        ``"data"``, not short runs; otherwise by the held-out loss.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping``.
    warm_start : bool, default=False
        Continue from the previous fit's energy (fresh chains).
    log_partition_method : {"auto", "closed_form", "quadrature", \
            "importance_sampling", "ais"}, default="auto"
        How ``log_partition_`` is estimated: the closed form for a quadratic
        energy, quadrature for ``n_features <= 2``, importance sampling from
        the base when there is one, annealed importance sampling otherwise.
    n_ais_chains : int, default=512
        Annealed importance sampling chains.
    n_ais_steps : int, default=300
        Annealing temperatures.
    n_sampling_steps : int, default=100
        MALA steps of the equilibrium sampler (``sampling_init`` other than
        ``"short_run"``).
    sampling_init : {"auto", "short_run", "equilibrium", "data", "noise"}, \
            default="auto"
        What :meth:`sample` draws from. ``"short_run"``: the trained process,
        ``n_mcmc_steps`` steps of the trained sampler from the trained noise
        (as fitted: later ``set_params`` do not change it).
        ``"equilibrium"``: the energy's ``exp(-E) / Z`` (exact draws for a
        quadratic energy; otherwise draws from the base, or from the data's
        Gaussian widened 1.5 times, resampled by their importance weights,
        then ``n_sampling_steps`` MALA steps). ``"auto"``: ``"short_run"`` for
        ``chains="noise"``, ``"equilibrium"`` otherwise. ``"data"`` and
        ``"noise"``: ``n_sampling_steps`` adapted MALA steps from training
        points or from the data's Gaussian.
    device : str, default="cpu"
        Torch device for fitting and scoring; the fitted model lives on the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds initialization, batch order, chains and log Z estimation; fits
        with the same seed are identical on the CPU.
    verbose : bool, default=False
        Print the loss every epoch.

    Attributes
    ----------
    energy_ : torch.nn.Module
        The fitted energy, on the CPU.
    location_ : ndarray of shape (n_features,)
        For ``energy="quadratic"``: the mean of the energy's Gaussian.
    precision_ : ndarray of shape (n_features, n_features)
        For ``energy="quadratic"``: its precision matrix.
    base_ : GaussianMixture
        The fitted base density; only with ``base`` set.
    log_partition_ : float
        Estimated log Z of ``exp(-energy_)``.
    log_partition_std_ : float
        Its standard error.
    log_partition_ess_ : float
        Effective sample size behind a sampling estimate of log Z.
    log_partition_method_ : str
        The method that estimated it.
    loss_curve_ : list of float
        ``mean E(data) - mean E(negatives)`` per epoch.
    validation_loss_curve_ : list of float or None
        Held-out loss per epoch when ``early_stopping`` monitors it.
    validation_scores_ : list of float or None
        Only with ``base`` set: held-out log-likelihood per epoch (None
        without ``early_stopping``).
    best_validation_score_ : float or None
        Only with ``base`` set: its value at the epoch kept.
    best_loss_ : float
        Best monitored loss.
    n_iter_ : int
        Epochs run.
    domain_ : None
        Always None: densities on all of R^d.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    MCMCLikelihoodBinary : The same training for binary data.
    EnergyDiscrepancyDensity : Contrasts with perturbations, no MCMC.
    ScoreMatchingDensity : Exact score matching; closed form for Gaussians.
    sklearn.neural_network.BernoulliRBM : Persistent contrastive divergence.
    sklearn.neighbors.KernelDensity : Kernel density estimation.
    sklearn.mixture.GaussianMixture : Gaussian mixture density.

    Notes
    -----
    The loss minimized per batch, with negatives :math:`y_j` from the chains
    (no gradient through them), is

    .. math::
        L = \\frac1n \\sum_{i=1}^n E(x_i) - \\frac1m \\sum_{j=1}^m E(y_j),

    whose gradient is minus the log-likelihood's when the :math:`y_j` are
    draws from ``exp(-E) / Z``. For short runs from noise [1]_ they are not;
    at a fixed point of training :math:`\\mathbb{E}_{data} \\nabla E =
    \\mathbb{E}_{k\\text{-step}} \\nabla E`. For a Gaussian energy each
    Langevin step is an affine map, :math:`x \\mapsto (I - \\tau P) x + \\tau P
    \\mu + \\sqrt{2\\tau}\\xi`, so the ``k``-step process from noise has a
    computable mean and covariance, and the fitted energy is the one whose
    process reproduces the data's mean and covariance: a different Gaussian
    from the data's [2]_ (the tests check both).

    References
    ----------
    .. [1] E. Nijkamp, M. Hill, S.-C. Zhu and Y. N. Wu, "Learning
       non-convergent non-persistent short-run MCMC toward energy-based
       model", NeurIPS 2019.
    .. [2] E. Nijkamp, M. Hill, T. Han, S.-C. Zhu and Y. N. Wu, "On the
       anatomy of MCMC-based maximum likelihood learning of energy-based
       models", AAAI 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm import MCMCLikelihoodDensity
    >>> X = np.random.RandomState(0).normal(size=(500, 2))
    >>> est = MCMCLikelihoodDensity(energy="quadratic", n_mcmc_steps=5,
    ...                             max_iter=10, random_state=0).fit(X)
    >>> est.score_samples(X[:3]).shape
    (3,)
    >>> est.sample(4, random_state=0).shape  # the 5-step process from noise
    (4, 2)
    """

    _parameter_constraints: dict = {
        **_BaseContinuousDensity._parameter_constraints,
        "chains": [StrOptions({"noise", "data", "persistent"})],
        "n_mcmc_steps": [Interval(Integral, 1, None, closed="left")],
        "mcmc_step_size": [Interval(Real, 0, None, closed="neither")],
        "sampler": [StrOptions({"langevin", "mala"})],
        "noise": [StrOptions({"gaussian", "uniform"})],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "sampling_init": [StrOptions(set(_SAMPLING_INIT))],
    }

    def __init__(
        self,
        *,
        chains="noise",
        n_mcmc_steps=20,
        mcmc_step_size=0.05,
        sampler="langevin",
        noise="gaussian",
        energy=None,
        base=None,
        hidden_layer_sizes=(64, 64),
        activation="silu",
        alpha=1e-4,
        batch_size=256,
        learning_rate_init=1e-3,
        max_iter=100,
        tol=1e-4,
        n_iter_no_change=None,
        early_stopping=False,
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
        self.chains = chains
        self.n_mcmc_steps = n_mcmc_steps
        self.mcmc_step_size = mcmc_step_size
        self.sampler = sampler
        self.noise = noise
        self.base = base

    # ------------------------------------------------------------- training
    def _fit_energy(self, X, domain, **kwargs):
        stats = _column_statistics(X)
        d = X.shape[1]
        cov = stats["covariance"]
        cov = cov + 1e-6 * np.trace(cov) / d * np.eye(d)
        self._process = {
            "n_steps": int(self.n_mcmc_steps),
            "step_size": float(self.mcmc_step_size),
            "sampler": self.sampler,
            "noise": {
                "kind": self.noise,
                "mean": stats["mean"],
                "covariance": cov,
                "lower": stats["min"],
                "upper": stats["max"],
            },
        }
        return super()._fit_energy(X, domain, **kwargs)

    @staticmethod
    def _transition(process):
        return _continuous_transition(process["sampler"], process["step_size"])

    @staticmethod
    def _noise(process):
        return _continuous_noise(process["noise"])

    # ------------------------------------------------------------- sampling
    def sample(self, n_samples=1, random_state=None):
        """Draw samples: from the trained process or the energy's equilibrium.

        ``sampling_init`` decides which (see the class docstring):
        ``"short_run"`` (the default for ``chains="noise"``) runs the trained
        ``n_mcmc_steps`` sampler steps from the trained noise, the
        distribution that training matched to the data; ``"equilibrium"``
        draws from ``exp(-E) / Z``, the density :meth:`score_samples`
        evaluates.

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
        mode = self._sampling_mode()
        if mode == "short_run":
            return self._short_run_sample(n_samples, random_state)
        if mode == "equilibrium":
            return _BaseContinuousDensity.sample(
                self._with_sampling_init("auto"), n_samples, random_state
            )
        return super().sample(n_samples, random_state)


_BINARY_SAMPLING_INIT = {"equilibrium": "annealed"}


class MCMCLikelihoodBinary(_MCMCLikelihoodMixin, _BaseBinaryEnergyDensity):
    """Energy-based density estimation on binary data by maximum likelihood
    with Gibbs-sampled negatives.

    Each training step lowers the energy of a data batch and raises it at
    negatives drawn by ``n_mcmc_steps`` Gibbs sweeps of the current energy
    (coloured sweeps, a colour class at a time, for pairwise energies): the
    loss is ``mean E(data) - mean E(negatives)``, the negatives held fixed.
    ``chains`` decides what is learned: ``"noise"`` (the default), short
    runs from fresh noise each step, fits the ``k``-sweep *process from
    noise* to the data (for a Boltzmann machine: the process reproduces the
    data's means and pair correlations, the energy's equilibrium does not);
    ``"data"`` is contrastive divergence CD-k; ``"persistent"``, persistent
    chains (PCD, what :class:`~sklearn.neural_network.BernoulliRBM` runs),
    approaches maximum likelihood.

    :meth:`sample` draws, by default, from the trained process (for
    ``chains="noise"``: ``k`` sweeps from the same noise), and with
    ``sampling_init="equilibrium"`` (the default for the other chains) from
    the energy's ``exp(-E) / Z`` (exactly for ``n_features <= 20``, by
    importance-resampled annealed chains above). :meth:`score_samples` is
    always the energy's normalized log-density, with log Z exact for
    ``n_features <= 20`` and by annealed importance sampling (with its error,
    on first use) above.

    Parameters
    ----------
    chains : {"noise", "data", "persistent"}, default="noise"
        Where the negative chains start at each step: fresh noise (short-run
        MCMC), the data batch (CD-k), or where the previous step's chains
        stopped (PCD; ``batch_size`` chains started from noise).
    n_mcmc_steps : int, default=10
        ``k``: Gibbs sweeps per training step.
    noise : {"marginals", "uniform"}, default="marginals"
        What short runs start from: independent units with the training
        data's marginals (Beta(1, 1) prior), or uniform random states.
    energy : {"mlp", "boltzmann"}, torch.nn.Module or None, default=None
        The energy ``E``: ``"mlp"`` (the default, also for None) a
        :class:`~skebm.energies.BinaryMLPEnergy`; ``"boltzmann"`` a fully
        visible Boltzmann machine (:class:`~skebm.energies.BoltzmannEnergy`);
        or a module mapping ``(n, n_features)`` in {0, 1} to ``(n,)``,
        deep-copied.
    base : {"bernoulli"} or None, default="bernoulli"
        ``"bernoulli"``: the untrained energy is the independent Bernoulli
        model of the training data (as for :class:`RatioMatchingBinary`), so
        that with ``noise="marginals"`` the untrained process *is* the noise.
        None: a plain energy. Fitted as ``base_``.
    binarize : float or None, default=None
        None: the input must be binary, all values in {0, 1} or all in
        {-1, +1} (at score time, in the encoding of the training data), and
        anything else is a ValueError that names the value and its column.
        A float: a threshold, ``x > binarize`` becomes 1 and the rest 0.
        Samples come back in the training data's encoding and integer dtype,
        as :class:`RatioMatchingBinary`'s.
    hidden_layer_sizes : tuple of int, default=(256,)
        Hidden layer widths of the ``"mlp"`` energy.
    activation : {"softplus", "tanh", "sigmoid", "silu", "gelu"}, default="softplus"
        Hidden activation of the ``"mlp"`` energy.
    alpha : float, default=1.0
        L2 penalty: ``L + alpha / (2 n) ||params||^2``.
    batch_size : int, default=256
        Minibatch size; also the number of negatives per step.
    learning_rate_init : float, default=1e-3
        Adam's learning rate.
    max_iter : int, default=100
        Epochs.
    tol : float, default=1e-4
        With ``n_iter_no_change`` set: the stopping tolerance.
    n_iter_no_change : int or None, default=None
        None runs all ``max_iter`` epochs (the loss hovers around zero once
        the negatives agree with the data); an int: patience.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, monitor the loss on it
        and keep the best epoch.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping``.
    warm_start : bool, default=False
        Continue from the previous fit's energy (fresh chains).
    log_partition_method : {"auto", "exact", "ais"}, default="auto"
        Enumeration up to 20 features (``"auto"``), annealed importance
        sampling above.
    n_ais_chains : int, default=256
        Annealed importance sampling chains.
    n_ais_steps : int, default=200
        Annealing temperatures.
    n_sweeps : int, default=100
        Gibbs sweeps of :meth:`sample`'s chains for ``sampling_init`` other
        than ``"short_run"``.
    scan : {"systematic", "random"}, default="systematic"
        Gibbs site order, in training and sampling. Systematic sweeps of a
        pairwise energy update a colour class of its interaction graph at a
        time.
    sampling_init : {"auto", "short_run", "equilibrium", "data", "noise"}, \
            default="auto"
        What :meth:`sample` draws from: ``"short_run"``, the trained process
        (``n_mcmc_steps`` sweeps from the trained noise, as fitted);
        ``"equilibrium"``, the energy's model (exact draws for ``n_features
        <= 20``, annealed chains resampled by their weights, then
        ``n_sweeps`` sweeps, above); ``"auto"``, ``"short_run"`` for
        ``chains="noise"`` and ``"equilibrium"`` otherwise; ``"data"`` and
        ``"noise"``, ``n_sweeps`` sweeps from training points or uniform
        states.
    n_sampling_chains : int or None, default=None
        For ``sampling_init`` other than ``"short_run"``: None, one chain per
        sample; an int, that many persistent chains read after every sweep.
    device : str, default="cpu"
        Torch device for fitting and scoring; the fitted model lives on the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds initialization, batch order, chains and log Z estimation.
    verbose : bool, default=False
        Print the loss every epoch.

    Attributes
    ----------
    energy_ : torch.nn.Module
        The fitted energy (on {0, 1} inputs), on the CPU.
    base_ : ndarray of shape (`n_features_in_`,) or None
        Probability of a 1 per feature in the Bernoulli base, or None.
    log_partition_ : float
        log Z of ``exp(-energy_)`` over ``{0, 1}^d``.
    log_partition_std_ : float
        Its standard error (0 for enumeration).
    log_partition_ess_ : float
        Effective sample size behind a sampling estimate of log Z.
    log_partition_method_ : str
        ``"exact"`` or ``"ais"``.
    loss_curve_ : list of float
        ``mean E(data) - mean E(negatives)`` per epoch.
    validation_loss_curve_ : list of float or None
        Held-out loss per epoch when ``early_stopping``.
    best_loss_ : float
        Best monitored loss.
    n_iter_ : int
        Epochs run.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    MCMCLikelihoodDensity : The same training for continuous data.
    RatioMatchingBinary : Binary energies without MCMC or log Z.
    PseudoLikelihoodIsing : Ising model fitted by pseudo-likelihood.
    sklearn.neural_network.BernoulliRBM : Restricted Boltzmann machine (PCD).
    sklearn.neighbors.KernelDensity : Kernel density estimation.
    sklearn.mixture.GaussianMixture : Gaussian mixture density.

    Notes
    -----
    The loss per batch, negatives :math:`y_j` from the chains held fixed, is

    .. math::
        L = \\frac1n \\sum_{i=1}^n E(x_i) - \\frac1m \\sum_{j=1}^m E(y_j).

    For a Boltzmann machine :math:`E = -b^T x - \\frac12 x^T W x` its gradient
    is the difference of the means and pair correlations of the data and of
    the negatives, so at a fixed point of short-run training the ``k``-sweep
    process from noise reproduces the data's means and pair correlations [1]_
    [2]_, while the equilibrium of the fitted energy, in general, does not.

    References
    ----------
    .. [1] E. Nijkamp, M. Hill, T. Han, S.-C. Zhu and Y. N. Wu, "On the
       anatomy of MCMC-based maximum likelihood learning of energy-based
       models", AAAI 2020.
    .. [2] A. Decelle, C. Furtlehner and B. Seoane, "Equilibrium and
       non-equilibrium regimes in the learning of restricted Boltzmann
       machines", NeurIPS 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm import MCMCLikelihoodBinary
    >>> X = (np.random.RandomState(0).rand(300, 5) < 0.3).astype(float)
    >>> est = MCMCLikelihoodBinary(energy="boltzmann", n_mcmc_steps=2,
    ...                            max_iter=5, random_state=0).fit(X)
    >>> est.score_samples(X[:3]).shape
    (3,)
    >>> est.sample(4, random_state=0).shape  # 2 sweeps from the noise
    (4, 5)
    """

    _parameter_constraints: dict = {
        **_BaseBinaryEnergyDensity._parameter_constraints,
        "chains": [StrOptions({"noise", "data", "persistent"})],
        "n_mcmc_steps": [Interval(Integral, 1, None, closed="left")],
        "noise": [StrOptions({"marginals", "uniform"})],
        "base": [StrOptions({"bernoulli"}), None],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "sampling_init": [StrOptions(set(_SAMPLING_INIT))],
    }

    def __init__(
        self,
        *,
        chains="noise",
        n_mcmc_steps=10,
        noise="marginals",
        energy=None,
        base="bernoulli",
        binarize=None,
        hidden_layer_sizes=(256,),
        activation="softplus",
        alpha=1.0,
        batch_size=256,
        learning_rate_init=1e-3,
        max_iter=100,
        tol=1e-4,
        n_iter_no_change=None,
        early_stopping=False,
        validation_fraction=0.1,
        warm_start=False,
        log_partition_method="auto",
        n_ais_chains=256,
        n_ais_steps=200,
        n_sweeps=100,
        scan="systematic",
        sampling_init="auto",
        n_sampling_chains=None,
        device="cpu",
        random_state=None,
        verbose=False,
    ):
        self.chains = chains
        self.n_mcmc_steps = n_mcmc_steps
        self.noise = noise
        self.energy = energy
        self.base = base
        self.binarize = binarize
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
        self.log_partition_method = log_partition_method
        self.n_ais_chains = n_ais_chains
        self.n_ais_steps = n_ais_steps
        self.n_sweeps = n_sweeps
        self.scan = scan
        self.sampling_init = sampling_init
        self.n_sampling_chains = n_sampling_chains
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------- training
    def _fit_energy(self, X, domain, **kwargs):
        # _check_fit_X has set the marginals (Beta(1, 1) prior) for this fit.
        d = X.shape[1]
        probabilities = (
            self._marginals if self.noise == "marginals" else np.full(d, 0.5)
        )
        self._process = {
            "n_steps": int(self.n_mcmc_steps),
            "scan": self.scan,
            "values": self._values,
            "probabilities": np.asarray(probabilities, dtype=np.float64),
        }
        return super()._fit_energy(X, domain, **kwargs)

    def _fit(self, X):
        super()._fit(X)
        built = self.__dict__.pop("_built_base", False)
        if built is not False:
            self.base_ = built
        elif not hasattr(self, "base_"):
            self.base_ = None
        return self

    @staticmethod
    def _transition(process):
        def run(energy, x0, n_steps, generator):
            return gibbs(
                energy, x0, n_sweeps=n_steps, values=process["values"],
                scan=process["scan"], generator=generator,
            )

        return run

    @staticmethod
    def _noise(process):
        return _binary_noise(process["probabilities"], process["values"])

    # ------------------------------------------------------------- sampling
    def sample(self, n_samples=1, random_state=None):
        """Draw samples: from the trained process or the energy's equilibrium.

        ``sampling_init`` decides which (see the class docstring):
        ``"short_run"`` (the default for ``chains="noise"``) runs the trained
        ``n_mcmc_steps`` Gibbs sweeps from the trained noise, the distribution
        that training matched to the data; ``"equilibrium"`` draws from
        ``exp(-E) / Z``, the model :meth:`score_samples` evaluates.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples.
        random_state : int, RandomState instance or None, default=None
            Seeds the draw.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Values in {0, 1}, or in {-1, +1} when the training data were spins.
        """
        mode = self._sampling_mode()
        if mode == "short_run":
            x = self._short_run_sample(n_samples, random_state)
            out = self._from_internal(x, self._fit_summary["input_values"])
            return out.astype(x.dtype, copy=False)
        if mode == "equilibrium":
            check_is_fitted(self)
            # A deferred log Z is estimated on this estimator, not on the copy.
            self.log_partition_  # noqa: B018
        other = self._with_sampling_init(_BINARY_SAMPLING_INIT.get(mode, mode))
        return _BaseBinaryEnergyDensity.sample(other, n_samples, random_state)

