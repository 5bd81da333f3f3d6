"""The default base: a floor no lower than a searched mixture or kernel density,
no spikes on rounded values, and a model that says when its energy added nothing."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KernelDensity
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skebm import (
    EnergyDiscrepancyDensity,
    ScoreMatchingDensity,
    SlicedScoreMatchingDensity,
)
from skebm._mixture_base import column_resolution, fit_base, select_base
from skebm.datasets import make_checkerboard, make_rings
from skebm.exceptions import CorrectionDiscardedWarning, DataResolutionWarning
from skebm.metrics import mean_log_likelihood_scorer

FAST = dict(hidden_layer_sizes=(16, 16), max_iter=5, n_sampling_steps=10)


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # As fit does (limit_threads): spinning BLAS threads on a loaded machine
    # made these small mixture fits tens of times slower.
    with threadpool_limits(1):
        yield


def _default_base(X, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataResolutionWarning)
        return fit_base(select_base("gmm", X, seed=seed), X)


def _searched_mixture(X, seed):
    grid = GridSearchCV(
        GaussianMixture(random_state=seed),
        {"n_components": list(range(1, 11)), "covariance_type": ["full", "diag"]},
        cv=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return grid.fit(X).best_estimator_


def _searched_kde(X):
    grid = GridSearchCV(
        KernelDensity(),
        {"bandwidth": np.logspace(-1.5, 0.5, 12)},
        cv=3,
        scoring=mean_log_likelihood_scorer,
    )
    return grid.fit(X).best_estimator_


def _iris():
    return load_iris().data


def _wine():
    return load_wine().data


def _rings():
    return make_rings(1500, random_state=0)


def _checkerboard():
    return make_checkerboard(1500, random_state=0)


@pytest.mark.parametrize(
    "load",
    [
        _iris,
        pytest.param(_wine, marks=pytest.mark.slow),
        pytest.param(_rings, marks=pytest.mark.slow),
        pytest.param(_checkerboard, marks=pytest.mark.slow),
    ],
)
def test_default_base_is_no_worse_than_searched_mixture_and_kde(load):
    # Over three splits, the default base's held-out log-likelihood is within
    # the split-to-split spread of the better of a GridSearchCV'd
    # GaussianMixture (1-10 components, full/diag, cv=3) and a KDE with a
    # cross-validated bandwidth.
    X = load()
    gaps, spreads = [], []
    for seed in range(3):
        X_train, X_test = train_test_split(X, test_size=0.3, random_state=seed)
        scaler = StandardScaler().fit(X_train)
        Z, Z_test = scaler.transform(X_train), scaler.transform(X_test)
        base = _default_base(Z, seed).score_samples(Z_test).mean()
        gmm = _searched_mixture(Z, seed).score_samples(Z_test).mean()
        kde = _searched_kde(Z).score_samples(Z_test).mean()
        gaps.append(base - max(gmm, kde))
        spreads.append(gmm)
    spread = max(np.std(spreads), 0.02)
    assert np.mean(gaps) > -spread, (gaps, spread)


@pytest.mark.slow
def test_kernel_density_is_a_candidate_where_it_wins():
    # Checkerboard: flat squares with sharp edges, where a KDE beats a
    # 1-10 component mixture; the default base is then a kernel mixture
    # (a component a row) or a mixture at least as good.
    X = make_checkerboard(1500, random_state=0)
    X_test = make_checkerboard(3000, random_state=1)
    base = _default_base(X, 0)
    kde = _searched_kde(X)
    assert base.score(X_test) > kde.score_samples(X_test).mean() - 0.02


def _heaped(n=300, seed=0):
    # A quarter of the first column is rounded to 2 or 4 (heaping, as in
    # reported ages or incomes), the rest continuous.
    rng = np.random.RandomState(seed)
    X = rng.normal([3.0, 0.0], [1.0, 1.0], size=(n, 2))
    heap = rng.rand(n) < 0.25
    X[heap, 0] = np.where(X[heap, 0] < 3.0, 2.0, 4.0)
    return X


def test_resolution_floor_of_rounded_and_continuous_columns():
    rng = np.random.RandomState(0)
    continuous = rng.normal(size=(500, 1))
    rounded = np.round(rng.normal(size=(500, 1)) * 10) / 10  # steps of 0.1
    floor, repeated = column_resolution(np.hstack([continuous, rounded]))
    assert repeated[0] == 0 and repeated[1] > 0.5
    assert floor[0] == pytest.approx(1e-3 * continuous.std())
    assert floor[1] == pytest.approx(0.1 / np.sqrt(12))


@pytest.mark.parametrize("cls", [ScoreMatchingDensity, EnergyDiscrepancyDensity])
def test_rounded_values_get_no_spike_and_a_warning(cls):
    X = _heaped()
    with pytest.warns(DataResolutionWarning, match="repeated values"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", CorrectionDiscardedWarning)
            est = cls(random_state=0, **FAST).fit(X)
    base = est.base_
    variances = (
        base.covariances_[:, 0]
        if base.covariance_type == "diag"
        else base.covariances_[:, 0, 0]
    )
    floor, _ = column_resolution(X)
    # No component narrower than the column's resolution (the heaps are 2
    # apart: a floor of 2 / sqrt(12), capped at a quarter of the spread).
    assert floor[0] > 0.2
    assert variances.min() >= floor[0] ** 2 * (1 - 1e-6)
    # So the rounded rows are not scored far above the others.
    heap = np.isin(X[:, 0], [2.0, 4.0])
    scores = est.score_samples(X)
    assert scores[heap].mean() - scores[~heap].mean() < 1.0


def test_too_few_rows_for_a_base_say_so():
    with pytest.raises(ValueError, match="n_samples=2 is too few"):
        ScoreMatchingDensity(random_state=0).fit(np.array([[0.0, 1.0], [1.0, 0.5]]))


@pytest.mark.parametrize(
    "cls", [ScoreMatchingDensity, SlicedScoreMatchingDensity, EnergyDiscrepancyDensity]
)
def test_discarded_correction_is_the_base_with_log_z_zero_and_a_warning(cls):
    # Gaussian data and a Gaussian base: nothing is left to correct.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(1500, 2))
    with pytest.warns(CorrectionDiscardedWarning, match="model is its base"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = cls(base="gaussian", random_state=0, **FAST).fit(X)
    assert est.n_epochs_kept_ == 0
    assert est.correction_gain_ == 0.0
    assert est.log_partition_ == 0.0 and est.log_partition_std_ == 0.0
    assert est.log_partition_method_ == "exact"
    np.testing.assert_allclose(
        est.score_samples(X), est.base_.score_samples(X), rtol=0, atol=1e-10
    )


def test_kept_epochs_report_their_gain():
    # Without early stopping every epoch is kept and nothing is selected.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = ScoreMatchingDensity(
            base="gaussian", early_stopping=False, random_state=0, **FAST
        ).fit(X)
    assert est.n_epochs_kept_ is None and est.correction_gain_ is None
    assert est.log_partition_method_ == "importance_sampling"
