"""Supports of truncated densities (layer C): membership, boundary weights, bounds.

Plain score matching integrates by parts over all of R^d; on a restricted domain
the boundary term does not vanish and the estimate is biased. Generalized score
matching (Hyvärinen 2007; Yu, Drton & Shojaie 2019; Liu, Kanamori & Williams
2022) multiplies each coordinate of the score difference by a weight ``h_j(x)``
that vanishes on the boundary, which removes the boundary term:

.. math::
    J = \\mathbb{E}\\Big[\\sum_j \\tfrac12 h_j (\\partial_j E)^2
        - h_j \\partial_j^2 E - (\\partial_j h_j)\\, \\partial_j E\\Big].

A domain supplies ``h`` and its diagonal derivative ``∂_j h_j`` through
:meth:`Domain.boundary_weight`. Box-shaped domains (:class:`Box`,
:class:`Orthant`) use one weight per coordinate, the distance to that
coordinate's nearer bound; every other domain uses one scalar weight, its
distance to the boundary, for all coordinates.

Write your own domain by subclassing :class:`Domain` and implementing
:meth:`~Domain.contains` and :meth:`~Domain.distance` (differentiable by
autograd); the weight, its gradient, parameter handling (``get_params`` /
``set_params``, so that ``domain__radius`` works in ``GridSearchCV``) and the
representation come from the base class.

Every domain is a closed set: points on the boundary belong to it (data at zero
are in the non-negative orthant). Parameters are stored as given and turned
into tensors of the input's dtype and device at each call, so a domain is
dimension-agnostic until :meth:`~Domain.validate` checks it against the data.
"""

import inspect
import math

import torch

__all__ = ["Ball", "Box", "Domain", "Orthant", "Polytope"]


class _Params:
    """``get_params`` / ``set_params`` / ``repr`` from ``__init__``'s signature.

    The scikit-learn protocol without importing scikit-learn (layer C): every
    ``__init__`` argument is stored unchanged under its own name, so that
    ``sklearn.base.clone`` can rebuild the object and nested parameters such as
    ``domain__radius`` can be searched.
    """

    @classmethod
    def _param_names(cls):
        init = cls.__init__
        if init is object.__init__:
            return []
        params = inspect.signature(init).parameters.values()
        return sorted(
            p.name
            for p in params
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )

    def get_params(self, deep=True):
        """Parameters of this domain, as scikit-learn's ``get_params``.

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of nested objects, as ``name__param``.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        out = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set parameters, as scikit-learn's ``set_params``.

        Parameters
        ----------
        **params : dict
            New values, by name (``name__param`` for nested objects).

        Returns
        -------
        self : object
            This domain.
        """
        valid = self._param_names()
        nested = {}
        for key, value in params.items():
            name, delim, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for {type(self).__name__}; "
                    f"valid parameters are {valid}."
                )
            if delim:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._param_names())
        return f"{type(self).__name__}({args})"


def _as_tensor(value, x):
    return torch.as_tensor(value, dtype=x.dtype, device=x.device)


class Domain(_Params):
    """Base class of a density's support, a closed subset of R^d.

    Subclasses implement :meth:`contains` and :meth:`distance`; they may
    override :meth:`bounds` (a bounding box, used by quadrature and by the base
    distribution of annealed importance sampling), :meth:`validate` and
    :meth:`boundary_weight`.

    Examples
    --------
    A half-space ``{x : x_0 <= x_1}`` as a user-written domain:

    >>> import torch
    >>> from skebm.domains import Domain
    >>> class BelowDiagonal(Domain):
    ...     def contains(self, x):
    ...         return x[:, 0] <= x[:, 1]
    ...     def distance(self, x):
    ...         return (x[:, 1] - x[:, 0]) / 2**0.5
    >>> x = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    >>> BelowDiagonal().contains(x)
    tensor([ True, False])
    >>> h, dh = BelowDiagonal().boundary_weight(x[:1], cap=0.5)
    >>> h
    tensor([[0.5000, 0.5000]])
    """

    def contains(self, x):
        """Boolean tensor of shape ``(n,)``: is each row of ``x`` in the domain.

        Parameters
        ----------
        x : Tensor of shape (n, d)
            Points.

        Returns
        -------
        inside : Tensor of shape (n,)
            True where the row lies in the (closed) domain.
        """
        raise NotImplementedError

    def distance(self, x):
        """Euclidean distance of each row of ``x`` (inside) to the boundary, ``(n,)``.

        Must be differentiable by autograd: the gradient of the boundary
        weight is taken from it.

        Parameters
        ----------
        x : Tensor of shape (n, d)
            Points inside the domain.

        Returns
        -------
        distance : Tensor of shape (n,)
            Distance of each row to the boundary.
        """
        raise NotImplementedError

    def validate(self, n_features):
        """Raise ValueError if the parameters do not fit ``n_features``.

        Parameters
        ----------
        n_features : int
            Dimension of the data the domain is used with.
        """

    def bounds(self, n_features, *, dtype=torch.float64, device="cpu"):
        """A bounding box ``(lower, upper)``, tensors of shape ``(n_features,)``.

        Infinite where the domain is unbounded (the default).

        Parameters
        ----------
        n_features : int
            Dimension.
        dtype : torch.dtype, default=torch.float64
            Floating-point type of the bounds.
        device : str or torch.device, default="cpu"
            Device of the bounds.

        Returns
        -------
        lower, upper : Tensor of shape (n_features,)
            The box's corners.
        """
        inf = torch.full((n_features,), math.inf, dtype=dtype, device=device)
        return -inf, inf

    def boundary_weight(self, x, cap=None):
        """Weights ``h_j(x)`` and their derivatives ``∂h_j/∂x_j``, each ``(n, d)``.

        The default is one scalar weight for all coordinates,
        ``h(x) = min(distance(x), cap)`` (no cap for ``cap=None``), with its
        gradient by autograd; the weights do not depend on the energy's
        parameters, so they are returned detached.

        Parameters
        ----------
        x : Tensor of shape (n, d)
            Points inside the domain.
        cap : float or None, default=None
            Upper bound ``C`` of the weight.

        Returns
        -------
        h : Tensor of shape (n, d)
            The weight of each coordinate, zero on the boundary.
        dh : Tensor of shape (n, d)
            ``∂h_j/∂x_j``.
        """
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            h = self.distance(x)
            if cap is not None:
                h = torch.clamp(h, max=cap)
            (dh,) = torch.autograd.grad(h.sum(), x)
        return h.detach()[:, None].expand_as(x), dh.detach()


class Box(Domain):
    """The box ``{x : lower_j <= x_j <= upper_j}``, infinite bounds allowed.

    Each coordinate gets its own weight, the distance to its nearer bound,
    ``h_j = min(x_j - lower_j, upper_j - x_j, cap)``, so that
    ``∂h_j/∂x_j`` is ``+1`` near the lower bound, ``-1`` near the upper one and
    ``0`` where the cap holds. A coordinate with no finite bound gets weight
    ``cap`` (``1`` when uncapped): plain score matching along it.

    Parameters
    ----------
    lower, upper : float or array-like of shape (n_features,)
        Bounds; scalars apply to every coordinate; ``-inf`` / ``inf`` allowed.

    Examples
    --------
    >>> import torch
    >>> from skebm.domains import Box
    >>> box = Box(0.0, 1.0)
    >>> box.contains(torch.tensor([[0.25, 0.9], [0.5, 1.5]]))
    tensor([ True, False])
    >>> h, dh = box.boundary_weight(torch.tensor([[0.25, 0.9]]))
    >>> h, dh
    (tensor([[0.2500, 0.1000]]), tensor([[ 1., -1.]]))
    """

    def __init__(self, lower=-math.inf, upper=math.inf):
        self.lower = lower
        self.upper = upper

    def _bounds_like(self, x):
        d = x.shape[-1]
        lower = torch.broadcast_to(_as_tensor(self.lower, x), (d,))
        upper = torch.broadcast_to(_as_tensor(self.upper, x), (d,))
        return lower, upper

    def validate(self, n_features):
        lower = torch.as_tensor(self.lower, dtype=torch.float64)
        upper = torch.as_tensor(self.upper, dtype=torch.float64)
        for name, value in (("lower", lower), ("upper", upper)):
            if value.ndim > 1 or (value.ndim == 1 and value.shape[0] != n_features):
                raise ValueError(
                    f"{type(self).__name__} {name} must be a scalar or have "
                    f"n_features={n_features} entries, got shape "
                    f"{tuple(value.shape)}."
                )
            if torch.isnan(value).any():
                raise ValueError(f"{type(self).__name__} {name} contains NaN.")
        if not bool((lower < upper).all()):
            raise ValueError(
                f"{type(self).__name__} needs lower < upper in every coordinate, "
                f"got lower={self.lower!r}, upper={self.upper!r}."
            )

    def bounds(self, n_features, *, dtype=torch.float64, device="cpu"):
        ref = torch.empty(0, n_features, dtype=dtype, device=device)
        lower, upper = self._bounds_like(ref)
        return lower.clone(), upper.clone()

    def contains(self, x):
        lower, upper = self._bounds_like(x)
        return ((x >= lower) & (x <= upper)).all(-1)

    def distance(self, x):
        lower, upper = self._bounds_like(x)
        return torch.minimum(x - lower, upper - x).min(-1).values

    def boundary_weight(self, x, cap=None):
        lower, upper = self._bounds_like(x)
        to_lower, to_upper = x - lower, upper - x
        near_lower = to_lower <= to_upper
        h = torch.where(near_lower, to_lower, to_upper)
        dh = torch.where(near_lower, 1.0, -1.0).to(x.dtype)
        unbounded = torch.isinf(h)
        if cap is not None:
            capped = h >= cap
            h = torch.clamp(h, max=cap)
            dh = torch.where(capped, 0.0, dh)
        else:
            h = torch.where(unbounded, 1.0, h)
            dh = torch.where(unbounded, 0.0, dh)
        return h, dh


class Orthant(Box):
    """The non-negative orthant ``{x : x_j >= 0}`` (``domain="nonnegative"``).

    The weight of Yu, Drton & Shojaie (2019): ``h_j = min(x_j, cap)``.

    Examples
    --------
    >>> import torch
    >>> from skebm.domains import Orthant
    >>> Orthant().boundary_weight(torch.tensor([[0.5, 3.0]]), cap=1.0)
    (tensor([[0.5000, 1.0000]]), tensor([[1., 0.]]))
    """

    def __init__(self):
        super().__init__(lower=0.0, upper=math.inf)


class Ball(Domain):
    """The closed ball ``{x : ||x - center|| <= radius}``.

    Parameters
    ----------
    center : float or array-like of shape (n_features,), default=0.0
        Centre; a scalar applies to every coordinate.
    radius : float, default=1.0
        Radius, positive.

    Examples
    --------
    >>> import torch
    >>> from skebm.domains import Ball
    >>> ball = Ball(radius=2.0)
    >>> ball.contains(torch.tensor([[0.0, 0.5], [2.0, 2.0]]))
    tensor([ True, False])
    >>> ball.distance(torch.tensor([[0.0, 0.5]]))
    tensor([1.5000])
    """

    def __init__(self, center=0.0, radius=1.0):
        self.center = center
        self.radius = radius

    def validate(self, n_features):
        center = torch.as_tensor(self.center, dtype=torch.float64)
        if center.ndim > 1 or (center.ndim == 1 and center.shape[0] != n_features):
            raise ValueError(
                "Ball center must be a scalar or have n_features="
                f"{n_features} entries, got shape {tuple(center.shape)}."
            )
        if not (math.isfinite(float(self.radius)) and float(self.radius) > 0):
            raise ValueError(f"Ball radius must be positive, got {self.radius!r}.")

    def _offset(self, x):
        return x - _as_tensor(self.center, x)

    def contains(self, x):
        return torch.linalg.vector_norm(self._offset(x), dim=-1) <= self.radius

    def distance(self, x):
        return self.radius - torch.linalg.vector_norm(self._offset(x), dim=-1)

    def bounds(self, n_features, *, dtype=torch.float64, device="cpu"):
        center = torch.broadcast_to(
            torch.as_tensor(self.center, dtype=dtype, device=device), (n_features,)
        )
        return center - self.radius, center + self.radius


class Polytope(Domain):
    """The convex polytope ``{x : A x <= b}``.

    The distance of an inside point to the boundary is its distance to the
    nearest facet hyperplane, ``min_i (b_i - a_i^T x) / ||a_i||`` (exact for a
    convex set; redundant rows do not change it).

    Parameters
    ----------
    A : array-like of shape (n_constraints, n_features)
        One row ``a_i`` per facet, non-zero.
    b : array-like of shape (n_constraints,)
        Offsets: the constraints are ``a_i^T x <= b_i``.

    Examples
    --------
    The triangle ``x >= 0, y >= 0, x + y <= 2``:

    >>> import torch
    >>> from skebm.domains import Polytope
    >>> triangle = Polytope([[-1.0, 0.0], [0.0, -1.0], [1.0, 1.0]], [0.0, 0.0, 2.0])
    >>> triangle.contains(torch.tensor([[0.5, 0.5], [1.5, 1.5]]))
    tensor([ True, False])
    """

    def __init__(self, A, b):
        self.A = A
        self.b = b

    def validate(self, n_features):
        A = torch.as_tensor(self.A, dtype=torch.float64)
        b = torch.as_tensor(self.b, dtype=torch.float64)
        if A.ndim != 2 or A.shape[1] != n_features or b.shape != (A.shape[0],):
            raise ValueError(
                "Polytope needs A of shape (n_constraints, n_features="
                f"{n_features}) and b of shape (n_constraints,); got "
                f"{tuple(A.shape)} and {tuple(b.shape)}."
            )
        if not bool(torch.isfinite(A).all() and torch.isfinite(b).all()):
            raise ValueError("Polytope A and b must be finite.")
        if bool((torch.linalg.vector_norm(A, dim=1) == 0).any()):
            raise ValueError("Polytope A has a zero row.")

    def _slack(self, x):
        A, b = _as_tensor(self.A, x), _as_tensor(self.b, x)
        return (b - x @ A.T) / torch.linalg.vector_norm(A, dim=1)

    def contains(self, x):
        A, b = _as_tensor(self.A, x), _as_tensor(self.b, x)
        return (x @ A.T <= b).all(-1)

    def distance(self, x):
        return self._slack(x).min(-1).values
