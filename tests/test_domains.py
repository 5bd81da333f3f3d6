"""Contracts of the domains: membership, boundary weights, parameters."""

import math

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skebm.domains import Ball, Box, Domain, Orthant, Polytope


class HalfPlane(Domain):
    """A user-written domain: {x : x_0 <= x_1}."""

    def __init__(self, offset=0.0):
        self.offset = offset

    def contains(self, x):
        return x[:, 0] <= x[:, 1] + self.offset

    def distance(self, x):
        return (x[:, 1] + self.offset - x[:, 0]) / math.sqrt(2)


DOMAINS = {
    "orthant": Orthant(),
    "box": Box([0.0, -math.inf, -1.0], [2.0, 1.0, math.inf]),
    "ball": Ball(center=[0.5, 0.0, 0.0], radius=2.0),
    "polytope": Polytope(
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, -1.0, -1.0]], [1.0, 2.0, 1.0]
    ),
    "user": HalfPlane(offset=0.5),
}


def _inside_points(domain, n=400, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(20 * n, 3, generator=gen, dtype=torch.float64)
    return x[domain.contains(x)][:n]


@pytest.mark.parametrize("name", sorted(DOMAINS))
@pytest.mark.parametrize("cap", [None, 0.3])
def test_weight_is_nonnegative_and_its_gradient_matches_finite_differences(name, cap):
    domain = DOMAINS[name]
    domain.validate(3)
    x = _inside_points(domain)
    assert len(x) > 50
    h, dh = domain.boundary_weight(x, cap=cap)
    assert h.shape == dh.shape == x.shape
    assert bool((h >= 0).all())
    if cap is not None:
        assert bool((h <= cap).all())
    # dh_j = ∂h_j/∂x_j by central differences, away from the kinks of min().
    step = 1e-6
    for j in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[j] = step
        h_plus, _ = domain.boundary_weight(x + e, cap=cap)
        h_minus, _ = domain.boundary_weight(x - e, cap=cap)
        numeric = (h_plus[:, j] - h_minus[:, j]) / (2 * step)
        smooth = (h_plus[:, j] - 2 * h[:, j] + h_minus[:, j]).abs() < 1e-9
        assert smooth.float().mean() > 0.9
        torch.testing.assert_close(numeric[smooth], dh[smooth, j], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "domain, on_boundary",
    [
        (Orthant(), [[0.0, 1.0], [2.0, 0.0]]),
        (Box([-1.0, 0.0], [1.0, math.inf]), [[1.0, 0.5], [-0.3, 0.0]]),
        (Ball(radius=2.0), [[2.0, 0.0], [0.0, -2.0]]),
        (Polytope([[1.0, 1.0], [-1.0, 0.0]], [1.0, 0.0]), [[0.5, 0.5], [0.0, -3.0]]),
        (HalfPlane(), [[1.0, 1.0], [-2.0, -2.0]]),
    ],
)
def test_weight_vanishes_on_the_boundary_and_boundary_is_inside(domain, on_boundary):
    x = torch.tensor(on_boundary, dtype=torch.float64)
    assert bool(domain.contains(x).all())  # closed sets
    h, _ = domain.boundary_weight(x, cap=1.0)
    # Per-coordinate weights vanish in the coordinate that touches the boundary;
    # scalar weights vanish entirely.
    assert bool((h.min(1).values == 0).all())


def test_box_weight_per_coordinate():
    box = Box([0.0, -math.inf], [1.0, math.inf])
    x = torch.tensor([[0.2, 5.0], [0.9, -3.0]], dtype=torch.float64)
    h, dh = box.boundary_weight(x)
    torch.testing.assert_close(h, torch.tensor([[0.2, 1.0], [0.1, 1.0]]).double())
    torch.testing.assert_close(dh, torch.tensor([[1.0, 0.0], [-1.0, 0.0]]).double())
    h, dh = box.boundary_weight(x, cap=0.15)
    torch.testing.assert_close(h, torch.tensor([[0.15, 0.15], [0.1, 0.15]]).double())
    torch.testing.assert_close(dh, torch.tensor([[0.0, 0.0], [-1.0, 0.0]]).double())


def test_membership():
    x = torch.tensor([[0.5, 0.5], [-0.1, 0.5], [3.0, 0.0]])
    assert Orthant().contains(x).tolist() == [True, False, True]
    assert Box(0.0, 1.0).contains(x).tolist() == [True, False, False]
    assert Ball(radius=1.0).contains(x).tolist() == [True, True, False]
    poly = Polytope([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], [1.0, 1.0, 0.0])
    assert poly.contains(x).tolist() == [True, True, False]


def test_bounds():
    lower, upper = Box([0.0, -1.0], 3.0).bounds(2)
    assert lower.tolist() == [0.0, -1.0] and upper.tolist() == [3.0, 3.0]
    lower, upper = Ball([1.0, 0.0], 2.0).bounds(2)
    assert lower.tolist() == [-1.0, -2.0] and upper.tolist() == [3.0, 2.0]
    lower, upper = HalfPlane().bounds(2)
    assert bool(torch.isinf(lower).all() and torch.isinf(upper).all())


def test_params_protocol_and_clone():
    ball = Ball(center=np.array([1.0, 2.0]), radius=3.0)
    assert set(ball.get_params()) == {"center", "radius"}
    assert ball.set_params(radius=4.0) is ball and ball.radius == 4.0
    copy = clone(ball)
    assert copy is not ball and copy.radius == 4.0
    np.testing.assert_array_equal(copy.center, ball.center)
    assert Orthant().get_params() == {}
    assert repr(Orthant()) == "Orthant()"
    assert repr(Ball(radius=2.0)) == "Ball(center=0.0, radius=2.0)"
    assert HalfPlane(offset=1.0).get_params() == {"offset": 1.0}
    with pytest.raises(ValueError, match="Invalid parameter 'radius'"):
        Orthant().set_params(radius=1.0)


@pytest.mark.parametrize(
    "domain, match",
    [
        (Box([0.0, 1.0], [1.0, 0.5]), "lower < upper"),
        (Box([0.0, 0.0, 0.0], 1.0), "n_features=2"),
        (Box(float("nan"), 1.0), "NaN"),
        (Ball(radius=-1.0), "radius must be positive"),
        (Ball(center=[0.0, 0.0, 0.0]), "n_features=2"),
        (Polytope([[1.0, 0.0]], [1.0, 2.0]), "n_constraints"),
        (Polytope([[0.0, 0.0]], [1.0]), "zero row"),
    ],
)
def test_validate_rejects_bad_parameters(domain, match):
    with pytest.raises(ValueError, match=match):
        domain.validate(2)
