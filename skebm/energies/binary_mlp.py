"""A neural energy on binary vectors whose one-bit flips cost one hidden-layer
evaluation, with a fused flip loss and its own Gibbs updates."""

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ._activations import ACTIVATIONS, init_linear
from ._site_updates import SiteUpdates
from .flips import flip_blocks


class _FusedSoftplusFlipLoss(torch.autograd.Function):
    """``Σ_{n,j} f(ΔE_nj)`` for a one-hidden-layer softplus energy, with its
    parameter gradients computed in the same pass over the flips.

    With ``a = W x + c``, ``s = σ(a)``, ``u_j = step_j W_{:,j}`` and
    ``T = e^u - 1`` (two tables, for the two signs of the step), the hidden
    part of a flip is ``softplus(a + u) - softplus(a) = log(1 + s T)``, so a
    flip costs a multiply, a log and a dot product per hidden unit. The
    summand ``f`` returns ``(f(t), f'(t))``; the gradients of the sum in
    ``a``, ``W``, ``v`` and the field are accumulated block by block while
    the block is in the cache, and the backward pass only scales them.
    """

    @staticmethod
    def forward(ctx, a, weight, v, field, bits, summand, width):
        n, d = bits.shape
        hidden = a.shape[1]
        s = torch.sigmoid(a)
        # Row j of W_1ᵀ contiguous: each block reads whole rows.
        w_t = (weight.T * width).contiguous()
        t_up = torch.expm1(w_t)  # the bit goes up: u = +width W
        t_diff = torch.expm1(-w_t) - t_up
        step = 1 - 2 * bits  # +1 where the bit goes up, in bit units
        need = any(ctx.needs_input_grad[:4])
        total = a.new_zeros(())
        if need:
            grad_s = torch.zeros_like(a)
            grad_w_t = torch.zeros_like(w_t)
            grad_v = torch.zeros_like(v)
            grad_field = torch.zeros_like(field)
            one_minus_s = 1 - s
        one = a.new_ones(())
        for r0, r1, b0, b1 in flip_blocks(n, d, hidden):
            t = torch.addcmul(t_up[b0:b1], bits[r0:r1, b0:b1, None], t_diff[b0:b1])
            q = torch.addcmul(one, t, s[r0:r1, None, :])
            log_q = torch.log(q)
            st = step[r0:r1, b0:b1]
            delta = log_q @ v - field[b0:b1] * st
            f, g = summand(delta)
            total = total + f.sum()
            if not need:
                continue
            r, k = r1 - r0, b1 - b0
            grad_v += log_q.reshape(r * k, hidden).T @ g.reshape(-1)
            g_step = g * st
            grad_field[b0:b1] -= g_step.sum(0)
            rec = q.reciprocal_()
            grad_s[r0:r1] += torch.bmm(g[:, None, :], t.mul_(rec)).squeeze(1)
            # d log q / du = s (1 + T) / q = 1 - (1 - s) / q.
            rec.mul_(one_minus_s[r0:r1, None, :]).mul_(g_step[:, :, None])
            grad_w_t[b0:b1] += g_step.sum(0)[:, None] - rec.sum(0)
        if need:
            grad_a = grad_s.mul_(v).mul_(s).mul_(one_minus_s)
            grad_weight = (grad_w_t * v).T * width
            ctx.save_for_backward(grad_a, grad_weight, grad_v, grad_field)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grads = [g * grad_output for g in ctx.saved_tensors]
        return (*grads, None, None, None)


class BinaryMLPEnergy(nn.Module):
    """A neural energy on binary vectors, with cheap one-bit flips.

    .. math::
        E(x) = -(b + \\ell)^T u(x) + g(W_1 x + c_1), \\qquad
        u(x) = \\frac{x - lo}{hi - lo} \\in \\{0, 1\\}^d,

    where ``g`` is the rest of a multilayer perceptron (the activation, the
    further hidden layers and a linear output), ``b`` a learned field and
    ``ℓ`` fixed base log-odds (a buffer, zero unless given). With
    ``base_logits`` the log-odds of independent Bernoulli marginals and the
    output layer at zero (``zero_output=True``), the untrained energy is
    exactly that independent model and the network learns a correction.

    Flipping bit ``j`` moves the first pre-activation by a column of ``W_1``,
    so the energy change of every one-bit flip costs the head ``g`` on the
    ``n d`` moved pre-activations instead of ``d`` full evaluations
    (:meth:`flip_differences`); with one softplus hidden layer,
    ``softplus(a + u) - softplus(a) = log(1 + σ(a)(e^u - 1))`` and a flip
    costs a multiply, a log and a dot product per hidden unit
    (:meth:`flip_loss` fuses this with the gradient of a loss of the flips).
    Blocks of flips are sized to stay in the cache and, under autograd,
    recomputed in the backward pass, so memory stays bounded.

    Parameters
    ----------
    n_features : int
        Number of binary units.
    hidden_layer_sizes : tuple of int, default=(128,)
        Widths of the hidden layers (at least one).
    activation : {"softplus", "tanh", "sigmoid", "silu", "gelu"}, default="softplus"
        Hidden activation.
    base_logits : Tensor of shape (n_features,) or None, default=None
        Fixed log-odds ``ℓ`` of a base of independent units (not trained).
    zero_output : bool, default=True
        Start the output layer at zero, so that the untrained energy is the
        linear term alone.
    values : tuple of two floats, default=(0.0, 1.0)
        The two values ``(lo, hi)`` a unit takes.
    generator : torch.Generator, default=None
        Source of the initial weights.

    Attributes
    ----------
    bias : torch.nn.Parameter of shape (n_features,)
        The learned field ``b``.
    base_logits : Tensor of shape (n_features,)
        The fixed base log-odds ``ℓ`` (a buffer).
    layers : torch.nn.ModuleList
        The linear layers, ``W_1`` first and the output last.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import BinaryMLPEnergy
    >>> energy = BinaryMLPEnergy(3, (8,), zero_output=False,
    ...                          generator=torch.Generator().manual_seed(0)).double()
    >>> x = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    >>> delta = energy.flip_differences(x)
    >>> flipped = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    >>> bool(torch.allclose(delta[0, 0], energy(flipped)[0] - energy(x)[0]))
    True
    """

    def __init__(
        self,
        n_features,
        hidden_layer_sizes=(128,),
        activation="softplus",
        *,
        base_logits=None,
        zero_output=True,
        values=(0.0, 1.0),
        generator=None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation={activation!r} is not one of {sorted(ACTIVATIONS)}."
            )
        hidden_layer_sizes = tuple(int(h) for h in hidden_layer_sizes)
        if not hidden_layer_sizes or min(hidden_layer_sizes) < 1:
            raise ValueError(
                "BinaryMLPEnergy needs at least one hidden layer of positive "
                f"width, got hidden_layer_sizes={hidden_layer_sizes}."
            )
        self.n_features = n_features
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.values = (float(values[0]), float(values[1]))
        sizes = (n_features, *hidden_layer_sizes, 1)
        # skip_init: nn.Linear's own initialisation would draw from torch's
        # global RNG; ours draws from ``generator``.
        self.layers = nn.ModuleList(
            nn.utils.skip_init(nn.Linear, a, b)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        for layer in self.layers:
            init_linear(layer, generator)
        if zero_output:
            with torch.no_grad():
                self.layers[-1].weight.zero_()
                self.layers[-1].bias.zero_()
        self.bias = nn.Parameter(torch.zeros(n_features))
        base = torch.zeros(n_features) if base_logits is None else base_logits
        self.register_buffer(
            "base_logits", torch.as_tensor(base, dtype=torch.float32).clone()
        )

    # ------------------------------------------------------------ pieces
    def _bits(self, x):
        lo, hi = self.values
        return (x - lo) / (hi - lo)

    def _flip_step(self, x):
        lo, hi = self.values
        return (lo + hi) - 2 * x

    def field(self):
        """The coefficient of the bits in ``-E``, ``b + ℓ``.

        Returns
        -------
        field : Tensor of shape (n_features,)
            Differentiable in ``b``.
        """
        return self.bias + self.base_logits.to(self.bias.dtype)

    def first_layer(self, x):
        """The first pre-activation ``W_1 x + c_1``.

        Parameters
        ----------
        x : Tensor of shape (n, n_features)
            States, with entries in ``values``.

        Returns
        -------
        a : Tensor of shape (n, hidden_layer_sizes[0])
            The pre-activation.
        """
        return self.layers[0](x)

    def head(self, a):
        """The network above the first pre-activation, ``g(a)``.

        Parameters
        ----------
        a : Tensor of shape (..., hidden_layer_sizes[0])
            First pre-activations.

        Returns
        -------
        g : Tensor of shape (...)
            The hidden part of the energy.
        """
        act = ACTIVATIONS[self.activation]
        h = act(a)
        for layer in self.layers[1:-1]:
            h = act(layer(h))
        return self.layers[-1](h).squeeze(-1)

    def forward(self, x):
        return self.head(self.first_layer(x)) - self._bits(x) @ self.field()

    def _fusable(self):
        return self.activation == "softplus" and len(self.hidden_layer_sizes) == 1

    # ------------------------------------------------------------- flips
    def _moved_block(self, a, g, step, w_t, field):
        """``ΔE`` of the flips whose pre-activation moves are ``step ⊗ w_t``:
        ``a`` (n, H), ``g`` (n,), ``step`` (n, k), ``w_t`` (k, H) or
        (n, k, H), ``field`` (k,) or (n, k)."""
        lo, hi = self.values
        moved = torch.addcmul(a[:, None, :], step[:, :, None], w_t)
        return self.head(moved) - g[:, None] - field * step / (hi - lo)

    def flip_differences(self, x):
        """Energy change ``E(flip_j x) - E(x)`` of every one-bit flip.

        Parameters
        ----------
        x : Tensor of shape (n, n_features)
            States, with entries in ``values``.

        Returns
        -------
        delta : Tensor of shape (n, n_features)
            Column ``j`` is the change when bit ``j`` is flipped.
        """
        n, d = x.shape
        a = self.first_layer(x)
        g = self.head(a)
        step = self._flip_step(x)
        w_t = self.layers[0].weight.T.contiguous()
        field = self.field()
        grad = torch.is_grad_enabled()
        out = torch.empty_like(x) if not grad else None
        parts = []
        for r0, r1, b0, b1 in flip_blocks(n, d, max(self.hidden_layer_sizes)):
            args = (a[r0:r1], g[r0:r1], step[r0:r1, b0:b1], w_t[b0:b1], field[b0:b1])
            if grad:
                # Recomputed in the backward pass: memory stays one block.
                parts.append((r0, b0, checkpoint(
                    self._moved_block, *args, use_reentrant=False)))
            else:
                out[r0:r1, b0:b1] = self._moved_block(*args)
        if not grad:
            return out
        rows = {}
        for r0, _, block in parts:
            rows.setdefault(r0, []).append(block)
        return torch.cat([torch.cat(rows[r], dim=1) for r in sorted(rows)], dim=0)

    def flip_differences_at(self, x, index):
        """Energy change of flipping chosen bits, each alone.

        Parameters
        ----------
        x : Tensor of shape (n, n_features)
            States, with entries in ``values``.
        index : LongTensor of shape (n, k)
            The bits of each row, each flipped alone.

        Returns
        -------
        delta : Tensor of shape (n, k)
            ``E(flip_{index[i, c]} x_i) - E(x_i)``.
        """
        a = self.first_layer(x)
        step = self._flip_step(x).gather(1, index)
        w_t = self.layers[0].weight.T[index]
        return self._moved_block(a, self.head(a), step, w_t, self.field()[index])

    def site_updates(self, x, values):
        """Gibbs updates of chains ``x`` that keep the first pre-activation.

        A flip moves it by a column of ``W_1`` and costs the head on one row
        of pre-activations; with one softplus hidden layer, a multiply, a log
        and a dot product per hidden unit (see :func:`~skebm.samplers.gibbs`).

        Parameters
        ----------
        x : Tensor of shape (n, n_features)
            The chains, modified in place by the updates.
        values : tuple of two floats
            The values the sampler's units take.

        Returns
        -------
        updates : object or None
            The updates, or None when ``values`` are not this energy's.
        """
        if tuple(self.values) != tuple(values):
            return None
        if self._fusable():
            return _SoftplusUpdates(self, x, values)
        return _MLPUpdates(self, x, values)

    def flip_loss(self, x, summand):
        """Mean over the rows of ``Σ_j f(E(flip_j x) - E(x))``.

        The loss of ratio matching and of pseudo-likelihood; for one softplus
        hidden layer evaluated with its gradient in one pass over the flips.

        Parameters
        ----------
        x : Tensor of shape (n, n_features)
            States, with entries in ``values``.
        summand : callable
            ``t -> (f(t), f'(t))``, elementwise.

        Returns
        -------
        loss : Tensor of shape ()
            Differentiable in the parameters.
        """
        if not self._fusable():
            return summand(self.flip_differences(x))[0].sum(1).mean()
        lo, hi = self.values
        total = _FusedSoftplusFlipLoss.apply(
            self.first_layer(x),
            self.layers[0].weight,
            self.layers[-1].weight[0],
            self.field(),
            self._bits(x),
            summand,
            hi - lo,
        )
        return total / x.shape[0]


class _MLPUpdates(SiteUpdates):
    """:class:`~skebm.energies.BinaryMLPEnergy`: the first pre-activation is
    kept, a flip moves it by a column of ``W_1`` and costs the head on one
    row of pre-activations (not a full evaluation)."""

    def __init__(self, energy, x, values):
        super().__init__(energy, x, values)
        self.w_t = energy.layers[0].weight.T.contiguous()
        self.field = energy.field()
        self.refresh()

    def refresh(self):
        self.a = self.energy_fn.first_layer(self.x)
        self.g = self.energy_fn.head(self.a)

    def _delta(self, step, w_t, field):
        moved = torch.addcmul(self.a, step[:, None], w_t)
        g = self.energy_fn.head(moved)
        self._pending = (moved, g)
        return g - self.g - field * step / (self.hi - self.lo)

    def delta_sites(self, sites, step):
        j = sites.start
        return self._delta(step[:, 0], self.w_t[j], self.field[j])[:, None]

    def _apply(self, flip, step):
        moved, g = self._pending
        self.a = torch.where(flip[:, None], moved, self.a)
        self.g = torch.where(flip, g, self.g)
        return torch.where(flip, step, 0.0)

    def flip_sites(self, sites, flip, step):
        self.x[:, sites] += self._apply(flip[:, 0], step[:, 0])[:, None]

    def delta_at(self, index, step):
        return self._delta(step, self.w_t[index], self.field[index])

    def flip_at(self, index, flip, step):
        self.x[self.rows, index] += self._apply(flip, step)

    def energy(self):
        bits = (self.x - self.lo) / (self.hi - self.lo)
        return self.g - bits @ self.field


class _SoftplusUpdates(_MLPUpdates):
    """One softplus hidden layer: with ``s = σ(a)`` kept, a flip changes the
    hidden part by ``vᵀ log(1 + s (e^u - 1))`` (``u`` the moved column, two
    tables ``e^{±W} - 1``), and ``s`` moves to ``s e^u / (1 + s (e^u - 1))``:
    a multiply, a log and a dot product per hidden unit, no softplus."""

    def __init__(self, energy, x, values):
        super().__init__(energy, x, values)
        w_t = self.w_t * (self.hi - self.lo)
        self.t_up = torch.expm1(w_t)
        self.t_diff = torch.expm1(-w_t) - self.t_up
        self.v = energy.layers[-1].weight[0]

    def refresh(self):
        super().refresh()
        self.s = torch.sigmoid(self.a)

    def _moved(self, bits, t_up, t_diff):
        t = torch.addcmul(t_up, bits, t_diff)
        q = torch.mul(self.s, t).add_(1.0)
        return t, q, torch.log(q) @ self.v

    def delta_sites(self, sites, step):
        j = sites.start
        bits = (self.x[:, j : j + 1] - self.lo) / (self.hi - self.lo)
        t, q, dg = self._moved(bits, self.t_up[j], self.t_diff[j])
        self._pending = (t, q, dg)
        return (dg - self.field[j] * step[:, 0] / (self.hi - self.lo))[:, None]

    def delta_at(self, index, step):
        bits = ((self.x[self.rows, index] - self.lo) / (self.hi - self.lo))[:, None]
        t, q, dg = self._moved(bits, self.t_up[index], self.t_diff[index])
        self._pending = (t, q, dg)
        return dg - self.field[index] * step / (self.hi - self.lo)

    def _apply(self, flip, step):
        t, q, dg = self._pending
        self.s = torch.where(flip[:, None], self.s * (1 + t) / q, self.s)
        self.g = torch.where(flip, self.g + dg, self.g)
        return torch.where(flip, step, 0.0)
