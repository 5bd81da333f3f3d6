"""Pairwise binary energies: fully visible Boltzmann machines and Ising models, with
their local fields for one-site flips and Gibbs updates."""

import torch
from torch import nn

from ._site_updates import SiteUpdates


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

    def site_updates(self, x, values):
        """Gibbs updates of chains ``x`` that keep the local fields ``b + W x``.

        A flip's energy change is then one product, and a flip moves the
        fields by a row of ``W``; the units of a colour class are updated
        together (see :func:`~skebm.samplers.gibbs`).

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
        return _PairwiseUpdates(self, x, values)


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


def _as_index(sites):
    """A colour class as a slice when its sites are consecutive (a view, no
    gather), else the index tensor."""
    values = sites.tolist()
    if values == list(range(values[0], values[-1] + 1)):
        return slice(values[0], values[-1] + 1)
    return sites



class _PairwiseUpdates(SiteUpdates):
    """Boltzmann machines and Ising models: the local fields ``b + W x`` are
    kept, so a flip's energy change is one product and a flip updates the
    fields by a row of ``W``; sites of one colour class update together."""

    def __init__(self, energy, x, values):
        super().__init__(energy, x, values)
        self.w = energy.coupling_matrix()
        self.b = energy.bias
        self._sets = [_as_index(s) for s in energy.independent_site_sets()]
        self.refresh()

    def refresh(self):
        self.field = torch.addmm(self.b, self.x, self.w)

    @property
    def sets(self):
        return self._sets

    def delta_sites(self, sites, step):
        return -step * self.field[:, sites]

    def flip_sites(self, sites, flip, step):
        change = torch.where(flip, step, 0.0)
        self.x[:, sites] += change
        self.field.addmm_(change, self.w[sites])

    def delta_at(self, index, step):
        return -step * self.field[self.rows, index]

    def flip_at(self, index, flip, step):
        change = torch.where(flip, step, 0.0)
        self.x[self.rows, index] += change
        self.field.addcmul_(change[:, None], self.w[index])

    def energy(self):
        return -(self.x @ self.b) - 0.5 * (self.x * (self.field - self.b)).sum(1)
