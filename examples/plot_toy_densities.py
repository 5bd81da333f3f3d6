"""
============================================================
Energy-based density estimates on toy densities, KDE and GMM
============================================================

Each continuous skebm estimator is fitted with its defaults to 1,000 samples
of three two-dimensional toy densities whose exact log-density is known, next
to scikit-learn's ``KernelDensity`` and ``GaussianMixture`` (bandwidth and
number of components chosen by cross-validated held-out likelihood). Each
skebm estimator corrects a Gaussian mixture it fits first, its *base*
(:ref:`base_densities`); the base alone is shown too. Each panel shows the
fitted density; its title gives the held-out mean log-likelihood per sample,
the number ``GridSearchCV`` would rank the models by. The first column is the
true density, with its own held-out log-likelihood: the best any estimator
can do on average.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity

import skebm
from skebm.datasets import TOY_DENSITIES, toy_log_density
from skebm.metrics import mean_log_likelihood_scorer

DENSITIES = ["two_moons", "eight_gaussians", "rings"]
N_TRAIN, N_TEST = 1000, 2000

# %%
# The estimators
# --------------
# Every estimator in ``skebm.__all__`` that models continuous data: the binary
# ones take a ``binarize`` threshold and are left out.

continuous = [
    getattr(skebm, name)
    for name in skebm.__all__
    if "binarize" not in getattr(skebm, name)().get_params()
]
print([cls.__name__ for cls in continuous])


def make_skebm(cls):
    return cls(random_state=0)


# ``KernelDensity.score`` is a *sum* over samples, skebm's and
# ``GaussianMixture``'s a mean: the scorer compares means for all.
def make_kde(X):
    search = GridSearchCV(
        KernelDensity(),
        {"bandwidth": np.logspace(-1.5, 0, 10)},
        cv=3,
        scoring=mean_log_likelihood_scorer,
    )
    return search.fit(X).best_estimator_


def make_gmm(X):
    search = GridSearchCV(
        GaussianMixture(random_state=0),
        {"n_components": list(range(1, 11)), "covariance_type": ["full", "diag"]},
        cv=3,
    )
    return search.fit(X).best_estimator_


# %%
# Fit and score
# -------------
# ``score_samples`` is the normalized log-density for every model, so the
# mean over held-out points compares them directly. (``KernelDensity.score``
# returns the *sum*; the mean of ``score_samples`` is used for all.)

grid = np.linspace(-4, 4, 120)
xx, yy = np.meshgrid(grid, grid)
points = np.column_stack([xx.ravel(), yy.ravel()])

results = {}
for name in DENSITIES:
    make = TOY_DENSITIES[name][0]
    X_train = make(N_TRAIN, random_state=0)
    X_test = make(N_TEST, random_state=1)
    models = {"KernelDensity": make_kde(X_train), "GaussianMixture": make_gmm(X_train)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for cls in continuous:
            models[cls.__name__] = make_skebm(cls).fit(X_train)
    # The base that the first estimator corrects (each chooses the same way).
    models["its base"] = models[continuous[0].__name__].base_
    panels = [("true density", toy_log_density(name, points),
               toy_log_density(name, X_test).mean())]
    for label, model in models.items():
        held_out = model.score_samples(X_test).mean()
        panels.append((label, model.score_samples(points), held_out))
        print(f"{name:16s} {label:28s} held-out log-likelihood {held_out:7.3f}")
    results[name] = panels

# %%
# Plot
# ----
# Densities are shown on a common color scale per row.

n_cols = len(results[DENSITIES[0]])
fig, axes = plt.subplots(
    len(DENSITIES), n_cols, figsize=(2.4 * n_cols, 2.4 * len(DENSITIES)),
    squeeze=False,
)
for row, name in zip(axes, DENSITIES, strict=True):
    vmax = np.exp(results[name][0][1]).max()
    for ax, (label, log_density, held_out) in zip(row, results[name], strict=True):
        density = np.exp(log_density).reshape(xx.shape)
        ax.pcolormesh(xx, yy, density, cmap="viridis", vmin=0, vmax=vmax,
                      shading="auto")
        ax.set_title(f"{label}\n{held_out:.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(name)
fig.suptitle("Held-out mean log-likelihood per sample under each title")
fig.tight_layout()
plt.show()
