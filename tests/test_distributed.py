"""Model selection on a Dask cluster through joblib's dask backend."""

import warnings

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from skebm import ScoreMatchingDensity

distributed = pytest.importorskip("distributed")


@pytest.mark.slow
def test_gridsearch_on_dask_local_cluster_matches_local_run():
    import joblib

    rng = np.random.RandomState(0)
    X = np.r_[rng.normal(-2, 0.5, size=(150, 2)), rng.normal(2, 0.5, size=(150, 2))]
    est = ScoreMatchingDensity(
        hidden_layer_sizes=(16,),
        max_iter=15,
        random_state=0,
        n_ais_chains=16,
        n_ais_steps=10,
    )
    grid = {"energy": ["quadratic", "mlp"], "learning_rate_init": [1e-3, 1e-2]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = GridSearchCV(est, grid, cv=3, n_jobs=1).fit(X)
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            with distributed.Client(cluster):
                with joblib.parallel_backend("dask"):
                    remote = GridSearchCV(est, grid, cv=3, n_jobs=-1).fit(X)
    assert remote.best_params_ == local.best_params_
    np.testing.assert_allclose(
        remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )
