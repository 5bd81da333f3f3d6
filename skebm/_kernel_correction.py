"""A kernel exponential family correction of a base density (layer C).

The model is ``log p(x) = log q(x) - f(x) - log Z_f`` with ``q`` a fitted base
density and ``f`` a weighted sum of Gaussian radial basis functions centred at
``M`` landmarks,

.. math::
    f(x) = \\sum_m \\theta_m \\varphi_m(x), \\qquad
    \\varphi_m(x) = \\exp\\Big(-\\tfrac12 \\sum_j (x_j - z_{mj})^2 / \\sigma_j^2\\Big).

The total energy ``E = -log q + f`` is linear in ``theta``, so the score
matching objective (Hyvärinen, 2005) is quadratic. With ``s = ∇ log q``,
``G`` the ``d x M`` matrix of feature gradients and ``L`` the feature
Laplacians, ``∇E = -s + G theta`` and ``tr ∇²E = -Δ log q + L^T theta``:

.. math::
    J(\\theta) = \\mathbb{E}\\big[\\tfrac12 \\|\\nabla E\\|^2
                 - \\operatorname{tr} \\nabla^2 E\\big]
               = \\tfrac12 \\theta^T C \\theta - \\theta^T b + c_0,

    C = \\mathbb{E}[G^T G], \\quad
    b = \\mathbb{E}[L + G^T s], \\quad
    c_0 = \\mathbb{E}[\\Delta \\log q + \\tfrac12 \\|s\\|^2].

By Stein's identity ``b = E[G^T (s - s_data)]``: the features measure where the
base's score departs from the data's. Local features see that departure where
a smooth network started at ``f = 0`` does not. The regularized minimizer is
``theta = (C + alpha R)^{-1} b``, ``R`` the identity or the Gram matrix of the
landmarks (``theta^T K theta`` is the squared RKHS norm of ``f``; Sriperumbudur
et al., 2017, "Density estimation in infinite dimensional exponential
families", JMLR 18; Sutherland et al., 2018, "Efficient and principled score
estimation with Nyström kernel exponential families", AISTATS).

Sliced score matching with projections ``E[v v^T] = I`` has the same
expectation, so its closed form is this one.
"""

import math

import torch
from torch import nn

__all__ = [
    "RBFCorrection",
    "kernel_score_matching_objective",
    "kernel_score_matching_system",
    "solve_importance_likelihood",
    "solve_kernel_score_matching",
]


class RBFCorrection(nn.Module):
    """``f(x) = sum_m theta_m exp(-1/2 sum_j (x_j - z_mj)^2 / sigma_j^2)``.

    Its value, gradient and Laplacian come in closed form, so the score
    matching system is assembled without automatic differentiation; it is also
    an ordinary differentiable module, so autograd objectives accept it.

    Parameters
    ----------
    landmarks : Tensor of shape (n_landmarks, n_features)
        The centres ``z_m``.
    bandwidth : float or Tensor of shape (n_features,)
        ``sigma``: one for every column, or one per column.
    coef : Tensor of shape (n_landmarks,), default=None
        ``theta``; zeros (``f = 0``) when None.

    Examples
    --------
    >>> import torch
    >>> from skebm._kernel_correction import RBFCorrection
    >>> f = RBFCorrection(torch.zeros(1, 2), 1.0, torch.ones(1))
    >>> f(torch.zeros(1, 2))
    tensor([1.], dtype=torch.float64, grad_fn=<MvBackward0>)
    >>> f.laplacian(torch.zeros(1, 2))  # -sum_j 1/sigma_j^2 at the centre
    tensor([-2.], dtype=torch.float64)
    """

    def __init__(self, landmarks, bandwidth, coef=None):
        super().__init__()
        landmarks = torch.as_tensor(landmarks, dtype=torch.float64)
        n_landmarks, n_features = landmarks.shape
        bandwidth = torch.as_tensor(bandwidth, dtype=landmarks.dtype)
        bandwidth = bandwidth.expand(n_features).clone()
        if coef is None:
            coef = torch.zeros(n_landmarks, dtype=landmarks.dtype)
        coef = torch.as_tensor(coef, dtype=landmarks.dtype).reshape(n_landmarks)
        self.n_features = n_features
        self.register_buffer("landmarks", landmarks)
        self.register_buffer("bandwidth", bandwidth)
        self.coef = nn.Parameter(coef.clone())

    @property
    def n_landmarks(self):
        return self.landmarks.shape[0]

    def features(self, x):
        """``phi_m(x)`` for every row and landmark, shape ``(n, n_landmarks)``."""
        xs = x / self.bandwidth
        zs = self.landmarks / self.bandwidth
        sq = (xs * xs).sum(1, keepdim=True) - 2 * xs @ zs.T + (zs * zs).sum(1)
        return torch.exp(-0.5 * sq.clamp_min(0.0))

    def forward(self, x):
        return self.features(x) @ self.coef

    def gradient(self, x):
        """``∇_x f``, shape ``(n, n_features)``, in closed form."""
        with torch.no_grad():
            w = self.features(x) * self.coef  # (n, M)
            # ∂_j f = -sum_m w_m (x_j - z_mj) / sigma_j^2
            return (
                -(x * w.sum(1, keepdim=True) - w @ self.landmarks) / self.bandwidth**2
            )

    def laplacian(self, x):
        """``Δ f``, shape ``(n,)``, in closed form."""
        with torch.no_grad():
            phi = self.features(x)
            # Δ phi_m = phi_m (sum_j (x_j - z_mj)^2 / sigma_j^4 - sum_j 1 / sigma_j^2)
            radial = _squared_gradient_sums(self, x) - (self.bandwidth**-2).sum()
            return (phi * radial) @ self.coef

    def gram(self):
        """``K[m, m'] = phi_m(z_m')``, the landmarks' Gram matrix (RKHS norm)."""
        with torch.no_grad():
            return self.features(self.landmarks)


def _squared_gradient_sums(correction, x):
    """``sum_j (x_j - z_mj)^2 / sigma_j^4``, shape ``(n, M)``."""
    inv4 = correction.bandwidth**-4
    z = correction.landmarks
    return (
        (x * x * inv4).sum(1, keepdim=True)
        - 2 * (x * inv4) @ z.T
        + (z * z * inv4).sum(1)
    ).clamp_min(0.0)


def kernel_score_matching_system(
    correction, x, base_score, *, base_laplacian=None, chunk_size=4096
):
    """``C``, ``b`` (and ``c_0``) of the score matching objective of ``-log q + f``.

    ``J(theta) = 1/2 theta^T C theta - theta^T b + c_0`` is the mean exact
    score matching loss over the rows of ``x`` of the total energy
    ``-log q(x) + sum_m theta_m phi_m(x)``; see the module docstring.

    Parameters
    ----------
    correction : RBFCorrection
        Its landmarks and bandwidths define the features (its ``coef`` is
        not used).
    x : Tensor of shape (n, n_features)
        Data.
    base_score : Tensor of shape (n, n_features)
        ``∇ log q`` at the rows of ``x``.
    base_laplacian : Tensor of shape (n,), default=None
        ``Δ log q`` at the rows of ``x``, only for ``c_0``.
    chunk_size : int, default=4096
        Rows per block (memory ``chunk_size x n_landmarks``).

    Returns
    -------
    C : Tensor of shape (n_landmarks, n_landmarks)
        ``E[G^T G]``, symmetric positive semi-definite.
    b : Tensor of shape (n_landmarks,)
        ``E[L + G^T s]``.
    c0 : float or None
        ``E[Δ log q + 1/2 ||s||^2]`` when ``base_laplacian`` is given.

    Examples
    --------
    >>> import torch
    >>> from skebm._kernel_correction import (
    ...     RBFCorrection, kernel_score_matching_system)
    >>> x = torch.randn(100, 2, dtype=torch.float64,
    ...                 generator=torch.Generator().manual_seed(0))
    >>> f = RBFCorrection(x[:10], 0.5)
    >>> C, b, _ = kernel_score_matching_system(f, x, -x)  # base N(0, I)
    >>> C.shape, b.shape
    (torch.Size([10, 10]), torch.Size([10]))
    """
    n, d = x.shape
    z = correction.landmarks
    inv2 = correction.bandwidth**-2
    m = z.shape[0]
    C = torch.zeros(m, m, dtype=x.dtype, device=x.device)
    b = torch.zeros(m, dtype=x.dtype, device=x.device)
    for start in range(0, n, chunk_size):
        xb = x[start : start + chunk_size]
        sb = base_score[start : start + chunk_size]
        phi = correction.features(xb)
        lap = torch.zeros_like(phi)
        for j in range(d):
            # a = -∂_j phi = phi u, u = (x_j - z_mj) / sigma_j^2;
            # ∂_j^2 phi = phi (u^2 - 1 / sigma_j^2)
            u = (xb[:, j : j + 1] - z[:, j]) * inv2[j]
            a = phi * u
            C += a.T @ a
            lap += a * u - phi * inv2[j]
            b -= a.T @ sb[:, j]
        b += lap.sum(0)
    C /= n
    b /= n
    c0 = None
    if base_laplacian is not None:
        c0 = float((base_laplacian + 0.5 * (base_score * base_score).sum(1)).mean())
    return C, b, c0


def kernel_score_matching_objective(theta, C, b, c0=0.0):
    """``1/2 theta^T C theta - theta^T b + c0`` (the mean score matching loss).

    Parameters
    ----------
    theta : Tensor of shape (n_landmarks,) or (n_landmarks, k)
        One coefficient vector, or ``k`` of them as columns.
    C, b, c0 : from :func:`kernel_score_matching_system`

    Returns
    -------
    J : Tensor of shape () or (k,)
    """
    Ct = C @ theta
    return 0.5 * (theta * Ct).sum(0) - b @ theta + c0


def solve_kernel_score_matching(C, b, *, alpha, penalty="ridge", jitter=1e-10):
    """``theta = (C + alpha R)^{-1} b``, the regularized score matching minimizer.

    Parameters
    ----------
    C, b : Tensors of shapes (M, M) and (M,)
        From :func:`kernel_score_matching_system`.
    alpha : float or sequence of float
        Regularization strength(s); several give several solutions at once.
    penalty : "ridge" or Tensor of shape (M, M), default="ridge"
        ``R``: the identity, or a symmetric positive semi-definite matrix such
        as :meth:`RBFCorrection.gram` (the RKHS norm of ``f``).
    jitter : float, default=1e-10
        Added to the diagonal, relative to ``trace(C) / M``, so that a
        singular ``C + alpha R`` (landmarks closer than the bandwidth)
        still factors.

    Returns
    -------
    theta : Tensor of shape (M,) or (M, len(alpha))

    Examples
    --------
    >>> import torch
    >>> from skebm._kernel_correction import solve_kernel_score_matching
    >>> solve_kernel_score_matching(torch.eye(2), torch.ones(2), alpha=1.0)
    tensor([0.5000, 0.5000])
    """
    scalar = isinstance(alpha, (int, float))
    alphas = [float(alpha)] if scalar else [float(a) for a in alpha]
    m = C.shape[0]
    eye = torch.eye(m, dtype=C.dtype, device=C.device)
    R = eye if isinstance(penalty, str) and penalty == "ridge" else penalty
    scale = float(torch.diagonal(C).mean()) if m else 1.0
    scale = scale if math.isfinite(scale) and scale > 0 else 1.0
    out = []
    for a in alphas:
        A = C + a * R + jitter * scale * eye
        L, info = torch.linalg.cholesky_ex(A)
        if int(info) == 0:
            out.append(torch.cholesky_solve(b[:, None], L)[:, 0])
        else:  # not positive definite in floating point: a least squares solve
            out.append(torch.linalg.lstsq(A, b[:, None]).solution[:, 0])
    theta = torch.stack(out, 1)
    return theta[:, 0] if scalar else theta


def solve_importance_likelihood(
    feature_mean, draw_features, *, alpha, penalty="ridge", max_iter=200
):
    """Penalized maximum likelihood of ``p = q exp(-f) / Z_f``, ``Z_f`` by draws from q.

    Minimizes the convex function

    .. math::
        \\ell(\\theta) = \\bar\\varphi^T \\theta
        + \\log \\tfrac1N \\sum_i \\exp(-\\varphi(y_i)^T \\theta)
        + \\tfrac12 \\alpha\\, \\theta^T R \\theta,
        \\qquad y_i \\sim q,

    the negative mean log-likelihood of the data (``bar phi`` their mean
    feature vector) with ``log Z_f`` replaced by its importance sampling
    estimate over fixed draws (L-BFGS; several ``alpha`` are solved from the
    largest down, each warm-started from the last). The fit can exploit its
    own draws where they are sparse: validate it with other draws.

    Parameters
    ----------
    feature_mean : Tensor of shape (M,)
        Mean of ``phi(x)`` over the data.
    draw_features : Tensor of shape (N, M)
        ``phi(y_i)`` at draws ``y_i`` from the base.
    alpha : float or sequence of float
        Regularization strength(s).
    penalty : "ridge" or Tensor of shape (M, M), default="ridge"
        ``R``, as in :func:`solve_kernel_score_matching`.
    max_iter : int, default=200
        L-BFGS iterations for each ``alpha``.

    Returns
    -------
    theta : Tensor of shape (M,) or (M, len(alpha))

    Examples
    --------
    One feature ``phi(x) = x`` over a standard normal base: data with mean
    0.5 give ``theta = -0.5`` (the tilted base ``N(0.5, 1)``).

    >>> import torch
    >>> from skebm._kernel_correction import solve_importance_likelihood
    >>> y = torch.randn(20000, 1, dtype=torch.float64,
    ...                 generator=torch.Generator().manual_seed(0))
    >>> theta = solve_importance_likelihood(
    ...     torch.tensor([0.5], dtype=torch.float64), y, alpha=0.0)
    >>> round(theta.item(), 1)
    -0.5
    """
    scalar = isinstance(alpha, (int, float))
    alphas = [float(alpha)] if scalar else [float(a) for a in alpha]
    m = draw_features.shape[1]
    R = (
        torch.eye(m, dtype=draw_features.dtype, device=draw_features.device)
        if isinstance(penalty, str) and penalty == "ridge"
        else penalty
    )
    log_n = math.log(draw_features.shape[0])
    theta = torch.zeros(m, dtype=draw_features.dtype, device=draw_features.device)
    solutions = {}
    for a in sorted(set(alphas), reverse=True):
        theta = theta.detach().clone().requires_grad_(True)
        opt = torch.optim.LBFGS(
            [theta],
            lr=1.0,
            max_iter=max_iter,
            tolerance_grad=1e-10,
            tolerance_change=1e-14,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure(a=a, theta=theta):
            theta.grad = None
            log_z = torch.logsumexp(-(draw_features @ theta), 0) - log_n
            loss = feature_mean @ theta + log_z + 0.5 * a * theta @ (R @ theta)
            loss.backward()
            return loss

        opt.step(closure)
        solutions[a] = theta.detach().clone()
    out = torch.stack([solutions[a] for a in alphas], 1)
    return out[:, 0] if scalar else out
