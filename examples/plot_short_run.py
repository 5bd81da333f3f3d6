"""
==========================================================================
Short-run MCMC: the process that was trained, and the energy's equilibrium
==========================================================================

:class:`~skebm.MCMCLikelihoodDensity` trains an energy by maximum likelihood
with negatives drawn by ``n_mcmc_steps`` Langevin steps. By default the
chains start from fresh noise at every step (``chains="noise"``): training
then makes the *k-step sampling process from noise* reproduce the data, not
the energy's equilibrium ``exp(-E) / Z`` (Nijkamp et al., 2019, 2020). A fit
has two distributions: ``sample()`` draws the trained process by default, and
the equilibrium with ``sampling_init="equilibrium"``; ``score_samples`` is
always the energy's normalized log-density.

First, the solvable case: a Gaussian energy trained with 5 Langevin steps
from uniform noise. Each step is an affine map, so the process's variance is
known in closed form, and the energy the training must find can be solved
for: it is narrower than the data, because 5 steps do not contract the wide
noise enough otherwise. Then a 2-D toy density with the default network:
short-run samples beside the same energy's equilibrium samples.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import brentq
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from skebm import MCMCLikelihoodDensity
from skebm.datasets import make_two_moons

warnings.filterwarnings("ignore", category=ConvergenceWarning)

# %%
# The solvable case
# -----------------
# Data N(1, 1.5^2); noise uniform on the data's range; k = 5 steps of
# ``x <- x - tau E'(x) + sqrt(2 tau) xi`` with tau = 0.2. For the energy
# ``(x - mu)^2 / (2 s^2)`` the step multiplies the deviation by
# ``a = 1 - tau / s^2`` and adds variance ``2 tau``, so after k steps from
# noise of variance ``v0`` the variance is
# ``a^(2k) v0 + 2 tau (1 - a^(2k)) / (1 - a^2)``.
X = np.random.RandomState(0).normal(1.0, 1.5, size=(1000, 1))
k, tau = 5, 0.2
v0 = (X.max() - X.min()) ** 2 / 12


def process_variance(s2):
    a2 = (1 - tau / s2) ** 2
    return a2**k * v0 + 2 * tau * (1 - a2**k) / (1 - a2)


# a = 1 - tau / s^2 in (0, 1): s^2 from just above tau (variance 2 tau) up.
predicted = brentq(lambda s2: process_variance(s2) - X.var(), tau * (1 + 1e-9), 50)
est = MCMCLikelihoodDensity(
    energy="quadratic", noise="uniform", n_mcmc_steps=k, mcmc_step_size=tau,
    batch_size=1000, learning_rate_init=0.05, max_iter=80, alpha=0.0,
    random_state=0,
).fit(X)
est.set_params(warm_start=True, learning_rate_init=0.005, max_iter=40).fit(X)
print(f"data variance                      {X.var():.3f}")
print(f"5-step samples' variance           "
      f"{est.sample(20000, random_state=0).var():.3f}")
print(f"fitted energy's variance           {1 / est.precision_[0, 0]:.3f}")
print(f"predicted by the affine recursion  {predicted:.3f}")

# %%
# Two moons
# ---------
# The default energy (an MLP with a confining quadratic), short runs of
# 20 Langevin steps from the data's Gaussian. The short-run samples cover
# the moons; the energy's equilibrium, which the training never looked at,
# is a different distribution.
Z = StandardScaler().fit_transform(make_two_moons(1000, random_state=0))
est = MCMCLikelihoodDensity(max_iter=40, learning_rate_init=3e-3,
                            random_state=0).fit(Z)
short = est.sample(1000, random_state=0)
equilibrium = est.set_params(sampling_init="equilibrium").sample(
    1000, random_state=0)

grid = np.linspace(-2.5, 2.5, 120)
xx, yy = np.meshgrid(grid, grid)
density = np.exp(est.score_samples(np.c_[xx.ravel(), yy.ravel()])).reshape(xx.shape)

fig, axes = plt.subplots(1, 4, figsize=(13, 3.3), sharex=True, sharey=True)
axes[0].scatter(*Z.T, s=2, color="k")
axes[0].set_title("data")
axes[1].scatter(*short.T, s=2, color="C0")
axes[1].set_title("short-run samples (default)")
axes[2].scatter(*equilibrium.T, s=2, color="C1")
axes[2].set_title('sampling_init="equilibrium"')
axes[3].contourf(xx, yy, density, levels=20)
axes[3].set_title("exp(-E) / Z (score_samples)")
for ax in axes:
    ax.set_xlim(-2.5, 2.5)
    ax.set_ylim(-2.5, 2.5)
    ax.set_aspect("equal")
fig.tight_layout()
plt.show()
