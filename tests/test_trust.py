"""Binary input that is checked, a fitted model fixed at the end of fit, and
faults that lose nothing (issue 22)."""

import copy
import warnings

import numpy as np
import pytest
import torch

import skebm._base
import skebm._binary
import skebm._continuous
import skebm._ising
from skebm import (
    AutoregressiveScoreMatchingDensity,
    EnergyDiscrepancyDensity,
    PseudoLikelihoodIsing,
    RatioMatchingBinary,
    ScoreMatchingDensity,
    SlicedScoreMatchingDensity,
)
from skebm.datasets import make_two_moons

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore::skebm.exceptions.LogPartitionWarning"),
]

BINARY = [RatioMatchingBinary, PseudoLikelihoodIsing]


def _bits(n=200, d=5, seed=0):
    return (np.random.RandomState(seed).rand(n, d) < 0.3).astype(float)


def _fit(cls, X, **params):
    params = dict(random_state=0, **params)
    if cls is RatioMatchingBinary:
        params = dict(energy="boltzmann", max_iter=3, **params)
    return cls(**params).fit(X)


# ---------------------------------------------------------------- binary input
@pytest.mark.parametrize("cls", BINARY)
def test_non_binary_input_names_value_and_column(cls):
    X = _bits()
    X[17, 3] = 2.0
    with pytest.raises(ValueError, match=r"got 2\.0 in column 3 \(row 17\)"):
        cls().fit(X)
    continuous = np.random.RandomState(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match="binarize"):
        cls().fit(continuous)
    mixed = _bits()
    mixed[0, 1] = -1.0
    with pytest.raises(ValueError, match="mixes the two.*-1 in column 1"):
        cls().fit(mixed)


@pytest.mark.parametrize("cls", BINARY)
def test_score_time_input_is_checked(cls):
    X = _bits()
    est = _fit(cls, X)
    halves = np.full((2, 5), 0.5)
    with pytest.raises(ValueError, match=r"0\.5 in column 0"):
        est.score_samples(halves)
    with pytest.raises(ValueError, match=r"fitted on data in \{0, 1\}.*\(x \+ 1\) / 2"):
        est.score(2 * X - 1)
    spins = _fit(cls, 2 * X - 1)
    with pytest.raises(ValueError, match=r"fitted on data in \{-1, \+1\}"):
        spins.score_samples(X)
    # all ones is valid in either encoding
    assert np.isfinite(spins.score_samples(np.ones((1, 5)))).all()


@pytest.mark.parametrize("cls", BINARY)
def test_threshold_only_when_asked(cls):
    grey = np.random.RandomState(0).rand(200, 5) * 16
    est = _fit(cls, grey, binarize=8.0)
    bits = (grey > 8).astype(float)
    np.testing.assert_allclose(
        est.score_samples(grey), _fit(cls, bits).score_samples(bits)
    )


@pytest.mark.parametrize("cls", BINARY)
@pytest.mark.parametrize(
    "dtype, encode",
    [
        (np.int64, lambda b: b),
        (np.int8, lambda b: 2 * b - 1),
        (np.uint8, lambda b: b),
        (bool, lambda b: b),
        (np.float32, lambda b: 2 * b - 1),
        (np.float64, lambda b: b),
    ],
)
def test_samples_in_the_fit_encoding_and_dtype(cls, dtype, encode):
    X = encode(_bits().astype(int)).astype(dtype)
    est = _fit(cls, X)
    samples = est.sample(20, random_state=0)
    assert samples.dtype == np.dtype(dtype)
    assert set(np.unique(samples).tolist()) <= set(np.unique(X).tolist())


# ------------------------------------------------ a fitted model stays fixed
@pytest.mark.parametrize("cls", BINARY)
def test_set_params_after_fit_does_not_change_deferred_log_z(cls):
    X = _bits(n=300, d=22)
    kw = dict(n_ais_chains=8, n_ais_steps=4)
    reference = _fit(cls, X, **kw)
    est = _fit(cls, X, **kw)
    assert "log_partition_" not in vars(est)  # deferred above 20 features
    est.set_params(n_ais_chains=16, n_ais_steps=7, scan="random",
                   log_partition_method="exact")
    assert est.log_partition_ == reference.log_partition_
    assert est.log_partition_std_ == reference.log_partition_std_
    np.testing.assert_array_equal(est.score_samples(X), reference.score_samples(X))


# -------------------------------------------------------------------- faults
def _moons():
    return make_two_moons(200, random_state=0)


def _moons_other():
    return make_two_moons(200, random_state=1) * 1.1


CONTINUOUS = {
    "sm": lambda: ScoreMatchingDensity(base="gaussian", max_iter=4,
                                       early_stopping=False, random_state=0),
    "sm_warm": lambda: ScoreMatchingDensity(base="gaussian", max_iter=4,
                                            early_stopping=False, warm_start=True,
                                            random_state=0),
    "ssm_no_base": lambda: SlicedScoreMatchingDensity(base=None, max_iter=4,
                                                      random_state=0),
    "ed": lambda: EnergyDiscrepancyDensity(base="gaussian", max_iter=4,
                                           early_stopping=False, random_state=0),
    "ar": lambda: AutoregressiveScoreMatchingDensity(
        base="gaussian", max_iter=4, early_stopping=False, random_state=0),
    "rm_warm": lambda: RatioMatchingBinary(max_iter=4, hidden_layer_sizes=(8,),
                                           warm_start=True, random_state=0),
}


def _data(name, which):
    if name.startswith("rm"):
        return _bits(seed=which)
    return _moons() if which == 0 else _moons_other()


def _state(est):
    """The estimator's state as comparable data (modules as their tensors)."""
    out = {}
    for key, value in vars(est).items():
        if isinstance(value, torch.nn.Module):
            value = {k: v.clone() for k, v in value.state_dict().items()}
        out[key] = value
    return out


def _assert_same_state(before, est):
    after = _state(est)
    assert set(after) == set(before)
    for key, value in before.items():
        if isinstance(value, dict) and value and all(
            isinstance(v, torch.Tensor) for v in value.values()
        ):
            assert all(torch.equal(value[k], after[key][k]) for k in value), key
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, after[key])
        elif key != "_fit_summary":
            assert after[key] is value or after[key] == value, key


class Interrupt:
    """Raise ``error`` at the ``at``-th call of what it wraps."""

    def __init__(self, wrapped, at, error):
        self.wrapped, self.at, self.error, self.calls = wrapped, at, error, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls >= self.at:
            raise self.error
        return self.wrapped(*args, **kwargs)


ERRORS = [
    KeyboardInterrupt(),
    RuntimeError("CUDA error: an illegal memory access was encountered"),
    ValueError("a callback failed"),
]


def _epoch_end_raiser(at, error):
    original = skebm._base.train_minibatch

    def train(*args, on_epoch_end=None, **kwargs):
        def end(epoch, energy, result):
            if epoch >= at:
                raise error
            return on_epoch_end is not None and on_epoch_end(epoch, energy, result)

        return original(*args, on_epoch_end=end, **kwargs)

    return train


def _objective_raiser(at, error):
    """Wrap each estimator's objective: raise at its ``at``-th minibatch."""
    original = skebm._base._BaseEnergyDensity._train

    def _train(self, energy, objective, X, **kwargs):
        return original(self, energy, Interrupt(objective, at, error), X, **kwargs)

    return _train


@pytest.mark.parametrize("name", sorted(CONTINUOUS))
@pytest.mark.parametrize("point", ["epoch_end_1", "epoch_end_3", "minibatch_2",
                                   "log_z"])
def test_interrupted_refit_leaves_the_previous_fit(name, point, monkeypatch):
    est = CONTINUOUS[name]().fit(_data(name, 0))
    reference = copy.deepcopy(est)
    before = _state(est)
    X = _data(name, 0)
    for error in ERRORS:
        with monkeypatch.context() as m:
            if point.startswith("epoch_end"):
                m.setattr(skebm._base, "train_minibatch",
                          _epoch_end_raiser(int(point[-1]), error))
            elif point.startswith("minibatch"):
                m.setattr(skebm._base._BaseEnergyDensity, "_train",
                          _objective_raiser(int(point[-1]), error))
            else:
                cls = type(est)
                m.setattr(cls, "_estimate_log_partition",
                          Interrupt(cls._estimate_log_partition, 1, error))
            with pytest.raises(type(error)):
                est.fit(_data(name, 1))
        _assert_same_state(before, est)
        np.testing.assert_array_equal(est.score_samples(X),
                                      reference.score_samples(X))


@pytest.mark.parametrize("name", ["sm", "rm_warm"])
def test_interrupted_first_fit_leaves_no_fitted_attribute(name, monkeypatch):
    est = CONTINUOUS[name]()
    unfitted = set(vars(est))
    monkeypatch.setattr(skebm._base, "train_minibatch",
                        _epoch_end_raiser(2, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        est.fit(_data(name, 0))
    assert set(vars(est)) == unfitted


def test_interrupted_base_selection_and_ising_solver(monkeypatch):
    est = ScoreMatchingDensity(max_iter=2, random_state=0).fit(_moons())
    before = _state(est)
    monkeypatch.setattr(skebm._continuous, "select_base",
                        Interrupt(skebm._continuous.select_base, 1,
                                  KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        est.fit(_moons_other())
    _assert_same_state(before, est)

    ising = PseudoLikelihoodIsing().fit(_bits())
    before = _state(ising)
    monkeypatch.setattr(skebm._ising, "_solve_pseudo_likelihood",
                        Interrupt(skebm._ising._solve_pseudo_likelihood, 1,
                                  KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        ising.fit(_bits(seed=1))
    _assert_same_state(before, ising)


@pytest.mark.parametrize("cls", BINARY)
def test_interrupted_deferred_log_z_is_estimated_again(cls, monkeypatch):
    X = _bits(n=300, d=22)
    kw = dict(n_ais_chains=8, n_ais_steps=4)
    reference = _fit(cls, X, **kw).log_partition_
    est = _fit(cls, X, **kw)
    summary = dict(est._fit_summary)
    with monkeypatch.context() as m:
        m.setattr(skebm._binary, "log_partition_ais_binary",
                  Interrupt(skebm._binary.log_partition_ais_binary, 1,
                            KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            est.score_samples(X[:2])
    assert "log_partition_" not in vars(est)
    assert est._fit_summary.keys() == summary.keys()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert est.log_partition_ == reference


# ------------------------------------------------------------- small errors
def test_energy_discrepancy_has_no_domain():
    est = EnergyDiscrepancyDensity(base="gaussian", max_iter=1,
                                   early_stopping=False).fit(_moons())
    assert "domain" not in est.get_params()
    assert not hasattr(est, "domain_") or est.domain_ is None
    assert "domain_" not in (EnergyDiscrepancyDensity.__doc__ or "")
