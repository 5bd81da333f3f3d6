"""skebm: energy-based density estimation for scikit-learn."""

from ._autoregressive import AutoregressiveScoreMatchingDensity
from ._binary import RatioMatchingBinary
from ._energy_discrepancy import EnergyDiscrepancyDensity
from ._ising import PseudoLikelihoodIsing
from ._mcmc_likelihood import MCMCLikelihoodBinary, MCMCLikelihoodDensity
from ._score_matching import ScoreMatchingDensity, SlicedScoreMatchingDensity
from ._version import __version__ as __version__

__all__ = [
    "AutoregressiveScoreMatchingDensity",
    "EnergyDiscrepancyDensity",
    "MCMCLikelihoodBinary",
    "MCMCLikelihoodDensity",
    "PseudoLikelihoodIsing",
    "RatioMatchingBinary",
    "ScoreMatchingDensity",
    "SlicedScoreMatchingDensity",
]
