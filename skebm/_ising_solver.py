"""The pseudo-likelihood solver for Ising models, with no validation.

:func:`_solve_pseudo_likelihood` minimizes the penalized negative
pseudo-log-likelihood of ``E(σ) = -½ σᵀJσ - hᵀσ`` on spins, full batch in
float64: L-BFGS, L-BFGS-B for the L1 penalty, Newton's method with the
per-spin block Hessian. The estimator
:class:`~skebm.PseudoLikelihoodIsing` validates, calls it and sets
attributes (as ``sklearn/covariance/_graph_lasso.py`` keeps ``graphical_lasso``
apart from ``GraphicalLasso``).
"""

import numpy as np
import torch
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize
from scipy.sparse import csr_array

from ._torch_utils import to_numpy

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


def _sufficient_decrease(new_value, value, t, slope):
    """Armijo's condition for a step of length ``t`` along a direction of
    slope ``slope``, with slack for the rounding of a value that no longer
    moves near the optimum."""
    return new_value <= value + 1e-4 * t * slope + 1e-14 * abs(value)


class _NewtonObjective:
    """The smooth objective of one Newton solve, over ``x = (h, J_edges)``.

    ``newton_system`` (a :class:`_NewtonSystem` of the edges ``(edge_rows,
    edge_cols)``) gives the loss, to which the diagonal quadratic ``ridge``
    (the ridge, plus an L2 penalty on the couplings) and the linear term
    ``linear`` (an L1 penalty at fixed signs) are added.
    """

    def __init__(self, newton_system, spins, edge_rows, edge_cols, ridge, linear):
        self.newton_system = newton_system
        self.spins = spins
        self.d = spins.shape[1]
        self.edge_rows, self.edge_cols = edge_rows, edge_cols
        self.ridge, self.linear = ridge, linear

    def couplings_of(self, x):
        """The symmetric ``(d, d)`` coupling matrix of ``x``."""
        d = self.d
        J = np.zeros((d, d))
        J[self.edge_rows, self.edge_cols] = x[d:]
        J[self.edge_cols, self.edge_rows] = x[d:]
        return J

    def __call__(self, x):
        """``(value, grad, hessian)`` at ``x``."""
        d, ridge, linear = self.d, self.ridge, self.linear
        value, grad, hess = self.newton_system(x[:d], self.couplings_of(x))
        value += 0.5 * (ridge * x) @ x + linear @ x
        grad += ridge * x + linear
        hess[np.diag_indices_from(hess)] += ridge
        return value, grad, hess

    def value_at(self, x):
        """The objective alone (no Hessian), for backtracking."""
        ridge, linear = self.ridge, self.linear
        value, _, _ = _pseudo_likelihood_value_and_gradient(
            self.spins, torch.as_tensor(x[: self.d]),
            torch.as_tensor(self.couplings_of(x)), self.newton_system.workspace,
        )
        return value + 0.5 * (ridge * x) @ x + linear @ x


class _PseudoLikelihoodSolver:
    """The state one solve shares across its phases and methods.

    The variables are the fields ``h`` and the ``m`` couplings ``edges`` of
    the upper triangle (``J[rows, cols]``). The solver keeps the data and its
    :class:`_Workspace`, the options, the loss curve and the iteration count
    over every phase (``max_iter`` bounds them together), and two caches:
    the last float64 evaluation and the last Newton system.
    """

    def __init__(self, spins, *, alpha, max_iter, tol, verbose):
        self.spins = spins
        self.n, self.d = spins.shape
        self.rows, self.cols = np.triu_indices(self.d, 1)
        self.m = self.rows.size
        self.device = device = spins.device
        self.iu = (
            torch.as_tensor(self.rows, device=device),
            torch.as_tensor(self.cols, device=device),
        )
        self.workspace = _Workspace(spins)
        self.alpha, self.max_iter, self.tol = alpha, max_iter, tol
        self.verbose = verbose
        self.loss_curve = []
        self.n_iter = 0
        # The point, and raw loss and gradients, of the last float64 evaluation.
        self._last_evaluation = {}
        # Created on the first single-precision evaluation.
        self._single_precision = None
        # The edge set, end point, system and raw result of the last Newton
        # solve.
        self._newton_cache = {}

    def starting_point(self, h0, J0):
        """``(h, edges)`` to start from: ``h0`` and the upper triangle of
        ``J0``, or, when both are zero, the independent-spin solution."""
        h = np.asarray(h0, dtype=np.float64)
        edges = np.asarray(J0, dtype=np.float64)[self.rows, self.cols]
        if not h.any() and not edges.any():
            # Cold start at the independent-spin solution.
            mean = to_numpy(self.spins.mean(0))
            h = np.arctanh(np.clip(mean, -1 + 1e-6, 1 - 1e-6))
        return h, edges

    def _unpack(self, h, edges):
        """``(h, J)`` as float64 tensors on the data's device."""
        d, device = self.d, self.device
        J = torch.zeros(d, d, dtype=torch.float64, device=device)
        e = torch.as_tensor(edges, dtype=torch.float64, device=device)
        J[self.iu] = e
        return torch.as_tensor(h, dtype=torch.float64, device=device), J + J.T

    def smooth(self, h, edges, l2, fast=False):
        """Loss + ridge (+ L2 penalty), with gradients, in numpy; ``fast``:
        in single precision."""
        last = self._last_evaluation
        if fast:
            if self._single_precision is None:
                self._single_precision = _SinglePrecision(self.workspace)
            J = np.zeros((self.d, self.d))
            J[self.rows, self.cols] = edges
            value, gh, gJ = self._single_precision.evaluate(h, J + J.T)
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
            th, tJ = self._unpack(h, edges)
            value, gh, gJ = _pseudo_likelihood_value_and_gradient(
                self.spins, th, tJ, self.workspace
            )
            last.update(h=h.copy(), edges=edges.copy(), raw=(value, gh, gJ))
        gh = to_numpy(gh) + _RIDGE * h
        ge = to_numpy(gJ[self.iu]) + (_RIDGE + l2) * edges
        value += 0.5 * _RIDGE * (h @ h) + 0.5 * (_RIDGE + l2) * (edges @ edges)
        return value, gh, ge

    def _record(self, value, phase):
        """Append an iteration's objective to the loss curve (and print it)."""
        self.loss_curve.append(float(value))
        if self.verbose:
            print(f"{phase} iteration {len(self.loss_curve)}, "
                  f"loss = {self.loss_curve[-1]:.8f}")

    def lbfgs(self, fun, x0, bounds, phase, stop=None, limit=None):
        """L-BFGS-B on ``fun`` from ``x0``, for the iterations left (at most
        ``limit``); ``stop(x)``, true after an iteration, ends it there."""

        def callback(intermediate_result):
            self._record(intermediate_result.fun, phase)
            if stop is not None and stop(intermediate_result.x):
                raise StopIteration

        max_iter = self.max_iter
        result = minimize(
            fun,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            callback=callback,
            options={
                "maxiter": max(1, min(max_iter - self.n_iter, limit or max_iter)),
                "gtol": self.tol,
                "ftol": 0.0,
                "maxcor": _LBFGS_MEMORY,
                "maxls": 50,
            },
        )
        self.n_iter += int(result.nit)
        return result.x

    def newton_affordable(self, work):
        """Whether a Newton solve over the couplings ``work`` is cheap."""
        # The restricted Hessian costs at most about two evaluations.
        d = self.d
        return self.workspace.numpy and _newton_cost(
            d, self.rows, self.cols, work
        ) <= max(2 * d * d, 2**25 // self.n)

    def newton(self, h, edges, idx, l2, phase, l1_signs=None):
        """Damped Newton on the smooth problem over the fields and the
        couplings ``idx`` (the others held at zero): a handful of
        iterations from a warm start, each one evaluation and one Hessian.

        With ``l1_signs``, the L1 penalty on couplings of these fixed signs
        (linear while no sign changes); returns None if a step would
        change one (the support guessed was wrong)."""
        d = self.d
        edge_rows, edge_cols = self.rows[idx], self.cols[idx]
        ridge = np.concatenate([np.full(d, _RIDGE), np.full(idx.size, _RIDGE + l2)])
        linear = np.zeros(d + idx.size)
        if l1_signs is not None:
            linear[d:] = self.alpha * l1_signs

        x = np.concatenate([h, edges[idx]])
        # The refit starts where the L1 Newton step ended, on the same
        # couplings: its system there is the L1 one less the linear term.
        cache = self._newton_cache
        key = (idx.tobytes(), l2)
        reuse = cache.get("key") == key and np.array_equal(cache["x"], x)
        if reuse:
            newton_system = cache["system"]
        else:
            newton_system = _NewtonSystem(self.workspace, edge_rows, edge_cols)
        objective = _NewtonObjective(
            newton_system, self.spins, edge_rows, edge_cols, ridge, linear
        )
        if reuse:
            value, grad, hess = cache["raw"]
            value, grad = value + linear @ x, grad + linear
        else:
            value, grad, hess = objective(x)
        end = self._newton_steps(objective, x, value, grad, hess, phase, l1_signs)
        if end is None:
            return None
        x, value, grad, hess = end
        cache.update(
            key=key, x=x, system=newton_system,
            raw=(value - linear @ x, grad - linear, hess),
        )
        out = np.zeros(self.m)
        out[idx] = x[d:]
        return x[:d], out

    def _newton_steps(self, objective, x, value, grad, hess, phase, l1_signs):
        """Damped Newton iterations on ``objective`` from ``x`` (where it is
        ``value, grad, hess``) until the gradient is within ``tol`` or the
        iterations run out: the last ``(x, value, grad, hess)``, or None when
        a step would change one of ``l1_signs``."""
        d = self.d
        while np.max(np.abs(grad)) > self.tol and self.n_iter < self.max_iter:
            try:
                step = -cho_solve(cho_factor(hess), grad)
            except np.linalg.LinAlgError:  # pragma: no cover - ridge: H > 0
                step = -grad
            slope = grad @ step
            t = 1.0
            if l1_signs is not None and np.any(l1_signs * (x + step)[d:] <= 0):
                return None
            # The full step with its Hessian, shorter ones on the value alone.
            new = objective(x + step)
            if not _sufficient_decrease(new[0], value, 1.0, slope):
                t = 0.5
                while t >= 1e-10 and not _sufficient_decrease(
                    objective.value_at(x + t * step), value, t, slope
                ):
                    t *= 0.5
                if t < 1e-10:
                    break
                new = objective(x + t * step)
            x = x + t * step
            value, grad, hess = new
            self.n_iter += 1
            self._record(value, phase)
        return x, value, grad, hess

    def _restricted_objective(self, idx, l1, l2):
        """``(couplings, fun)`` of a solve over the fields and the couplings
        ``idx``: ``couplings(x)``, all ``m`` couplings of the variables ``x``
        (the others zero), and ``fun(x, fast=False)``, the objective and its
        gradient (with ``l1``, in the split form ``J = J⁺ - J⁻``)."""
        d, m, alpha = self.d, self.m, self.alpha
        k = idx.size

        def couplings(x):
            full = np.zeros(m)
            full[idx] = x[d : d + k] - x[d + k :] if l1 else x[d:]
            return full

        def fun(x, fast=False):
            value, gh, ge = self.smooth(x[:d], couplings(x), l2, fast)
            ge = ge[idx]
            if not l1:
                return value, np.concatenate([gh, ge])
            value += alpha * x[d:].sum()
            return value, np.concatenate([gh, ge + alpha, alpha - ge])

        return couplings, fun

    def solve_on(self, h, edges, work, l1, l2, phase):
        """Minimize over the fields and the couplings in ``work`` (the others
        held at zero); with ``l1``, in the split form ``J = J⁺ - J⁻``."""
        d, tol = self.d, self.tol
        idx = np.flatnonzero(work)
        k = idx.size
        couplings, fun = self._restricted_objective(idx, l1, l2)
        e = edges[idx]
        if not l1 and self.newton_affordable(work):
            return self.newton(h, edges, idx, l2, phase)
        if l1:
            x0 = np.concatenate([h, np.maximum(e, 0), np.maximum(-e, 0)])
            bounds = [(None, None)] * d + [(0.0, None)] * (2 * k)
        else:
            x0, bounds = np.concatenate([h, e]), None
        if not l1 and self.workspace.numpy and d + k <= _NEWTON_MAX_PARAMS:
            x = self.lbfgs(fun, x0, bounds, phase, limit=_LBFGS_BEFORE_NEWTON)
            _, gh, ge = self.smooth(x[:d], couplings(x), l2)
            if max(np.max(np.abs(gh)), np.max(np.abs(ge[idx]), initial=0.0)) > tol:
                return self.newton(x[:d], couplings(x), idx, l2, phase)
            return x[:d], couplings(x)
        if not (l1 and self.workspace.numpy):
            x = self.lbfgs(fun, x0, bounds, phase)
            return x[:d], couplings(x)
        return self._solve_l1_on_support(x0, bounds, idx, work, l2, phase)

    def _solve_l1_on_support(self, x0, bounds, idx, work, l2, phase):
        """The L1 solve over the fields and the couplings ``idx``, from
        ``x0`` in the split form.

        L-BFGS-B finds the support (the nonzero couplings and their signs)
        well before it converges; once that has held for a few iterations,
        Newton on the fixed-sign problem (smooth there) finishes in a few
        steps. Its answer is kept only if it satisfies the KKT conditions
        of the working set; otherwise L-BFGS-B resumes.
        """
        d, k = self.d, idx.size
        couplings, fun = self._restricted_objective(idx, True, l2)
        history = []

        def settled(x):
            pattern = np.sign(x[d : d + k] - x[d + k :])
            history.append(pattern)
            if len(history) < _SUPPORT_PATIENCE or not all(
                np.array_equal(p, pattern) for p in history[-_SUPPORT_PATIENCE:]
            ):
                return False
            return self.newton_affordable(
                np.isin(np.arange(self.m), idx[pattern != 0])
            )

        # The support is found in single precision.
        x = self.lbfgs(lambda x: fun(x, True), x0, bounds, phase, stop=settled)
        h_try, full = x[:d], couplings(x)
        support = np.flatnonzero(full)
        if len(history) >= _SUPPORT_PATIENCE and support.size:
            polished = self._polish_l1_support(h_try, full, support, work, phase)
            if polished is not None:
                return polished
        x0 = x
        x = self.lbfgs(fun, x0, bounds, phase)
        return x[:d], couplings(x)

    def _polish_l1_support(self, h, edges, support, work, phase):
        """Newton on the L1 problem with the couplings ``support`` at the
        signs of ``edges`` (the others zero): ``(h, edges)`` there if they
        satisfy the KKT conditions of the working set ``work``, else None."""
        alpha, tol = self.alpha, self.tol
        polished = self.newton(h, edges, support, 0.0, phase,
                               l1_signs=np.sign(edges[support]))
        if polished is None:
            return None
        h_new, full_new = polished
        _, gh, ge = self.smooth(h_new, full_new, 0.0)
        nz = full_new != 0
        ok = (
            np.max(np.abs(gh)) <= tol
            and np.all(np.abs(ge[nz] + alpha * np.sign(full_new[nz])) <= tol)
            and np.all(np.abs(ge[work & ~nz]) <= alpha + tol)
        )
        return (h_new, full_new) if ok else None

    def solve_l1_working_set(self, h, edges):
        """The L1 solve from ``(h, edges)``, by working sets.

        Solve over the couplings that are nonzero or violate
        ``|gradient| <= alpha``, check the KKT conditions on all couplings,
        add the violators, repeat. Each restricted solve is exact, so the
        loop ends at the solution of the full problem.
        """
        alpha, tol = self.alpha, self.tol
        _, _, ge = self.smooth(h, edges, 0.0)
        work = (edges != 0) | (np.abs(ge) > alpha)
        while True:
            h, edges = self.solve_on(h, edges, work, True, 0.0, "l1")
            _, _, ge = self.smooth(h, edges, 0.0)
            violators = ~work & (np.abs(ge) > alpha + tol)
            if not violators.any() or self.n_iter >= self.max_iter:
                break
            work |= violators
        return h, edges


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
    solver = _PseudoLikelihoodSolver(
        spins, alpha=alpha, max_iter=max_iter, tol=tol, verbose=verbose
    )
    h, edges = solver.starting_point(h0, J0)
    free = np.ones(solver.m, dtype=bool)
    if penalty == "l1" and alpha > 0:
        l2 = 0.0
        h, edges = solver.solve_l1_working_set(h, edges)
    else:
        l2 = alpha if penalty == "l2" else 0.0
        h, edges = solver.solve_on(h, edges, free, False, l2, penalty)

    if refit:
        free = edges != 0
        h, edges = solver.solve_on(h, edges, free, False, 0.0, "refit")
        final_penalty, final_alpha = "none", 0.0
    else:
        final_penalty, final_alpha = penalty, alpha

    value, gh, ge = solver.smooth(h, edges, l2 if final_penalty == "l2" else 0.0)
    if final_penalty == "l1":
        value += final_alpha * np.abs(edges).sum()
    kkt = _kkt_residual(gh, ge, edges, penalty=final_penalty, alpha=final_alpha,
                        free=free)
    d = solver.d
    J = np.zeros((d, d))
    J[solver.rows, solver.cols] = edges
    J = J + J.T
    return h, J, value, solver.loss_curve, solver.n_iter, kkt <= tol, kkt
