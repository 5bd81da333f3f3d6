"""Energy modules: ``forward(x) -> E(x)`` of shape ``(n,)`` (layer C).

p(x) = exp(-E(x)) / Z. Every module here is an ``nn.Module`` built as
``Energy(n_features, ...)``, twice differentiable in ``x`` (score matching
needs second derivatives) and picklable.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ._conditional_quadrature import (
    _HALF_LOG_2PI,
    GAUSS_LEGENDRE_ORDER,
    log_integral,
    prune_components,
    sample_inverse_cdf,
)

__all__ = [
    "ACTIVATIONS",
    "AutoregressiveCorrectedEnergy",
    "BinaryMLPEnergy",
    "BoltzmannEnergy",
    "IsingEnergy",
    "LinearInParametersEnergy",
    "MLPEnergy",
    "MaskedAutoregressiveEnergy",
    "QuadraticEnergy",
    "flip_energy_differences",
]

# Only smooth activations: score matching differentiates E twice in x, and a
# ReLU network has a zero Hessian almost everywhere.
ACTIVATIONS = {
    "softplus": F.softplus,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "silu": F.silu,
    "gelu": F.gelu,
}

def _silu_derivatives(p):
    s = torch.sigmoid(p)
    value = p * s
    rest = 1 - s
    slope = torch.addcmul(s, value, rest)  # s + p s (1 - s)
    spread = s * rest  # sigmoid'
    curve = spread * (torch.add(p, value, alpha=-2) + 2)  # s'(2 + p (1 - 2s))
    return value, slope, curve


def _softplus_derivatives(p):
    s = torch.sigmoid(p)
    return F.softplus(p), s, s * (1 - s)


def _tanh_derivatives(p):
    t = torch.tanh(p)
    return t, 1 - t * t, -2 * t * (1 - t * t)


def _sigmoid_derivatives(p):
    s = torch.sigmoid(p)
    return s, s * (1 - s), s * (1 - s) * (1 - 2 * s)


def _gelu_derivatives(p):
    cdf = torch.special.ndtr(p)
    pdf = torch.exp(-0.5 * p * p) / math.sqrt(2 * math.pi)
    return p * cdf, cdf + p * pdf, pdf * (2 - p * p)


class _SiluHead(torch.autograd.Function):
    """``sum_k c_jk silu^(j)(p_k)`` for ``j = 0, 1, 2``, with a fused backward.

    The head's value and its first two derivatives in the own variable,
    ``c_0 = v``, ``c_1 = v w``, ``c_2 = v w^2``. The backward pass uses the
    third derivative in closed form instead of differentiating the formulas,
    and both passes work in place on few ``(n, d, units)`` buffers: the
    elementwise passes over those (memory-bound) dominate the training step.
    With ``s = sigmoid(p)``, ``t = 1 - 2 s`` and ``s' = s (1 - s) = (1 - t^2)
    / 4``: ``silu = p s``, ``silu' = s + p s'``, ``silu'' = s' (2 + p t)`` and
    ``silu''' = s' (3 t + p (1.5 t^2 - 0.5))``.
    """

    @staticmethod
    def forward(pre, v, w):
        s = torch.sigmoid(pre)
        value = pre * s
        out = torch.linalg.vecdot(value, v)
        work = torch.mul(value, s).neg_().add_(value).add_(s)  # silu'
        vw = v * w
        first = torch.linalg.vecdot(work, vw)
        torch.mul(s, s, out=work).neg_().add_(s)  # s'
        value.mul_(-2).add_(pre).add_(2).mul_(work)  # silu'' = s'(2 + p - 2 p s)
        return out, first, torch.linalg.vecdot(value, vw * w)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g0, g1, g2):
        pre, v, w = ctx.saved_tensors
        g0, g1, g2 = g0[..., None], g1[..., None], g2[..., None]
        tilt = torch.sigmoid(pre)
        value = pre * tilt
        # sums over the rows of g_j times silu^(j) (and one order up for pre)
        r0 = (g0 * value).sum(0)
        acc = torch.mul(value, tilt).neg_().add_(value).add_(tilt)  # silu'
        r1 = (g1 * acc).sum(0)
        acc.mul_(g0)
        tilt.mul_(-2).add_(1)  # t = 1 - 2s
        spread = torch.mul(tilt, tilt)  # t^2 for now
        curve = torch.addcmul(torch.full_like(pre, 2.0), pre, tilt)  # 2 + p t
        value.copy_(spread).mul_(1.5).sub_(0.5).mul_(pre).add_(tilt, alpha=3)
        spread.neg_().add_(1).mul_(0.25)  # s'
        curve.mul_(spread)  # silu''
        value.mul_(spread)  # silu'''
        r2 = (g2 * curve).sum(0)
        acc.add_(curve.mul_(g1 * w))
        acc.add_(value.mul_(g2 * (w * w)))
        grad_pre = acc.mul_(v)
        grad_v = r0 + w * r1 + w * w * r2
        grad_w = v * (r1 + 2 * w * r2)
        return grad_pre, grad_v, grad_w


# Each activation with its first and second derivative, in closed form.
_ACTIVATION_DERIVATIVES = {
    "silu": _silu_derivatives,
    "softplus": _softplus_derivatives,
    "tanh": _tanh_derivatives,
    "sigmoid": _sigmoid_derivatives,
    "gelu": _gelu_derivatives,
}


# Smallest curvature of the confining quadratic of MLPEnergy: keeps exp(-E)
# integrable whatever the network learns (a std of 10 on standardized data).
_MIN_CONFINEMENT = 1e-2


def _init_linear(layer, generator):
    # nn.Linear's own initialisation, drawn from ``generator`` so that
    # building a module never touches torch's global RNG.
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1.0 / math.sqrt(layer.weight.shape[1])
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


class MLPEnergy(nn.Module):
    """A multilayer perceptron energy with a confining quadratic.

    .. math::
        E(x) = f_\\theta(x) + \\tfrac12 \\sum_j c_j (x_j - m_j)^2,
        \\quad c_j = \\operatorname{softplus}(\\rho_j) + 10^{-2}

    The network ``f`` uses smooth activations, so it grows at most linearly;
    the learned diagonal quadratic (curvature at least ``1e-2``) therefore keeps
    ``exp(-E)`` integrable, so that log Z is finite for every parameter value.

    As the correction of a base density (``confining=False``,
    ``zero_output=True``, ``output_bound=b``, see :mod:`skebm.base_densities`),
    the quadratic is left out (the base's Gaussian tails confine), the output
    layer starts at zero, so that the untrained model is the base, and the
    output is squashed to ``b tanh(f / b)``: the model's density ratio to
    the base stays within ``exp(±b)``, so importance weights from the base
    are bounded and its estimate of log Z has a finite variance (an
    unbounded correction learned by score matching in 30 dimensions put
    weights ``exp(20)`` in the base's tails, where no data constrains it).

    Parameters
    ----------
    n_features : int
        Input dimension.
    hidden_layer_sizes : tuple of int, default=(128, 128)
        Widths of the hidden layers.
    activation : {"softplus", "tanh", "sigmoid", "silu", "gelu"}, default="softplus"
        Hidden activation (smooth, for second derivatives).
    generator : torch.Generator, default=None
        Source of the initial weights.
    confining : bool, default=True
        Add the learned confining quadratic.
    zero_output : bool, default=False
        Start the output layer at zero (the network's output is then zero
        until it is trained).
    output_bound : float or None, default=None
        Squash the network's output to ``output_bound * tanh(f /
        output_bound)`` (identity near zero).

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import MLPEnergy
    >>> energy = MLPEnergy(3, hidden_layer_sizes=(16,),
    ...                    generator=torch.Generator().manual_seed(0))
    >>> energy(torch.zeros(4, 3)).shape
    torch.Size([4])
    """

    def __init__(
        self,
        n_features,
        hidden_layer_sizes=(128, 128),
        activation="softplus",
        generator=None,
        confining=True,
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
        sizes = (n_features, *self.hidden_layer_sizes, 1)
        # skip_init: nn.Linear's own initialisation would draw from torch's
        # global RNG; ours draws from ``generator`` below.
        self.layers = nn.ModuleList(
            nn.utils.skip_init(nn.Linear, a, b)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.confining = confining
        self.output_bound = output_bound
        if confining:
            self.center = nn.Parameter(torch.zeros(n_features))
            # softplus(rho) + 1e-2 = 1 at initialisation: a standard normal base.
            self.confinement_raw = nn.Parameter(
                torch.full(
                    (n_features,), math.log(math.expm1(1.0 - _MIN_CONFINEMENT))
                )
            )
        for layer in self.layers:
            _init_linear(layer, generator)
        if zero_output:
            with torch.no_grad():
                self.layers[-1].weight.zero_()
                self.layers[-1].bias.zero_()

    def confinement(self):
        return F.softplus(self.confinement_raw) + _MIN_CONFINEMENT

    def forward(self, x):
        act = ACTIVATIONS[self.activation]
        h = x
        for layer in self.layers[:-1]:
            h = act(layer(h))
        out = self.layers[-1](h).squeeze(-1)
        bound = getattr(self, "output_bound", None)
        if bound is not None:
            out = bound * torch.tanh(out / bound)
        if not getattr(self, "confining", True):
            return out
        quad = 0.5 * ((x - self.center) ** 2 * self.confinement()).sum(-1)
        return out + quad


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
            _init_linear(layer, generator)
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
            out, first, second = _SiluHead.apply(pre, v, w)
        else:
            value, slope, curve = _ACTIVATION_DERIVATIVES[self.activation](pre)
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



class _BoundedConditionals(nn.Module):
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


class QuadraticEnergy(nn.Module):
    """Gaussian energy ``E(x) = 1/2 (x - mean)^T P (x - mean)``.

    The precision ``P = L L^T`` is parametrized by a lower-triangular ``L``
    with a positive (exponentiated) diagonal, so it is symmetric positive
    definite for every parameter value. ``exp(-E)`` integrates to
    ``(2 pi)^{d/2} det(P)^{-1/2}`` (see ``skebm.partition.log_partition_gaussian``).

    Parameters
    ----------
    n_features : int
        Input dimension.
    generator : torch.Generator, default=None
        Unused (the initial value is the standard normal); kept for a uniform
        constructor signature.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import QuadraticEnergy
    >>> energy = QuadraticEnergy(2)
    >>> mean, precision = torch.tensor([1.0, 0.0]), torch.diag(torch.tensor([2.0, 0.5]))
    >>> energy.set_gaussian(mean, precision)
    >>> [round(e, 4) for e in energy(torch.tensor([[1.0, 0.0], [2.0, 2.0]])).tolist()]
    [0.0, 2.0]
    """

    def __init__(self, n_features, generator=None):
        super().__init__()
        self.n_features = n_features
        self.mean = nn.Parameter(torch.zeros(n_features))
        self.chol_offdiag = nn.Parameter(torch.zeros(n_features, n_features))
        self.chol_logdiag = nn.Parameter(torch.zeros(n_features))

    def cholesky_factor(self):
        tril = torch.tril(self.chol_offdiag, diagonal=-1)
        return tril + torch.diag(torch.exp(self.chol_logdiag))

    def precision(self):
        chol = self.cholesky_factor()
        return chol @ chol.T

    @torch.no_grad()
    def set_gaussian(self, mean, precision):
        """Set the parameters from a mean and an SPD precision matrix.

        Parameters
        ----------
        mean : Tensor of shape (n_features,)
            The mean ``m``.
        precision : Tensor of shape (n_features, n_features)
            The symmetric positive definite precision ``P``.
        """
        chol = torch.linalg.cholesky(precision.to(self.mean.dtype))
        self.mean.copy_(mean)
        self.chol_offdiag.copy_(torch.tril(chol, diagonal=-1))
        self.chol_logdiag.copy_(torch.log(torch.diagonal(chol)))

    def forward(self, x):
        z = (x - self.mean) @ self.cholesky_factor()
        return 0.5 * (z * z).sum(-1)


class LinearInParametersEnergy(nn.Module):
    """Base class for energies linear in their parameters: ``E(x) = t(x)^T theta``.

    Exponential families (polynomial energies, Gaussians, ...) have this form,
    and for them the score matching objective is quadratic in ``theta``, so
    :class:`~skebm.ScoreMatchingDensity` solves it in closed form. Subclasses
    implement :meth:`statistics` (twice differentiable in ``x``) and call
    ``super().__init__(n_statistics)``. The user is responsible for
    ``exp(-E)`` being integrable at the solution (e.g. a leading even-degree
    term with a positive coefficient).

    Parameters
    ----------
    n_statistics : int
        Length of ``t(x)``.

    Examples
    --------
    A quartic energy ``E(x) = theta_1 x^2 + theta_2 x^4``, fitted in closed
    form by score matching:

    >>> import numpy as np
    >>> import torch
    >>> from skebm import ScoreMatchingDensity
    >>> from skebm.energies import LinearInParametersEnergy
    >>> class Quartic(LinearInParametersEnergy):
    ...     def __init__(self):
    ...         super().__init__(n_statistics=2)
    ...     def statistics(self, x):
    ...         return torch.cat([x**2, x**4], dim=1)
    >>> X = np.random.RandomState(0).normal(size=(2000, 1))
    >>> est = ScoreMatchingDensity(energy=Quartic()).fit(X)
    >>> [round(t, 1) + 0.0 for t in est.energy_.theta.tolist()]
    [0.5, 0.0]
    """

    def __init__(self, n_statistics):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(n_statistics))

    def statistics(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x):
        return self.statistics(x) @ self.theta


class BoltzmannEnergy(nn.Module):
    """Fully visible Boltzmann machine on ``{0, 1}^d``.

    .. math::
        E(x) = -b^T x - \\tfrac12 x^T W x,

    with ``W`` symmetric and zero on the diagonal (``W`` is built from the
    strictly upper triangle of a free parameter, so both hold for every
    parameter value). ``exp(-E)`` sums to a finite ``Z`` over the ``2^d``
    states whatever the parameters.

    The energy change of flipping bit ``j`` comes from the quadratic form
    directly, ``E(flip_j x) - E(x) = -δ_j (b_j + (W x)_j)`` with
    ``δ_j = lo + hi - 2 x_j``, for all ``j`` at once (:meth:`flip_differences`).

    Parameters
    ----------
    n_features : int
        Number of binary units.
    generator : torch.Generator, default=None
        Unused (parameters start at zero: the uniform distribution); kept for a
        uniform constructor signature.

    Attributes
    ----------
    bias : torch.nn.Parameter of shape (n_features,)
        The fields ``b``.
    weight_raw : torch.nn.Parameter of shape (n_features, n_features)
        Free parameter whose strict upper triangle defines ``W``.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import BoltzmannEnergy
    >>> energy = BoltzmannEnergy(3).double()
    >>> energy.set_parameters(torch.tensor([1.0, 0.0, -1.0]),
    ...                       torch.tensor([[0.0, 2.0, 0.0],
    ...                                     [2.0, 0.0, 0.0],
    ...                                     [0.0, 0.0, 0.0]]))
    >>> x = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    >>> energy(x)  # -(1 + 0) - 2
    tensor([-3.], dtype=torch.float64, grad_fn=<SubBackward0>)
    >>> energy.flip_differences(x)  # E(flip_j x) - E(x) for j = 0, 1, 2
    tensor([[3., 2., 1.]], dtype=torch.float64, grad_fn=<MulBackward0>)
    """

    # The two values a unit takes; IsingEnergy uses spins.
    values = (0.0, 1.0)

    def __init__(self, n_features, generator=None):
        super().__init__()
        self.n_features = n_features
        self.bias = nn.Parameter(torch.zeros(n_features))
        self.weight_raw = nn.Parameter(torch.zeros(n_features, n_features))

    def coupling_matrix(self):
        """The symmetric, zero-diagonal coupling matrix ``W``.

        Returns
        -------
        coupling : Tensor of shape (n_features, n_features)
            ``W``, differentiable in ``weight_raw``.
        """
        upper = torch.triu(self.weight_raw, diagonal=1)
        return upper + upper.T

    @torch.no_grad()
    def set_parameters(self, bias, coupling):
        """Set ``b`` and ``W`` in place (the upper triangle of ``coupling`` is used).

        Parameters
        ----------
        bias : Tensor of shape (n_features,)
            The fields ``b``.
        coupling : Tensor of shape (n_features, n_features)
            The couplings; only its strict upper triangle is read, so ``W``
            stays symmetric with a zero diagonal.
        """
        self.bias.copy_(bias)
        self.weight_raw.copy_(torch.triu(coupling.to(self.weight_raw.dtype), 1))

    def forward(self, x):
        w = self.coupling_matrix()
        return -(x @ self.bias) - 0.5 * ((x @ w) * x).sum(-1)

    def _flip_step(self, x):
        lo, hi = self.values
        return (lo + hi) - 2 * x

    def flip_differences(self, x):
        """Energy change ``E(flip_j x) - E(x)`` of every one-bit flip.

        From the quadratic form, with no extra energy evaluation.

        Parameters
        ----------
        x : Tensor of shape (n, n_features)
            States, with entries in ``values``.

        Returns
        -------
        delta : Tensor of shape (n, n_features)
            Column ``j`` is the change when bit ``j`` is flipped.
        """
        return -self._flip_step(x) * (self.bias + x @ self.coupling_matrix())

    def flip_difference_at(self, x, index):
        """Energy change of flipping one chosen bit per row.

        Parameters
        ----------
        x : Tensor of shape (n, n_features)
            States, with entries in ``values``.
        index : LongTensor of shape (n,)
            The bit flipped in each row.

        Returns
        -------
        delta : Tensor of shape (n,)
            ``E(flip_{index[i]} x_i) - E(x_i)``.
        """
        w_rows = self.coupling_matrix()[index]  # (n, d)
        field = self.bias[index] + (w_rows * x).sum(-1)
        step = self._flip_step(x.gather(1, index[:, None]).squeeze(1))
        return -step * field

    def flip_differences_at(self, x, index):
        """Energy change of flipping chosen bits of each row, each alone.

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
        w_rows = self.coupling_matrix()[index]  # (n, k, d)
        field = self.bias[index] + (w_rows * x[:, None, :]).sum(-1)
        return -self._flip_step(x.gather(1, index)) * field

    def flip_differences_on(self, x, sites):
        """Energy change of flipping each of the chosen bits, one at a time.

        Parameters
        ----------
        x : Tensor of shape (n, n_features)
            States, with entries in ``values``.
        sites : LongTensor of shape (k,)
            The bits, each flipped alone.

        Returns
        -------
        delta : Tensor of shape (n, k)
            Column ``c`` is ``E(flip_{sites[c]} x) - E(x)``.
        """
        field = self.bias[sites] + x @ self.coupling_matrix()[:, sites]
        return -self._flip_step(x[:, sites]) * field

    @torch.no_grad()
    def independent_site_sets(self):
        """A partition of the bits into sets with no coupling inside a set.

        Greedy colouring of the graph of the nonzero couplings (bits in
        order, each given the smallest colour its neighbours do not use): the
        bits of one colour are conditionally independent given the others, so
        a Gibbs sampler may update them all at once from their exact
        conditionals. A chessboard for a lattice; one set per bit when every
        coupling is nonzero.

        Returns
        -------
        sets : list of LongTensor
            The colour classes, in colour order, on the device of the
            parameters.
        """
        return _greedy_colouring(self.coupling_matrix() != 0)


def _greedy_colouring(adjacency):
    """Colour classes of a greedy colouring of a symmetric boolean adjacency."""
    d = adjacency.shape[0]
    device = adjacency.device
    adjacency = adjacency.cpu()
    colour = torch.full((d,), -1, dtype=torch.long)
    for i in range(d):
        used = colour[adjacency[i] & (colour >= 0)]
        taken = torch.zeros(d + 1, dtype=torch.bool)
        taken[used] = True
        colour[i] = int(torch.argmin(taken.to(torch.uint8)))
    return [
        torch.nonzero(colour == c).squeeze(1).to(device)
        for c in range(int(colour.max()) + 1 if d else 0)
    ]


class IsingEnergy(BoltzmannEnergy):
    """Ising model on spins ``σ ∈ {-1, +1}^d``: ``E(σ) = -h^T σ - ½ σ^T J σ``.

    The same quadratic form as :class:`BoltzmannEnergy`, on spins: the fields
    ``h`` are ``bias`` and the couplings ``J`` (symmetric, zero diagonal) are
    :meth:`coupling_matrix`. Flipping spin ``j`` changes the energy by
    ``2 σ_j (h_j + (J σ)_j)``.

    Parameters
    ----------
    n_features : int
        Number of spins.
    generator : torch.Generator, default=None
        Unused (parameters start at zero); kept for a uniform constructor
        signature.

    Attributes
    ----------
    bias : torch.nn.Parameter of shape (n_features,)
        The fields ``h``.
    weight_raw : torch.nn.Parameter of shape (n_features, n_features)
        Free parameter whose strict upper triangle defines ``J``.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import IsingEnergy
    >>> energy = IsingEnergy(2).double()
    >>> energy.set_parameters(torch.tensor([0.5, 0.0]),
    ...                       torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    >>> s = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    >>> energy(s)  # -(0.5) - (-1)
    tensor([0.5000], dtype=torch.float64, grad_fn=<SubBackward0>)
    >>> energy.flip_differences(s)
    tensor([[-1., -2.]], dtype=torch.float64, grad_fn=<MulBackward0>)
    """

    values = (-1.0, 1.0)


# Elements of an (n, sites, width) block that the batched flip evaluations
# process at once: 2^18 float32 (1 MiB) stays in a core's L2 cache (measured
# best of 2^16 .. 2^20 for the fused ratio matching loss at d = 16, 64, 256).
_FLIP_BLOCK_ELEMENTS = 2**18


def _blocks(n, d, width):
    """``(row_start, row_stop, site_start, site_stop)`` blocks covering an
    ``(n, d, width)`` array with about ``_FLIP_BLOCK_ELEMENTS`` elements each."""
    sites = max(1, min(d, _FLIP_BLOCK_ELEMENTS // max(1, width)))
    rows = max(1, _FLIP_BLOCK_ELEMENTS // (sites * max(1, width)))
    return [
        (r0, min(n, r0 + rows), s0, min(d, s0 + sites))
        for r0 in range(0, n, rows)
        for s0 in range(0, d, sites)
    ]


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
        for r0, r1, b0, b1 in _blocks(n, d, hidden):
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
            _init_linear(layer, generator)
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
        for r0, r1, b0, b1 in _blocks(n, d, max(self.hidden_layer_sizes)):
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


def _generic_flip_block(energy, x, step, start, stop):
    """``E(flip_j x)`` for the sites ``start .. stop - 1``, shape (n, k)."""
    n, d = x.shape
    k = stop - start
    flipped = x[:, None, :].repeat(1, k, 1)
    sites = torch.arange(k, device=x.device)
    flipped[:, sites, start + sites] += step[:, start:stop]
    return energy(flipped.reshape(n * k, d)).reshape(n, k)


def flip_energy_differences(energy, x, *, values=(0.0, 1.0)):
    """Energy change ``E(flip_j x) - E(x)`` for every sample and every bit.

    A flip maps a bit to the other of ``values``. Energies with a
    ``flip_differences`` method (pairwise models, :class:`BinaryMLPEnergy`)
    use it; any other energy is evaluated on the ``n * d`` flipped copies in
    blocks of sites (no Python loop over bits; each block is recomputed in
    the backward pass, so memory stays one block).

    Parameters
    ----------
    energy : callable
        ``(n, d) -> (n,)``, e.g. a :class:`MLPEnergy`.
    x : Tensor of shape (n, d)
        States, with entries in ``values``.
    values : tuple of two floats, default=(0.0, 1.0)
        The two values a unit takes: ``(0, 1)`` bits or ``(-1, 1)`` spins.

    Returns
    -------
    delta : Tensor of shape (n, d)
        Column ``j`` is the energy change when bit ``j`` is flipped.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import flip_energy_differences
    >>> def energy(x):
    ...     return -x.sum(1)  # independent bits, each favouring 1
    >>> flip_energy_differences(energy, torch.tensor([[1.0, 0.0]]))
    tensor([[ 1., -1.]])
    """
    if hasattr(energy, "flip_differences"):
        return energy.flip_differences(x)
    n, d = x.shape
    lo, hi = values
    step = (lo + hi) - 2 * x
    blocks = [(b0, b1) for _, _, b0, b1 in _blocks(1, d, n * d)]
    grad = torch.is_grad_enabled() and len(blocks) > 1
    out = []
    for start, stop in blocks:
        if grad:
            out.append(
                checkpoint(
                    _generic_flip_block, energy, x, step, start, stop,
                    use_reentrant=False,
                )
            )
        else:
            out.append(_generic_flip_block(energy, x, step, start, stop))
    return torch.cat(out, dim=1) - energy(x)[:, None]
