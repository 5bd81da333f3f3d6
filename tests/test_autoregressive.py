"""AutoregressiveScoreMatchingDensity: masked conditionals, composite score
matching, per-row quadrature of the normalizers, exact ancestral samples."""

import copy
import io
import math
import warnings

import joblib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import integrate, stats
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skebm import AutoregressiveScoreMatchingDensity
from skebm._conditional_quadrature import log_integral, prune_components
from skebm.base_densities import GaussianMixtureBase
from skebm.datasets import make_two_moons
from skebm.domains import Ball, Box
from skebm.energies import (
    ACTIVATIONS,
    AutoregressiveCorrectedEnergy,
    MaskedAutoregressiveEnergy,
)
from skebm.energies._activations import SiluHead
from skebm.objectives import composite_score_matching_loss, conditional_derivatives
from skebm.partition import log_partition_conditional
from skebm.samplers import sample_conditional

SMALL = dict(hidden_layer_sizes=(16, 16), max_iter=5, random_state=0)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _moons(n=600, seed=0):
    return StandardScaler().fit_transform(make_two_moons(n, random_state=seed))


def _random_mixture(k=3, d=4, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(k, d, d, generator=gen, dtype=torch.float64)
    cov = scale * (a @ a.transpose(1, 2) / d + 0.2 * torch.eye(d, dtype=torch.float64))
    means = 2 * torch.randn(k, d, generator=gen, dtype=torch.float64)
    weights = torch.rand(k, generator=gen, dtype=torch.float64) + 0.2
    return GaussianMixtureBase(weights / weights.sum(), means, cov)


def _random_made(d, seed=0, scale=1.0, bound=4.0, **kwargs):
    """A masked network whose output is far from zero (as after training)."""
    gen = torch.Generator().manual_seed(seed)
    net = MaskedAutoregressiveEnergy(
        d, (16, 16), generator=gen, output_bound=bound, **kwargs
    ).double()
    with torch.no_grad():
        net.head_output.normal_(0.0, scale, generator=gen)
    return net


def _gauss_legendre_grid(lower, upper, panels, order=16):
    nodes, weights = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(lower, upper, panels + 1)
    half = np.diff(edges) / 2
    x = ((edges[:-1] + edges[1:]) / 2 + half * nodes[:, None]).T.ravel()
    w = (half * weights[:, None]).T.ravel()
    return x, w


# ------------------------------------------------------------- the network
@pytest.mark.parametrize("hidden", [(), (3,), (16, 16)])
@pytest.mark.parametrize("d", [1, 2, 7])
def test_masked_network_is_autoregressive(d, hidden):
    """Column i reads context[:, :i] and own[:, i] only, whatever the widths."""
    net = MaskedAutoregressiveEnergy(
        d, hidden, generator=torch.Generator().manual_seed(0)
    ).double()
    with torch.no_grad():
        net.head_output.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(5, d, dtype=torch.float64)
    context = x.clone().requires_grad_(True)
    own = x.clone().requires_grad_(True)
    out = net.conditional_energies(context, own)
    assert out.shape == (5, d)
    for i in range(d):
        dc, do = torch.autograd.grad(out[:, i].sum(), (context, own), retain_graph=True)
        assert (dc[:, i:] == 0).all()
        assert (torch.cat([do[:, :i], do[:, i + 1 :]], 1) == 0).all()
        assert (do[:, i] != 0).any()
    if hidden != (3,) and d > 1:  # wide enough: the last coordinate sees x_0
        dc, _ = torch.autograd.grad(out[:, -1].sum(), (context, own))
        assert (dc[:, 0] != 0).any()


@pytest.mark.parametrize("bound", [None, 2.0])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_closed_form_derivatives_match_autograd(activation, bound):
    gen = torch.Generator().manual_seed(0)
    net = MaskedAutoregressiveEnergy(
        5, (8,), activation, head_size=6, generator=gen, output_bound=bound
    ).double()
    x = 2 * torch.randn(7, 5, generator=gen, dtype=torch.float64)

    class Wrapped(torch.nn.Module):  # hides the closed form: autograd only
        def conditional_energies(self, context, own):
            return net.conditional_energies(context, own)

    closed = net.conditional_derivatives(x, x)
    by_autograd = conditional_derivatives(Wrapped(), x)
    for a, b in zip(closed, by_autograd, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_fused_silu_head_gradients():
    gen = torch.Generator().manual_seed(0)
    args = [
        torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
        for shape in ((3, 4, 5), (4, 5), (4, 5))
    ]
    assert torch.autograd.gradcheck(SiluHead.apply, args)


def test_untrained_network_is_zero_and_model_is_the_base():
    base = _random_mixture(d=3)
    net = MaskedAutoregressiveEnergy(
        3, (8,), zero_output=True, generator=torch.Generator().manual_seed(0)
    ).double()
    model = AutoregressiveCorrectedEnergy(base, net, order=[2, 0, 1])
    x = torch.randn(50, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            model.log_prob(x), base.log_prob(x[:, [2, 0, 1]]), rtol=0, atol=1e-10
        )


# --------------------------------------------------------------- objective
@pytest.mark.parametrize("domain", [None, Box([-4.0, 0.0, -1.0, -np.inf], 5.0)])
def test_objective_matches_brute_force_second_derivatives(domain):
    """Two backward passes (or the closed form) give what d Hessians give."""
    d = 4
    base = _random_mixture(k=2, d=d, seed=3)
    net = _random_made(d, seed=1, scale=0.5)
    model = AutoregressiveCorrectedEnergy(base, net)
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(9, d, generator=gen, dtype=torch.float64) * 3
    weight = None if domain is None else domain.boundary_weight
    loss = composite_score_matching_loss(net, x, base=base, boundary_weight=weight)

    xx = x.clone().requires_grad_(True)
    energies = model.conditional_energies(xx, xx)  # one argument: the joint view
    total = 0
    for i in range(d):
        (grad,) = torch.autograd.grad(energies[:, i].sum(), xx, create_graph=True)
        (hess,) = torch.autograd.grad(grad[:, i].sum(), xx, create_graph=True)
        first, second = grad[:, i], hess[:, i]
        if domain is None:
            total = total + 0.5 * first**2 - second
        else:
            h, dh = domain.boundary_weight(x)
            total = total + 0.5 * h[:, i] * first**2 - h[:, i] * second
            total = total - dh[:, i] * first
    brute = total.mean()
    torch.testing.assert_close(loss, brute, rtol=1e-10, atol=1e-10)
    params = list(net.parameters())
    for a, b in zip(
        torch.autograd.grad(loss, params),
        torch.autograd.grad(brute, params),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_objective_is_minimized_by_the_data_conditionals():
    """Sign and scale: N(a x_{i-1}, 1) conditionals, a = 0.8 on data with 0.8."""
    rng = np.random.RandomState(0)
    x = np.zeros((20000, 3))
    x[:, 0] = rng.normal(size=20000)
    for i in (1, 2):
        x[:, i] = 0.8 * x[:, i - 1] + rng.normal(size=20000)
    x = torch.as_tensor(x)

    class Chain(torch.nn.Module):
        def __init__(self, a, s):
            super().__init__()
            self.a, self.s = a, s

        def conditional_energies(self, context, own):
            previous = torch.nn.functional.pad(context[:, :-1], (1, 0))
            return 0.5 * ((own - self.a * previous) / self.s) ** 2

    def loss(a, s):
        return composite_score_matching_loss(Chain(a, s), x).item()

    best = loss(0.8, 1.0)
    assert best == pytest.approx(-1.5, abs=0.05)
    assert all(
        loss(a, s) > best for a, s in [(0.6, 1), (1.0, 1), (0.8, 0.7), (0.8, 1.4)]
    )


# -------------------------------------------------------------- quadrature
def test_conditional_quadrature_matches_adaptive_quadrature():
    gen = torch.Generator().manual_seed(0)
    k = 3
    log_w = torch.log_softmax(torch.randn(5, k, generator=gen, dtype=torch.float64), -1)
    means = 3 * torch.randn(5, k, generator=gen, dtype=torch.float64)
    stds = torch.rand(5, k, generator=gen, dtype=torch.float64) + 0.05
    lower = torch.tensor([-math.inf, 0.0, -math.inf, 1.0, 9.0], dtype=torch.float64)
    upper = torch.tensor([math.inf, math.inf, 0.5, 2.0, math.inf], dtype=torch.float64)
    w = torch.randn(16, generator=gen, dtype=torch.float64)
    b = torch.randn(16, generator=gen, dtype=torch.float64)
    v = torch.randn(16, generator=gen, dtype=torch.float64)

    def f(t):
        return 4 * torch.tanh(
            (v * torch.nn.functional.silu(t[..., None] * w + b)).sum(-1) / 4
        )

    ours = log_partition_conditional(
        log_w, means, stds, f, lower=lower, upper=upper, n_panels=32
    )
    for r in range(5):

        def density(t, r=r):
            q = sum(
                math.exp(log_w[r, j]) * stats.norm.pdf(t, means[r, j], stds[r, j])
                for j in range(k)
            )
            return q * math.exp(-float(f(torch.tensor([t], dtype=torch.float64))[0]))

        value, _ = integrate.quad(
            density, float(lower[r]), float(upper[r]), limit=500, epsabs=0, epsrel=1e-12
        )
        assert float(ours[r]) == pytest.approx(math.log(value), abs=1e-8)
    # f = 0: the mixture's mass on the interval, also far in a component's tail
    mass = torch.special.ndtr((upper[:, None] - means) / stds) - torch.special.ndtr(
        (lower[:, None] - means) / stds
    )
    flat = log_partition_conditional(
        log_w[:4],
        means[:4],
        stds[:4],
        torch.zeros_like,
        lower=lower[:4],
        upper=upper[:4],
    )
    torch.testing.assert_close(
        flat, torch.logsumexp(log_w[:4] + torch.log(mass[:4]), -1), rtol=0, atol=1e-11
    )


def test_quadrature_of_a_component_far_outside_the_interval():
    """A mean 30 standard deviations below the bound: the thin layer is found."""
    zero = torch.zeros(1, 1, dtype=torch.float64)
    log_z = log_partition_conditional(
        zero,
        zero - 30.0,
        zero + 1.0,
        torch.zeros_like,
        lower=torch.zeros(1, dtype=torch.float64),
    )
    exact = float(torch.special.log_ndtr(torch.tensor(-30.0, dtype=torch.float64)))
    assert float(log_z) == pytest.approx(exact, rel=1e-10)


def test_pruning_components_changes_nothing():
    """Given their context, most of 8 separated components cannot matter."""
    base = _random_mixture(k=8, d=3, seed=5, scale=0.05)
    x = base.sample(200, generator=torch.Generator().manual_seed(0))
    log_w, means, stds = base.conditionals(x)
    log_w, means = log_w[:, 1:], means[:, 1:]  # coordinate 0 has no context
    stds = stds[1:].expand_as(means)
    lower = torch.full((200, 2), -math.inf, dtype=torch.float64)
    upper = -lower
    net = _random_made(3, seed=2)
    features = net.context_features(x)[:, 1:]

    def f(nodes):
        return net.head(features, nodes, slice(1, None))

    pruned = prune_components(log_w, means, stds, lower, upper, 4.0)
    assert pruned[0].shape[-1] < 8
    full = log_integral(log_w, means, stds, f, lower, upper, 8)
    torch.testing.assert_close(
        log_integral(*pruned, f, lower, upper, 8), full, rtol=0, atol=1e-12
    )


def test_conditional_samples_follow_the_conditional_cdf():
    zero = torch.zeros(4000, 2, dtype=torch.float64)
    log_w = torch.log(torch.tensor([0.3, 0.7], dtype=torch.float64)).expand(4000, 2)
    means = zero + torch.tensor([-1.0, 2.0], dtype=torch.float64)
    stds = zero + torch.tensor([0.5, 1.0], dtype=torch.float64)

    def f(t):
        return 2 * torch.sin(2 * t)

    lower = torch.full((4000,), -0.5, dtype=torch.float64)
    t = sample_conditional(
        log_w, means, stds, f, lower=lower, generator=torch.Generator().manual_seed(0)
    )
    assert (t >= -0.5).all()
    total = log_partition_conditional(
        log_w[:1], means[:1], stds[:1], f, lower=lower[:1]
    )
    cdf = torch.exp(
        log_partition_conditional(log_w, means, stds, f, lower=lower, upper=t) - total
    )
    assert stats.kstest(cdf.numpy(), "uniform").pvalue > 1e-3


# --------------------------------------------------------------- estimator
@pytest.mark.slow
def test_gaussian_data_in_10d_matches_the_maximum_likelihood_gaussian():
    rng = np.random.RandomState(0)
    a = rng.normal(size=(10, 10))
    cov = a @ a.T / 10 + 0.5 * np.eye(10)
    X = rng.multivariate_normal(np.zeros(10), cov, size=2000)
    X_test = rng.multivariate_normal(np.zeros(10), cov, size=5000)
    est = AutoregressiveScoreMatchingDensity(random_state=0).fit(X)
    mle = multivariate_normal(X.mean(0), np.cov(X.T, bias=True))
    assert abs(est.score(X_test) - mle.logpdf(X_test).mean()) < 0.02


def test_density_integrates_to_one_in_2d():
    X = _moons()
    est = AutoregressiveScoreMatchingDensity(early_stopping=False, **SMALL).fit(X)
    x, w = _gauss_legendre_grid(-7, 7, 10)
    grid = np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)
    weights = np.outer(w, w).ravel()
    assert np.exp(est.score_samples(grid)) @ weights == pytest.approx(1, abs=1e-4)
    # a strong correction (up to 8 nats from the base) is normalized as well
    strong = copy.deepcopy(est)
    with torch.no_grad():
        strong.energy_.correction.head_output.normal_(
            0.0, 1.0, generator=torch.Generator().manual_seed(0)
        )
    assert np.exp(strong.score_samples(grid)) @ weights == pytest.approx(1, abs=1e-4)
    assert not np.allclose(strong.score_samples(X), est.score_samples(X), atol=0.1)


@pytest.mark.slow
def test_density_in_10d_has_unit_mass_by_importance_sampling():
    rng = np.random.RandomState(1)
    a = rng.normal(size=(10, 10))
    X = rng.multivariate_normal(np.zeros(10), a @ a.T / 10 + np.eye(10), size=800)
    X[:, 3] = np.abs(X[:, 3]) ** 1.5  # a skewed coordinate
    X = StandardScaler().fit_transform(X)
    est = AutoregressiveScoreMatchingDensity(early_stopping=False, **SMALL).fit(X)
    with torch.no_grad():  # a stronger correction: |log p - log base| ~ 0.6
        est.energy_.correction.head_output.mul_(3.0)
    proposal = multivariate_normal(X.mean(0), 1.44 * np.cov(X.T))
    draws = proposal.rvs(20000, random_state=0)
    w = np.exp(est.score_samples(draws) - proposal.logpdf(draws))
    stderr = w.std() / np.sqrt(len(w))
    assert abs(w.mean() - 1) < 3 * stderr
    assert stderr < 0.02  # the check has power


@pytest.mark.parametrize("domain", [None, "nonnegative"])
def test_samples_follow_the_model_conditionals(domain):
    X = _moons()
    if domain is not None:
        X = np.abs(X)
    est = AutoregressiveScoreMatchingDensity(
        early_stopping=False, domain=domain, order="reversed", **SMALL
    ).fit(X)
    with torch.no_grad():
        est.energy_.correction.head_output.normal_(
            0.0, 1.0, generator=torch.Generator().manual_seed(1)
        )
    samples = est.sample(3000, random_state=0)
    if domain is not None:
        assert (samples >= 0).all()
    model = est.energy_
    with torch.no_grad():
        u = model.conditional_cdf(torch.as_tensor(samples)[:, model.order]).numpy()
    for column in u.T:
        assert stats.kstest(column, "uniform").pvalue > 1e-3
    # and the samples are not the base's: its CDF rejects them
    base_only = copy.deepcopy(model)
    with torch.no_grad():
        base_only.correction.head_output.zero_()
        u0 = base_only.conditional_cdf(torch.as_tensor(samples)[:, model.order])
    assert min(stats.kstest(c, "uniform").pvalue for c in u0.numpy().T) < 1e-6


def test_box_domain_density_and_samples():
    rng = np.random.RandomState(0)
    X = np.column_stack([rng.beta(2, 5, 500), rng.uniform(-1, 1, 500)])
    est = AutoregressiveScoreMatchingDensity(
        domain=([0.0, -1.0], [1.0, 1.0]), early_stopping=False, **SMALL
    ).fit(X)
    x0, w0 = _gauss_legendre_grid(0, 1, 8)
    x1, w1 = _gauss_legendre_grid(-1, 1, 8)
    grid = np.stack(np.meshgrid(x0, x1, indexing="ij"), -1).reshape(-1, 2)
    mass = np.exp(est.score_samples(grid)) @ np.outer(w0, w1).ravel()
    assert mass == pytest.approx(1, abs=1e-6)
    assert est.score_samples([[1.5, 0.0], [0.5, -1.01]]).tolist() == [-np.inf] * 2
    samples = est.sample(500, random_state=0)
    assert (samples[:, 0] >= 0).all() and (samples[:, 0] <= 1).all()
    assert (np.abs(samples[:, 1]) <= 1).all()


def test_domains_that_are_not_boxes_are_refused():
    X = np.random.RandomState(0).uniform(-0.5, 0.5, size=(100, 2))
    with pytest.raises(ValueError, match="interval"):
        AutoregressiveScoreMatchingDensity(domain=Ball(radius=1.0), **SMALL).fit(X)
    with pytest.raises(ValueError, match="Negative values"):
        AutoregressiveScoreMatchingDensity(domain="nonnegative", **SMALL).fit(X)


def test_log_partition_semantics_and_quadrature_error():
    X = _moons(300)
    est = AutoregressiveScoreMatchingDensity(**SMALL).fit(X)
    assert est.log_partition_ == 0.0
    assert 0 <= est.log_partition_std_ < 1e-6
    assert est.log_partition_method_ == "quadrature"
    assert est.log_partition_ess_ == np.inf
    np.testing.assert_array_equal(
        est.unnormalized_score_samples(X), est.score_samples(X)
    )
    # the reported error is honest: 4x the panels moves log p by no more
    model = est.energy_
    x = torch.as_tensor(X)
    with torch.no_grad():
        used = model.log_prob(x)
        model.n_panels *= 4
        finer = model.log_prob(x)
    assert float((used - finer).abs().max()) <= est.log_partition_std_ * 1.001 + 1e-12


@pytest.mark.parametrize(
    "order, expected",
    [("natural", [0, 1, 2]), ("reversed", [2, 1, 0]), ([1, 2, 0], [1, 2, 0])],
)
def test_orders(order, expected):
    X = np.random.RandomState(0).normal(size=(200, 3))
    est = AutoregressiveScoreMatchingDensity(order=order, **SMALL).fit(X)
    assert est.order_.tolist() == expected


def test_random_order_is_seeded():
    X = np.random.RandomState(0).normal(size=(100, 4))
    fast = dict(base="gaussian", hidden_layer_sizes=(4,), max_iter=1)
    orders = {
        tuple(
            AutoregressiveScoreMatchingDensity(
                order="random", random_state=seed, **fast
            )
            .fit(X)
            .order_
        )
        for seed in range(4)
    }
    assert len(orders) > 1
    a = AutoregressiveScoreMatchingDensity(order="random", random_state=7, **fast)
    b = clone(a)
    assert a.fit(X).order_.tolist() == b.fit(X).order_.tolist()


@pytest.mark.parametrize("order", [[0, 1], [0, 0, 1], [0, 1, 3], [0.0, 1.0, 2.0]])
def test_bad_orders_are_value_errors(order):
    X = np.random.RandomState(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match="permutation"):
        AutoregressiveScoreMatchingDensity(order=order, **SMALL).fit(X)


class _LinearAutoregressive(torch.nn.Module):
    """f_i = own_i * (b_i + sum_{j<i} A_ij context_j): autoregressive."""

    def __init__(self, d, leak=False):
        super().__init__()
        self.weight = torch.nn.Parameter(0.1 * torch.ones(d, d))
        self.bias = torch.nn.Parameter(torch.zeros(d))
        self.leak = leak

    def conditional_energies(self, context, own):
        mask = torch.ones_like(self.weight).tril(0 if self.leak else -1)
        shift = context @ (self.weight * mask).T + self.bias
        return own * shift + 0.1 * own**2


def test_user_autoregressive_module_is_used_and_not_trained_in_place():
    X = _moons(300)
    module = _LinearAutoregressive(2)
    before = copy.deepcopy(module.state_dict())
    est = AutoregressiveScoreMatchingDensity(
        energy=module, early_stopping=False, max_iter=5, random_state=0
    ).fit(X)
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key])
    assert not torch.equal(est.energy_.correction.module.weight, before["weight"])
    assert np.isfinite(est.score(X))
    x, w = _gauss_legendre_grid(-7, 7, 10)
    grid = np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)
    assert np.exp(est.score_samples(grid)) @ np.outer(w, w).ravel() == pytest.approx(
        1, abs=1e-4
    )
    assert est.sample(5, random_state=0).shape == (5, 2)


def test_user_modules_without_the_structure_are_refused():
    X = _moons(100)
    with pytest.raises(ValueError, match="not autoregressive"):
        AutoregressiveScoreMatchingDensity(
            energy=_LinearAutoregressive(2, leak=True), **SMALL
        ).fit(X)
    with pytest.raises(ValueError, match="conditional_energies"):
        AutoregressiveScoreMatchingDensity(energy=torch.nn.Linear(2, 1), **SMALL).fit(X)


def test_pipeline_gridsearch_clone_and_joblib(tmp_path):
    X = make_two_moons(400, random_state=0)
    pipe = make_pipeline(
        StandardScaler(), AutoregressiveScoreMatchingDensity(**SMALL)
    ).fit(X)
    assert np.isfinite(pipe.score(X))
    search = GridSearchCV(
        AutoregressiveScoreMatchingDensity(**SMALL),
        {"order": ["natural", "reversed"], "hidden_layer_sizes": [(8,), (16, 16)]},
        cv=2,
    ).fit(StandardScaler().fit_transform(X))
    assert search.best_params_["order"] in ("natural", "reversed")
    est = search.best_estimator_
    assert clone(est).get_params() == est.get_params()
    path = tmp_path / "ar.joblib"
    joblib.dump(est, path)
    restored = joblib.load(path)
    Z = StandardScaler().fit_transform(X)
    np.testing.assert_array_equal(restored.score_samples(Z), est.score_samples(Z))
    np.testing.assert_array_equal(
        restored.sample(10, random_state=3), est.sample(10, random_state=3)
    )


def test_fits_and_samples_are_reproducible():
    X = _moons(300)
    a = AutoregressiveScoreMatchingDensity(**SMALL).fit(X)
    b = AutoregressiveScoreMatchingDensity(**SMALL).fit(X)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    np.testing.assert_array_equal(
        a.sample(20, random_state=1), b.sample(20, random_state=1)
    )
    assert not np.array_equal(
        a.sample(20, random_state=1), a.sample(20, random_state=2)
    )


def test_float32_stays_float32():
    X = _moons(300).astype(np.float32)
    est = AutoregressiveScoreMatchingDensity(**SMALL).fit(X)
    assert all(p.dtype == torch.float32 for p in est.energy_.parameters())
    assert est.score_samples(X).dtype == np.float32
    assert est.sample(3, random_state=0).dtype == np.float32
    assert est.log_partition_std_ < 1e-3
    X64 = X.astype(np.float64)
    est64 = AutoregressiveScoreMatchingDensity(**SMALL).fit(X64)
    np.testing.assert_allclose(
        est.score_samples(X), est64.score_samples(X64), rtol=0, atol=1e-3
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch has no CUDA device")
def test_fits_on_gpu_and_scores_on_cpu():
    X = _moons(300)
    est = AutoregressiveScoreMatchingDensity(device="cuda", **SMALL).fit(X)
    assert all(p.device.type == "cpu" for p in est.energy_.parameters())
    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    buffer.seek(0)
    restored = joblib.load(buffer)
    restored.set_params(device="cpu")
    np.testing.assert_allclose(
        restored.score_samples(X), est.score_samples(X), atol=1e-8
    )
    cpu = AutoregressiveScoreMatchingDensity(**SMALL).fit(X)
    assert abs(cpu.score(X) - est.score(X)) < 0.05


def test_unavailable_device_is_a_value_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available")
    with pytest.raises(ValueError, match="CUDA"):
        AutoregressiveScoreMatchingDensity(device="cuda", **SMALL).fit(_moons(50))


def test_warm_start_continues_the_same_model():
    X = _moons(300)
    est = AutoregressiveScoreMatchingDensity(
        warm_start=True, order="random", early_stopping=False, **SMALL
    ).fit(X)
    base, order = est.base_, est.order_.copy()
    first = est.energy_.correction.head_output.detach().clone()
    est.fit(X)
    assert est.base_ is base and est.order_.tolist() == order.tolist()
    assert not torch.equal(est.energy_.correction.head_output, first)


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0], [0.5, 0.1]]), "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0], [0.5, 0.1]]), "infinity"),
        (np.ones((5, 2)), "constant"),
        (np.random.RandomState(0).normal(size=(20, 2)) * 1e6, "Standardize"),
        (np.zeros((1, 2)), "minimum of 2"),
    ],
)
def test_bad_input_is_a_value_error(X, match):
    with pytest.raises(ValueError, match=match):
        AutoregressiveScoreMatchingDensity(**SMALL).fit(X)


def test_bad_input_at_score_and_sample_time():
    est = AutoregressiveScoreMatchingDensity(**SMALL).fit(_moons(100))
    with pytest.raises(ValueError, match="features"):
        est.score_samples(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="positive integer"):
        est.sample(0)
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError):
        est.score_samples(sparse.csr_matrix(np.zeros((2, 2))))


def test_a_failed_fit_leaves_the_fitted_model_unchanged():
    X = _moons(200)
    est = AutoregressiveScoreMatchingDensity(**SMALL).fit(X)
    before = est.score_samples(X)
    est.set_params(order=[0, 0])
    with pytest.raises(ValueError):
        est.fit(X)
    np.testing.assert_array_equal(est.score_samples(X), before)


def test_epochs_are_chosen_by_exact_held_out_likelihood():
    """Cross-fitting on small data, one split on large data; never below epoch 0."""
    small = AutoregressiveScoreMatchingDensity(**SMALL).fit(_moons(300))
    assert small.best_validation_score_ >= small.validation_scores_[0]
    X = StandardScaler().fit_transform(make_two_moons(2000, random_state=1))
    est = AutoregressiveScoreMatchingDensity(
        base="gaussian", hidden_layer_sizes=(32, 32), max_iter=30, random_state=0
    ).fit(X)
    assert len(est.validation_scores_) == est.n_iter_ + 1
    # with a poor base, the correction clearly helps
    assert est.best_validation_score_ > est.validation_scores_[0] + 0.1
    test = (
        StandardScaler()
        .fit(make_two_moons(2000, random_state=1))
        .transform(make_two_moons(4000, random_state=2))
    )
    assert est.score(test) > est.base_.score(test) + 0.1


# ------------------------------------------------------------ callbacks
def test_progress_bar_and_scoring_monitor():
    callback = pytest.importorskip("sklearn.callback")
    pytest.importorskip("rich")
    from skebm.metrics import neg_training_loss_scorer, validation_scorer

    X = _moons(1200)
    monitor = callback.ScoringMonitor(
        scoring={"training": neg_training_loss_scorer, "validation": validation_scorer}
    )
    est = AutoregressiveScoreMatchingDensity(**SMALL).set_callbacks(monitor).fit(X)
    rows = [r for r in monitor.get_logs().data if r["task_name"] == "epoch"]
    assert len(rows) == est.n_iter_
    np.testing.assert_allclose(
        [r["validation"] for r in rows], est.validation_scores_[1:], rtol=1e-5
    )
    AutoregressiveScoreMatchingDensity(**SMALL).set_callbacks(
        callback.ProgressBar()
    ).fit(X)


# ------------------------------------------------------------------ fuzz
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    n=st.integers(1, 30),
    d=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1.0, 1e-8, 1e8]),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_fuzz_inputs_fit_or_raise_a_value_error(n, d, seed, scale, dtype):
    X = (np.random.RandomState(seed).normal(size=(n, d)) * scale).astype(dtype)
    est = AutoregressiveScoreMatchingDensity(
        hidden_layer_sizes=(4,), max_iter=2, random_state=0
    )
    try:
        est.fit(X)
    except ValueError as exc:
        assert str(exc)
        return
    assert np.isfinite(est.score_samples(X)).all()
    assert np.isfinite(est.sample(3, random_state=0)).all()
