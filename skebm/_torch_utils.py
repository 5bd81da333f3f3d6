"""numpy <-> torch bridge: devices, dtypes, generators, threads (private, layer B)."""

import functools
import os

import numpy as np
import torch
from threadpoolctl import threadpool_limits

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


def as_tensor(X, *, device=None, dtype=None):
    """``torch.as_tensor`` that accepts read-only arrays without a warning.

    joblib hands read-only memmaps to ``GridSearchCV(n_jobs>1)`` workers;
    torch warns on every such array it would share memory with, so those are
    copied first (they are copied for a device or dtype change anyway).
    """
    if isinstance(X, np.ndarray) and not X.flags.writeable:
        X = np.array(X)
    return torch.as_tensor(X, device=device, dtype=dtype)


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


def _torch_threads():
    """Intra-op threads for skebm's work: ``SKEBM_TORCH_THREADS``, default 1."""
    value = os.environ.get("SKEBM_TORCH_THREADS", "1")
    try:
        threads = int(value)
    except ValueError:
        raise ValueError(
            f"SKEBM_TORCH_THREADS must be a positive integer, got {value!r}."
        ) from None
    if threads < 1:
        raise ValueError(f"SKEBM_TORCH_THREADS must be at least 1, got {threads}.")
    return threads


def limit_threads(method):
    """Run ``method`` with torch's intra-op threads and the BLAS and OpenMP
    thread pools (threadpoolctl) limited, then restore them.

    skebm's networks are small: extra intra-op threads only synchronize, and
    where cores are shared OpenMP's spin-waiting made a default fit 3.4 times
    slower with torch's default of one thread per core (README quickstart on
    a busy 2-core machine: 34.8 s against 10.3 s with one thread); two BLAS
    threads made one Gaussian mixture fit in 128 dimensions (the base
    density) 17 times slower (26 s against 1.5 s). One thread a fit also
    keeps ``GridSearchCV(n_jobs=k)`` at ``k`` busy cores.
    """

    @functools.wraps(method)
    def limited(*args, **kwargs):
        wanted = _torch_threads()
        previous = torch.get_num_threads()
        with threadpool_limits(limits=wanted):
            if wanted == previous:
                return method(*args, **kwargs)
            torch.set_num_threads(wanted)
            try:
                return method(*args, **kwargs)
            finally:
                torch.set_num_threads(previous)

    return limited
