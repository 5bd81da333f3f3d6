import pickle

import pytest
import torch

from skebm.energies import MLPEnergy, QuadraticEnergy

ENERGIES = [
    lambda d: MLPEnergy(d, (8, 8), generator=torch.Generator().manual_seed(0)),
    lambda d: MLPEnergy(
        d, (8,), activation="tanh", generator=torch.Generator().manual_seed(0)
    ),
    lambda d: QuadraticEnergy(d),
]


@pytest.mark.parametrize("make", ENERGIES)
def test_energy_contract(make):
    energy = make(3).double()
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    e = energy(x)
    assert e.shape == (7,)
    (g,) = torch.autograd.grad(e.sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g[:, 0].sum(), x)
    assert torch.isfinite(h).all()
    clone = pickle.loads(pickle.dumps(energy))
    torch.testing.assert_close(clone(x), e)


def test_mlp_rejects_relu():
    with pytest.raises(ValueError, match="activation"):
        MLPEnergy(2, (4,), activation="relu")


def test_quadratic_precision_is_spd():
    energy = QuadraticEnergy(4).double()
    with torch.no_grad():
        energy.chol_offdiag.normal_(generator=torch.Generator().manual_seed(0))
        energy.chol_logdiag.fill_(-3.0)
    assert torch.linalg.eigvalsh(energy.precision()).min() > 0
