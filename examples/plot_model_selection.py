"""
=====================================================
Cross-validated model selection with ``GridSearchCV``
=====================================================

Every skebm estimator's ``score`` is the mean *normalized* held-out
log-likelihood per sample: the unnormalized ``-E(x)`` minus the estimated
``log Z``. So :class:`~sklearn.model_selection.GridSearchCV`, called without
``scoring``, compares the candidates by the same number it would use for
:class:`~sklearn.neighbors.KernelDensity` or
:class:`~sklearn.mixture.GaussianMixture`, and it can choose between energies
and network sizes as well as regularization.

Here a :class:`~skebm.ScoreMatchingDensity` inside a
:class:`~sklearn.pipeline.Pipeline` with a
:class:`~sklearn.preprocessing.StandardScaler` is tuned on the two-moons toy
density: a Gaussian energy (solved in closed form) against neural energies of
two sizes, learned from scratch (``base=None``) or as corrections of a
Gaussian mixture fitted first (the default ``base="gmm"``, see
:ref:`base_densities`). Networks are trained for at most 25 epochs so that
the example runs in well under a minute.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skebm import ScoreMatchingDensity
from skebm.datasets import make_two_moons, toy_log_density
from skebm.metrics import mean_log_likelihood_scorer

X_train = make_two_moons(500, random_state=0)
X_test = make_two_moons(2000, random_state=1)

# %%
# The search
# ----------
# The parameter grid is a list of dicts, so that ``hidden_layer_sizes`` and
# ``base`` are only varied for the neural energy.

model = make_pipeline(
    StandardScaler(),
    ScoreMatchingDensity(max_iter=25, random_state=0),
)
step = "scorematchingdensity"  # the name make_pipeline gives the last step
param_grid = [
    {f"{step}__energy": ["quadratic"]},
    {
        f"{step}__energy": ["mlp"],
        f"{step}__hidden_layer_sizes": [(16, 16), (64, 64)],
        f"{step}__base": [None, "gmm"],
    },
]
search = GridSearchCV(model, param_grid, cv=3)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    search.fit(X_train)

labels = []
for params in search.cv_results_["params"]:
    energy = params[f"{step}__energy"]
    if energy == "quadratic":
        labels.append("quadratic")
    else:
        sizes = params[f"{step}__hidden_layer_sizes"]
        labels.append(f"mlp {sizes}\nbase={params[f'{step}__base']}")
mean = search.cv_results_["mean_test_score"]
std = search.cv_results_["std_test_score"]
for label, m, s in zip(labels, mean, std, strict=True):
    print(f"{label.replace(chr(10), ' '):32s} CV log-likelihood {m:7.3f} +- {s:.3f}")
print("best:", search.best_params_)

# %%
# References: the true density and a cross-validated KDE
# -------------------------------------------------------
# The true log-density averaged over held-out points is the best any model
# can do on average. The scaler changes the density by a constant Jacobian
# (the pipeline's ``score_samples`` is that of the *scaled* data), so the
# held-out scores of the pipeline are corrected by ``-sum(log scale)`` to be
# comparable with the true density's.

best = search.best_estimator_
log_jacobian = -np.log(best[0].scale_).sum()
held_out = best.score_samples(X_test).mean() + log_jacobian
true = toy_log_density("two_moons", X_test).mean()
# KernelDensity's own ``score`` is a sum over samples: the scorer makes the
# search compare mean log-likelihoods, as for every other model here.
kde = GridSearchCV(
    KernelDensity(),
    {"bandwidth": np.logspace(-1.5, 0, 10)},
    cv=3,
    scoring=mean_log_likelihood_scorer,
).fit(X_train)
kde_held_out = kde.best_estimator_.score_samples(X_test).mean()
print(f"held-out: best skebm {held_out:.3f}, KDE {kde_held_out:.3f}, "
      f"true density {true:.3f}")
print(f"log Z of the best model: {best[-1].log_partition_:.3f} "
      f"+- {best[-1].log_partition_std_:.3f}")

# %%
# Plot
# ----
# Left: the cross-validated score of each candidate (in the scaled units the
# search compares them in), with its spread over the folds. Right: the
# density of the selected model, refitted on all the training data.

fig, (ax_scores, ax_density) = plt.subplots(
    1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1.3, 1]}
)
order = np.arange(len(labels))
ranks = search.cv_results_["rank_test_score"]
colors = ["C1" if rank == 1 else "C0" for rank in ranks]
ax_scores.bar(order, mean, yerr=std, color=colors, capsize=4)
ax_scores.set_xticks(order)
ax_scores.set_xticklabels(labels, fontsize=7)
ax_scores.set_ylim(mean.min() - 0.3, mean.max() + 0.2)
ax_scores.set_ylabel("mean CV log-likelihood (scaled data)")
ax_scores.set_title("GridSearchCV, selected in orange")

grid = np.linspace(-2.5, 3.5, 150)
xx, yy = np.meshgrid(grid, np.linspace(-2, 2.5, 120))
points = np.column_stack([xx.ravel(), yy.ravel()])
density = np.exp(best.score_samples(points) + log_jacobian).reshape(xx.shape)
ax_density.pcolormesh(xx, yy, density, cmap="viridis", shading="auto")
ax_density.scatter(X_train[:, 0], X_train[:, 1], s=2, c="white", alpha=0.5)
ax_density.set_title(
    f"selected model: held-out {held_out:.2f}\n"
    f"(KDE {kde_held_out:.2f}, true density {true:.2f})",
    fontsize=9,
)
ax_density.set_xticks([])
ax_density.set_yticks([])
fig.tight_layout()
plt.show()
