import torch

from skebm.energies import QuadraticEnergy
from skebm.samplers import mala, sample_gaussian


def _gaussian_energy():
    energy = QuadraticEnergy(2).double()
    prec = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    energy.set_gaussian(torch.tensor([1.0, -1.0], dtype=torch.float64), prec)
    return energy, torch.linalg.inv(prec)


def test_mala_moments_of_known_gaussian():
    energy, cov = _gaussian_energy()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.zeros(2000, 2, dtype=torch.float64)
    x, step, acc = mala(energy, x0, n_steps=250, step_size=0.1, generator=gen)
    assert 0.3 < acc < 0.9
    torch.testing.assert_close(x.mean(0), energy.mean.detach(), atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.07, rtol=0)


def test_mala_reproducible_with_generator():
    energy, _ = _gaussian_energy()
    x0 = torch.zeros(10, 2, dtype=torch.float64)
    a, _, _ = mala(energy, x0, n_steps=20, generator=torch.Generator().manual_seed(3))
    b, _, _ = mala(energy, x0, n_steps=20, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_mala_respects_domain():
    energy, _ = _gaussian_energy()
    x0 = torch.full((200, 2), 0.5, dtype=torch.float64)

    def contains(x):
        return (x >= 0).all(1)

    x, _, _ = mala(
        energy,
        x0,
        n_steps=100,
        step_size=0.1,
        generator=torch.Generator().manual_seed(0),
        contains=contains,
    )
    assert bool((x >= 0).all())


def test_sample_gaussian_moments():
    _, cov = _gaussian_energy()
    x = sample_gaussian(
        torch.zeros(2, dtype=torch.float64),
        cov,
        50000,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.02, rtol=0)
