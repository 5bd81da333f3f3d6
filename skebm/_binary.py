"""Energy-based density estimators for binary data (layer A).

The shared machinery (``binarize``, the encodings, log Z by enumeration or
annealed importance sampling with Gibbs transitions, Gibbs sampling, the
exact pseudo-log-likelihood) lives in :class:`_BaseBinaryEnergyDensity`;
the families fill the training objective.
"""

import copy
import functools
import math
import numbers
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import _BaseEnergyDensity
from ._bernoulli_mixture import fit_bernoulli_mixture
from ._torch_utils import (
    EVAL_CHUNK_SIZE,
    draw_seed,
    make_generator,
    numpy_dtype_for,
    resolve_device,
    to_numpy,
)
from .energies import BinaryMLPEnergy, BoltzmannEnergy, IsingEnergy
from .exceptions import LogPartitionWarning
from .objectives.pseudo_likelihood import pseudo_log_likelihood
from .objectives.ratio_matching import (
    ggis_ratio_matching_loss,
    ratio_matching_loss,
)
from .partition import (
    PartitionEstimate,
    log_partition_ais_binary,
    log_partition_enumerate,
)
from .samplers import anneal_binary, exact_binary_draws, gibbs, systematic_resample

# log Z by enumeration up to this many features (2^20 states) under "auto".
_MAX_AUTO_ENUMERATION = 20
# ... and never above this many, even when asked for.
_MAX_ENUMERATION = 30
_ZERO_ONE = (0.0, 1.0)
_SPINS = (-1.0, 1.0)
# While the AIS estimate of log Z is unreliable (too few effective chains or
# heavy-tailed weights), its budget doubles, up to this many times
# n_ais_chains x n_ais_steps.
_AIS_GROWTH = 16
# sample() warns when its annealed chains have fewer effective samples.
_MIN_SAMPLING_ESS = 100

# The parameters that log Z depends on, read at fit (see _data_summary).
_LOG_PARTITION_SETTINGS = (
    "log_partition_method", "n_ais_chains", "n_ais_steps", "scan"
)

# Parameters of the continuous base that mean nothing for binary data.
_CONTINUOUS_ONLY = {
    "energy",
    "log_partition_method",
    "n_sampling_steps",
    "sampling_init",
}


def _encoding(values):
    return "{0, 1}" if tuple(values) == _ZERO_ONE else "{-1, +1}"


def _input_dtype(X):
    """The dtype of the input before validation (None if unknown)."""
    dtype = getattr(X, "dtype", None)
    if dtype is None and hasattr(X, "dtypes"):  # a DataFrame
        try:
            dtype = np.result_type(*X.dtypes)
        except TypeError:
            return None
    if dtype is None:
        try:
            dtype = np.asarray(X).dtype
        except (TypeError, ValueError):
            return None
    return dtype if isinstance(dtype, np.dtype) else None


class _BaseBinaryEnergyDensity(_BaseEnergyDensity):
    """Base class of the energy-based density estimators on ``{0, 1}^d``.

    Internally the data are in the encoding ``_values`` of the family
    (``(0, 1)`` for Boltzmann machines and ratio matching, ``(-1, 1)`` for
    Ising spins); input in either encoding is converted at the boundary, and
    :meth:`sample` returns the encoding the training data came in.
    """

    _energy_names = ("mlp", "boltzmann")
    _values = _ZERO_ONE

    _parameter_constraints: dict = {
        **{
            k: v
            for k, v in _BaseEnergyDensity._parameter_constraints.items()
            if k not in _CONTINUOUS_ONLY
        },
        "energy": [StrOptions({"mlp", "boltzmann"}), torch.nn.Module, None],
        "binarize": [None, Interval(Real, None, None, closed="neither")],
        "log_partition_method": [StrOptions({"auto", "exact", "ais"})],
        "n_sweeps": [Interval(Integral, 0, None, closed="left")],
        "scan": [StrOptions({"systematic", "random"})],
        "sampling_init": [StrOptions({"annealed", "noise", "data"})],
        "n_sampling_chains": [None, Interval(Integral, 1, None, closed="left")],
    }

    # ------------------------------------------------------------ encodings
    def _to_internal(self, X, fitted=None):
        """Validated float array -> ``(internal array, input encoding)``.

        With ``binarize=None`` the input must be binary: at fit, all values in
        {0, 1} or all in {-1, +1}; at score time (``fitted``, the encoding
        the model was fitted on), in that encoding. Anything else is a
        ValueError that names a value and its column.
        """
        if self.binarize is not None:
            is_spin = bool(np.all((X == -1) | (X == 1))) and bool(np.any(X == -1))
            bits = X > self.binarize
            values = _SPINS if is_spin else _ZERO_ONE
        else:
            values = self._check_binary(X, fitted)
            bits = X > 0
        lo, hi = self._values
        internal = (lo + (hi - lo) * bits).astype(X.dtype, copy=False)
        return internal, values

    def _check_binary(self, X, fitted):
        """The encoding of binary ``X`` (``fitted`` if given), or a ValueError."""
        name = type(self).__name__
        hint = (
            "Pass binary data, or set binarize to a threshold (x > binarize "
            "becomes 1) to binarize it."
        )
        encodings = [fitted] if fitted is not None else [_ZERO_ONE, _SPINS]
        for values in encodings:
            if np.all((X == values[0]) | (X == values[1])):
                return values
        if fitted is not None:
            other = _SPINS if fitted == _ZERO_ONE else _ZERO_ONE
            if np.all((X == other[0]) | (X == other[1])):
                row, col = np.argwhere(X == other[0])[0]
                change = "(x + 1) / 2" if fitted == _ZERO_ONE else "2 * x - 1"
                raise ValueError(
                    f"{name} was fitted on data in {_encoding(fitted)}, but X is "
                    f"in {_encoding(other)} (value {X[row, col]:g} in column "
                    f"{col}, row {row}). Map it with {change} first."
                )
        allowed = np.zeros(X.shape, dtype=bool)
        for value in (fitted or (-1.0, 0.0, 1.0)):
            allowed |= X == value
        if allowed.all():  # 0 and -1 mixed at fit
            zero = np.argwhere(X == 0)[0]
            minus = np.argwhere(X == -1)[0]
            raise ValueError(
                f"{name} with binarize=None expects binary data, all values in "
                "{0, 1} or all in {-1, +1}; X mixes the two: 0 in column "
                f"{zero[1]} (row {zero[0]}) and -1 in column {minus[1]} (row "
                f"{minus[0]}). {hint}"
            )
        bad = np.argwhere(~allowed)
        row, col = bad[0]
        columns = np.unique(bad[:, 1])
        expected = _encoding(fitted) if fitted is not None else (
            "{0, 1} or all in {-1, +1}"
        )
        raise ValueError(
            f"{name} with binarize=None expects binary data, all values in "
            f"{expected}; got {X[row, col].item()!r} in column {col} (row {row}); "
            f"{len(bad)} value(s) in {len(columns)} column(s) "
            f"({columns.tolist()[:10]}) are not binary. {hint}"
        )

    def _from_internal(self, x, values):
        lo, hi = self._values
        bits = (x - lo) / (hi - lo)
        return values[0] + (values[1] - values[0]) * bits

    def _validate_X(self, X, *, reset):
        X = validate_data(
            self, X, reset=reset, dtype=[np.float64, np.float32], ensure_min_samples=1
        )
        fitted = None
        if not reset:
            fitted = tuple(self._fit_summary["input_values"])
        return self._to_internal(X, fitted)[0]

    def _check_fit_X(self, X):
        # Constant columns are legitimate binary data (a border pixel that is
        # never on): the L2 penalty ``alpha`` keeps its field finite, so,
        # unlike the continuous estimators, nothing is rejected here.
        input_dtype = _input_dtype(X)
        X = validate_data(
            self, X, reset=not self._stream_continues(),
            dtype=[np.float64, np.float32], ensure_min_samples=2,
        )
        X, values = self._to_internal(X)
        # Read (and removed) by _data_summary within the same fit.
        self._input_values = values
        # Samples come back in an integer (or boolean) input's dtype.
        self._input_dtype = (
            input_dtype.str if input_dtype is not None and input_dtype.kind in "biu"
            else None
        )
        # Marginals of the bits with a Beta(1, 1) prior, for the base
        # (read by _make_named_energy within the same fit).
        lo, hi = self._values
        ones = ((X - lo) / (hi - lo)).sum(0, dtype=np.float64)
        self._marginals = (ones + 1.0) / (len(X) + 2.0)
        return X

    def _check_scale_for_training(self, X):
        # Bits are of order one by construction, and a constant column is
        # legitimate (see _check_fit_X): the continuous scale check does not apply.
        pass

    def _data_summary(self, X, rng):
        n_init = min(1000, len(X))
        return {
            "init_points": X[rng.choice(len(X), n_init, replace=False)],
            "input_values": self.__dict__.pop("_input_values"),
            "input_dtype": self.__dict__.pop("_input_dtype"),
            "marginals": self.__dict__.pop("_marginals"),
            # The annealing base is fitted to the init points on first use
            # (log Z by AIS at fit, or sample): deterministic from this seed.
            "mixture_seed": draw_seed(rng),
            # log Z may be estimated after fit (on first use): with the
            # settings fit saw, so that set_params does not change the model.
            "log_partition_settings": {
                name: getattr(self, name) for name in _LOG_PARTITION_SETTINGS
            },
        }

    # ---------------------------------------------------------------- energy
    def _base_logits(self):
        """Log-odds of the base (independent Bernoulli marginals of the
        training data), or None without a base."""
        p = self._marginals
        if getattr(self, "base", None) is None:
            return None
        return torch.as_tensor(np.log(p) - np.log1p(-p), dtype=torch.float32)

    def _make_named_energy(self, name, n_features, generator):
        logits = self._base_logits()
        self._built_base = None if logits is None else self._marginals
        if name == "boltzmann":
            cls = IsingEnergy if self._values == _SPINS else BoltzmannEnergy
            energy = cls(n_features)
            if logits is not None:
                # The base as the initial fields: the untrained machine is the
                # independent model.
                with torch.no_grad():
                    energy.bias.copy_(logits * (1.0 if cls is BoltzmannEnergy
                                                else 0.5))
            return energy
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral):
            sizes = (sizes,)
        sizes = tuple(int(h) for h in sizes)
        if not sizes or min(sizes) < 1:
            raise ValueError(
                "hidden_layer_sizes must be a non-empty sequence of positive "
                f"integers, got {self.hidden_layer_sizes}."
            )
        return BinaryMLPEnergy(
            n_features,
            sizes,
            self.activation,
            base_logits=logits,
            zero_output=logits is not None,
            values=self._values,
            generator=generator,
        )

    # ----------------------------------------------------------------- log Z
    def _mixture(self, summary, device, dtype):
        """The mixture of independent Bernoullis that AIS anneals from,
        fitted to the kept training points (once; cached in the summary)."""
        if "mixture_weights" not in summary:
            lo, hi = self._values
            bits = (summary["init_points"] - lo) / (hi - lo)
            weights, probabilities = fit_bernoulli_mixture(
                bits, np.random.RandomState(summary["mixture_seed"])
            )
            summary["mixture_weights"] = weights
            summary["mixture_probabilities"] = probabilities
        return (
            torch.as_tensor(summary["mixture_probabilities"], device=device,
                            dtype=dtype),
            torch.as_tensor(summary["mixture_weights"], device=device, dtype=dtype),
        )

    def _defers_log_partition(self, n_features):
        # Annealed importance sampling was 98-99% of a fit at d = 64-784,
        # and neither objective, nor the pseudo-likelihood, needs log Z: it is
        # estimated when first read (score, score_samples, sample, or the
        # log_partition_* attributes). Enumeration stays in fit.
        return self.log_partition_method == "ais" or (
            self.log_partition_method == "auto"
            and n_features > _MAX_AUTO_ENUMERATION
        )

    def _estimate_log_partition(self, energy, summary, domain, *, seed, device, dtype):
        d = summary["init_points"].shape[1]
        settings = summary.get("log_partition_settings") or {
            name: getattr(self, name) for name in _LOG_PARTITION_SETTINGS
        }
        method = settings["log_partition_method"]
        if method == "auto":
            method = "exact" if d <= _MAX_AUTO_ENUMERATION else "ais"
        energy64 = copy.deepcopy(energy).to(dtype=torch.float64)
        if method == "exact":
            if d > _MAX_ENUMERATION:
                raise ValueError(
                    f"log_partition_method='exact' enumerates 2^n_features states; "
                    f"n_features={d} is over {_MAX_ENUMERATION}. Use 'ais'."
                )
            estimate = log_partition_enumerate(
                energy64, d, values=self._values, device=device
            )
            return PartitionEstimate(*estimate), method
        # The chains run in float32 (a float64 log or softplus costs 5-8x
        # on a CPU); their weights accumulate in float64, and the bound
        # below is checked in float64.
        energy32 = copy.deepcopy(energy).to(dtype=torch.float32)
        probabilities, weights = self._mixture(summary, device, torch.float32)
        estimate = log_partition_ais_binary(
            energy32,
            probabilities,
            mixture_weights=weights,
            values=self._values,
            n_chains=settings["n_ais_chains"],
            n_steps=settings["n_ais_steps"],
            max_growth=_AIS_GROWTH,
            scan=settings["scan"],
            generator=make_generator(seed, device),
        )
        # sample() anneals as many temperatures as made the estimate
        # reliable, from the mixture (a product of marginals between the modes
        # gives mode masses whose spread its ESS does not show: 0.68 and 0.75
        # in two runs on a fitted 8x8 lattice against 0.672-0.682 from the
        # mixture), with its adapted weights where the mixture was kept.
        summary["ais_steps"] = estimate.n_steps
        if estimate.probabilities.shape[0] == len(summary["mixture_weights"]):
            summary["mixture_weights"] = estimate.mixture_weights.cpu().numpy()
        return self._check_against_states(energy64, summary, estimate, device), method

    def _check_against_states(self, energy, summary, estimate, device):
        """Hold the estimate against an exact lower bound of log Z.

        ``Z`` is at least the sum of ``exp(-E)`` over any set of distinct
        states: here the distinct training points kept for sampling. An
        estimate more than three standard errors below that bound has missed
        mass the data shows (a mode no chain reached); it is replaced by the
        bound, its error widened to the gap, and a LogPartitionWarning says so.
        """
        states = torch.as_tensor(
            np.unique(summary["init_points"], axis=0), device=device,
            dtype=torch.float64,
        )
        with torch.no_grad():
            bound = float(torch.logsumexp(-energy(states), 0))
        log_z, stderr = estimate
        if bound <= log_z + 3 * stderr:
            return estimate
        warnings.warn(
            LogPartitionWarning(
                f"{type(self).__name__}: annealed importance sampling estimated "
                f"log Z = {log_z:.4g} +/- {stderr:.2g}, below the exact lower "
                f"bound {bound:.4g} given by {len(states)} distinct training "
                "points: the chains missed mass the data shows. log_partition_ "
                "is set to the bound, which still underestimates log Z. Increase "
                "n_ais_steps and n_ais_chains.",
                ess=estimate.ess,
                pareto_k=estimate.pareto_k,
            ),
            stacklevel=7,
        )
        return PartitionEstimate(
            bound,
            max(stderr, bound - log_z),
            ess=estimate.ess,
            pareto_k=estimate.pareto_k,
            n_draws=estimate.n_draws,
        )

    # ------------------------------------------------------------- scoring
    def pseudo_log_likelihood(self, X):
        """Exact pseudo-log-likelihood ``Σ_j log p(x_j | x_-j)`` of each sample.

        Needs no log Z: each conditional is a sigmoid of the energy change of
        flipping one bit. All ``d`` flips are evaluated, in one batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        pseudo_log_likelihood : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        device = resolve_device(self.device, strict=False)
        dtype = self._fit_dtype
        energy = (
            self.energy_
            if device.type == "cpu"
            else copy.deepcopy(self.energy_).to(device)
        )
        out = np.empty(X.shape[0], dtype=numpy_dtype_for(dtype))
        # d flipped copies per row: chunk so a batch holds EVAL_CHUNK_SIZE rows.
        chunk = max(1, EVAL_CHUNK_SIZE // X.shape[1])
        with torch.no_grad():
            for start in range(0, X.shape[0], chunk):
                xb = torch.as_tensor(
                    X[start : start + chunk], device=device, dtype=dtype
                )
                pll = pseudo_log_likelihood(energy, xb, values=self._values)
                out[start : start + chunk] = to_numpy(pll)
        return out

    # ------------------------------------------------------------- sampling
    def sample(self, n_samples=1, random_state=None):
        """Draw samples by Gibbs sampling, in the encoding of the training data.

        Where the chains start decides what they draw from:

        - ``sampling_init="annealed"`` (the default): from the model.
          Annealed importance sampling chains (``max(n_samples,
          n_ais_chains)`` of them, ``n_ais_steps`` temperatures, from the
          mixture of independent Bernoullis fitted to the training data; see
          :func:`~skebm.samplers.anneal_binary`) are resampled in proportion
          to their importance weights, and each resampled state is run
          ``n_sweeps`` further Gibbs sweeps. The mass of each mode is the
          model's, whatever the data's (up to the resampling noise of the
          effective sample size).
        - ``"noise"``: short-run chains from uniform random states, run
          ``n_sweeps`` sweeps. They draw from the model only once they have
          mixed, which for a multimodal model may take far longer than any
          practical ``n_sweeps``: the mode masses are then those of where
          the chains fell, not the model's.
        - ``"data"``: short-run chains from training points. Few sweeps
          reproduce the data (whatever the model); many approach the model
          within each mode, keeping the data's mode masses.

        With ``n_sampling_chains=k``, ``k`` persistent chains are started
        this way, run ``n_sweeps`` sweeps, and then read after every further
        sweep until ``n_samples`` states are collected: consecutive samples
        are correlated, and the mode masses are those of the ``k`` starts
        unless the chains cross between modes.

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
        # Read now: a deferred log Z estimate (run by _chain_starts) replaces
        # self._fit_summary, and the chains start from the summary read here.
        summary = self._fit_summary
        n_chains = n_samples
        if self.n_sampling_chains is not None:
            n_chains = min(self.n_sampling_chains, n_samples)
        d = self.n_features_in_
        exact = (
            self.sampling_init == "annealed"
            and self.n_sampling_chains is None
            and d <= _MAX_AUTO_ENUMERATION
        )
        if exact:
            # Few enough states to draw exactly from the enumerated model.
            x = exact_binary_draws(
                energy, d, n_samples, values=self._values, dtype=dtype,
                generator=generator,
            )
            return self._output(to_numpy(x))
        x = self._chain_starts(energy, summary, n_chains, rng, generator, device,
                               dtype)
        x = self._run_chains(energy, x, n_samples, n_chains, generator)
        return self._output(to_numpy(x))

    def _chain_starts(self, energy, summary, n_chains, rng, generator, device,
                      dtype):
        """The ``n_chains`` states :meth:`sample`'s chains start from, as
        ``sampling_init`` says (``summary``: the fit's, as :meth:`sample`
        read it)."""
        lo, hi = self._values
        if self.sampling_init == "annealed":
            # The path as long as the log Z estimate grew it (estimated now if
            # the fit deferred it).
            self.log_partition_  # noqa: B018
            probabilities, weights = self._mixture(summary, device, torch.float32)
            x, log_w = anneal_binary(
                copy.deepcopy(energy).float(),
                probabilities,
                mixture_weights=weights,
                n_chains=max(n_chains, self.n_ais_chains),
                n_steps=summary.get("ais_steps", self.n_ais_steps),
                values=self._values,
                scan=self.scan,
                generator=generator,
            )
            w = torch.softmax(log_w.double(), 0)
            ess = float(1.0 / (w * w).sum())
            if ess < _MIN_SAMPLING_ESS:
                warnings.warn(
                    f"{type(self).__name__}.sample: the annealed chains have "
                    f"{ess:.1f} effective samples out of {len(w)}, so the mode "
                    "masses of the samples are uncertain (to about "
                    f"1/sqrt({ess:.0f})). Increase n_ais_steps.",
                    UserWarning,
                    # Attributed to the caller of sample.
                    stacklevel=3,
                )
            x = x[systematic_resample(log_w, n_chains, generator=generator)].to(dtype)
        elif self.sampling_init == "data":
            init = summary["init_points"]
            x = torch.as_tensor(
                init[rng.randint(len(init), size=n_chains)], device=device, dtype=dtype
            )
        else:
            bits = torch.rand(
                n_chains, self.n_features_in_, generator=generator, device=device
            )
            x = lo + (hi - lo) * (bits < 0.5).to(dtype)
        return x

    def _run_chains(self, energy, x, n_samples, n_chains, generator):
        """Gibbs chains from the states ``x``: ``n_sweeps`` sweeps, then one
        more per further batch of ``n_chains`` states, until ``n_samples``."""
        run = functools.partial(
            gibbs, energy, values=self._values, scan=self.scan, generator=generator
        )
        x = run(x, n_sweeps=self.n_sweeps)
        states = [x]
        for _ in range(math.ceil(n_samples / n_chains) - 1):
            x = run(x, n_sweeps=1)
            states.append(x)
        return torch.cat(states)[:n_samples]

    def _output(self, x):
        """Samples in the training data's encoding and dtype (an integer or
        boolean input's, else the fit's float dtype)."""
        summary = self._fit_summary
        out = self._from_internal(x, tuple(summary["input_values"]))
        dtype = summary.get("input_dtype")
        dtype = np.dtype(numpy_dtype_for(self._fit_dtype) if dtype is None else dtype)
        return np.rint(out).astype(dtype) if dtype.kind in "biu" else out.astype(
            dtype, copy=False)


class RatioMatchingBinary(_BaseBinaryEnergyDensity):
    """Energy-based density estimation on binary data by ratio matching.

    Fits ``p(x) = exp(-E(x)) / Z`` on ``{0, 1}^d`` by Hyvärinen's ratio
    matching, which compares the probability of each observed vector with
    that of its ``d`` one-bit flips and needs neither ``Z`` nor samples from
    the model. ``method="exact"`` evaluates all ``d`` flips of a minibatch in
    one batch (for ``energy="boltzmann"`` straight from the quadratic form);
    ``method="ggis"`` estimates the sum over flips from ``n_flip_samples``
    flips per sample drawn with the gradient-guided proposal (RMwGGIS), which
    costs ``n_flip_samples`` instead of ``d`` energy evaluations per sample.

    ``log_partition_`` is exact (enumeration of the ``2^d`` states) for
    ``n_features <= 20`` and estimated above by annealed importance sampling
    from a mixture of independent Bernoullis fitted to the data, with an
    error that stays honest for heavy-tailed weights and an effective sample
    size. Neither objective needs log Z, and annealed importance sampling was
    98-99% of a fit at d = 64-784, so it is estimated when first needed
    (:meth:`score`, :meth:`score_samples`, :meth:`sample` or reading a
    ``log_partition_*`` attribute), once, deterministically from the fit's
    ``random_state``, and kept (also through pickling): ``fit`` trains, and a
    model selected by :meth:`pseudo_log_likelihood` never pays for it.
    :meth:`sample` draws from the model: exactly for ``n_features <= 20``, by
    importance-resampled annealed chains and Gibbs sweeps above.

    Parameters
    ----------
    energy : {"mlp", "boltzmann"}, torch.nn.Module or None, default=None
        The energy ``E``. ``"mlp"`` (the default, also for None) is a
        multilayer perceptron with a linear term
        (:class:`~skebm.energies.BinaryMLPEnergy`), whose one-bit flips cost
        a fraction of a full evaluation; ``"boltzmann"`` is a fully visible
        Boltzmann machine ``E = -bᵀx - ½xᵀWx`` with ``W`` symmetric and zero
        on the diagonal (:class:`~skebm.energies.BoltzmannEnergy`). A module
        maps a tensor of shape ``(n, n_features)`` with values in {0, 1} to
        ``(n,)``; it is deep-copied, never trained in place; its flips are
        evaluated in batches and its Gibbs updates cost one evaluation each.
        ``method="ggis"`` differentiates it in ``x`` (relaxed to real
        values).
    method : {"exact", "ggis"}, default="exact"
        All ``d`` flips per sample, or ``n_flip_samples`` importance-sampled
        ones.
    n_flip_samples : int, default=8
        Flips drawn per sample (with replacement) when ``method="ggis"``.
    form : {"sigmoid", "exponential"}, default="sigmoid"
        ``"sigmoid"`` is Hyvärinen's ratio matching,
        ``Σ_j σ(E(x) - E(flip_j x))²``. ``"exponential"`` is
        ``Σ_j exp((E(x) - E(flip_j x)) / 2)``, the square root of the
        probability ratios. Both have the model as their minimizer (see
        Notes); the RMwGGIS code's ``Σ_j exp(2 (E(x) - E(flip_j x)))`` learns
        ``p^(1/4)`` instead and is not offered.
    base : {"bernoulli"} or None, default="bernoulli"
        ``"bernoulli"``: the energy is a correction of the independent
        Bernoulli model of the training data (marginals with a Beta(1, 1)
        prior): for ``energy="mlp"`` its fixed log-odds enter the linear term
        and the output layer starts at zero, for ``"boltzmann"`` they are the
        initial fields, so the untrained model *is* the base. None: a plain
        energy (random output layer, zero fields). Fitted as ``base_``.
    binarize : float or None, default=None
        None: the input must be binary, all values in {0, 1} or all in
        {-1, +1} (at score time, in the encoding of the training data), and
        anything else is a ValueError that names the value and its column.
        A float: a threshold, ``x > binarize`` becomes 1 and the rest 0 (as
        in :class:`~sklearn.naive_bayes.BernoulliNB`), for data that are not
        binary (``binarize=7`` for pixel intensities 0-16, say). Samples come
        back in the training data's encoding, and in its dtype when that was
        an integer or boolean one.
    hidden_layer_sizes : tuple of int, default=(256,)
        Hidden layer widths of the ``"mlp"`` energy. One softplus layer (an
        energy shaped like an RBM's free energy; its flips take the fused
        path) generalized better on binarized digits than two (held-out
        pseudo-log-likelihood -14.25 against -15.61 nats for ``(128,
        128)``). The defaults of ``hidden_layer_sizes``, ``alpha`` and
        ``learning_rate_init`` were chosen on binarized digits (64 pixels,
        1257 training images; held-out log-likelihood / pseudo-log-likelihood
        in nats): ``(256,)``, ``alpha=1``, 0.01: -17.46 / -13.33; ``(128,)``:
        -17.71 / -13.85; ``(384,)``: -17.37 / -13.36 (slower); ``alpha=0.3``
        / ``3``: -17.57 / -13.70 and -17.80 / -14.03; ``alpha=1e-4``: -17.93
        / -14.00; ``learning_rate_init=3e-3`` with ``alpha=1e-4``: -17.82 /
        -14.05. The best ``BernoulliRBM`` (64-256 components, learning rate
        0.01-0.1) reached -19.80 and -14.00.
    activation : {"softplus", "tanh", "sigmoid", "silu", "gelu"}, default="softplus"
        Hidden activation of the ``"mlp"`` energy.
    alpha : float, default=1.0
        L2 penalty: the loss minimized is ``J + alpha / (2 n) ||params||^2``.
        It also keeps the field of a constant feature finite. With
        ``base="bernoulli"`` the base's log-odds are not penalized, so the
        penalty shrinks the model towards its base.
    batch_size : int, default=256
        Minibatch size (clipped to the number of training samples).
    learning_rate_init : float, default=1e-2
        Adam's learning rate (chosen on binarized digits with the other
        defaults, see ``hidden_layer_sizes``).
    max_iter : int, default=200
        Maximum number of epochs.
    tol : float, default=1e-4
        Training stops when the monitored loss has not improved by ``tol``
        for ``n_iter_no_change`` consecutive epochs.
    n_iter_no_change : int, default=10
        Patience, in epochs.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the data, monitor the objective on
        it and keep the parameters of the best epoch.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping``.
    warm_start : bool, default=False
        Continue from the previous fit's energy instead of a fresh one.
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
        Seeds initialization, batch order, flip draws and log Z estimation.
    verbose : bool, default=False
        Print the loss every epoch.

    Attributes
    ----------
    energy_ : torch.nn.Module
        The fitted energy (on {0, 1} inputs), on the CPU.
    base_ : ndarray of shape (`n_features_in_`,) or None
        Probability of a 1 for each feature in the independent Bernoulli
        base, or None without one (``base=None``, or a user module).
    log_partition_ : float
        log Z of ``exp(-energy_)`` over ``{0, 1}^d``. Above 20 features,
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
        Training objective per epoch.
    validation_loss_curve_ : list of float or None
        Validation objective per epoch when ``early_stopping``.
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
    PseudoLikelihoodIsing : Ising model fitted by pseudo-likelihood.
    sklearn.neural_network.BernoulliRBM : Restricted Boltzmann machine.
    sklearn.naive_bayes.BernoulliNB : Independent Bernoulli features.
    sklearn.neighbors.KernelDensity : Kernel density estimation.
    sklearn.mixture.GaussianMixture : Gaussian mixture density.

    Notes
    -----
    With :math:`\\Delta E_j(x) = E(\\mathrm{flip}_j x) - E(x)`, the default
    ``form="sigmoid"`` minimizes Hyvärinen's ratio matching objective

    .. math::
        J(\\theta) = \\mathbb{E}_{x \\sim p_{data}} \\sum_{j=1}^d
        \\sigma\\big(-\\Delta E_j(x)\\big)^2,

    and ``form="exponential"`` minimizes
    :math:`\\mathbb{E}_x \\sum_j \\exp(-\\Delta E_j(x) / 2)`. Writing either as
    :math:`\\mathbb{E}_x \\sum_j f(\\Delta E_j(x))`, a pair of states that
    differ in bit :math:`j` contributes :math:`p(x) f(t) + p(x') f(-t)`,
    :math:`t = E(x') - E(x)`, minimized where
    :math:`p(x) f'(t) = p(x') f'(-t)`: the model is the minimizer when
    :math:`f'(-t) / f'(t) = e^t`, which holds for both summands
    (:math:`\\sigma(t)/\\sigma(-t)` and :math:`e^{t/2}/e^{-t/2}`). The RMwGGIS
    code's :math:`\\exp(-2 \\Delta E)` gives :math:`e^{4t}`: its minimizer is
    :math:`p^{1/4}`, renormalized. ``method="ggis"`` draws :math:`K` bits per
    sample from :math:`q_j \\propto f(\\widehat{\\Delta E}_j)`, with
    :math:`\\widehat{\\Delta E}_j = (1 - 2x_j)\\, \\partial E / \\partial x_j`
    the first-order flip energy, and minimizes the unbiased estimate
    :math:`\\frac1K \\sum_k f(\\Delta E_{j_k}) / q_{j_k}`.

    References
    ----------
    .. [1] A. Hyvärinen, "Some extensions of score matching", Computational
       Statistics & Data Analysis 51, 2007.
    .. [2] M. Liu, H. Liu and S. Ji, "Gradient-guided importance sampling for
       learning binary energy-based models", ICLR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm import RatioMatchingBinary
    >>> X = (np.random.RandomState(0).rand(300, 5) < 0.3).astype(float)
    >>> est = RatioMatchingBinary(energy="boltzmann", random_state=0).fit(X)
    >>> est.score_samples(X[:3]).shape
    (3,)
    >>> est.log_partition_method_
    'exact'
    >>> est.sample(4, random_state=0).shape
    (4, 5)
    """

    _parameter_constraints: dict = {
        **_BaseBinaryEnergyDensity._parameter_constraints,
        "method": [StrOptions({"exact", "ggis"})],
        "n_flip_samples": [Interval(Integral, 1, None, closed="left")],
        "form": [StrOptions({"sigmoid", "exponential"})],
        "base": [StrOptions({"bernoulli"}), None],
    }

    def __init__(
        self,
        *,
        energy=None,
        method="exact",
        n_flip_samples=8,
        form="sigmoid",
        base="bernoulli",
        binarize=None,
        hidden_layer_sizes=(256,),
        activation="softplus",
        alpha=1.0,
        batch_size=256,
        learning_rate_init=1e-2,
        max_iter=200,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=True,
        validation_fraction=0.1,
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
        self.energy = energy
        self.method = method
        self.n_flip_samples = n_flip_samples
        self.form = form
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

    def _fit(self, X):
        super()._fit(X)
        built = self.__dict__.pop("_built_base", False)
        if built is not False:
            self.base_ = built
        elif not hasattr(self, "base_"):
            self.base_ = None
        return self

    def _objective(self):
        if self.method == "ggis":
            return functools.partial(
                ggis_ratio_matching_loss,
                n_flip_samples=self.n_flip_samples,
                form=self.form,
                values=self._values,
            )
        return functools.partial(
            ratio_matching_loss, form=self.form, values=self._values
        )
