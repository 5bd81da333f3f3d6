"""
============================================================
Energy-based density estimates on toy densities, KDE and GMM
============================================================

Each continuous skebm estimator is fitted with its defaults to 1,000 samples
of three two-dimensional toy densities whose exact log-density is known, next
to scikit-learn's ``KernelDensity`` and ``GaussianMixture`` (bandwidth, and
number of components and covariance type, chosen by ``GridSearchCV``). Each
skebm estimator corrects a density it fits first, its *base*
(:ref:`base_densities`): a Gaussian mixture or a kernel density chosen by
cross-validation. Each panel shows the fitted density; its title gives the
held-out mean log-likelihood per sample (the number ``GridSearchCV`` would
rank the models by, the mean of ``score_samples`` for every model), and for
the skebm estimators what the energy added over their own base and which
base that is: ``+0.00`` means the correction was discarded and the model
*is* its base. The first panel is the true density, with its own held-out
log-likelihood: the best any estimator can do on average.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity

import skebm
from skebm._mixture_base import describe_base
from skebm.datasets import TOY_DENSITIES, toy_log_density
from skebm.exceptions import CorrectionDiscardedWarning
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
SHORT = {cls.__name__: cls.__name__.replace("Density", "") for cls in continuous}


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
    panels = [
        ("true density", toy_log_density(name, points),
         f"{toy_log_density(name, X_test).mean():.2f}")
    ]
    for label, model in (
        ("KernelDensity (CV)", make_kde(X_train)),
        ("GaussianMixture (CV)", make_gmm(X_train)),
    ):
        held_out = model.score_samples(X_test).mean()
        panels.append((label, model.score_samples(points), f"{held_out:.2f}"))
    for cls in continuous:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", CorrectionDiscardedWarning)
            model = make_skebm(cls).fit(X_train)
        held_out = model.score_samples(X_test).mean()
        text = f"{held_out:.2f}"
        base = getattr(model, "base_", None)
        if base is not None:
            added = held_out - base.score_samples(X_test).mean()
            text += f" ({added:+.2f} over its base,\n{describe_base(base)})"
        panels.append((SHORT[cls.__name__], model.score_samples(points), text))
    for label, _, text in panels:
        print(f"{name:16s} {label:28s} held-out log-likelihood {text}")
    results[name] = panels

# %%
# Plot
# ----
# Densities are shown on a common color scale per row.

# One figure per density, four panels a row, so each stays readable at
# page width.
for name in DENSITIES:
    panels = results[name]
    n_cols = 4
    n_rows = -(-len(panels) // n_cols)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(10, 2.9 * n_rows), squeeze=False
    )
    vmax = np.exp(panels[0][1]).max()
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    for ax, (label, log_density, text) in zip(axes.ravel(), panels):
        density = np.exp(log_density).reshape(xx.shape)
        ax.pcolormesh(xx, yy, density, cmap="viridis", vmin=0, vmax=vmax,
                      shading="auto")
        ax.set_title(f"{label}\n{text}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{name}: held-out mean log-likelihood per sample under each title")
    fig.tight_layout()
plt.show()
