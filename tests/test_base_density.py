"""Base densities: continuous energies as learned corrections of a fitted mixture."""

import math
import warnings

import joblib
import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
from sklearn.model_selection import GridSearchCV

from skebm import (
    EnergyDiscrepancyDensity,
    ScoreMatchingDensity,
    SlicedScoreMatchingDensity,
)
from skebm.base_densities import BaseCorrectedEnergy, GaussianMixtureBase
from skebm.datasets import make_two_moons
from skebm.energies import MLPEnergy
from skebm.partition import log_partition_importance, log_partition_quadrature

ESTIMATORS = [
    ScoreMatchingDensity,
    SlicedScoreMatchingDensity,
    EnergyDiscrepancyDensity,
]
FAST = dict(hidden_layer_sizes=(16, 16), max_iter=5, n_sampling_steps=10)


def _random_mixture(k=3, d=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(k, d, d, generator=gen, dtype=torch.float64)
    cov = A @ A.transpose(1, 2) + 0.5 * torch.eye(d, dtype=torch.float64)
    means = torch.randn(k, d, generator=gen, dtype=torch.float64)
    weights = torch.rand(k, generator=gen, dtype=torch.float64) + 0.2
    return GaussianMixtureBase(weights / weights.sum(), means, cov), (
        weights / weights.sum(),
        means,
        cov,
    )


def test_mixture_closed_forms_match_scipy_and_autograd():
    base, (w, m, cov) = _random_mixture()
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(1)).double()
    ref = np.log(
        sum(
            float(w[k]) * multivariate_normal(m[k].numpy(), cov[k].numpy()).pdf(x)
            for k in range(3)
        )
    )
    np.testing.assert_allclose(base.log_prob(x).numpy(), ref, atol=1e-10)
    xx = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(base.log_prob(xx).sum(), xx, create_graph=True)
    diag = torch.stack(
        [
            torch.autograd.grad(grad[:, j].sum(), xx, retain_graph=True)[0][:, j]
            for j in range(4)
        ],
        1,
    )
    score, hess_diag = base.score_and_hessian_diagonal(x)
    torch.testing.assert_close(score, grad.detach())
    torch.testing.assert_close(base.score(x), grad.detach())
    torch.testing.assert_close(hess_diag, diag.detach())


def test_mixture_conditionals_multiply_to_the_joint():
    base, _ = _random_mixture(seed=2)
    x = torch.randn(9, 4, generator=torch.Generator().manual_seed(3)).double()
    log_w, means, stds = base.conditionals(x)
    per_coordinate = torch.logsumexp(
        log_w
        - 0.5 * ((x[:, :, None] - means) / stds) ** 2
        - torch.log(stds)
        - 0.5 * math.log(2 * math.pi),
        dim=2,
    )
    torch.testing.assert_close(per_coordinate.sum(1), base.log_prob(x))


def test_mixture_samples_have_its_moments():
    base, (w, m, cov) = _random_mixture(seed=4)
    x = base.sample(200000, generator=torch.Generator().manual_seed(0))
    mean = (w[:, None] * m).sum(0)
    np.testing.assert_allclose(x.mean(0).numpy(), mean.numpy(), atol=0.03)


class _ZeroCorrection(torch.nn.Module):
    """A correction that is zero for every parameter value."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return 0.0 * self.unused * x.sum(1)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_zero_correction_gives_exactly_the_base(cls):
    rng = np.random.RandomState(0)
    X = np.concatenate([rng.normal(-2, 0.5, (300, 3)), rng.normal(1, 1, (300, 3))])
    X_test = rng.normal(size=(50, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = cls(energy=_ZeroCorrection(), max_iter=2, random_state=0).fit(X)
    assert isinstance(est.base_, GaussianMixture)
    assert est.log_partition_ == 0.0
    np.testing.assert_allclose(
        est.score_samples(X_test), est.base_.score_samples(X_test), atol=1e-12
    )


def test_untrained_mlp_correction_is_zero():
    correction = MLPEnergy(
        3,
        (8, 8),
        "silu",
        generator=torch.Generator().manual_seed(0),
        confining=False,
        zero_output=True,
    )
    x = torch.randn(5, 3)
    assert torch.equal(correction(x), torch.zeros(5))
    base, _ = _random_mixture(d=3)
    energy = BaseCorrectedEnergy(base, correction.double())
    torch.testing.assert_close(-energy(x.double()), base.log_prob(x.double()))


def test_quadratic_energy_with_gaussian_base_is_the_mle(gaussian_data):
    X = gaussian_data
    est = ScoreMatchingDensity(energy="quadratic", base="gaussian").fit(X)
    mle = multivariate_normal(X.mean(0), np.cov(X, rowvar=False, bias=True))
    X_test = np.random.RandomState(1).normal(size=(300, 3))
    np.testing.assert_allclose(est.score_samples(X_test), mle.logpdf(X_test), atol=1e-6)
    assert not hasattr(est, "base_")  # complete models use no base


def test_gaussian_base_is_the_maximum_likelihood_gaussian():
    X = np.random.RandomState(0).normal(size=(500, 3)) @ np.diag([1.0, 2.0, 0.5])
    est = ScoreMatchingDensity(base="gaussian", random_state=0, **FAST).fit(X)
    assert est.base_.n_components == 1
    # Fitted on the training split (90%): the maximum-likelihood Gaussian there.
    np.testing.assert_allclose(est.base_.means_[0], X.mean(0), atol=0.05)


@pytest.mark.parametrize(
    "mixture",
    [
        GaussianMixture(2, covariance_type="diag"),
        BayesianGaussianMixture(n_components=3),
    ],
)
def test_mixture_instance_is_cloned_and_fitted(mixture):
    X = make_two_moons(400, random_state=0)
    est = EnergyDiscrepancyDensity(base=mixture, random_state=0, **FAST).fit(X)
    assert type(est.base_) is type(mixture)
    assert est.base_ is not mixture and not hasattr(mixture, "weights_")
    assert np.isfinite(est.score(X))


def test_gmm_base_chooses_components_by_held_out_likelihood():
    rng = np.random.RandomState(0)
    centers = np.array([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])

    def draw(n):
        return centers[rng.randint(3, size=n)] + 0.5 * rng.normal(size=(n, 2))

    X, X_test = draw(1500), draw(5000)
    est = SlicedScoreMatchingDensity(random_state=0, **FAST).fit(X)
    assert 3 <= est.base_.n_components <= 6
    # As good on held-out data as the true number of components.
    three = GaussianMixture(3, random_state=0).fit(X)
    assert est.base_.score(X_test) > three.score(X_test) - 0.01


def test_small_data_never_loses_to_its_base():
    # 60 rows: cross-fitting decides, on every row, whether the correction helps.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 2))
    X_test = rng.normal(size=(2000, 2))
    est = ScoreMatchingDensity(base="gaussian", random_state=0).fit(X)
    assert len(est.validation_scores_) >= 1
    assert est.score(X_test) >= est.base_.score(X_test) - 0.02


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_default_fit_is_never_below_its_base_on_mixture_data(cls):
    rng = np.random.RandomState(1)
    X = np.concatenate(
        [rng.normal([-2.0, 0.0], 0.6, (1200, 2)), rng.normal([2.0, 1.0], 1.0, (800, 2))]
    )
    X_test = np.concatenate(
        [
            rng.normal([-2.0, 0.0], 0.6, (3000, 2)),
            rng.normal([2.0, 1.0], 1.0, (2000, 2)),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = cls(random_state=0, max_iter=20).fit(X)
    assert est.score(X_test) >= est.base_.score(X_test) - 0.01


def test_importance_sampling_log_z_agrees_with_quadrature_in_2d():
    X = make_two_moons(1000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = EnergyDiscrepancyDensity(random_state=0, max_iter=15).fit(X)
    energy = est.energy_.double()
    estimate = log_partition_importance(
        energy, energy.base, generator=torch.Generator().manual_seed(0)
    )
    lo = torch.tensor(X.min(0) - 3.0)
    quad, err = log_partition_quadrature(energy, lo, torch.tensor(X.max(0) + 3.0))
    assert abs(estimate.log_z - quad) < 3 * estimate.stderr + err + 1e-9
    assert estimate.ess > 1000


def test_importance_sampling_log_z_in_10d_agrees_with_a_100x_larger_run():
    rng = np.random.RandomState(0)
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    moons = make_two_moons(3000, random_state=0)
    X = np.c_[moons, rng.normal(size=(3000, 8))] @ Q
    X = (X - X.mean(0)) / X.std(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Every epoch kept (no selection): a trained correction whose log Z
        # importance sampling must estimate, whatever the base.
        est = SlicedScoreMatchingDensity(
            random_state=0, max_iter=15, learning_rate_init=1e-2, early_stopping=False
        ).fit(X)
    assert est.log_partition_method_ == "importance_sampling"
    energy = est.energy_.double()
    big = log_partition_importance(
        energy,
        energy.base,
        n_draws=1_638_400,
        max_draws=1_638_400,
        generator=torch.Generator().manual_seed(1),
    )
    assert abs(est.log_partition_ - big.log_z) < 3 * est.log_partition_std_ + 1e-12


def test_sample_mode_masses_match_the_model_by_quadrature():
    # Unequal modes (0.2 / 0.8): the samples must carry the model's masses, not
    # the data's and not where chains start.
    rng = np.random.RandomState(0)
    left = rng.rand(3000) < 0.2
    X = np.where(left[:, None], [-3.0, 0.0], [3.0, 0.0]) + 0.6 * rng.normal(
        size=(3000, 2)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = EnergyDiscrepancyDensity(random_state=0, max_iter=10).fit(X)
    grid = np.linspace(-8, 8, 401)
    xx, yy = np.meshgrid(grid, grid, indexing="ij")
    points = np.c_[xx.ravel(), yy.ravel()]
    density = np.exp(est.score_samples(points))
    model_left = density[points[:, 0] < 0].sum() / density.sum()
    S = est.sample(20000, random_state=0)
    assert abs((S[:, 0] < 0).mean() - model_left) < 0.02


def test_gridsearch_over_base_clone_and_joblib(tmp_path):
    X = make_two_moons(300, random_state=0)
    grid = GridSearchCV(
        EnergyDiscrepancyDensity(random_state=0, **FAST),
        {"base": ["gmm", "gaussian", None]},
        cv=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X)
    # Two moons: a mixture beats one Gaussian and an energy from scratch.
    assert grid.best_params_ == {"base": "gmm"}
    est = grid.best_estimator_
    assert clone(est).get_params()["base"] == "gmm"
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.score_samples(X), est.score_samples(X))
    assert loaded.base_.n_components == est.base_.n_components


def test_warm_start_keeps_the_base_and_continues_the_correction():
    X = make_two_moons(1200, random_state=0)
    est = SlicedScoreMatchingDensity(random_state=0, warm_start=True, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X)
        base, first_best = est.base_, est.best_validation_score_
        est.fit(X)
    assert est.base_ is base
    # The second fit starts from the first one's model (its epoch 0), not
    # from a fresh correction.
    assert est.validation_scores_[0] == pytest.approx(first_best, abs=1e-6)
    assert est.best_validation_score_ >= first_best - 1e-6


def test_float32_input_is_scored_in_float32():
    X = make_two_moons(300, random_state=0).astype(np.float32)
    est = ScoreMatchingDensity(random_state=0, **FAST).fit(X)
    assert est.score_samples(X).dtype == np.float32
    assert est.sample(3, random_state=0).dtype == np.float32


def test_sampling_init_base_needs_a_base():
    X = np.random.RandomState(0).normal(size=(200, 2))
    est = ScoreMatchingDensity(energy="quadratic", sampling_init="base").fit(X)
    # Quadratic energies are sampled exactly: no chains, no error.
    assert est.sample(3, random_state=0).shape == (3, 2)
    est = ScoreMatchingDensity(
        base=None, sampling_init="base", random_state=0, **FAST
    ).fit(X)
    with pytest.raises(ValueError, match="needs a fitted base"):
        est.sample(3, random_state=0)


def test_sample_chains_move_away_from_where_they_start():
    # Chains started at training points must leave them: a sampler that does
    # not move would return training rows.
    X = make_two_moons(500, random_state=0)
    est = ScoreMatchingDensity(random_state=0, sampling_init="data", **FAST).fit(X)
    S = est.sample(300, random_state=0)
    unmoved = (S[:, None, :] == X[None, :, :]).all(-1).any(1)
    assert unmoved.mean() < 0.05
