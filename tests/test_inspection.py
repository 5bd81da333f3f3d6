"""Display objects (skebm.inspection) and data-space sampling (skebm.utils)."""

import sys

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KernelDensity
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skebm import ScoreMatchingDensity, SlicedScoreMatchingDensity
from skebm.datasets import make_two_moons
from skebm.inspection import DensityDisplay, MarginalsDisplay
from skebm.utils import sample_pipeline

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")

LOC, SCALE = np.array([5.0, -20.0, 0.0]), np.array([10.0, 0.5, 3.0])


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _data(n_features=2, n=2000):
    rng = np.random.RandomState(0)
    return LOC[:n_features] + SCALE[:n_features] * rng.normal(size=(n, n_features))


def _pipeline(X):
    quadratic = ScoreMatchingDensity(energy="quadratic")
    return make_pipeline(StandardScaler(), quadratic).fit(X)


# -- data-space sampling ------------------------------------------------------


def test_sample_pipeline_returns_samples_in_the_data_space():
    X = _data(3)
    pipe = _pipeline(X)
    S = sample_pipeline(pipe, 4000, random_state=0)
    assert S.shape == (4000, 3)
    assert np.all(np.abs(S.mean(axis=0) - X.mean(axis=0)) < 0.1 * SCALE)
    np.testing.assert_allclose(S.std(axis=0), X.std(axis=0), rtol=0.05)
    # the final step alone draws standardized points: the helper is needed
    Z = pipe[-1].sample(4000, random_state=0)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, rtol=0.05)
    np.testing.assert_allclose(pipe[0].inverse_transform(Z), S)
    np.testing.assert_array_equal(S, sample_pipeline(pipe, 4000, random_state=0))


def test_sample_pipeline_on_a_plain_estimator_and_sklearn_densities():
    X = _data(2)
    est = ScoreMatchingDensity(energy="quadratic").fit(X)
    np.testing.assert_array_equal(
        sample_pipeline(est, 10, random_state=0), est.sample(10, random_state=0)
    )
    # GaussianMixture.sample returns (X, labels) and takes no random_state
    gmm = make_pipeline(StandardScaler(), GaussianMixture(random_state=0)).fit(X)
    assert sample_pipeline(gmm, 7).shape == (7, 2)
    kde = make_pipeline(StandardScaler(), KernelDensity()).fit(X)
    assert sample_pipeline(kde, 7, random_state=0).shape == (7, 2)


def test_sample_pipeline_names_what_it_cannot_invert():
    X = _data(2)

    class NoInverse(StandardScaler):
        inverse_transform = property()  # hasattr() is False

        def __getattribute__(self, name):
            if name == "inverse_transform":
                raise AttributeError(name)
            return super().__getattribute__(name)

    pipe = make_pipeline(NoInverse(), ScoreMatchingDensity(energy="quadratic"))
    with pytest.raises(AttributeError, match="'noinverse'.*no inverse_transform"):
        sample_pipeline(pipe.fit(X), 5)
    with pytest.raises(AttributeError, match="no sample method"):
        sample_pipeline(make_pipeline(StandardScaler()).fit(X), 5)


# -- DensityDisplay -----------------------------------------------------------


def test_density_display_draws_and_accepts_an_ax():
    X = make_two_moons(400, random_state=0)
    est = ScoreMatchingDensity(energy="quadratic").fit(X)
    _, ax = plt.subplots()
    display = DensityDisplay.from_estimator(
        est, X, ax=ax, grid_resolution=30, n_samples=300, random_state=0
    )
    assert display.ax_ is ax and display.figure_ is ax.figure
    assert len(display.contour_.allsegs) > 2  # several filled levels
    assert display.data_.get_offsets().shape == (400, 2)
    assert display.samples_.get_offsets().shape == (300, 2)
    assert ax.get_title() == "ScoreMatchingDensity"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["data", "samples"]
    np.testing.assert_allclose(
        display.log_density.ravel(),
        est.score_samples(np.c_[display.xx0.ravel(), display.xx1.ravel()]),
    )
    # plot() redraws on new axes, here on the log scale without points
    _, other = plt.subplots()
    display.plot(ax=other, log_scale=True, levels=5)
    assert display.ax_ is other
    none = DensityDisplay.from_estimator(est, X, n_samples=0, grid_resolution=20)
    assert none.samples_ is None


def test_density_display_on_a_pipeline_is_a_density_in_the_data_space():
    X = _data(2)  # scales 10 and 0.5: the scaler's Jacobian is -log(5)
    pipe = _pipeline(X)
    display = DensityDisplay.from_estimator(
        pipe, X, grid_resolution=120, margin=0.3, random_state=0
    )
    cell = np.ptp(display.xx0) * np.ptp(display.xx1) / 119**2
    mass = np.exp(display.log_density).sum() * cell
    assert mass == pytest.approx(1.0, abs=0.02)  # without the Jacobian: 5
    samples = display.samples_.get_offsets()
    assert np.all(np.abs(np.mean(samples, axis=0) - LOC[:2]) < 0.1 * SCALE[:2])
    assert display.ax_.get_title() == "ScoreMatchingDensity"


def test_density_display_refuses_other_dimensions():
    X = _data(3)
    est = ScoreMatchingDensity(energy="quadratic").fit(X)
    with pytest.raises(ValueError, match="2 features; X has 3.*MarginalsDisplay"):
        DensityDisplay.from_estimator(est, X)
    pca = make_pipeline(PCA(1), ScoreMatchingDensity(energy="quadratic")).fit(X)
    with pytest.raises(ValueError, match="map 3 features to 1"):
        from skebm.inspection import _data_space_log_density

        _data_space_log_density(pca, X)


# -- MarginalsDisplay ---------------------------------------------------------


def test_marginals_display_draws_each_feature_of_a_pipeline():
    X = _data(3)
    pipe = _pipeline(X)
    display = MarginalsDisplay.from_estimator(pipe, X, random_state=0, bins=20)
    assert display.axes_.shape == (3,)
    assert display.samples.shape == (2000, 3)
    pairs = zip(display.axes_, display.bin_edges_, strict=True)
    for j, (ax, edges) in enumerate(pairs):
        assert ax.get_title() == f"x{j}"
        assert len(ax.patches) >= 20  # the data's bars and the samples' outline
        # the samples are in the data's space: bins span the data's range
        assert edges[0] < LOC[j] < edges[-1]
        assert edges[-1] - edges[0] == pytest.approx(7 * SCALE[j], rel=0.3)


def test_marginals_display_accepts_axes_or_one_ax_and_features():
    X = _data(3)
    est = ScoreMatchingDensity(energy="quadratic").fit(X)
    fig, axes = plt.subplots(1, 2)
    display = MarginalsDisplay.from_estimator(
        est, X, features=[2, 0], ax=axes, random_state=0, feature_names=list("abc")
    )
    assert list(display.axes_) == list(axes)
    assert [ax.get_title() for ax in axes] == ["c", "a"]
    with pytest.raises(ValueError, match="Expected ax to have 3 axes, got 2"):
        MarginalsDisplay.from_estimator(est, X, ax=axes)
    fig, ax = plt.subplots()
    display = MarginalsDisplay.from_estimator(est, X, ax=ax, n_cols=2)
    assert len(display.axes_) == 3 and display.figure_ is fig
    assert not ax.axison


@pytest.mark.slow
def test_displays_on_a_trained_energy_in_a_pipeline():
    X = make_two_moons(600, random_state=0) * [3.0, 1.0] + [10.0, 0.0]
    est = SlicedScoreMatchingDensity(max_iter=5, random_state=0)
    pipe = make_pipeline(StandardScaler(), est).fit(X)
    display = DensityDisplay.from_estimator(pipe, X, grid_resolution=40)
    assert np.isfinite(display.log_density).all()
    samples = display.samples_.get_offsets()
    np.testing.assert_allclose(np.mean(samples, axis=0), X.mean(axis=0), atol=0.3)
    MarginalsDisplay.from_estimator(pipe, X, random_state=0)


def test_a_clear_import_error_without_matplotlib(monkeypatch):
    X = _data(2, n=200)
    est = ScoreMatchingDensity(energy="quadratic").fit(X)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"requires matplotlib.*skebm\[plot\]"):
        DensityDisplay.from_estimator(est, X)
    with pytest.raises(ImportError, match="requires matplotlib"):
        MarginalsDisplay.from_estimator(est, X)
