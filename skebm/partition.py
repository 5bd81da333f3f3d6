"""Estimates of the log-partition function log Z = log ∫ exp(-E(x)) dx (layer C).

Every estimator returns ``(log_z, stderr)`` as Python floats: ``stderr`` is 0
for a closed form, a discretization error estimate for quadrature, and the
Monte Carlo standard error for annealed importance sampling.
"""

import math

import torch

__all__ = [
    "log_partition_ais",
    "log_partition_gaussian",
    "log_partition_quadrature",
]


def log_partition_gaussian(precision):
    """Closed form for ``E = 1/2 (x - m)^T P (x - m)``.

    log Z = d/2 log(2 pi) - 1/2 log det P.
    """
    d = precision.shape[0]
    _, logdet = torch.linalg.slogdet(precision)
    return 0.5 * d * math.log(2 * math.pi) - 0.5 * float(logdet), 0.0


@torch.no_grad()
def _negative_energy_on(energy, points, chunk_size):
    out = [
        -energy(points[i : i + chunk_size]) for i in range(0, len(points), chunk_size)
    ]
    return torch.cat(out)


def _grid_log_integral(energy, lower, upper, n_points, chunk_size):
    """Riemann sum of exp(-E) over a regular grid; also returns the boundary gap."""
    d = lower.shape[0]
    axes = [
        torch.linspace(
            float(lower[j]),
            float(upper[j]),
            n_points,
            dtype=lower.dtype,
            device=lower.device,
        )
        for j in range(d)
    ]
    mesh = torch.meshgrid(*axes, indexing="ij")
    points = torch.stack([m.reshape(-1) for m in mesh], dim=1)
    log_f = _negative_energy_on(energy, points, chunk_size).reshape((n_points,) * d)
    cell = math.prod(float(upper[j] - lower[j]) / (n_points - 1) for j in range(d))
    full = torch.logsumexp(log_f.reshape(-1), 0) + math.log(cell)
    # Every other node: the same sum with twice the spacing.
    coarse_f = log_f[(slice(None, None, 2),) * d]
    coarse = torch.logsumexp(coarse_f.reshape(-1), 0) + math.log(cell * 2**d)
    edge = torch.zeros_like(log_f, dtype=torch.bool)
    for j in range(d):
        index = [slice(None)] * d
        index[j] = 0
        edge[tuple(index)] = True
        index[j] = -1
        edge[tuple(index)] = True
    edge_gap = float(log_f.max() - log_f[edge].max())
    return float(full), abs(float(full) - float(coarse)), edge_gap


def log_partition_quadrature(
    energy, lower, upper, *, n_points=None, chunk_size=65536, max_expansions=4
):
    """log Z by a Riemann sum on a regular grid, for ``d <= 2``.

    The box ``[lower, upper]`` is widened (doubled about its centre) until
    ``exp(-E)`` on its edges is below ``e^-20`` of its peak, so that no mass is
    cut off. The error estimate is the difference from the same sum on every
    other grid node.

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``.
    lower, upper : Tensor of shape (d,)
        Initial integration box.
    n_points : int, default=None
        Nodes per axis (odd); 8193 in 1-D and 401 in 2-D by default.
    """
    d = lower.shape[0]
    if d > 2:
        raise ValueError(f"Quadrature is only available for d <= 2, got d={d}.")
    if n_points is None:
        n_points = 8193 if d == 1 else 401
    lower, upper = lower.clone(), upper.clone()
    for _ in range(max_expansions + 1):
        log_z, err, edge_gap = _grid_log_integral(
            energy, lower, upper, n_points, chunk_size
        )
        if edge_gap > 20.0:
            break
        center, half = (upper + lower) / 2, (upper - lower) / 2
        lower, upper = center - 2 * half, center + 2 * half
    return log_z, err


def _log_mean_exp_with_stderr(log_w):
    """log of the mean of exp(log_w) and its delta-method standard error."""
    n = log_w.shape[0]
    log_mean = torch.logsumexp(log_w, 0) - math.log(n)
    w = torch.exp(log_w - log_mean)  # normalized weights, mean 1
    stderr = float(w.std(unbiased=True)) / math.sqrt(n) if n > 1 else math.inf
    return float(log_mean), stderr


def log_partition_ais(
    energy,
    base_mean,
    base_covariance,
    *,
    n_chains=256,
    n_steps=200,
    generator=None,
    initial_step_size=None,
    target_accept=0.574,
):
    """log Z by annealed importance sampling (Neal, 2001).

    Anneals from a Gaussian ``q = N(base_mean, base_covariance)`` (fitted to
    the data, widened by the caller) to ``exp(-E)`` along the geometric path
    ``q^{1-b} exp(-E)^b`` with a sigmoidal schedule of ``n_steps``
    temperatures, one MALA transition per temperature (step size adapted to
    the acceptance rate). Returns ``(log Z, stderr)`` with the delta-method
    standard error of the importance weights over ``n_chains``.
    """
    dtype, device = base_mean.dtype, base_mean.device
    d = base_mean.shape[0]
    chol = torch.linalg.cholesky(base_covariance)
    prec_chol = torch.linalg.inv(chol)  # whitening map
    log_det = 2 * torch.log(torch.diagonal(chol)).sum()
    log_norm_q = -0.5 * d * math.log(2 * math.pi) - 0.5 * log_det

    def log_q(x):
        z = (x - base_mean) @ prec_chol.T
        return log_norm_q - 0.5 * (z * z).sum(1)

    def log_target_and_grad(x, beta):
        x = x.detach().requires_grad_(True)
        neg_e = -energy(x)
        lq = log_q(x)
        log_f = (1 - beta) * lq + beta * neg_e
        (grad,) = torch.autograd.grad(log_f.sum(), x)
        return log_f.detach(), grad.detach(), neg_e.detach(), lq.detach()

    t = torch.linspace(-5.0, 5.0, n_steps + 1, dtype=torch.float64)
    sig = torch.sigmoid(t)
    betas = ((sig - sig[0]) / (sig[-1] - sig[0])).tolist()

    noise = torch.randn(n_chains, d, generator=generator, dtype=dtype, device=device)
    x = base_mean + noise @ chol.T
    log_w = torch.zeros(n_chains, dtype=dtype, device=device)
    scale = float(torch.diagonal(base_covariance).mean())
    step = (
        initial_step_size
        if initial_step_size is not None
        else 0.1 * scale / d ** (1 / 3)
    )
    for k in range(1, n_steps + 1):
        beta_prev, beta = betas[k - 1], betas[k]
        with torch.no_grad():
            neg_e = -energy(x)
            log_w = log_w + (beta - beta_prev) * (neg_e - log_q(x))
        # One MALA transition leaving q^{1-beta} exp(-E)^beta invariant.
        log_f, grad, _, _ = log_target_and_grad(x, beta)
        xi = torch.randn(x.shape, generator=generator, dtype=dtype, device=device)
        proposal = x + step * grad + math.sqrt(2 * step) * xi
        log_f_p, grad_p, _, _ = log_target_and_grad(proposal, beta)
        fwd = ((proposal - x - step * grad) ** 2).sum(1) / (4 * step)
        bwd = ((x - proposal - step * grad_p) ** 2).sum(1) / (4 * step)
        log_accept = log_f_p - log_f - bwd + fwd
        u = torch.rand(n_chains, generator=generator, dtype=dtype, device=device)
        accept = torch.log(u) < log_accept
        accept = accept & torch.isfinite(log_f_p)
        x = torch.where(accept[:, None], proposal, x)
        rate = float(accept.to(dtype).mean())
        step *= math.exp(0.5 * (rate - target_accept))
    return _log_mean_exp_with_stderr(log_w)
