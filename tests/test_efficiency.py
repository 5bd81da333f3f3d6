"""Efficiency diagnostics: score matching and pseudo-likelihood against
maximum likelihood (skebm.metrics, skebm._efficiency).

The claims tested: the sandwich and Fisher matrices are the right ones
(autograd, enumeration, Isserlis, repeated fits); the ratio is 1 where the
method is maximum likelihood (a Gaussian for score matching, independent
spins for pseudo-likelihood); it grows as the wells of a double well separate
and as Ising couplings strengthen (Koehler, Heckett & Risteski, 2022).
"""

import math
import warnings

import numpy as np
import pytest
import torch

import skebm.metrics
from skebm import PseudoLikelihoodIsing, ScoreMatchingDensity
from skebm._efficiency import (
    gaussian_quadratic_covariance,
    ising_fisher_enumerate,
    ising_pseudo_likelihood_sandwich,
    ising_statistics,
    quadratic_statistics,
    weighted_covariance,
)
from skebm.energies import IsingEnergy, LinearInParametersEnergy
from skebm.exceptions import EfficiencyWarning
from skebm.metrics import pseudo_likelihood_efficiency, score_matching_efficiency
from skebm.partition import binary_states
from skebm.samplers import exact_binary_draws


class Polynomial(LinearInParametersEnergy):
    """``E = Σ_p theta_p x^p`` (1-D) for the given powers."""

    def __init__(self, powers=(1, 2, 4)):
        super().__init__(n_statistics=len(powers))
        self.powers = tuple(powers)

    def statistics(self, x):
        return torch.cat([x**p for p in self.powers], dim=1)


class WellsAndStep(LinearInParametersEnergy):
    """``x², x⁴`` and ``tanh x``: a statistic that moves mass between the
    wells at ±mu while hardly changing their shapes."""

    def __init__(self):
        super().__init__(n_statistics=3)

    def statistics(self, x):
        return torch.cat([x**2, x**4, torch.tanh(x)], dim=1)


class PerCoordinateGaussian(LinearInParametersEnergy):
    def __init__(self, d):
        super().__init__(n_statistics=2 * d)

    def statistics(self, x):
        return torch.cat([x, x**2], dim=1)


def double_well(mu, n, seed):
    """Exact draws (inverse CDF on a fine grid) from ``exp(-(x² - mu²)² / (8 mu²))``:
    wells at ±mu of unit curvature, barrier ``mu² / 8`` nats."""
    grid = np.linspace(-mu - 8, mu + 8, 200001)
    log_p = -((grid**2 - mu**2) ** 2) / (8 * mu**2)
    cdf = np.cumsum(np.exp(log_p - log_p.max()))
    cdf /= cdf[-1]
    return np.interp(np.random.RandomState(seed).rand(n), cdf, grid)[:, None]


def curie_weiss(d, beta, n, seed):
    """Exact draws of the Curie-Weiss model ``J_ij = beta / d``, no field."""
    energy = IsingEnergy(d).double()
    J = torch.full((d, d), beta / d, dtype=torch.float64)
    energy.set_parameters(torch.zeros(d, dtype=torch.float64), J)
    return exact_binary_draws(
        energy, d, n, values=(-1.0, 1.0), generator=torch.Generator().manual_seed(seed)
    ).numpy()


def sm_ratio(X, energy):
    est = ScoreMatchingDensity(energy=energy).fit(X)
    return score_matching_efficiency(est, X, warn_above=None)


# ------------------------------------------------------- the matrices (layer C)
def test_pseudo_likelihood_sandwich_matches_autograd():
    rng = torch.Generator().manual_seed(0)
    d, n = 4, 300
    spins = torch.where(torch.rand(n, d, generator=rng) < 0.5, -1.0, 1.0).double()
    h = 0.3 * torch.randn(d, generator=rng, dtype=torch.float64)
    J = torch.triu(0.3 * torch.randn(d, d, generator=rng, dtype=torch.float64), 1)
    J = J + J.T
    i, j = torch.triu_indices(d, d, 1)

    def per_sample(theta):
        couplings = torch.zeros(d, d, dtype=theta.dtype).index_put((i, j), theta[d:])
        a = theta[:d] + spins @ (couplings + couplings.T)
        return (torch.log(2 * torch.cosh(a)) - spins * a).sum(1)

    theta = torch.cat([h, J[i, j]])
    hessian, covariance = ising_pseudo_likelihood_sandwich(spins, h, J)
    expected_h = torch.autograd.functional.hessian(
        lambda t: per_sample(t).mean(), theta
    )
    grads = torch.autograd.functional.jacobian(per_sample, theta, vectorize=True)
    centered = grads - grads.mean(0)
    torch.testing.assert_close(hessian, expected_h)
    torch.testing.assert_close(covariance, centered.T @ centered / n)


def test_ising_fisher_matches_brute_force():
    d = 5
    rng = torch.Generator().manual_seed(1)
    h = 0.5 * torch.randn(d, generator=rng, dtype=torch.float64)
    J = torch.triu(0.5 * torch.randn(d, d, generator=rng, dtype=torch.float64), 1)
    J = J + J.T
    states = binary_states(0, 2**d, d, values=(-1.0, 1.0), dtype=torch.float64,
                           device="cpu")
    p = torch.softmax(states @ h + 0.5 * ((states @ J) * states).sum(1), 0)
    expected = weighted_covariance(ising_statistics(states), p)
    torch.testing.assert_close(ising_fisher_enumerate(h, J, chunk_size=7), expected)


def test_gaussian_statistics_covariance_matches_monte_carlo():
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    cov = torch.tensor([[1.0, 0.3, 0.0], [0.3, 2.0, -0.5], [0.0, -0.5, 1.5]],
                       dtype=torch.float64)
    x = torch.distributions.MultivariateNormal(mean, cov).sample((200_000,))
    t = quadratic_statistics(x)
    centered = t - t.mean(0)
    stderr = (centered[:, :, None] * centered[:, None, :]).std(0) / math.sqrt(len(x))
    z = (weighted_covariance(t) - gaussian_quadratic_covariance(mean, cov)) / stderr
    assert float(z.abs().max()) < 4.5  # 81 entries, each a z-score


# ------------------------------------------------------------ score matching
def test_gaussian_score_matching_is_as_efficient_as_ml():
    rng = np.random.RandomState(0)
    cov = np.array([[1.0, 0.6], [0.6, 2.0]])
    X = rng.multivariate_normal([1.0, -1.0], cov, size=8000)
    est = ScoreMatchingDensity(energy="quadratic").fit(X)
    diagnostic = score_matching_efficiency(est, X)
    assert diagnostic.ml_method == "closed_form"
    assert diagnostic.parameter_names == [
        "precision[0,0]", "precision[0,1]", "precision[1,1]", "eta[0]", "eta[1]"
    ]
    # Five parameters from 8000 samples: the ratios are 1 within a few %.
    np.testing.assert_allclose(diagnostic.variance_ratios, 1.0, atol=0.1)
    assert diagnostic.reliable and not diagnostic.excluded


def test_quadrature_and_closed_form_agree_on_a_gaussian():
    X = np.random.RandomState(1).normal(0.5, 1.5, size=(5000, 1))
    quad = score_matching_efficiency(
        ScoreMatchingDensity(energy="quadratic").fit(X), X
    )
    poly = score_matching_efficiency(
        ScoreMatchingDensity(energy=Polynomial((1, 2)), alpha=0.0).fit(X), X
    )
    assert (quad.ml_method, poly.ml_method) == ("closed_form", "quadrature")
    np.testing.assert_allclose(poly.variance_ratios, 1.0, atol=0.08)
    # (x, x²) with theta = (-eta, P / 2) against (x² / 2, -x) with (P, eta).
    np.testing.assert_allclose(poly.ml_covariance[1, 1], quad.ml_covariance[0, 0] / 4,
                               rtol=1e-6)
    np.testing.assert_allclose(poly.ml_covariance[0, 0], quad.ml_covariance[1, 1],
                               rtol=1e-6)
    np.testing.assert_allclose(poly.covariance[1, 1], quad.covariance[0, 0] / 4,
                               rtol=1e-6)


def test_sampled_fisher_information_on_a_gaussian():
    X = np.random.RandomState(2).normal(size=(3000, 3)) * [1.0, 2.0, 0.5]
    est = ScoreMatchingDensity(energy=PerCoordinateGaussian(3), alpha=0.0).fit(X)
    diagnostic = score_matching_efficiency(
        est, X, n_model_samples=10000, random_state=0
    )
    assert diagnostic.ml_method == "sampling"
    assert diagnostic.n_model_samples == 10000
    np.testing.assert_allclose(diagnostic.variance_ratios, 1.0, atol=0.15)


def test_double_well_ratio_grows_as_the_wells_separate():
    ratios = [
        sm_ratio(double_well(mu, 5000, seed=1), Polynomial()).variance_ratio
        for mu in (1.0, 3.0, 5.0)
    ]
    # Measured 1.8, 5.4, 18.5: the tilt x moves mass between the wells, which
    # maximum likelihood sees and score matching hardly does.
    assert ratios[0] < 3 < ratios[1] < 10 < ratios[2]
    # The symmetric family (x², x⁴) keeps the two wells at equal mass: its
    # ratio stays small however far they are apart (measured 1.9 at mu = 5).
    symmetric = sm_ratio(double_well(5.0, 5000, seed=1), Polynomial((2, 4)))
    assert symmetric.variance_ratio < 3


def test_ratio_grows_like_the_exponential_of_the_barrier():
    # tanh x changes the masses of the wells, not their shapes: score matching
    # learns it only from the samples on the barrier, whose share falls like
    # exp(-barrier). Measured 5.1 and 37.5 at barriers 1.125 and 3.125 nats.
    low = sm_ratio(double_well(3.0, 5000, seed=1), WellsAndStep()).variance_ratio
    high = sm_ratio(double_well(5.0, 5000, seed=1), WellsAndStep()).variance_ratio
    growth = math.log(high / low) / (25 / 8 - 9 / 8)
    assert 0.5 < growth < 1.5, growth


def _repeated_fits(powers, samples, weighted):
    """Closed-form score matching of ``E = Σ_p theta_p x^p`` on each row of
    ``samples`` (``(n_fits, n)``), from the derivatives written out by hand
    (independent of the library's solver); ``weighted``: the orthant's
    ``h = x``, ``h' = 1``."""
    powers = np.asarray(powers, dtype=float)
    x = samples[:, :, None]
    dt = powers * x ** np.maximum(powers - 1, 0)
    d2t = powers * (powers - 1) * x ** np.maximum(powers - 2, 0)
    h, dh = (x, np.ones_like(x)) if weighted else (np.ones_like(x), np.zeros_like(x))
    gamma = np.einsum("rnk,rnl->rkl", h * dt, dt) / samples.shape[1]
    b = (h * d2t + dh * dt).mean(1)
    return np.linalg.solve(gamma, b[:, :, None])[:, :, 0]


@pytest.mark.parametrize("case", ["double_well", "half_normal"])
def test_sandwich_predicts_the_spread_of_repeated_fits(case):
    n, n_fits = 400, 2000
    if case == "double_well":
        energy, domain = Polynomial(), None
        big = double_well(2.0, 20_000, seed=0)
        samples = double_well(2.0, n * n_fits, seed=1).reshape(n_fits, n)
    else:
        energy, domain = Polynomial((1, 2)), "nonnegative"
        rng = np.random.RandomState(0)
        big = np.abs(rng.normal(size=(20_000, 1)))
        samples = np.abs(rng.normal(size=(n_fits, n)))
    est = ScoreMatchingDensity(energy=energy, alpha=0.0, domain=domain).fit(big)
    diagnostic = score_matching_efficiency(est, big, warn_above=None)
    predicted = diagnostic.covariance * len(big) / n
    fits = _repeated_fits(energy.powers, samples, weighted=domain is not None)
    # The hand-written solve is the estimator's (alpha=0) on the same data.
    np.testing.assert_allclose(
        _repeated_fits(energy.powers, big.T, weighted=domain is not None)[0],
        est.coef_, rtol=1e-6,
    )
    observed = np.cov(fits.T)
    # A variance from 2000 fits has a relative standard error of 3%; the
    # sandwich is asymptotic (here n = 400) and estimated from 20000 rows.
    np.testing.assert_allclose(np.diag(observed), np.diag(predicted), rtol=0.15)
    # The worst direction's variance over the fits is the reported ratio
    # times maximum likelihood's.
    c = diagnostic.worst_direction
    ml = c @ diagnostic.ml_covariance @ c * len(big) / n
    assert 0.85 < (c @ observed @ c) / ml / diagnostic.variance_ratio < 1.15


def test_truncated_gaussian_on_the_orthant():
    X = np.abs(np.random.RandomState(3).normal(size=(3000, 1)))
    est = ScoreMatchingDensity(energy="quadratic", domain="nonnegative").fit(X)
    diagnostic = score_matching_efficiency(est, X)
    assert diagnostic.ml_method == "quadrature"
    # Generalized score matching weighs the samples near the boundary down:
    # less efficient than maximum likelihood, but not hopeless.
    assert 1.05 < diagnostic.variance_ratio < 3  # measured 1.17


def test_efficiency_warning():
    X = double_well(5.0, 5000, seed=1)
    est = ScoreMatchingDensity(energy=Polynomial()).fit(X)
    with pytest.warns(EfficiencyWarning, match="EnergyDiscrepancyDensity") as record:
        diagnostic = score_matching_efficiency(est, X)
    assert record[0].message.ratio == pytest.approx(diagnostic.variance_ratio)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EfficiencyWarning)
        score_matching_efficiency(est, X, warn_above=None)
        score_matching_efficiency(est, X, warn_above=100.0)


def test_score_matching_efficiency_rejects_what_it_cannot_compute():
    X = np.random.RandomState(0).normal(size=(200, 1))
    mlp = ScoreMatchingDensity(base=None, hidden_layer_sizes=(4,), max_iter=2,
                               random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp.fit(X)
    with pytest.raises(ValueError, match="linear in its parameters"):
        score_matching_efficiency(mlp, X)
    with pytest.raises(ValueError, match="ScoreMatchingDensity"):
        score_matching_efficiency(PseudoLikelihoodIsing().fit(X > 0), X)
    est = ScoreMatchingDensity(energy="quadratic", domain="nonnegative").fit(np.abs(X))
    with pytest.raises(ValueError, match="outside"):
        score_matching_efficiency(est, X)


def test_constant_statistic_is_excluded():
    X = np.random.RandomState(0).normal(size=(3000, 1))
    est = ScoreMatchingDensity(energy=Polynomial((0, 1, 2))).fit(X)
    diagnostic = score_matching_efficiency(est, X)
    assert diagnostic.excluded == ["theta[0]"]
    assert len(diagnostic.variance_ratios) == 2
    np.testing.assert_allclose(diagnostic.variance_ratios, 1.0, atol=0.1)


class Duplicated(LinearInParametersEnergy):
    def __init__(self):
        super().__init__(n_statistics=3)

    def statistics(self, x):
        return torch.cat([x, 2 * x, x**2], dim=1)


def test_dependent_statistics_leave_one_direction_out():
    # theta_0 x + theta_1 2x: only theta_0 + 2 theta_1 is determined; no single
    # parameter is excluded, but one direction is.
    X = np.random.RandomState(0).normal(size=(3000, 1))
    est = ScoreMatchingDensity(energy=Duplicated()).fit(X)
    diagnostic = score_matching_efficiency(est, X)
    assert diagnostic.excluded == []
    assert len(diagnostic.variance_ratios) == 2
    np.testing.assert_allclose(diagnostic.variance_ratios, 1.0, atol=0.1)


# ---------------------------------------------------------- pseudo-likelihood
def test_pseudo_likelihood_is_ml_for_independent_spins():
    X = curie_weiss(8, 0.0, 5000, seed=0)
    est = PseudoLikelihoodIsing(alpha=0.0).fit(X)
    diagnostic = pseudo_likelihood_efficiency(est, X)
    assert diagnostic.ml_method == "exact"
    assert len(diagnostic.parameter_names) == 8 + 28
    # 36 parameters, 5000 samples: the largest of 36 noisy ratios is biased
    # by about (1 + sqrt(36 / 5000))^2 = 1.18; their mean is not.
    assert abs(diagnostic.mean_variance_ratio - 1) < 0.03
    assert diagnostic.variance_ratio < 1.35


def test_pseudo_likelihood_ratio_grows_with_the_coupling():
    ratios = []
    for beta in (0.5, 1.5, 2.0):
        X = curie_weiss(10, beta, 5000, seed=0)
        est = PseudoLikelihoodIsing(alpha=0.0).fit(X)
        ratios.append(pseudo_likelihood_efficiency(est, X, warn_above=None))
    worst = [r.variance_ratio for r in ratios]
    # Measured 1.18, 2.7, 21.6 (critical coupling: beta = 1).
    assert worst[0] < 1.4 < worst[1] < 5 < 10 < worst[2]
    assert ratios[0].mean_variance_ratio < ratios[2].mean_variance_ratio


def test_pseudo_likelihood_excludes_constant_spins_and_l1_zeros():
    rng = np.random.RandomState(1)
    X = rng.choice([-1.0, 1.0], size=(3000, 6))
    X[:, 2] = np.where(rng.rand(3000) < 0.9, X[:, 1], -X[:, 1])  # one strong bond
    X[:, 0] = 1.0  # a constant spin
    est = PseudoLikelihoodIsing(penalty="l1", alpha=0.02).fit(X)
    diagnostic = pseudo_likelihood_efficiency(est, X, warn_above=None)
    pairs = list(zip(*np.triu_indices(6, 1), strict=True))
    zero = [f"J[{i},{j}]" for i, j in pairs if est.couplings_[i, j] == 0 or i == 0]
    assert "J[1,2]" not in zero and len(zero) > 5  # L1 zeros beyond spin 0's
    assert set(diagnostic.excluded) == {"h[0]", *zero}
    assert np.all(diagnostic.covariance[0] == 0)
    assert len(diagnostic.variance_ratios) == 21 - len(diagnostic.excluded)


def test_sampled_ising_fisher_agrees_with_enumeration(monkeypatch):
    X = curie_weiss(8, 1.0, 4000, seed=2)
    est = PseudoLikelihoodIsing(alpha=0.0).fit(X)
    exact = pseudo_likelihood_efficiency(est, X, warn_above=None)
    monkeypatch.setattr(skebm.metrics, "_MAX_ENUMERATED_SPINS", 0)
    sampled = pseudo_likelihood_efficiency(
        est, X, n_model_samples=40000, random_state=0, warn_above=None
    )
    assert (exact.ml_method, sampled.ml_method) == ("exact", "sampling")
    # Same sandwich; the Fisher information from 40000 draws of 36 statistics.
    np.testing.assert_array_equal(exact.covariance, sampled.covariance)
    assert sampled.mean_variance_ratio == pytest.approx(
        exact.mean_variance_ratio, rel=0.03
    )
    np.testing.assert_allclose(
        np.diag(sampled.ml_covariance), np.diag(exact.ml_covariance), rtol=0.1
    )


@pytest.mark.slow
def test_annealed_gibbs_fisher_on_a_lattice():
    from skebm.datasets import make_ising_lattice

    J, h = make_ising_lattice(5, coupling_range=(0.2, 0.4), field_scale=0.2,
                              random_state=0)
    energy = IsingEnergy(25).double()
    energy.set_parameters(torch.as_tensor(h), torch.as_tensor(J))
    from skebm.samplers import gibbs

    x0 = torch.where(torch.rand(4000, 25, generator=torch.Generator().manual_seed(0))
                     < 0.5, -1.0, 1.0).double()
    X = gibbs(energy, x0, n_sweeps=200, values=(-1.0, 1.0),
              generator=torch.Generator().manual_seed(1)).numpy()
    est = PseudoLikelihoodIsing(alpha=0.0, random_state=0).fit(X)
    diagnostic = pseudo_likelihood_efficiency(est, X, random_state=0)
    assert diagnostic.ml_method == "sampling"
    # Weak couplings, far from critical: nearly as efficient as ML.
    assert diagnostic.mean_variance_ratio < 1.2


@pytest.mark.slow
def test_pseudo_likelihood_sandwich_predicts_repeated_fits():
    n, n_fits, d, beta = 1000, 150, 5, 1.5
    big = curie_weiss(d, beta, 20000, seed=0)
    est = PseudoLikelihoodIsing(alpha=0.0).fit(big)
    diagnostic = pseudo_likelihood_efficiency(est, big, warn_above=None)
    rows, cols = np.triu_indices(d, 1)
    fits = []
    for r in range(n_fits):
        fit = PseudoLikelihoodIsing(alpha=0.0).fit(curie_weiss(d, beta, n, seed=r + 1))
        fits.append(np.concatenate([fit.fields_, fit.couplings_[rows, cols]]))
    observed = np.cov(np.array(fits).T)
    predicted = diagnostic.covariance * len(big) / n
    # 150 fits: a variance's relative standard error is 12 %.
    ratio = np.diag(observed) / np.diag(predicted)
    assert 0.6 < ratio.min() and ratio.max() < 1.5, ratio
    assert 0.85 < ratio.mean() < 1.15, ratio
