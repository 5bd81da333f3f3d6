"""MCMCLikelihoodDensity / MCMCLikelihoodBinary: the solvable cases of
short-run MCMC learning, and maximum likelihood by persistent chains.

Tolerances come from the sampling error of the data: ``SE`` of a statistic
is its standard deviation over the training rows divided by sqrt(n). A
fitted *process* "reproduces the data" when each of its statistics (computed
exactly: by the affine recursion of Langevin steps for a Gaussian energy, by
propagating the distribution over all 2^d states through the Gibbs updates
for a Boltzmann machine) is within a few SE of the data's.
"""

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skebm import MCMCLikelihoodBinary, MCMCLikelihoodDensity
from skebm.energies import BoltzmannEnergy, QuadraticEnergy
from skebm.objectives import NegativeChains, mcmc_likelihood_loss
from skebm.partition import binary_states
from skebm.samplers import exact_binary_draws, langevin

# ------------------------------------------------------- Gaussian, Langevin


def _process_moments(precision, mean, noise_mean, noise_cov, k, tau):
    """Mean and covariance after ``k`` Langevin steps of the Gaussian energy
    ``(precision, mean)`` from noise with the given moments: each step is
    ``x <- (I - tau P) x + tau P mu + sqrt(2 tau) xi``, an affine map, so the
    moments follow exactly (whatever the noise's shape)."""
    d = len(mean)
    a = np.eye(d) - tau * precision
    m, c = np.array(noise_mean, float), np.array(noise_cov, float)
    for _ in range(k):
        m = a @ m + tau * precision @ mean
        c = a @ c @ a.T + 2 * tau * np.eye(d)
    return m, c


def _upper(c):
    return c[np.triu_indices(len(c))]


def _energy_params(mean, cov):
    return np.r_[mean, _upper(cov)]


def _from_params(theta, d):
    mean = theta[:d]
    cov = np.zeros((d, d))
    cov[np.triu_indices(d)] = theta[d:]
    cov = cov + np.triu(cov, 1).T
    return mean, cov


def _moment_map(theta, d, noise_mean, noise_cov, k, tau):
    """Energy parameters (mean, covariance of exp(-E)) -> process moments."""
    mean, cov = _from_params(theta, d)
    m, c = _process_moments(np.linalg.inv(cov), mean, noise_mean, noise_cov, k, tau)
    return np.r_[m, _upper(c)]


def _data_moments(X):
    """Mean and (biased) covariance entries, and their standard errors."""
    d = X.shape[1]
    centred = X - X.mean(0)
    iu = np.triu_indices(d)
    products = centred[:, iu[0]] * centred[:, iu[1]]
    stats = np.r_[X.mean(0), products.mean(0)]
    se = np.r_[X.std(0), products.std(0)] / np.sqrt(len(X))
    return stats, se


def _check_short_run_gaussian(X, est, k, tau):
    """The paper's solvable case, checked three ways (see the module doc)."""
    d = X.shape[1]
    lower, upper = X.min(0), X.max(0)
    noise_mean, noise_cov = (lower + upper) / 2, np.diag((upper - lower) ** 2 / 12)
    target, se = _data_moments(X)
    args = (d, noise_mean, noise_cov, k, tau)

    # The prediction: the Gaussian energy whose k-step process from the noise
    # has the data's mean and covariance.
    data_theta = _energy_params(X.mean(0), np.cov(X.T, bias=True).reshape(d, d))
    solution = least_squares(
        lambda th: _moment_map(th, *args) - target, data_theta, xtol=1e-14,
        ftol=1e-14, gtol=1e-14,
    )
    predicted = solution.x
    assert np.abs(solution.fun).max() < 1e-8

    # 1. The fitted energy's process reproduces the data's moments within
    #    3 SE of the data (exactly computed: no sampling noise of our own).
    fitted = _energy_params(est.location_, np.linalg.inv(est.precision_))
    process = _moment_map(fitted, *args)
    assert np.all(np.abs(process - target) <= 3 * se), (process - target) / se

    # 2. sample() draws that process: 20000 short-run draws agree with the
    #    data within 3 SE of the data plus 3 SE of the draws.
    draws = est.sample(20000, random_state=0)
    drawn, drawn_se = _data_moments(draws)
    assert np.all(np.abs(drawn - target) <= 3 * se + 3 * drawn_se)

    # 3. The energy itself is the predicted Gaussian, not the data's: the
    #    tolerance maps the 3 SE band of the moments through the inverse
    #    Jacobian of the moment map at the prediction (|J^-1| (3 SE)).
    eps = 1e-6
    jac = np.column_stack([
        (_moment_map(predicted + eps * e, *args)
         - _moment_map(predicted - eps * e, *args)) / (2 * eps)
        for e in np.eye(len(predicted))
    ])
    tol = np.abs(np.linalg.inv(jac)) @ (3 * se)
    assert np.all(np.abs(fitted - predicted) <= tol), (fitted - predicted) / tol
    # The data's own Gaussian (the maximum-likelihood energy) is outside that
    # band, by more than twice its width (the band is a conservative bound).
    assert np.max(np.abs(data_theta - predicted) / tol) > 2
    return predicted, data_theta


def _fit_two_stage(X, **params):
    """A fit, then a warm-started continuation at a tenth of the learning rate
    (Adam's iterates fluctuate with the learning rate; the tests compare the
    fixed point)."""
    est = MCMCLikelihoodDensity(**params).fit(X)
    est.set_params(
        warm_start=True,
        learning_rate_init=params["learning_rate_init"] / 10,
        max_iter=params["max_iter"] // 2,
    )
    return est.fit(X)


def test_langevin_steps_are_the_affine_gaussian_map():
    """Layer C: a k-step run of the sampler has the recursion's moments."""
    d, k, tau, n = 2, 7, 0.1, 40000
    precision = np.array([[2.0, 0.6], [0.6, 1.0]])
    mean = np.array([1.0, -1.0])
    energy = QuadraticEnergy(d).double()
    energy.set_gaussian(torch.tensor(mean), torch.tensor(precision))
    g = torch.Generator().manual_seed(0)
    x0 = 3 * torch.rand(n, d, generator=g, dtype=torch.float64)  # U(0, 3)
    x = langevin(energy, x0, n_steps=k, step_size=tau, generator=g).numpy()
    m, c = _process_moments(precision, mean, [1.5, 1.5], np.eye(d) * 9 / 12, k, tau)
    stats, se = _data_moments(x)
    assert np.all(np.abs(stats - np.r_[m, _upper(c)]) <= 4 * se)


def test_loss_gradient_is_the_difference_of_moments():
    """The surrogate's gradient in a Boltzmann machine's fields is minus the
    data's means plus the negatives' means (negatives held fixed)."""
    d = 4
    energy = BoltzmannEnergy(d).double()
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(64, d, generator=g) < 0.3).double()
    y = (torch.rand(64, d, generator=g) < 0.6).double()
    chains = NegativeChains("noise", 1, transition=lambda e, x0, k, gen: y,
                            noise=lambda n, gen: torch.zeros(n, d))
    loss = mcmc_likelihood_loss(energy, x, chains=chains)
    loss.backward()
    assert torch.allclose(energy.bias.grad, -(x.mean(0) - y.mean(0)))
    # Sign: data at lower energy than the negatives makes the loss negative.
    with torch.no_grad():
        energy.bias.copy_(torch.log(x.mean(0) / (1 - x.mean(0))))
    assert float(mcmc_likelihood_loss(energy, x, chains=chains).detach()) < 0


def test_persistent_chains_carry_over_between_steps():
    calls = []

    def transition(energy, x0, k, generator):
        calls.append(x0.clone())
        return x0 + 1

    chains = NegativeChains("persistent", 1, transition=transition,
                            noise=lambda n, gen: torch.zeros(n, 2))
    x = torch.ones(3, 2)
    chains(None, x)
    chains(None, x[:2])  # a smaller last batch: the same chains continue
    assert torch.equal(calls[1], torch.ones(3, 2))
    assert torch.equal(chains.state, 2 * torch.ones(3, 2))
    data = NegativeChains("data", 1, transition=transition, noise=None)
    assert torch.equal(data(None, x), x + 1)


def test_short_run_gaussian_1d_reproduces_the_data_not_its_energy():
    """Nijkamp et al.'s solvable case in one dimension (fast tier)."""
    X = np.random.RandomState(0).normal(1.0, 1.5, size=(1000, 1))
    k, tau = 5, 0.2
    est = _fit_two_stage(
        X, energy="quadratic", noise="uniform", n_mcmc_steps=k,
        mcmc_step_size=tau, batch_size=1000, learning_rate_init=0.05,
        max_iter=80, alpha=0.0, random_state=0,
    )
    predicted, data_theta = _check_short_run_gaussian(X, est, k, tau)
    # The energy is narrower than the data: the k steps from the wide noise
    # would not contract it enough otherwise.
    assert predicted[1] < 0.8 * data_theta[1]


@pytest.mark.slow
def test_short_run_gaussian_2d_correlated():
    cov = np.array([[1.0, 0.5], [0.5, 1.0]])
    X = np.random.RandomState(1).multivariate_normal([0.5, -1.0], cov, size=2000)
    k, tau = 20, 0.05
    est = _fit_two_stage(
        X, energy="quadratic", noise="uniform", n_mcmc_steps=k,
        mcmc_step_size=tau, batch_size=2000, learning_rate_init=0.02,
        max_iter=300, alpha=0.0, random_state=0,
    )
    _check_short_run_gaussian(X, est, k, tau)


# ------------------------------------------------- Boltzmann machine, Gibbs

_D = 12


def _block_boltzmann(seed, strength=1.2):
    """Two blocks of six units, coupled within a block: k = 1 sweep from
    independent noise is far from its equilibrium."""
    g = torch.Generator().manual_seed(seed)
    block = torch.arange(_D) // 6
    w = strength * (block[:, None] == block[None, :]).double()
    w = w + 0.1 * torch.randn(_D, _D, generator=g, dtype=torch.float64)
    w = (w + w.T) / 2
    w.fill_diagonal_(0)
    energy = BoltzmannEnergy(_D).double()
    energy.set_parameters(-0.5 * w.sum(1), w)
    return energy, g


def _states():
    return binary_states(0, 2**_D, _D, dtype=torch.float64, device="cpu")


def _pair_statistics(p_or_x, states=None):
    """Means and pair moments E[x_i x_j] (i < j): of a distribution over the
    states, or of data rows (then also their standard errors)."""
    iu = np.triu_indices(_D, 1)
    if states is not None:
        p = p_or_x
        means = (p @ states).numpy()
        pairs = (states.T @ (states * p[:, None])).numpy()[iu]
        return np.r_[means, pairs]
    x = p_or_x
    t = np.c_[x, x[:, iu[0]] * x[:, iu[1]]]
    return t.mean(0), t.std(0) / np.sqrt(len(x))


@torch.no_grad()
def _exact_short_run(energy, probabilities, n_sweeps, states):
    """The distribution over all states after ``n_sweeps`` systematic Gibbs
    sweeps from independent units: each site update moves the mass of every
    pair of states differing in that site to its exact conditional. Sites go
    in the sampler's order (colour classes in turn; sites of one class do not
    interact, so updating them one by one is the same kernel)."""
    e = energy(states)
    p = torch.prod(torch.where(states > 0, probabilities, 1 - probabilities), 1)
    index = torch.arange(2**_D)
    order = [int(j) for s in energy.independent_site_sets() for j in s.tolist()]
    for _ in range(n_sweeps):
        for j in order:
            off = index[(index >> j) & 1 == 0]
            on = off + (1 << j)
            total = p[off] + p[on]
            p[on] = total * torch.sigmoid(e[off] - e[on])
            p[off] = total - p[on]
    return p


def _exact_maximum_likelihood(X, states):
    energy = BoltzmannEnergy(_D).double()
    opt = torch.optim.LBFGS(energy.parameters(), max_iter=500,
                            tolerance_grad=1e-10, line_search_fn="strong_wolfe")
    x = torch.as_tensor(X)

    def closure():
        opt.zero_grad()
        loss = energy(x).mean() + torch.logsumexp(-energy(states), 0)
        loss.backward()
        return loss

    opt.step(closure)
    return energy


def _mean_log_likelihood(energy, X, states):
    with torch.no_grad():
        x = torch.as_tensor(X)
        return float(-energy(x).mean() - torch.logsumexp(-energy(states), 0))


def _fit_short_run_boltzmann(X):
    """k = 1 sweep from the data's marginals; then a tenth of the learning rate."""
    est = MCMCLikelihoodBinary(
        energy="boltzmann", chains="noise", n_mcmc_steps=1, alpha=0.0,
        learning_rate_init=0.1, max_iter=80, batch_size=2000, random_state=0,
    ).fit(X)
    return est.set_params(warm_start=True, learning_rate_init=0.01,
                          max_iter=40).fit(X)


def test_short_run_boltzmann_reproduces_data_moments_its_equilibrium_does_not():
    """Short runs of k = 1 Gibbs sweep from noise, 12 units, exact by
    enumeration: the trained process matches the data's 12 means and 66 pair
    moments within 4 SE each (the largest of 78 |z| exceeds 4 with
    probability 0.5% for independent normal errors); the fitted energy's
    equilibrium misses some of them by more than 5 SE (measured over five
    seeds: the process's largest |z| 1.1-2.5, the equilibrium's 7.2-13.5)."""
    true, g = _block_boltzmann(0)
    X = exact_binary_draws(true, _D, 2000, generator=g).numpy()
    est = _fit_short_run_boltzmann(X)
    states = _states()
    energy = est.energy_.double()
    target, se = _pair_statistics(X)
    marginals = torch.as_tensor(est._short_run_process["probabilities"])
    short = _pair_statistics(_exact_short_run(energy, marginals, 1, states), states)
    with torch.no_grad():
        equilibrium = _pair_statistics(torch.softmax(-energy(states), 0), states)
    assert np.abs((short - target) / se).max() < 4
    assert np.abs((equilibrium - target) / se).max() > 5
    # sample() draws the trained process: 20000 draws agree with the exact
    # short-run moments within 4 SE of the draws.
    draws = est.sample(20000, random_state=0)
    drawn, drawn_se = _pair_statistics(draws)
    assert np.abs((drawn - short) / drawn_se).max() < 4
    # ... and with sampling_init="equilibrium", the energy's own moments.
    est.set_params(sampling_init="equilibrium")
    drawn, drawn_se = _pair_statistics(est.sample(20000, random_state=0))
    assert np.abs((drawn - equilibrium) / drawn_se).max() < 4


@pytest.mark.slow
def test_persistent_chains_approach_exact_maximum_likelihood():
    """PCD (k = 5 sweeps, 250 chains) against maximum likelihood by
    enumeration, on weaker couplings than above (PCD's chains must mix: at
    strength 1.2 they stalled 0.02 nats short). Short runs of one sweep from
    noise fit a process, and their energy is worse by over 0.03 nats."""
    true, g = _block_boltzmann(0, strength=0.9)
    X = exact_binary_draws(true, _D, 2000, generator=g).numpy()
    states = _states()
    ml = _exact_maximum_likelihood(X, states)
    best = _mean_log_likelihood(ml, X, states)
    pcd = MCMCLikelihoodBinary(
        energy="boltzmann", chains="persistent", n_mcmc_steps=5, alpha=0.0,
        learning_rate_init=0.005, max_iter=150, batch_size=250, random_state=0,
    ).fit(X)
    pcd.set_params(warm_start=True, learning_rate_init=0.001, max_iter=50).fit(X)
    short = _fit_short_run_boltzmann(X)
    gap_pcd = best - _mean_log_likelihood(pcd.energy_.double(), X, states)
    gap_short = best - _mean_log_likelihood(short.energy_.double(), X, states)
    # The score is the same quantity, normalized by the exact log Z.
    assert pcd.score(X) == pytest.approx(best - gap_pcd, abs=1e-6)
    assert 0 <= gap_pcd < 0.01
    assert gap_short > max(0.03, 3 * gap_pcd)


# ------------------------------------------------------------ API behaviour


def test_sample_uses_the_process_as_fitted_not_later_params():
    X = np.random.RandomState(0).normal(size=(200, 2))
    est = MCMCLikelihoodDensity(energy="quadratic", n_mcmc_steps=3, max_iter=2,
                                random_state=0).fit(X)
    before = est.sample(50, random_state=1)
    est.set_params(n_mcmc_steps=50, mcmc_step_size=0.5, noise="uniform")
    assert np.array_equal(est.sample(50, random_state=1), before)
    est.set_params(sampling_init="equilibrium")
    assert not np.array_equal(est.sample(50, random_state=1), before)


def test_default_sampling_follows_the_chains():
    for chains, mode in [("noise", "short_run"), ("data", "equilibrium"),
                         ("persistent", "equilibrium")]:
        est = MCMCLikelihoodBinary(energy="boltzmann", chains=chains, max_iter=1)
        assert est._sampling_mode() == mode


def test_all_epochs_run_without_a_convergence_warning(recwarn):
    X = np.random.RandomState(0).normal(size=(100, 2))
    est = MCMCLikelihoodDensity(hidden_layer_sizes=(8,), max_iter=4,
                                random_state=0).fit(X)
    assert est.n_iter_ == 4
    assert not [w for w in recwarn if "converged" in str(w.message)]


def test_same_seed_same_fit_and_spins_round_trip():
    X = np.where(np.random.RandomState(0).rand(150, 5) < 0.5, -1.0, 1.0)
    a = MCMCLikelihoodBinary(energy="boltzmann", binarize=None, max_iter=3,
                             random_state=0).fit(X)
    b = MCMCLikelihoodBinary(energy="boltzmann", binarize=None, max_iter=3,
                             random_state=0).fit(X)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    assert set(np.unique(a.sample(20, random_state=0))) <= {-1.0, 1.0}


def test_pipeline_and_grid_search():
    X = np.random.RandomState(0).normal(size=(300, 2)) * [3.0, 0.5] + 4
    pipe = make_pipeline(
        StandardScaler(),
        MCMCLikelihoodDensity(energy="quadratic", n_mcmc_steps=3, max_iter=5,
                              random_state=0),
    )
    search = GridSearchCV(
        pipe, {"mcmclikelihooddensity__chains": ["noise", "persistent"]}, cv=2,
    ).fit(X)
    assert np.isfinite(search.best_score_)
    assert search.best_estimator_[-1].sample(3, random_state=0).shape == (3, 2)
