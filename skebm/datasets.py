"""Toy densities with an exact log-density, for examples, tests and benchmarks.

Each ``make_<name>(n_samples, *, random_state=None)`` returns an array of
shape ``(n_samples, 2)``; ``toy_log_density(name, X)`` evaluates the exact
log-density of that distribution (with the same default shape parameters).
"""

import math

import numpy as np
from scipy.special import logsumexp
from sklearn.utils import check_random_state

__all__ = [
    "TOY_DENSITIES",
    "make_checkerboard",
    "make_eight_gaussians",
    "make_ising_lattice",
    "make_rings",
    "make_two_moons",
    "make_two_spirals",
    "toy_log_density",
]

_LOG_2PI = math.log(2 * math.pi)


def _gauss2d_logpdf(X, centers, std):
    """log N(x; c, std^2 I) for every row of X and every center: (n, k)."""
    sq = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
    return -0.5 * sq / std**2 - _LOG_2PI - 2 * math.log(std)


# ---------------------------------------------------------------- eight Gaussians
_EIGHT_RADIUS, _EIGHT_STD = 2.0, 0.2


def _eight_centers():
    angles = 2 * np.pi * np.arange(8) / 8
    return _EIGHT_RADIUS * np.stack([np.cos(angles), np.sin(angles)], 1)


def make_eight_gaussians(n_samples=1000, *, random_state=None):
    """Equal mixture of eight Gaussians (std 0.2) on a circle of radius 2.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of points.
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
        The points; their exact log-density is
        ``toy_log_density("eight_gaussians", X)``.

    Examples
    --------
    >>> from skebm.datasets import make_eight_gaussians, toy_log_density
    >>> X = make_eight_gaussians(500, random_state=0)
    >>> X.shape
    (500, 2)
    >>> bool(toy_log_density("eight_gaussians", X).mean() > -2)
    True
    """
    rng = check_random_state(random_state)
    comp = rng.randint(8, size=n_samples)
    return _eight_centers()[comp] + _EIGHT_STD * rng.standard_normal((n_samples, 2))


def _eight_gaussians_log_density(X):
    return logsumexp(
        _gauss2d_logpdf(X, _eight_centers(), _EIGHT_STD), axis=1
    ) - math.log(8)


# ---------------------------------------------------------------- rings
_RING_RADII, _RING_STD = np.array([1.0, 2.0, 3.0]), 0.1


def make_rings(n_samples=1000, *, random_state=None):
    """Three concentric rings (radii 1, 2, 3, radial std 0.1), equal weights.

    The radius is drawn from an equal mixture of ``N(r_k, 0.1^2)``, the angle
    uniformly; the density is that of the folded radius over ``2 pi r``.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of points.
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
        The points; their exact log-density is
        ``toy_log_density("rings", X)``.

    Examples
    --------
    >>> from skebm.datasets import make_rings, toy_log_density
    >>> X = make_rings(500, random_state=0)
    >>> X.shape
    (500, 2)
    >>> import numpy as np
    >>> radius = np.hypot(X[:, 0], X[:, 1])
    >>> np.round(np.percentile(radius, [10, 50, 90]), 1)
    array([0.9, 2. , 3.1])
    """
    rng = check_random_state(random_state)
    comp = rng.randint(len(_RING_RADII), size=n_samples)
    radius = _RING_RADII[comp] + _RING_STD * rng.standard_normal(n_samples)
    angle = rng.uniform(0, 2 * np.pi, n_samples)
    return radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)


def _rings_log_density(X):
    # r = 0 has measure zero; the floor keeps the formula finite there.
    r = np.maximum(np.sqrt((X**2).sum(1)), 1e-12)
    k = len(_RING_RADII)
    # The radius r and -r give the same point: fold the radial mixture.
    z_pos = (r[:, None] - _RING_RADII[None]) / _RING_STD
    z_neg = (r[:, None] + _RING_RADII[None]) / _RING_STD
    log_n = -0.5 * np.log(2 * np.pi) - math.log(_RING_STD)
    log_radial = (
        logsumexp(np.concatenate([-0.5 * z_pos**2, -0.5 * z_neg**2], 1), axis=1)
        + log_n
        - math.log(k)
    )
    return log_radial - np.log(2 * np.pi * r)


# ---------------------------------------------------------------- checkerboard
def make_checkerboard(n_samples=1000, *, random_state=None):
    """Uniform on the 8 dark squares of a 4x4 board covering ``[-2, 2]^2``.

    Exact log-density ``-log 8`` on the dark squares, ``-inf`` elsewhere.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of points.
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
        The points; their exact log-density is
        ``toy_log_density("checkerboard", X)``.

    Examples
    --------
    >>> from skebm.datasets import make_checkerboard, toy_log_density
    >>> X = make_checkerboard(500, random_state=0)
    >>> X.shape
    (500, 2)
    >>> import numpy as np
    >>> bool(np.all(toy_log_density("checkerboard", X) == -np.log(8)))
    True
    """
    rng = check_random_state(random_state)
    x1 = rng.uniform(-2, 2, n_samples)
    x2_ = rng.uniform(0, 1, n_samples) + rng.randint(2, size=n_samples) * 2.0 - 2.0
    x2 = x2_ + (np.floor(x1) % 2)
    return np.stack([x1, x2], 1)


def _checkerboard_log_density(X):
    inside = (np.abs(X) <= 2).all(1)
    dark = (np.floor(X[:, 0]) + np.floor(X[:, 1])) % 2 == 0
    out = np.full(len(X), -np.inf)
    out[inside & dark] = -math.log(8.0)
    return out


# ---------------------------------------------------------------- two moons
_MOONS_NOISE = 0.1
_MOONS_NODES = 512


def _moons_curve(t):
    upper = np.stack([np.cos(t), np.sin(t)], -1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], -1)
    return upper, lower


def make_two_moons(n_samples=1000, *, random_state=None):
    """Two interleaved half circles (as ``sklearn.datasets.make_moons``) with
    the arc parameter drawn uniformly and Gaussian noise of std 0.1.

    The exact density is a continuous mixture over the arc; it is evaluated
    by Gauss-Legendre quadrature over the arc parameter (512 nodes, error
    far below 1e-6 nats).

    Parameters
    ----------
    n_samples : int, default=1000
        Number of points.
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
        The points; their exact log-density is
        ``toy_log_density("two_moons", X)``.

    Examples
    --------
    >>> from skebm.datasets import make_two_moons, toy_log_density
    >>> X = make_two_moons(500, random_state=0)
    >>> X.shape
    (500, 2)
    >>> bool(toy_log_density("two_moons", X).mean() > -1.5)
    True
    """
    rng = check_random_state(random_state)
    t = rng.uniform(0, np.pi, n_samples)
    upper, lower = _moons_curve(t)
    which = rng.randint(2, size=n_samples).astype(bool)
    X = np.where(which[:, None], upper, lower)
    return X + _MOONS_NOISE * rng.standard_normal((n_samples, 2))


def _two_moons_log_density(X):
    nodes, weights = np.polynomial.legendre.leggauss(_MOONS_NODES)
    t = 0.5 * np.pi * (nodes + 1)
    log_w = np.log(weights * 0.5)  # mean over t ~ U(0, pi)
    upper, lower = _moons_curve(t)
    centers = np.concatenate([upper, lower], 0)
    log_w = np.concatenate([log_w, log_w]) - math.log(2)
    out = np.empty(len(X))
    for start in range(0, len(X), 512):
        xb = X[start : start + 512]
        out[start : start + 512] = logsumexp(
            _gauss2d_logpdf(xb, centers, _MOONS_NOISE) + log_w[None], axis=1
        )
    return out


# ---------------------------------------------------------------- two spirals
_SPIRAL_NOISE = 0.1
_SPIRAL_TURNS = 1.5
_SPIRAL_NODES = 768


def _spiral_curve(u):
    # Arc parameter u in [0, 1] mapped to angle; radius grows with the angle.
    angle = 0.3 + u * _SPIRAL_TURNS * 2 * np.pi
    radius = angle / (_SPIRAL_TURNS * 2 * np.pi) * 2.5
    first = np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1)
    return first, -first


def make_two_spirals(n_samples=1000, *, random_state=None):
    """Two interleaved spirals, arc parameter uniform, Gaussian noise std 0.1.

    The exact density is a continuous mixture over the arc, evaluated by
    Gauss-Legendre quadrature over the arc parameter (768 nodes).

    Parameters
    ----------
    n_samples : int, default=1000
        Number of points.
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
        The points; their exact log-density is
        ``toy_log_density("two_spirals", X)``.

    Examples
    --------
    >>> from skebm.datasets import make_two_spirals, toy_log_density
    >>> X = make_two_spirals(500, random_state=0)
    >>> X.shape
    (500, 2)
    >>> bool(toy_log_density("two_spirals", X).mean() > -3)
    True
    """
    rng = check_random_state(random_state)
    u = rng.uniform(0, 1, n_samples)
    first, second = _spiral_curve(u)
    which = rng.randint(2, size=n_samples).astype(bool)
    X = np.where(which[:, None], first, second)
    return X + _SPIRAL_NOISE * rng.standard_normal((n_samples, 2))


def _two_spirals_log_density(X):
    nodes, weights = np.polynomial.legendre.leggauss(_SPIRAL_NODES)
    u = 0.5 * (nodes + 1)
    log_w = np.log(weights * 0.5)
    first, second = _spiral_curve(u)
    centers = np.concatenate([first, second], 0)
    log_w = np.concatenate([log_w, log_w]) - math.log(2)
    out = np.empty(len(X))
    for start in range(0, len(X), 512):
        xb = X[start : start + 512]
        out[start : start + 512] = logsumexp(
            _gauss2d_logpdf(xb, centers, _SPIRAL_NOISE) + log_w[None], axis=1
        )
    return out


def make_ising_lattice(
    side, *, coupling_range=(0.3, 0.5), field_scale=0.1, random_state=None
):
    """Parameters of an Ising model on a ``side x side`` open lattice.

    Nearest neighbours interact with couplings of magnitude drawn uniformly in
    ``coupling_range`` and a random sign; every other pair does not interact.
    For tests, examples and benchmarks of interaction-graph recovery.

    Parameters
    ----------
    side : int
        The lattice has ``side * side`` spins, numbered row by row.
    coupling_range : tuple of two floats, default=(0.3, 0.5)
        Range of the coupling magnitudes.
    field_scale : float, default=0.1
        Fields are drawn uniformly in ``[-field_scale, field_scale]``.
    random_state : int, RandomState instance or None, default=None
        Seeds the couplings and fields.

    Returns
    -------
    couplings : ndarray of shape (side * side, side * side)
        Symmetric with zero diagonal, in the ``±1`` spin convention
        ``E(s) = -1/2 s^T J s - h^T s``.
    fields : ndarray of shape (side * side,)
        The fields ``h``.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm.datasets import make_ising_lattice
    >>> J, h = make_ising_lattice(3, random_state=0)
    >>> J.shape, int((J != 0).sum() // 2), bool(np.allclose(J, J.T))
    ((9, 9), 12, True)
    """
    rng = check_random_state(random_state)
    low, high = coupling_range
    d = side * side
    couplings = np.zeros((d, d))
    for row in range(side):
        for col in range(side):
            i = row * side + col
            right = [i + 1] if col + 1 < side else []
            below = [i + side] if row + 1 < side else []
            for j in right + below:
                couplings[i, j] = rng.uniform(low, high) * rng.choice([-1.0, 1.0])
    couplings = couplings + couplings.T
    return couplings, rng.uniform(-field_scale, field_scale, d)


TOY_DENSITIES = {
    "eight_gaussians": (make_eight_gaussians, _eight_gaussians_log_density),
    "rings": (make_rings, _rings_log_density),
    "checkerboard": (make_checkerboard, _checkerboard_log_density),
    "two_moons": (make_two_moons, _two_moons_log_density),
    "two_spirals": (make_two_spirals, _two_spirals_log_density),
}


def toy_log_density(name, X):
    """Exact log-density of the toy distribution ``name`` at the rows of ``X``.

    Parameters
    ----------
    name : {"eight_gaussians", "rings", "checkerboard", "two_moons", "two_spirals"}
        The toy distribution (the keys of ``TOY_DENSITIES``).
    X : array-like of shape (n_samples, 2)
        Points at which to evaluate it.

    Returns
    -------
    log_density : ndarray of shape (n_samples,)
        Natural log of the density at each row; ``-inf`` off the support.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm.datasets import toy_log_density
    >>> float(np.round(toy_log_density("checkerboard", [[0.5, 0.5]])[0], 4))
    -2.0794
    """
    if name not in TOY_DENSITIES:
        raise ValueError(
            f"Unknown toy density {name!r}; choose from {sorted(TOY_DENSITIES)}."
        )
    X = np.asarray(X, dtype=np.float64)
    return TOY_DENSITIES[name][1](X)
