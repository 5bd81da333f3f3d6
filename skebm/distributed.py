"""Data-parallel training across processes with :mod:`torch.distributed`.

Inside :func:`data_parallel`, ``estimator.fit(X_local)`` called on every
process (rank) of an initialized process group trains *one* model from the
rows of all ranks:

- the base density is chosen and fitted on rows gathered from every rank (all
  of them up to ``max_gathered_rows`` in total, a fixed-size random subsample
  of each rank's rows beyond), by rank 0, and sent to the others;
- every optimizer step averages the gradients over the ranks, weighted by
  each rank's rows in the step, before Adam's step, so that every rank keeps
  the same parameters; a rank with fewer minibatches in an epoch takes part
  in the extra steps with no rows;
- what decides training (the epoch's loss, the validation loss or
  log-likelihood that early stopping reads, the non-finite checks, a
  callback's request to stop) is summed over the ranks, so that every rank
  decides the same;
- the statistics kept for log Z and sampling are those of the gathered rows,
  and the seeds are the same on every rank, so log Z and everything after
  training come out the same on every rank.

With every rank's rows gathered (at most ``max_gathered_rows`` rows in all)
and full-batch steps, the model equals the one a single process fits on all
rows (in rank order), up to floating-point rounding. Outside the context
nothing changes.

The collectives run on the CPU for a ``gloo`` group and on the current CUDA
device for an ``nccl`` group; a group with one backend per device type
(``"cpu:gloo,cuda:nccl"``) reduces tensors where they are.
"""

import contextlib
import contextvars
import hashlib
import math

import numpy as np
import torch

__all__ = ["data_parallel"]

# Rows gathered from all ranks (in total) to choose and fit the base density
# and summarize the data; one process would use all rows, and a base fitted on
# 2 * 10^5 rows is as good as one fitted on more.
_MAX_GATHERED_ROWS = 200_000

# The active context of this thread (or asyncio task); None outside one.
_ACTIVE = contextvars.ContextVar("skebm_data_parallel", default=None)


def _torch_distributed():
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError(
            "data_parallel needs torch.distributed, which this build of torch "
            "lacks."
        )
    return dist


class _DataParallel:
    """The process group of an active :func:`data_parallel` and its collectives.

    Attributes
    ----------
    rank, world_size : int
        This process's rank in ``group`` and the group's size.
    """

    def __init__(self, group, max_gathered_rows):
        dist = _torch_distributed()
        if not dist.is_initialized():
            raise ValueError(
                "data_parallel needs an initialized torch.distributed process "
                "group: call torch.distributed.init_process_group(backend="
                "'gloo') (CPUs) or (backend='nccl') (GPUs) on every process "
                "first (under torchrun, init_method='env://' needs no other "
                "argument)."
            )
        self.dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        if self.rank < 0:
            raise ValueError("This process is not a member of the given group.")
        self.root = 0 if group is None else dist.get_global_rank(group, 0)
        backend = str(dist.get_backend(group)).lower()
        if "gloo" not in backend and "nccl" in backend:
            self.device = torch.device("cuda", torch.cuda.current_device())
        elif "nccl" not in backend:
            self.device = torch.device("cpu")
        else:  # one backend per device type: reduce tensors where they are
            self.device = None
        self.max_gathered_rows = max_gathered_rows

    # ------------------------------------------------------------ collectives
    def all_reduce(self, tensor, op="sum"):
        """``tensor`` reduced over the ranks (a new tensor on its device)."""
        ops = {
            "sum": self.dist.ReduceOp.SUM,
            "max": self.dist.ReduceOp.MAX,
            "min": self.dist.ReduceOp.MIN,
        }
        device = tensor.device if self.device is None else self.device
        buffer = tensor.detach().to(device=device, copy=True).contiguous()
        self.dist.all_reduce(buffer, op=ops[op], group=self.group)
        return buffer.to(tensor.device)

    def reduce_numbers(self, values, op="sum"):
        """A list of Python numbers reduced over the ranks (float64)."""
        tensor = torch.as_tensor(np.asarray(values, dtype=np.float64))
        return self.all_reduce(tensor, op).tolist()

    def total(self, n):
        """``n`` summed over the ranks (an int)."""
        return int(round(self.reduce_numbers([n])[0]))

    def any(self, flag):
        """Whether ``flag`` is true on some rank."""
        return self.reduce_numbers([float(bool(flag))], "max")[0] > 0

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` (picklable), on every rank."""
        box = [obj]
        self.dist.broadcast_object_list(
            box, src=self.root, group=self.group, device=self.device
        )
        return box[0]

    def broadcast_module(self, module):
        """Copy rank 0's parameters and buffers into ``module`` on every rank."""
        with torch.no_grad():
            for tensor in module.state_dict().values():
                if tensor.is_floating_point() or tensor.dtype in (torch.int64,):
                    device = tensor.device if self.device is None else self.device
                    buffer = tensor.to(device=device, copy=True).contiguous()
                    self.dist.broadcast(buffer, src=self.root, group=self.group)
                    tensor.copy_(buffer.to(tensor.device))

    def on_root(self, function, *args, **kwargs):
        """``function(*args, **kwargs)`` run by rank 0, its value on every rank.

        An exception on rank 0 is raised on every rank (none is left waiting).
        """
        payload = None
        if self.rank == 0:
            try:
                payload = (True, function(*args, **kwargs))
            except Exception as exc:  # re-raised on every rank below
                payload = (False, exc)
        ok, value = self.broadcast_object(payload)
        if not ok:
            raise value
        return value

    # -------------------------------------------------------------- the data
    def gather_rows(self, X):
        """Every rank's rows of ``X`` in rank order (a random subsample of
        ``ceil(max_gathered_rows / world_size)`` rows of a rank that has more)."""
        X = np.asarray(X)
        cap = math.ceil(self.max_gathered_rows / self.world_size)
        if len(X) > cap:
            # A fixed subsample of this rank's rows (seeded by its rank and
            # size): the same rows whenever the base is chosen and fitted.
            rng = np.random.default_rng([self.rank, len(X)])
            X = X[np.sort(rng.choice(len(X), cap, replace=False))]
        local = torch.from_numpy(np.ascontiguousarray(X))
        counts = self.reduce_numbers(
            [len(X) if r == self.rank else 0 for r in range(self.world_size)]
        )
        counts = [int(c) for c in counts]
        widest = max(counts)
        device = torch.device("cpu") if self.device is None else self.device
        padded = torch.zeros((widest,) + tuple(X.shape[1:]), dtype=local.dtype)
        padded[: len(X)] = local
        padded = padded.to(device)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        self.dist.all_gather(parts, padded, group=self.group)
        rows = [part[:n].cpu().numpy() for part, n in zip(parts, counts, strict=True)]
        return np.concatenate(rows)


def _active():
    """The active :class:`_DataParallel`, or None outside :func:`data_parallel`."""
    return _ACTIVE.get()


@contextlib.contextmanager
def data_parallel(group=None, *, max_gathered_rows=_MAX_GATHERED_ROWS):
    """Train one model from the rows of every process of a process group.

    Inside the context, ``est.fit(X_local)`` must be called on every rank of
    ``group`` with the same estimator parameters (``random_state`` an int) and
    each rank's own rows. All ranks then hold the same fitted model: the
    one a single process would fit on all rows, up to floating-point rounding
    (exactly so with full-batch steps and at most ``max_gathered_rows`` rows
    in total; see :mod:`skebm.distributed`). The minibatch size is per rank:
    a step of ``world_size`` ranks sees ``world_size * batch_size`` rows.

    The continuous estimators (score matching, sliced score matching, energy
    discrepancy, autoregressive score matching, MCMC likelihood) train in
    parallel; the binary ones and fits in closed form raise an error.

    Parameters
    ----------
    group : ProcessGroup or None, default=None
        The process group; None is the default group of
        ``torch.distributed.init_process_group``. Use ``gloo`` on CPUs and
        ``nccl`` on GPUs (with ``device="cuda"`` and
        ``torch.cuda.set_device(local_rank)``).
    max_gathered_rows : int, default=200_000
        Rows gathered from all ranks, in total, to choose and fit the base
        density and summarize the data (for log Z and sampling): each rank
        sends all its rows up to ``ceil(max_gathered_rows / world_size)``,
        a fixed random subsample of that many beyond.

    Yields
    ------
    context : object
        With the attributes ``rank`` and ``world_size``.

    Raises
    ------
    ValueError
        If no process group is initialized. Inside the context, ``fit``
        raises a ValueError when ``random_state`` is None or differs between
        ranks, or the ranks' data have different numbers of features.

    Notes
    -----
    A rank that fails (bad input, an exception in a callback) before the
    others reach a collective leaves them waiting until the process group's
    timeout; ``torchrun`` stops the other ranks when one fails.

    Examples
    --------
    Run on every process (e.g. ``torchrun --nproc-per-node 2 script.py``):

    >>> import numpy as np
    >>> import torch.distributed as dist
    >>> from skebm import ScoreMatchingDensity
    >>> from skebm.distributed import data_parallel
    >>> dist.init_process_group("gloo")  # doctest: +SKIP
    >>> X = np.load("data.npy", mmap_mode="r")  # doctest: +SKIP
    >>> rank, size = dist.get_rank(), dist.get_world_size()  # doctest: +SKIP
    >>> X_local = np.asarray(X[rank::size])  # doctest: +SKIP
    >>> est = ScoreMatchingDensity(random_state=0)
    >>> with data_parallel():  # doctest: +SKIP
    ...     est.fit(X_local)
    """
    if not (isinstance(max_gathered_rows, int) and max_gathered_rows >= 1):
        raise ValueError(
            f"max_gathered_rows must be a positive int, got {max_gathered_rows!r}."
        )
    context = _DataParallel(group, max_gathered_rows)
    token = _ACTIVE.set(context)
    try:
        yield context
    finally:
        _ACTIVE.reset(token)


# --------------------------------------------------------- the library's hooks
def gathered(X):
    """``X`` outside :func:`data_parallel`; every rank's rows inside it."""
    context = _ACTIVE.get()
    return X if context is None else context.gather_rows(X)


def total_count(n):
    """``n`` outside :func:`data_parallel`; its sum over the ranks inside it."""
    context = _ACTIVE.get()
    return n if context is None else context.total(n)


def _seed_fingerprint(random_state):
    if isinstance(random_state, np.random.RandomState):
        state = random_state.get_state()
        digest = hashlib.sha256(state[1].tobytes() + repr(state[2:]).encode())
        return int.from_bytes(digest.digest()[:6], "little")
    return int(random_state)


def check_fit(estimator, X):
    """Check that ``estimator.fit(X)`` can run in the active context (no-op
    outside one): supported, seeded, with the same seed and features everywhere."""
    context = _ACTIVE.get()
    if context is None:
        return
    name = type(estimator).__name__
    # The continuous estimators (those with a base density to correct); named
    # by their method, as importing their class here would be an import circle.
    if not hasattr(estimator, "_corrects_base"):
        raise NotImplementedError(
            f"{name} does not train in data_parallel yet; only the continuous "
            "estimators do. Fit it in one process."
        )
    if estimator.random_state is None:
        raise ValueError(
            f"{name}.fit inside data_parallel needs random_state set to an int, "
            "the same on every rank: with random_state=None each rank would "
            "draw its own initialization and seeds and train a different model."
        )
    n_features = X.shape[1] if np.ndim(X) == 2 else -1
    key = [_seed_fingerprint(estimator.random_state), n_features]
    low = context.reduce_numbers(key, "min")
    high = context.reduce_numbers(key, "max")
    if low[0] != high[0]:
        raise ValueError(
            f"{name}.random_state differs between the ranks of data_parallel; "
            "set the same int on every rank."
        )
    if low[1] != high[1]:
        raise ValueError(
            f"The ranks of data_parallel passed data with different numbers of "
            f"features to {name}.fit (from {int(low[1])} to {int(high[1])})."
        )


def check_agree(energy, estimator):
    """Raise if the ranks of the active context fitted different energies
    (no-op outside one): a fit in closed form on each rank's rows, say."""
    context = _ACTIVE.get()
    if context is None:
        return
    tensors = [t.detach().reshape(-1) for t in energy.state_dict().values()]
    tensors = [t for t in tensors if t.is_floating_point()]
    if not tensors:
        return
    flat = torch.cat([t.to("cpu", torch.float64) for t in tensors])
    flat = torch.nan_to_num(flat, nan=0.0)
    spread = context.all_reduce(flat, "max") - context.all_reduce(flat, "min")
    if bool((spread != 0).any()):
        raise RuntimeError(
            f"The ranks of data_parallel fitted different {type(estimator).__name__} "
            "models (largest parameter difference "
            f"{float(spread.abs().max()):.3g}): this configuration is fitted in "
            "closed form or otherwise without minibatch training, which does "
            "not run in parallel. Fit it in one process, or use energy='mlp'."
        )
