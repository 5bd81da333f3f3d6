"""Training objectives: pure torch functions ``(energy, x, *, generator, ...) -> loss``.

One module an objective. Each returns the per-sample mean of its loss over the
batch ``x`` as a scalar tensor that can be differentiated in the energy's
parameters.
"""

from .composite_score_matching import (
    composite_score_matching_loss,
    conditional_derivatives,
)
from .energy_discrepancy import energy_discrepancy_loss, gaussian_negatives
from .mcmc_likelihood import NegativeChains, mcmc_likelihood_loss
from .pseudo_likelihood import pseudo_log_likelihood
from .ratio_matching import ggis_ratio_matching_loss, ratio_matching_loss
from .score_matching import (
    energy_gradient,
    exact_score_matching_loss,
    solve_linear_score_matching,
)
from .sliced_score_matching import (
    finite_difference_score_matching_loss,
    random_projections,
    sliced_score_matching_loss,
)

__all__ = [
    "composite_score_matching_loss",
    "conditional_derivatives",
    "energy_discrepancy_loss",
    "energy_gradient",
    "exact_score_matching_loss",
    "finite_difference_score_matching_loss",
    "gaussian_negatives",
    "NegativeChains",
    "mcmc_likelihood_loss",
    "ggis_ratio_matching_loss",
    "pseudo_log_likelihood",
    "random_projections",
    "ratio_matching_loss",
    "sliced_score_matching_loss",
    "solve_linear_score_matching",
]
