"""Data-parallel training with torch.distributed (skebm.distributed).

Two CPU processes (gloo) are spawned once for the module; each runs every
scenario of ``_SCENARIOS`` on its shard and saves what the tests compare.
"""

import os
import pickle
import socket
import warnings

import numpy as np
import pytest
import torch

from skebm import EnergyDiscrepancyDensity, ScoreMatchingDensity
from skebm.distributed import data_parallel

WORLD_SIZE = 2


def _data(n=400):
    rng = np.random.RandomState(0)
    return np.r_[
        rng.normal(-1.5, 0.5, size=(n // 2, 2)), rng.normal(1.5, 0.7, size=(n // 2, 2))
    ]


def _shards(X, sizes):
    rng = np.random.RandomState(1)
    rows = rng.permutation(len(X))
    bounds = np.cumsum([0, *sizes])
    return [X[np.sort(rows[a:b])] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _score_matching(**params):
    defaults = dict(
        hidden_layer_sizes=(16,), max_iter=5, early_stopping=False, random_state=0
    )
    return ScoreMatchingDensity(**{**defaults, **params})


def _full_batch():
    X = _data()
    return _score_matching(batch_size=200), [X[:200], X[200:]]


def _uneven():
    # 250 and 150 rows in batches of 64: 4 steps on one rank, 3 on the other.
    return _score_matching(batch_size=64, max_iter=3), _shards(_data(), [250, 150])


def _uneven_cross_fit():
    # 40 validation rows in all: the epochs are chosen by cross-fitting on 5
    # folds of each rank's rows (fold trainings of 4 and 2 steps).
    est = _score_matching(batch_size=64, max_iter=2, early_stopping=True)
    return est, _shards(_data(), [250, 150])


def _energy_discrepancy():
    # 120 validation rows in all (69 and 51): one split, epochs chosen by the
    # validation log-likelihood summed over the ranks.
    est = EnergyDiscrepancyDensity(
        hidden_layer_sizes=(16,), max_iter=3, n_negatives=4, batch_size=64,
        validation_fraction=0.3, random_state=0,
    )
    return est, _shards(_data(), [230, 170])


def _unseeded():
    return _score_matching(random_state=None), [_data()[:200], _data()[200:]]


def _closed_form():
    # A quadratic energy is solved in closed form on each rank's rows.
    return _score_matching(energy="quadratic"), [_data()[:200], _data()[200:]]


_SCENARIOS = {
    "full_batch": _full_batch,
    "uneven": _uneven,
    "uneven_cross_fit": _uneven_cross_fit,
    "energy_discrepancy": _energy_discrepancy,
    "unseeded": _unseeded,
    "closed_form": _closed_form,
}


def _outcome(est, X_local, X_eval):
    """What a rank's fit left: its numbers, or the error it raised."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with data_parallel():
                est.fit(X_local)
    except Exception as exc:  # the tests check the error
        return {"error": type(exc).__name__, "message": str(exc)}
    return {
        "state": {k: v.numpy().copy() for k, v in est.energy_.state_dict().items()},
        "score_samples": est.score_samples(X_eval),
        "log_partition": est.log_partition_,
        "loss_curve": list(est.loss_curve_),
        "n_iter": est.n_iter_,
    }


def _worker(rank, init_method, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE
    )
    try:
        X_eval = _data()[::7]
        results = {}
        for name, make in _SCENARIOS.items():
            est, shards = make()
            results[name] = _outcome(est, shards[rank], X_eval)
        with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as f:
            pickle.dump(results, f)
    finally:
        torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Every scenario's outcome on rank 0 and on rank 1."""
    out_dir = tmp_path_factory.mktemp("data_parallel")
    init_method = f"tcp://127.0.0.1:{_free_port()}"
    torch.multiprocessing.spawn(
        _worker, args=(init_method, str(out_dir)), nprocs=WORLD_SIZE, join=True
    )
    outcomes = []
    for rank in range(WORLD_SIZE):
        with open(out_dir / f"rank{rank}.pkl", "rb") as f:
            outcomes.append(pickle.load(f))
    return outcomes


def _assert_ranks_agree(ranks, name):
    first, second = (outcome[name] for outcome in ranks)
    assert "error" not in first, first
    assert "error" not in second, second
    for key in first["state"]:
        np.testing.assert_array_equal(first["state"][key], second["state"][key])
    np.testing.assert_array_equal(first["score_samples"], second["score_samples"])
    assert first["log_partition"] == second["log_partition"]
    assert first["loss_curve"] == second["loss_curve"]
    return first


def test_full_batch_matches_one_process(ranks):
    parallel = _assert_ranks_agree(ranks, "full_batch")
    X = _data()
    one = _score_matching(batch_size=len(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one.fit(X)
    state = one.energy_.state_dict()
    assert state.keys() == parallel["state"].keys()
    for key, value in state.items():
        # The correction trains in float32 (the base is float64): two halves'
        # mean gradient and the whole batch's differ in the last bits, which
        # Adam's normalized steps carry into the weights (about 1e-6 seen).
        np.testing.assert_allclose(
            parallel["state"][key], value.numpy(), rtol=1e-6, atol=5e-6, err_msg=key
        )
    np.testing.assert_allclose(
        parallel["score_samples"], one.score_samples(X[::7]), rtol=1e-6, atol=1e-6
    )
    assert parallel["log_partition"] == pytest.approx(one.log_partition_, abs=1e-6)
    np.testing.assert_allclose(parallel["loss_curve"], one.loss_curve_, rtol=1e-5)
    assert parallel["n_iter"] == one.n_iter_ == 5


def test_uneven_shards_agree(ranks):
    # No deadlock (the fixture returned), and one model on both ranks.
    outcome = _assert_ranks_agree(ranks, "uneven")
    assert outcome["n_iter"] == 3
    assert np.isfinite(outcome["score_samples"]).all()


def test_uneven_shards_cross_fit_agree(ranks):
    outcome = _assert_ranks_agree(ranks, "uneven_cross_fit")
    assert np.isfinite(outcome["score_samples"]).all()


def test_energy_discrepancy_ranks_agree(ranks):
    outcome = _assert_ranks_agree(ranks, "energy_discrepancy")
    assert outcome["n_iter"] == 3
    assert np.isfinite(outcome["score_samples"]).all()


def test_random_state_none_is_a_clear_error(ranks):
    for outcome in ranks:
        assert outcome["unseeded"]["error"] == "ValueError"
        assert "random_state" in outcome["unseeded"]["message"]


def test_closed_form_fit_is_refused(ranks):
    for outcome in ranks:
        assert outcome["closed_form"]["error"] == "RuntimeError"
        assert "closed form" in outcome["closed_form"]["message"]


def test_without_process_group_is_a_clear_error():
    assert not torch.distributed.is_initialized()
    with pytest.raises(ValueError, match="init_process_group"):
        with data_parallel():
            pass  # pragma: no cover


def test_outside_the_context_nothing_is_gathered():
    from skebm.distributed import gathered, total_count

    X = _data()
    assert gathered(X) is X
    assert total_count(7) == 7


def _fit_shard_on_dask(rank, world_size, address, X_local):
    """A Dask task: join the process group at ``address``, fit this shard."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://{address}", rank=rank, world_size=world_size
    )
    try:
        est = _score_matching(batch_size=len(X_local))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with data_parallel():
                est.fit(X_local)
        return est
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_dask_local_cluster_matches_one_process():
    distributed = pytest.importorskip("distributed")
    from urllib.parse import urlparse

    X = _data()
    with distributed.LocalCluster(
        n_workers=WORLD_SIZE, threads_per_worker=1, processes=True,
        dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as client:
        workers = sorted(client.scheduler_info()["workers"])
        # Rank 0's worker serves the process group's TCP store.
        host = urlparse(workers[0]).hostname
        port = client.submit(_free_port, workers=[workers[0]]).result()
        futures = [
            client.submit(
                _fit_shard_on_dask, rank, WORLD_SIZE, f"{host}:{port}", shard,
                workers=[worker], pure=False,
            )
            for rank, (worker, shard) in enumerate(
                zip(workers, [X[:200], X[200:]], strict=True)
            )
        ]
        first, second = client.gather(futures)
    one = _score_matching(batch_size=len(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one.fit(X)
    np.testing.assert_array_equal(
        first.score_samples(X[::7]), second.score_samples(X[::7])
    )
    np.testing.assert_allclose(
        first.score_samples(X[::7]), one.score_samples(X[::7]), atol=1e-6
    )
