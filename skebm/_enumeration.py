"""Enumeration of the states of binary units, in chunks of integer codes (used by
exact sampling and exact log Z alike)."""

import torch


def binary_states(start, stop, n_features, *, values=(0.0, 1.0), dtype, device):
    """States ``start .. stop - 1`` of ``{lo, hi}^d`` in binary counting order.

    Bit ``j`` of the integer code is unit ``j``.
    """
    lo, hi = values
    codes = torch.arange(start, stop, device=device)
    bits = (codes[:, None] >> torch.arange(n_features, device=device)) & 1
    return lo + (hi - lo) * bits.to(dtype)
