"""The Ising model fitted by pseudo-likelihood (layer A).

:class:`PseudoLikelihoodIsing` fits ``E(σ) = -½ σᵀJσ - hᵀσ`` on spins by
maximizing the symmetric (joint) pseudo-likelihood, a convex problem, solved
to optimality with a full-batch quasi-Newton method in float64. The private
solver :func:`_solve_pseudo_likelihood` does the mathematics with no
validation; the estimator validates, solves and sets attributes (the split of
``sklearn/covariance/_graph_lasso.py``).
"""

import copy
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import linprog, minimize
from scipy.sparse import csr_array
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from threadpoolctl import threadpool_limits

from ._binary import _SPINS, _BaseBinaryEnergyDensity
from ._torch_utils import to_numpy
from ._training import TrainingResult
from .energies import IsingEnergy
from .objectives.pseudo_likelihood import pseudo_log_likelihood

# A ridge of this strength on every parameter (fields included) makes the
# objective strictly convex and its minimizer finite when a spin is constant
# in the data (its field would otherwise run off to infinity). It moves a
# coupling of order one by about 1e-8: far below any statistical error.
_RIDGE = 1e-8
# Elements of an (n, d) block of the data processed at once by the solver.
_SOLVER_CHUNK_ELEMENTS = 2**22
# Columns multiplied together before a log (2^512 is far below overflow).
_PRODUCT_BLOCK = 512
# L-BFGS-B iterations with an unchanged L1 support before Newton takes over.
_SUPPORT_PATIENCE = 2
# Spins of at most this degree get their Newton block from the 2^degree
# patterns of their neighbours' spins (bincounts) instead of a product.
_PATTERN_DEGREE = 6
# Corrections kept by L-BFGS.
_LBFGS_MEMORY = 20
# A smooth problem that L-BFGS has not solved in this many iterations is
# ill-conditioned (near-constant spins, near-deterministic conditionals:
# binarized digits took over 3000); Newton's method finishes it when its
# Hessian, over the fields and the free couplings, has at most
# _NEWTON_MAX_PARAMS rows (128 MiB).
_LBFGS_BEFORE_NEWTON = 100
_NEWTON_MAX_PARAMS = 4096

# Parameters of the minibatch-trained binary estimators that the full-batch
# solver has no use for.
_MINIBATCH_ONLY = {
    "energy",
    "hidden_layer_sizes",
    "activation",
    "batch_size",
    "learning_rate_init",
    "n_iter_no_change",
    "early_stopping",
    "validation_fraction",
}


class _Workspace:
    """Buffers reused by every evaluation of one solve.

    A fresh ``(n, d)`` temporary costs a page-faulting allocation as long as
    the arithmetic on it; the evaluation writes into these two instead. On the
    CPU the two matrix products go through numpy's BLAS (faster than torch's
    for this tall-skinny float64 shape, measured 6.4 ms against 10.5 ms at
    n=10000, d=64), so the workspace also keeps the spins as a C-ordered
    array and their transpose, and the buffers as arrays sharing memory with
    the torch tensors that the elementwise passes use.
    """

    def __init__(self, spins):
        n, d = spins.shape
        rows = min(n, max(1, _SOLVER_CHUNK_ELEMENTS // max(d, 1)))
        self.a = spins.new_empty(rows, d)
        self.q = spins.new_empty(rows, d)
        self.numpy = spins.device.type == "cpu"
        if self.numpy:
            self.spins = np.ascontiguousarray(to_numpy(spins))
            self.spins_t = np.ascontiguousarray(self.spins.T)
            self.a_np = self.a.numpy()
            self.q_np = self.q.numpy()
            self._aug = self._moments = None

    def spins_aug_t(self):
        """The transposed spins with a row of ones appended, ``(d + 1, n)``."""
        if self._aug is None:
            n, d = self.spins.shape
            self._aug = np.empty((d + 1, n))
            self._aug[:d] = self.spins_t
            self._aug[d] = 1.0
        return self._aug

    def moments(self):
        """``Σ_s σ`` and ``Σ_s σσᵀ`` (exact: sums of ±1)."""
        if self._moments is None:
            self._moments = (self.spins.sum(0), self.spins_t @ self.spins)
        return self._moments


def _pseudo_likelihood_value_and_gradient(spins, h, J, workspace=None):
    """Mean negative pseudo-log-likelihood and its gradient (float64 tensors).

    With ``a = h + Jσ`` the loss is
    ``mean_s Σ_i [log 2cosh a_i - σ_i a_i]``; its gradient is
    ``mean_s (tanh a - σ)`` for ``h`` and the symmetrized
    ``mean_s [(tanh a - σ) σᵀ + σ (tanh a - σ)ᵀ]`` for ``J`` (each coupling
    enters the conditionals of both of its spins). Rows are processed in
    chunks so the ``(n, d)`` temporaries stay bounded; ``workspace`` (a
    :class:`_Workspace` of ``spins``) holds them across calls. The cost is
    two ``(n, d) x (d, d)`` products and a handful of in-place passes.
    """
    n, d = spins.shape
    if workspace is None:
        workspace = _Workspace(spins)
    chunk = workspace.a.shape[0]
    value = 0.0
    grad_h = spins.new_zeros(d)
    if workspace.numpy:
        J_np = np.ascontiguousarray(to_numpy(J))
        h_np = to_numpy(h)
        moment = np.zeros((d, d))
    else:
        moment = spins.new_zeros(d, d)
    for start in range(0, n, chunk):
        s = spins[start : start + chunk]
        rows = s.shape[0]
        if workspace.numpy:
            a_np = workspace.a_np[:rows]
            np.matmul(workspace.spins[start : start + rows], J_np, out=a_np)
            np.add(a_np, h_np, out=a_np)
            a = workspace.a[:rows]
        else:
            a = torch.addmm(h, s, J, out=workspace.a[:rows])
        q = torch.abs(a, out=workspace.q[:rows])
        # Σ log 2cosh a - σa = Σ |a| - σ·a + Σ log q with q = 1 + exp(-2|a|).
        value += float(q.sum() - torch.vdot(s.reshape(-1), a.reshape(-1)))
        q.mul_(-2.0).exp_().add_(1.0)
        # Σ_i log q_i = log Π_i q_i: each q_i lies in (1, 2], so a product over
        # at most _PRODUCT_BLOCK columns stays far from overflow.
        for k in range(0, d, _PRODUCT_BLOCK):
            value += float(torch.log(q[:, k : k + _PRODUCT_BLOCK].prod(1)).sum())
        # tanh a = sign(a) (2 - q) / q = sign(a) (2 / q - 1).
        residual = torch.copysign(
            q.reciprocal_().mul_(2.0).sub_(1.0), a, out=q
        ).sub_(s)
        grad_h += residual.sum(0)
        if workspace.numpy:
            moment += workspace.spins_t[:, start : start + rows] @ (
                workspace.q_np[:rows]
            )
        else:
            moment.addmm_(s.T, residual)
    if workspace.numpy:
        moment = torch.from_numpy(moment)
    grad_J = (moment + moment.T) / n
    grad_J.fill_diagonal_(0.0)
    return value / n, grad_h / n, grad_J


class _SinglePrecision:
    """A float32 copy of the spins (exact: ±1) and buffers, for
    :meth:`evaluate`, the objective and gradient in single precision.

    Used only to find the support of the L1 solution, which the float64
    Newton step and KKT check then confirm: the two products cost about a
    third, the elementwise passes half.
    """

    def __init__(self, workspace):
        spins = workspace.spins
        n, d = spins.shape
        self.rows = rows = workspace.a.shape[0]
        self.workspace = workspace
        self.spins = spins.astype(np.float32)
        self.spins_t = workspace.spins_t.astype(np.float32)
        self.a = torch.empty(rows, d, dtype=torch.float32)
        self.q = torch.empty(rows, d, dtype=torch.float32)

    def evaluate(self, h, J):
        """Mean objective (float) and gradients (float64 numpy), as
        :func:`_pseudo_likelihood_value_and_gradient` in float32 (chunk
        sums and the moment accumulated in float64)."""
        n, d = self.spins.shape
        J32 = J.astype(np.float32)
        h32 = h.astype(np.float32)
        # Σ_s σ·a = Σ_s σ·h + Σ J ∘ Σ_s σσᵀ (float64 moments, exact).
        total, second = self.workspace.moments()
        value = -(total @ h + np.sum(J * second))
        grad_h = np.zeros(d)
        moment = np.zeros((d, d))
        for start in range(0, n, self.rows):
            s_np = self.spins[start : start + self.rows]
            rows = s_np.shape[0]
            a, q = self.a[:rows], self.q[:rows]
            a_np = a.numpy()
            np.matmul(s_np, J32, out=a_np)
            a_np += h32
            s = torch.from_numpy(s_np)
            # As in the float64 evaluation; sums over a row in float32, over
            # rows in float64.
            torch.abs(a, out=q)
            value += float(q.sum(1).double().sum())
            q.mul_(-2.0).exp_().add_(1.0)
            for k in range(0, d, _PRODUCT_BLOCK):
                block = q[:, k : k + _PRODUCT_BLOCK].prod(1)
                value += float(torch.log(block).double().sum())
            torch.copysign(q.reciprocal_().mul_(2.0).sub_(1.0), a, out=q).sub_(s)
            r_np = q.numpy()
            grad_h += r_np.sum(0, dtype=np.float64)
            moment += self.spins_t[:, start : start + rows] @ r_np
        grad_J = (moment + moment.T) / n
        np.fill_diagonal(grad_J, 0.0)
        return value / n, grad_h / n, grad_J


def _newton_cost(d, rows, cols, free):
    """Multiply-adds per sample of the Hessian restricted to the fields and
    the ``free`` couplings: ``Σ_i (1 + deg_i)²`` over the free graph."""
    degree = np.bincount(rows[free], minlength=d) + np.bincount(
        cols[free], minlength=d
    )
    return int(np.sum((1 + degree) ** 2))


class _NewtonSystem:
    """Objective, gradient and Hessian over the fields and some couplings.

    ``workspace`` is a CPU :class:`_Workspace`; the couplings are the ``k``
    edges ``(edge_rows[t], edge_cols[t])``, the others held at zero; the
    parameters are ``(h, J_edges)``, ``d + k`` of them. With
    ``w = 1 - tanh² a`` the Hessian is ``Σ_i Σ_s w_i ∂a_i ∂a_iᵀ``, and
    ``a_i`` is linear in ``h_i`` and the couplings of spin ``i`` only, with
    coefficients ``d_i(σ) = (1, σ_j for the neighbours j)``: spin ``i`` adds
    the block ``Σ_s w_i d_i d_iᵀ``. For a spin of small degree ``d_i`` takes
    at most ``2^deg`` values, so the block is a sum over those patterns of
    ``d dᵀ`` weighted by bincounts of ``w_i`` (the pattern of every sample is
    computed once per edge set); for the others it is a matrix product. The
    arrays are transposed, ``(d, n)`` (a spin's samples contiguous), and
    ``J`` is sparse.
    """

    def __init__(self, workspace, edge_rows, edge_cols):
        self.workspace = workspace
        self.spins_t = spins_t = workspace.spins_aug_t()
        d, n = spins_t.shape[0] - 1, spins_t.shape[1]
        self.edge_rows, self.edge_cols = edge_rows, edge_cols
        self.p = p = d + edge_rows.size
        # Per spin: the rows of ``spins_t`` that ``a_i`` is linear in (the
        # ones row ``d`` for ``h_i``, then the other end of each coupling)
        # and the indices of those parameters.
        others = [[d] for _ in range(d)]
        params = [[i] for i in range(d)]
        for t, (i, j) in enumerate(zip(edge_rows, edge_cols, strict=True)):
            others[i].append(j)
            params[i].append(d + t)
            others[j].append(i)
            params[j].append(d + t)
        degree = np.array([len(o) - 1 for o in others])
        self.small = small = np.flatnonzero(degree <= _PATTERN_DEGREE)
        self.large = [
            (np.asarray(others[i]), np.asarray(params[i]),
             (np.asarray(params[i])[:, None] * p + np.asarray(params[i])).ravel())
            for i in np.flatnonzero(degree > _PATTERN_DEGREE)
        ]
        width, n_patterns = _PATTERN_DEGREE + 1, 2**_PATTERN_DEGREE
        # Pattern code of each sample for each small spin, offset by its slot:
        # Σ_b 2^b [σ_(b-th neighbour) > 0], one sparse product (exact).
        weights = np.zeros((small.size, d))
        # The coefficient vector of each pattern, zero-padded; padded
        # parameters point at a dummy index ``p``.
        patterns = np.zeros((small.size, n_patterns, width))
        index = np.full((small.size, width), p)
        bits = (np.arange(n_patterns)[:, None] >> np.arange(_PATTERN_DEGREE)) & 1
        for slot, i in enumerate(small):
            nb = others[i][1:]
            weights[slot, nb] = 2.0 ** np.arange(len(nb))
            patterns[slot, :, 0] = 1.0
            patterns[slot, :, 1 : 1 + len(nb)] = 2.0 * bits[:, : len(nb)] - 1.0
            index[slot, : len(params[i])] = params[i]
        codes = csr_array(weights) @ (spins_t[:d] > 0).astype(np.float64)
        codes += (np.arange(small.size) * n_patterns)[:, None]
        self.codes = codes.astype(np.intp).ravel()
        self.n_bins = small.size * n_patterns
        self.patterns = patterns
        self.grad_index = index.ravel()
        self.hess_index = (index[:, :, None] * (p + 1) + index[:, None, :]).ravel()
        self.chunked = workspace.a.shape[0] < n

    def __call__(self, h, J):
        """``(value, grad, hessian)`` at ``(h, J)``, means over the samples."""
        workspace, spins_t, p = self.workspace, self.spins_t, self.p
        d, n = spins_t.shape[0] - 1, spins_t.shape[1]
        chunk = workspace.a.shape[0]
        J_sparse = csr_array(J)
        # Σ_s σ·a = Σ_s σ·h + Σ J ∘ Σ_s σσᵀ, from moments kept by the workspace.
        total, second = workspace.moments()
        value = -(total @ h + np.sum(J * second))
        grad = np.zeros(p + 1)
        hessian = np.zeros((p + 1) * (p + 1))
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            rows = stop - start
            s_np = spins_t[:d, start:stop]
            a_np = workspace.a_np.reshape(-1)[: rows * d].reshape(d, rows)
            a_np[...] = J_sparse @ s_np
            a_np += h[:, None]
            a = torch.from_numpy(a_np)
            q = torch.abs(
                a, out=workspace.q.reshape(-1)[: rows * d].reshape(d, rows)
            )
            value += float(q.sum())
            q.mul_(-2.0).exp_().add_(1.0)
            for c in range(0, d, _PRODUCT_BLOCK):
                value += float(torch.log(q[c : c + _PRODUCT_BLOCK].prod(0)).sum())
            # t = tanh a (in q), then w = 1 - t² (in a), residual t - σ (in q).
            torch.copysign(q.reciprocal_().mul_(2.0).sub_(1.0), a, out=q)
            torch.mul(q, q, out=a).neg_().add_(1.0)
            q.sub_(torch.from_numpy(s_np))
            r_np = q.numpy()
            if self.small.size:
                if self.chunked:
                    codes = self.codes.reshape(-1, n)[:, start:stop].ravel()
                else:
                    codes = self.codes
                shape = (self.small.size, -1)
                if self.small.size == d:
                    w_small, r_small = a_np.ravel(), r_np.ravel()
                else:
                    w_small = a_np[self.small].ravel()
                    r_small = r_np[self.small].ravel()
                cw = np.bincount(codes, w_small, self.n_bins).reshape(shape)
                cr = np.bincount(codes, r_small, self.n_bins).reshape(shape)
                P = self.patterns
                grad += np.bincount(
                    self.grad_index, np.einsum("spa,sp->sa", P, cr).ravel(), p + 1
                )
                blocks = np.einsum("spa,sp,spb->sab", P, cw, P, optimize=True)
                hessian += np.bincount(self.hess_index, blocks.ravel(), (p + 1) ** 2)
            for i, (nb, par, flat) in zip(
                np.flatnonzero(np.isin(np.arange(d), self.small, invert=True)),
                self.large,
                strict=True,
            ):
                D = spins_t[nb, start:stop]
                grad[par] += D @ r_np[i]
                flat = (par[:, None] * (p + 1) + par[None, :]).ravel()
                hessian[flat] += ((D * a_np[i]) @ D.T).ravel()
        hessian = hessian.reshape(p + 1, p + 1)[:p, :p]
        return value / n, grad[:p] / n, hessian / n


def _restricted_newton_system(workspace, h, J, edge_rows, edge_cols):
    """:class:`_NewtonSystem` of these edges evaluated at ``(h, J)``."""
    return _NewtonSystem(workspace, edge_rows, edge_cols)(h, J)


def _kkt_residual(grad_h, grad_edges, edges, *, penalty, alpha, free):
    """Largest violation of the optimality conditions (inf-norm).

    ``grad_*`` are gradients of the smooth part (loss, ridge and, for L2, the
    penalty). For L1 a nonzero coupling needs ``g + alpha sign(J) = 0`` and a
    zero one ``|g| <= alpha``. Couplings held at zero (``~free``) are not
    variables.
    """
    if penalty == "l1":
        g = np.where(
            edges != 0,
            grad_edges + alpha * np.sign(edges),
            np.sign(grad_edges) * np.maximum(np.abs(grad_edges) - alpha, 0.0),
        )
    else:
        g = grad_edges
    g = g[free]
    worst = float(np.max(np.abs(grad_h), initial=0.0))
    return max(worst, float(np.max(np.abs(g), initial=0.0)))


def _solve_pseudo_likelihood(
    spins,
    h0,
    J0,
    *,
    penalty,
    alpha,
    refit,
    max_iter,
    tol,
    verbose=False,
):
    """Minimize the penalized negative pseudo-log-likelihood of an Ising model.

    ``spins`` is an ``(n, d)`` float64 tensor in {-1, +1}; ``h0``, ``J0`` the
    starting point (warm start). The objective is

    ``mean_s Σ_i [log 2cosh a_i - σ_i a_i] + P(J) + ridge``

    with ``P = alpha Σ_{i<j} |J_ij|`` (``"l1"``) or
    ``alpha/2 Σ_{i<j} J_ij²`` (``"l2"``). L2 is smooth and solved by L-BFGS.
    L1 is solved exactly as the equivalent bound-constrained smooth problem
    ``J = J⁺ - J⁻``, ``J^± >= 0``, penalty ``alpha Σ (J⁺ + J⁻)``, by L-BFGS-B,
    whose projected steps put inactive couplings exactly at zero. With
    ``refit``, the couplings left nonzero are refitted without penalty, the
    others held at zero. Stops when the KKT residual (the inf-norm of the
    minimum-norm subgradient) is at most ``tol``, verified after the solve.

    Returns ``(h, J, value, loss_curve, n_iter, converged, kkt)`` with ``h``,
    ``J`` float64 numpy arrays and ``value`` the final objective.
    """
    n, d = spins.shape
    rows, cols = np.triu_indices(d, 1)
    m = rows.size
    device = spins.device
    iu = (torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device))
    workspace = _Workspace(spins)
    loss_curve = []
    n_iter = 0

    def unpack(h, edges):
        J = torch.zeros(d, d, dtype=torch.float64, device=device)
        e = torch.as_tensor(edges, dtype=torch.float64, device=device)
        J[iu] = e
        return torch.as_tensor(h, dtype=torch.float64, device=device), J + J.T

    last = {}

    single = []

    def smooth(h, edges, l2, fast=False):
        """Loss + ridge (+ L2 penalty), with gradients, in numpy; ``fast``:
        in single precision."""
        if fast:
            if not single:
                single.append(_SinglePrecision(workspace))
            J = np.zeros((d, d))
            J[rows, cols] = edges
            value, gh, gJ = single[0].evaluate(h, J + J.T)
            gh, gJ = torch.from_numpy(gh), torch.from_numpy(gJ)
        # The solver's last evaluation is at the point the KKT checks and the
        # next phase start from: evaluate each point once.
        elif (
            last
            and np.array_equal(last["h"], h)
            and np.array_equal(last["edges"], edges)
        ):
            value, gh, gJ = last["raw"]
        else:
            th, tJ = unpack(h, edges)
            value, gh, gJ = _pseudo_likelihood_value_and_gradient(
                spins, th, tJ, workspace
            )
            last.update(h=h.copy(), edges=edges.copy(), raw=(value, gh, gJ))
        gh = to_numpy(gh) + _RIDGE * h
        ge = to_numpy(gJ[iu]) + (_RIDGE + l2) * edges
        value += 0.5 * _RIDGE * (h @ h) + 0.5 * (_RIDGE + l2) * (edges @ edges)
        return value, gh, ge

    def run(fun, x0, bounds, phase, stop=None, limit=None):
        nonlocal n_iter

        def callback(intermediate_result):
            loss_curve.append(float(intermediate_result.fun))
            if verbose:
                print(f"{phase} iteration {len(loss_curve)}, "
                      f"loss = {loss_curve[-1]:.8f}")
            if stop is not None and stop(intermediate_result.x):
                raise StopIteration

        result = minimize(
            fun,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            callback=callback,
            options={
                "maxiter": max(1, min(max_iter - n_iter, limit or max_iter)),
                "gtol": tol,
                "ftol": 0.0,
                "maxcor": _LBFGS_MEMORY,
                "maxls": 50,
            },
        )
        n_iter += int(result.nit)
        return result.x

    def newton_affordable(work):
        # The restricted Hessian costs at most about two evaluations.
        return workspace.numpy and _newton_cost(d, rows, cols, work) <= max(
            2 * d * d, 2**25 // n
        )

    newton_cache = {}

    def newton(h, edges, idx, l2, phase, l1_signs=None):
        """Damped Newton on the smooth problem over the fields and the
        couplings ``idx`` (the others held at zero): a handful of
        iterations from a warm start, each one evaluation and one Hessian.

        With ``l1_signs``, the L1 penalty on couplings of these fixed signs
        (linear while no sign changes); returns None if a step would
        change one (the support guessed was wrong)."""
        nonlocal n_iter
        er, ec = rows[idx], cols[idx]
        ridge = np.concatenate([np.full(d, _RIDGE), np.full(idx.size, _RIDGE + l2)])
        linear = np.zeros(d + idx.size)
        if l1_signs is not None:
            linear[d:] = alpha * l1_signs

        x = np.concatenate([h, edges[idx]])
        # The refit starts where the L1 Newton step ended, on the same
        # couplings: its system there is the L1 one less the linear term.
        key = (idx.tobytes(), l2)
        reuse = newton_cache.get("key") == key and np.array_equal(
            newton_cache["x"], x
        )
        if reuse:
            newton_system = newton_cache["system"]
        else:
            newton_system = _NewtonSystem(workspace, er, ec)

        def couplings_of(x):
            J = np.zeros((d, d))
            J[er, ec] = x[d:]
            J[ec, er] = x[d:]
            return J

        def system(x):
            value, grad, hess = newton_system(x[:d], couplings_of(x))
            value += 0.5 * (ridge * x) @ x + linear @ x
            grad += ridge * x + linear
            hess[np.diag_indices_from(hess)] += ridge
            return value, grad, hess

        def value_at(x):
            # The objective alone (no Hessian), for backtracking.
            value, _, _ = _pseudo_likelihood_value_and_gradient(
                spins, torch.as_tensor(x[:d]), torch.as_tensor(couplings_of(x)),
                workspace,
            )
            return value + 0.5 * (ridge * x) @ x + linear @ x

        if reuse:
            value, grad, hess = newton_cache["raw"]
            value, grad = value + linear @ x, grad + linear
        else:
            value, grad, hess = system(x)
        while np.max(np.abs(grad)) > tol and n_iter < max_iter:
            try:
                step = -cho_solve(cho_factor(hess), grad)
            except np.linalg.LinAlgError:  # pragma: no cover - ridge: H > 0
                step = -grad
            slope = grad @ step
            t = 1.0
            if l1_signs is not None and np.any(l1_signs * (x + step)[d:] <= 0):
                return None
            # Sufficient decrease, with slack for the rounding of a value
            # that no longer moves near the optimum; the full step with its
            # Hessian, shorter ones on the value alone.
            def decrease(new_value, t, value=value, slope=slope):
                return new_value <= value + 1e-4 * t * slope + 1e-14 * abs(value)

            new = system(x + step)
            if not decrease(new[0], 1.0):
                t = 0.5
                while t >= 1e-10 and not decrease(value_at(x + t * step), t):
                    t *= 0.5
                if t < 1e-10:
                    break
                new = system(x + t * step)
            x = x + t * step
            value, grad, hess = new
            n_iter += 1
            loss_curve.append(float(value))
            if verbose:
                print(f"{phase} iteration {len(loss_curve)}, "
                      f"loss = {loss_curve[-1]:.8f}")
        newton_cache.update(
            key=key, x=x, system=newton_system,
            raw=(value - linear @ x, grad - linear, hess),
        )
        out = np.zeros(m)
        out[idx] = x[d:]
        return x[:d], out

    def solve_on(h, edges, work, l1, l2, phase):
        """Minimize over the fields and the couplings in ``work`` (the others
        held at zero); with ``l1``, in the split form ``J = J⁺ - J⁻``."""
        idx = np.flatnonzero(work)
        k = idx.size

        def couplings(x):
            full = np.zeros(m)
            full[idx] = x[d : d + k] - x[d + k :] if l1 else x[d:]
            return full

        def fun(x, fast=False):
            value, gh, ge = smooth(x[:d], couplings(x), l2, fast)
            ge = ge[idx]
            if not l1:
                return value, np.concatenate([gh, ge])
            value += alpha * x[d:].sum()
            return value, np.concatenate([gh, ge + alpha, alpha - ge])

        e = edges[idx]
        if not l1 and newton_affordable(work):
            return newton(h, edges, idx, l2, phase)
        if l1:
            x0 = np.concatenate([h, np.maximum(e, 0), np.maximum(-e, 0)])
            bounds = [(None, None)] * d + [(0.0, None)] * (2 * k)
        else:
            x0, bounds = np.concatenate([h, e]), None
        if not l1 and workspace.numpy and d + k <= _NEWTON_MAX_PARAMS:
            x = run(fun, x0, bounds, phase, limit=_LBFGS_BEFORE_NEWTON)
            _, gh, ge = smooth(x[:d], couplings(x), l2)
            if max(np.max(np.abs(gh)), np.max(np.abs(ge[idx]), initial=0.0)) > tol:
                return newton(x[:d], couplings(x), idx, l2, phase)
            return x[:d], couplings(x)
        if not (l1 and workspace.numpy):
            x = run(fun, x0, bounds, phase)
            return x[:d], couplings(x)
        # L-BFGS-B finds the support (the nonzero couplings and their signs)
        # well before it converges; once that has held for a few iterations,
        # Newton on the fixed-sign problem (smooth there) finishes in a few
        # steps. Its answer is kept only if it satisfies the KKT conditions
        # of the working set; otherwise L-BFGS-B resumes.
        history = []

        def settled(x):
            pattern = np.sign(x[d : d + k] - x[d + k :])
            history.append(pattern)
            if len(history) < _SUPPORT_PATIENCE or not all(
                np.array_equal(p, pattern) for p in history[-_SUPPORT_PATIENCE:]
            ):
                return False
            return newton_affordable(np.isin(np.arange(m), idx[pattern != 0]))

        # The support is found in single precision.
        x = run(lambda x: fun(x, True), x0, bounds, phase, stop=settled)
        h_try, full = x[:d], couplings(x)
        support = np.flatnonzero(full)
        if len(history) >= _SUPPORT_PATIENCE and support.size:
            polished = newton(h_try, full, support, 0.0, phase,
                              l1_signs=np.sign(full[support]))
            if polished is not None:
                h_new, full_new = polished
                _, gh, ge = smooth(h_new, full_new, 0.0)
                nz = full_new != 0
                ok = (
                    np.max(np.abs(gh)) <= tol
                    and np.all(np.abs(ge[nz] + alpha * np.sign(full_new[nz])) <= tol)
                    and np.all(np.abs(ge[work & ~nz]) <= alpha + tol)
                )
                if ok:
                    return h_new, full_new
        x0 = x
        x = run(fun, x0, bounds, phase)
        return x[:d], couplings(x)

    h = np.asarray(h0, dtype=np.float64)
    edges = np.asarray(J0, dtype=np.float64)[rows, cols]
    if not h.any() and not edges.any():
        # Cold start at the independent-spin solution.
        mean = to_numpy(spins.mean(0))
        h = np.arctanh(np.clip(mean, -1 + 1e-6, 1 - 1e-6))
    free = np.ones(m, dtype=bool)
    if penalty == "l1" and alpha > 0:
        # Working set: solve over the couplings that are nonzero or violate
        # |gradient| <= alpha, check the KKT conditions on all couplings, add
        # the violators, repeat. Each restricted solve is exact, so the loop
        # ends at the solution of the full problem.
        l2 = 0.0
        _, _, ge = smooth(h, edges, 0.0)
        work = (edges != 0) | (np.abs(ge) > alpha)
        while True:
            h, edges = solve_on(h, edges, work, True, 0.0, "l1")
            _, gh, ge = smooth(h, edges, 0.0)
            violators = ~work & (np.abs(ge) > alpha + tol)
            if not violators.any() or n_iter >= max_iter:
                break
            work |= violators
    else:
        l2 = alpha if penalty == "l2" else 0.0
        h, edges = solve_on(h, edges, free, False, l2, penalty)

    if refit:
        free = edges != 0
        h, edges = solve_on(h, edges, free, False, 0.0, "refit")
        final_penalty, final_alpha = "none", 0.0
    else:
        final_penalty, final_alpha = penalty, alpha

    value, gh, ge = smooth(h, edges, l2 if final_penalty == "l2" else 0.0)
    if final_penalty == "l1":
        value += final_alpha * np.abs(edges).sum()
    kkt = _kkt_residual(gh, ge, edges, penalty=final_penalty, alpha=final_alpha,
                        free=free)
    J = np.zeros((d, d))
    J[rows, cols] = edges
    J = J + J.T
    return h, J, value, loss_curve, n_iter, kkt <= tol, kkt


# Constraints (distinct rows x non-constant spins) up to which the exact
# separability linear program is solved (milliseconds; binarized digits,
# 94500 constraints, took 139 s).
_MAX_SEPARABILITY_CONSTRAINTS = 20000


def _has_recession_direction(spins):
    """Whether the unpenalized pseudo-likelihood of ``spins`` (no constant
    column) has a direction of recession, i.e. no finite optimum; None when
    the linear program is too large to solve here.

    Every term ``log(1 + exp(-2 m_si))`` decreases in the margin
    ``m_si = σ_i (h_i + Σ_j J_ij σ_j)``, which is linear in ``(h, J)``: the
    objective decreases forever along a direction with all margins >= 0 and
    one > 0. The program maximizes the total margin over ``|θ| <= 1`` subject
    to every margin being >= 0; a positive optimum is such a direction.
    """
    rows, counts = np.unique(spins, axis=0, return_counts=True)
    r, d = rows.shape
    if r * d > _MAX_SEPARABILITY_CONSTRAINTS:
        return None
    iu, ju = np.triu_indices(d, 1)
    pair = np.zeros((d, d), dtype=np.intp)
    pair[iu, ju] = pair[ju, iu] = d + np.arange(iu.size)
    sample = np.repeat(np.arange(r), d)
    spin = np.tile(np.arange(d), r)
    own = rows[sample, spin]
    others = np.array([np.delete(np.arange(d), i) for i in range(d)])[spin].ravel()
    constraint = np.arange(r * d)
    values = np.concatenate(
        [own, rows[np.repeat(sample, d - 1), others] * np.repeat(own, d - 1)]
    )
    row_index = np.concatenate([constraint, np.repeat(constraint, d - 1)])
    col_index = np.concatenate([spin, pair[np.repeat(spin, d - 1), others]])
    A = csr_array((values, (row_index, col_index)), shape=(r * d, d + iu.size))
    total = A.T @ np.repeat(counts.astype(np.float64), d)
    result = linprog(
        -total, A_ub=-A, b_ub=np.zeros(r * d), bounds=(-1, 1), method="highs"
    )
    return bool(result.status == 0 and -result.fun > 1e-9 * counts.sum())


class PseudoLikelihoodIsing(_BaseBinaryEnergyDensity):
    """Ising model (fully visible Boltzmann machine on spins) by pseudo-likelihood.

    Fits ``p(σ) = exp(-E(σ)) / Z`` on ``σ ∈ {-1, +1}^d`` with
    ``E(σ) = -½ σᵀJσ - hᵀσ``, ``J`` symmetric with a zero diagonal, by
    maximizing Besag's pseudo-likelihood, the product of the one-spin
    conditionals, which needs no ``Z``, is consistent, and is convex. The
    *symmetric (joint)* pseudo-likelihood is fitted: one ``J_ij`` is shared by
    the conditionals of spins ``i`` and ``j`` (not ``d`` separate per-spin
    regressions averaged afterwards).

    The problem is solved to optimality, full batch, in float64: L-BFGS for
    ``penalty="l2"``; for ``penalty="l1"`` (sparse interaction graphs) the
    equivalent bound-constrained problem in ``J = J⁺ - J⁻`` is solved by
    L-BFGS-B, which gives exact zeros (the support is found in single
    precision, then a float64 Newton step on the problem with those signs
    finishes). The refit, and small smooth problems, are solved by Newton's
    method with the per-spin block Hessian. Optimality is verified by the KKT
    residual (the largest entry of the minimum-norm subgradient) against
    ``tol``; ``refit=True`` then refits the selected graph without penalty,
    which removes the shrinkage bias of L1.

    Input in {0, 1} is mapped to spins (0 → -1, 1 → +1) and :meth:`sample`
    answers in the encoding of the training data. ``log_partition_`` is exact
    (enumeration of the ``2^d`` states) for ``n_features <= 20`` and estimated
    by annealed importance sampling with Gibbs transitions above, when first
    needed (:meth:`score`, :meth:`score_samples`, :meth:`sample` or reading a
    ``log_partition_*`` attribute; see :class:`RatioMatchingBinary`).

    Parameters
    ----------
    penalty : {"l2", "l1"}, default="l2"
        Penalty on the couplings: ``alpha/2 Σ_{i<j} J_ij²`` or
        ``alpha Σ_{i<j} |J_ij|`` (each edge counted once). Fields are not
        penalized.
    alpha : float, default=1e-2
        Strength of the penalty, on the scale of the mean (per sample)
        negative pseudo-log-likelihood summed over spins. The default was
        chosen on binarized digits (64 pixels, 1257 training images), where
        held-out log-likelihood / pseudo-log-likelihood were -18.90 / -15.21
        at 1e-4, -18.57 / -14.62 at 1e-2, -18.59 / -14.58 at 0.1 and
        -18.94 / -15.15 at 0.3 nats. ``alpha=0`` with ``penalty="l2"`` (and
        ``refit``) is unpenalized: when every observed spin is predicted by
        its fitted conditional (separable data), that problem has no finite
        optimum and a :class:`~sklearn.exceptions.ConvergenceWarning` says so.
    refit : bool, default=False
        After the penalized solve, refit the couplings that are nonzero
        without penalty, the others held at zero. With ``penalty="l1"`` this
        is the unbiased fit of the selected graph; with ``"l2"`` (no exact
        zeros) it is the unpenalized fit.
    binarize : float or None, default=None
        None: the input must be spins in {-1, +1} or bits in {0, 1} (mapped
        to spins; at score time, in the encoding of the training data), and
        anything else is a ValueError that names the value and its column. A
        float: a threshold, ``x > binarize`` becomes spin +1 and the rest -1
        (as in :class:`~sklearn.naive_bayes.BernoulliNB`). Samples come back
        in the training data's encoding, and in its dtype when that was an
        integer or boolean one.
    max_iter : int, default=1000
        Maximum number of quasi-Newton iterations (over the penalized solve
        and the refit together).
    tol : float, default=1e-6
        Stop when the KKT residual, the largest absolute entry of the
        minimum-norm (sub)gradient of the objective, is at most ``tol``.
    warm_start : bool, default=False
        Start the solver at the previous fit's parameters (e.g. along a path
        of decreasing ``alpha``) instead of at zero.
    log_partition_method : {"auto", "exact", "ais"}, default="auto"
        ``"exact"`` enumerates the ``2^d`` states (chunked; up to 30
        features); ``"ais"`` is annealed importance sampling from a mixture
        of independent Bernoullis fitted to the training data (components
        chosen by BIC, so that chains start in every mode the data has), one
        Gibbs sweep per temperature; ``"auto"`` enumerates up to 20 features.
        While the estimate is unreliable (fewer than 100 effective chains or
        heavy-tailed weights) its budget doubles, up to 16 times
        ``n_ais_chains x n_ais_steps``: more temperatures while under 10% of
        the chains are effective, more chains otherwise; past that a
        :class:`~skebm.exceptions.LogPartitionWarning` says so. An estimate
        below the exact lower bound given by the distinct training points is
        replaced by that bound, with a warning.
    n_ais_chains : int, default=256
        Annealed importance sampling chains (of the first batch); also the
        fewest chains :meth:`sample` anneals.
    n_ais_steps : int, default=200
        Annealing temperatures (one Gibbs sweep each), for log Z and for
        :meth:`sample`.
    n_sweeps : int, default=100
        Gibbs sweeps run by :meth:`sample` from where its chains start (the
        burn-in of persistent chains).
    scan : {"systematic", "random"}, default="systematic"
        Gibbs site order: in turn, or a random site per update.
    sampling_init : {"annealed", "noise", "data"}, default="annealed"
        Where :meth:`sample`'s chains start, which decides what they draw
        from: ``"annealed"``, annealed importance samples resampled by their
        weights (draws from the model, mode masses included); ``"noise"``,
        uniform random states (short-run chains: the model only once mixed);
        ``"data"``, training points (short-run chains that keep the data's
        mode masses).
    n_sampling_chains : int or None, default=None
        None: one chain per sample. An int: that many persistent chains,
        started as ``sampling_init`` says, run ``n_sweeps`` sweeps, then read
        after every further sweep.
    device : str, default="cpu"
        Torch device for fitting and scoring; the fitted model lives on the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds log Z estimation (AIS) and the chain starts of ``sampling_init``.
        The fit itself is deterministic.
    verbose : bool, default=False
        Print the objective at every solver iteration.

    Attributes
    ----------
    couplings_ : ndarray of shape (`n_features_in_`, `n_features_in_`)
        The fitted ``J``, symmetric with a zero diagonal, in the ±1 spin
        convention.
    fields_ : ndarray of shape (`n_features_in_`,)
        The fitted ``h``, in the ±1 spin convention.
    energy_ : IsingEnergy
        The fitted energy (on spin inputs), on the CPU.
    kkt_residual_ : float
        The KKT residual at the solution (at most ``tol`` when converged).
    log_partition_ : float
        log Z of ``exp(-energy_)`` over ``{-1, +1}^d``. Above 20 features,
        estimated on first access (as are the three attributes below).
    log_partition_std_ : float
        Its standard error (0 for enumeration).
    log_partition_ess_ : float
        Effective sample size of the importance weights behind a sampling
        estimate of log Z (``inf`` for exact methods). Below 100, or with
        heavy-tailed weights, a :class:`~skebm.exceptions.LogPartitionWarning`
        says that ``log_partition_std_`` cannot be trusted.
    log_partition_method_ : str
        ``"exact"`` or ``"ais"``.
    loss_curve_ : list of float
        Objective after each solver iteration (penalized solve, then refit).
    validation_loss_curve_ : None
        No data are held out by the full-batch solver.
    best_loss_ : float
        Final value of the objective that was minimized last.
    n_iter_ : int
        Solver iterations run.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    RatioMatchingBinary : Binary energies (including Boltzmann machines) by
        ratio matching.
    sklearn.covariance.GraphicalLasso : Sparse Gaussian graphical model.
    sklearn.neural_network.BernoulliRBM : Restricted Boltzmann machine.
    sklearn.neighbors.KernelDensity : Kernel density estimation.
    sklearn.mixture.GaussianMixture : Gaussian mixture density.

    Notes
    -----
    With :math:`a_i(\\sigma) = h_i + \\sum_{j \\ne i} J_{ij} \\sigma_j`, the
    conditional of one spin is
    :math:`p(\\sigma_i \\mid \\sigma_{-i}) = e^{\\sigma_i a_i} / (2\\cosh a_i)`,
    and the estimator minimizes the convex objective

    .. math::
        \\frac1n \\sum_{s=1}^n \\sum_{i=1}^d
        \\big[\\log 2\\cosh a_i(\\sigma^{(s)})
        - \\sigma^{(s)}_i a_i(\\sigma^{(s)})\\big] + P(J),

    with one symmetric :math:`J` shared by all conditionals (the joint
    pseudo-likelihood; the per-spin variant fits row ``i`` of :math:`J` from
    conditional ``i`` alone and gives different, asymmetric estimates), and
    :math:`P(J) = \\frac{\\alpha}{2} \\sum_{i<j} J_{ij}^2` or
    :math:`\\alpha \\sum_{i<j} |J_{ij}|`. A ridge of :math:`10^{-8}` on all
    parameters keeps the minimizer unique and finite when a spin is constant
    in the data. One evaluation of the objective and its gradient costs two
    ``(n, d) x (d, d)`` matrix products.

    References
    ----------
    .. [1] J. Besag, "Statistical analysis of non-lattice data", The
       Statistician 24(3), 1975.
    .. [2] E. Aurell and M. Ekeberg, "Inverse Ising inference using all the
       data", Physical Review Letters 108, 2012.
    .. [3] P. Ravikumar, M. J. Wainwright and J. D. Lafferty,
       "High-dimensional Ising model selection using l1-regularized logistic
       regression", Annals of Statistics 38(3), 2010.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm import PseudoLikelihoodIsing
    >>> rng = np.random.RandomState(0)
    >>> z = rng.choice([-1.0, 1.0], size=(2000, 1))
    >>> X = np.where(rng.rand(2000, 3) < 0.8, z, -z)  # three spins that agree
    >>> est = PseudoLikelihoodIsing().fit(X)
    >>> bool(np.all(est.couplings_[~np.eye(3, dtype=bool)] > 0.2))
    True
    >>> est.score_samples(X[:3]).shape
    (3,)
    >>> est.sample(4, random_state=0).shape
    (4, 3)
    """

    _values = _SPINS

    # The full-batch solver holds out no validation data; the base's fit
    # template reads this to leave ``validation_loss_curve_`` at None.
    early_stopping = False

    _parameter_constraints: dict = {
        **{
            k: v
            for k, v in _BaseBinaryEnergyDensity._parameter_constraints.items()
            if k not in _MINIBATCH_ONLY
        },
        "penalty": [StrOptions({"l2", "l1"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "refit": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        *,
        penalty="l2",
        alpha=1e-2,
        refit=False,
        binarize=None,
        max_iter=1000,
        tol=1e-6,
        warm_start=False,
        log_partition_method="auto",
        n_ais_chains=256,
        n_ais_steps=200,
        n_sweeps=100,
        scan="systematic",
        sampling_init="annealed",
        n_sampling_chains=None,
        device="cpu",
        random_state=None,
        verbose=False,
    ):
        self.penalty = penalty
        self.alpha = alpha
        self.refit = refit
        self.binarize = binarize
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.log_partition_method = log_partition_method
        self.n_ais_chains = n_ais_chains
        self.n_ais_steps = n_ais_steps
        self.n_sweeps = n_sweeps
        self.scan = scan
        self.sampling_init = sampling_init
        self.n_sampling_chains = n_sampling_chains
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _objective(self):
        # The unpenalized objective, for reference: fit solves it (with the
        # penalty) in _closed_form_fit, never by minibatches.
        def negative_pseudo_log_likelihood(energy, x, *, generator=None):
            return -pseudo_log_likelihood(energy, x, values=_SPINS).mean()

        return negative_pseudo_log_likelihood

    def _build_energy(self, n_features, *, seed, device, dtype):
        previous = getattr(self, "energy_", None)
        if self.warm_start and previous is not None:
            if previous.n_features == n_features:
                return copy.deepcopy(previous).to(device=device, dtype=dtype)
        return IsingEnergy(n_features).to(device=device, dtype=dtype)

    def _closed_form_fit(self, energy, X, *, device, dtype):
        spins = torch.as_tensor(X, device=device, dtype=torch.float64)
        with torch.no_grad():
            h0 = to_numpy(energy.bias.double())
            J0 = to_numpy(energy.coupling_matrix().double())
        # numpy's BLAS runs the solver's products: as many threads as torch
        # uses (its own default, every core, busy-waited against torch's
        # threads on a loaded 2-core machine: the 4x4 lattice fit took
        # 5.6-12.8 s instead of 0.6 s).
        with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
            h, J, value, curve, n_iter, converged, kkt = _solve_pseudo_likelihood(
                spins,
                h0,
                J0,
                penalty=self.penalty,
                alpha=float(self.alpha),
                refit=self.refit,
                max_iter=self.max_iter,
                tol=float(self.tol),
                verbose=self.verbose,
            )
        if not (np.all(np.isfinite(h)) and np.all(np.isfinite(J))):
            raise ValueError(  # pragma: no cover - the objective is bounded below
                "The pseudo-likelihood solver produced non-finite parameters."
            )
        unpenalized = self.refit or (self.penalty == "l2" and self.alpha == 0)
        if unpenalized:
            self._warn_if_separable(X, h, J)
        energy.set_parameters(
            torch.as_tensor(h, device=device, dtype=dtype),
            torch.as_tensor(J, device=device, dtype=dtype),
        )
        self._kkt_residual = kkt
        return TrainingResult(
            loss_curve=curve,
            n_iter=n_iter,
            converged=converged,
            best_loss=value,
        )

    def _warn_if_separable(self, X, h, J):
        """Warn when the unpenalized problem has no finite optimum.

        The margins ``σ_i a_i`` of the observed spins are linear in the
        parameters: if every one is positive at the solution (constant spins
        left out, whose fields alone diverge, harmlessly), the parameters
        themselves are a direction along which the objective decreases
        forever, and the solver stopped only because the gradient fell
        below ``tol`` (the 1e-8 ridge holds the parameters). If only some
        spins are predicted perfectly, their couplings are as poorly
        determined.
        """
        varying = np.flatnonzero(X.min(0) != X.max(0))
        if varying.size == 0:
            return
        margins = X[:, varying] * (h[varying] + X @ J[:, varying])
        perfect = varying[np.all(margins > 0, axis=0)]
        recession = _has_recession_direction(X[:, varying])
        if recession is False:
            return
        if recession or perfect.size == varying.size:
            message = (
                "the unpenalized pseudo-likelihood has no finite optimum: "
                "every observed spin is predicted by its fitted conditional "
                "(the data are separable), so the couplings grow without bound "
                "as tol shrinks and stop only where the 1e-8 ridge holds them."
            )
        elif perfect.size:
            message = (
                f"the conditionals of spin(s) {perfect.tolist()[:10]} predict "
                "every observed value (separable): without a penalty their "
                "couplings are determined only by tol and the 1e-8 ridge."
            )
        else:
            return
        warnings.warn(
            f"{type(self).__name__}: {message} Set alpha > 0 (and refit=False) "
            "for a finite, well-determined fit.",
            ConvergenceWarning,
            stacklevel=7,
        )

    def _fit(self, X):
        super()._fit(X)
        with torch.no_grad():
            self.couplings_ = to_numpy(self.energy_.coupling_matrix()).astype(
                np.float64
            )
            self.fields_ = to_numpy(self.energy_.bias).astype(np.float64)
        self.kkt_residual_ = self.__dict__.pop("_kkt_residual")
        return self
