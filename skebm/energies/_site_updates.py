"""The local-update protocol of Gibbs sampling: the chains, and the cheap one-site
energy changes a binary energy computes for them."""

import torch

# Single-site updates of binary chains. Each class tracks what makes an
# energy change cheap to compute (the local fields of a pairwise model, the
# first pre-activation of a BinaryMLPEnergy, the current energy of any other
# callable), so that a Gibbs sweep never evaluates the full energy d times
# for the structured energies, and the energy of the current state is known
# without an extra evaluation (AIS needs it once per temperature).


class SiteUpdates:
    """Chains ``x`` (modified in place) with cheap one-site energy changes.

    ``sites`` below is a slice or an index tensor of sites that do not
    interact (updated together); ``step`` is the change of their values
    when flipped, ``(n, k)``; ``index`` one site per chain (random scan).
    """

    def __init__(self, energy, x, values):
        self.energy_fn = energy
        self.x = x
        self.lo, self.hi = values
        self.rows = torch.arange(x.shape[0], device=x.device)

    def step(self, sites):
        return (self.lo + self.hi) - 2 * self.x[:, sites]

    def step_at(self, index):
        return (self.lo + self.hi) - 2 * self.x[self.rows, index]

    @property
    def sets(self):
        """Sites updated together in a systematic sweep (no interaction)."""
        return [slice(j, j + 1) for j in range(self.x.shape[1])]

    def refresh(self):
        """Recompute cached quantities from ``x`` (bounds rounding drift)."""
