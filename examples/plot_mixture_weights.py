"""
=====================================================================
Mode weights: energy discrepancy against score matching
=====================================================================

Score matching only looks at the score ``-dE/dx`` of the density, a local
quantity: between two well-separated modes the data say almost nothing about
it, and the fit is free to put any share of the mass in either mode. This is
the "nearsightedness" of score-based objectives, and their statistical
efficiency is tied to how well the target mixes (its isoperimetric
constant), which is poor for separated modes.

Energy discrepancy contrasts the energy of each data point with the energies
of Gaussian perturbations of it. With a ``noise_scale`` of the order of the
gap between the modes, the contrast reaches across it and the relative
weights are learned.

The data are ``0.2 N(-3, 0.5^2) + 0.8 N(3, 0.5^2)``, standardized in a
pipeline. The printed masses are the share of the fitted density left of 0
(the truth is 0.2). The methods are shown on their own (``base=None``, the
energy learned from scratch, as in their papers). With the default base
density, a Gaussian mixture fitted first carries the mode weights and both
estimators get them right: the last line checks it.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skebm import EnergyDiscrepancyDensity, ScoreMatchingDensity

warnings.filterwarnings("ignore", category=ConvergenceWarning)

rng = np.random.RandomState(0)
n_samples = 2000
left = rng.rand(n_samples) < 0.2
X = (np.where(left, -3.0, 3.0) + 0.5 * rng.randn(n_samples))[:, None]

grid = np.linspace(-6, 6, 1201)[:, None]
step = grid[1, 0] - grid[0, 0]


def true_density(x):
    def normal(mean):
        return np.exp(-0.5 * ((x - mean) / 0.5) ** 2) / (0.5 * np.sqrt(2 * np.pi))

    return 0.2 * normal(-3.0) + 0.8 * normal(3.0)


# Energies learned from scratch train at a smaller step than corrections.
scratch = dict(base=None, learning_rate_init=2e-3, random_state=0)
estimators = {
    "score matching": ScoreMatchingDensity(**scratch),
    "energy discrepancy": EnergyDiscrepancyDensity(noise_scale=1.0, **scratch),
}

fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
for ax, (name, estimator) in zip(axes, estimators.items(), strict=True):
    model = make_pipeline(StandardScaler(), estimator).fit(X)
    # The scaler maps x to (x - mean) / scale: divide by the scale to get the
    # density of x from the density of the standardized data.
    density = np.exp(model.score_samples(grid)) / model[0].scale_[0]
    left_mass = density[grid[:, 0] < 0].sum() * step
    print(f"{name:>20}: mass left of 0 = {left_mass:.3f} (truth 0.200)")
    ax.hist(X[:, 0], bins=80, density=True, color="0.85", label="data")
    ax.plot(grid[:, 0], true_density(grid[:, 0]), "k--", lw=1, label="truth")
    ax.plot(grid[:, 0], density, lw=2, label=name)
    ax.set_title(f"{name}: left mass {left_mass:.2f} (truth 0.20)")
    ax.set_xlabel("x")
    ax.legend(loc="upper left")
axes[0].set_ylabel("density")
fig.tight_layout()
plt.show()

# %%
# With the default base density
# -----------------------------
model = make_pipeline(StandardScaler(), ScoreMatchingDensity(random_state=0)).fit(X)
density = np.exp(model.score_samples(grid)) / model[0].scale_[0]
print(
    "score matching with a base: mass left of 0 = "
    f"{density[grid[:, 0] < 0].sum() * step:.3f} (truth 0.200)"
)
