"""
====================================================================
Recovering the interaction graph of a 2-D Ising lattice from samples
====================================================================

A 6 x 6 Ising model with nearest-neighbour couplings of random sign and
magnitude between 0.3 and 0.5 is sampled by Gibbs dynamics, and
:class:`~skebm.PseudoLikelihoodIsing` is fitted to 5,000 of its samples with
an L1 penalty, which sets the couplings of absent edges exactly to zero, and
then with ``refit=True``, which refits the selected graph without penalty and
removes the shrinkage of the L1 estimate.

The top row shows the coupling matrices (36 x 36: spin ``i`` interacts with
its lattice neighbours ``i ± 1`` and ``i ± 6``); the bottom row draws the
lattice with each recovered edge coloured by its coupling, and compares the
estimated couplings with the true ones.
"""

import matplotlib.pyplot as plt
import numpy as np

from skebm import PseudoLikelihoodIsing
from skebm.datasets import make_ising_lattice

side = 6
d = side * side
rng = np.random.RandomState(0)

# %%
# The true model: nearest-neighbour couplings on an open lattice.
J_true, h_true = make_ising_lattice(side, random_state=rng)

# %%
# 5,000 independent Gibbs chains from random spins, 200 sweeps each. On a
# lattice the sites split into the two colours of a chessboard and no two
# sites of one colour interact, so all sites of a colour are updated at once
# from their exact conditionals: a Gibbs sweep in two matrix products.
colour = (np.arange(d) % side + np.arange(d) // side) % 2
X = rng.choice([-1.0, 1.0], size=(5000, d))
for _ in range(200):
    for c in (0, 1):
        sites = colour == c
        field = h_true[sites] + X @ J_true[:, sites]
        p_up = 1.0 / (1.0 + np.exp(-2.0 * field))
        X[:, sites] = np.where(rng.rand(len(X), sites.sum()) < p_up, 1.0, -1.0)

# %%
# Fit with an L1 penalty, then refit the selected graph.
lasso = PseudoLikelihoodIsing(penalty="l1", alpha=0.1).fit(X)
refit = PseudoLikelihoodIsing(penalty="l1", alpha=0.1, refit=True).fit(X)


def relative_error(J):
    return np.linalg.norm(J - J_true) / np.linalg.norm(J_true)


edges = np.triu(J_true != 0, 1)
found = np.triu(lasso.couplings_ != 0, 1)
print(f"true edges: {edges.sum()}, found: {found.sum()}, "
      f"missed: {(edges & ~found).sum()}, spurious: {(found & ~edges).sum()}")
print(f"relative coupling error: L1 {relative_error(lasso.couplings_):.3f}, "
      f"refit {relative_error(refit.couplings_):.3f}")

# %%
# The figure.
fig, axes = plt.subplots(2, 3, figsize=(10.5, 7), layout="constrained")
vmax = 0.5
for ax, J, title in zip(
    axes[0],
    [J_true, lasso.couplings_, refit.couplings_],
    [
        "true couplings",
        f"L1 (alpha=0.1): error {relative_error(lasso.couplings_):.3f}",
        f"L1 + refit: error {relative_error(refit.couplings_):.3f}",
    ],
    strict=True,
):
    image = ax.imshow(J, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="J_ij")

coords = np.array([(i % side, i // side) for i in range(d)], dtype=float)
cmap = plt.get_cmap("RdBu_r")
for ax, J, title in zip(
    axes[1, :2],
    [J_true, refit.couplings_],
    ["true lattice", "recovered graph (refit)"],
    strict=True,
):
    for i, j in zip(*np.nonzero(np.triu(J, 1)), strict=True):
        colour = cmap(0.5 + 0.5 * np.clip(J[i, j] / vmax, -1, 1))
        style = "-" if J_true[i, j] != 0 else ":"
        ax.plot(*coords[[i, j]].T, style, color=colour, lw=4)
    ax.plot(*coords.T, "o", color="k", ms=5)
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.axis("off")

ax = axes[1, 2]
upper = np.triu_indices(d, 1)
on_edge = J_true[upper] != 0
ax.plot([-0.6, 0.6], [-0.6, 0.6], color="0.6", lw=1)
ax.plot(J_true[upper][on_edge], lasso.couplings_[upper][on_edge], "o", ms=4,
        label="L1")
ax.plot(J_true[upper][on_edge], refit.couplings_[upper][on_edge], "s", ms=4,
        label="L1 + refit")
ax.plot(J_true[upper][~on_edge], refit.couplings_[upper][~on_edge], "x",
        color="k", ms=4, label="absent edges")
ax.set_xlabel("true J_ij")
ax.set_ylabel("estimated J_ij")
ax.set_title("estimated vs true couplings")
ax.legend()
