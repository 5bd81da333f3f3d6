"""skebm: energy-based density estimation for scikit-learn."""

from ._binary import RatioMatchingBinary
from ._ising import PseudoLikelihoodIsing
from ._score_matching import ScoreMatchingDensity, SlicedScoreMatchingDensity

__version__ = "0.1.0"

__all__ = [
    "PseudoLikelihoodIsing",
    "RatioMatchingBinary",
    "ScoreMatchingDensity",
    "SlicedScoreMatchingDensity",
]
