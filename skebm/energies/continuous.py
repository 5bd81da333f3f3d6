"""Energies on R^d: a confined multilayer perceptron, a Gaussian (quadratic) energy
and energies linear in their parameters."""

import math

import torch
from torch import nn
from torch.nn import functional as F

from ._activations import ACTIVATIONS, init_linear

# Smallest curvature of the confining quadratic of MLPEnergy: keeps exp(-E)
# integrable whatever the network learns (a std of 10 on standardized data).
_MIN_CONFINEMENT = 1e-2

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
            init_linear(layer, generator)
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
