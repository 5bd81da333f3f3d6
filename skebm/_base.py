"""The shared base estimator (layer A): validation, the fit template, and
score / score_samples / sample / unnormalized_score_samples, written once."""

import copy
import math
import numbers
import warnings
from abc import ABC, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _persistence, _version, distributed
from ._callbacks import CallbackSupportMixin, Task
from ._torch_utils import (
    EVAL_CHUNK_SIZE,
    as_tensor,
    draw_seed,
    limit_threads,
    make_generator,
    numpy_dtype_for,
    resolve_device,
    to_numpy,
    torch_dtype_for,
)
from ._training import TrainingResult, train_minibatch
from .energies import (
    ACTIVATIONS,
    LinearInParametersEnergy,
    MLPEnergy,
    QuadraticEnergy,
)
from .exceptions import (  # InconsistentVersionWarning: re-exported
    InconsistentVersionWarning,  # noqa: F401
    LogPartitionWarning,
)
from .partition import (
    PartitionEstimate,
    log_partition_ais,
    log_partition_gaussian,
    log_partition_quadrature,
)
from .samplers import mala, random_walk_metropolis, sample_gaussian
from .samplers.continuous import has_input_gradient

# Rows of the training data kept to start sampling chains "from data".
_N_INIT_POINTS = 1000
# AIS starts from the data's Gaussian widened by this factor (in std): a base
# broader than the target keeps the importance weights' variance finite.
_AIS_BASE_WIDENING = 1.5
# Candidates per chain when "noise" starts are drawn inside a domain by rejection.
_NOISE_TRIES = 16


# Rows per chunk when summarizing the training data: the statistics are
# accumulated in float64 without a full-size temporary copy of X.
_STATS_CHUNK = 65536


def _column_statistics(X):
    """Mean, (biased) covariance, variance, min and max of the columns of X.

    One pass over row chunks in float64: peak extra memory is one chunk, not a
    copy of X (a float32 X of 10^6 rows stays the only large array).
    """
    n, d = X.shape
    total = np.zeros(d)
    for start in range(0, n, _STATS_CHUNK):
        total += X[start : start + _STATS_CHUNK].sum(0, dtype=np.float64)
    mean = total / n
    scatter = np.zeros((d, d))
    lower = np.full(d, np.inf)
    upper = np.full(d, -np.inf)
    for start in range(0, n, _STATS_CHUNK):
        chunk = np.asarray(X[start : start + _STATS_CHUNK], dtype=np.float64) - mean
        scatter += chunk.T @ chunk
        lower = np.minimum(lower, chunk.min(0))
        upper = np.maximum(upper, chunk.max(0))
    covariance = scatter / n
    return {
        "mean": mean,
        "covariance": covariance,
        "variance": np.diag(covariance).copy(),
        "min": lower + mean,
        "max": upper + mean,
    }


def _check_statistics_shape(energy, x):
    """``statistics(x)`` must be ``(n_samples, n_statistics)``."""
    n_statistics = energy.theta.numel()
    with torch.no_grad():
        t = energy.statistics(x[:2])
    if tuple(t.shape) != (x[:2].shape[0], n_statistics):
        raise ValueError(
            f"{type(energy).__name__}.statistics(x) must return one row of "
            f"n_statistics={n_statistics} values per sample: shape "
            f"({x[:2].shape[0]}, {n_statistics}) for input of shape "
            f"{tuple(x[:2].shape)}, but returned {tuple(t.shape)}. On "
            f"{x.shape[1]}-dimensional data a statistic such as x**2 has one "
            "column per feature: pass n_statistics to match, or reduce the "
            "columns (e.g. (x**2).sum(1, keepdim=True))."
        )


def _readable_parameters(energy):
    """Fitted parameters as numpy arrays, for the energies that have named ones."""
    with torch.no_grad():
        if isinstance(energy, QuadraticEnergy):
            return {
                "location_": to_numpy(energy.mean).astype(np.float64),
                "precision_": to_numpy(energy.precision()).astype(np.float64),
            }
        if isinstance(energy, LinearInParametersEnergy):
            return {"coef_": to_numpy(energy.theta).astype(np.float64)}
    return {}


# Fitted attributes that a fit may leave to their first use
# (_BaseEnergyDensity._defers_log_partition).
_DEFERRED_ATTRIBUTES = (
    "log_partition_",
    "log_partition_std_",
    "log_partition_ess_",
    "log_partition_method_",
)


def _warn_unreliable_log_partition(estimator, estimate, method):
    """Say that ``log_partition_std_`` cannot be trusted, and what to do."""
    name = type(estimator).__name__
    warnings.warn(
        LogPartitionWarning(
            f"{name}: the {method} estimate of log Z is unreliable: "
            f"{estimate.ess:.1f} effective samples out of {estimate.n_draws} "
            f"(Pareto tail index {estimate.pareto_k:.2f}), so log_partition_ "
            f"(and score) may be off by more than log_partition_std_ = "
            f"{estimate.stderr:.3g}. Increase n_ais_chains and n_ais_steps, or "
            "fit a base density closer to the model.",
            ess=estimate.ess,
            pareto_k=estimate.pareto_k,
        ),
        stacklevel=6,
    )


def _skebm_version():
    # Read at call time, so that a file records the running release.
    return _version.__version__


class _BaseEnergyDensity(CallbackSupportMixin, DensityMixin, BaseEstimator, ABC):
    """Base class of the continuous energy-based density estimators.

    A family fills small hooks: :meth:`_objective` (the training loss bound
    to its hyperparameters) and optionally :meth:`_closed_form_fit` (an exact
    solve where the objective is quadratic or convex). Fitting, log Z,
    sampling and scoring are shared.
    """

    # Energy names a family accepts as strings; subclasses may narrow or widen.
    _energy_names = ("mlp", "quadratic")

    _parameter_constraints: dict = {
        "energy": [StrOptions({"mlp", "quadratic"}), torch.nn.Module, None],
        "hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
        ],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "warm_start": ["boolean"],
        "log_partition_method": [
            StrOptions({"auto", "closed_form", "quadrature", "ais"})
        ],
        "n_ais_chains": [Interval(Integral, 2, None, closed="left")],
        "n_ais_steps": [Interval(Integral, 1, None, closed="left")],
        "n_sampling_steps": [Interval(Integral, 0, None, closed="left")],
        "sampling_init": [StrOptions({"data", "noise"})],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    @abstractmethod
    def __init__(
        self,
        *,
        energy=None,
        hidden_layer_sizes=(128, 128),
        activation="softplus",
        alpha=1e-4,
        batch_size=256,
        learning_rate_init=1e-3,
        max_iter=200,
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
        self.energy = energy
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
        self.n_sampling_steps = n_sampling_steps
        self.sampling_init = sampling_init
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _objective(self):
        """Return ``objective(energy, x, *, generator) -> scalar`` to minimize."""

    def _closed_form_fit(self, energy, X, *, device, dtype):
        """Solve exactly where possible; return a TrainingResult, or None to train."""
        return None

    def _validate_fit_data(self, X):
        """Family-specific checks of validated training data."""
        return X

    def _domain(self):
        """The support as a :class:`skebm.domains.Domain`, or None for all of R^d.

        Read once per fit and kept as ``domain_``: training data must lie in
        it, log Z integrates over it, samples stay in it, and the density is
        zero outside it.
        """
        return None

    def _outside_support(self, X):
        """Boolean mask of rows with zero density, or None (support is all R^d)."""
        domain = getattr(self, "domain_", None)
        if domain is None:
            return None
        return ~to_numpy(domain.contains(as_tensor(X)))

    def _sampling_constraint(self):
        """``contains(x_tensor) -> bool tensor`` for MALA, or None."""
        domain = getattr(self, "domain_", None)
        return None if domain is None else domain.contains

    # ------------------------------------------------------------ validation
    def _validate_X(self, X, *, reset):
        return validate_data(
            self, X, reset=reset, dtype=[np.float64, np.float32], ensure_min_samples=1
        )

    def _check_fit_X(self, X):
        X = validate_data(
            self, X, reset=not self._stream_continues(),
            dtype=[np.float64, np.float32], ensure_min_samples=2,
        )
        stats = _column_statistics(X)
        scale = np.maximum(np.abs(stats["mean"]), 1.0)
        constant = np.flatnonzero(np.sqrt(stats["variance"]) <= 1e-12 * scale)
        if constant.size:
            raise ValueError(
                f"{type(self).__name__} cannot fit a density to constant feature(s) "
                f"{constant.tolist()[:10]}: the density would be degenerate there. "
                "Drop them (e.g. sklearn.feature_selection.VarianceThreshold) "
                "before fitting."
            )
        return self._validate_fit_data(X)

    def _check_domain(self, X):
        """The resolved domain (or None), checked against the training data."""
        domain = self._domain()
        if domain is None:
            return None
        domain = copy.deepcopy(domain)
        domain.validate(X.shape[1])
        inside = to_numpy(domain.contains(as_tensor(X)))
        if not inside.all():
            outside = np.flatnonzero(~inside)
            prefix = (
                f"Negative values in data passed to {type(self).__name__}: "
                if self._positive_only()
                else ""
            )
            raise ValueError(
                f"{prefix}{outside.size} training sample(s) lie outside the domain "
                f"{domain!r} (first: row {outside[0]}). Every training point must "
                "lie in the domain; drop or correct those rows, or widen the domain."
            )
        return domain

    def _positive_only(self):
        """Whether the support is (a subset of) the non-negative orthant."""
        return False

    # ---------------------------------------------------------------- energy
    def _build_energy(self, n_features, *, seed, device, dtype):
        """A fresh energy module (or a deep copy of the user's one)."""
        if self._continues():
            if self.n_features_in_ == n_features:
                return copy.deepcopy(self.energy_).to(device=device, dtype=dtype)
        spec = "mlp" if self.energy is None else self.energy
        if isinstance(spec, torch.nn.Module):
            energy = copy.deepcopy(spec).to(device=device, dtype=dtype)
        elif spec not in self._energy_names:
            raise ValueError(
                f"energy={spec!r} is not available for {type(self).__name__}; "
                f"choose one of {list(self._energy_names)} or pass a torch.nn.Module."
            )
        else:
            generator = make_generator(seed, "cpu")
            energy = self._make_named_energy(spec, n_features, generator)
            energy = energy.to(device=device, dtype=dtype)
        return energy

    def _hidden_layer_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral):
            sizes = (sizes,)
        sizes = tuple(int(s) for s in sizes)
        if any(s < 1 for s in sizes):
            raise ValueError(
                f"hidden_layer_sizes must be positive, got {self.hidden_layer_sizes}."
            )
        return sizes

    def _make_named_energy(self, name, n_features, generator):
        if name == "mlp":
            return MLPEnergy(
                n_features,
                self._hidden_layer_sizes(),
                self.activation,
                generator=generator,
            )
        if name == "quadratic":
            return QuadraticEnergy(n_features)
        raise ValueError(f"Unknown energy {name!r}.")  # pragma: no cover

    @staticmethod
    def _check_energy_output(energy, X, *, device, dtype):
        x = as_tensor(X[:2], device=device, dtype=dtype)
        if isinstance(energy, LinearInParametersEnergy):
            _check_statistics_shape(energy, x)
        with torch.no_grad():
            try:
                out = energy(x)
            except RuntimeError as exc:
                raise ValueError(
                    f"The energy module {type(energy).__name__} failed on a batch "
                    f"of shape {tuple(x.shape)} (n_samples, n_features): {exc}"
                ) from exc
        if not isinstance(out, torch.Tensor) or out.shape != (x.shape[0],):
            shape = getattr(out, "shape", type(out).__name__)
            raise ValueError(
                "The energy module must map a tensor of shape (n_samples, "
                f"n_features) to one of shape (n_samples,); got {tuple(shape)} "
                f"for input {tuple(x.shape)}."
            )

    # ------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    @limit_threads
    def fit(self, X, y=None):
        """Fit the energy to the data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data. float32 input is fitted in float32, anything else
            in float64.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        # A failed fit (bad input, divergence) leaves the estimator as it was.
        snapshot = dict(self.__dict__)
        try:
            return self._fit(X)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(snapshot)
            raise

    def _supports_partial_fit(self):
        """Whether the energy is trained by a minibatch optimizer (families
        with a solver of their own override this)."""
        return True

    @available_if(lambda self: self._supports_partial_fit())
    @_fit_context(prefer_skip_nested_validation=True)
    @limit_threads
    def partial_fit(self, X, y=None):
        """Fit on one batch of a stream: one epoch over ``X``.

        For data larger than memory, fed batch by batch (by hand or by
        ``dask_ml.wrappers.Incremental``). The first call starts the model
        from ``X`` as :meth:`fit` would (a continuous model chooses and fits
        its base density on this batch), without a validation split; every
        call then runs one epoch of Adam over ``X``, continuing the
        optimizer's state. Closed forms are not used: the energy is trained
        by gradient. log Z is estimated on its first use after the last
        call; the data summary that sampling and log Z use (moments, ranges,
        chain starts) pools every batch seen.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One batch of training data.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The estimator, updated.
        """
        snapshot = dict(self.__dict__)
        self._streaming = True
        try:
            return self._fit(X)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(snapshot)
            raise
        finally:
            self.__dict__.pop("_streaming", None)

    def _continues(self):
        """Whether this fit continues the fitted model: under ``warm_start``,
        or a :meth:`partial_fit` after the first."""
        continuing = self.warm_start or self.__dict__.get("_streaming", False)
        return continuing and hasattr(self, "energy_")

    def _early_stopping(self):
        """``early_stopping``, off in :meth:`partial_fit` (one epoch, no split)."""
        return self.early_stopping and not self.__dict__.get("_streaming", False)

    def _stream_continues(self):
        """A :meth:`partial_fit` after the first: the columns are checked
        against the fitted ones, not learned anew."""
        return self.__dict__.get("_streaming", False) and self._continues()

    def _stream_so_far(self):
        """What the stream carried before this batch: batches and rows seen,
        the loss curve, Adam's state (None to start afresh)."""
        if not self._continues():
            return {"n_batches": 0, "n_samples": 0, "loss_curve": [], "optimizer": None}
        if "_stream" in self.__dict__:
            return {**self._stream, "loss_curve": list(self.loss_curve_)}
        # Continuing a fit(): its epochs; its rows, as far as the summary knows.
        return {
            "n_batches": self.n_iter_,
            "n_samples": len(self._fit_summary["init_points"]),
            "loss_curve": list(self.loss_curve_),
            "optimizer": None,
        }

    def _next_stream_state(self, n_samples, result):
        """What a stream carries from batch to batch, after this one."""
        if result.optimizer_state is None:
            raise ValueError(
                f"{type(self).__name__}.partial_fit needs an energy trained by "
                "gradient; this configuration has no training loop."
            )
        previous = self._stream_so_far()
        return {
            "n_batches": previous["n_batches"] + 1,
            "n_samples": previous["n_samples"] + n_samples,
            "loss_curve": previous["loss_curve"] + list(result.loss_curve),
            "optimizer": result.optimizer_state,
        }

    @staticmethod
    def _pooled_summary(old, new, n_old, n_new, rng):
        """The data summary of all batches so far, from the summaries of the
        rows before (``n_old``) and of this batch (``n_new``): pooled moments
        and ranges, and chain starts drawn from both in proportion."""
        total = n_old + n_new
        pooled = dict(old)
        if "mean" in old:
            w_old, w_new = n_old / total, n_new / total
            delta = new["mean"] - old["mean"]
            pooled["mean"] = old["mean"] + w_new * delta
            pooled["covariance"] = (
                w_old * old["covariance"] + w_new * new["covariance"]
                + w_old * w_new * np.outer(delta, delta)
            )
            pooled["lower"] = np.minimum(old["lower"], new["lower"])
            pooled["upper"] = np.maximum(old["upper"], new["upper"])
        if "marginals" in old:
            pooled["marginals"] = (
                n_old * old["marginals"] + n_new * new["marginals"]
            ) / total
        points = np.concatenate([old["init_points"], new["init_points"]])
        weights = np.r_[
            np.full(len(old["init_points"]), n_old / len(old["init_points"])),
            np.full(len(new["init_points"]), n_new / len(new["init_points"])),
        ]
        keep = min(len(points), max(len(old["init_points"]), len(new["init_points"])))
        chosen = rng.choice(len(points), keep, replace=False, p=weights / weights.sum())
        pooled["init_points"] = points[np.sort(chosen)]
        return pooled

    def _fit(self, X):
        streaming = self.__dict__.get("_streaming", False)
        stream_continues = streaming and self._continues()
        X = self._check_fit_X(X)
        distributed.check_fit(self, X)  # no-op outside data_parallel
        domain = self._check_domain(X)
        n_samples, n_features = X.shape
        device = resolve_device(self.device)
        dtype = torch_dtype_for(X.dtype)
        rng = check_random_state(self.random_state)
        if stream_continues:
            # Each batch its own seeds: new minibatch orders and objective noise.
            calls = self._stream_so_far()["n_batches"]
            rng = check_random_state((draw_seed(rng) + calls) % 2**32)
        seed_init, seed_train, seed_log_z = (draw_seed(rng) for _ in range(3))
        task = Task.root(self, X)

        energy, result, fitted = self._fit_energy(
            X, domain, seed_init=seed_init, seed_train=seed_train, device=device,
            dtype=dtype, task=task,
        )
        energy.eval()
        distributed.check_agree(energy, self)
        summary = self._data_summary(distributed.gathered(X), rng)
        stream = None
        if streaming:
            stream = self._next_stream_state(n_samples, result)
            if stream_continues:
                summary = self._pooled_summary(
                    self._fit_summary, summary, self._stream_so_far()["n_samples"],
                    n_samples, rng,
                )
        # A stream leaves log Z to its first use: not once per batch.
        deferred = self._defers_log_partition(n_features) or streaming
        if not deferred:
            log_z_task = task.subtask("log Z")
            estimate, method = self._estimate_log_partition(
                energy, summary, domain, seed=seed_log_z, device=device, dtype=dtype
            )
            log_z_task.end()
            self._check_log_partition(estimate, method)

        self.energy_ = energy.to("cpu")
        self.loss_curve_ = result.loss_curve
        self.validation_loss_curve_ = (
            result.validation_loss_curve if self._early_stopping() else None
        )
        self.best_loss_ = result.best_loss
        self.n_iter_ = result.n_iter
        if stream is not None:
            self.loss_curve_ = stream.pop("loss_curve")
            self.n_iter_ = stream["n_batches"]
            self._stream = stream
        else:
            self.__dict__.pop("_stream", None)
        if deferred:
            # Estimated on first use (see _DEFERRED_ATTRIBUTES): deterministic
            # from this seed whenever that happens, pickled with the model.
            self._deferred_log_partition = {"seed": seed_log_z}
            for name in _DEFERRED_ATTRIBUTES:
                self.__dict__.pop(name, None)
        else:
            self.__dict__.pop("_deferred_log_partition", None)
            self._set_log_partition(estimate, method)
        if "domain" in self.get_params(deep=False):
            self.domain_ = domain
        else:  # no domain parameter: the density lives on all of R^d
            self.__dict__.pop("domain_", None)
        self._fit_summary = summary
        self._fit_dtype = dtype
        for name, value in {**fitted, **_readable_parameters(self.energy_)}.items():
            setattr(self, name, value)
        task.end(X=X, fitted={})

        if not deferred and not estimate.reliable:
            _warn_unreliable_log_partition(self, estimate, method)
        if not result.converged and not streaming:
            warnings.warn(
                f"{type(self).__name__}: maximum iterations ({self.max_iter}) "
                "reached and the optimization hasn't converged yet. Increase "
                "max_iter or tol.",
                ConvergenceWarning,
                stacklevel=5,
            )
        return self

    def _fit_energy(self, X, domain, *, seed_init, seed_train, device, dtype, task):
        """Build and fit the energy: ``(energy, TrainingResult, fitted)``.

        ``fitted`` maps names of further fitted attributes to their values;
        they are set with the others at the end of ``fit``. ``task`` is the
        fit's callback task (see :mod:`skebm._callbacks`).
        """
        energy = self._build_energy(
            X.shape[1], seed=seed_init, device=device, dtype=dtype
        )
        self._check_energy_output(energy, X, device=device, dtype=dtype)
        result = None
        if not self.__dict__.get("_streaming", False):
            # A closed form solves on this X alone; a stream trains instead.
            result = self._closed_form_fit(energy, X, device=device, dtype=dtype)
        if result is not None:
            return energy, result, {}
        self._check_scale_for_training(X)
        train = {}
        if isinstance(energy, QuadraticEnergy):
            train = self._gaussian_training(energy, X, domain, seed_train)

        def snapshot(energy, result):
            # Without a base, log Z per epoch is known only for a Gaussian;
            # otherwise the objective is what a callback can read.
            log_z = math.nan
            if isinstance(energy, QuadraticEnergy) and domain is None:
                with torch.no_grad():
                    log_z = log_partition_gaussian(energy.precision().double())[0]
            return {
                "energy_": copy.deepcopy(energy).to("cpu", dtype),
                "log_partition_": log_z,
                "loss_curve_": list(result.loss_curve),
                "validation_loss_curve_": list(result.validation_loss_curve),
                "_fit_dtype": dtype,
                "domain_": domain,
            }

        rows = train.pop("rows", slice(None))
        result = self._train(
            energy, self._objective(), X[rows], seed=seed_train, device=device,
            dtype=dtype, task=task, snapshot=snapshot, **train,
        )
        return energy, result, {}

    def _gaussian_training(self, energy, X, domain, seed):
        """Start a trained Gaussian at the data's mean and variances, and on
        R^d choose its epochs by held-out log-likelihood (log Z in closed form).

        The objectives are noisy: early stopping on a validation objective
        stopped sliced score matching 0.35 nats short of the maximum-likelihood
        Gaussian; the likelihood of a Gaussian is exact and cheap.
        """
        fresh = not self._continues()
        if fresh and not isinstance(self.energy, torch.nn.Module):
            stats = _column_statistics(X)
            variance = np.maximum(stats["variance"], 1e-12 * stats["variance"].max())
            like = dict(dtype=energy.mean.dtype, device=energy.mean.device)
            energy.set_gaussian(
                torch.as_tensor(stats["mean"], **like),
                torch.diag(torch.as_tensor(1.0 / variance, **like)),
            )
        if domain is not None or not self._early_stopping():
            return {}
        perm = np.random.default_rng(seed).permutation(len(X))
        n_val = max(1, int(round(self.validation_fraction * len(X))))
        if len(X) - n_val < 1:
            return {}
        rows, val = np.sort(perm[n_val:]), np.sort(perm[:n_val])
        x_val = as_tensor(X[val], device=energy.mean.device, dtype=energy.mean.dtype)

        def monitor(energy):
            log_z, _ = log_partition_gaussian(energy.precision().double())
            return -energy(x_val) - log_z, 0.0

        return {
            "rows": rows,
            "monitor": monitor,
            "monitor_margin": 0.0,
            "score_X": X[val],
        }

    def _train(
        self,
        energy,
        objective,
        X,
        *,
        seed,
        device,
        dtype,
        task=None,
        task_name="training",
        score_X=None,
        snapshot=None,
        **overrides,
    ):
        """:func:`train_minibatch` with the estimator's training parameters.

        Each epoch is a callback task under a ``training`` task of ``task``;
        ``snapshot(energy, result)`` gives the fitted attributes of the model
        at an epoch, for callbacks that evaluate it (on ``score_X``, the
        held-out rows where known, else ``X``).
        """
        options = dict(
            batch_size=self.batch_size,
            learning_rate_init=self.learning_rate_init,
            alpha=self.alpha,
            max_iter=self.max_iter,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            early_stopping=self.early_stopping,
            validation_fraction=self.validation_fraction,
            verbose=self.verbose,
        )
        options.update(overrides)
        if self.__dict__.get("_streaming", False):
            # partial_fit: one epoch over the batch, Adam's state carried over.
            options.update(
                max_iter=1, early_stopping=False, monitor=None,
                optimizer_state=self._stream_so_far()["optimizer"],
            )
        if options["max_iter"] == 0:
            # Zero epochs (cross-fitting chose the base alone): nothing to run.
            return TrainingResult(converged=True)
        task = Task(self, None) if task is None else task
        training = task.subtask(task_name, max_subtasks=options["max_iter"])
        epochs = {}

        def on_epoch_begin(epoch):
            epochs[epoch] = training.subtask("epoch")

        def on_epoch_end(epoch, energy, result):
            fitted = None
            if snapshot is not None:
                fitted = lambda: snapshot(energy, result)  # noqa: E731 (lazy)
            return epochs.pop(epoch).end(
                X=X if score_X is None else score_X, fitted=fitted
            )

        if training.context is not None:
            options.update(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end)
        result = train_minibatch(
            energy,
            objective,
            X,
            seed=seed,
            device=device,
            dtype=dtype,
            name=type(self).__name__,
            **options,
        )
        training.end()
        return result

    # Trained energies (unlike closed forms, which are affine-equivariant) assume
    # features of order one: an MLP's initialisation and Adam's step size do.
    _MAX_TRAINING_SCALE = 1e4

    def _check_scale_for_training(self, X):
        stats = _column_statistics(X)
        std = np.sqrt(stats["variance"])
        scale = np.maximum(std, np.abs(stats["mean"]))
        limit = self._MAX_TRAINING_SCALE
        bad = np.flatnonzero((scale > limit) | (std < 1.0 / limit))
        if bad.size:
            raise ValueError(
                f"{type(self).__name__} trains its energy by gradient descent, which "
                "needs features of order one, but feature(s) "
                f"{bad.tolist()[:10]} have standard deviation "
                f"{std[bad][:3].tolist()} and mean {stats['mean'][bad][:3].tolist()}. "
                "Standardize the data first, e.g. "
                "make_pipeline(StandardScaler(), estimator)."
            )

    def _data_summary(self, X, rng):
        """Statistics of the data kept for log Z and sampling (CPU, numpy)."""
        stats = _column_statistics(X)
        d = X.shape[1]
        cov = stats["covariance"]
        cov = cov + 1e-6 * np.trace(cov) / d * np.eye(d)
        n_init = min(_N_INIT_POINTS, len(X))
        init = np.asarray(X[np.sort(rng.choice(len(X), n_init, replace=False))],
                          dtype=np.float64)
        return {
            "mean": stats["mean"],
            "covariance": cov,
            "lower": stats["min"],
            "upper": stats["max"],
            "init_points": init,
        }

    # ----------------------------------------------------------------- log Z
    def _estimate_log_partition(self, energy, summary, domain, *, seed, device, dtype):
        method = self.log_partition_method
        d = summary["mean"].shape[0]
        if method == "auto":
            if isinstance(energy, QuadraticEnergy) and domain is None:
                method = "closed_form"
            elif d <= 2:
                method = "quadrature"
            else:
                method = "ais"
        if method == "closed_form":
            if not isinstance(energy, QuadraticEnergy) or domain is not None:
                raise ValueError(
                    "log_partition_method='closed_form' needs energy='quadratic' "
                    "and no domain; use 'quadrature' (d <= 2), 'ais' or 'auto'."
                )
            with torch.no_grad():
                estimate = log_partition_gaussian(energy.precision().double())
            return PartitionEstimate(*estimate), method
        # Numerical methods run in float64: log Z is a sum of many terms.
        energy64 = copy.deepcopy(energy).to(dtype=torch.float64)
        mean = torch.as_tensor(summary["mean"], device=device, dtype=torch.float64)
        if method == "quadrature":
            if d > 2:
                raise ValueError(
                    f"log_partition_method='quadrature' is only available for "
                    f"n_features <= 2, got {d}; use 'ais'."
                )
            lower = torch.as_tensor(
                summary["lower"], device=device, dtype=torch.float64
            )
            upper = torch.as_tensor(
                summary["upper"], device=device, dtype=torch.float64
            )
            span = torch.clamp(upper - lower, min=1e-12)
            estimate = log_partition_quadrature(
                energy64, lower - span, upper + span, domain=domain
            )
            return PartitionEstimate(*estimate), method
        cov = torch.as_tensor(summary["covariance"], device=device, dtype=torch.float64)
        generator = make_generator(seed, device)
        estimate = log_partition_ais(
            energy64,
            mean,
            cov * _AIS_BASE_WIDENING**2,
            domain=domain,
            n_chains=self.n_ais_chains,
            n_steps=self.n_ais_steps,
            generator=generator,
        )
        return estimate, method

    def _defers_log_partition(self, n_features):
        """Whether ``fit`` leaves log Z to its first use (see ``__getattr__``).

        The continuous estimators estimate it in ``fit``: from their base it
        is a small share of the fit, and a non-normalizable energy must fail
        there."""
        return False

    def _check_log_partition(self, estimate, method):
        log_z, log_z_std = estimate
        if not math.isfinite(log_z):
            raise ValueError(
                f"The fitted energy is not normalizable: log Z estimated by {method} "
                f"is {log_z}. Try a larger alpha, fewer epochs, or standardized data."
            )
        if self.verbose:
            print(f"log Z = {log_z:.6f} +/- {log_z_std:.2g} ({method})")

    def _set_log_partition(self, estimate, method):
        self.log_partition_ = estimate[0]
        self.log_partition_std_ = estimate[1]
        self.log_partition_ess_ = estimate.ess
        self.log_partition_method_ = method

    def __getattr__(self, name):
        # Only reached when normal lookup fails: a log Z attribute of a fit
        # that deferred it is estimated now, once, and then stored as a plain
        # attribute. Everything else (and anything during unpickling, when
        # __dict__ is still empty) is a normal AttributeError.
        job = self.__dict__.get("_deferred_log_partition")
        if name not in _DEFERRED_ATTRIBUTES or job is None:
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute '{name}'"
            )
        self._estimate_deferred_log_partition(job)
        return self.__dict__[name]

    @limit_threads
    def _estimate_deferred_log_partition(self, job):
        device = resolve_device(self.device, strict=False)
        energy = (
            self.energy_
            if device.type == "cpu"
            else copy.deepcopy(self.energy_).to(device)
        )
        # A copy of the kept summary, which the estimate may extend: an
        # interrupted estimate leaves the model as it was.
        summary = dict(self._fit_summary)
        estimate, method = self._estimate_log_partition(
            energy, summary, getattr(self, "domain_", None), seed=job["seed"],
            device=device, dtype=self._fit_dtype,
        )
        self._check_log_partition(estimate, method)
        self._fit_summary = summary
        self._set_log_partition(estimate, method)
        self.__dict__.pop("_deferred_log_partition", None)
        if not estimate.reliable:
            _warn_unreliable_log_partition(self, estimate, method)

    # -------------------------------------------------------------- scoring
    def __sklearn_is_fitted__(self):
        state = vars(self)
        return "energy_" in state and (
            "log_partition_" in state or "_deferred_log_partition" in state
        )

    def _eval_negative_energy(self, X):
        device = resolve_device(self.device, strict=False)
        dtype = self._fit_dtype
        # Scoring must not mutate the fitted model (threads may share it).
        energy = (
            self.energy_
            if device.type == "cpu"
            else copy.deepcopy(self.energy_).to(device)
        )
        out = np.empty(X.shape[0], dtype=numpy_dtype_for(dtype))
        with torch.no_grad():
            for start in range(0, X.shape[0], EVAL_CHUNK_SIZE):
                xb = as_tensor(
                    X[start : start + EVAL_CHUNK_SIZE], device=device, dtype=dtype
                )
                out[start : start + EVAL_CHUNK_SIZE] = to_numpy(-energy(xb))
        return out

    @limit_threads
    def unnormalized_score_samples(self, X):
        """Unnormalized log-density ``-E(x)`` of each sample.

        Equal to :meth:`score_samples` plus ``log_partition_``; needs no
        estimate of log Z, so it is exact.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        neg_energy : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._masked(X, self._eval_negative_energy(X))

    def _masked(self, X, values):
        outside = self._outside_support(X)
        if outside is not None and outside.any():
            values = values.copy()
            values[outside] = -np.inf
        return values

    @limit_threads
    def score_samples(self, X):
        """Log-density of each sample, normalized with ``log_partition_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
            ``-E(x) - log_partition_``; ``-inf`` outside the support.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._masked(X, self._eval_negative_energy(X) - self.log_partition_)

    def score(self, X, y=None):
        """Mean log-likelihood per sample (as ``GaussianMixture.score``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        log_likelihood : float
        """
        return float(np.mean(self.score_samples(X)))

    # -------------------------------------------------------------- sampling
    @limit_threads
    def sample(self, n_samples=1, random_state=None):
        """Draw samples from the fitted density.

        Quadratic energies are sampled exactly. Other energies run
        ``n_sampling_steps`` MALA steps (step size adapted during the first
        half; random-walk Metropolis for energies without input gradients)
        from the starts ``sampling_init`` names: by default draws from the
        base density (or a wide Gaussian) resampled by their importance
        weights, which carry the model's mass in every mode, so that the steps
        only refine them; ``"data"`` and ``"noise"`` start at training points
        or at draws from the data's Gaussian, where short chains reproduce
        their starts (the data's mode masses, say) rather than the model.

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
        seed = draw_seed(rng)
        device = resolve_device(self.device, strict=False)
        dtype = self._fit_dtype
        generator = make_generator(seed, device)
        energy = copy.deepcopy(self.energy_).to(device)
        x = self._draw(
            energy, int(n_samples), rng=rng, generator=generator, device=device,
            dtype=dtype,
        )
        return to_numpy(x.detach()).astype(numpy_dtype_for(dtype), copy=False)

    def _draw(self, energy, n_samples, *, rng, generator, device, dtype):
        """``n_samples`` draws of the fitted model, a tensor (see :meth:`sample`)."""
        if isinstance(energy, QuadraticEnergy) and self._sampling_constraint() is None:
            with torch.no_grad():
                precision = energy.precision()
                covariance = torch.linalg.inv(precision)
                covariance = 0.5 * (covariance + covariance.T)
                return sample_gaussian(
                    energy.mean, covariance, n_samples, generator=generator
                )
        x0 = self._chain_starts(
            energy, n_samples, rng=rng, generator=generator, device=device,
            dtype=dtype,
        )
        return self._run_chains(energy, x0, self.n_sampling_steps, generator)

    def _run_chains(self, energy, x0, n_steps, generator):
        """``n_steps`` MALA steps from ``x0`` (random-walk Metropolis for an
        energy without input gradients: energy discrepancy trains such ones)."""
        scale = float(np.mean(np.diag(self._fit_summary["covariance"])))
        chain = mala if has_input_gradient(energy, x0) else random_walk_metropolis
        x, _, _ = chain(
            energy,
            x0,
            n_steps=n_steps,
            step_size=0.05 * scale,
            generator=generator,
            contains=self._sampling_constraint(),
        )
        return x

    def _chain_starts(self, energy, n_samples, *, rng, generator, device, dtype):
        """Where :meth:`sample`'s MALA chains start (``sampling_init``)."""
        if self.sampling_init == "noise":
            return self._noise_init(n_samples, rng, generator, device, dtype)
        init = self._fit_summary["init_points"]
        idx = rng.randint(len(init), size=n_samples)
        return torch.as_tensor(init[idx], device=device, dtype=dtype)

    def _noise_init(self, n_samples, rng, generator, device, dtype):
        """Chain starts drawn from the data's Gaussian, restricted to the domain.

        On a domain, ``_NOISE_TRIES`` candidates per chain are drawn at once and
        the first one inside is kept (rejection sampling from the restricted
        Gaussian); a chain with none inside starts at a training point.
        """
        summary = self._fit_summary
        mean = torch.as_tensor(summary["mean"], device=device, dtype=dtype)
        cov = torch.as_tensor(summary["covariance"], device=device, dtype=dtype)
        contains = self._sampling_constraint()
        if contains is None:
            return sample_gaussian(mean, cov, n_samples, generator=generator)
        d = mean.shape[0]
        candidates = sample_gaussian(
            mean, cov, _NOISE_TRIES * n_samples, generator=generator
        )
        inside = contains(candidates).reshape(_NOISE_TRIES, n_samples)
        candidates = candidates.reshape(_NOISE_TRIES, n_samples, d)
        first = inside.to(torch.int8).argmax(0)
        x0 = candidates[first, torch.arange(n_samples, device=device)]
        none_inside = to_numpy(~inside.any(0))
        if none_inside.any():
            init = summary["init_points"]
            idx = rng.randint(len(init), size=int(none_inside.sum()))
            x0[torch.as_tensor(none_inside, device=device)] = torch.as_tensor(
                init[idx], device=device, dtype=dtype
            )
        return x0

    def __getstate__(self):
        # Modules and tensors as data (see skebm._persistence): the same state
        # for pickle and for skops.io, whose loader builds only trusted types.
        state = super().__getstate__()
        if isinstance(state, dict):
            state = dict(
                _persistence.to_data(state),
                _skebm_version=_skebm_version(),
                _torch_version=torch.__version__,
            )
        return state

    def __setstate__(self, state):
        original = state.pop("_skebm_version", "pre-0.1")
        state.pop("_torch_version", None)
        if original != _skebm_version():
            warnings.warn(
                InconsistentVersionWarning(
                    estimator_name=type(self).__name__,
                    original_version=original,
                    current_version=_skebm_version(),
                ),
                stacklevel=2,
            )
        _persistence.check_attribute_names(type(self), state)
        super().__setstate__(_persistence.from_data(state))

    def _check_loaded(self):
        """Check that a loaded model's parts fit together (``skebm.io.load``).

        The shapes of the kept data against ``n_features_in_``, then one
        evaluation of the energy on two kept training points, which must be
        finite: a tensor of the wrong shape fails here, not at first use.
        """
        self._validate_params()
        d = self.n_features_in_
        if not isinstance(d, numbers.Integral) or d < 1:
            raise ValueError(f"n_features_in_ is {d!r}")
        if not isinstance(self.energy_, torch.nn.Module):
            raise ValueError(f"energy_ is a {type(self.energy_).__name__}")
        if self._fit_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"the fit's dtype is {self._fit_dtype!r}")
        summary = self._fit_summary
        shapes = {"mean": (d,), "lower": (d,), "upper": (d,), "marginals": (d,),
                  "covariance": (d, d)}
        for key, shape in shapes.items():
            if key in summary and np.shape(summary[key]) != shape:
                raise ValueError(
                    f"the kept {key} has shape {np.shape(summary[key])}, not {shape}"
                )
        init = np.asarray(summary["init_points"])
        if init.ndim != 2 or init.shape[1] != d or len(init) < 1:
            raise ValueError(f"the kept training points have shape {init.shape}")
        if "_deferred_log_partition" not in vars(self):
            log_z = self.log_partition_
            if not isinstance(log_z, numbers.Real) or not math.isfinite(log_z):
                raise ValueError(f"log_partition_ is {log_z!r}")
        values = self._eval_negative_energy(
            init[:2].astype(numpy_dtype_for(self._fit_dtype))
        )
        if values.shape != (min(2, len(init)),) or not np.all(np.isfinite(values)):
            raise ValueError(
                f"the energy of two training points is {values!r}, not two finite "
                "numbers"
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags
