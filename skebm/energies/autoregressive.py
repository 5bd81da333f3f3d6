"""Autoregressive energies: masked networks of univariate conditionals and a base
mixture's conditionals corrected by them, with quadrature log Z and exact sampling."""

import math

import torch
from torch import nn
from torch.nn import functional as F

from .._conditional_quadrature import (
    _HALF_LOG_2PI,
    GAUSS_LEGENDRE_ORDER,
    log_integral,
    prune_components,
    sample_inverse_cdf,
)
from ._activations import ACTIVATION_DERIVATIVES, ACTIVATIONS, SiluHead, init_linear


def _made_degrees(n_features, hidden_layer_sizes):
    """MADE degrees: input ``j`` has ``j + 1``; hidden units spread over ``1..d-1``.

    A unit of degree ``m`` sees inputs ``1..m`` only; coordinate ``i`` (from 1)
    reads units of degree below ``i``, so its context is ``x_<i``. Degrees are
    spread evenly (not drawn at random), so every input reaches a unit when a
    layer has at least ``d - 1`` of them, and the network is reproducible.
    """
    top = max(n_features - 1, 1)
    degrees = [torch.arange(1, n_features + 1)]
    for size in hidden_layer_sizes:
        spread = torch.div(torch.arange(size) * top, size, rounding_mode="floor")
        degrees.append(1 + spread)
    return degrees


class MaskedAutoregressiveEnergy(nn.Module):
    """All ``d`` conditional energies of an autoregressive model in one pass.

    Coordinate ``i``'s energy is a function of ``x_i`` given ``x_<i``:

    .. math::
        f_i(x_i; x_{<i}) = \\sum_{m=1}^{M} v_{im}\\,
        \\sigma\\big(a_{im}(x_{<i}) + w_{im} x_i\\big),

    where the context features ``a_i(x_<i)`` (``M = head_size`` per
    coordinate) come from a masked multilayer perceptron (MADE: Germain et
    al., 2015) that reads ``x_<i`` only, and ``w_i``, ``v_i`` are per-coordinate
    weights of a one-hidden-layer "head" in ``x_i``. :meth:`conditional_energies`
    takes the context and the coordinates the energies are evaluated at as two
    arguments: ``f_i`` reads the second only through its own coordinate ``i``,
    so the derivatives of every ``f_i`` in its own variable come from one
    backward pass of the sum (what composite score matching needs), and the
    head alone is evaluated again at quadrature nodes.

    Parameters
    ----------
    n_features : int
        Input dimension ``d``.
    hidden_layer_sizes : tuple of int, default=(64, 64)
        Widths of the masked hidden layers (each at least ``d - 1`` to let
        every coordinate see all of its context).
    activation : {"softplus", "tanh", "sigmoid", "silu", "gelu"}, default="silu"
        Smooth activation of the hidden layers and the head.
    head_size : int, default=32
        Units ``M`` of each coordinate's head.
    generator : torch.Generator, default=None
        Source of the initial weights.
    zero_output : bool, default=False
        Start the head's output weights ``v`` at zero (every ``f_i`` is then
        zero until trained).
    output_bound : float or None, default=None
        Squash each ``f_i`` to ``output_bound * tanh(f_i / output_bound)``:
        as the correction of a base's conditionals, each conditional then stays
        within ``exp(±2 output_bound)`` of the base's.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import MaskedAutoregressiveEnergy
    >>> energy = MaskedAutoregressiveEnergy(
    ...     3, hidden_layer_sizes=(8,), generator=torch.Generator().manual_seed(0))
    >>> x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    >>> energy.conditional_energies(x, x).shape
    torch.Size([4, 3])

    Coordinate ``i`` reads the context's coordinates before ``i`` only, and
    the second argument's coordinate ``i`` only:

    >>> before = energy.conditional_energies(x, x)
    >>> context = x.clone()
    >>> context[:, 1] += 1.0
    >>> (energy.conditional_energies(context, x) != before).any(0).tolist()
    [False, False, True]
    >>> own = x.clone()
    >>> own[:, 1] += 1.0
    >>> (energy.conditional_energies(x, own) != before).any(0).tolist()
    [False, True, False]
    """

    def __init__(
        self,
        n_features,
        hidden_layer_sizes=(64, 64),
        activation="silu",
        head_size=32,
        generator=None,
        zero_output=False,
        output_bound=None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation={activation!r} is not one of {sorted(ACTIVATIONS)}."
            )
        self.n_features = n_features
        self.hidden_layer_sizes = tuple(hidden_layer_sizes)
        self.activation = activation
        self.head_size = head_size
        self.output_bound = output_bound
        degrees = _made_degrees(n_features, self.hidden_layer_sizes)
        # Coordinate i (degree i + 1) reads units of degree <= i, i.e. x_<i.
        out_degrees = torch.arange(n_features).repeat_interleave(head_size)
        sizes = [len(deg) for deg in degrees] + [n_features * head_size]
        self.layers = nn.ModuleList(
            nn.utils.skip_init(nn.Linear, a, b)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        masks = [
            (deg_out[:, None] >= deg_in[None, :])
            for deg_in, deg_out in zip(degrees[:-1], degrees[1:], strict=True)
        ]
        masks.append(out_degrees[:, None] >= degrees[-1][None, :])
        for index, (layer, mask) in enumerate(zip(self.layers, masks, strict=True)):
            init_linear(layer, generator)
            self.register_buffer(f"mask{index}", mask.to(layer.weight.dtype))
        bound = 1.0 / math.sqrt(head_size)
        self.head_weight = nn.Parameter(
            torch.empty(n_features, head_size).uniform_(-1.0, 1.0, generator=generator)
        )
        self.head_output = nn.Parameter(
            torch.empty(n_features, head_size).uniform_(
                -bound, bound, generator=generator
            )
        )
        if zero_output:
            with torch.no_grad():
                self.head_output.zero_()

    def _mask(self, index):
        return getattr(self, f"mask{index}")

    def context_features(self, context, index=None):
        """The head's context offsets ``a_i(x_<i)``.

        Parameters
        ----------
        context : Tensor of shape (n, n_features)
            Only ``context[:, :i]`` reaches coordinate ``i``.
        index : int or None, default=None
            One coordinate's features only (the last layer restricted to it).

        Returns
        -------
        features : Tensor of shape (n, n_features, head_size) or (n, head_size)
        """
        act = ACTIVATIONS[self.activation]
        h = context
        last = len(self.layers) - 1
        for number, layer in enumerate(self.layers[:-1]):
            h = act(F.linear(h, layer.weight * self._mask(number), layer.bias))
        layer, mask = self.layers[-1], self._mask(last)
        if index is not None:
            rows = slice(index * self.head_size, (index + 1) * self.head_size)
            return F.linear(h, layer.weight[rows] * mask[rows], layer.bias[rows])
        out = F.linear(h, layer.weight * mask, layer.bias)
        return out.reshape(*out.shape[:-1], self.n_features, self.head_size)

    def head(self, features, own, index=None):
        """``f_i`` from the context features and the own coordinates.

        Parameters
        ----------
        features : Tensor of shape (n, n_features, head_size)
            From :meth:`context_features` (shape ``(n, head_size)`` with
            ``index``).
        own : Tensor of shape (n, n_features) or (n, n_features, m)
            Where each ``f_i`` is evaluated (``m`` points per coordinate);
            shape ``(n,)`` or ``(n, m)`` with ``index``.
        index : int or None, default=None
            Evaluate coordinate ``index`` only.

        Returns
        -------
        energies : Tensor of the shape of ``own``
        """
        act = ACTIVATIONS[self.activation]
        w, v = self.head_weight, self.head_output
        if index is not None:
            w, v = w[index], v[index]
        if own.dim() == features.dim():  # a trailing dimension of points
            pre = features[..., None, :] + own[..., None] * w[..., None, :]
            out = torch.einsum("...mh,...h->...m", act(pre), v)
        else:
            out = (act(features + own[..., None] * w) * v).sum(-1)
        bound = self.output_bound
        return out if bound is None else bound * torch.tanh(out / bound)

    def conditional_derivatives(self, context, own):
        """``f_i``, ``∂f_i/∂own_i`` and ``∂²f_i/∂own_i²``, in closed form.

        The head is one hidden layer in ``own_i``, so both derivatives are
        sums over its units of the activation's derivatives: no double
        backward pass (what composite score matching would otherwise need).

        Parameters
        ----------
        context, own : Tensor of shape (n, n_features)

        Returns
        -------
        energies, first, second : Tensor of shape (n, n_features)
        """
        w, v = self.head_weight, self.head_output
        pre = torch.addcmul(self.context_features(context), own[..., None], w)
        if self.activation == "silu":
            out, first, second = SiluHead.apply(pre, v, w)
        else:
            value, slope, curve = ACTIVATION_DERIVATIVES[self.activation](pre)
            vw = v * w
            out = torch.linalg.vecdot(value, v)
            first = torch.linalg.vecdot(slope, vw)
            second = torch.linalg.vecdot(curve, vw * w)
        bound = self.output_bound
        if bound is None:
            return out, first, second
        t = torch.tanh(out / bound)
        damp = 1 - t * t  # d/df [b tanh(f / b)]
        return (
            bound * t,
            damp * first,
            damp * second - (2 / bound) * t * damp * first * first,
        )

    def conditional_energies(self, context, own):
        """``f_i(own_i; context_<i)`` for every coordinate.

        Parameters
        ----------
        context : Tensor of shape (n, n_features)
        own : Tensor of shape (n, n_features) or (n, n_features, m)

        Returns
        -------
        energies : Tensor of the shape of ``own``
        """
        return self.head(self.context_features(context), own)

    def forward(self, x):
        return self.conditional_energies(x, x).sum(-1)



class BoundedConditionals(nn.Module):
    """A user's autoregressive correction, bounded: ``b tanh(f_i / b)``."""

    def __init__(self, module, output_bound):
        super().__init__()
        self.module = module
        self.output_bound = output_bound

    def conditional_energies(self, context, own):
        b = self.output_bound
        return b * torch.tanh(self.module.conditional_energies(context, own) / b)

    def forward(self, x):
        return self.conditional_energies(x, x).sum(-1)

# Elements (rows x coordinates x nodes x head units) evaluated at once by the
# quadrature and the sampler of AutoregressiveCorrectedEnergy: bounds memory.
_NODE_CHUNK = 1 << 22
# Equally spaced points per panel on which the sampler inverts the CDF.
_SAMPLING_GRID = 64


class AutoregressiveCorrectedEnergy(nn.Module):
    """An autoregressive density: each conditional of a base, corrected.

    .. math::
        \\log p(x) = \\sum_{i=1}^d \\Big[\\log q_i(x_i \\mid x_{<i})
        - g_i(x_i; x_{<i}) - \\log Z_i(x_{<i})\\Big],

    with ``q_i`` the base's conditional (a 1-D Gaussian mixture, from
    :meth:`~skebm.base_densities.GaussianMixtureBase.conditionals`), ``g_i``
    the correction's conditional energies and ``Z_i(x_<i) = ∫ q_i e^{-g_i}``
    over the coordinate's interval, computed for every row by 1-D quadrature
    (:func:`skebm.partition.log_partition_conditional`). A bounded correction
    (``|g_i| <= b``, e.g. a :class:`MaskedAutoregressiveEnergy` with
    ``output_bound=b``) keeps each conditional within ``exp(±2b)`` of the
    base's: its tails are the base's Gaussian tails and every ``Z_i`` lies in
    ``[e^-b, e^b]``.
    ``forward(x)`` is ``-log p(x)``: the density is normalized, its log
    partition function is zero. :meth:`sample` is exact ancestral sampling.

    The base and the correction work in the model's coordinate order
    ``x[:, order]``; :meth:`log_prob`, :meth:`forward` and :meth:`sample` speak
    the data's order.

    Parameters
    ----------
    base : GaussianMixtureBase
        The base ``q``, in the model's order.
    correction : torch.nn.Module
        Has ``conditional_energies(context, own) -> (n, d)`` whose column ``i``
        reads ``context[:, :i]`` and ``own[:, i]`` only, e.g. a
        :class:`MaskedAutoregressiveEnergy`. Its attribute ``output_bound``,
        if any, is the bound ``b`` of ``|g_i|`` (used to skip the mixture
        components that cannot matter in the quadrature).
    order : array-like of int of shape (n_features,), default=None
        The model's order (a permutation); None is the identity.
    lower, upper : array-like of shape (n_features,), default=None
        Interval of each coordinate, in the data's order (None: the real line).
    n_panels : int, default=8
        Panels of each mixture component's quadrature (8 Gauss-Legendre nodes
        each).

    Examples
    --------
    >>> import torch
    >>> from skebm.base_densities import GaussianMixtureBase
    >>> from skebm.energies import (AutoregressiveCorrectedEnergy,
    ...                             MaskedAutoregressiveEnergy)
    >>> base = GaussianMixtureBase(torch.ones(1), torch.zeros(1, 2),
    ...                            torch.eye(2)[None])
    >>> correction = MaskedAutoregressiveEnergy(
    ...     2, (8,), generator=torch.Generator().manual_seed(0))
    >>> model = AutoregressiveCorrectedEnergy(base, correction).double()
    >>> x = model.sample(5, generator=torch.Generator().manual_seed(0))
    >>> model.log_prob(x).shape
    torch.Size([5])
    """

    def __init__(
        self,
        base,
        correction,
        *,
        order=None,
        lower=None,
        upper=None,
        n_panels=8,
    ):
        super().__init__()
        d = base.n_features
        self.base = base
        self.correction = correction
        self.n_features = d
        self.n_panels = int(n_panels)
        order = torch.arange(d) if order is None else torch.as_tensor(order).long()
        self.register_buffer("order", order.clone())
        self.register_buffer("inverse_order", torch.argsort(order))
        dtype = base.means.dtype
        lower = torch.full((d,), -math.inf) if lower is None else lower
        upper = torch.full((d,), math.inf) if upper is None else upper
        lower = torch.as_tensor(lower, dtype=dtype).broadcast_to((d,))[order]
        upper = torch.as_tensor(upper, dtype=dtype).broadcast_to((d,))[order]
        # In the model's order.
        self.register_buffer("lower", lower.clone())
        self.register_buffer("upper", upper.clone())

    # ------------------------------------------------- conditional energies
    def conditional_energies(self, context, own):
        """``-log q_i(own_i | context_<i) + g_i(own_i; context_<i)``, model order.

        The unnormalized negative log-density of each conditional, whose
        derivatives in ``own_i`` composite score matching uses.

        Parameters
        ----------
        context, own : Tensor of shape (n, n_features)
            In the model's order.

        Returns
        -------
        energies : Tensor of shape (n, n_features)
        """
        log_w, means, stds = self.base.conditionals(context)
        z = (own[..., None] - means) / stds
        log_q = torch.logsumexp(
            log_w - 0.5 * z * z - torch.log(stds) - _HALF_LOG_2PI, dim=-1
        )
        return self.correction.conditional_energies(context, own) - log_q

    def _correction_at(self, context, index=None):
        """``nodes -> g`` at nodes of every coordinate, or of ``index`` only.

        ``index`` is an int (nodes of shape ``(n, m)``) or a slice of the
        coordinates (nodes ``(n, len, m)``); None is every coordinate.
        """
        corr = self.correction
        if isinstance(corr, MaskedAutoregressiveEnergy):
            if isinstance(index, int):
                features = corr.context_features(context, index)
            else:
                features = corr.context_features(context)
                if index is not None:
                    features = features[:, index]
            return lambda nodes: corr.head(features, nodes, index)
        columns = torch.arange(self.n_features, device=context.device)
        columns = columns if index is None else columns[index]

        def generic(nodes):  # the user's module, once for every node
            m = nodes.shape[-1]
            ctx = context.repeat_interleave(m, dim=0)
            own = ctx.clone()
            if columns.dim() == 0:
                own[:, columns] = nodes.reshape(-1)
                return corr.conditional_energies(ctx, own)[:, columns].reshape(-1, m)
            own[:, columns] = nodes.transpose(1, 2).reshape(-1, len(columns))
            out = corr.conditional_energies(ctx, own)[:, columns]
            return out.reshape(-1, m, len(columns)).transpose(1, 2)

        return generic

    def _rows_per_chunk(self, n_nodes):
        width = getattr(self.correction, "head_size", 64)
        return max(1, _NODE_CHUNK // (self.n_features * n_nodes * width))

    # -------------------------------------------------------- normalization
    def log_normalizers(self, x, *, n_panels=None, upper=None):
        """``log Z_i(x_<i)`` of every row and coordinate, by quadrature.

        Parameters
        ----------
        x : Tensor of shape (n, n_features)
            Rows in the model's order; coordinate ``i`` uses ``x[:, :i]``.
        n_panels : int, default=None
            Quadrature panels per component (default: ``self.n_panels``).
        upper : Tensor of shape (n, n_features), default=None
            Integrate up to ``min(upper, interval's upper bound)`` instead
            (cumulative distribution functions).

        Returns
        -------
        log_z : Tensor of shape (n, n_features)
        """
        n_panels = self.n_panels if n_panels is None else int(n_panels)
        n_nodes = self.base.n_components * n_panels * GAUSS_LEGENDRE_ORDER
        step = self._rows_per_chunk(n_nodes)
        # Coordinate 0 has no context: one normalizer serves every row.
        shared = upper is None and x.shape[0] > 1 and self.n_features > 1
        first = self._log_normalizers(x[:1], n_panels, None) if shared else None
        out = []
        for start in range(0, x.shape[0], step):
            xb = x[start : start + step]
            top = None if upper is None else upper[start : start + step]
            if shared:
                rest = self._log_normalizers(xb, n_panels, top, slice(1, None))
                out.append(torch.cat([first[:, :1].expand(len(xb), 1), rest], 1))
            else:
                out.append(self._log_normalizers(xb, n_panels, top))
        return torch.cat(out) if out else x.new_zeros(0, self.n_features)

    def _log_normalizers(self, x, n_panels, upper, columns=None):
        columns = slice(None) if columns is None else columns
        log_w, means, stds = self.base.conditionals(x)
        log_w, means = log_w[:, columns], means[:, columns]
        stds = stds[columns].expand_as(means)
        lower = self.lower[columns].expand(len(x), -1)
        top = self.upper[columns].expand(len(x), -1)
        if upper is not None:
            top = torch.minimum(top, upper[:, columns])
        bound = getattr(self.correction, "output_bound", None)
        bound = math.inf if bound is None else bound
        log_w, means, stds = prune_components(log_w, means, stds, lower, top, bound)
        index = None if columns == slice(None) else columns
        return log_integral(
            log_w, means, stds, self._correction_at(x, index), lower, top, n_panels
        )

    def conditional_cdf(self, x):
        """``P(X_i <= x_i | x_<i)`` of every row and coordinate (model order).

        By quadrature of the conditional density up to ``x_i``. Under exact
        samples of the model, every column is uniform on ``[0, 1]``.

        Parameters
        ----------
        x : Tensor of shape (n, n_features)
            In the model's order.

        Returns
        -------
        cdf : Tensor of shape (n, n_features)
        """
        x = torch.clamp(x, min=self.lower, max=self.upper)
        partial = self.log_normalizers(x, upper=x)
        return torch.exp(partial - self.log_normalizers(x))

    def _outside(self, x):
        return ((x < self.lower) | (x > self.upper)).any(-1)

    def log_prob(self, x):
        """``log p(x)`` of each row, normalized (data order).

        Parameters
        ----------
        x : Tensor of shape (n, n_features)

        Returns
        -------
        log_p : Tensor of shape (n,)
            ``-inf`` outside the coordinates' intervals.
        """
        x = x[:, self.order]
        energies = self.conditional_energies(x, x)
        log_p = -(energies + self.log_normalizers(x)).sum(-1)
        return torch.where(self._outside(x), -math.inf, log_p)

    def forward(self, x):
        return -self.log_prob(x)

    # ------------------------------------------------------------- sampling
    def sample(self, n_samples, *, generator=None):
        """Exact ancestral draws, one coordinate after the other (data order).

        Coordinate ``i`` is drawn from its conditional given the ones drawn
        before it by inverting its cumulative distribution function (see
        :func:`skebm.samplers.sample_conditional`); no Markov chain.

        Parameters
        ----------
        n_samples : int
        generator : torch.Generator, default=None

        Returns
        -------
        x : Tensor of shape (n_samples, n_features)
        """
        n_nodes = self.base.n_components * self.n_panels * GAUSS_LEGENDRE_ORDER
        step = max(1, self._rows_per_chunk(n_nodes) * self.n_features)
        chunks = [
            self._sample_chunk(min(step, n_samples - start), generator)
            for start in range(0, n_samples, step)
        ]
        return torch.cat(chunks)[:, self.inverse_order]

    def _sample_chunk(self, n, generator):
        base = self.base
        d, k = self.n_features, base.n_components
        dtype, device = base.means.dtype, base.means.device
        chol = base.cholesky
        diag = torch.diagonal(chol, dim1=1, dim2=2)  # (k, d)
        x = torch.zeros(n, d, dtype=dtype, device=device)
        z = torch.zeros(n, k, d, dtype=dtype, device=device)  # whitened so far
        log_marginal = torch.zeros(n, k, dtype=dtype, device=device)
        for i in range(d):
            # q(x_i | x_<i): component means m_ki + sum_{j<i} L_kij z_kj,
            # standard deviations L_kii, weights pi_k N(x_<i; m_k, S_k).
            mean = base.means[:, i] + torch.einsum(
                "kj,nkj->nk", chol[:, i, :i], z[:, :, :i]
            )
            log_w = torch.log_softmax(base.log_weights + log_marginal, dim=1)
            std = diag[:, i].expand(n, k)
            xi = sample_inverse_cdf(
                log_w,
                mean,
                std,
                self._correction_at(x, i),
                self.lower[i].expand(n),
                self.upper[i].expand(n),
                self.n_panels,
                _SAMPLING_GRID,
                generator,
            )
            x[:, i] = xi
            zi = (xi[:, None] - mean) / std
            z[:, :, i] = zi
            log_marginal = log_marginal - 0.5 * zi * zi - torch.log(std) - _HALF_LOG_2PI
        return x
