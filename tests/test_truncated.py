"""Score matching on truncated domains (generalized score matching)."""

import math
import warnings

import joblib
import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from skebm import ScoreMatchingDensity, SlicedScoreMatchingDensity
from skebm.domains import Ball, Domain, Orthant, Polytope
from skebm.energies import LinearInParametersEnergy

MEAN = np.array([0.5, 1.0, 0.3])
COV = np.array([[1.0, 0.3, 0.2], [0.3, 1.0, -0.2], [0.2, -0.2, 0.5]])
PRECISION = np.linalg.inv(COV)
BOX = (np.array([0.0, -np.inf, -0.5]), np.array([2.0, 2.5, np.inf]))
FAST = dict(
    hidden_layer_sizes=(16, 16),
    max_iter=5,
    n_ais_chains=64,
    n_ais_steps=50,
    n_sampling_steps=50,
)


def truncated_gaussian(n, lower, upper, seed=0, mean=MEAN, cov=COV):
    rng = np.random.RandomState(seed)
    chunks, total = [], 0
    while total < n:
        S = rng.multivariate_normal(mean, cov, size=4 * n)
        S = S[((S >= lower) & (S <= upper)).all(1)]
        chunks.append(S)
        total += len(S)
    return np.concatenate(chunks)[:n]


def mass_outside(lower, upper):
    S = np.random.RandomState(1).multivariate_normal(MEAN, COV, size=200000)
    return 1 - ((S >= lower) & (S <= upper)).all(1).mean()


def relative_errors(est):
    mean = est.energy_.mean.detach().numpy()
    precision = est.energy_.precision().detach().numpy()
    return (
        np.linalg.norm(mean - MEAN) / np.linalg.norm(MEAN),
        np.linalg.norm(precision - PRECISION) / np.linalg.norm(PRECISION),
    )


@pytest.fixture(scope="module")
def orthant_data():
    return truncated_gaussian(10000, 0.0, np.inf)


@pytest.mark.parametrize("where", ["orthant", "box"])
def test_truncated_gaussian_recovered_with_domain_biased_without(where, orthant_data):
    if where == "orthant":
        domain, (lower, upper), X = "nonnegative", (0.0, np.inf), orthant_data
    else:
        domain, (lower, upper) = BOX, BOX
        X = truncated_gaussian(10000, lower, upper)
    assert mass_outside(lower, upper) >= 0.3
    est = ScoreMatchingDensity(energy="quadratic", domain=domain).fit(X)
    assert est.n_iter_ == 1  # closed form
    mean_err, precision_err = relative_errors(est)
    assert mean_err < 0.1 and precision_err < 0.1
    plain = ScoreMatchingDensity(energy="quadratic").fit(X)
    mean_err, precision_err = relative_errors(plain)
    assert mean_err > 0.3 and precision_err > 0.3


@pytest.mark.parametrize("method", ["sliced_vr", "finite_difference"])
def test_sliced_on_the_orthant_recovers_the_truncated_gaussian(method, orthant_data):
    est = SlicedScoreMatchingDensity(
        energy="quadratic",
        domain="nonnegative",
        method=method,
        learning_rate_init=1e-2,
        n_iter_no_change=20,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(orthant_data)
    mean_err, precision_err = relative_errors(est)
    assert mean_err < 0.15 and precision_err < 0.1


@pytest.mark.parametrize("sampling_init", ["data", "noise"])
def test_samples_stay_inside_and_match_the_data(orthant_data, sampling_init):
    X = orthant_data
    est = ScoreMatchingDensity(
        energy="quadratic", domain="nonnegative", sampling_init=sampling_init
    ).fit(X)
    S = est.sample(5000, random_state=0)
    assert (S >= 0).all()
    np.testing.assert_allclose(S.mean(0), X.mean(0), atol=0.05)
    np.testing.assert_allclose(
        np.cov(S, rowvar=False), np.cov(X, rowvar=False), atol=0.05
    )


def test_log_partition_integrates_over_the_domain_only(orthant_data):
    # d=3 (AIS): the fitted Gaussian's normalizer on the orthant, from scipy.
    est = ScoreMatchingDensity(energy="quadratic", domain="nonnegative").fit(
        orthant_data
    )
    assert est.log_partition_method_ == "ais"
    mean = est.energy_.mean.detach().numpy()
    precision = est.energy_.precision().detach().numpy()
    prob = multivariate_normal.cdf(
        np.full(3, np.inf), mean, np.linalg.inv(precision), lower_limit=np.zeros(3)
    )
    exact = 1.5 * math.log(2 * math.pi) - 0.5 * np.linalg.slogdet(precision)[1]
    exact += math.log(prob)
    assert abs(est.log_partition_ - exact) < 3 * est.log_partition_std_ + 0.01


def test_density_on_a_box_integrates_to_one():
    # d=2 (quadrature, masked to the box): exp(score_samples) sums to 1 over
    # the box, and is zero outside.
    X = truncated_gaussian(
        3000, [0.0, -1.0], [1.5, 1.0], mean=MEAN[:2], cov=COV[:2, :2]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = ScoreMatchingDensity(
            domain=([0.0, -1.0], [1.5, 1.0]), random_state=0, **FAST
        ).fit(X)
    assert est.log_partition_method_ == "quadrature"
    gx, gy = np.linspace(0, 1.5, 301), np.linspace(-1, 1, 401)
    xx, yy = np.meshgrid(gx, gy)
    dens = np.exp(est.score_samples(np.c_[xx.ravel(), yy.ravel()])).reshape(xx.shape)
    mass = np.trapezoid(np.trapezoid(dens, gx, axis=1), gy)
    assert mass == pytest.approx(1.0, abs=1e-3)
    assert np.all(est.score_samples([[1.6, 0.0], [0.5, -1.1]]) == -np.inf)


def test_score_samples_is_minus_inf_outside(orthant_data):
    est = ScoreMatchingDensity(energy="quadratic", domain="nonnegative").fit(
        orthant_data
    )
    X = np.array([[0.5, 0.5, 0.5], [-0.1, 0.5, 0.5], [0.0, 0.0, 0.0]])
    scores = est.score_samples(X)
    assert np.isfinite(scores[[0, 2]]).all() and scores[1] == -np.inf
    assert est.unnormalized_score_samples(X)[1] == -np.inf
    assert est.score(X) == -np.inf


@pytest.mark.parametrize(
    "domain, X, match",
    [
        ("nonnegative", [[0.1, 1.0], [-0.5, 2.0], [1.0, 1.0]], "Negative values"),
        ((0.0, 1.0), [[0.1, 0.5], [0.5, 1.5], [0.2, 0.3]], r"outside the domain Box"),
        (Ball(radius=1.0), [[0.1, 0.5], [0.5, 1.5], [0.2, 0.3]], "first: row 1"),
        ((0.0, [1.0, 2.0, 3.0]), [[0.1, 0.5], [0.5, 0.7]], "n_features=2"),
        ((1.0,), [[0.1, 0.5], [0.5, 0.7]], r"\(lower, upper\)"),
    ],
)
def test_bad_domain_or_data_outside_is_a_value_error(domain, X, match):
    est = ScoreMatchingDensity(energy="quadratic", domain=domain)
    with pytest.raises(ValueError, match=match):
        est.fit(np.asarray(X))
    assert not hasattr(est, "energy_")


def test_quadratic_on_domain_needs_a_positive_definite_solution():
    # U-shaped data on a box: the quadratic fit has negative curvature.
    X = np.random.RandomState(0).beta(0.3, 0.3, size=(2000, 2))
    with pytest.raises(ValueError, match="not positive definite"):
        ScoreMatchingDensity(energy="quadratic", domain=(0.0, 1.0)).fit(X)


class LinearEnergy(LinearInParametersEnergy):
    """E(x) = theta^T x: not normalizable on R^d, an exponential on the orthant."""

    def __init__(self, d):
        super().__init__(d)

    def statistics(self, x):
        return x


def test_linear_energy_on_the_orthant_is_the_exponential_mle():
    # h = x: J = 1/2 theta^2 E[x] - theta, so theta = 1 / mean = the MLE rate.
    X = np.random.RandomState(0).exponential(scale=[0.5, 2.0], size=(5000, 2))
    est = ScoreMatchingDensity(energy=LinearEnergy(2), alpha=0.0, domain=Orthant())
    est.fit(X)
    theta = est.energy_.theta.detach().numpy()
    np.testing.assert_allclose(theta, 1 / X.mean(0), rtol=1e-8)
    # log Z over the orthant (quadrature): sum of -log(rate), within the
    # reported discretization error.
    assert est.log_partition_method_ == "quadrature"
    error = abs(est.log_partition_ + np.log(theta).sum())
    assert error < max(est.log_partition_std_, 1e-4) < 0.01


class UpperHalf(Domain):
    """A user-written domain: {x : x_1 >= x_0}."""

    def contains(self, x):
        return x[:, 1] >= x[:, 0]

    def distance(self, x):
        return (x[:, 1] - x[:, 0]) / math.sqrt(2)


@pytest.mark.parametrize(
    "domain",
    [UpperHalf(), Polytope([[1.0, -1.0], [-1.0, 0.0]], [0.0, 3.0]), Ball(0.0, 4.0)],
)
@pytest.mark.parametrize("cls", [ScoreMatchingDensity, SlicedScoreMatchingDensity])
def test_general_domains_fit_score_and_sample_inside(domain, cls):
    X = np.random.RandomState(0).normal(size=(4000, 2))
    X = X[to_mask(domain, X)][:500]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = cls(domain=domain, random_state=0, **FAST).fit(X)
    assert np.isfinite(est.score(X))
    for init in ("data", "noise"):
        S = est.set_params(sampling_init=init).sample(200, random_state=0)
        assert to_mask(domain, S).all()


def to_mask(domain, X):
    return domain.contains(torch.as_tensor(X)).numpy()


def test_gridsearch_over_a_domain_parameter_and_roundtrip(tmp_path):
    X = truncated_gaussian(600, 0.0, np.inf)[:, :2]
    X = X[np.linalg.norm(X - 1.0, axis=1) <= 1.5]
    grid = GridSearchCV(
        ScoreMatchingDensity(
            energy="quadratic", domain=Ball(center=[1.0, 1.0], radius=2.0)
        ),
        {"domain__radius": [1.5, 3.0]},
        cv=3,
    ).fit(X)
    # The tighter ball that still holds the data normalizes over less space.
    assert grid.best_params_ == {"domain__radius": 1.5}
    est = grid.best_estimator_
    assert est.domain_.radius == 1.5
    est.set_params(domain__radius=5.0)  # a parameter change does not touch fit
    assert est.domain_.radius == 1.5
    copy = clone(est)
    assert copy.domain.radius == 5.0 and copy.domain is not est.domain
    joblib.dump(est, tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib")
    np.testing.assert_array_equal(loaded.score_samples(X), est.score_samples(X))
