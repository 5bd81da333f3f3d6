import warnings

import joblib
import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skebm import ScoreMatchingDensity
from skebm.datasets import make_two_moons
from skebm.energies import LinearInParametersEnergy

FAST = dict(
    hidden_layer_sizes=(16, 16),
    max_iter=20,
    n_ais_chains=64,
    n_ais_steps=50,
    n_sampling_steps=50,
)


def test_quadratic_equals_gaussian_mle(gaussian_data):
    X = gaussian_data
    est = ScoreMatchingDensity(energy="quadratic").fit(X)
    mle = multivariate_normal(X.mean(0), np.cov(X, rowvar=False, bias=True))
    X_test = np.random.RandomState(1).normal(size=(300, 3))
    np.testing.assert_allclose(est.score_samples(X_test), mle.logpdf(X_test), atol=1e-6)
    assert est.n_iter_ == 1
    assert est.log_partition_method_ == "closed_form"
    assert est.log_partition_std_ == 0.0
    # score is the mean normalized log-likelihood, like GaussianMixture.score
    assert est.score(X_test) == pytest.approx(mle.logpdf(X_test).mean(), abs=1e-6)
    np.testing.assert_allclose(
        est.unnormalized_score_samples(X_test) - est.log_partition_,
        est.score_samples(X_test),
    )


def test_quadratic_sign_low_energy_at_mode():
    X = np.random.RandomState(0).normal(size=(1000, 2))
    est = ScoreMatchingDensity(energy="quadratic").fit(X)
    e0, e3 = -est.unnormalized_score_samples([[0.0, 0.0], [3.0, 3.0]])
    assert e0 < e3


def test_mlp_reproducible_bit_for_bit():
    X = make_two_moons(300, random_state=0)
    a = ScoreMatchingDensity(random_state=3, **FAST).fit(X)
    b = ScoreMatchingDensity(random_state=3, **FAST).fit(X)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    np.testing.assert_array_equal(
        a.sample(20, random_state=1), b.sample(20, random_state=1)
    )
    assert a.loss_curve_ == b.loss_curve_
    state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    ScoreMatchingDensity(random_state=3, **FAST).fit(X).sample(5, random_state=0)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(np_state, np.random.get_state()[1])


@pytest.mark.slow
def test_mlp_learns_moons_better_than_gaussian():
    X = make_two_moons(1500, random_state=0)
    X_test = make_two_moons(1000, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = ScoreMatchingDensity(
            random_state=0,
            hidden_layer_sizes=(64, 64),
            batch_size=32,
            max_iter=40,
            learning_rate_init=2e-3,
        ).fit(X)
    gauss = ScoreMatchingDensity(energy="quadratic").fit(X)
    assert mlp.score(X_test) > gauss.score(X_test) + 0.2
    assert np.isfinite(mlp.log_partition_)


def test_pipeline_and_gridsearch():
    X = np.random.RandomState(0).normal(size=(300, 2)) * [1.0, 5.0] + 3.0
    pipe = make_pipeline(StandardScaler(), ScoreMatchingDensity(energy="quadratic"))
    pipe.fit(X)
    assert pipe.score_samples(X).shape == (300,)
    grid = GridSearchCV(
        ScoreMatchingDensity(**FAST, base=None, random_state=0),
        {"energy": ["quadratic", "mlp"]},
        cv=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X)
    # Gaussian data: the Gaussian model wins on held-out likelihood against an
    # energy learned from scratch.
    assert grid.best_params_ == {"energy": "quadratic"}


def test_clone_and_joblib_roundtrip(tmp_path):
    X = make_two_moons(200, random_state=0)
    est = ScoreMatchingDensity(random_state=0, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X)
    cloned = clone(est)
    assert not hasattr(cloned, "energy_")
    assert cloned.get_params() == est.get_params()
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.score_samples(X), est.score_samples(X))
    assert all(p.device.type == "cpu" for p in loaded.energy_.parameters())


def test_samples_match_moments(gaussian_data):
    X = gaussian_data
    est = ScoreMatchingDensity(energy="quadratic").fit(X)
    S = est.sample(20000, random_state=0)
    np.testing.assert_allclose(S.mean(0), X.mean(0), atol=0.05)
    np.testing.assert_allclose(
        np.cov(S, rowvar=False), np.cov(X, rowvar=False), atol=0.08
    )


@pytest.mark.slow
def test_mala_samples_of_mlp_match_data_moments():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(2000, 2)) @ np.array([[1.0, 0.5], [0.0, 0.7]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = ScoreMatchingDensity(
            random_state=0, max_iter=40, n_sampling_steps=300
        ).fit(X)
    S = est.sample(2000, random_state=0)
    np.testing.assert_allclose(S.mean(0), X.mean(0), atol=0.15)
    np.testing.assert_allclose(
        np.cov(S, rowvar=False), np.cov(X, rowvar=False), atol=0.2
    )


def test_sample_validates_n_samples():
    est = ScoreMatchingDensity(energy="quadratic").fit(
        np.random.RandomState(0).normal(size=(50, 2))
    )
    with pytest.raises(ValueError, match="n_samples"):
        est.sample(0)
    assert est.sample().shape == (1, 2)


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 1.0]]), "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 1.0]]), "infinity"),
        (np.array([0.0, 1.0, 2.0]), "Expected 2D array"),
        (np.empty((0, 2)), "0 sample"),
        (np.array([["a", "b"], ["c", "d"]], dtype=object), "could not convert"),
        (np.array([[1.0, 2.0]]), "1 sample"),
    ],
)
def test_bad_input_is_a_value_error(X, match):
    with pytest.raises(ValueError, match=match):
        ScoreMatchingDensity(energy="quadratic").fit(X)


def test_sparse_input_is_sklearns_type_error():
    import scipy.sparse as sp

    with pytest.raises(TypeError, match="Sparse"):
        ScoreMatchingDensity().fit(sp.random(20, 3, density=0.5, format="csr"))


def test_wrong_n_features_at_score():
    est = ScoreMatchingDensity(energy="quadratic").fit(
        np.random.RandomState(0).normal(size=(50, 3))
    )
    with pytest.raises(
        ValueError, match="X has 2 features, but ScoreMatchingDensity is expecting 3"
    ):
        est.score_samples(np.zeros((4, 2)))


def test_unfitted():
    with pytest.raises(NotFittedError):
        ScoreMatchingDensity().score_samples(np.zeros((2, 2)))


def test_constant_feature_is_a_clear_error():
    X = np.random.RandomState(0).normal(size=(50, 3))
    X[:, 1] = 4.0
    with pytest.raises(ValueError, match=r"constant feature\(s\) \[1\]"):
        ScoreMatchingDensity(energy="quadratic").fit(X)


def test_divergence_is_a_clear_error_and_leaves_estimator_unfitted():
    X = make_two_moons(200, random_state=0)
    est = ScoreMatchingDensity(
        base=None, learning_rate_init=1e6, max_iter=50, random_state=0
    )
    with pytest.raises(ValueError, match="diverged.*learning_rate_init"):
        est.fit(X)
    assert not hasattr(est, "energy_")
    assert not hasattr(est, "n_features_in_")
    with pytest.raises(NotFittedError):
        est.score_samples(X)


def test_failed_refit_keeps_previous_model():
    X = make_two_moons(200, random_state=0)
    est = ScoreMatchingDensity(energy="quadratic").fit(X)
    before = est.score_samples(X)
    with pytest.raises(ValueError):
        est.fit(np.c_[X, np.full(len(X), np.nan)])
    np.testing.assert_array_equal(est.score_samples(X), before)
    assert est.n_features_in_ == 2


def test_convergence_warning_at_max_iter():
    X = make_two_moons(200, random_state=0)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        ScoreMatchingDensity(
            max_iter=2,
            tol=0.0,
            random_state=0,
            **{k: v for k, v in FAST.items() if k != "max_iter"},
        ).fit(X)


def test_early_stopping_records_validation_curve():
    X = make_two_moons(300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = ScoreMatchingDensity(random_state=0, base=None, **FAST).fit(X)
    assert len(est.validation_loss_curve_) == est.n_iter_ == len(est.loss_curve_)
    no_es = ScoreMatchingDensity(
        random_state=0, base=None, early_stopping=False, **FAST
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        no_es.fit(X)
    assert no_es.validation_loss_curve_ is None


def test_verbose_prints_losses(capsys):
    X = make_two_moons(100, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ScoreMatchingDensity(verbose=True, random_state=0, **FAST).fit(X)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out
    assert "log Z = " in out


def test_warm_start_continues_training():
    X = make_two_moons(300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = ScoreMatchingDensity(
            random_state=0, warm_start=True, early_stopping=False, **FAST
        ).fit(X)
        first = est.loss_curve_[-1]
        est.fit(X)
    # The second fit starts where the first stopped, not from a fresh network.
    assert est.loss_curve_[0] < first + 0.5 * abs(first)


def test_user_module_is_copied_not_trained_in_place():
    X = make_two_moons(200, random_state=0)

    class Energy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
            )

        def forward(self, x):
            return self.net(x).squeeze(-1) + 0.5 * (x**2).sum(-1)

    user = Energy()
    before = {k: v.clone() for k, v in user.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = ScoreMatchingDensity(energy=user, max_iter=5, random_state=0).fit(X)
    for k, v in user.state_dict().items():
        assert torch.equal(v, before[k])
    assert est.energy_ is not user
    assert np.isfinite(est.score(X))


def test_user_module_with_wrong_output_shape():
    X = make_two_moons(50, random_state=0)
    with pytest.raises(ValueError, match=r"shape \(n_samples,\)"):
        ScoreMatchingDensity(energy=torch.nn.Linear(2, 3)).fit(X)


class QuarticEnergy(LinearInParametersEnergy):
    """E(x) = theta_1 x^2 + theta_2 x^4 in one dimension."""

    def __init__(self):
        super().__init__(2)

    def statistics(self, x):
        return torch.cat([x**2, x**4], dim=1)


def test_linear_in_parameters_closed_form_recovers_a_quartic_density():
    # Draws from p ~ exp(-0.125 x^2 - 0.05 x^4) by rejection from N(0, 2^2):
    # the quartic family's score matching solution recovers both coefficients.
    rng = np.random.RandomState(0)
    x = rng.normal(scale=2.0, size=200000)
    keep = rng.rand(x.size) < np.exp(-0.05 * x**4)
    X = x[keep][:20000, None]
    est = ScoreMatchingDensity(energy=QuarticEnergy(), alpha=0.0).fit(X)
    assert est.n_iter_ == 1
    np.testing.assert_allclose(est.coef_, [0.125, 0.05], rtol=0.1, atol=0.01)
    assert est.log_partition_method_ == "quadrature"


def test_linear_in_parameters_fit_that_is_not_normalizable_is_refused():
    # Gaussian data: the x^4 coefficient is zero up to sampling noise; when the
    # noise makes it negative, exp(-E) is not integrable, and fit says so
    # instead of reporting a log Z integrated over a finite box.
    X = np.random.RandomState(0).normal(scale=2.0, size=(20000, 1))
    with pytest.raises(ValueError, match=r"not normalizable.*theta\[1\]"):
        ScoreMatchingDensity(energy=QuarticEnergy(), alpha=0.0).fit(X)


def test_unavailable_device_is_a_value_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    with pytest.raises(ValueError, match="CUDA"):
        ScoreMatchingDensity(device="cuda").fit(
            np.random.RandomState(0).normal(size=(20, 2))
        )


def test_float32_stays_float32():
    X = make_two_moons(200, random_state=0).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = ScoreMatchingDensity(random_state=0, **FAST).fit(X)
    assert all(p.dtype == torch.float32 for p in est.energy_.parameters())
    assert est.score_samples(X).dtype == np.float32
    assert est.sample(3, random_state=0).dtype == np.float32


def test_unpickling_with_another_release_warns(monkeypatch):
    import pickle

    import skebm
    from skebm._base import InconsistentVersionWarning

    X = np.random.RandomState(0).normal(size=(50, 2))
    blob = pickle.dumps(ScoreMatchingDensity(energy="quadratic").fit(X))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        pickle.loads(blob)  # same release: silent
    monkeypatch.setattr(skebm._version, "__version__", "99.0")
    with pytest.warns(InconsistentVersionWarning, match="from skebm version 0.1.0"):
        loaded = pickle.loads(blob)
    assert np.isfinite(loaded.score(X))
