"""EnergyDiscrepancyDensity: the loss, mode weights, Gaussian truth."""

import warnings

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skebm import EnergyDiscrepancyDensity, ScoreMatchingDensity
from skebm.objectives import energy_discrepancy_loss, gaussian_negatives


def _gaussian_energy(mean, scale):
    def energy(x):
        return 0.5 * (((x - mean) / scale) ** 2).sum(1)

    return energy


def test_negatives_share_the_first_perturbation():
    x = torch.zeros(5000, 3, dtype=torch.float64)
    y = gaussian_negatives(
        x,
        noise_scale=0.5,
        n_negatives=8,
        generator=torch.Generator().manual_seed(0),
    )
    # y_ij - x_i = s xi_i + s xi'_ij: within a row the covariance between two
    # negatives is s^2 (the shared step), the variance 2 s^2.
    assert y.shape == (5000, 8, 3)
    total = y.reshape(-1, 3).var(0)
    within = y.var(1).mean(0)  # unbiased over the 8 negatives
    np.testing.assert_allclose(total.numpy(), 2 * 0.25, rtol=0.1)
    np.testing.assert_allclose(within.numpy(), 0.25, rtol=0.05)


def test_loss_evaluates_data_and_negatives_in_one_call():
    calls = []

    def energy(x):
        calls.append(x.shape)
        return (x**2).sum(1)

    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(0))
    energy_discrepancy_loss(
        energy, x, n_negatives=5, generator=torch.Generator().manual_seed(1)
    )
    assert calls == [(7 + 7 * 5, 2)]


def test_loss_prefers_the_data_density():
    # The population loss is minimized by the data density: at a large batch
    # the true scale beats a too-narrow and a too-wide one.
    x = 2.0 * torch.randn(4096, 1, generator=torch.Generator().manual_seed(0))
    losses = {
        scale: energy_discrepancy_loss(
            _gaussian_energy(0.0, scale),
            x,
            noise_scale=1.0,
            n_negatives=64,
            stabilizer=0.0,
            generator=torch.Generator().manual_seed(1),
        ).item()
        for scale in (1.0, 2.0, 4.0)
    }
    assert losses[2.0] < losses[1.0] and losses[2.0] < losses[4.0]


def test_stabilizer_bounds_the_loss_below():
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))

    def energy(z):  # data energy far below every negative's
        return torch.where((z.abs() < 10).all(1), -1e3, 0.0) + 0 * z.sum(1)

    loss = energy_discrepancy_loss(
        energy,
        x,
        noise_scale=100.0,
        n_negatives=8,
        stabilizer=1.0,
        generator=torch.Generator(),
    )
    assert loss.item() >= np.log(1.0 / 8) - 1e-6
    unstabilized = energy_discrepancy_loss(
        energy,
        x,
        noise_scale=100.0,
        n_negatives=8,
        stabilizer=0.0,
        generator=torch.Generator(),
    )
    assert unstabilized.item() < -100


def test_quadratic_energy_matches_the_maximum_likelihood_gaussian():
    rng = np.random.RandomState(0)
    cov = np.array([[1.0, 0.6, 0.0], [0.6, 1.5, -0.3], [0.0, -0.3, 0.7]])
    X = rng.multivariate_normal([0.5, -1.0, 0.0], cov, size=6000)
    X_test = rng.multivariate_normal([0.5, -1.0, 0.0], cov, size=4000)
    est = EnergyDiscrepancyDensity(
        energy="quadratic", learning_rate_init=1e-2, random_state=0
    ).fit(X)
    mle = multivariate_normal(X.mean(0), np.cov(X.T, bias=True))
    gap = mle.logpdf(X_test).mean() - est.score(X_test)
    assert gap < 0.02, gap


@pytest.mark.slow
def test_mode_weights_are_recovered_where_score_matching_fails():
    # 0.2 N(-3, 0.5^2) + 0.8 N(3, 0.5^2): score matching sees each mode's shape
    # but not the mass between them; energy discrepancy's contrast does.
    rng = np.random.RandomState(0)
    n = 10000
    left = rng.rand(n) < 0.2
    X = np.where(left, -3.0, 3.0) + 0.5 * rng.randn(n)
    X = X[:, None]
    grid = np.linspace(-8, 8, 4001)[:, None]

    def left_mass(estimator):
        model = make_pipeline(StandardScaler(), estimator).fit(X)
        density = np.exp(model.score_samples(grid))
        return density[grid[:, 0] < 0].sum() / density.sum()

    # The methods on their own (base=None; a fitted base density carries the
    # weights for either). Short trainings: the weights are learned early.
    ed = left_mass(
        EnergyDiscrepancyDensity(
            base=None, noise_scale=1.0, max_iter=20, learning_rate_init=2e-3,
            random_state=0,
        )
    )
    assert abs(ed - 0.2) < 0.05, ed
    sm = left_mass(
        ScoreMatchingDensity(
            base=None, max_iter=5, learning_rate_init=2e-3, random_state=0
        )
    )
    assert abs(sm - 0.2) > 0.1, sm
    # With the default base, score matching gets them from the mixture.
    sm_base = left_mass(ScoreMatchingDensity(max_iter=5, random_state=0))
    assert abs(sm_base - 0.2) < 0.05, sm_base


def test_same_seed_same_fit():
    X = np.random.RandomState(0).normal(size=(300, 2))
    kw = dict(hidden_layer_sizes=(8,), max_iter=3, n_negatives=4, random_state=3)
    a = EnergyDiscrepancyDensity(**kw).fit(X)
    b = EnergyDiscrepancyDensity(**kw).fit(X)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    np.testing.assert_array_equal(
        a.sample(5, random_state=0), b.sample(5, random_state=0)
    )


def test_user_module_energy_without_input_gradients():
    # Energy discrepancy only evaluates the energy: a piecewise-linear (ReLU)
    # network, useless for score matching, trains.
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Linear(2, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 1),
        torch.nn.Flatten(0),
    )

    class Confined(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = module

        def forward(self, x):
            return self.net(x) + 0.5 * (x**2).sum(1)

    X = np.random.RandomState(0).normal(size=(400, 2))
    est = EnergyDiscrepancyDensity(energy=Confined(), max_iter=5, random_state=0)
    est.fit(X)
    assert np.isfinite(est.score_samples(X)).all()
    S = est.sample(50, random_state=0)
    assert S.shape == (50, 2) and np.isfinite(S).all()


class _Quantized(torch.nn.Module):
    """A Gaussian energy evaluated on a grid of 1e-3: no input gradient at all."""

    def __init__(self):
        super().__init__()
        self.log_scale = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        q = torch.round(x.detach() * 1000) / 1000
        return 0.5 * (q**2).sum(1) * torch.exp(-2 * self.log_scale)


def test_energy_without_input_gradients_is_sampled_without_gradients():
    X = np.random.RandomState(0).normal(size=(3000, 2)) * 1.5
    est = EnergyDiscrepancyDensity(
        energy=_Quantized(), base=None, max_iter=30, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X)
    scale = float(torch.exp(est.energy_.log_scale))
    S = est.sample(4000, random_state=0)
    # Random-walk Metropolis draws from the fitted model: its standard deviation.
    np.testing.assert_allclose(S.std(0), scale, rtol=0.1)
