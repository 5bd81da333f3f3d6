import numpy as np
import pytest

from skebm.datasets import TOY_DENSITIES, toy_log_density


@pytest.mark.parametrize("name", sorted(TOY_DENSITIES))
def test_log_density_integrates_to_one(name):
    grid = np.linspace(-4.5, 4.5, 226)
    xx, yy = np.meshgrid(grid, grid)
    points = np.c_[xx.ravel(), yy.ravel()]
    mass = np.exp(toy_log_density(name, points)).sum() * (grid[1] - grid[0]) ** 2
    assert mass == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("name", sorted(TOY_DENSITIES))
def test_samples_have_finite_log_density_and_are_reproducible(name):
    make = TOY_DENSITIES[name][0]
    X = make(500, random_state=0)
    assert X.shape == (500, 2)
    np.testing.assert_array_equal(X, make(500, random_state=0))
    assert np.isfinite(toy_log_density(name, X)).all()


def test_unknown_name():
    with pytest.raises(ValueError, match="Unknown toy density"):
        toy_log_density("spiral", np.zeros((1, 2)))
