"""Contracts every objective keeps, and closed-form truths."""

import pytest
import torch

from skebm.energies import MLPEnergy, QuadraticEnergy
from skebm.objectives import exact_score_matching_loss

OBJECTIVES = {"exact_score_matching": exact_score_matching_loss}


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
    x = torch.randn(
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
