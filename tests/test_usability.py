"""What a newcomer runs into: comparable scores, read-only input, threads,
energies that cannot be normalized."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skebm import (
    AutoregressiveScoreMatchingDensity,
    EnergyDiscrepancyDensity,
    PseudoLikelihoodIsing,
    RatioMatchingBinary,
    ScoreMatchingDensity,
    SlicedScoreMatchingDensity,
)
from skebm.energies import LinearInParametersEnergy
from skebm.exceptions import CorrectionDiscardedWarning
from skebm.metrics import mean_log_likelihood_scorer

SMALL = dict(hidden_layer_sizes=(8,), max_iter=2, random_state=0)


class Quartic(LinearInParametersEnergy):
    def __init__(self):
        super().__init__(n_statistics=2)

    def statistics(self, x):
        return torch.cat([x**2, x**4], dim=1)


def test_mean_log_likelihood_scorer_lets_a_search_pick_kde_where_it_is_best():
    # A thin ring: a kernel density beats a Gaussian mixture with few
    # components and an energy trained for two epochs.
    rng = np.random.RandomState(0)
    angle = rng.uniform(0, 2 * np.pi, 600)
    X = np.c_[np.cos(angle), np.sin(angle)] + 0.03 * rng.normal(size=(600, 2))
    pipe = Pipeline([("scale", StandardScaler()), ("density", KernelDensity())])
    grid = [
        {"density": [KernelDensity(bandwidth=0.1)]},
        {"density": [GaussianMixture(2, random_state=0)]},
        {"density": [SlicedScoreMatchingDensity(base="gaussian", **SMALL)]},
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(pipe, grid, cv=3, scoring=mean_log_likelihood_scorer)
        search.fit(X)
        # Without the scorer each model's own `score` decides, and
        # KernelDensity's is a sum over the fold: it can never win.
        default = GridSearchCV(pipe, grid, cv=3).fit(X)
    assert isinstance(search.best_params_["density"], KernelDensity)
    assert not isinstance(default.best_params_["density"], KernelDensity)
    means = search.cv_results_["mean_test_score"]
    assert means.max() == pytest.approx(search.best_score_)


ESTIMATORS = [
    ScoreMatchingDensity(**SMALL),
    ScoreMatchingDensity(energy="quadratic"),
    SlicedScoreMatchingDensity(base=None, **SMALL),
    EnergyDiscrepancyDensity(**SMALL),
    ScoreMatchingDensity(domain=(-10.0, 10.0), **SMALL),
    AutoregressiveScoreMatchingDensity(**SMALL),
    RatioMatchingBinary(binarize=0.0, **SMALL),
    PseudoLikelihoodIsing(binarize=0.0),
]


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_read_only_input_gives_no_warning(est):
    # joblib hands read-only memmaps to GridSearchCV(n_jobs>1) workers.
    X = np.random.RandomState(0).normal(size=(200, 3))
    X.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # What the fit found (the correction added nothing), not the input.
        warnings.simplefilter("ignore", CorrectionDiscardedWarning)
        est.fit(X)
        est.score_samples(X)
        est.sample(2, random_state=0)


def test_linear_energy_that_cannot_be_normalized_is_a_value_error():
    # Heavy tails: score matching puts a negative coefficient on x^4.
    X = np.random.RandomState(0).standard_t(3, size=(2000, 1))
    with pytest.raises(ValueError, match=r"not normalizable.*theta\[1\]"):
        ScoreMatchingDensity(energy=Quartic()).fit(X)
    # Gaussian data: a positive x^4 coefficient, fitted.
    X = np.random.RandomState(0).normal(size=(2000, 1))
    est = ScoreMatchingDensity(energy=Quartic()).fit(X)
    assert np.isfinite(est.log_partition_)


def test_linear_energy_statistics_shape_is_checked():
    X = np.random.RandomState(0).normal(size=(100, 2))
    with pytest.raises(ValueError, match=r"n_statistics=2.*returned \(2, 4\)"):
        ScoreMatchingDensity(energy=Quartic()).fit(X)


def test_torch_threads_are_limited_during_fit_and_restored(monkeypatch):
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            seen.append(torch.get_num_threads())
            return 0.5 * self.w * (x**2).sum(1)

    X = np.random.RandomState(0).normal(size=(100, 2))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            EnergyDiscrepancyDensity(energy=Spy(), base=None, **SMALL).fit(X)
        assert set(seen) == {1}
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("SKEBM_TORCH_THREADS", "2")
        seen.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            EnergyDiscrepancyDensity(energy=Spy(), base=None, **SMALL).fit(X)
        assert set(seen) == {2}
        monkeypatch.setenv("SKEBM_TORCH_THREADS", "many")
        with pytest.raises(ValueError, match="SKEBM_TORCH_THREADS"):
            EnergyDiscrepancyDensity(energy=Spy(), base=None, **SMALL).fit(X)
    finally:
        torch.set_num_threads(previous)
