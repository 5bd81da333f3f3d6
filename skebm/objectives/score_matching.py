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
    "solve_gaussian_score_matching",
    "solve_linear_score_matching",
]


def energy_gradient(energy, x, *, create_graph=True):
    """Return ``(E(x), ∇_x E(x), x)`` with ``x`` a leaf that requires grad."""
    x = x.detach().requires_grad_(True)
    e = energy(x)
    (grad,) = torch.autograd.grad(e.sum(), x, create_graph=create_graph)
    return e, grad, x


def hessian_diagonal(grad, x, *, create_graph=True):
    """Diagonal of the Hessian, ``∂²E/∂x_j²`` for each row, shape ``(n, d)``.

    All ``d`` Hessian-vector products with the basis vectors run in one
    vectorized backward call (``is_grads_batched``); energies whose operations
    have no batching rule fall back to one backward call per dimension. Either
    way the cost is ``d`` backward passes: that is what exact score matching
    costs, and what sliced score matching avoids.
    """
    n, d = x.shape
    try:
        basis = torch.eye(d, dtype=grad.dtype, device=grad.device)
        basis = basis[:, None, :].expand(d, n, d)
        (rows,) = torch.autograd.grad(
            grad,
            x,
            grad_outputs=basis,
            is_grads_batched=True,
            create_graph=create_graph,
        )
        # rows[j, i, :] is row j of the Hessian at sample i.
        return torch.diagonal(rows, dim1=0, dim2=2)
    except RuntimeError:
        cols = []
        for j in range(d):
            (row,) = torch.autograd.grad(
                grad[:, j].sum(), x, create_graph=create_graph, retain_graph=True
            )
            cols.append(row[:, j])
        return torch.stack(cols, dim=1)


def exact_score_matching_loss(energy, x, *, generator=None):
    """Mean exact score matching loss of ``energy`` on the batch ``x``.

    ``generator`` is accepted for the common objective signature; the exact
    objective is deterministic.
    """
    _, grad, x = energy_gradient(energy, x)
    trace = hessian_diagonal(grad, x).sum(1)
    return (0.5 * (grad * grad).sum(1) - trace).mean()


def solve_gaussian_score_matching(x):
    """Exact minimizer of J for ``E = 1/2 (x - m)^T P (x - m)``.

    J = E[1/2 ||P(x - m)||^2] - tr P is minimized by the sample mean and the
    inverse of the biased sample covariance: score matching equals maximum
    likelihood for a Gaussian. Returns ``(mean, precision, covariance)``.
    """
    mean = x.mean(0)
    centered = x - mean
    covariance = centered.T @ centered / x.shape[0]
    precision = torch.linalg.inv(covariance)
    precision = 0.5 * (precision + precision.T)
    return mean, precision, covariance


def solve_linear_score_matching(statistics, x, *, alpha=0.0, chunk_size=1024):
    """Closed-form score matching for ``E(x) = t(x)^T theta``.

    J(theta) = 1/2 theta^T A theta - b^T theta with
    A = E[sum_j ∂_j t ∂_j t^T] and b = E[sum_j ∂_j^2 t], so
    theta = (A + alpha I)^{-1} b. Derivatives come from ``torch.func``
    (vectorized over samples, in chunks to bound memory).

    Returns ``(theta, objective_value)``.
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
        hess = hess_fn(xb)  # (m, k, d, d)
        lap = torch.diagonal(hess, dim1=-2, dim2=-1).sum(-1)  # (m, k)
        A_chunk = torch.einsum("mkd,mld->kl", jac, jac)
        b_chunk = lap.sum(0)
        A = A_chunk if A is None else A + A_chunk
        b = b_chunk if b is None else b + b_chunk
    A = A / n
    b = b / n
    k = A.shape[0]
    A_reg = A + alpha * torch.eye(k, dtype=A.dtype, device=A.device)
    theta = torch.linalg.solve(A_reg, b)
    objective = 0.5 * theta @ A @ theta - b @ theta
    return theta, float(objective)
