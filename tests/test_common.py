"""scikit-learn's common estimator checks on every public estimator."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skebm import (
    AutoregressiveScoreMatchingDensity,
    EnergyDiscrepancyDensity,
    PseudoLikelihoodIsing,
    RatioMatchingBinary,
    ScoreMatchingDensity,
    SlicedScoreMatchingDensity,
)

# Small networks and few epochs: the checks are about the API, not accuracy.
FAST = dict(
    hidden_layer_sizes=(8,),
    max_iter=3,
    n_ais_chains=32,
    n_ais_steps=20,
    n_sampling_steps=10,
)

# The autoregressive estimator has no AIS or MCMC parameters.
AR_FAST = dict(hidden_layer_sizes=(8,), max_iter=3)

# The binary estimators require binary input by default (binarize=None); with
# a threshold at 0 (as BernoulliNB) the checks' continuous data is valid input.
BINARY_FAST = dict(binarize=0.0, n_ais_chains=32, n_ais_steps=10, n_sweeps=5)

ESTIMATORS = [
    RatioMatchingBinary(hidden_layer_sizes=(8,), max_iter=3, **BINARY_FAST),
    RatioMatchingBinary(
        energy="boltzmann", method="ggis", n_flip_samples=2, max_iter=3, **BINARY_FAST
    ),
    PseudoLikelihoodIsing(**BINARY_FAST),
    PseudoLikelihoodIsing(penalty="l1", alpha=0.05, refit=True, **BINARY_FAST),
    ScoreMatchingDensity(**FAST),
    ScoreMatchingDensity(energy="quadratic"),
    ScoreMatchingDensity(domain="nonnegative", **FAST),
    SlicedScoreMatchingDensity(method="sliced", **FAST),
    SlicedScoreMatchingDensity(method="sliced_vr", projection="gaussian", **FAST),
    SlicedScoreMatchingDensity(method="finite_difference", n_projections=2, **FAST),
    EnergyDiscrepancyDensity(n_negatives=4, **FAST),
    EnergyDiscrepancyDensity(energy="quadratic", n_negatives=4, max_iter=5),
    AutoregressiveScoreMatchingDensity(**AR_FAST),
    AutoregressiveScoreMatchingDensity(
        domain="nonnegative", order="reversed", base="gaussian", **AR_FAST
    ),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
