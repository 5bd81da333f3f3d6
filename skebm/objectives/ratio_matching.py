"""Ratio matching for binary data (layer C).

Hyvärinen's ratio matching (2007) compares the model probability of each
observed vector with that of its one-bit flips. With
``ΔE_j(x) = E(flip_j x) - E(x)``, the σ-form minimized by default is

.. math::
    J(\\theta) = \\mathbb{E}_x \\sum_j \\sigma\\big(E(x) - E(\\mathrm{flip}_j x)\\big)^2
               = \\mathbb{E}_x \\sum_j \\sigma(-\\Delta E_j(x))^2,

which is ``Σ_j g(p(x) / p(flip_j x))²`` with ``g(u) = 1 / (1 + u)``
(Hyvärinen, 2007, "Some extensions of score matching", CSDA 51, eq. 17).

**Which summands are consistent.** Write the objective as
``E_x Σ_j f(ΔE_j(x))``. A pair ``(x, x')`` that differ in bit ``j``
contributes ``p(x) f(t) + p(x') f(-t)`` with ``t = E(x') - E(x)``; its
minimizer solves ``p(x) f'(t) = p(x') f'(-t)``, and the model is the
minimizer (``t = log p(x) / p(x')``) exactly when ``f'(-t) / f'(t) = e^t``.
The σ-form ``f(t) = σ(-t)²`` has ``f'(-t) / f'(t) = σ(t) / σ(-t) = e^t``.
So does the exponential form ``f(t) = exp(-t / 2) = (p(flip_j x) / p(x))^½``,
which is ``form="exponential"`` here. The summand ``exp(-2t)`` of the RMwGGIS
code (Liu, Liu and Ji, ICLR 2023) has ``f'(-t) / f'(t) = e^{4t}``: its
minimizer is ``t = ¼ log p(x) / p(x')``, the distribution ``p^¼``
(renormalized), not ``p``; it is not offered.

Gradient-guided importance sampling (RMwGGIS) estimates the sum over ``j``
from ``K`` bits drawn per sample from a proposal ``q_j ∝ f(ΔÊ_j)`` where
``ΔÊ_j = (lo + hi - 2 x_j) ∂E/∂x_j`` is the first-order estimate of the flip
energy from the gradient of the energy at the (relaxed) input:
``(1/K) Σ_k f(ΔE_{j_k}) / q_{j_k}``, drawn with replacement, is unbiased for
the exact sum. It costs ``K`` flips and one input gradient per sample
instead of ``d`` flips.
"""

import torch
from torch.nn import functional as F

from ..energies import flip_energy_differences

__all__ = ["ggis_ratio_matching_loss", "ratio_matching_loss"]

_FORMS = ("sigmoid", "exponential")


def _log_summand(delta, form):
    """``log f(ΔE)``: ``2 log σ(-ΔE)`` or ``-ΔE / 2``."""
    if form == "sigmoid":
        return 2 * F.logsigmoid(-delta)
    if form == "exponential":
        return -0.5 * delta
    raise ValueError(f"form must be one of {_FORMS}, got {form!r}.")


def _sigmoid_summand(delta):
    s = torch.sigmoid(-delta)
    f = s * s
    return f, -2 * f * (1 - s)


def _exponential_summand(delta):
    f = torch.exp(-0.5 * delta)
    return f, -0.5 * f


_SUMMANDS = {"sigmoid": _sigmoid_summand, "exponential": _exponential_summand}


def ratio_matching_loss(
    energy, x, *, generator=None, form="sigmoid", values=(0.0, 1.0)
):
    """Exact ratio matching loss: all ``d`` flips of every sample.

    For pairwise energies (:class:`~skebm.energies.BoltzmannEnergy`) the flip
    energies come from the quadratic form; for
    :class:`~skebm.energies.BinaryMLPEnergy` from its moved first-layer
    pre-activations, with the gradient fused into the same pass; any other
    energy is evaluated on the ``n * d`` flipped copies, in blocks.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``.
    x : Tensor of shape (n, d)
        A minibatch of states with entries in ``values``.
    generator : torch.Generator or None, default=None
        Accepted for the common objective signature; the exact objective is
        deterministic.
    form : {"sigmoid", "exponential"}, default="sigmoid"
        ``"sigmoid"``: Hyvärinen's ``Σ_j σ(E(x) - E(flip_j x))²``;
        ``"exponential"``: ``Σ_j exp((E(x) - E(flip_j x)) / 2)``. Both have
        the model as their minimizer (see the module docstring).
    values : tuple of two floats, default=(0.0, 1.0)
        The two values a unit takes.

    Returns
    -------
    loss : Tensor of shape ()
        Batch mean of the per-sample sum over bits.

    Examples
    --------
    >>> import torch
    >>> from skebm.objectives import ratio_matching_loss
    >>> def flat(x):
    ...     return torch.zeros(x.shape[0])  # uniform: every term is σ(0)² = 1/4
    >>> ratio_matching_loss(flat, torch.tensor([[0.0, 1.0, 1.0]]))
    tensor(0.7500)
    """
    if form not in _SUMMANDS:
        raise ValueError(f"form must be one of {_FORMS}, got {form!r}.")
    if hasattr(energy, "flip_loss"):
        return energy.flip_loss(x, _SUMMANDS[form])
    delta = flip_energy_differences(energy, x, values=values)
    return torch.exp(_log_summand(delta, form)).sum(1).mean()


def ggis_ratio_matching_loss(
    energy,
    x,
    *,
    generator=None,
    n_flip_samples=8,
    form="sigmoid",
    values=(0.0, 1.0),
):
    """Ratio matching estimated by gradient-guided importance sampling.

    ``n_flip_samples`` bits per sample are drawn, with replacement, from the
    proposal ``q_j ∝ f(ΔÊ_j)`` built from ``∂E/∂x`` at the relaxed input
    (``ΔÊ_j = (lo + hi - 2 x_j) ∂E/∂x_j``, ``f`` the form's summand) and
    importance weighted, so the loss is an unbiased estimate of
    :func:`ratio_matching_loss` (the proposal is held fixed in the gradient).
    A step costs ``n_flip_samples`` flips and one input gradient per sample
    instead of ``d`` flips.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``, differentiable in ``x``.
    x : Tensor of shape (n, d)
        A minibatch of states with entries in ``values``.
    generator : torch.Generator or None, default=None
        Draws the flips.
    n_flip_samples : int, default=8
        Flips drawn per sample.
    form : {"sigmoid", "exponential"}, default="sigmoid"
        As in :func:`ratio_matching_loss`.
    values : tuple of two floats, default=(0.0, 1.0)
        The two values a unit takes.

    Returns
    -------
    loss : Tensor of shape ()
        The importance-sampling estimate, averaged over the batch.

    Examples
    --------
    >>> import torch
    >>> from skebm.objectives import ggis_ratio_matching_loss
    >>> def flat(x):
    ...     return 0.0 * x.sum(1)  # uniform: the estimate is exact, d / 4
    >>> x = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    >>> ggis_ratio_matching_loss(flat, x, n_flip_samples=2,
    ...                          generator=torch.Generator().manual_seed(0))
    tensor(1.)
    """
    n, d = x.shape
    lo, hi = values
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(energy(xg).sum(), xg)
    step = (lo + hi) - 2 * x
    with torch.no_grad():
        log_q = torch.log_softmax(_log_summand(step * grad, form), dim=1)
        idx = torch.multinomial(
            log_q.exp(), n_flip_samples, replacement=True, generator=generator
        )  # (n, K)
        log_q_drawn = log_q.gather(1, idx)
    if hasattr(energy, "flip_differences_at"):
        delta = energy.flip_differences_at(x, idx)
    else:
        flips = F.one_hot(idx, d).to(x.dtype) * step.gather(1, idx)[..., None]
        flipped = x[:, None, :] + flips  # (n, K, d)
        e_flipped = energy(flipped.reshape(n * n_flip_samples, d))
        delta = e_flipped.reshape(n, n_flip_samples) - energy(x)[:, None]
    terms = torch.exp(_log_summand(delta, form) - log_q_drawn)
    return terms.mean(1).mean()
