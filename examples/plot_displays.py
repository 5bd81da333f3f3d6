"""
=============================================================
Looking at a fit: ``DensityDisplay`` and ``MarginalsDisplay``
=============================================================

:mod:`skebm.inspection` draws a fitted density next to the data it was fitted
on, in scikit-learn's display convention (``from_estimator``, then
``plot(ax=...)`` to redraw). Both displays take a fitted estimator or a
:class:`~sklearn.pipeline.Pipeline` ending in one and work in the units of
the data: the pipeline's samples are mapped back through its transformers
(:func:`skebm.utils.sample_pipeline`) and its log-density is corrected by
their Jacobian.

- :class:`~skebm.inspection.DensityDisplay`: a 2-D density as filled
  contours, the model's samples (orange) next to the data (grey).
- :class:`~skebm.inspection.MarginalsDisplay`: data of any dimension, one
  panel a coordinate, the data's histogram against the samples'.
"""

import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skebm import AutoregressiveScoreMatchingDensity, SlicedScoreMatchingDensity
from skebm.datasets import make_two_moons
from skebm.inspection import DensityDisplay, MarginalsDisplay
from skebm.utils import sample_pipeline

warnings.filterwarnings("ignore", category=ConvergenceWarning)

# %%
# Two moons, in their own units
# -----------------------------
# The moons are stretched (x3 horizontally) and moved, so that the scaler in
# the pipeline has work to do; the display draws in the data's units.

X = make_two_moons(1000, random_state=0) * [3.0, 1.0] + [10.0, 0.0]
moons = make_pipeline(StandardScaler(), SlicedScoreMatchingDensity(random_state=0))
moons.fit(X)

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
DensityDisplay.from_estimator(moons, X, ax=left, random_state=0)
DensityDisplay.from_estimator(  # the tails: the log-density, no samples
    moons, X, ax=right, n_samples=0, log_scale=True, levels=12
)
right.set_title("log-density (10 nats below the mode)")
plt.show()

# %%
# Samples in the data's space
# ---------------------------
# ``moons[-1].sample`` draws standardized points; ``sample_pipeline`` (the
# one-liner ``moons[:-1].inverse_transform(moons[-1].sample(n))``) returns them
# in the units of ``X``.

S = sample_pipeline(moons, 2000, random_state=0)
print("data mean", X.mean(axis=0).round(2), "samples mean", S.mean(axis=0).round(2))
print("data std ", X.std(axis=0).round(2), "samples std ", S.std(axis=0).round(2))

# %%
# Thirteen dimensions: the wine data
# ----------------------------------
# No contour plot in 13 dimensions: ``MarginalsDisplay`` compares each
# coordinate. The autoregressive estimator's samples are exact draws from the
# fitted model (no Markov chain), so a mismatch here is the model's, not the
# sampler's.

wine = load_wine()
model = make_pipeline(
    StandardScaler(), AutoregressiveScoreMatchingDensity(max_iter=20, random_state=0)
)
model.fit(wine.data)
MarginalsDisplay.from_estimator(
    model, wine.data, feature_names=wine.feature_names, random_state=0, n_cols=5
)
plt.show()
