"""The base class of the continuous estimators (layer A): a fitted base density
corrected by a learned energy.

With ``base`` set (the default), the model is ``log p = log q - f - log Z_f``:
``q`` a Gaussian mixture chosen and fitted first (``base_``), ``f`` the
trained network, whose output starts at zero. Epochs are chosen by held-out
log-likelihood (``Z_f`` by importance sampling from ``q``, epoch 0 = ``q``
included), ``log_partition_`` is ``log Z_f`` by importance sampling from ``q``
(AIS from ``q`` when that has too few effective samples), and ``sample``
resamples draws from ``q`` by their weights before its MALA steps.
"""

import copy
import math
import numbers
import warnings
from functools import partial

import numpy as np
import torch
from sklearn.mixture._base import BaseMixture
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import _AIS_BASE_WIDENING, _BaseEnergyDensity
from ._mixture_base import describe_base, fit_base, mixture_to_torch, select_base
from ._torch_utils import EVAL_CHUNK_SIZE, as_tensor, make_generator
from .base_densities import BaseCorrectedEnergy, GaussianMixtureBase
from .distributed import total_count
from .domains import Box, Domain, Orthant
from .energies import LinearInParametersEnergy, MLPEnergy, QuadraticEnergy
from .exceptions import CorrectionDiscardedWarning
from .partition import PartitionEstimate, log_partition_ais, log_partition_importance
from .samplers import importance_resample, systematic_resample

# Fewer validation rows than this: choose the epochs (and the base) by
# cross-fitting over _N_CROSS_FIT_FOLDS folds instead of one split, so that no
# decision rests on a handful of points.
_MIN_VALIDATION_ROWS = 100
_N_CROSS_FIT_FOLDS = 5
# Fixed importance draws from the base behind each epoch's validation
# log-likelihood (the same draws every epoch, so epochs compare fairly).
_MONITOR_DRAWS = 4096
# The "mlp" correction's output is bounded by this many nats: the model's
# density ratio to its base stays within exp(+-4), so the importance weights
# from the base are bounded (at worst exp(8) apart) and their estimate of log Z
# stays reliable; unbounded, a correction learned in 30 dimensions put weights
# of exp(20) in the base's tails and log Z was off by 2 nats.
CORRECTION_BOUND = 4.0
# log Z_f by importance sampling from the base: first batch and limit.
_IMPORTANCE_DRAWS = 16384
# sample(): fewest base draws that are resampled, and the MALA steps between
# two checks whether the repeated draws have separated.
_MIN_RESAMPLING_CANDIDATES = 4096
_SEPARATION_STEPS = 10
_MAX_IMPORTANCE_DRAWS = 262144


def _evaluate(module, x):
    return torch.cat([module(chunk) for chunk in x.split(EVAL_CHUNK_SIZE)])


class _LikelihoodMonitor:
    """``correction -> (validation log-likelihoods, variance of log Z)``.

    The model is ``q exp(-f) / Z_f``, with ``Z_f`` estimated from fixed draws
    of ``q``: the epochs are compared on the same draws, and the untrained
    correction (``f = 0``) scores exactly ``q``'s validation log-likelihood.
    The last estimate of ``log Z_f`` is kept as ``log_z``.
    """

    def __init__(self, base, X_val, domain, *, seed, device, dtype):
        generator = make_generator(seed, device)
        self.draws = base.sample(_MONITOR_DRAWS, generator=generator)
        self.inside = None if domain is None else domain.contains(self.draws)
        self.x_val = as_tensor(X_val, device=device, dtype=dtype)
        with torch.no_grad():
            self.log_q_val = _evaluate(base, self.x_val)
        self.log_z = 0.0

    def __call__(self, correction):
        neg_f = -_evaluate(correction, self.draws)
        if self.inside is not None:
            neg_f = torch.where(self.inside, neg_f, -math.inf)
        log_z = torch.logsumexp(neg_f, 0) - math.log(len(self.draws))
        self.log_z = float(log_z)
        # Delta-method variance of log Z: var(w) / (n mean(w)^2).
        w = torch.exp(neg_f - log_z)
        log_z_variance = float(w.var()) / len(w) if len(w) > 1 else 0.0
        scores = self.log_q_val - _evaluate(correction, self.x_val) - log_z
        return scores, log_z_variance


class _BaseContinuousDensity(_BaseEnergyDensity):
    """Continuous estimators: the ``base`` density and what it makes cheap."""

    # Epochs are ranked by gain over the base minus this many standard errors:
    # on 200 validation points the best-looking epoch was up to 0.01 nats
    # worse than the base on test data; a gain must be clear to be kept.
    _MONITOR_MARGIN = 2.0

    _parameter_constraints: dict = {
        **_BaseEnergyDensity._parameter_constraints,
        "base": [StrOptions({"gmm", "gaussian"}), BaseMixture, None],
        "log_partition_method": [
            StrOptions(
                {"auto", "closed_form", "quadrature", "importance_sampling", "ais"}
            )
        ],
        "sampling_init": [StrOptions({"auto", "base", "data", "noise"})],
    }

    def _corrects_base(self):
        """Whether the energy is trained as a correction of a base density.

        Quadratic and linear-in-parameters energies are complete models with
        closed forms: they use no base.
        """
        if self.base is None:
            return False
        spec = self.energy
        if isinstance(spec, str):
            return spec == "mlp"
        return not isinstance(spec, QuadraticEnergy | LinearInParametersEnergy)

    def _make_named_energy(self, name, n_features, generator):
        if name == "mlp" and self._corrects_base():
            return MLPEnergy(
                n_features,
                self._hidden_layer_sizes(),
                self.activation,
                generator=generator,
                confining=False,
                zero_output=True,
                output_bound=CORRECTION_BOUND,
            )
        return super()._make_named_energy(name, n_features, generator)

    # ------------------------------------------------------------------- fit
    def _validation_folds(self, n_samples, seed):
        """``[(train, validation)]``: one split, or folds for small data."""
        perm = np.random.default_rng(seed).permutation(n_samples)
        n_val = max(1, int(round(self.validation_fraction * n_samples)))
        if total_count(n_val) >= _MIN_VALIDATION_ROWS:  # all ranks' rows
            return [(np.sort(perm[n_val:]), np.sort(perm[:n_val]))]
        n_folds = min(_N_CROSS_FIT_FOLDS, n_samples)
        parts = np.array_split(perm, n_folds)
        return [
            (np.sort(np.concatenate(parts[:i] + parts[i + 1 :])), np.sort(part))
            for i, part in enumerate(parts)
        ]

    def _fit_energy(self, X, domain, *, seed_init, seed_train, device, dtype, task):
        if not self._corrects_base():
            return super()._fit_energy(
                X,
                domain,
                seed_init=seed_init,
                seed_train=seed_train,
                device=device,
                dtype=dtype,
                task=task,
            )
        self._check_scale_for_training(X)
        folds = self._validation_folds(X.shape[0], seed_train)
        previous = self._previous_fit(X.shape[1])
        if previous is not None:
            base_fitted, correction = previous
            mixture = None
        else:
            base_task = task.subtask("base density")
            mixture = select_base(self.base, X, seed=seed_init)
            base_task.end()
            base_fitted = correction = None

        # The correction trains in float32 whatever the data's dtype: twice as
        # fast as float64 on the CPU at the same held-out likelihood; the
        # fitted model is then evaluated in the data's dtype.
        train_dtype = torch.float32

        def fit_correction(rows, val_rows, base_fitted, correction, **train):
            """Train a correction of ``base_fitted`` on ``X[rows]``."""
            base = mixture_to_torch(base_fitted).to(device=device, dtype=train_dtype)
            if correction is None:
                correction = self._build_energy(
                    X.shape[1], seed=seed_init, device=device, dtype=train_dtype
                )
                self._check_energy_output(
                    correction, X, device=device, dtype=train_dtype
                )
            correction = correction.to(device=device, dtype=train_dtype)
            monitor = None
            if val_rows is not None:
                monitor = _LikelihoodMonitor(
                    base,
                    X[val_rows],
                    domain,
                    seed=seed_train,
                    device=device,
                    dtype=train_dtype,
                )
                train.update(monitor=monitor, monitor_margin=self._MONITOR_MARGIN)

            def snapshot(correction, result):
                # The model at an epoch, for callbacks that score it; its log Z
                # is the validation monitor's estimate.
                base64 = mixture_to_torch(base_fitted).to(dtype=dtype)
                return {
                    "energy_": BaseCorrectedEnergy(
                        base64, copy.deepcopy(correction).to("cpu", dtype)
                    ),
                    "log_partition_": math.nan if monitor is None else monitor.log_z,
                    "loss_curve_": list(result.loss_curve),
                    "validation_scores_": list(result.validation_score_curve),
                    "_fit_dtype": dtype,
                    "domain_": domain,
                }

            result = self._train(
                correction,
                partial(self._objective(), base=base),
                X[rows],
                seed=seed_train,
                device=device,
                dtype=train_dtype,
                task=task,
                score_X=None if val_rows is None else X[val_rows],
                snapshot=snapshot,
                **train,
            )
            return correction, result

        base_fitted, correction, result = self._fit_on_splits(
            X, folds, mixture, base_fitted, correction, fit_correction
        )
        base = mixture_to_torch(base_fitted).to(device=device, dtype=dtype)
        fitted = self._validation_attributes(base_fitted, result)
        kept = fitted["n_epochs_kept_"]
        energy = BaseCorrectedEnergy(
            base, correction.to(dtype=dtype), corrected=kept is None or kept > 0
        )
        if kept == 0:
            self._warn_correction_discarded(base_fitted, result, domain)
        return energy, result, fitted

    def _fit_on_splits(
        self, X, folds, mixture, base_fitted, correction, fit_correction
    ):
        """Fit a base and its correction as ``early_stopping`` asks.

        Without early stopping, on all of ``X``; with one validation split
        (or under ``warm_start``), on its training rows; else by
        cross-fitting (:meth:`_cross_fit`). ``mixture`` is the unfitted base,
        fitted here on the rows trained on; None keeps ``base_fitted`` (warm
        start). ``fit_correction(rows, val_rows, base_fitted, correction,
        **train)`` trains one correction. Returns ``(base_fitted, correction,
        TrainingResult)``.
        """
        early_stopping = self._early_stopping()
        if early_stopping and len(folds) > 1 and mixture is not None:
            return self._cross_fit(X, folds, mixture, fit_correction)
        rows, val_rows = folds[0] if early_stopping else (np.arange(len(X)), None)
        if mixture is not None:
            base_fitted = fit_base(mixture, X[rows])
        correction, result = fit_correction(rows, val_rows, base_fitted, correction)
        return base_fitted, correction, result

    @staticmethod
    def _validation_attributes(base_fitted, result):
        """The fitted attributes of a base and of the epochs' selection.

        ``n_epochs_kept_`` and ``correction_gain_`` (held-out nats per sample
        over the base) are None when no epochs were selected (no early
        stopping: every epoch is kept).
        """
        scores = result.validation_score_curve or None
        kept = None if scores is None else int(result.best_iter)
        return {
            "base_": base_fitted,
            # Epochs are chosen by log-likelihood, not by a validation loss.
            "validation_loss_curve_": None,
            "validation_scores_": scores,
            "best_validation_score_": None if scores is None else scores[kept],
            "n_epochs_kept_": kept,
            "correction_gain_": None if scores is None else scores[kept] - scores[0],
        }

    def _warn_correction_discarded(self, base_fitted, result, domain):
        scores = np.asarray(result.validation_score_curve)
        stderr = np.asarray(result.validation_gain_stderr)
        best = int(np.argmax(scores))
        warnings.warn(
            f"{type(self).__name__}: no training epoch beat the base density "
            f"({describe_base(base_fitted)}) on held-out data (best epoch "
            f"{best}: {scores[best] - scores[0]:+.4f} +/- {stderr[best]:.4f} "
            "nats per sample), so the correction was discarded and the model "
            + (
                "is its base: log_partition_ = 0"
                if domain is None
                else "is its base restricted to the domain"
            )
            + ", and the network's parameters had no effect on this fit. The "
            "base may already fit as well as this data supports; see the user "
            "guide on base densities.",
            CorrectionDiscardedWarning,
            stacklevel=7,  # the caller of fit
        )

    def _cross_fit(self, X, folds, mixture, fit_correction):
        """Choose the number of epochs over all folds, then refit on all of X.

        Each fold trains a correction of its own base on the other folds and
        records its held-out log-likelihood after each epoch; the epochs
        whose total over the folds (every row held out once) is best are
        then run on all the data. Zero epochs (the base alone) is a candidate.
        """
        curves, variances, converged = [], [], True
        n_rows = total_count(len(X))  # all ranks' rows in data_parallel
        for train, val in folds:
            _, result = fit_correction(
                train, val, fit_base(mixture, X[train]), None, task_name="cross-fit"
            )
            converged = converged and result.converged
            n_val = total_count(len(val))
            curves.append(np.asarray(result.validation_score_curve) * n_val)
            variances.append(
                (np.asarray(result.validation_gain_stderr) * n_val) ** 2
            )
        n_epochs = min(len(curve) for curve in curves)
        scores = sum(curve[:n_epochs] for curve in curves) / n_rows
        stderr = np.sqrt(sum(var[:n_epochs] for var in variances)) / n_rows
        # The same rule as one split's: the lower confidence bound of the gain
        # over the base (epoch 0) decides, and the base wins unless beaten.
        bound = scores - scores[0] - self._MONITOR_MARGIN * stderr
        best = int(np.argmax(bound))
        base_fitted = fit_base(mixture, X)
        correction, result = fit_correction(
            np.arange(len(X)),
            None,
            base_fitted,
            None,
            max_iter=best,
            early_stopping=False,
        )
        result.converged = converged
        result.best_iter = best
        result.validation_score_curve = scores.tolist()
        result.validation_gain_stderr = stderr.tolist()
        return base_fitted, correction, result

    def _previous_fit(self, n_features):
        """``(base_, correction)`` to continue from under ``warm_start``."""
        if not self._continues():
            return None
        energy = self.energy_
        if not isinstance(energy, BaseCorrectedEnergy):
            return None
        if self.n_features_in_ != n_features:
            return None
        return self.base_, copy.deepcopy(energy.correction)

    # ----------------------------------------------------------------- log Z
    def _estimate_log_partition(self, energy, summary, domain, *, seed, device, dtype):
        if not isinstance(energy, BaseCorrectedEnergy):
            if self.log_partition_method == "importance_sampling":
                raise ValueError(
                    "log_partition_method='importance_sampling' samples from the "
                    "base density, and this model has none (base=None, or a "
                    "quadratic or linear-in-parameters energy); use 'auto' or 'ais'."
                )
            return super()._estimate_log_partition(
                energy, summary, domain, seed=seed, device=device, dtype=dtype
            )
        method = self.log_partition_method
        if not getattr(energy, "corrected", True) and domain is None:
            # The correction was discarded: f = 0 and Z_f = E_q[1] = 1 exactly
            # (a quadrature of q itself can miss a narrow component's mass).
            # On a domain, Z_f = q(domain) is still to be estimated.
            return PartitionEstimate(0.0, 0.0, ess=math.inf), "exact"
        if method == "auto":
            # From the base, the weights exp(-f) are bounded (|f| <= 4 for
            # "mlp"): reliable in any dimension; a 2-d quadrature of q exp(-f)
            # over the data's range missed the mass of narrow components. On
            # a domain in 2-d, quadrature over the domain's box stays exact
            # where importance sampling would waste the draws outside it.
            d = summary["mean"].shape[0]
            method = (
                "quadrature" if domain is not None and d <= 2 else "importance_sampling"
            )
        if method in ("quadrature", "closed_form"):
            return super()._estimate_log_partition(
                energy, summary, domain, seed=seed, device=device, dtype=dtype
            )
        energy64 = copy.deepcopy(energy).to(device=device, dtype=torch.float64)
        generator = make_generator(seed, device)
        if method == "importance_sampling":
            estimate = log_partition_importance(
                energy64,
                energy64.base,
                n_draws=_IMPORTANCE_DRAWS,
                max_draws=_MAX_IMPORTANCE_DRAWS,
                domain=domain,
                generator=generator,
            )
            if estimate.reliable or self.log_partition_method != "auto":
                return estimate, method
            method = "ais"  # too few effective samples: anneal from the base
        estimate = log_partition_ais(
            energy64,
            proposal=energy64.base,
            domain=domain,
            n_chains=self.n_ais_chains,
            n_steps=self.n_ais_steps,
            generator=generator,
        )
        return estimate, method

    # -------------------------------------------------------------- sampling
    def _draw(self, energy, n_samples, *, rng, generator, device, dtype):
        """Draws of ``q exp(-f) / Z_f`` from its base, with as few MCMC steps as
        the draws need.

        A model whose correction was discarded is its base: exact draws. A
        corrected one resamples ``max(4 n, 4096)`` draws of ``q`` by their
        weights ``exp(-f)`` (systematic resampling): every draw that is a
        distinct candidate is a draw of the model up to the resampling's
        ``O(1 / ESS)`` error, with no chain at all; only candidates drawn more
        than once get MALA steps, in blocks of 10, until each is apart from
        every other row (at most ``n_sampling_steps``).
        """
        init = self.sampling_init
        if not (isinstance(energy, BaseCorrectedEnergy) and init in ("auto", "base")):
            return super()._draw(
                energy, n_samples, rng=rng, generator=generator, device=device,
                dtype=dtype,
            )
        contains = self._sampling_constraint()
        with torch.no_grad():
            if not energy.corrected and contains is None:
                return energy.base.sample(n_samples, generator=generator)
            x, repeated = _resample_base(
                energy, n_samples, contains=contains, generator=generator
            )
        if not bool(repeated.any()) or self.n_sampling_steps == 0:
            return x
        return self._separate_repeats(energy, x, repeated, generator)

    def _separate_repeats(self, energy, x, repeated, generator):
        """MALA steps on the rows that repeat another row, until none does."""
        steps = 0
        while steps < self.n_sampling_steps:
            block = min(_SEPARATION_STEPS, self.n_sampling_steps - steps)
            x[repeated] = self._run_chains(energy, x[repeated], block, generator)
            steps += block
            repeated = _repeated_rows(x)
            if not bool(repeated.any()):
                break
        return x

    def _chain_starts(self, energy, n_samples, *, rng, generator, device, dtype):
        init = self.sampling_init
        if isinstance(energy, BaseCorrectedEnergy) and init in ("auto", "base"):
            return importance_resample(
                energy,
                energy.base,
                n_samples,
                contains=self._sampling_constraint(),
                generator=generator,
            )
        if init == "auto":
            # No base: resample from the data's Gaussian, widened as AIS's start
            # is, which covers every mode in the data's range.
            summary = self._fit_summary
            proposal = GaussianMixtureBase(
                torch.ones(1),
                torch.as_tensor(summary["mean"])[None],
                torch.as_tensor(summary["covariance"])[None] * _AIS_BASE_WIDENING**2,
            ).to(device=device, dtype=dtype)
            return importance_resample(
                energy,
                proposal,
                n_samples,
                contains=self._sampling_constraint(),
                generator=generator,
            )
        if init == "base":
            raise ValueError(
                "sampling_init='base' needs a fitted base density; this model has "
                "none (base=None, or a quadratic or linear-in-parameters energy)."
            )
        if init == "noise":
            return self._noise_init(n_samples, rng, generator, device, dtype)
        return super()._chain_starts(
            energy,
            n_samples,
            rng=rng,
            generator=generator,
            device=device,
            dtype=dtype,
        )


def _repeated_rows(x):
    """True for every row equal to an earlier row."""
    _, inverse = torch.unique(x, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), x.shape[0], device=x.device)
    first = first.scatter_reduce(
        0, inverse, torch.arange(x.shape[0], device=x.device), reduce="amin"
    )
    return first[inverse] != torch.arange(x.shape[0], device=x.device)


def _resample_base(energy, n_samples, *, contains, generator):
    """Sampling-importance-resampling of ``q exp(-f)`` from ``q``: the draws,
    and which of them repeat an earlier one."""
    n_candidates = max(4 * n_samples, _MIN_RESAMPLING_CANDIDATES)
    candidates = energy.base.sample(n_candidates, generator=generator)
    # exp(-E) / q = exp(-f): the base's density cancels in the weights.
    log_w = -torch.cat(
        [energy.correction(c) for c in candidates.split(EVAL_CHUNK_SIZE)]
    )
    if contains is not None:
        log_w = torch.where(contains(candidates), log_w, -math.inf)
    log_w = torch.nan_to_num(log_w, nan=-math.inf)
    if not bool(torch.isfinite(log_w).any()):
        raise ValueError(
            "No draw of the base density has a positive weight: the base puts "
            "no mass inside the domain."
        )
    index = systematic_resample(log_w, n_samples, generator=generator)
    # Systematic resampling returns sorted indices: a repeat follows its first.
    repeated = torch.zeros(n_samples, dtype=torch.bool, device=index.device)
    repeated[1:] = index[1:] == index[:-1]
    # Shuffled, so that neighbouring draws are not neighbouring candidates.
    order = torch.randperm(n_samples, generator=generator, device=index.device)
    return candidates[index[order]], repeated[order]


class _BaseDomainDensity(_BaseContinuousDensity):
    """Shared by the estimators fitted on a domain (score matching, sliced and
    autoregressive): the ``domain`` and ``boundary_weight_cap`` parameters."""

    _parameter_constraints: dict = {
        **_BaseContinuousDensity._parameter_constraints,
        "domain": [None, StrOptions({"nonnegative"}), tuple, list, Domain],
        "boundary_weight_cap": [
            Interval(numbers.Real, 0, None, closed="neither"),
            None,
        ],
    }

    def _domain(self):
        domain = self.domain
        if domain is None or isinstance(domain, Domain):
            return domain
        if isinstance(domain, str):  # "nonnegative", checked by the constraints
            return Orthant()
        if len(domain) != 2:
            raise ValueError(
                "domain given as a tuple must be (lower, upper), got "
                f"{len(domain)} entries."
            )
        return Box(*domain)

    def _positive_only(self):
        return isinstance(self.domain, str) or type(self.domain) is Orthant

    def _boundary_weight(self):
        """``x -> (h, dh)`` of the domain, or None without one."""
        domain = self._domain()
        if domain is None:
            return None
        return partial(domain.boundary_weight, cap=self.boundary_weight_cap)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = self._positive_only()
        return tags
