import math

import numpy as np
import pytest
import torch

from skebm.domains import Ball, Box, Orthant
from skebm.energies import MLPEnergy, QuadraticEnergy
from skebm.partition import (
    log_partition_ais,
    log_partition_gaussian,
    log_partition_quadrature,
)


def _bimodal_mlp_energy():
    gen = torch.Generator().manual_seed(0)
    energy = MLPEnergy(2, (32, 32), generator=gen).double()
    with torch.no_grad():
        energy.layers[-1].weight.mul_(8.0)  # a rugged, non-Gaussian landscape
    return energy


def test_gaussian_closed_form_matches_quadrature():
    energy = QuadraticEnergy(2).double()
    prec = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    energy.set_gaussian(torch.tensor([0.3, -0.2], dtype=torch.float64), prec)
    exact, std = log_partition_gaussian(prec)
    assert std == 0.0
    quad, err = log_partition_quadrature(
        energy,
        torch.tensor([-1.0, -1.0], dtype=torch.float64),
        torch.tensor([1.0, 1.0], dtype=torch.float64),
    )
    assert quad == pytest.approx(exact, abs=1e-6)
    assert err < 1e-4


def test_quadrature_one_dimension():
    energy = QuadraticEnergy(1).double()
    exact = 0.5 * math.log(2 * math.pi)
    quad, _ = log_partition_quadrature(
        energy,
        torch.tensor([-1.0], dtype=torch.float64),
        torch.tensor([1.0], dtype=torch.float64),
    )
    assert quad == pytest.approx(exact, abs=1e-7)


def test_ais_agrees_with_quadrature_on_non_gaussian_mlp():
    energy = _bimodal_mlp_energy()
    lo = torch.tensor([-6.0, -6.0], dtype=torch.float64)
    quad, err = log_partition_quadrature(energy, lo, -lo)
    # Base: the energy's own second moments, roughly, as the estimators do.
    grid = torch.linspace(-6, 6, 201, dtype=torch.float64)
    pts = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        w = torch.softmax(-energy(pts), 0)
    mean = (w[:, None] * pts).sum(0)
    cov = ((pts - mean).T * w) @ (pts - mean)
    gen = torch.Generator().manual_seed(1)
    ais, stderr = log_partition_ais(
        energy, mean, cov * 1.5**2, n_chains=1000, n_steps=300, generator=gen
    )
    assert 0 < stderr < 0.1
    assert abs(ais - quad) < 3 * stderr + err


def test_ais_gaussian_exact():
    d = 5
    energy = QuadraticEnergy(d).double()
    A = torch.randn(
        d, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    prec = A @ A.T + d * torch.eye(d, dtype=torch.float64)
    energy.set_gaussian(torch.zeros(d, dtype=torch.float64), prec)
    exact, _ = log_partition_gaussian(prec)
    cov = torch.linalg.inv(prec)
    ais, stderr = log_partition_ais(
        energy,
        torch.zeros(d, dtype=torch.float64),
        cov * 2.25,
        n_chains=500,
        n_steps=200,
        generator=torch.Generator().manual_seed(0),
    )
    assert abs(ais - exact) < 3 * stderr + 1e-3


def test_quadrature_rejects_high_dimension():
    with pytest.raises(ValueError, match="d <= 2"):
        log_partition_quadrature(QuadraticEnergy(3), torch.zeros(3), torch.ones(3))


def test_estimator_ais_used_above_two_dimensions():
    from skebm import ScoreMatchingDensity

    X = np.random.RandomState(0).normal(size=(300, 3))
    est = ScoreMatchingDensity(
        base=None,
        hidden_layer_sizes=(16,),
        max_iter=5,
        n_ais_chains=100,
        n_ais_steps=60,
        random_state=0,
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
    assert est.log_partition_method_ == "ais"
    assert 0 < est.log_partition_std_ < 0.2


def _gaussian(mean, precision):
    energy = QuadraticEnergy(len(mean)).double()
    energy.set_gaussian(
        torch.tensor(mean, dtype=torch.float64),
        torch.tensor(precision, dtype=torch.float64),
    )
    return energy


def _truncated_log_z(mean, precision, lower, upper):
    """log ∫_box exp(-E) for a Gaussian energy, by scipy's box probability."""
    from scipy.stats import multivariate_normal

    d = len(mean)
    cov = np.linalg.inv(precision)
    prob = multivariate_normal.cdf(
        np.broadcast_to(upper, (d,)),
        mean,
        cov,
        lower_limit=np.broadcast_to(lower, (d,)),
        abseps=1e-9,
        releps=1e-9,
    )
    _, logdet = np.linalg.slogdet(precision)
    return 0.5 * d * math.log(2 * math.pi) - 0.5 * logdet + math.log(prob)


@pytest.mark.parametrize(
    "mean, precision, domain, lower, upper",
    [
        ([0.3], [[2.0]], Orthant(), 0.0, np.inf),
        ([-0.4], [[0.5]], Box(-1.0, 2.0), -1.0, 2.0),
        ([0.3, -0.2], [[2.0, 0.5], [0.5, 1.0]], Orthant(), 0.0, np.inf),
        (
            [0.3, -0.2],
            [[2.0, 0.5], [0.5, 1.0]],
            Box([-0.5, 0.0], [1.0, np.inf]),
            [-0.5, 0.0],
            [1.0, np.inf],
        ),
    ],
)
def test_quadrature_on_a_box_domain_matches_scipy(
    mean, precision, domain, lower, upper
):
    energy = _gaussian(mean, precision)
    d = len(mean)
    ones = torch.ones(d, dtype=torch.float64)
    quad, err = log_partition_quadrature(energy, -ones, ones, domain=domain)
    exact = _truncated_log_z(mean, precision, lower, upper)
    assert quad == pytest.approx(exact, abs=1e-4)
    assert err < 1e-3


def test_quadrature_on_a_ball_matches_chi2():
    # N(c, s^2 I) on the ball of radius r about c: P = chi2_d(r^2 / s^2).
    from scipy.stats import chi2

    s, r = 0.8, 1.0
    energy = _gaussian([0.5, -0.5], np.eye(2) / s**2)
    ones = torch.ones(2, dtype=torch.float64)
    quad, err = log_partition_quadrature(
        energy, -ones, ones, domain=Ball([0.5, -0.5], r)
    )
    exact = math.log(2 * math.pi * s**2) + math.log(chi2.cdf(r**2 / s**2, 2))
    # A curved boundary on a square grid: first-order accurate, error reported.
    assert abs(quad - exact) < max(3 * err, 1e-3)


@pytest.mark.slow
@pytest.mark.parametrize(
    "domain, lower, upper",
    [
        (Orthant(), 0.0, np.inf),
        (Box([-0.5, 0.0, -1.0], [1.0, 2.0, 0.5]), [-0.5, 0.0, -1.0], [1.0, 2.0, 0.5]),
    ],
)
def test_ais_on_a_box_domain_matches_scipy(domain, lower, upper):
    mean = [0.2, -0.1, 0.4]
    precision = np.array([[1.5, 0.4, 0.0], [0.4, 1.0, 0.3], [0.0, 0.3, 2.0]])
    energy = _gaussian(mean, precision)
    cov = torch.linalg.inv(torch.tensor(precision))
    ais, stderr = log_partition_ais(
        energy,
        torch.tensor(mean, dtype=torch.float64),
        cov * 2.25,
        domain=domain,
        n_chains=1000,
        n_steps=300,
        generator=torch.Generator().manual_seed(0),
    )
    exact = _truncated_log_z(mean, precision, lower, upper)
    assert 0 < stderr < 0.02
    # AIS is biased low by a little at a finite number of steps.
    assert abs(ais - exact) < 3 * stderr + 0.005


@pytest.mark.slow
def test_ais_on_a_ball_matches_chi2():
    # The base (on the ball's bounding box) puts mass outside the ball: those
    # chains get weight zero and the estimate stays unbiased.
    from scipy.stats import chi2

    s, r, d = 0.7, 1.2, 3
    center = [0.3, 0.0, -0.2]
    energy = _gaussian(center, np.eye(d) / s**2)
    ais, stderr = log_partition_ais(
        energy,
        torch.tensor(center, dtype=torch.float64),
        torch.eye(d, dtype=torch.float64) * (1.5 * s) ** 2,
        domain=Ball(center, r),
        n_chains=1000,
        n_steps=200,
        generator=torch.Generator().manual_seed(0),
    )
    exact = 0.5 * d * math.log(2 * math.pi * s**2) + math.log(chi2.cdf(r**2 / s**2, d))
    assert 0 < stderr < 0.05
    assert abs(ais - exact) < 3 * stderr + 0.005


def test_importance_estimate_with_an_underflowing_weight_is_finite():
    # Weights 744 and 800 nats below the largest: the smallest positive one
    # over a batch size underflowed to 0 and log(0) raised a math domain error.
    from skebm.partition import importance_estimate

    log_w = np.full(400, -800.0)
    log_w[0], log_w[1] = 0.0, -744.0
    estimate = importance_estimate(log_w)
    assert np.isfinite(estimate.log_z) and estimate.log_z < 0
    assert np.isfinite(estimate.stderr) and estimate.ess < 2
