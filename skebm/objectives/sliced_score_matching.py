"""Sliced score matching (layer C): the trace of the Hessian by random projections.

With the model score ``-∇E`` and projections ``v`` with ``E[v v^T] = I``
(Song, Garg, Shi & Ermon, 2019, "Sliced score matching", eq. 7 and 8):

.. math::
    J_{sliced} = \\mathbb{E}_{x, v}\\big[\\tfrac12 (v^T \\nabla E)^2
                 - v^T \\nabla^2 E\\, v\\big], \\qquad
    J_{vr} = \\mathbb{E}_{x, v}\\big[\\tfrac12 \\|\\nabla E\\|^2
             - v^T \\nabla^2 E\\, v\\big].

Both are unbiased for exact score matching, ``E[v^T H v] = tr H`` and
``E[(v^T g)^2] = ||g||^2``, at the cost of one Hessian-vector product a
projection instead of one backward pass a dimension. The finite-difference form
(after Pang, Xu, Li, Song, Ermon & Zhu, 2020, "Efficient learning of generative
models via finite-difference score matching") takes both directional
derivatives from energy evaluations only:

.. math::
    v^T \\nabla^2 E\\, v \\approx \\frac{E(x + \\epsilon v) - 2 E(x)
    + E(x - \\epsilon v)}{\\epsilon^2}, \\qquad
    v^T \\nabla E \\approx \\frac{E(x + \\epsilon v) - E(x - \\epsilon v)}{2\\epsilon},

all points of all projections in one batched energy call, no double backward.

On a truncated domain with weights ``h_j`` (generalized score matching, see
:mod:`skebm.domains`) the projections become ``u = sqrt(h) * v``; since
``E[u u^T] = diag(h)``, ``E[u^T H u] = sum_j h_j H_jj`` and
``E[(u^T g)^2] = sum_j h_j g_j^2``, and the term ``-sum_j ∂_j h_j g_j``, linear
in the gradient, is added exactly (by finite differences along ``∂h`` for the
finite-difference form). Every form is therefore unbiased for the generalized
objective of :func:`~skebm.objectives.exact_score_matching_loss`.
"""

import torch

from .score_matching import energy_gradient

__all__ = [
    "finite_difference_score_matching_loss",
    "random_projections",
    "sliced_score_matching_loss",
]

PROJECTIONS = ("gaussian", "rademacher")


def random_projections(shape, kind, *, generator=None, dtype, device):
    """Random vectors with ``E[v v^T] = I``: standard normal or Rademacher (±1).

    Parameters
    ----------
    shape : tuple of int
        Shape of the result; the last axis is the dimension.
    kind : {"gaussian", "rademacher"}
        Standard normal entries, or ±1 with equal probability.
    generator : torch.Generator, default=None
        Source of randomness.
    dtype : torch.dtype
        Floating-point type of the result.
    device : str or torch.device
        Device of the result.

    Returns
    -------
    v : Tensor of shape ``shape``
        The projections.

    Examples
    --------
    >>> import torch
    >>> from skebm.objectives import random_projections
    >>> v = random_projections((10000, 3), "rademacher",
    ...                        generator=torch.Generator().manual_seed(0),
    ...                        dtype=torch.float64, device="cpu")
    >>> (v.T @ v / len(v)).round(decimals=1).abs()
    tensor([[1., 0., 0.],
            [0., 1., 0.],
            [0., 0., 1.]], dtype=torch.float64)
    """
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)
    if kind == "rademacher":
        bits = torch.randint(0, 2, shape, generator=generator, device=device)
        return (2 * bits - 1).to(dtype)
    raise ValueError(f"projection must be one of {PROJECTIONS}, got {kind!r}.")


def _projections(x, n_projections, projection, generator, boundary_weight):
    """``(u, h, dh)``: projections of shape ``(m, n, d)``, scaled by sqrt(h)."""
    v = random_projections(
        (n_projections, *x.shape),
        projection,
        generator=generator,
        dtype=x.dtype,
        device=x.device,
    )
    if boundary_weight is None:
        return v, None, None
    h, dh = boundary_weight(x.detach())
    return v * h.sqrt(), h, dh


def sliced_score_matching_loss(
    energy,
    x,
    *,
    generator=None,
    n_projections=1,
    projection="gaussian",
    variance_reduced=False,
    boundary_weight=None,
    base=None,
):
    """Mean sliced score matching loss of ``energy`` on the batch ``x``.

    The ``n_projections`` projections of every sample are evaluated in one
    batch: ``x`` is repeated ``n_projections`` times, one gradient and one
    Hessian-vector product run over the ``(n_projections * n, d)`` batch.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``, twice differentiable in ``x``.
    x : Tensor of shape (n, d)
        A batch of data.
    generator : torch.Generator, default=None
        Source of the projections.
    n_projections : int, default=1
        Projections per sample.
    projection : {"gaussian", "rademacher"}, default="gaussian"
        Distribution of the projections (see :func:`random_projections`).
    variance_reduced : bool, default=False
        Use ``1/2 ||∇E||^2`` (exact) instead of ``1/2 (v^T ∇E)^2``.
    boundary_weight : callable or None, default=None
        ``x -> (h, dh)`` of a domain: the generalized (truncated) objective.
    base : GaussianMixtureBase or None, default=None
        A base density ``q``: ``energy`` is then the correction ``f`` and the
        loss is that of the total energy ``f - log q``. The base's score
        enters exactly; its part of the trace term, constant in the
        parameters, is added exactly (its Hessian diagonal) rather than
        projected.

    Returns
    -------
    loss : Tensor of shape ()
        The mean loss, differentiable in the energy's parameters; unbiased
        for :func:`~skebm.objectives.exact_score_matching_loss`.

    Examples
    --------
    >>> import torch
    >>> from skebm.objectives import (exact_score_matching_loss,
    ...                               sliced_score_matching_loss)
    >>> def energy(x):
    ...     return 0.5 * (x**2).sum(1)
    >>> x = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0),
    ...                 dtype=torch.float64)
    >>> sliced = sliced_score_matching_loss(
    ...     energy, x, n_projections=64, generator=torch.Generator().manual_seed(0))
    >>> exact = exact_score_matching_loss(energy, x)
    >>> abs(sliced.item() - exact.item()) < 0.1
    True
    """
    n, d = x.shape
    u, h, dh = _projections(x, n_projections, projection, generator, boundary_weight)
    u = u.reshape(n_projections * n, d)
    xr = x.detach().repeat(n_projections, 1)
    _, grad, xr = energy_gradient(energy, xr)
    grad_u = (grad * u).sum(1)
    if grad_u.requires_grad:
        (hess_u,) = torch.autograd.grad(
            grad_u.sum(), xr, create_graph=True, allow_unused=True,
            materialize_grads=True,
        )
    else:  # E is linear in x: zero Hessian
        hess_u = torch.zeros_like(xr)
    trace_term = (hess_u * u).sum(1)
    if base is not None:
        base_score, base_diag = base.score_and_hessian_diagonal(x.detach())
        if h is not None:
            base_diag = h * base_diag
        grad = grad - base_score.repeat(n_projections, 1)
        grad_u = (grad * u).sum(1)
        trace_term = trace_term - base_diag.sum(1).repeat(n_projections)
    if not variance_reduced:
        quad = 0.5 * grad_u * grad_u
    elif h is None:
        quad = 0.5 * (grad * grad).sum(1)
    else:
        quad = 0.5 * (h.repeat(n_projections, 1) * grad * grad).sum(1)
    loss = quad - trace_term
    if dh is not None:
        loss = loss - (dh.repeat(n_projections, 1) * grad).sum(1)
    return loss.mean()


def _unit_steps(directions):
    """Unit directions and the matching ``epsilon = step / ||direction||`` per row."""
    norm = torch.linalg.vector_norm(directions, dim=-1, keepdim=True)
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    return directions / safe, norm


def finite_difference_score_matching_loss(
    energy,
    x,
    *,
    generator=None,
    n_projections=1,
    projection="gaussian",
    epsilon=None,
    boundary_weight=None,
    base=None,
):
    """Sliced score matching from energy evaluations only (no double backward).

    Each projection ``u`` is applied as a step of fixed Euclidean length
    ``delta`` along ``u / ||u||``, and the differences are rescaled by
    ``||u||`` and ``||u||^2``: the same as ``x ± (delta / ||u||) u``, but the
    step length, which sets the truncation and rounding errors, does not grow
    with the dimension (``||u|| ≈ sqrt(d)``).

    All ``1 + 2 * n_projections`` (plus 2 on a domain) points per sample go
    through the energy in a single call.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``; only evaluated, never differentiated in ``x``.
    x : Tensor of shape (n, d)
        A batch of data.
    generator : torch.Generator, default=None
        Source of the projections.
    n_projections : int, default=1
        Projections per sample.
    projection : {"gaussian", "rademacher"}, default="gaussian"
        Distribution of the projections (see :func:`random_projections`).
    epsilon : float or None, default=None
        Step length relative to the scale of the batch: ``delta = epsilon *
        s`` with ``s`` the root-mean-square standard deviation of the features
        of ``x``. None is ``eps ** (1/6)`` of ``x``'s floating-point type
        (``7e-2`` in float32, ``2.5e-3`` in float64). The second difference
        has a truncation error ``~ delta^2`` and a rounding error
        ``~ k eps / delta^2``, where ``k``, the rounding accumulated through a
        network, is large: measured on MLP energies, ``eps ** (1/6)`` keeps
        the objective within ``~1e-4`` (float32) and ``~1e-9`` (float64) of
        its autograd value, where the textbook ``eps ** (1/4)`` loses ten
        times more in float32, and ``1e-5`` in float32 is pure rounding
        noise.
    boundary_weight : callable or None, default=None
        ``x -> (h, dh)`` of a domain: the generalized (truncated) objective.
    base : GaussianMixtureBase or None, default=None
        A base density ``q``: ``energy`` is then the correction ``f``, and the
        total energy ``f - log q`` is what is evaluated at every point.

    Returns
    -------
    loss : Tensor of shape ()
        The mean loss, differentiable in the energy's parameters.

    Examples
    --------
    >>> import torch
    >>> from skebm.objectives import (exact_score_matching_loss,
    ...                               finite_difference_score_matching_loss)
    >>> def energy(x):
    ...     return 0.5 * (x**2).sum(1)
    >>> x = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0),
    ...                 dtype=torch.float64)
    >>> fd = finite_difference_score_matching_loss(
    ...     energy, x, n_projections=64, generator=torch.Generator().manual_seed(0))
    >>> exact = exact_score_matching_loss(energy, x)
    >>> abs(fd.item() - exact.item()) < 0.1
    True
    """
    n, d = x.shape
    m = n_projections
    if epsilon is None:
        epsilon = torch.finfo(x.dtype).eps ** (1 / 6)
    x = x.detach()
    scale = x.var(0, unbiased=False).mean().sqrt() if n > 1 else x.new_ones(())
    epsilon = epsilon * torch.where(scale > 0, scale, torch.ones_like(scale))
    u, _, dh = _projections(x, m, projection, generator, boundary_weight)
    unit, norm = _unit_steps(u)  # (m, n, d), (m, n, 1)
    steps = epsilon * unit
    points = [x, (x + steps).reshape(m * n, d), (x - steps).reshape(m * n, d)]
    if dh is not None:
        dh_unit, dh_norm = _unit_steps(dh)
        points += [x + epsilon * dh_unit, x - epsilon * dh_unit]
    points = torch.cat(points)
    e = energy(points)
    if base is not None:
        e = e - base.log_prob(points)
    e0 = e[:n]
    e_plus = e[n : n + m * n].reshape(m, n)
    e_minus = e[n + m * n : n + 2 * m * n].reshape(m, n)
    norm = norm.squeeze(-1)
    second = (e_plus - 2 * e0 + e_minus) * (norm / epsilon) ** 2  # u^T H u
    first = (e_plus - e_minus) * (norm / (2 * epsilon))  # u^T ∇E
    loss = 0.5 * first * first - second
    if dh is not None:
        e_dh_plus, e_dh_minus = e[n + 2 * m * n :].reshape(2, n)
        linear = (e_dh_plus - e_dh_minus) * (dh_norm.squeeze(-1) / (2 * epsilon))
        loss = loss - linear
    return loss.mean()
