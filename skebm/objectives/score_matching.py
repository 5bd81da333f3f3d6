"""Hyvärinen's exact score matching (layer C).

.. math::
    J(\\theta) = \\mathbb{E}_x\\Big[\\tfrac12 \\|\\nabla_x E(x)\\|^2
                 - \\operatorname{tr} \\nabla_x^2 E(x)\\Big]

(Hyvärinen, 2005, "Estimation of non-normalized statistical models by score
matching", JMLR 6, eq. 4, written for the energy; the model score is -∇E.)
"""

import torch

__all__ = [
    "energy_gradient",
    "exact_score_matching_loss",
    "hessian_diagonal",
    "solve_gaussian_generalized_score_matching",
    "solve_gaussian_score_matching",
    "solve_linear_score_matching",
]


def energy_gradient(energy, x, *, create_graph=True):
    """Return ``(E(x), ∇_x E(x), x)`` with ``x`` a leaf that requires grad.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``.
    x : Tensor of shape (n, d)
        Points; detached and made a leaf that requires grad.
    create_graph : bool, default=True
        Keep the graph of the gradient, for a second derivative or for a loss
        differentiated in the energy's parameters.

    Returns
    -------
    e : Tensor of shape (n,)
        ``E(x)``.
    grad : Tensor of shape (n, d)
        ``∇_x E(x)``.
    x : Tensor of shape (n, d)
        The leaf the gradient was taken at.

    Examples
    --------
    >>> import torch
    >>> from skebm.objectives import energy_gradient
    >>> def energy(x):
    ...     return 0.5 * (x**2).sum(1)
    >>> x = torch.tensor([[1.0, -2.0]])
    >>> energy_gradient(energy, x)[1]
    tensor([[ 1., -2.]], grad_fn=<MulBackward0>)
    """
    x = x.detach().requires_grad_(True)
    e = energy(x)
    (grad,) = torch.autograd.grad(
        e.sum(), x, create_graph=create_graph, allow_unused=True,
        materialize_grads=True,
    )
    return e, grad, x


def hessian_diagonal(grad, x, *, create_graph=True):
    """Diagonal of the Hessian, ``∂²E/∂x_j²`` for each row, shape ``(n, d)``.

    All ``d`` Hessian-vector products with the basis vectors run in one
    vectorized backward call (``is_grads_batched``); energies whose operations
    have no batching rule fall back to one backward call per dimension. Either
    way the cost is ``d`` backward passes: that is what exact score matching
    costs, and what sliced score matching avoids.

    Parameters
    ----------
    grad : Tensor of shape (n, d)
        ``∇_x E(x)``, computed with ``create_graph=True`` (see
        :func:`energy_gradient`).
    x : Tensor of shape (n, d)
        The leaf ``grad`` was taken at.
    create_graph : bool, default=True
        Keep the graph, for a loss differentiated in the energy's parameters.

    Returns
    -------
    diagonal : Tensor of shape (n, d)
        ``∂²E/∂x_j²`` at each row.

    Examples
    --------
    >>> import torch
    >>> from skebm.objectives.score_matching import energy_gradient, hessian_diagonal
    >>> def energy(x):
    ...     return (x**3).sum(1) / 6  # second derivative x_j
    >>> _, grad, x = energy_gradient(energy, torch.tensor([[1.0, -2.0]]))
    >>> hessian_diagonal(grad, x)
    tensor([[ 1., -2.]], grad_fn=<DiagonalBackward0>)
    """
    n, d = x.shape
    try:
        basis = torch.eye(d, dtype=grad.dtype, device=grad.device)
        basis = basis[:, None, :].expand(d, n, d)
        if not grad.requires_grad:  # E is linear in x: zero Hessian
            return torch.zeros_like(grad)
        (rows,) = torch.autograd.grad(
            grad,
            x,
            grad_outputs=basis,
            is_grads_batched=True,
            create_graph=create_graph,
            allow_unused=True,
            materialize_grads=True,
        )
        if rows.dim() == 2:  # materialized zeros: E is linear in x
            return torch.zeros_like(grad)
        # rows[j, i, :] is row j of the Hessian at sample i.
        return torch.diagonal(rows, dim1=0, dim2=2)
    except RuntimeError:
        cols = []
        for j in range(d):
            (row,) = torch.autograd.grad(
                grad[:, j].sum(),
                x,
                create_graph=create_graph,
                retain_graph=True,
                allow_unused=True,
                materialize_grads=True,
            )
            cols.append(row[:, j])
        return torch.stack(cols, dim=1)


def exact_score_matching_loss(
    energy, x, *, generator=None, boundary_weight=None, base=None
):
    """Mean exact score matching loss of ``energy`` on the batch ``x``.

    ``1/2 ||∇E||^2 - tr ∇²E`` averaged over the rows of ``x``. With
    ``boundary_weight`` (``x -> (h, dh)``, each ``(n, d)``, from a
    :class:`skebm.domains.Domain`), the generalized score matching loss of a
    truncated domain, ``sum_j 1/2 h_j (∂_j E)^2 - h_j ∂_j^2 E - ∂_j h_j ∂_j E``.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``, twice differentiable in ``x``.
    x : Tensor of shape (n, d)
        A batch of data.
    generator : torch.Generator, default=None
        Accepted for the common objective signature; the exact objective is
        deterministic.
    boundary_weight : callable or None, default=None
        ``x -> (h, dh)`` of a domain: the generalized (truncated) objective.
    base : GaussianMixtureBase or None, default=None
        A base density ``q``: ``energy`` is then the correction ``f`` and the
        loss is that of the total energy ``f - log q``, with the base's score
        and Hessian diagonal in closed form (no differentiation through it).

    Returns
    -------
    loss : Tensor of shape ()
        The mean loss, differentiable in the energy's parameters.

    Examples
    --------
    For standard normal data the loss is smallest at the true energy, where it
    equals ``-1/2 tr P = -d/2``:

    >>> import torch
    >>> from skebm.objectives import exact_score_matching_loss
    >>> x = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0),
    ...                 dtype=torch.float64)
    >>> def true_energy(x):
    ...     return 0.5 * (x**2).sum(1)
    >>> def narrow_energy(x):
    ...     return (x**2).sum(1)
    >>> round(exact_score_matching_loss(true_energy, x).item(), 2)
    -1.01
    >>> round(exact_score_matching_loss(narrow_energy, x).item(), 2)
    -0.05
    """
    _, grad, x = energy_gradient(energy, x)
    diag = hessian_diagonal(grad, x)
    if base is not None:
        base_score, base_diag = base.score_and_hessian_diagonal(x.detach())
        grad, diag = grad - base_score, diag - base_diag
    if boundary_weight is None:
        return (0.5 * (grad * grad).sum(1) - diag.sum(1)).mean()
    h, dh = boundary_weight(x.detach())
    return (0.5 * h * grad * grad - h * diag - dh * grad).sum(1).mean()


def solve_gaussian_score_matching(x):
    """Exact minimizer of J for ``E = 1/2 (x - m)^T P (x - m)``.

    J = E[1/2 ||P(x - m)||^2] - tr P is minimized by the sample mean and the
    inverse of the biased sample covariance: score matching equals maximum
    likelihood for a Gaussian.

    Parameters
    ----------
    x : Tensor of shape (n, d)
        Data.

    Returns
    -------
    mean : Tensor of shape (d,)
        Sample mean.
    precision : Tensor of shape (d, d)
        Inverse of the biased sample covariance (symmetrized).
    covariance : Tensor of shape (d, d)
        The biased sample covariance.

    Examples
    --------
    >>> import torch
    >>> from skebm.objectives.score_matching import solve_gaussian_score_matching
    >>> x = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0),
    ...                 dtype=torch.float64)
    >>> mean, precision, covariance = solve_gaussian_score_matching(x)
    >>> torch.allclose(precision @ covariance, torch.eye(2, dtype=torch.float64))
    True
    """
    mean = x.mean(0)
    centered = x - mean
    covariance = centered.T @ centered / x.shape[0]
    # inv_ex: a singular covariance gives non-finite entries for the caller to
    # report, instead of an exception from deep inside torch.
    precision, _ = torch.linalg.inv_ex(covariance)
    precision = 0.5 * (precision + precision.T)
    return mean, precision, covariance


def solve_gaussian_generalized_score_matching(x, h, dh, *, chunk_size=None):
    """Exact minimizer of generalized score matching for a Gaussian energy.

    ``E = 1/2 x^T P x - eta^T x`` is linear in ``theta = (vech P, eta)``, so
    ``J = E[sum_j 1/2 h_j (Px - eta)_j^2 - h_j P_jj - dh_j (Px - eta)_j]`` is
    quadratic in ``theta``: ``J = 1/2 theta^T A theta - c^T theta``. Row ``j`` of
    the gradient is ``w_j^T z`` with ``z = (x, -1)`` and ``w_j = (P_j., eta_j)``,
    so ``A`` gathers the ``(d+1) x (d+1)`` blocks ``E[h_j z z^T]`` at the
    positions of ``w_j`` in ``theta`` (an off-diagonal ``P_ik`` sits in rows
    ``i`` and ``k``: ``P`` stays symmetric). A dense solve of size
    ``d(d+1)/2 + d``.

    Parameters
    ----------
    x, h, dh : Tensor of shape (n, d)
        Data, boundary weights and their derivatives (see
        :meth:`skebm.domains.Domain.boundary_weight`).
    chunk_size : int, default=None
        Rows per chunk of the accumulated moments (bounds memory); None picks
        one from ``d``.

    Returns
    -------
    mean : Tensor (d,)
        ``P^{-1} eta`` (solved; not necessarily inside the domain).
    precision : Tensor (d, d)
        Symmetric, not checked for definiteness.
    objective : float
        ``J`` at the solution.

    Examples
    --------
    Half-normal data (a standard normal truncated to ``x >= 0``): the
    truncated Gaussian's parameters, mean 0 and precision 1, are recovered
    although the data's own mean and variance are not 0 and 1.

    >>> import torch
    >>> from skebm.domains import Orthant
    >>> from skebm.objectives.score_matching import (
    ...     solve_gaussian_generalized_score_matching)
    >>> x = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0),
    ...                 dtype=torch.float64).abs()
    >>> h, dh = Orthant().boundary_weight(x)
    >>> mean, precision, _ = solve_gaussian_generalized_score_matching(x, h, dh)
    >>> mean.abs().max() < 0.1, (precision - torch.eye(2)).abs().max() < 0.15
    (tensor(True), tensor(True))
    """
    n, d = x.shape
    dtype, device = x.dtype, x.device
    n_p = d * (d + 1) // 2
    rows, cols = torch.triu_indices(d, d, device=device)
    vech = torch.empty(d, d, dtype=torch.long, device=device)
    vech[rows, cols] = torch.arange(n_p, device=device)
    vech[cols, rows] = torch.arange(n_p, device=device)
    eta_idx = n_p + torch.arange(d, device=device)
    idx = torch.cat([vech, eta_idx[:, None]], dim=1)  # (d, d+1): theta index of w_j
    z = torch.cat([x, -torch.ones(n, 1, dtype=dtype, device=device)], dim=1)
    if chunk_size is None:
        chunk_size = max(1, int(2e7) // (d * (d + 1)))
    blocks = torch.zeros(d, d + 1, d + 1, dtype=dtype, device=device)
    for start in range(0, n, chunk_size):
        zc, hc = z[start : start + chunk_size], h[start : start + chunk_size]
        weighted = hc.T[:, :, None] * zc[None]  # (d, m, d+1)
        blocks += weighted.transpose(1, 2) @ zc
    blocks /= n
    linear = (dh.T @ z) / n  # (d, d+1): E[dh_j z]
    linear[torch.arange(d), torch.arange(d)] += h.mean(0)  # E[h_j] at P_jj
    k = n_p + d
    A = torch.zeros(k, k, dtype=dtype, device=device)
    A.index_put_(
        (idx[:, :, None].expand_as(blocks), idx[:, None, :].expand_as(blocks)),
        blocks,
        accumulate=True,
    )
    c = torch.zeros(k, dtype=dtype, device=device)
    c.index_put_((idx,), linear, accumulate=True)
    theta = torch.linalg.solve(A, c)
    precision = theta[vech]
    eta = theta[n_p:]
    mean = torch.linalg.solve(precision, eta)
    return mean, precision, float(-0.5 * c @ theta)


def solve_linear_score_matching(
    statistics, x, *, alpha=0.0, chunk_size=1024, boundary_weight=None
):
    """Closed-form score matching for ``E(x) = t(x)^T theta``.

    J(theta) = 1/2 theta^T A theta - b^T theta with
    A = E[sum_j ∂_j t ∂_j t^T] and b = E[sum_j ∂_j^2 t], so
    theta = (A + alpha I)^{-1} b. With ``boundary_weight`` (``x -> (h, dh)``)
    the generalized objective: A = E[sum_j h_j ∂_j t ∂_j t^T] and
    b = E[sum_j h_j ∂_j^2 t + ∂_j h_j ∂_j t]. Derivatives come from
    ``torch.func`` (vectorized over samples, in chunks to bound memory).

    Parameters
    ----------
    statistics : callable
        ``t``: ``(n, d) -> (n, k)``, twice differentiable in ``x``.
    x : Tensor of shape (n, d)
        Data.
    alpha : float, default=0.0
        Ridge added to ``A``.
    chunk_size : int, default=1024
        Rows per vectorized derivative evaluation.
    boundary_weight : callable or None, default=None
        ``x -> (h, dh)`` of a domain: the generalized (truncated) objective.

    Returns
    -------
    theta : Tensor of shape (k,)
        The minimizer.
    objective_value : float
        ``J(theta)``.

    Examples
    --------
    ``E(x) = theta_1 x^2 + theta_2 x^4`` on standard normal data: the
    solution is close to ``(1/2, 0)``.

    >>> import torch
    >>> from skebm.objectives import solve_linear_score_matching
    >>> def statistics(x):
    ...     return torch.cat([x**2, x**4], dim=1)
    >>> x = torch.randn(5000, 1, generator=torch.Generator().manual_seed(0),
    ...                 dtype=torch.float64)
    >>> theta, value = solve_linear_score_matching(statistics, x)
    >>> [round(t, 1) + 0.0 for t in theta.tolist()]  # + 0.0: no -0.0
    [0.5, 0.0]
    """
    from torch.func import hessian, jacrev, vmap

    def single(v):
        return statistics(v[None, :])[0]

    jac_fn = vmap(jacrev(single))
    hess_fn = vmap(hessian(single))
    A = None
    b = None
    n = x.shape[0]
    for start in range(0, n, chunk_size):
        xb = x[start : start + chunk_size]
        jac = jac_fn(xb)  # (m, k, d)
        hess_diag = torch.diagonal(hess_fn(xb), dim1=-2, dim2=-1)  # (m, k, d)
        if boundary_weight is None:
            A_chunk = torch.einsum("mkd,mld->kl", jac, jac)
            b_chunk = hess_diag.sum((0, 2))
        else:
            h, dh = boundary_weight(xb)
            A_chunk = torch.einsum("mkd,md,mld->kl", jac, h, jac)
            b_chunk = torch.einsum("mkd,md->k", hess_diag, h) + torch.einsum(
                "mkd,md->k", jac, dh
            )
        A = A_chunk if A is None else A + A_chunk
        b = b_chunk if b is None else b + b_chunk
    A = A / n
    b = b / n
    k = A.shape[0]
    A_reg = A + alpha * torch.eye(k, dtype=A.dtype, device=A.device)
    theta = torch.linalg.solve(A_reg, b)
    objective = 0.5 * theta @ A @ theta - b @ theta
    return theta, float(objective)
