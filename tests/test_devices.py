"""Devices and precision: "auto", clear errors, GPU-fitted models that load on CPU."""

import io
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
import torch

from skebm import (
    EnergyDiscrepancyDensity,
    MCMCLikelihoodBinary,
    MCMCLikelihoodDensity,
    PseudoLikelihoodIsing,
    RatioMatchingBinary,
    ScoreMatchingDensity,
    SlicedScoreMatchingDensity,
)
from skebm.datasets import make_two_moons

FAST = dict(
    hidden_layer_sizes=(8,),
    max_iter=3,
    n_ais_chains=16,
    n_ais_steps=10,
    n_sampling_steps=5,
    random_state=0,
)


def test_auto_device_fits_where_torch_runs():
    X = make_two_moons(100, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = ScoreMatchingDensity(device="auto", **FAST).fit(X)
    assert np.isfinite(est.score(X))
    assert all(p.device.type == "cpu" for p in est.energy_.parameters())


@pytest.mark.parametrize("device", ["tpu", "not-a-device", "cuda:99"])
def test_invalid_device_is_a_value_error(device):
    with pytest.raises(ValueError, match="device"):
        ScoreMatchingDensity(device=device, **FAST).fit(
            make_two_moons(50, random_state=0)
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch has no CUDA device")
def test_gpu_fitted_model_loads_and_scores_on_cpu_only_process(tmp_path):
    X = make_two_moons(300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = ScoreMatchingDensity(device="cuda", **FAST).fit(X)
    assert all(p.device.type == "cpu" for p in est.energy_.parameters())
    path = tmp_path / "gpu_model.joblib"
    joblib.dump(est, path)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "expected.npy", est.score_samples(X))
    code = (
        "import joblib, numpy as np, torch; "
        "assert not torch.cuda.is_available(); "
        f"est = joblib.load(r'{path}'); X = np.load(r'{tmp_path / 'X.npy'}'); "
        f"np.testing.assert_allclose(est.score_samples(X), "
        f"np.load(r'{tmp_path / 'expected.npy'}'), rtol=1e-6, atol=1e-8); print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"CUDA_VISIBLE_DEVICES": "", "PATH": ""},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch has no CUDA device")
def test_cuda_and_cpu_fits_agree_for_closed_form():
    X = np.random.RandomState(0).normal(size=(500, 3))
    cpu = ScoreMatchingDensity(energy="quadratic").fit(X)
    gpu = ScoreMatchingDensity(energy="quadratic", device="cuda").fit(X)
    np.testing.assert_allclose(gpu.score_samples(X), cpu.score_samples(X), rtol=1e-10)


# Every estimator, small: each must keep float32 end to end and fit on a GPU.
EVERY_ESTIMATOR = {
    "score_matching": lambda: ScoreMatchingDensity(**FAST),
    "sliced_score_matching": lambda: SlicedScoreMatchingDensity(**FAST),
    "energy_discrepancy": lambda: EnergyDiscrepancyDensity(n_negatives=4, **FAST),
    # The binary estimators threshold the moons at binarize=0.0.
    "ratio_matching": lambda: RatioMatchingBinary(
        hidden_layer_sizes=(8,), max_iter=3, n_ais_chains=16, n_sweeps=5,
        binarize=0.0, random_state=0
    ),
    "pseudo_likelihood_ising": lambda: PseudoLikelihoodIsing(
        n_ais_chains=16, n_sweeps=5, binarize=0.0, random_state=0
    ),
    "mcmc_likelihood": lambda: MCMCLikelihoodDensity(n_mcmc_steps=3, **FAST),
    "mcmc_likelihood_persistent_mala": lambda: MCMCLikelihoodDensity(
        chains="persistent", sampler="mala", n_mcmc_steps=3, **FAST
    ),
    "mcmc_likelihood_binary": lambda: MCMCLikelihoodBinary(
        hidden_layer_sizes=(8,), n_mcmc_steps=2, max_iter=3, n_ais_chains=16,
        n_sweeps=5, binarize=0.0, random_state=0
    ),
}


def _fit_quietly(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X)


@pytest.mark.parametrize("name", sorted(EVERY_ESTIMATOR))
def test_float32_stays_float32_for_every_estimator(name):
    X = make_two_moons(200, random_state=0).astype(np.float32)
    est = _fit_quietly(EVERY_ESTIMATOR[name](), X)
    assert all(p.dtype == torch.float32 for p in est.energy_.parameters())
    assert est.score_samples(X).dtype == np.float32
    assert est.sample(3, random_state=0).dtype == np.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch has no CUDA device")
@pytest.mark.parametrize("name", sorted(EVERY_ESTIMATOR))
def test_every_estimator_fits_on_gpu_and_scores_on_cpu(name):
    X = make_two_moons(300, random_state=0)
    est = _fit_quietly(EVERY_ESTIMATOR[name]().set_params(device="cuda"), X)
    assert all(p.device.type == "cpu" for p in est.energy_.parameters())
    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    buffer.seek(0)
    restored = joblib.load(buffer)
    np.testing.assert_allclose(restored.score_samples(X), est.score_samples(X))
