"""Composite score matching for autoregressive models (layer C).

An autoregressive model ``p(x) = prod_i p_i(x_i | x_<i)`` with
``p_i ∝ exp(-E_i(x_i; x_<i))`` is fitted by matching each conditional's
one-dimensional score, in its own variable only:

.. math::
    J = \\mathbb{E}_x \\sum_{i=1}^d \\Big[\\tfrac12
        \\big(\\partial_{x_i} E_i\\big)^2 - \\partial^2_{x_i} E_i\\Big]

(Meng, Yu, Song and Ermon, "Autoregressive score matching", NeurIPS 2020,
eq. 7, written for the energies). Each term is Hyvärinen's objective of a
univariate density, so no normalizer ``Z_i(x_<i)`` is needed, and the sum is
minimized, as score matching on the joint is, by the data's conditionals.

The energies are evaluated at two copies of ``x``: ``context`` (read by
coordinate ``i`` through ``x_<i`` only) and ``own`` (read by coordinate ``i``
through ``x_i`` only). The gradient of ``sum_i E_i`` in ``own`` is then the
vector of every ``∂E_i/∂x_i``, and the gradient of that vector's sum is every
``∂²E_i/∂x_i²``: two backward passes for all ``d`` coordinates, however large
``d`` is (exact score matching on the joint needs ``d``).

With a base density ``q`` (a Gaussian mixture), ``E_i = -log q(x_i | x_<i) +
g_i`` with ``g_i`` the network's correction: the base's derivatives come in
closed form, in the base's precision (float64), and only the correction is
differentiated by autograd. (Second derivatives of a sharp mixture by
autograd in float32 moved the loss of a 25-component base by 0.007 and its
gradient by half its norm.)
"""

import torch

__all__ = ["composite_score_matching_loss", "conditional_derivatives"]


def conditional_derivatives(energy, x, *, create_graph=True):
    """``E_i``, ``∂E_i/∂x_i`` and ``∂²E_i/∂x_i²`` of every coordinate.

    Parameters
    ----------
    energy : torch.nn.Module
        Has ``conditional_energies(context, own) -> (n, d)`` whose column
        ``i`` reads ``context`` through ``context[:, :i]`` and ``own`` through
        ``own[:, i]`` only (for example
        :class:`~skebm.energies.MaskedAutoregressiveEnergy`).
    x : Tensor of shape (n, d)
        Points.
    create_graph : bool, default=True
        Keep the graph, for a loss differentiated in the energy's parameters.

    Returns
    -------
    energies : Tensor of shape (n, d)
    first : Tensor of shape (n, d)
        ``∂E_i/∂x_i``.
    second : Tensor of shape (n, d)
        ``∂²E_i/∂x_i²``.

    Examples
    --------
    >>> import torch
    >>> from skebm.objectives import conditional_derivatives
    >>> class Gaussian(torch.nn.Module):  # E_i = (x_i - x_{i-1})^2 / 2
    ...     def conditional_energies(self, context, own):
    ...         previous = torch.nn.functional.pad(context[:, :-1], (1, 0))
    ...         return 0.5 * (own - previous) ** 2
    >>> x = torch.tensor([[1.0, 3.0]])
    >>> _, first, second = conditional_derivatives(Gaussian(), x)
    >>> first.tolist(), second.tolist()
    ([[1.0, 2.0]], [[1.0, 1.0]])
    """
    context = x.detach()
    own = x.detach().clone().requires_grad_(True)
    energies = energy.conditional_energies(context, own)
    (first,) = torch.autograd.grad(
        energies.sum(),
        own,
        create_graph=True,
        allow_unused=True,
        materialize_grads=True,
    )
    if not first.requires_grad:  # every E_i is linear in its own variable
        return energies, first, torch.zeros_like(first)
    (second,) = torch.autograd.grad(
        first.sum(),
        own,
        create_graph=create_graph,
        allow_unused=True,
        materialize_grads=True,
    )
    return energies, first, second


def _base_derivatives(base, x):
    """First and second derivatives of ``-log q(x_i | x_<i)`` in ``x_i``.

    In closed form from the 1-D mixture of each conditional, in the base's
    dtype: with responsibilities ``r_k`` and component scores ``u_k =
    -(x_i - m_k) / s_k^2``, ``(log q)' = sum_k r_k u_k = s`` and ``(log q)'' =
    sum_k r_k (u_k - s)^2 - sum_k r_k / s_k^2`` (a variance, without
    cancellation).
    """
    x = x.detach().to(base.means.dtype)
    log_w, means, stds = base.conditionals(x)
    z = (x[..., None] - means) / stds
    resp = torch.softmax(log_w - 0.5 * z * z - torch.log(stds), dim=-1)
    u = -z / stds
    score = (resp * u).sum(-1)
    curvature = (resp * (u - score[..., None]) ** 2).sum(-1) - (resp / stds**2).sum(-1)
    return -score, -curvature


def composite_score_matching_loss(
    energy, x, *, generator=None, base=None, boundary_weight=None
):
    """Composite score matching loss, averaged over the batch.

    Parameters
    ----------
    energy : torch.nn.Module
        Has ``conditional_energies(context, own) -> (n, d)`` with the
        autoregressive structure described in :func:`conditional_derivatives`
        (computed by two backward passes), or a method
        ``conditional_derivatives(context, own)`` that gives them in closed
        form (as :class:`~skebm.energies.MaskedAutoregressiveEnergy` does).
    x : Tensor of shape (n, d)
        Data.
    generator : torch.Generator, default=None
        Unused (the objective is deterministic); part of the objectives'
        common signature.
    base : GaussianMixtureBase or None, default=None
        A base density in the same coordinate order: the conditional energies
        are then ``-log q(x_i | x_<i) + energy_i``, the base's derivatives in
        closed form (see
        :meth:`~skebm.base_densities.GaussianMixtureBase.conditionals`).
    boundary_weight : callable or None, default=None
        ``x -> (h, dh)``, each of shape ``(n, d)``, with ``h_i`` a function of
        ``x_i`` that vanishes on the ends of coordinate ``i``'s interval (e.g.
        :meth:`skebm.domains.Box.boundary_weight`). Each conditional's term
        becomes the generalized score matching objective of a density on an
        interval, ``1/2 h_i (E_i')^2 - h_i E_i'' - h_i' E_i'``.

    Returns
    -------
    loss : Tensor of shape ()
        Summed over the coordinates, averaged over the rows.

    Examples
    --------
    The loss of ``N(0, 1)`` conditionals on standard normal data is about
    ``-1/2`` per coordinate, its minimum:

    >>> import torch
    >>> from skebm.objectives import composite_score_matching_loss
    >>> class Independent(torch.nn.Module):
    ...     def conditional_energies(self, context, own):
    ...         return 0.5 * own**2
    >>> x = torch.randn(20000, 3, generator=torch.Generator().manual_seed(0))
    >>> loss = composite_score_matching_loss(Independent(), x)
    >>> round(loss.item(), 1)
    -1.5
    """
    if callable(getattr(energy, "conditional_derivatives", None)):
        x = x.detach()
        _, first, second = energy.conditional_derivatives(x, x)
    else:
        _, first, second = conditional_derivatives(energy, x)
    if base is not None:
        base_first, base_second = _base_derivatives(base, x)
        first = first + base_first.to(first.dtype)
        second = second + base_second.to(second.dtype)
    if boundary_weight is None:
        per_coordinate = 0.5 * first * first - second
    else:
        h, dh = boundary_weight(x.detach())
        per_coordinate = 0.5 * h * first * first - h * second - dh * first
    return per_coordinate.sum(1).mean()
