"""The kernel exponential family correction: closed forms against autograd."""

import math
import pickle

import pytest
import torch

from skebm._kernel_correction import (
    RBFCorrection,
    kernel_score_matching_objective,
    kernel_score_matching_system,
    solve_importance_likelihood,
    solve_kernel_score_matching,
)
from skebm.base_densities import GaussianMixtureBase
from skebm.objectives import energy_gradient, exact_score_matching_loss
from skebm.objectives.score_matching import hessian_diagonal


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _base():
    return GaussianMixtureBase(
        torch.tensor([0.3, 0.7]),
        torch.tensor([[-1.0, 0.5], [1.0, -0.2]]),
        torch.stack([torch.eye(2), torch.tensor([[0.8, 0.3], [0.3, 0.5]])]),
    )


def _correction(x, bandwidth, seed=1):
    coef = torch.randn(7, dtype=torch.float64, generator=_generator(seed))
    return RBFCorrection(x[:7], bandwidth, coef)


@pytest.mark.parametrize("bandwidth", [0.7, torch.tensor([0.5, 1.3])])
def test_gradient_and_laplacian_match_autograd(bandwidth):
    x = torch.randn(50, 2, dtype=torch.float64, generator=_generator())
    f = _correction(x, bandwidth)
    _, grad, leaf = energy_gradient(f, x)
    laplacian = hessian_diagonal(grad, leaf).sum(1)
    torch.testing.assert_close(f.gradient(x), grad.detach())
    torch.testing.assert_close(f.laplacian(x), laplacian.detach())


@pytest.mark.parametrize("bandwidth", [0.7, torch.tensor([0.5, 1.3])])
def test_objective_equals_autograd_score_matching_loss(bandwidth):
    x = torch.randn(200, 2, dtype=torch.float64, generator=_generator()) * 1.3
    base = _base()
    f = _correction(x, bandwidth)
    score, hess_diag = base.score_and_hessian_diagonal(x)
    C, b, c0 = kernel_score_matching_system(
        f, x, score, base_laplacian=hess_diag.sum(1), chunk_size=64
    )
    closed = kernel_score_matching_objective(f.coef.detach(), C, b, c0)
    autograd = exact_score_matching_loss(f, x, base=base)
    torch.testing.assert_close(closed, autograd.detach(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("penalty", ["ridge", "gram"])
def test_closed_form_is_the_minimizer(penalty):
    x = torch.randn(300, 2, dtype=torch.float64, generator=_generator(2))
    base = _base()
    f = RBFCorrection(x[:20], 0.6)
    C, b, _ = kernel_score_matching_system(f, x, base.score(x))
    R = torch.eye(20, dtype=torch.float64) if penalty == "ridge" else f.gram()
    alpha = 1e-2

    def penalized(theta):
        reg = 0.5 * alpha * (theta * (R @ theta)).sum(0)
        return kernel_score_matching_objective(theta, C, b) + reg

    theta = solve_kernel_score_matching(
        C, b, alpha=alpha, penalty="ridge" if penalty == "ridge" else R, jitter=0.0
    )
    # Stationary, and below every nearby point.
    grad = C @ theta - b + alpha * R @ theta
    assert grad.abs().max() < 1e-8
    steps = 1e-2 * torch.randn(20, 50, dtype=torch.float64, generator=_generator(3))
    assert (penalized(theta[:, None] + steps) > penalized(theta)).all()
    # Several alphas at once give the same solutions.
    many = solve_kernel_score_matching(C, b, alpha=[alpha, 1.0], penalty="ridge")
    if penalty == "ridge":
        torch.testing.assert_close(many[:, 0], theta, rtol=1e-6, atol=1e-8)


def test_recovers_a_known_correction():
    """Data from q exp(-f*) with f* in the span: the solve recovers f*.

    q = N(0, I) in 2-D; the truth adds a bump f* = -1.5 phi(x; c, 0.6) (more
    mass near c). Draws by rejection from q (exp(-f*) <= e^1.5).
    """
    g = _generator(4)
    centre = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    truth = RBFCorrection(centre, 0.6, torch.tensor([-1.5]))
    draws = torch.randn(400000, 2, dtype=torch.float64, generator=g)
    accept = torch.rand(400000, dtype=torch.float64, generator=g) < torch.exp(
        -truth(draws).detach() - 1.5
    )
    x = draws[accept][:100000]
    # One feature at the truth's centre: the coefficient itself.
    one = RBFCorrection(centre, 0.6)
    C, b, _ = kernel_score_matching_system(one, x, -x)
    theta = solve_kernel_score_matching(C, b, alpha=0.0, jitter=0.0)
    assert theta.item() == pytest.approx(-1.5, abs=0.05)
    # A grid of landmarks that misses the centre: the shape of f*.
    grid = torch.linspace(-2.5, 2.5, 6, dtype=torch.float64)
    f = RBFCorrection(torch.cartesian_prod(grid, grid), 0.6)
    C, b, _ = kernel_score_matching_system(f, x, -x)
    f.coef.data = solve_kernel_score_matching(C, b, alpha=1e-3, penalty=f.gram())
    test = torch.randn(4000, 2, dtype=torch.float64, generator=_generator(5))
    fitted, true = f(test).detach(), truth(test).detach()
    # f is identified up to a constant: compare centred values where q has mass.
    err = (fitted - fitted.mean()) - (true - true.mean())
    assert err.std() < 0.2 * true.std()
    # Larger alpha shrinks towards f = 0 (the base).
    flat = solve_kernel_score_matching(C, b, alpha=1e6, penalty="ridge")
    assert flat.abs().max() < 1e-3


def test_pickle_and_float64():
    f = RBFCorrection(torch.zeros(3, 2), 1.0, torch.ones(3))
    g = pickle.loads(pickle.dumps(f))
    x = torch.ones(4, 2, dtype=torch.float64)
    torch.testing.assert_close(f(x), g(x))
    assert f(x).dtype == torch.float64
    assert f(x)[0].item() == pytest.approx(3 * math.exp(-1.0))


def test_importance_likelihood_is_stationary_and_recovers_a_tilt():
    """Base N(0, 1); data N(0.5, 1) = q exp(-f) / Z with f = -0.5 x."""
    y = torch.randn(20000, 1, dtype=torch.float64, generator=_generator(6))
    x = 0.5 + torch.randn(5000, 1, dtype=torch.float64, generator=_generator(7))
    theta = solve_importance_likelihood(x.mean(0), y, alpha=0.0)
    assert theta.item() == pytest.approx(-0.5, abs=0.05)
    # Penalized and with RBF features: the gradient of the objective vanishes.
    f = RBFCorrection(torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None], 0.8)
    phi_x, phi_y = f.features(x), f.features(y)
    R = f.gram()
    theta = solve_importance_likelihood(phi_x.mean(0), phi_y, alpha=1e-2, penalty=R)
    w = torch.softmax(-(phi_y @ theta), 0)
    grad = phi_x.mean(0) - w @ phi_y + 1e-2 * R @ theta
    assert grad.abs().max() < 1e-6
