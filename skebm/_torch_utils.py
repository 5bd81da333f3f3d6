"""numpy <-> torch bridge: devices, dtypes, generators (private, layer B)."""

import numpy as np
import torch

# Rows evaluated at once at score time: bounds memory for large X without a
# Python loop per row.
EVAL_CHUNK_SIZE = 65536


def resolve_device(device, *, strict=True):
    """Return a ``torch.device`` for the user's ``device`` string.

    ``"auto"`` picks CUDA when available. With ``strict``, an unavailable
    device is a ValueError; otherwise it falls back to the CPU (used at
    predict time, so that a model fitted on a GPU scores on a CPU-only host).
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        if strict:
            raise ValueError(
                f"device={device!r} was requested but torch reports no CUDA "
                "device (torch.cuda.is_available() is False). Use device='cpu' "
                "or device='auto'."
            )
        return torch.device("cpu")
    if dev.type == "cuda" and dev.index is not None:
        if dev.index >= torch.cuda.device_count():
            if strict:
                raise ValueError(
                    f"device={device!r}: only {torch.cuda.device_count()} CUDA "
                    "device(s) are visible."
                )
            return torch.device("cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        if strict:
            raise ValueError(
                f"device={device!r} is not supported; use 'cpu' or 'cuda'."
            )
        return torch.device("cpu")
    return dev


def torch_dtype_for(np_dtype):
    """float32 stays float32 (the user asked for it); everything else float64."""
    return torch.float32 if np.dtype(np_dtype) == np.float32 else torch.float64


def numpy_dtype_for(tdtype):
    return np.float32 if tdtype == torch.float32 else np.float64


def to_tensor(X, *, device, dtype):
    """Copy a numpy array into a new tensor (read-only memmaps are fine)."""
    return torch.tensor(np.asarray(X), device=device, dtype=dtype)


def to_numpy(t):
    return t.detach().cpu().numpy()


def draw_seed(random_state):
    """One integer seed from a ``RandomState``, for numpy and torch alike."""
    return int(random_state.randint(np.iinfo(np.int32).max))


def make_generator(seed, device):
    """A ``torch.Generator`` on ``device`` seeded with ``seed``; no global RNG."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


def module_to_cpu(module):
    """Move a module's parameters and buffers to the CPU (pickle-safe)."""
    return module.to("cpu")


def module_dtype(module, default=torch.float64):
    for p in module.parameters():
        return p.dtype
    for b in module.buffers():
        if b.is_floating_point():
            return b.dtype
    return default
