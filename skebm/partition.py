"""Estimates of the log-partition function log Z = log ∫ exp(-E(x)) dx (layer C).

Every estimator returns ``(log_z, stderr)`` as Python floats: ``stderr`` is 0
for a closed form, a discretization error estimate for quadrature, and the
Monte Carlo standard error for annealed importance sampling.
"""

import math

import torch

from .samplers import gibbs

__all__ = [
    "log_partition_ais",
    "log_partition_ais_binary",
    "log_partition_enumerate",
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


def binary_states(start, stop, n_features, *, values=(0.0, 1.0), dtype, device):
    """States ``start .. stop - 1`` of ``{lo, hi}^d`` in binary counting order."""
    lo, hi = values
    codes = torch.arange(start, stop, device=device)
    bits = (codes[:, None] >> torch.arange(n_features, device=device)) & 1
    return lo + (hi - lo) * bits.to(dtype)


@torch.no_grad()
def log_partition_enumerate(
    energy,
    n_features,
    *,
    values=(0.0, 1.0),
    dtype=torch.float64,
    device="cpu",
    chunk_size=65536,
):
    """Exact log Z of a binary energy by summing over all ``2^d`` states.

    States are generated and evaluated in chunks of ``chunk_size``, so memory
    stays bounded; time grows as ``2^d`` (about a second at ``d = 20`` for a
    small model). Returns ``(log_z, 0.0)``.
    """
    total = 2**n_features
    parts = []
    for start in range(0, total, chunk_size):
        x = binary_states(
            start,
            min(start + chunk_size, total),
            n_features,
            values=values,
            dtype=dtype,
            device=device,
        )
        parts.append(torch.logsumexp(-energy(x), 0))
    return float(torch.logsumexp(torch.stack(parts), 0)), 0.0


class _TemperedBinary:
    """``β E(x) + (1 - β) E_0(x)`` with ``E_0`` independent Bernoullis."""

    def __init__(self, energy, logits, values, beta):
        self.energy, self.logits, self.beta = energy, logits, beta
        self.lo, self.hi = values
        if hasattr(energy, "flip_difference_at"):
            self.flip_difference_at = self._flip_difference_at

    def base(self, x):
        return -((x - self.lo) / (self.hi - self.lo)) @ self.logits

    def __call__(self, x):
        return self.beta * self.energy(x) + (1 - self.beta) * self.base(x)

    def _flip_difference_at(self, x, index):
        bit = (x.gather(1, index[:, None]).squeeze(1) - self.lo) / (self.hi - self.lo)
        base = -self.logits[index] * (1 - 2 * bit)
        return (
            self.beta * self.energy.flip_difference_at(x, index)
            + (1 - self.beta) * base
        )


@torch.no_grad()
def log_partition_ais_binary(
    energy,
    probabilities,
    *,
    values=(0.0, 1.0),
    n_chains=256,
    n_steps=200,
    scan="systematic",
    generator=None,
):
    """log Z of a binary energy by annealed importance sampling (Neal, 2001).

    Anneals from independent Bernoullis with the given ``probabilities`` of
    the value ``values[1]`` (fitted to the data by the caller; exact draws,
    known normalizer) to ``exp(-E)`` along the geometric path, with a
    sigmoidal schedule of ``n_steps`` temperatures and one Gibbs sweep per
    temperature. Returns ``(log Z, stderr)``, the delta-method standard error
    of the importance weights over ``n_chains``.
    """
    dtype, device = probabilities.dtype, probabilities.device
    lo, hi = values
    p = probabilities.clamp(1e-3, 1 - 1e-3)
    logits = torch.log(p) - torch.log1p(-p)
    log_z0 = float(torch.nn.functional.softplus(logits).sum())
    bits = (
        torch.rand(
            n_chains, p.shape[0], generator=generator, dtype=dtype, device=device
        )
        < p
    )
    x = lo + (hi - lo) * bits.to(dtype)
    t = torch.linspace(-5.0, 5.0, n_steps + 1, dtype=torch.float64)
    sig = torch.sigmoid(t)
    betas = ((sig - sig[0]) / (sig[-1] - sig[0])).tolist()
    log_w = torch.zeros(n_chains, dtype=dtype, device=device)
    path = _TemperedBinary(energy, logits, values, 0.0)
    for k in range(1, n_steps + 1):
        log_w = log_w + (betas[k] - betas[k - 1]) * (path.base(x) - energy(x))
        path.beta = betas[k]
        x = gibbs(path, x, n_sweeps=1, values=values, scan=scan, generator=generator)
    log_mean, stderr = _log_mean_exp_with_stderr(log_w)
    return log_z0 + log_mean, stderr
