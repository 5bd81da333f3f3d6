"""Maximum likelihood with MCMC negatives (layer C).

The gradient of the mean log-likelihood of ``p = exp(-E) / Z`` is

.. math::
    \\nabla_\\theta \\frac1n \\sum_i \\log p(x_i)
    = -\\frac1n \\sum_i \\nabla_\\theta E(x_i)
      + \\mathbb{E}_{y \\sim p}\\, \\nabla_\\theta E(y),

so the surrogate loss ``mean E(x) - mean E(y)``, with the negatives ``y``
drawn by MCMC and held fixed (detached), has the log-likelihood's gradient
whenever the ``y`` are draws from the model. Where the chains start decides
what they are instead (:class:`NegativeChains`):

- ``"noise"``: ``k`` steps from fresh noise every step, non-persistent
  short-run MCMC (E. Nijkamp, M. Hill, S.-C. Zhu and Y. N. Wu, "Learning
  non-convergent non-persistent short-run MCMC toward energy-based model",
  NeurIPS 2019). At a fixed point the data's sufficient statistics equal
  those of the ``k``-step process from noise, not of ``exp(-E)``: the
  *process* is the model that was learned.
- ``"data"``: ``k`` steps from the data batch, contrastive divergence CD-k
  (G. E. Hinton, "Training products of experts by minimizing contrastive
  divergence", Neural Computation 14, 2002).
- ``"persistent"``: chains carried over from one step to the next, persistent
  contrastive divergence (T. Tieleman, "Training restricted Boltzmann
  machines using approximations to the likelihood gradient", ICML 2008); as
  the learning rate goes to zero the chains are draws from the model and the
  fixed point is the maximum-likelihood estimate.

E. Nijkamp, M. Hill, T. Han, S.-C. Zhu and Y. N. Wu, "On the anatomy of
MCMC-based maximum likelihood learning of energy-based models", AAAI 2020,
works out the solvable cases the tests check.
"""


import contextlib

import torch

__all__ = ["NegativeChains", "mcmc_likelihood_loss"]

_STARTS = ("noise", "data", "persistent")


class NegativeChains:
    """The negative phase: MCMC chains of the current energy, one per call.

    Parameters
    ----------
    start : {"noise", "data", "persistent"}
        Where each call's chains start: fresh ``noise`` draws, the data
        batch, or where the previous call's chains stopped (started from
        noise on the first call; as many chains as the first batch has rows).
    n_steps : int
        MCMC steps (Langevin steps, Gibbs sweeps) per call: ``k``.
    transition : callable
        ``transition(energy, x0, n_steps, generator) -> x``: the chains.
    noise : callable
        ``noise(n, generator) -> x``: draws of the noise chains start from,
        with the data's dtype and device.

    Attributes
    ----------
    state : Tensor or None
        The persistent chains after the last call (``start="persistent"``).

    Examples
    --------
    Two Langevin steps from standard-normal noise on a standard-normal energy:

    >>> import functools
    >>> import torch
    >>> from skebm.objectives import NegativeChains
    >>> from skebm.samplers import langevin
    >>> chains = NegativeChains(
    ...     "noise", 2,
    ...     transition=lambda e, x, k, g: langevin(e, x, n_steps=k,
    ...                                            step_size=0.1, generator=g),
    ...     noise=lambda n, g: torch.randn(n, 2, generator=g))
    >>> y = chains(lambda x: 0.5 * (x**2).sum(1), torch.zeros(5, 2),
    ...            generator=torch.Generator().manual_seed(0))
    >>> y.shape
    torch.Size([5, 2])
    """

    def __init__(self, start, n_steps, *, transition, noise):
        if start not in _STARTS:
            raise ValueError(f"start must be one of {_STARTS}, got {start!r}.")
        self.start = start
        self.n_steps = int(n_steps)
        self.transition = transition
        self.noise = noise
        self.state = None

    def __call__(self, energy, x, *, generator=None):
        """Run the chains of ``energy`` for the data batch ``x``.

        Parameters
        ----------
        energy : callable
            ``(n, d) -> (n,)``, the current (total) energy.
        x : Tensor of shape (n, d)
            The data batch.
        generator : torch.Generator, default=None
            Source of randomness.

        Returns
        -------
        negatives : Tensor of shape (m, d)
            Detached states: ``m = n`` except for persistent chains, whose
            number is fixed by the first batch.
        """
        if self.start == "data":
            x0 = x.detach()
        elif self.start == "noise" or self.state is None:
            x0 = self.noise(x.shape[0], generator).to(x)
        else:
            x0 = self.state
        y = self.transition(energy, x0, self.n_steps, generator).detach()
        if self.start == "persistent":
            self.state = y
        return y


def mcmc_likelihood_loss(energy, x, *, generator=None, chains, base=None):
    """``mean E(x) - mean E(y)`` with MCMC negatives ``y`` (detached).

    Its gradient in the energy's parameters is minus the log-likelihood's
    gradient when the negatives are draws from the model; its value is not a
    likelihood and does not decrease towards an optimum: it is near zero
    wherever the data and the negatives agree.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``, differentiable in its parameters (and in ``x``
        for Langevin chains).
    x : Tensor of shape (n, d)
        The data batch.
    generator : torch.Generator, default=None
        Source of the chains' randomness.
    chains : NegativeChains
        Draws the negatives (and keeps persistent chains between calls).
    base : GaussianMixtureBase or None, default=None
        A base density ``q``: ``energy`` is then the correction ``f`` and the
        chains run on the total energy ``f - log q``.

    Returns
    -------
    loss : Tensor of shape ()
        Differentiable in the energy's parameters.

    Examples
    --------
    >>> import torch
    >>> from skebm.objectives import NegativeChains, mcmc_likelihood_loss
    >>> chains = NegativeChains("data", 0, transition=lambda e, x, k, g: x,
    ...                         noise=None)
    >>> x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    >>> float(mcmc_likelihood_loss(lambda z: (z**2).sum(1), x, chains=chains))
    0.0
    """
    total = energy
    if base is not None:

        def total(z):
            return energy(z) - base.log_prob(z)

    with _frozen(energy):
        negatives = chains(total, x, generator=generator)
    return total(x).mean() - total(negatives).mean()


@contextlib.contextmanager
def _frozen(energy):
    """The chains need gradients in ``x`` only: with the parameters' gradients
    off, autograd records no graph for them (a third less time per Langevin
    step of an MLP)."""
    params = []
    if isinstance(energy, torch.nn.Module):
        params = [p for p in energy.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
