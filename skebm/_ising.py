"""The Ising model estimator fitted by pseudo-likelihood (layer A).

:class:`PseudoLikelihoodIsing` fits ``E(σ) = -½ σᵀJσ - hᵀσ`` on spins by
maximizing the symmetric (joint) pseudo-likelihood, a convex problem, solved
to optimality with a full-batch quasi-Newton method in float64. The private
solver :func:`~skebm._ising_solver._solve_pseudo_likelihood` (in
``_ising_solver.py``) does the mathematics with no validation; the estimator
validates, solves and sets attributes (the split of
``sklearn/covariance/_graph_lasso.py``).
"""

import copy
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from scipy.optimize import linprog
from scipy.sparse import csr_array
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from threadpoolctl import threadpool_limits

from ._binary import _SPINS, _BaseBinaryEnergyDensity
from ._ising_solver import _solve_pseudo_likelihood
from ._torch_utils import to_numpy
from ._training import TrainingResult
from .energies import IsingEnergy
from .objectives.pseudo_likelihood import pseudo_log_likelihood

# Parameters of the minibatch-trained binary estimators that the full-batch
# solver has no use for.
_MINIBATCH_ONLY = {
    "energy",
    "hidden_layer_sizes",
    "activation",
    "batch_size",
    "learning_rate_init",
    "n_iter_no_change",
    "early_stopping",
    "validation_fraction",
}


# Constraints (distinct rows x non-constant spins) up to which the exact
# separability linear program is solved (milliseconds; binarized digits,
# 94500 constraints, took 139 s).
_MAX_SEPARABILITY_CONSTRAINTS = 20000


def _has_recession_direction(spins):
    """Whether the unpenalized pseudo-likelihood of ``spins`` (no constant
    column) has a direction of recession, i.e. no finite optimum; None when
    the linear program is too large to solve here.

    Every term ``log(1 + exp(-2 m_si))`` decreases in the margin
    ``m_si = σ_i (h_i + Σ_j J_ij σ_j)``, which is linear in ``(h, J)``: the
    objective decreases forever along a direction with all margins >= 0 and
    one > 0. The program maximizes the total margin over ``|θ| <= 1`` subject
    to every margin being >= 0; a positive optimum is such a direction.
    """
    rows, counts = np.unique(spins, axis=0, return_counts=True)
    r, d = rows.shape
    if r * d > _MAX_SEPARABILITY_CONSTRAINTS:
        return None
    iu, ju = np.triu_indices(d, 1)
    pair = np.zeros((d, d), dtype=np.intp)
    pair[iu, ju] = pair[ju, iu] = d + np.arange(iu.size)
    sample = np.repeat(np.arange(r), d)
    spin = np.tile(np.arange(d), r)
    own = rows[sample, spin]
    others = np.array([np.delete(np.arange(d), i) for i in range(d)])[spin].ravel()
    constraint = np.arange(r * d)
    values = np.concatenate(
        [own, rows[np.repeat(sample, d - 1), others] * np.repeat(own, d - 1)]
    )
    row_index = np.concatenate([constraint, np.repeat(constraint, d - 1)])
    col_index = np.concatenate([spin, pair[np.repeat(spin, d - 1), others]])
    A = csr_array((values, (row_index, col_index)), shape=(r * d, d + iu.size))
    total = A.T @ np.repeat(counts.astype(np.float64), d)
    result = linprog(
        -total, A_ub=-A, b_ub=np.zeros(r * d), bounds=(-1, 1), method="highs"
    )
    return bool(result.status == 0 and -result.fun > 1e-9 * counts.sum())


class PseudoLikelihoodIsing(_BaseBinaryEnergyDensity):
    """Ising model (fully visible Boltzmann machine on spins) by pseudo-likelihood.

    Fits ``p(σ) = exp(-E(σ)) / Z`` on ``σ ∈ {-1, +1}^d`` with
    ``E(σ) = -½ σᵀJσ - hᵀσ``, ``J`` symmetric with a zero diagonal, by
    maximizing Besag's pseudo-likelihood, the product of the one-spin
    conditionals, which needs no ``Z``, is consistent, and is convex. The
    *symmetric (joint)* pseudo-likelihood is fitted: one ``J_ij`` is shared by
    the conditionals of spins ``i`` and ``j`` (not ``d`` separate per-spin
    regressions averaged afterwards).

    The problem is solved to optimality, full batch, in float64: L-BFGS for
    ``penalty="l2"``; for ``penalty="l1"`` (sparse interaction graphs) the
    equivalent bound-constrained problem in ``J = J⁺ - J⁻`` is solved by
    L-BFGS-B, which gives exact zeros (the support is found in single
    precision, then a float64 Newton step on the problem with those signs
    finishes). The refit, and small smooth problems, are solved by Newton's
    method with the per-spin block Hessian. Optimality is verified by the KKT
    residual (the largest entry of the minimum-norm subgradient) against
    ``tol``; ``refit=True`` then refits the selected graph without penalty,
    which removes the shrinkage bias of L1.

    Input in {0, 1} is mapped to spins (0 → -1, 1 → +1) and :meth:`sample`
    answers in the encoding of the training data. ``log_partition_`` is exact
    (enumeration of the ``2^d`` states) for ``n_features <= 20`` and estimated
    by annealed importance sampling with Gibbs transitions above, when first
    needed (:meth:`score`, :meth:`score_samples`, :meth:`sample` or reading a
    ``log_partition_*`` attribute; see :class:`RatioMatchingBinary`).

    Parameters
    ----------
    penalty : {"l2", "l1"}, default="l2"
        Penalty on the couplings: ``alpha/2 Σ_{i<j} J_ij²`` or
        ``alpha Σ_{i<j} |J_ij|`` (each edge counted once). Fields are not
        penalized.
    alpha : float, default=1e-2
        Strength of the penalty, on the scale of the mean (per sample)
        negative pseudo-log-likelihood summed over spins. The default was
        chosen on binarized digits (64 pixels, 1257 training images), where
        held-out log-likelihood / pseudo-log-likelihood were -18.90 / -15.21
        at 1e-4, -18.57 / -14.62 at 1e-2, -18.59 / -14.58 at 0.1 and
        -18.94 / -15.15 at 0.3 nats. ``alpha=0`` with ``penalty="l2"`` (and
        ``refit``) is unpenalized: when every observed spin is predicted by
        its fitted conditional (separable data), that problem has no finite
        optimum and a :class:`~sklearn.exceptions.ConvergenceWarning` says so.
    refit : bool, default=False
        After the penalized solve, refit the couplings that are nonzero
        without penalty, the others held at zero. With ``penalty="l1"`` this
        is the unbiased fit of the selected graph; with ``"l2"`` (no exact
        zeros) it is the unpenalized fit.
    binarize : float or None, default=None
        None: the input must be spins in {-1, +1} or bits in {0, 1} (mapped
        to spins; at score time, in the encoding of the training data), and
        anything else is a ValueError that names the value and its column. A
        float: a threshold, ``x > binarize`` becomes spin +1 and the rest -1
        (as in :class:`~sklearn.naive_bayes.BernoulliNB`). Samples come back
        in the training data's encoding, and in its dtype when that was an
        integer or boolean one.
    max_iter : int, default=1000
        Maximum number of quasi-Newton iterations (over the penalized solve
        and the refit together).
    tol : float, default=1e-6
        Stop when the KKT residual, the largest absolute entry of the
        minimum-norm (sub)gradient of the objective, is at most ``tol``.
    warm_start : bool, default=False
        Start the solver at the previous fit's parameters (e.g. along a path
        of decreasing ``alpha``) instead of at zero.
    log_partition_method : {"auto", "exact", "ais"}, default="auto"
        ``"exact"`` enumerates the ``2^d`` states (chunked; up to 30
        features); ``"ais"`` is annealed importance sampling from a mixture
        of independent Bernoullis fitted to the training data (components
        chosen by BIC, so that chains start in every mode the data has), one
        Gibbs sweep per temperature; ``"auto"`` enumerates up to 20 features.
        While the estimate is unreliable (fewer than 100 effective chains or
        heavy-tailed weights) its budget doubles, up to 16 times
        ``n_ais_chains x n_ais_steps``: more temperatures while under 10% of
        the chains are effective, more chains otherwise; past that a
        :class:`~skebm.exceptions.LogPartitionWarning` says so. An estimate
        below the exact lower bound given by the distinct training points is
        replaced by that bound, with a warning.
    n_ais_chains : int, default=256
        Annealed importance sampling chains (of the first batch); also the
        fewest chains :meth:`sample` anneals.
    n_ais_steps : int, default=200
        Annealing temperatures (one Gibbs sweep each), for log Z and for
        :meth:`sample`.
    n_sweeps : int, default=100
        Gibbs sweeps run by :meth:`sample` from where its chains start (the
        burn-in of persistent chains).
    scan : {"systematic", "random"}, default="systematic"
        Gibbs site order: in turn, or a random site per update.
    sampling_init : {"annealed", "noise", "data"}, default="annealed"
        Where :meth:`sample`'s chains start, which decides what they draw
        from: ``"annealed"``, annealed importance samples resampled by their
        weights (draws from the model, mode masses included); ``"noise"``,
        uniform random states (short-run chains: the model only once mixed);
        ``"data"``, training points (short-run chains that keep the data's
        mode masses).
    n_sampling_chains : int or None, default=None
        None: one chain per sample. An int: that many persistent chains,
        started as ``sampling_init`` says, run ``n_sweeps`` sweeps, then read
        after every further sweep.
    device : str, default="cpu"
        Torch device for fitting and scoring; the fitted model lives on the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds log Z estimation (AIS) and the chain starts of ``sampling_init``.
        The fit itself is deterministic.
    verbose : bool, default=False
        Print the objective at every solver iteration.

    Attributes
    ----------
    couplings_ : ndarray of shape (`n_features_in_`, `n_features_in_`)
        The fitted ``J``, symmetric with a zero diagonal, in the ±1 spin
        convention.
    fields_ : ndarray of shape (`n_features_in_`,)
        The fitted ``h``, in the ±1 spin convention.
    energy_ : IsingEnergy
        The fitted energy (on spin inputs), on the CPU.
    kkt_residual_ : float
        The KKT residual at the solution (at most ``tol`` when converged).
    log_partition_ : float
        log Z of ``exp(-energy_)`` over ``{-1, +1}^d``. Above 20 features,
        estimated on first access (as are the three attributes below).
    log_partition_std_ : float
        Its standard error (0 for enumeration).
    log_partition_ess_ : float
        Effective sample size of the importance weights behind a sampling
        estimate of log Z (``inf`` for exact methods). Below 100, or with
        heavy-tailed weights, a :class:`~skebm.exceptions.LogPartitionWarning`
        says that ``log_partition_std_`` cannot be trusted.
    log_partition_method_ : str
        ``"exact"`` or ``"ais"``.
    loss_curve_ : list of float
        Objective after each solver iteration (penalized solve, then refit).
    validation_loss_curve_ : None
        No data are held out by the full-batch solver.
    best_loss_ : float
        Final value of the objective that was minimized last.
    n_iter_ : int
        Solver iterations run.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    RatioMatchingBinary : Binary energies (including Boltzmann machines) by
        ratio matching.
    sklearn.covariance.GraphicalLasso : Sparse Gaussian graphical model.
    sklearn.neural_network.BernoulliRBM : Restricted Boltzmann machine.
    sklearn.neighbors.KernelDensity : Kernel density estimation.
    sklearn.mixture.GaussianMixture : Gaussian mixture density.

    Notes
    -----
    With :math:`a_i(\\sigma) = h_i + \\sum_{j \\ne i} J_{ij} \\sigma_j`, the
    conditional of one spin is
    :math:`p(\\sigma_i \\mid \\sigma_{-i}) = e^{\\sigma_i a_i} / (2\\cosh a_i)`,
    and the estimator minimizes the convex objective

    .. math::
        \\frac1n \\sum_{s=1}^n \\sum_{i=1}^d
        \\big[\\log 2\\cosh a_i(\\sigma^{(s)})
        - \\sigma^{(s)}_i a_i(\\sigma^{(s)})\\big] + P(J),

    with one symmetric :math:`J` shared by all conditionals (the joint
    pseudo-likelihood; the per-spin variant fits row ``i`` of :math:`J` from
    conditional ``i`` alone and gives different, asymmetric estimates), and
    :math:`P(J) = \\frac{\\alpha}{2} \\sum_{i<j} J_{ij}^2` or
    :math:`\\alpha \\sum_{i<j} |J_{ij}|`. A ridge of :math:`10^{-8}` on all
    parameters keeps the minimizer unique and finite when a spin is constant
    in the data. One evaluation of the objective and its gradient costs two
    ``(n, d) x (d, d)`` matrix products.

    References
    ----------
    .. [1] J. Besag, "Statistical analysis of non-lattice data", The
       Statistician 24(3), 1975.
    .. [2] E. Aurell and M. Ekeberg, "Inverse Ising inference using all the
       data", Physical Review Letters 108, 2012.
    .. [3] P. Ravikumar, M. J. Wainwright and J. D. Lafferty,
       "High-dimensional Ising model selection using l1-regularized logistic
       regression", Annals of Statistics 38(3), 2010.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm import PseudoLikelihoodIsing
    >>> rng = np.random.RandomState(0)
    >>> z = rng.choice([-1.0, 1.0], size=(2000, 1))
    >>> X = np.where(rng.rand(2000, 3) < 0.8, z, -z)  # three spins that agree
    >>> est = PseudoLikelihoodIsing().fit(X)
    >>> bool(np.all(est.couplings_[~np.eye(3, dtype=bool)] > 0.2))
    True
    >>> est.score_samples(X[:3]).shape
    (3,)
    >>> est.sample(4, random_state=0).shape
    (4, 3)
    """

    _values = _SPINS

    # The full-batch solver holds out no validation data; the base's fit
    # template reads this to leave ``validation_loss_curve_`` at None.
    early_stopping = False

    _parameter_constraints: dict = {
        **{
            k: v
            for k, v in _BaseBinaryEnergyDensity._parameter_constraints.items()
            if k not in _MINIBATCH_ONLY
        },
        "penalty": [StrOptions({"l2", "l1"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "refit": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def _supports_partial_fit(self):
        # The pseudo-likelihood solver (L-BFGS on all rows) has no minibatch
        # form whose batches add up exactly; see the user guide.
        return False

    def __init__(
        self,
        *,
        penalty="l2",
        alpha=1e-2,
        refit=False,
        binarize=None,
        max_iter=1000,
        tol=1e-6,
        warm_start=False,
        log_partition_method="auto",
        n_ais_chains=256,
        n_ais_steps=200,
        n_sweeps=100,
        scan="systematic",
        sampling_init="annealed",
        n_sampling_chains=None,
        device="cpu",
        random_state=None,
        verbose=False,
    ):
        self.penalty = penalty
        self.alpha = alpha
        self.refit = refit
        self.binarize = binarize
        self.max_iter = max_iter
        self.tol = tol
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

    def _objective(self):
        # The unpenalized objective, for reference: fit solves it (with the
        # penalty) in _closed_form_fit, never by minibatches.
        def negative_pseudo_log_likelihood(energy, x, *, generator=None):
            return -pseudo_log_likelihood(energy, x, values=_SPINS).mean()

        return negative_pseudo_log_likelihood

    def _build_energy(self, n_features, *, seed, device, dtype):
        previous = getattr(self, "energy_", None)
        if self.warm_start and previous is not None:
            if previous.n_features == n_features:
                return copy.deepcopy(previous).to(device=device, dtype=dtype)
        return IsingEnergy(n_features).to(device=device, dtype=dtype)

    def _closed_form_fit(self, energy, X, *, device, dtype):
        spins = torch.as_tensor(X, device=device, dtype=torch.float64)
        with torch.no_grad():
            h0 = to_numpy(energy.bias.double())
            J0 = to_numpy(energy.coupling_matrix().double())
        # numpy's BLAS runs the solver's products: as many threads as torch
        # uses (its own default, every core, busy-waited against torch's
        # threads on a loaded 2-core machine: the 4x4 lattice fit took
        # 5.6-12.8 s instead of 0.6 s).
        with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
            h, J, value, curve, n_iter, converged, kkt = _solve_pseudo_likelihood(
                spins,
                h0,
                J0,
                penalty=self.penalty,
                alpha=float(self.alpha),
                refit=self.refit,
                max_iter=self.max_iter,
                tol=float(self.tol),
                verbose=self.verbose,
            )
        if not (np.all(np.isfinite(h)) and np.all(np.isfinite(J))):
            raise ValueError(  # pragma: no cover - the objective is bounded below
                "The pseudo-likelihood solver produced non-finite parameters."
            )
        unpenalized = self.refit or (self.penalty == "l2" and self.alpha == 0)
        if unpenalized:
            self._warn_if_separable(X, h, J)
        energy.set_parameters(
            torch.as_tensor(h, device=device, dtype=dtype),
            torch.as_tensor(J, device=device, dtype=dtype),
        )
        self._kkt_residual = kkt
        return TrainingResult(
            loss_curve=curve,
            n_iter=n_iter,
            converged=converged,
            best_loss=value,
        )

    def _warn_if_separable(self, X, h, J):
        """Warn when the unpenalized problem has no finite optimum.

        The margins ``σ_i a_i`` of the observed spins are linear in the
        parameters: if every one is positive at the solution (constant spins
        left out, whose fields alone diverge, harmlessly), the parameters
        themselves are a direction along which the objective decreases
        forever, and the solver stopped only because the gradient fell
        below ``tol`` (the 1e-8 ridge holds the parameters). If only some
        spins are predicted perfectly, their couplings are as poorly
        determined.
        """
        varying = np.flatnonzero(X.min(0) != X.max(0))
        if varying.size == 0:
            return
        margins = X[:, varying] * (h[varying] + X @ J[:, varying])
        perfect = varying[np.all(margins > 0, axis=0)]
        recession = _has_recession_direction(X[:, varying])
        if recession is False:
            return
        if recession or perfect.size == varying.size:
            message = (
                "the unpenalized pseudo-likelihood has no finite optimum: "
                "every observed spin is predicted by its fitted conditional "
                "(the data are separable), so the couplings grow without bound "
                "as tol shrinks and stop only where the 1e-8 ridge holds them."
            )
        elif perfect.size:
            message = (
                f"the conditionals of spin(s) {perfect.tolist()[:10]} predict "
                "every observed value (separable): without a penalty their "
                "couplings are determined only by tol and the 1e-8 ridge."
            )
        else:
            return
        warnings.warn(
            f"{type(self).__name__}: {message} Set alpha > 0 (and refit=False) "
            "for a finite, well-determined fit.",
            ConvergenceWarning,
            stacklevel=7,
        )

    def _fit(self, X):
        super()._fit(X)
        with torch.no_grad():
            self.couplings_ = to_numpy(self.energy_.coupling_matrix()).astype(
                np.float64
            )
            self.fields_ = to_numpy(self.energy_.bias).astype(np.float64)
        self.kkt_residual_ = self.__dict__.pop("_kkt_residual")
        return self
