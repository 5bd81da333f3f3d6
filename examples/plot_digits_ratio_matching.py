"""
=====================================================
Ratio matching on binarized digits: fit and samples
=====================================================

:class:`~skebm.RatioMatchingBinary` fits an energy-based model
``p(x) = exp(-E(x)) / Z`` to scikit-learn's 8x8 handwritten digits,
binarized at pixel value 7 (the ``binarize`` threshold, as in
``BernoulliNB``), without ever computing ``Z`` during training. The
gradient-guided importance-sampling form (``method="ggis"``) looks at a few
one-pixel flips per image, drawn where the gradient of the energy says they
matter, instead of all 64.

After fitting, ``log Z`` is estimated by annealed importance sampling, so the
held-out ``score`` is a normalized log-likelihood that can be compared with
independent Bernoulli pixels; the exact pseudo-log-likelihood needs no
``Z`` at all. Resampled annealed chains and Gibbs sweeps then draw new digits.

The benchmark ``benchmarks/bench_ratio_matching.py`` compares this model, the
neural (``energy="mlp"``) one and scikit-learn's ``BernoulliRBM`` on the same
split.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skebm import RatioMatchingBinary

# %%
# Data
# ----
# Pixel intensities are 0..16; ``binarize=7`` turns ``x > 7`` into 1 inside
# the estimator. float32 input is fitted in float32 (faster on a CPU).
X = load_digits().data.astype(np.float32)
X_train, X_test = train_test_split(X, test_size=0.3, random_state=0)
bits_train = (X_train > 7).astype(np.float32)
bits_test = (X_test > 7).astype(np.float32)

# %%
# Fit
# ---
# A fully visible Boltzmann machine, ``E(x) = -b'x - x'Wx / 2``: its flip
# energies come straight from the quadratic form, so both training and the
# Gibbs updates are cheap. ``energy="mlp"`` (the default) fits a neural
# energy instead; see the benchmark for how the two compare.
est = RatioMatchingBinary(
    energy="boltzmann",
    method="ggis",
    n_flip_samples=8,
    binarize=7,
    learning_rate_init=0.01,
    random_state=0,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    est.fit(X_train)

# %%
# Held-out fit
# ------------
# Independent Bernoulli pixels (with add-one smoothing) are the baseline that
# ignores every dependence between pixels; their log-likelihood equals their
# pseudo-log-likelihood.
p = (bits_train.sum(0) + 1) / (len(bits_train) + 2)
independent = (bits_test * np.log(p) + (1 - bits_test) * np.log1p(-p)).sum(1).mean()
log_likelihood = est.score(X_test)
pll = est.pseudo_log_likelihood(X_test).mean()
print(f"log Z = {est.log_partition_:.2f} +/- {est.log_partition_std_:.2f} (AIS)")
print(f"held-out log-likelihood  ratio matching {log_likelihood:.2f}  "
      f"independent {independent:.2f} nats/image")
print(f"held-out pseudo-log-likelihood  ratio matching {pll:.2f}  "
      f"independent {independent:.2f} nats/image")

# %%
# Samples
# -------
# Draws from the model: annealed importance sampling chains (from a mixture
# of independent Bernoullis fitted to the training digits) resampled by their
# weights, then ``n_sweeps`` Gibbs sweeps each; next to held-out digits.
samples = est.sample(32, random_state=0)
fig, axes = plt.subplots(8, 8, figsize=(7, 7.6))
for i, ax in enumerate(axes.ravel()):
    image = samples[i] if i < 32 else bits_test[i - 32]
    ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(
    "Samples (top four rows) and held-out digits (bottom)\n"
    f"held-out log-likelihood {log_likelihood:.1f} nats/image "
    f"(independent pixels {independent:.1f})"
)
fig.tight_layout()
