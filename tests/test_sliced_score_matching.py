"""SlicedScoreMatchingDensity: each method against the Gaussian truth."""

import warnings

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning

from skebm import ScoreMatchingDensity, SlicedScoreMatchingDensity
from skebm.datasets import make_two_moons

METHODS = ["sliced", "sliced_vr", "finite_difference"]
FAST = dict(
    hidden_layer_sizes=(16, 16),
    max_iter=10,
    n_ais_chains=64,
    n_ais_steps=50,
    n_sampling_steps=50,
)


@pytest.fixture(scope="module")
def gaussian_5d():
    rng = np.random.RandomState(0)
    A = rng.normal(size=(5, 5))
    cov = A @ A.T / 5 + 0.5 * np.eye(5)
    mean = rng.normal(size=5)
    X = rng.multivariate_normal(mean, cov, size=20000)
    X_test = rng.multivariate_normal(mean, cov, size=20000)
    return X, X_test


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_quadratic_matches_gaussian_mle(gaussian_5d, method):
    # Sliced objectives are unbiased for score matching, whose Gaussian
    # optimum is the MLE: trained by Adam, each method gets within 0.01 nats
    # per sample of the MLE's held-out log-likelihood (d=5, n=20000).
    X, X_test = gaussian_5d
    mle = multivariate_normal(X.mean(0), np.cov(X, rowvar=False, bias=True))
    est = SlicedScoreMatchingDensity(
        energy="quadratic", method=method, learning_rate_init=3e-3, random_state=0
    ).fit(X)
    gap = mle.logpdf(X_test).mean() - est.score(X_test)
    assert abs(gap) < 0.01
    assert est.n_iter_ > 1  # trained, not solved
    assert est.log_partition_method_ == "closed_form"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("projection", ["gaussian", "rademacher"])
def test_each_method_learns_the_sign_and_scale(method, projection):
    # From N(0, I) to N(0.5, 0.6^2 I): a flipped sign would shrink the
    # precision, a unit-norm projection (a 1/d trace) would give about 1/3 of it.
    X = np.random.RandomState(0).normal(0.5, 0.6, size=(2000, 3))
    est = SlicedScoreMatchingDensity(
        energy="quadratic",
        method=method,
        projection=projection,
        n_projections=2,
        batch_size=64,
        learning_rate_init=1e-2,
        max_iter=15,
        early_stopping=False,
        tol=0.0,
        n_iter_no_change=15,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X)
    mean = est.energy_.mean.detach().numpy()
    precision = est.energy_.precision().detach().numpy()
    np.testing.assert_allclose(mean, 0.5, atol=0.1)
    np.testing.assert_allclose(np.diag(precision), 1 / 0.36, rtol=0.15)
    e_mode, e_far = -est.unnormalized_score_samples([[0.5] * 3, [3.0] * 3])
    assert e_mode < e_far


def test_mlp_fit_is_reproducible_and_finite():
    X = make_two_moons(300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = SlicedScoreMatchingDensity(random_state=1, **FAST).fit(X)
        b = SlicedScoreMatchingDensity(random_state=1, **FAST).fit(X)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    assert a.loss_curve_ == b.loss_curve_
    assert np.isfinite(a.score(X))


def test_finite_difference_in_float32():
    X = make_two_moons(300, random_state=0).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = SlicedScoreMatchingDensity(
            method="finite_difference", random_state=0, **FAST
        ).fit(X)
    assert all(p.dtype == torch.float32 for p in est.energy_.parameters())
    assert np.all(np.isfinite(est.loss_curve_))
    assert est.score_samples(X).dtype == np.float32


@pytest.mark.slow
def test_mlp_learns_moons_like_exact_score_matching():
    X = make_two_moons(1500, random_state=0)
    X_test = make_two_moons(1000, random_state=1)
    kw = dict(
        random_state=0,
        hidden_layer_sizes=(64, 64),
        batch_size=32,
        max_iter=40,
        learning_rate_init=2e-3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sliced = SlicedScoreMatchingDensity(**kw).fit(X)
    gauss = ScoreMatchingDensity(energy="quadratic").fit(X)
    assert sliced.score(X_test) > gauss.score(X_test) + 0.2
