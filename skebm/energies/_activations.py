"""Smooth activations with closed-form derivatives, and seeded layer initialisation,
shared by the network energies."""

import math

import torch
from torch import nn
from torch.nn import functional as F

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


class SiluHead(torch.autograd.Function):
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
ACTIVATION_DERIVATIVES = {
    "silu": _silu_derivatives,
    "softplus": _softplus_derivatives,
    "tanh": _tanh_derivatives,
    "sigmoid": _sigmoid_derivatives,
    "gelu": _gelu_derivatives,
}



def init_linear(layer, generator):
    # nn.Linear's own initialisation, drawn from ``generator`` so that
    # building a module never touches torch's global RNG.
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1.0 / math.sqrt(layer.weight.shape[1])
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
