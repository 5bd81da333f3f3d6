"""Data larger than memory: partial_fit, dask-ml's Incremental, memmaps; and
sampling from a base by resampling, without chains where none are needed."""

import warnings

import numpy as np
import pytest
import torch

from skebm import (
    AutoregressiveScoreMatchingDensity,
    EnergyDiscrepancyDensity,
    MCMCLikelihoodBinary,
    PseudoLikelihoodIsing,
    RatioMatchingBinary,
    ScoreMatchingDensity,
    SlicedScoreMatchingDensity,
)
from skebm.datasets import make_two_moons

SMALL = dict(hidden_layer_sizes=(16,), random_state=0)


def _binary(n, seed=0):
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(1).normal(size=(6, 6))
    return (rng.normal(size=(n, 6)) @ mixing > 0).astype(float)


@pytest.mark.parametrize(
    "make, floor",
    [
        (lambda: ScoreMatchingDensity(**SMALL), -1.6),
        (lambda: SlicedScoreMatchingDensity(**SMALL), -1.6),
        (lambda: EnergyDiscrepancyDensity(n_negatives=4, **SMALL), -1.6),
        (lambda: AutoregressiveScoreMatchingDensity(**SMALL), -1.6),
        # A Gaussian: about -1.9 on two moons (its closed form on all rows).
        (lambda: ScoreMatchingDensity(energy="quadratic", random_state=0), -2.1),
    ],
    ids=["sm", "ssm", "ed", "ar", "sm-quadratic"],
)
def test_partial_fit_streams_batches_into_one_model(make, floor):
    X = make_two_moons(1500, random_state=0)
    X_test = make_two_moons(1000, random_state=1)
    est = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for batch in np.array_split(X, 3):
            assert est.partial_fit(batch) is est
        assert est.n_iter_ == 3 and len(est.loss_curve_) == 3
        assert est._stream["n_samples"] == 1500
        score = est.score(X_test)
        assert np.isfinite(est.log_partition_)
    # The base of a corrected model is fitted on the first batch only.
    assert np.isfinite(score) and score > floor  # two moons: about -1.0 at best
    assert est.sample(5, random_state=0).shape == (5, 2)
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(np.zeros((10, 3)))


def test_partial_fit_reaches_the_in_memory_fit():
    X = make_two_moons(4000, random_state=0)
    X_test = make_two_moons(2000, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        memory = EnergyDiscrepancyDensity(n_negatives=4, max_iter=4, **SMALL).fit(X)
        stream = EnergyDiscrepancyDensity(n_negatives=4, **SMALL)
        for _ in range(2):  # two passes over the stream
            for batch in np.array_split(X, 4):
                stream.partial_fit(batch)
        gap = memory.score(X_test) - stream.score(X_test)
    assert gap < 0.1, gap


def test_partial_fit_continues_adam_and_leaves_a_failed_batch_unapplied():
    X = make_two_moons(600, random_state=0)
    est = ScoreMatchingDensity(**SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(X[:300])
        state = est._stream["optimizer"]["state"]
        assert state and all(int(s["step"]) > 0 for s in state.values())
        before = {k: v.clone() for k, v in est.energy_.state_dict().items()}
        with pytest.raises(ValueError):
            est.partial_fit(np.full((10, 2), np.nan))
    after = est.energy_.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert est.n_iter_ == 1


def test_binary_partial_fit_and_the_solver_that_has_none():
    B = _binary(1200)
    for est in (
        RatioMatchingBinary(hidden_layer_sizes=(8,), random_state=0, n_sweeps=5),
        MCMCLikelihoodBinary(hidden_layer_sizes=(8,), n_mcmc_steps=2, random_state=0,
                             n_sweeps=5),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for batch in np.array_split(B, 3):
                est.partial_fit(batch)
            assert np.isfinite(est.score(B))
            assert set(np.unique(est.sample(4, random_state=0))) <= {0.0, 1.0}
    # The pseudo-likelihood solver runs L-BFGS on all rows: no partial_fit.
    assert not hasattr(PseudoLikelihoodIsing(), "partial_fit")


def test_fit_takes_a_memmap_without_copying_it(tmp_path):
    X = make_two_moons(2000, random_state=0).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    est = ScoreMatchingDensity(max_iter=2, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(mm)
    assert np.isfinite(est.score(X[:100]))


@pytest.mark.slow
def test_dask_incremental_trains_on_a_chunked_array():
    dask_array = pytest.importorskip("dask.array")
    wrappers = pytest.importorskip("dask_ml.wrappers")
    distributed = pytest.importorskip("distributed")
    X = make_two_moons(20000, random_state=0)
    dX = dask_array.from_array(X, chunks=(5000, 2))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1,
                                  processes=False) as cluster, \
            distributed.Client(cluster):
        inc = wrappers.Incremental(EnergyDiscrepancyDensity(n_negatives=4, **SMALL))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inc.fit(dX)
            est = inc.estimator_
            assert est.n_iter_ == 4
            assert est.score(make_two_moons(1000, random_state=1)) > -1.6


# ---------------------------------------------------------------- sampling
class _Wave(torch.nn.Module):
    """A correction with a known shape: ``f(x) = a sin(3 x_0)``."""

    def __init__(self, a):
        super().__init__()
        self.a = a

    def forward(self, x):
        return self.a * torch.sin(3 * x[:, 0])


def test_sampling_a_discarded_correction_draws_the_base_exactly():
    X = make_two_moons(1000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = ScoreMatchingDensity(max_iter=2, **SMALL).fit(X)
    est.energy_.corrected = False
    draws = est.sample(5000, random_state=0)
    # The base's own draws, with the same generator: no chain has moved them.
    ref = est.base_.sample(5000)[0]
    assert abs(draws.mean() - ref.mean()) < 0.05
    assert np.allclose(est.score_samples(draws).mean(),
                       est.base_.score_samples(draws).mean())


@pytest.mark.parametrize("a", [0.5, 2.0])
def test_resampled_draws_match_the_corrected_density(a):
    X = make_two_moons(1000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = ScoreMatchingDensity(max_iter=2, **SMALL).fit(X)
    est.energy_.correction = _Wave(a)
    est.energy_.corrected = True
    base = est.energy_.base
    pool = base.sample(1_000_000, generator=torch.Generator().manual_seed(0))
    weights = torch.softmax(-_Wave(a)(pool), 0)
    truth = float((weights * torch.sin(3 * pool[:, 0])).sum())
    draws = est.sample(8000, random_state=1)
    values = np.sin(3 * draws[:, 0])
    stderr = values.std() / np.sqrt(len(values))
    assert abs(values.mean() - truth) < 4 * stderr
    # An uncorrected sample is far off: the check can fail.
    plain = np.sin(3 * est.base_.sample(8000)[0][:, 0])
    assert abs(plain.mean() - truth) > 4 * stderr
    assert len(np.unique(draws, axis=0)) == len(draws)  # no repeated draw left
