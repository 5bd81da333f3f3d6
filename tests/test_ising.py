"""PseudoLikelihoodIsing: the solver, known lattices, L1 graph recovery, API."""

import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

import skebm._ising_solver
from skebm import PseudoLikelihoodIsing
from skebm._ising_solver import (
    _pseudo_likelihood_value_and_gradient,
    _restricted_newton_system,
    _SinglePrecision,
    _Workspace,
)
from skebm.datasets import make_ising_lattice
from skebm.energies import IsingEnergy
from skebm.objectives import pseudo_log_likelihood
from skebm.partition import (
    binary_states,
    log_partition_ais_binary,
    log_partition_enumerate,
)
from skebm.samplers import gibbs


def _lattice(side, low, high, seed):
    """A side x side open lattice, coupling magnitudes in [low, high], fields in
    [-0.2, 0.2]."""
    return make_ising_lattice(
        side, coupling_range=(low, high), field_scale=0.2, random_state=seed
    )


def _energy(J, h):
    energy = IsingEnergy(len(h)).double()
    energy.set_parameters(torch.as_tensor(h), torch.as_tensor(J))
    return energy


def _exact_sample(J, h, n, seed):
    """n exact draws by enumeration, with the exact log-probability of each
    state of {-1, 1}^d."""
    d = len(h)
    states = binary_states(0, 2**d, d, values=(-1.0, 1.0), dtype=torch.float64,
                           device="cpu")
    with torch.no_grad():
        log_p = -_energy(J, h)(states)
    log_p = (log_p - torch.logsumexp(log_p, 0)).numpy()
    idx = np.random.RandomState(seed).choice(2**d, size=n, p=np.exp(log_p))
    return states.numpy()[idx], log_p[idx]


@pytest.fixture(scope="module")
def lattice_4x4():
    J, h = _lattice(4, 0.2, 0.4, seed=0)
    X, log_p = _exact_sample(J, h, 20000, seed=1)
    return J, h, X, log_p


def _relative_error(estimate, truth):
    return np.linalg.norm(estimate - truth) / np.linalg.norm(truth)


# ----------------------------------------------------------------- solver
def test_objective_and_gradient_match_autograd_of_pseudo_likelihood():
    rng = np.random.RandomState(0)
    J, h = _lattice(3, 0.2, 0.5, seed=3)
    x = torch.as_tensor(rng.choice([-1.0, 1.0], size=(50, 9)))
    value, grad_h, grad_J = _pseudo_likelihood_value_and_gradient(
        x, torch.as_tensor(h), torch.as_tensor(J)
    )
    energy = _energy(J, h)
    loss = -pseudo_log_likelihood(energy, x, values=(-1.0, 1.0)).mean()
    loss.backward()
    assert value == pytest.approx(float(loss.detach()), rel=1e-12)
    np.testing.assert_allclose(grad_h.numpy(), energy.bias.grad.numpy(), atol=1e-12)
    # The free parameter is the upper triangle: its gradient is the symmetric
    # gradient's upper triangle (a coupling enters two conditionals).
    upper = np.triu(energy.weight_raw.grad.numpy(), 1)
    np.testing.assert_allclose(np.triu(grad_J.numpy(), 1), upper, atol=1e-12)


@pytest.mark.parametrize("pattern_degree", [6, 2, 0])
def test_restricted_newton_system_matches_gradient_and_finite_differences(
    pattern_degree, monkeypatch
):
    # The Newton refit's value, gradient and Hessian over the fields and a
    # subset of couplings: gradient as the full evaluation, Hessian as central
    # differences of that gradient. The pattern degree sends all, some or no
    # spins' Hessian blocks through the bincount path.
    monkeypatch.setattr(skebm._ising_solver, "_PATTERN_DEGREE", pattern_degree)
    rng = np.random.RandomState(0)
    n, d = 300, 6
    x = torch.as_tensor(rng.choice([-1.0, 1.0], size=(n, d)))
    workspace = _Workspace(x)
    rows, cols = np.triu_indices(d, 1)
    keep = rng.rand(rows.size) < 0.5
    er, ec = rows[keep], cols[keep]

    def couplings(e):
        J = np.zeros((d, d))
        J[er, ec] = e
        return J + J.T

    theta = rng.randn(d + er.size) * 0.3
    value, grad, hess = _restricted_newton_system(
        workspace, theta[:d], couplings(theta[d:]), er, ec
    )
    v_full, gh, gJ = _pseudo_likelihood_value_and_gradient(
        x, torch.as_tensor(theta[:d]), torch.as_tensor(couplings(theta[d:]))
    )
    assert value == pytest.approx(v_full, rel=1e-12)
    np.testing.assert_allclose(grad[:d], gh.numpy(), atol=1e-12)
    np.testing.assert_allclose(grad[d:], gJ.numpy()[er, ec], atol=1e-12)
    eps = 1e-6
    numeric = np.empty_like(hess)
    for t in range(theta.size):
        step = np.zeros_like(theta)
        step[t] = eps
        gp = _restricted_newton_system(
            workspace, (theta + step)[:d], couplings((theta + step)[d:]), er, ec
        )[1]
        gm = _restricted_newton_system(
            workspace, (theta - step)[:d], couplings((theta - step)[d:]), er, ec
        )[1]
        numeric[:, t] = (gp - gm) / (2 * eps)
    np.testing.assert_allclose(hess, numeric, atol=1e-8)
    np.testing.assert_allclose(hess, hess.T)


def test_single_precision_evaluation_is_close_to_float64():
    # The float32 evaluation that finds the L1 support: within single
    # precision of the float64 one (sums accumulated in float64).
    rng = np.random.RandomState(0)
    J, h = _lattice(4, 0.2, 0.5, seed=3)
    x = torch.as_tensor(rng.choice([-1.0, 1.0], size=(3000, 16)))
    value, grad_h, grad_J = _pseudo_likelihood_value_and_gradient(
        x, torch.as_tensor(h), torch.as_tensor(J)
    )
    v32, gh32, gJ32 = _SinglePrecision(_Workspace(x)).evaluate(h, J)
    assert v32 == pytest.approx(value, rel=1e-6)
    np.testing.assert_allclose(gh32, grad_h.numpy(), atol=1e-6)
    np.testing.assert_allclose(gJ32, grad_J.numpy(), atol=1e-6)
    assert gJ32.dtype == np.float64


def test_l2_solution_satisfies_optimality(lattice_4x4):
    _, _, X, _ = lattice_4x4
    alpha = 1e-2
    est = PseudoLikelihoodIsing(alpha=alpha, tol=1e-8).fit(X[:2000])
    assert est.kkt_residual_ <= 1e-8
    _, gh, gJ = _pseudo_likelihood_value_and_gradient(
        torch.as_tensor(X[:2000]),
        torch.as_tensor(est.fields_),
        torch.as_tensor(est.couplings_),
    )
    off = ~np.eye(16, dtype=bool)
    np.testing.assert_allclose(gh.numpy(), 0, atol=1e-7)
    np.testing.assert_allclose((gJ.numpy() + alpha * est.couplings_)[off], 0,
                               atol=1e-7)


# ------------------------------------------------------------ known truth
def test_recovers_lattice_couplings_and_log_likelihood(lattice_4x4):
    J, h, X, log_p = lattice_4x4
    est = PseudoLikelihoodIsing(random_state=0).fit(X)
    assert est.log_partition_method_ == "exact"
    assert _relative_error(est.couplings_, J) < 0.1
    np.testing.assert_allclose(est.couplings_, est.couplings_.T)
    assert np.all(np.diag(est.couplings_) == 0)
    assert np.abs(est.fields_ - h).max() < 0.05
    assert np.mean(np.abs(est.score_samples(X) - log_p)) < 0.1
    assert est.score(X) == pytest.approx(log_p.mean(), abs=0.02)


def test_l1_recovers_the_edges_exactly_and_refit_removes_the_bias(lattice_4x4):
    J, _, X, _ = lattice_4x4
    edges = J != 0
    lasso = PseudoLikelihoodIsing(penalty="l1", alpha=0.1).fit(X)
    assert np.array_equal(lasso.couplings_ != 0, edges)
    # Shrinkage: every selected coupling is pulled toward zero.
    refit = PseudoLikelihoodIsing(penalty="l1", alpha=0.1, refit=True).fit(X)
    assert np.array_equal(refit.couplings_ != 0, edges)
    assert _relative_error(refit.couplings_, J) < _relative_error(
        lasso.couplings_, J
    )
    assert _relative_error(refit.couplings_, J) < 0.1
    assert refit.kkt_residual_ <= refit.tol


def test_l1_kkt_conditions_hold_with_exact_zeros(lattice_4x4):
    _, _, X, _ = lattice_4x4
    alpha = 0.05
    est = PseudoLikelihoodIsing(penalty="l1", alpha=alpha, tol=1e-7).fit(X[:5000])
    J = est.couplings_
    _, _, grad = _pseudo_likelihood_value_and_gradient(
        torch.as_tensor(X[:5000]), torch.as_tensor(est.fields_), torch.as_tensor(J)
    )
    grad = grad.numpy()
    off = ~np.eye(16, dtype=bool)
    zero = (J == 0) & off
    assert zero.sum() > 0
    assert np.all(np.abs(grad[zero]) <= alpha + 1e-6)
    active = J != 0
    np.testing.assert_allclose(grad[active] + alpha * np.sign(J[active]), 0,
                               atol=1e-6)


def test_large_l1_penalty_gives_the_empty_graph(lattice_4x4):
    _, _, X, _ = lattice_4x4
    est = PseudoLikelihoodIsing(penalty="l1", alpha=10.0).fit(X[:1000])
    assert np.all(est.couplings_ == 0)


# ------------------------------------------------------- data and options
def test_zero_one_input_is_mapped_to_spins(lattice_4x4):
    _, _, X, _ = lattice_4x4
    spins = PseudoLikelihoodIsing(binarize=None).fit(X[:3000])
    bits = PseudoLikelihoodIsing(binarize=None).fit((X[:3000] + 1) / 2)
    np.testing.assert_allclose(bits.couplings_, spins.couplings_, atol=1e-6)
    np.testing.assert_allclose(bits.fields_, spins.fields_, atol=1e-6)
    assert set(np.unique(bits.sample(20, random_state=0))) <= {0.0, 1.0}
    assert set(np.unique(spins.sample(20, random_state=0))) <= {-1.0, 1.0}
    np.testing.assert_allclose(
        bits.score_samples((X[:50] + 1) / 2), spins.score_samples(X[:50]), atol=1e-6
    )


def test_non_binary_input_without_binarize_is_a_value_error():
    X = np.random.RandomState(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="binarize"):
        PseudoLikelihoodIsing(binarize=None).fit(X)


def test_constant_spin_gives_finite_parameters():
    rng = np.random.RandomState(0)
    X = rng.choice([-1.0, 1.0], size=(500, 4))
    X[:, 2] = 1.0
    for penalty, alpha in [("l2", 0.0), ("l1", 0.01)]:
        est = PseudoLikelihoodIsing(penalty=penalty, alpha=alpha, refit=True).fit(X)
        assert np.all(np.isfinite(est.couplings_))
        assert est.fields_[2] > 3
        assert np.all(np.isfinite(est.score_samples(X)))


def test_pseudo_log_likelihood_method(lattice_4x4):
    _, _, X, _ = lattice_4x4
    est = PseudoLikelihoodIsing().fit(X[:2000])
    a = est.fields_ + X[:10] @ est.couplings_
    expected = (X[:10] * a - np.log(2 * np.cosh(a))).sum(1)
    np.testing.assert_allclose(est.pseudo_log_likelihood(X[:10]), expected,
                               rtol=1e-10)


def test_warm_start_along_an_alpha_path_needs_fewer_iterations(lattice_4x4):
    _, _, X, _ = lattice_4x4
    cold = PseudoLikelihoodIsing(penalty="l1", alpha=0.02).fit(X[:5000])
    est = PseudoLikelihoodIsing(penalty="l1", alpha=0.03, warm_start=True)
    est.fit(X[:5000])
    est.set_params(alpha=0.02).fit(X[:5000])
    assert est.n_iter_ < cold.n_iter_
    np.testing.assert_allclose(est.couplings_, cold.couplings_, atol=1e-4)


def test_max_iter_too_small_warns(lattice_4x4):
    _, _, X, _ = lattice_4x4
    with pytest.warns(ConvergenceWarning):
        PseudoLikelihoodIsing(max_iter=1).fit(X[:500])


def test_grid_search_over_alpha(lattice_4x4):
    _, _, X, _ = lattice_4x4
    search = GridSearchCV(
        PseudoLikelihoodIsing(penalty="l1"), {"alpha": [1.0, 0.03]}, cv=3
    ).fit(X[:3000])
    assert search.best_params_ == {"alpha": 0.03}


def test_joblib_round_trip(tmp_path, lattice_4x4):
    _, _, X, _ = lattice_4x4
    est = PseudoLikelihoodIsing().fit(X[:1000])
    joblib.dump(est, tmp_path / "ising.joblib")
    loaded = joblib.load(tmp_path / "ising.joblib")
    np.testing.assert_array_equal(loaded.score_samples(X[:20]),
                                  est.score_samples(X[:20]))


# -------------------------------------------------------------- sampling
@pytest.mark.parametrize(
    "options",
    [
        dict(),  # annealed importance samples, resampled, then Gibbs
        dict(n_sweeps=30, sampling_init="noise"),  # short-run chains from noise
        dict(n_sweeps=30, sampling_init="noise", n_sampling_chains=50),  # persistent
        dict(n_sweeps=100, sampling_init="data", scan="random"),
    ],
    ids=["annealed", "noise", "persistent", "data"],
)
def test_gibbs_samples_match_the_model_moments(lattice_4x4, options):
    # Against the fitted model's own moments (enumeration), not the data's.
    _, _, X, _ = lattice_4x4
    est = PseudoLikelihoodIsing(**options).fit(X)
    states = binary_states(0, 2**16, 16, values=(-1.0, 1.0), dtype=torch.float64,
                           device="cpu")
    with torch.no_grad():
        p = torch.softmax(-est.energy_.double()(states), 0).numpy()
    states = states.numpy()
    S = est.sample(4000, random_state=0)
    assert S.shape == (4000, 16)
    np.testing.assert_allclose(S.mean(0), p @ states, atol=0.06)
    np.testing.assert_allclose((S.T @ S) / len(S),
                               (states * p[:, None]).T @ states, atol=0.06)
    np.testing.assert_array_equal(S, est.sample(4000, random_state=0))


# ------------------------------------------------ coloured Gibbs sampling
def _sparse_ising(d=10, seed=0):
    """A ring with two chords: odd cycles, so more than two colours."""
    rng = np.random.RandomState(seed)
    J = np.zeros((d, d))
    for i, j in [(i, (i + 1) % d) for i in range(d)] + [(0, 4), (2, 7)]:
        J[i, j] = J[j, i] = rng.uniform(0.4, 0.8) * rng.choice([-1.0, 1.0])
    energy = IsingEnergy(d).double()
    energy.set_parameters(
        torch.as_tensor(rng.uniform(-0.3, 0.3, d)), torch.as_tensor(J)
    )
    return energy, J


def test_independent_site_sets_are_a_colouring():
    energy, J = _sparse_ising()
    sets = energy.independent_site_sets()
    covered = torch.cat(sets).sort().values
    assert covered.tolist() == list(range(10))
    assert 2 < len(sets) < 10
    for sites in sets:
        idx = sites.numpy()
        assert not J[np.ix_(idx, idx)].any()
    dense = IsingEnergy(6).double()
    dense.set_parameters(torch.zeros(6), torch.ones(6, 6))
    assert len(dense.independent_site_sets()) == 6


def test_coloured_gibbs_matches_enumerated_moments():
    # Systematic scan on a pairwise energy updates one colour class at a
    # time; its moments must be those of the exact distribution.
    energy, _ = _sparse_ising()
    states = binary_states(0, 2**10, 10, values=(-1.0, 1.0), dtype=torch.float64,
                           device="cpu")
    with torch.no_grad():
        p = torch.softmax(-energy(states), 0).numpy()
    states = states.numpy()
    mean = p @ states
    second = (states * p[:, None]).T @ states
    x0 = torch.ones(6000, 10, dtype=torch.float64)
    x = gibbs(energy, x0, n_sweeps=40, values=(-1.0, 1.0),
              generator=torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(x.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(x.T @ x / len(x), second, atol=0.05)


def test_coloured_ais_agrees_with_enumeration():
    energy, _ = _sparse_ising(d=14, seed=1)
    exact, _ = log_partition_enumerate(energy, 14, values=(-1.0, 1.0))
    ais, stderr = log_partition_ais_binary(
        energy, torch.full((14,), 0.5, dtype=torch.float64), values=(-1.0, 1.0),
        n_chains=400, n_steps=100, generator=torch.Generator().manual_seed(0))
    assert 0 < stderr < 0.1
    assert abs(ais - exact) < 3 * stderr


def test_l1_early_support_guess_still_reaches_the_solution(lattice_4x4, monkeypatch):
    # With a patience of one iteration the support handed to the Newton step
    # is often wrong: the step must be rejected (sign change or KKT failure)
    # and L-BFGS-B resume, ending at the same solution with exact zeros.
    _, _, X, _ = lattice_4x4
    reference = PseudoLikelihoodIsing(penalty="l1", alpha=0.05, tol=1e-7).fit(X[:5000])
    monkeypatch.setattr(skebm._ising_solver, "_SUPPORT_PATIENCE", 1)
    early = PseudoLikelihoodIsing(penalty="l1", alpha=0.05, tol=1e-7).fit(X[:5000])
    assert early.kkt_residual_ <= 1e-7
    assert np.array_equal(early.couplings_ != 0, reference.couplings_ != 0)
    np.testing.assert_allclose(early.couplings_, reference.couplings_, atol=1e-5)


# ------------------------------------------------------- convergence
def test_defaults_converge_on_binarized_digits():
    # Constant and near-constant pixels make the problem ill-conditioned:
    # L-BFGS ran 1000 iterations to a KKT residual of 3.6e-4; Newton's method
    # finishes it.
    from sklearn.datasets import load_digits

    X = load_digits().data[:600] > 7
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = PseudoLikelihoodIsing(random_state=0).fit(X)
    assert est.kkt_residual_ <= est.tol
    assert np.isfinite(est.score(X))


def test_unpenalized_separable_data_warn_of_no_finite_optimum():
    rng = np.random.RandomState(0)
    z = rng.choice([-1.0, 1.0], size=(300, 1))
    separable = np.repeat(z, 5, axis=1)  # every spin equals every other
    with pytest.warns(ConvergenceWarning, match="no finite optimum"):
        PseudoLikelihoodIsing(alpha=0.0).fit(separable)
    noisy = np.where(rng.rand(300, 5) < 0.9, separable, -separable)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        PseudoLikelihoodIsing(alpha=0.0).fit(noisy)
        PseudoLikelihoodIsing(alpha=1e-2).fit(separable)
