"""Model selection on a Dask cluster through joblib's dask backend."""

import warnings

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from skebm import EnergyDiscrepancyDensity, PseudoLikelihoodIsing, ScoreMatchingDensity

distributed = pytest.importorskip("distributed")


def _continuous_data():
    rng = np.random.RandomState(0)
    return np.r_[rng.normal(-2, 0.5, size=(150, 2)), rng.normal(2, 0.5, size=(150, 2))]


def _spin_data():
    # Independent spins with a common field: no couplings to find.
    rng = np.random.RandomState(0)
    return np.where(rng.rand(300, 6) < 0.7, 1.0, -1.0)


SEARCHES = {
    "score_matching": (
        ScoreMatchingDensity(
            hidden_layer_sizes=(16,),
            max_iter=15,
            random_state=0,
            n_ais_chains=16,
            n_ais_steps=10,
        ),
        {"energy": ["quadratic", "mlp"], "learning_rate_init": [1e-3, 1e-2]},
        _continuous_data,
    ),
    "energy_discrepancy": (
        EnergyDiscrepancyDensity(hidden_layer_sizes=(16,), max_iter=10, random_state=0),
        {"noise_scale": [0.3, 1.0], "n_negatives": [4, 8]},
        _continuous_data,
    ),
    "pseudo_likelihood_ising": (
        PseudoLikelihoodIsing(random_state=0),
        {"penalty": ["l1", "l2"], "alpha": [1e-3, 1e-1]},
        _spin_data,
    ),
}


@pytest.mark.slow
def test_gridsearch_on_dask_local_cluster_matches_local_run():
    import joblib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = {
            name: GridSearchCV(est, grid, cv=3, n_jobs=1).fit(make())
            for name, (est, grid, make) in SEARCHES.items()
        }
        # One cluster for every estimator: starting one costs seconds.
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            with distributed.Client(cluster):
                with joblib.parallel_backend("dask"):
                    remote = {
                        name: GridSearchCV(est, grid, cv=3, n_jobs=-1).fit(make())
                        for name, (est, grid, make) in SEARCHES.items()
                    }
    for name in SEARCHES:
        assert remote[name].best_params_ == local[name].best_params_, name
        np.testing.assert_allclose(
            remote[name].cv_results_["mean_test_score"],
            local[name].cv_results_["mean_test_score"],
            err_msg=name,
        )
