"""Asymptotic covariances of score matching, pseudo-likelihood and maximum
likelihood for exponential families (layer C: tensors in, tensors out).

For an energy linear in its parameters, ``E(x) = t(x)ᵀθ``, three estimators
are M-estimators whose asymptotic covariances are computable:

- score matching minimizes ``J(θ) = mean_i [½ θᵀΓ_iθ - b_iᵀθ]``; with
  ``g_i = Γ_iθ - b_i`` its per-sample gradient, ``√n (θ̂ - θ)`` has the
  sandwich covariance ``Γ⁻¹ Cov(g_i) Γ⁻¹`` (``Γ = mean_i Γ_i``);
- pseudo-likelihood (Ising) likewise, with the Hessian of the objective in
  place of ``Γ``;
- maximum likelihood has ``I(θ)⁻¹``, the inverse Fisher information, which
  for an exponential family is the covariance of ``t(x)`` under the model.

The estimator layer (:mod:`skebm.metrics`) compares them.
"""

import math

import torch

from ._enumeration import binary_states


def _derivative_functions(statistics):
    from torch.func import hessian, jacrev, vmap

    def single(v):
        return statistics(v[None, :])[0]

    return vmap(jacrev(single)), vmap(hessian(single))


def linear_score_matching_sandwich(
    statistics, x, theta, *, boundary_weight=None, chunk_size=1024
):
    """The two matrices of the score matching sandwich for ``E = t(x)ᵀθ``.

    Per sample, ``Γ_i = Σ_j h_j ∂_j t ∂_j tᵀ`` and
    ``b_i = Σ_j h_j ∂_j² t + ∂_j h_j ∂_j t`` (``h = 1``, ``∂h = 0`` without a
    domain), so the per-sample gradient of the objective at ``θ`` is
    ``g_i = Γ_iθ - b_i``.

    Parameters
    ----------
    statistics : callable
        ``t``: ``(n, d) -> (n, k)``, twice differentiable in ``x``.
    x : Tensor of shape (n, d)
        Data (float64 recommended).
    theta : Tensor of shape (k,)
        The parameters at which the gradients are taken (the fit).
    boundary_weight : callable or None, default=None
        ``x -> (h, dh)`` of a domain: generalized score matching.
    chunk_size : int, default=1024
        Rows per vectorized derivative evaluation.

    Returns
    -------
    hessian : Tensor of shape (k, k)
        ``Γ = mean_i Γ_i``, the Hessian of the objective.
    gradient_covariance : Tensor of shape (k, k)
        ``Cov(g_i)`` over the samples (biased, divided by ``n``).
    """
    jac_fn, hess_fn = _derivative_functions(statistics)
    n = x.shape[0]
    k = theta.shape[0]
    gamma = x.new_zeros(k, k)
    grads = []
    for start in range(0, n, chunk_size):
        xb = x[start : start + chunk_size]
        jac = jac_fn(xb)  # (m, k, d)
        hess_diag = torch.diagonal(hess_fn(xb), dim1=-2, dim2=-1)  # (m, k, d)
        if boundary_weight is None:
            h, dh = torch.ones_like(xb), torch.zeros_like(xb)
        else:
            h, dh = boundary_weight(xb)
        energy_grad = torch.einsum("mkd,k->md", jac, theta)  # ∂_j E
        g = (
            torch.einsum("mkd,md->mk", jac, h * energy_grad)
            - torch.einsum("mkd,md->mk", hess_diag, h)
            - torch.einsum("mkd,md->mk", jac, dh)
        )
        gamma += torch.einsum("mkd,md,mld->kl", jac, h, jac)
        grads.append(g)
    g = torch.cat(grads)
    centered = g - g.mean(0)
    return gamma / n, centered.T @ centered / n


def weighted_covariance(t, weights=None):
    """Covariance of the rows of ``t`` (``(n, k)``), optionally weighted.

    Parameters
    ----------
    t : Tensor of shape (n, k)
        Values of the statistics.
    weights : Tensor of shape (n,) or None, default=None
        Probabilities summing to one (quadrature); None for equal weights.

    Returns
    -------
    covariance : Tensor of shape (k, k)
    """
    if weights is None:
        weights = t.new_full((t.shape[0],), 1.0 / t.shape[0])
    mean = weights @ t
    centered = t - mean
    return (centered * weights[:, None]).T @ centered


def quadratic_statistics(x):
    """Statistics of a Gaussian energy ``½ xᵀPx - ηᵀx``: ``(t, names)``.

    ``t(x) = (½ x_i² for i = j, x_i x_j for i < j, -x)``, the pairs in the
    order of ``torch.triu_indices``, so that ``E = t(x)ᵀθ`` with
    ``θ = (P_ij for i <= j, η)``: one parameter per free entry of the
    symmetric ``P``.
    """
    d = x.shape[1]
    rows, cols = torch.triu_indices(d, d, device=x.device)
    scale = torch.where(rows == cols, 0.5, 1.0).to(x.dtype)
    return torch.cat([x[:, rows] * x[:, cols] * scale, -x], dim=1)


def quadratic_parameters(mean, precision):
    """``θ = (P_ij for i <= j, η = P m)`` of :func:`quadratic_statistics`."""
    d = mean.shape[0]
    rows, cols = torch.triu_indices(d, d, device=mean.device)
    return torch.cat([precision[rows, cols], precision @ mean])


def gaussian_quadratic_covariance(mean, covariance):
    """Covariance of :func:`quadratic_statistics` under ``N(mean, covariance)``.

    From Isserlis' theorem: ``Cov(x_i x_j, x_k x_l) = S_ik S_jl + S_il S_jk +
    m_i m_k S_jl + m_i m_l S_jk + m_j m_k S_il + m_j m_l S_ik`` and
    ``Cov(x_i x_j, x_k) = m_i S_jk + m_j S_ik``.

    Parameters
    ----------
    mean : Tensor of shape (d,)
    covariance : Tensor of shape (d, d)

    Returns
    -------
    covariance : Tensor of shape (k, k)
        ``k = d (d + 1) / 2 + d``.
    """
    m, S = mean, covariance
    d = m.shape[0]
    i, j = torch.triu_indices(d, d, device=m.device)
    scale = torch.where(i == j, 0.5, 1.0).to(m.dtype)

    def pair(a, b):  # S[a][:, b] for index vectors
        return S[a[:, None], b[None, :]]

    quad = (
        pair(i, i) * pair(j, j)
        + pair(i, j) * pair(j, i)
        + m[i, None] * m[None, i] * pair(j, j)
        + m[i, None] * m[None, j] * pair(j, i)
        + m[j, None] * m[None, i] * pair(i, j)
        + m[j, None] * m[None, j] * pair(i, i)
    ) * (scale[:, None] * scale[None, :])
    # Cov(c x_i x_j, -x_k) = -c (m_i S_jk + m_j S_ik).
    cross = -scale[:, None] * (m[i, None] * S[j] + m[j, None] * S[i])
    return torch.cat(
        [torch.cat([quad, cross], 1), torch.cat([cross.T, S], 1)], 0
    )


@torch.no_grad()
def quadrature_nodes(
    energy, lower, upper, *, domain=None, n_points=None, max_expansions=8
):
    """Grid nodes and normalized trapezoid weights of ``exp(-E)``, ``d <= 2``.

    The box ``[lower, upper]`` is doubled about its centre until ``exp(-E)``
    on its edges that are not domain bounds is below ``e^-30`` of its peak
    (as :func:`skebm.partition.log_partition_quadrature` does for log Z); the
    weights then integrate any polynomial statistic to within the
    trapezoid rule's error.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``.
    lower, upper : Tensor of shape (d,)
        Initial box.
    domain : Domain or None, default=None
        Integrate over the domain only.
    n_points : int or None, default=None
        Nodes per axis: 4097 in 1-D, 301 in 2-D by default.
    max_expansions : int, default=8
        Most doublings of the box.

    Returns
    -------
    points : Tensor of shape (m, d)
    weights : Tensor of shape (m,)
        Probabilities of the nodes under the model (summing to one).
    """
    d = lower.shape[0]
    if n_points is None:
        n_points = 4097 if d == 1 else 301
    if domain is None:
        dom_lower = torch.full_like(lower, -math.inf)
        dom_upper = torch.full_like(upper, math.inf)
    else:
        dom_lower, dom_upper = domain.bounds(d, dtype=lower.dtype, device=lower.device)
    lower, upper = lower.clone(), upper.clone()
    for _ in range(max_expansions + 1):
        lower = torch.maximum(lower, dom_lower)
        upper = torch.minimum(upper, dom_upper)
        axes = [
            torch.linspace(float(lower[j]), float(upper[j]), n_points,
                           dtype=lower.dtype, device=lower.device)
            for j in range(d)
        ]
        mesh = torch.meshgrid(*axes, indexing="ij")
        points = torch.stack([g.reshape(-1) for g in mesh], dim=1)
        log_f = -energy(points)
        if domain is not None:
            log_f = torch.where(domain.contains(points), log_f, -math.inf)
        grid = log_f.reshape((n_points,) * d)
        edges = []
        for j in range(d):
            bounded = (lower[j] <= dom_lower[j], upper[j] >= dom_upper[j])
            for end, hard in zip((0, -1), bounded, strict=True):
                if not bool(hard):
                    index = [slice(None)] * d
                    index[j] = end
                    edges.append(float(grid[tuple(index)].max()))
        if float(log_f.max()) - max(edges, default=-math.inf) > 30.0:
            break
        center, half = (upper + lower) / 2, (upper - lower) / 2
        lower, upper = center - 2 * half, center + 2 * half
    log_w = torch.zeros_like(grid)
    for j in range(d):  # half weight on the first and last node of each axis
        for end in (0, -1):
            index = [slice(None)] * d
            index[j] = end
            log_w[tuple(index)] -= math.log(2.0)
    return points, torch.softmax((grid + log_w).reshape(-1), 0)


# ------------------------------------------------------------------ Ising
def ising_statistics(spins):
    """The Ising model's sufficient statistics ``(σ_i, σ_iσ_j for i < j)``.

    ``E(σ) = -t(σ)ᵀθ`` with ``θ = (h, J_ij for i < j)``, the pairs in the
    order of ``torch.triu_indices(d, d, 1)``.
    """
    d = spins.shape[1]
    i, j = torch.triu_indices(d, d, 1, device=spins.device)
    return torch.cat([spins, spins[:, i] * spins[:, j]], dim=1)


@torch.no_grad()
def ising_fisher_enumerate(h, J, *, chunk_size=16384):
    """Exact covariance of :func:`ising_statistics` under the Ising model.

    Sums over the ``2^d`` states in chunks (one pass for log Z, one for the
    moments); the cost is ``2^d k²`` with ``k = d (d + 1) / 2`` statistics.

    Parameters
    ----------
    h : Tensor of shape (d,)
    J : Tensor of shape (d, d)
        Symmetric, zero diagonal.
    chunk_size : int, default=16384

    Returns
    -------
    fisher : Tensor of shape (k, k)
    """
    d = h.shape[0]
    total = 2**d

    def states(start):
        return binary_states(start, min(start + chunk_size, total), d,
                             values=(-1.0, 1.0), dtype=h.dtype, device=h.device)

    def log_f(s):
        return s @ h + 0.5 * ((s @ J) * s).sum(1)

    log_z = torch.logsumexp(
        torch.stack([torch.logsumexp(log_f(states(s)), 0)
                     for s in range(0, total, chunk_size)]), 0)
    k = d + d * (d - 1) // 2
    first = h.new_zeros(k)
    second = h.new_zeros(k, k)
    for start in range(0, total, chunk_size):
        s = states(start)
        p = torch.exp(log_f(s) - log_z)
        t = ising_statistics(s)
        first += p @ t
        second += (t * p[:, None]).T @ t
    return second - torch.outer(first, first)


def ising_pseudo_likelihood_sandwich(spins, h, J):
    """Hessian and per-sample gradient covariance of the Ising pseudo-likelihood.

    The objective is ``mean_s Σ_i [log 2cosh a_i - σ_i a_i]``, ``a = h + Jσ``,
    in ``θ = (h, J_ij for i < j)``. With ``r = tanh a - σ`` and
    ``w = 1 - tanh² a``, the gradient of one sample is ``r_i`` for ``h_i`` and
    ``r_i σ_j + r_j σ_i`` for ``J_ij``; the Hessian is
    ``mean_s Σ_i w_i z_i z_iᵀ`` with ``z_i = ∂a_i/∂θ`` (1 at ``h_i``,
    ``σ_j`` at ``J_ij``). No penalty is included.

    Parameters
    ----------
    spins : Tensor of shape (n, d)
        Data in ``{-1, +1}``.
    h : Tensor of shape (d,)
    J : Tensor of shape (d, d)

    Returns
    -------
    hessian : Tensor of shape (k, k)
    gradient_covariance : Tensor of shape (k, k)
    """
    n, d = spins.shape
    a = h + spins @ J
    tanh = torch.tanh(a)
    r = tanh - spins
    w = 1.0 - tanh * tanh
    i, j = torch.triu_indices(d, d, 1, device=spins.device)
    grads = torch.cat([r, r[:, i] * spins[:, j] + r[:, j] * spins[:, i]], dim=1)
    centered = grads - grads.mean(0)
    covariance = centered.T @ centered / n
    # Block of spin i over (z_i)_k: σ_k for k != i and 1 at k = i (h_i).
    blocks = torch.einsum("si,sj,sk->ijk", w, spins, spins) / n  # (d, d, d)
    edge = spins.T @ w / n  # edge[k, i] = mean_s w_si σ_sk
    diag = torch.arange(d, device=spins.device)
    blocks[diag, diag, :] = edge.T
    blocks[diag, :, diag] = edge.T
    blocks[diag, diag, diag] = w.mean(0)
    # Parameter index of (z_i)_k: h_i at k = i, the pair (min, max) otherwise.
    pair = torch.empty(d, d, dtype=torch.long, device=spins.device)
    pair[i, j] = d + torch.arange(len(i), device=spins.device)
    pair[j, i] = pair[i, j]
    pair[diag, diag] = diag
    k = d + len(i)
    hessian = spins.new_zeros(k, k)
    hessian.index_put_(
        (pair[:, :, None].expand(d, d, d), pair[:, None, :].expand(d, d, d)),
        blocks,
        accumulate=True,
    )
    return hessian, covariance
