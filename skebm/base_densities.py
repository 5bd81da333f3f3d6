"""Tractable base densities and energies that correct them (layer C).

A continuous model is ``log p(x) = log q(x) - f(x) - log Z_f`` with ``q`` a
normalized, tractable density (a Gaussian mixture) and ``f`` a learned
correction: its total energy is ``E(x) = -log q(x) + f(x)`` and
``Z_f = E_q[exp(-f)]``. The base's log-density, score and Hessian diagonal
come in closed form, so training objectives add them without differentiating
through the base, and ``q`` is the importance sampling proposal of ``Z_f``.
"""

import math

import torch
from torch import nn

__all__ = ["BaseCorrectedEnergy", "GaussianMixtureBase"]

_LOG_2PI = math.log(2 * math.pi)


class GaussianMixtureBase(nn.Module):
    """A Gaussian mixture density ``q(x) = sum_k pi_k N(x; m_k, S_k)`` in torch.

    Not trained: its parameters are buffers, set from a fitted mixture (such as
    scikit-learn's ``GaussianMixture``, converted by the estimator). Every
    quantity the objectives and the normalizer need is in closed form:
    :meth:`log_prob`, :meth:`score` (``∇ log q``), :meth:`hessian_diagonal`
    (``∂²_j log q``), :meth:`sample` and, for autoregressive models,
    :meth:`conditionals` (each coordinate's 1-D mixture given the previous
    ones).

    Parameters
    ----------
    weights : Tensor of shape (n_components,)
        Mixture weights (positive, summing to one).
    means : Tensor of shape (n_components, n_features)
        Component means.
    covariances : Tensor of shape (n_components, n_features, n_features)
        Symmetric positive definite component covariances.

    Examples
    --------
    >>> import torch
    >>> from skebm.base_densities import GaussianMixtureBase
    >>> base = GaussianMixtureBase(torch.tensor([0.5, 0.5]),
    ...                            torch.tensor([[-2.0], [2.0]]),
    ...                            torch.ones(2, 1, 1)).double()
    >>> x = torch.tensor([[0.0]], dtype=torch.float64)
    >>> base.score(x)  # symmetric: zero gradient at 0
    tensor([[0.]], dtype=torch.float64)
    >>> base.sample(3, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 1])
    """

    def __init__(self, weights, means, covariances):
        super().__init__()
        weights = torch.as_tensor(weights, dtype=torch.float64)
        means = torch.as_tensor(means, dtype=torch.float64)
        covariances = torch.as_tensor(covariances, dtype=torch.float64)
        n_components, n_features = means.shape
        if weights.shape != (n_components,) or covariances.shape != (
            n_components,
            n_features,
            n_features,
        ):
            raise ValueError(
                "weights, means and covariances must have shapes (k,), (k, d) and "
                f"(k, d, d); got {tuple(weights.shape)}, {tuple(means.shape)} and "
                f"{tuple(covariances.shape)}."
            )
        chol = torch.linalg.cholesky(covariances)
        eye = torch.eye(n_features, dtype=torch.float64).expand_as(chol)
        whitening = torch.linalg.solve_triangular(chol, eye, upper=False)
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
        self.n_features = n_features
        self.register_buffer("log_weights", torch.log(weights / weights.sum()))
        self.register_buffer("means", means)
        # x = m_k + L_k z with z standard normal; W_k = L_k^{-1} whitens.
        self.register_buffer("cholesky", chol)
        self.register_buffer("whitening", whitening)
        self.register_buffer(
            "log_normalizers", -0.5 * n_features * _LOG_2PI - 0.5 * log_det
        )

    @property
    def n_components(self):
        return self.means.shape[0]

    def _whitened(self, x):
        """``z[i, k] = W_k (x_i - m_k)``, shape ``(n, k, d)``."""
        diff = x[:, None, :] - self.means[None, :, :]
        return torch.einsum("kde,nke->nkd", self.whitening, diff)

    def _joint(self, x):
        z = self._whitened(x)
        log_joint = self.log_weights + self.log_normalizers - 0.5 * (z * z).sum(-1)
        return z, log_joint

    def log_prob(self, x):
        """``log q(x)`` of each row.

        Parameters
        ----------
        x : Tensor of shape (n, n_features)

        Returns
        -------
        log_q : Tensor of shape (n,)
        """
        return torch.logsumexp(self._joint(x)[1], dim=1)

    def _responsibilities_and_gradients(self, x):
        z, log_joint = self._joint(x)
        resp = torch.softmax(log_joint, dim=1)  # (n, k)
        # ∇ log N_k = -P_k (x - m_k) = -W_k^T z_k
        grads = -torch.einsum("kde,nkd->nke", self.whitening, z)
        return resp, grads

    def score(self, x):
        """``∇_x log q(x)``, the base's score, in closed form.

        Parameters
        ----------
        x : Tensor of shape (n, n_features)

        Returns
        -------
        score : Tensor of shape (n, n_features)
        """
        resp, grads = self._responsibilities_and_gradients(x)
        return (resp[:, :, None] * grads).sum(1)

    def score_and_hessian_diagonal(self, x):
        """``∇ log q`` and the diagonal of ``∇² log q``, in closed form.

        ``∇² log q = sum_k r_k (g_k g_k^T - P_k) - s s^T`` with ``r_k`` the
        responsibilities, ``g_k = -P_k (x - m_k)`` and ``s = sum_k r_k g_k``.

        Parameters
        ----------
        x : Tensor of shape (n, n_features)

        Returns
        -------
        score : Tensor of shape (n, n_features)
        hessian_diagonal : Tensor of shape (n, n_features)
        """
        resp, grads = self._responsibilities_and_gradients(x)
        score = (resp[:, :, None] * grads).sum(1)
        precision_diagonal = (self.whitening * self.whitening).sum(1)  # (k, d)
        second = (resp[:, :, None] * (grads * grads - precision_diagonal)).sum(1)
        return score, second - score * score

    def sample(self, n_samples, *, generator=None):
        """Exact draws from ``q``.

        Parameters
        ----------
        n_samples : int
        generator : torch.Generator, default=None

        Returns
        -------
        x : Tensor of shape (n_samples, n_features)
        """
        device, dtype = self.means.device, self.means.dtype
        component = torch.multinomial(
            torch.exp(self.log_weights),
            n_samples,
            replacement=True,
            generator=generator,
        )
        noise = torch.randn(
            n_samples, self.n_features, generator=generator, device=device, dtype=dtype
        )
        chol = self.cholesky[component]
        return self.means[component] + torch.einsum("nde,ne->nd", chol, noise)

    def conditionals(self, x):
        """Each coordinate's conditional ``q(x_i | x_<i)``, a 1-D Gaussian mixture.

        With ``x = m_k + L_k z`` (``L_k`` the lower Cholesky factor of
        component ``k``), ``x_i`` given ``x_<i`` and component ``k`` is normal
        with mean ``m_ki + sum_{j<i} L_kij z_j`` and standard deviation
        ``L_kii``; component ``k``'s weight given ``x_<i`` is proportional to
        ``pi_k N(x_<i; m_k, S_k)``, the cumulative sum of the whitened
        coordinates' log-densities. All coordinates at once.

        Parameters
        ----------
        x : Tensor of shape (n, n_features)

        Returns
        -------
        log_weights : Tensor of shape (n, n_features, n_components)
            Normalized log-weights of the components for coordinate ``i``.
        means : Tensor of shape (n, n_features, n_components)
        stds : Tensor of shape (n_features, n_components)
        """
        z = self._whitened(x)  # (n, k, d)
        diag = torch.diagonal(self.cholesky, dim1=1, dim2=2)  # (k, d)
        # mean_i = m_i + sum_{j<i} L_ij z_j = x_i - L_ii z_i
        means = x[:, :, None] - (diag.T[None] * z.transpose(1, 2))
        log_marg = -0.5 * z * z - 0.5 * _LOG_2PI - torch.log(diag)[None]  # (n,k,d)
        before = torch.cumsum(log_marg, dim=2) - log_marg  # sum over j < i
        log_w = self.log_weights[None, :, None] + before
        log_w = log_w - torch.logsumexp(log_w, dim=1, keepdim=True)
        return log_w.transpose(1, 2), means, diag.T

    def forward(self, x):
        return self.log_prob(x)


class BaseCorrectedEnergy(nn.Module):
    """Total energy ``E(x) = -log q(x) + f(x)`` of a base density and a correction.

    ``exp(-E) = q exp(-f)`` integrates to ``Z_f = E_q[exp(-f)]``, which
    importance sampling from ``q`` estimates; when ``f`` is zero the model is
    ``q`` itself.

    Parameters
    ----------
    base : GaussianMixtureBase
        The normalized base density ``q``.
    correction : torch.nn.Module
        ``f``, mapping ``(n, d)`` to ``(n,)``.
    corrected : bool, default=True
        False when the correction was discarded (it is zero): the model is
        ``q`` and ``Z_f = 1`` exactly.

    Examples
    --------
    >>> import torch
    >>> from skebm.base_densities import BaseCorrectedEnergy, GaussianMixtureBase
    >>> base = GaussianMixtureBase(torch.ones(1), torch.zeros(1, 2),
    ...                            torch.eye(2)[None])
    >>> energy = BaseCorrectedEnergy(base, lambda x: torch.zeros(len(x)))
    >>> x = torch.zeros(1, 2, dtype=torch.float64)
    >>> bool(torch.allclose(-energy(x), base.log_prob(x)))
    True
    """

    def __init__(self, base, correction, corrected=True):
        super().__init__()
        self.base = base
        self.correction = correction
        self.corrected = corrected

    def forward(self, x):
        return self.correction(x) - self.base.log_prob(x)
