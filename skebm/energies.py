"""Energy modules: ``forward(x) -> E(x)`` of shape ``(n,)`` (layer C).

p(x) = exp(-E(x)) / Z. Every module here is an ``nn.Module`` built as
``Energy(n_features, ...)``, twice differentiable in ``x`` (score matching
needs second derivatives) and picklable.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "ACTIVATIONS",
    "BoltzmannEnergy",
    "IsingEnergy",
    "LinearInParametersEnergy",
    "MLPEnergy",
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


def flip_energy_differences(energy, x, *, values=(0.0, 1.0)):
    """Energy change ``E(flip_j x) - E(x)`` for every sample and every bit.

    A flip maps a bit to the other of ``values``. Energies with a
    ``flip_differences`` method (pairwise models) use it; any other energy is
    evaluated once on all ``n * d`` flipped copies, as one batch (no Python
    loop over bits).

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
    flipped = x[:, None, :] + torch.diag_embed((lo + hi) - 2 * x)  # (n, d, d)
    e_flipped = energy(flipped.reshape(n * d, d)).reshape(n, d)
    return e_flipped - energy(x)[:, None]
