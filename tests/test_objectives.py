"""Contracts every objective keeps, and closed-form truths."""

from functools import partial

import pytest
import torch

from skebm.domains import Ball, Box, Orthant
from skebm.energies import MLPEnergy, QuadraticEnergy
from skebm.objectives import (
    exact_score_matching_loss,
    finite_difference_score_matching_loss,
    random_projections,
    sliced_score_matching_loss,
)
from skebm.objectives.score_matching import solve_gaussian_generalized_score_matching

ORTHANT_WEIGHT = partial(Orthant().boundary_weight, cap=2.0)

OBJECTIVES = {
    "exact_score_matching": exact_score_matching_loss,
    "exact_score_matching_orthant": partial(
        exact_score_matching_loss, boundary_weight=ORTHANT_WEIGHT
    ),
    "sliced": partial(sliced_score_matching_loss, n_projections=2),
    "sliced_vr": partial(
        sliced_score_matching_loss, variance_reduced=True, projection="rademacher"
    ),
    "finite_difference": partial(finite_difference_score_matching_loss),
    "sliced_vr_orthant": partial(
        sliced_score_matching_loss,
        variance_reduced=True,
        boundary_weight=ORTHANT_WEIGHT,
    ),
    "finite_difference_orthant": partial(
        finite_difference_score_matching_loss,
        n_projections=3,
        boundary_weight=ORTHANT_WEIGHT,
    ),
}


class Shifted(torch.nn.Module):
    def __init__(self, energy, c):
        super().__init__()
        self.energy, self.c = energy, c

    def forward(self, x):
        return self.energy(x) + self.c


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objective_contract(name):
    objective = OBJECTIVES[name]
    energy = MLPEnergy(3, (8,), generator=torch.Generator().manual_seed(0)).double()
    x = torch.rand(
        32, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    loss = objective(energy, x, generator=torch.Generator().manual_seed(2))
    assert loss.shape == ()
    assert torch.isfinite(loss)
    loss.backward()
    # Score objectives ignore additive constants such as the last bias.
    grads = [p.grad for p in energy.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # E + c describes the same density: the loss must not change.
    shifted = objective(
        Shifted(energy, 5.0), x, generator=torch.Generator().manual_seed(2)
    )
    torch.testing.assert_close(shifted, loss.detach())


def test_exact_score_matching_gaussian_truth():
    # For E = 1/2 x^T P x on data with covariance S: J = 1/2 tr(P S P) - tr(P),
    # minimized at P = S^{-1} where J = -1/2 tr(S^{-1}).
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200000, 2, generator=gen, dtype=torch.float64) * torch.tensor(
        [1.0, 2.0]
    )
    S = x.T @ x / len(x)
    energy = QuadraticEnergy(2).double()
    energy.set_gaussian(torch.zeros(2, dtype=torch.float64), torch.linalg.inv(S))
    loss = exact_score_matching_loss(energy, x)
    assert float(loss.detach()) == pytest.approx(
        -0.5 * float(torch.trace(torch.linalg.inv(S))), rel=1e-6
    )
    loss.backward()
    assert float(energy.chol_logdiag.grad.abs().max()) < 1e-6
    # And the sign: a worse precision has a larger loss.
    worse = QuadraticEnergy(2).double()
    worse.set_gaussian(torch.zeros(2, dtype=torch.float64), 2 * torch.linalg.inv(S))
    assert float(exact_score_matching_loss(worse, x)) > float(loss)


def _gaussian_energy(d=3):
    energy = QuadraticEnergy(d).double()
    A = torch.randn(
        d, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    energy.set_gaussian(
        torch.full((d,), 0.5, dtype=torch.float64), A @ A.T + torch.eye(d).double()
    )
    return energy


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_projections_have_identity_second_moment(kind):
    # No unit-norm projections: E[v v^T] = I, so v^T H v estimates tr H, not tr H / d.
    v = random_projections(
        (200000, 4),
        kind,
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
        device="cpu",
    )
    torch.testing.assert_close(
        v.T @ v / len(v), torch.eye(4, dtype=torch.float64), atol=0.02, rtol=0
    )


@pytest.mark.parametrize("domain", [None, Orthant(), Box(0.0, 1.5), Ball(0.5, 1.0)])
@pytest.mark.parametrize(
    "loss",
    [
        partial(sliced_score_matching_loss, projection="gaussian"),
        partial(sliced_score_matching_loss, projection="rademacher"),
        partial(sliced_score_matching_loss, variance_reduced=True),
        partial(finite_difference_score_matching_loss, projection="rademacher"),
    ],
    ids=["sliced_gaussian", "sliced_rademacher", "sliced_vr", "finite_difference"],
)
def test_sliced_objectives_are_unbiased_for_the_exact_one(loss, domain):
    # Averaged over many projections, every sliced form equals the exact
    # (generalized, on a domain) objective: same sign, same scale, no 1/d.
    energy = _gaussian_energy()
    x = torch.rand(
        40, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    weight = None if domain is None else partial(domain.boundary_weight, cap=1.0)
    exact = float(exact_score_matching_loss(energy, x, boundary_weight=weight))
    sliced = float(
        loss(
            energy,
            x,
            n_projections=5000,
            generator=torch.Generator().manual_seed(2),
            boundary_weight=weight,
        )
    )
    assert sliced == pytest.approx(exact, abs=0.03 * (1 + abs(exact)))


@pytest.mark.parametrize("domain", [None, Orthant()])
def test_finite_differences_match_autograd_for_the_same_projections(domain):
    energy = MLPEnergy(6, (16, 16), generator=torch.Generator().manual_seed(0))
    x = torch.rand(64, 6, generator=torch.Generator().manual_seed(1)) * 2
    weight = None if domain is None else partial(domain.boundary_weight, cap=1.0)

    def both(dtype, **kw):
        e = energy.to(dtype)
        xd = x.to(dtype)
        args = dict(n_projections=3, projection="rademacher", boundary_weight=weight)
        auto = sliced_score_matching_loss(
            e, xd, generator=torch.Generator().manual_seed(5), **args
        )
        fd = finite_difference_score_matching_loss(
            e, xd, generator=torch.Generator().manual_seed(5), **args, **kw
        )
        return float(auto), float(fd)

    auto, fd = both(torch.float64)
    assert fd == pytest.approx(auto, abs=1e-6)
    # float32 with the default, precision-aware step: close to the exact value.
    auto32, fd32 = both(torch.float32)
    assert fd32 == pytest.approx(auto, abs=1e-3 * (1 + abs(auto)))
    # A step of 1e-5 in float32 is rounding noise: the trap the default avoids.
    _, fd_tiny = both(torch.float32, epsilon=1e-5)
    assert abs(fd_tiny - auto) > 10 * abs(fd32 - auto)


@pytest.mark.parametrize("domain", [Orthant(), Box([0.0, -1.0, 0.0], 2.0), Ball()])
def test_generalized_gaussian_closed_form_is_the_minimizer(domain):
    # The closed-form solve and the autograd objective agree: zero gradient
    # at the solution, and the same objective value.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 3, generator=gen, dtype=torch.float64) * 0.6 + 0.3
    x = x[domain.contains(x)]
    h, dh = domain.boundary_weight(x, cap=1.0)
    mean, precision, value = solve_gaussian_generalized_score_matching(x, h, dh)
    energy = QuadraticEnergy(3).double()
    energy.set_gaussian(mean, precision)
    weight = partial(domain.boundary_weight, cap=1.0)
    loss = exact_score_matching_loss(energy, x, boundary_weight=weight)
    assert float(loss) == pytest.approx(value, rel=1e-9)
    loss.backward()
    for p in energy.parameters():
        assert float(p.grad.abs().max()) < 1e-8
