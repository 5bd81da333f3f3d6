import math

import numpy as np
import pytest
import torch

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
