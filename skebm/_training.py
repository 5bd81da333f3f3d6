"""The minibatch optimizer loop shared by every iterative estimator (layer B).

It speaks tensors and plain numbers only: the estimators validate input,
choose the objective and turn the result into fitted attributes.
"""

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import distributed
from ._torch_utils import as_tensor


class NonFiniteLossError(ValueError):
    """Training diverged: a non-finite or exploding loss, or non-finite parameters."""


# An epoch loss this many times the first batch's (plus one) is a divergence,
# even while it is still finite: no objective here grows by six orders of
# magnitude while it is being minimized.
_BLOWUP_FACTOR = 1e6


@dataclass
class TrainingResult:
    loss_curve: list = field(default_factory=list)
    validation_loss_curve: list = field(default_factory=list)
    # With a ``monitor``: the mean validation log-likelihood before training
    # (index 0) and after each epoch, and the standard error of its gain over
    # index 0 (paired over the validation samples, plus the log Z noise).
    validation_score_curve: list = field(default_factory=list)
    validation_gain_stderr: list = field(default_factory=list)
    n_iter: int = 0
    best_iter: int = 0
    converged: bool = False
    best_loss: float = math.inf
    # Adam's state_dict after training, for partial_fit to continue from.
    optimizer_state: dict | None = None
    fit_time: float = 0.0


def _l2_penalty(module):
    return sum((p * p).sum() for p in module.parameters() if p.requires_grad)


def _mean_loss(objective, energy, X, indices, batch_size, *, device, dtype, generator):
    """Objective averaged over ``X[indices]`` in batches (validation pass)."""
    total, count = 0.0, 0
    for start in range(0, len(indices), batch_size):
        idx = indices[start : start + batch_size]
        xb = as_tensor(X[idx], device=device, dtype=dtype)
        loss = objective(energy, xb, generator=generator)
        total += float(loss.detach()) * len(idx)
        count += len(idx)
    return total / max(count, 1)


def train_minibatch(
    energy,
    objective,
    X,
    *,
    batch_size,
    learning_rate_init,
    alpha,
    max_iter,
    tol,
    n_iter_no_change,
    early_stopping,
    validation_fraction,
    seed,
    device,
    dtype,
    monitor=None,
    monitor_margin=2.0,
    on_epoch_begin=None,
    on_epoch_end=None,
    verbose=False,
    name="",
    optimizer_state=None,
):
    """Fit ``energy`` in place by Adam on minibatches of the numpy array ``X``.

    Minibatches are gathered from ``X`` one at a time (no full copy of the data
    into a tensor), so memory grows with ``batch_size``, not with ``len(X)``.

    Parameters
    ----------
    objective : callable
        ``objective(energy, x, *, generator) -> scalar tensor``, the
        per-sample mean loss on the batch ``x``.
    alpha : float
        L2 penalty; the minimized quantity is ``mean loss + alpha / (2 n) *
        ||params||^2`` with ``n`` the number of training samples, i.e. the
        penalty of ``alpha / 2 ||params||^2`` on the summed loss.
    seed : int
        Seeds the batch order (numpy) and the objective's randomness (torch).
    monitor : callable or None, default=None
        ``monitor(energy) -> (scores, offset_variance)``: the held-out
        log-likelihood of each validation sample (a 1-D tensor) and the
        variance of an offset they share (the estimate of log Z), evaluated
        before the first epoch and after each one. When given, it replaces
        the validation objective of ``early_stopping`` (``X`` is then all
        training data, no split is made). Epochs are ranked by the lower
        confidence bound ``gain - monitor_margin * stderr`` of their gain over
        the untrained energy (epoch 0, whose bound is 0): the parameters of
        the best epoch are restored, and the untrained energy is kept unless
        some epoch's gain is that clearly positive.
    monitor_margin : float, default=2.0
        Standard errors a gain must clear (see ``monitor``).
    on_epoch_begin, on_epoch_end : callable or None, default=None
        ``on_epoch_begin(epoch)`` before each epoch and ``on_epoch_end(epoch,
        energy, result) -> bool`` after it (and after its monitoring); a true
        return value stops training there, as convergence does.
    optimizer_state : dict or None, default=None
        An Adam ``state_dict`` to continue from (``partial_fit``); the
        result's ``optimizer_state`` is the state after training.

    Returns
    -------
    TrainingResult
        With ``converged`` False when ``max_iter`` epochs ran without the
        ``tol`` criterion being met.

    Raises
    ------
    NonFiniteLossError
        As soon as an epoch's loss or the parameters are not finite.
    """
    return _MinibatchTraining(
        energy, objective, X, batch_size=batch_size,
        learning_rate_init=learning_rate_init, alpha=alpha, max_iter=max_iter,
        tol=tol, n_iter_no_change=n_iter_no_change, early_stopping=early_stopping,
        validation_fraction=validation_fraction, seed=seed, device=device,
        dtype=dtype, monitor=monitor, monitor_margin=monitor_margin,
        on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end, verbose=verbose,
        name=name, optimizer_state=optimizer_state,
    ).run()


def _split_validation(rng, n_samples, validation_fraction):
    """Sorted training and validation indices: a random ``validation_fraction``
    of the samples, at least one, held out."""
    perm = rng.permutation(n_samples)
    n_val = max(1, int(round(validation_fraction * n_samples)))
    if n_samples - n_val < 1:
        raise ValueError(
            f"validation_fraction={validation_fraction} leaves no training "
            f"samples out of {n_samples}."
        )
    val_indices = np.sort(perm[:n_val])
    indices = np.sort(perm[n_val:])
    return indices, val_indices


class _MinibatchTraining:
    """One run of :func:`train_minibatch`: its options and its state.

    :meth:`run` is the epoch loop; each epoch (:meth:`_run_epoch`) is a pass
    of Adam over the minibatches (:meth:`_train_epoch`), the non-finite check
    (:meth:`_check_finite`), the criterion the epochs are ranked by (the
    validation objective, the monitored gain or the training loss) and the
    bookkeeping of the best epoch and of convergence (:meth:`_track_best`).
    """

    def __init__(
        self, energy, objective, X, *, batch_size, learning_rate_init, alpha,
        max_iter, tol, n_iter_no_change, early_stopping, validation_fraction,
        seed, device, dtype, monitor, monitor_margin, on_epoch_begin,
        on_epoch_end, verbose, name, optimizer_state=None,
    ):
        self.energy, self.objective, self.X = energy, objective, X
        self.learning_rate_init, self.alpha = learning_rate_init, alpha
        self.max_iter, self.tol = max_iter, tol
        self.n_iter_no_change = n_iter_no_change
        self.seed, self.device, self.dtype = seed, device, dtype
        self.monitor, self.monitor_margin = monitor, monitor_margin
        self.on_epoch_begin, self.on_epoch_end = on_epoch_begin, on_epoch_end
        self.verbose, self.name = verbose, name
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(int(seed))
        if monitor is not None:
            # A monitor replaces the validation objective: no split is made.
            early_stopping = False
        self.early_stopping = early_stopping
        self.indices, self.val_indices = np.arange(X.shape[0]), None
        if self.early_stopping:
            self.indices, self.val_indices = _split_validation(
                self.rng, X.shape[0], validation_fraction
            )
            # Fixed generator for the validation objective: comparable across
            # epochs.
            self.val_generator = torch.Generator(device=device)
        self.n_train = len(self.indices)
        self.batch_size = min(batch_size, self.n_train)
        # Inside skebm.distributed.data_parallel: the process group (else None).
        self.parallel = distributed._active()
        self.params = [p for p in energy.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("The energy module has no trainable parameters.")
        self.optimizer = torch.optim.Adam(self.params, lr=learning_rate_init)
        if optimizer_state is not None:
            # partial_fit: Adam's moments continue from the previous batch.
            self.optimizer.load_state_dict(optimizer_state)
        self.result = TrainingResult()
        # One plus the absolute loss of the first batch: the scale of a blow-up.
        self.reference = None
        # The parameters of the best epoch, restored at the end.
        self.best_state = None
        self.no_improvement = 0
        if self.parallel is not None:
            self._start_parallel()

    def _start_parallel(self):
        """Rank 0's initial parameters everywhere, and the rows of each step
        summed over the ranks (the same number of steps on every rank)."""
        parallel = self.parallel
        parallel.broadcast_module(self.energy)
        self.batch_size = max(self.batch_size, 1)
        n_steps = math.ceil(self.n_train / self.batch_size)
        n_steps = int(parallel.reduce_numbers([n_steps], "max")[0])
        local = np.clip(
            self.n_train - self.batch_size * np.arange(n_steps), 0, self.batch_size
        )
        self.step_rows = np.asarray(parallel.reduce_numbers(local.tolist()))
        self.total_train = float(self.step_rows.sum())
        if self.total_train == 0:
            raise ValueError(f"{self.name}: no rank has training rows.")

    def run(self):
        """Train ``energy`` in place; the :class:`TrainingResult`."""
        result, energy = self.result, self.energy
        start_time = time.perf_counter()
        if self.monitor is not None:
            self._start_monitoring()
        energy.train()
        for epoch in range(self.max_iter):
            if self._run_epoch(epoch):
                break
        if self.best_state is not None:
            energy.load_state_dict(self.best_state)
        energy.eval()
        result.fit_time = time.perf_counter() - start_time
        result.optimizer_state = self.optimizer.state_dict()
        return result

    def _start_monitoring(self):
        """Score the untrained energy (epoch 0) and keep its parameters."""
        result = self.result
        self.initial_scores, _ = self._scores(0)
        result.validation_score_curve.append(self._mean(self.initial_scores))
        result.validation_gain_stderr.append(0.0)
        # Minimized internally: minus the lower confidence bound of the gain
        # over epoch 0, which is 0 for epoch 0 itself.
        result.best_loss = 0.0
        self.best_state = copy.deepcopy(self.energy.state_dict())

    def _run_epoch(self, epoch):
        """Epoch ``epoch + 1`` and its bookkeeping; whether training stops."""
        result = self.result
        if self.on_epoch_begin is not None:
            self.on_epoch_begin(epoch + 1)
        if self.parallel is None:
            epoch_loss = self._train_epoch()
        else:
            epoch_loss = self._train_epoch_parallel()
        self._check_finite(epoch, epoch_loss)
        result.loss_curve.append(epoch_loss)
        result.n_iter = epoch + 1
        if self.early_stopping:
            monitored = self._validation_loss(epoch)
        elif self.monitor is not None:
            monitored = self._monitored_gain(epoch)
        else:
            monitored = epoch_loss
        if self.verbose:
            self._print_epoch(epoch, epoch_loss, monitored)
        self._track_best(epoch, monitored)
        stop = self.on_epoch_end is not None and self.on_epoch_end(
            epoch + 1, self.energy, result
        )
        if self.parallel is not None:
            # One rank's callback stops every rank (else the others would wait
            # in the next epoch's first step).
            stop = self.parallel.any(stop)
        if self.no_improvement >= self.n_iter_no_change or stop:
            result.converged = True
            if self.verbose:
                self._print_stop(stop)
            return True
        return False

    def _train_epoch(self):
        """One pass of Adam over the training samples in a new random order;
        the mean loss over the pass (each batch's before its step)."""
        energy, X, optimizer = self.energy, self.X, self.optimizer
        n_train, batch_size = self.n_train, self.batch_size
        device, dtype, alpha = self.device, self.dtype, self.alpha
        order = self.indices[self.rng.permutation(n_train)]
        epoch_sum = torch.zeros((), device=device, dtype=dtype)
        for start in range(0, n_train, batch_size):
            idx = np.sort(order[start : start + batch_size])
            xb = as_tensor(X[idx], device=device, dtype=dtype)
            loss = self.objective(energy, xb, generator=self.generator)
            if self.reference is None:
                self.reference = abs(float(loss.detach())) + 1.0
            total = loss
            if alpha > 0:
                total = loss + alpha / (2.0 * n_train) * _l2_penalty(energy)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            epoch_sum = epoch_sum + loss.detach() * len(idx)
        return float(epoch_sum) / n_train

    def _train_epoch_parallel(self):
        """:meth:`_train_epoch` inside ``data_parallel``: each step's gradient
        is the mean over every rank's rows of the step, the same on every rank;
        the mean loss over every rank's pass."""
        order = self.indices[self.rng.permutation(self.n_train)]
        epoch_sum = 0.0
        for step, rows in enumerate(self.step_rows):
            start = step * self.batch_size
            idx = np.sort(order[start : start + self.batch_size])
            step_sum = self._parallel_step(idx, rows)
            if self.reference is None:
                self.reference = abs(step_sum / rows) + 1.0
            epoch_sum += step_sum
        return epoch_sum / self.total_train

    def _parallel_step(self, idx, rows):
        """One Adam step on this rank's ``X[idx]`` (maybe empty) of the step's
        ``rows`` over all ranks; the step's loss summed over its rows."""
        energy, params = self.energy, self.params
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device, dtype=self.dtype)
        if len(idx):
            xb = as_tensor(self.X[idx], device=self.device, dtype=self.dtype)
            loss = self.objective(energy, xb, generator=self.generator)
            # Weighted by this rank's share of the step: the sum over the ranks
            # is the gradient of the mean loss over all the step's rows.
            (loss * (len(idx) / rows)).backward()
            loss_sum = loss.detach() * len(idx)
        # One all-reduce a step: the gradients, which of them exist, the loss.
        flat = torch.cat(
            [
                torch.zeros(p.numel(), device=self.device, dtype=self.dtype)
                if p.grad is None
                else p.grad.reshape(-1).to(self.dtype)
                for p in params
            ]
            + [
                torch.tensor(
                    [float(p.grad is not None) for p in params] + [0.0],
                    device=self.device,
                    dtype=self.dtype,
                )
            ]
        )
        flat[-1] = loss_sum
        flat = self.parallel.all_reduce(flat)
        offset = 0
        for i, p in enumerate(params):
            n = p.numel()
            present = bool(flat[-1 - len(params) + i] > 0)
            # A parameter no rank's loss reached keeps grad None, as in one
            # process (Adam then leaves it and its moments alone).
            grad = flat[offset : offset + n].view_as(p).to(p.dtype)
            p.grad = grad if present else None
            offset += n
        if self.alpha > 0:
            # The penalty's gradient, the same on every rank, added once.
            penalty = self.alpha / (2.0 * self.total_train) * _l2_penalty(energy)
            penalty.backward()
        self.optimizer.step()
        return float(flat[-1])

    def _check_finite(self, epoch, epoch_loss):
        """Raise :class:`NonFiniteLossError` if the epoch's loss is not finite
        or blew up, or a parameter is not finite."""
        exploded = (
            math.isfinite(epoch_loss)
            and abs(epoch_loss) > _BLOWUP_FACTOR * self.reference
        )
        if (
            exploded
            or not math.isfinite(epoch_loss)
            or not all(bool(torch.isfinite(p).all()) for p in self.params)
        ):
            raise NonFiniteLossError(
                f"{self.name} training diverged at epoch {epoch + 1}: the loss "
                f"became {epoch_loss!r}. Try a smaller learning_rate_init (now "
                f"{self.learning_rate_init}), a larger alpha, or standardize the "
                "data (e.g. StandardScaler in a Pipeline)."
            )

    def _validation_loss(self, epoch):
        """The objective on the held-out samples (``early_stopping``)."""
        self.val_generator.manual_seed(int(self.seed) + 1)
        monitored = _mean_loss(
            self.objective,
            self.energy,
            self.X,
            self.val_indices,
            self.batch_size,
            device=self.device,
            dtype=self.dtype,
            generator=self.val_generator,
        )
        if self.parallel is not None:
            # The mean over every rank's held-out rows (a non-finite one
            # included): every rank then decides the same.
            n_val = len(self.val_indices)
            total, count = self.parallel.reduce_numbers([monitored * n_val, n_val])
            monitored = total / count
        if not math.isfinite(monitored):
            raise NonFiniteLossError(
                f"{self.name} training diverged at epoch {epoch + 1}: the "
                "validation loss is not finite. Try a smaller "
                "learning_rate_init or standardize the data."
            )
        self.result.validation_loss_curve.append(monitored)
        return monitored

    def _monitored_gain(self, epoch):
        """Minus the lower confidence bound of the monitored gain over epoch
        0 (``monitor``)."""
        energy, result = self.energy, self.result
        energy.eval()
        scores, offset_variance = self._scores(epoch + 1)
        energy.train()
        gain = scores - self.initial_scores
        if self.parallel is None:
            n_val = gain.shape[0]
            variance = float(gain.var()) / n_val if n_val > 1 else 0.0
            mean_gain = float(gain.mean())
        else:
            mean_gain, variance = self._parallel_mean_variance(gain)
        stderr = math.sqrt(variance + offset_variance)
        result.validation_score_curve.append(self._mean(scores))
        result.validation_gain_stderr.append(stderr)
        return -(mean_gain - self.monitor_margin * stderr)

    def _scores(self, epoch):
        """The monitor's validation scores and offset variance; raises if not
        finite (on every rank inside ``data_parallel`` if so on any)."""
        if self.parallel is None:
            return _checked_scores(self.monitor, self.energy, epoch, self.name)
        with torch.no_grad():
            scores, offset_variance = self.monitor(self.energy)
        scores = torch.as_tensor(scores).double()
        finite = bool(torch.isfinite(scores).all()) and math.isfinite(
            offset_variance
        )
        if self.parallel.any(not finite):
            _raise_non_finite_scores(self.name, epoch)
        return scores, float(offset_variance)

    def _mean(self, scores):
        """The mean of ``scores`` (over every rank's inside ``data_parallel``)."""
        if self.parallel is None:
            return float(scores.mean())
        total, count = self.parallel.reduce_numbers([float(scores.sum()), len(scores)])
        return total / count

    def _parallel_mean_variance(self, gain):
        """The mean of every rank's ``gain`` and the variance of that mean
        (the unbiased variance of the gains over their number)."""
        n_val = self.parallel.total(len(gain))
        mean = self._mean(gain)
        squares = self.parallel.reduce_numbers([float(((gain - mean) ** 2).sum())])[0]
        variance = squares / (n_val - 1) / n_val if n_val > 1 else 0.0
        return mean, variance

    def _track_best(self, epoch, monitored):
        """Count the epochs without improvement and keep the best one."""
        result = self.result
        if monitored < result.best_loss - self.tol:
            self.no_improvement = 0
        else:
            self.no_improvement += 1
        if monitored < result.best_loss:
            result.best_loss = monitored
            result.best_iter = epoch + 1
            if self.early_stopping or self.monitor is not None:
                self.best_state = copy.deepcopy(self.energy.state_dict())

    def _print_epoch(self, epoch, epoch_loss, monitored):
        """Print the epoch's loss (and validation criterion)."""
        msg = f"Iteration {epoch + 1}, loss = {epoch_loss:.8f}"
        if self.early_stopping:
            msg += f", validation loss = {monitored:.8f}"
        elif self.monitor is not None:
            msg += (
                f", validation log-likelihood = "
                f"{self.result.validation_score_curve[-1]:.6f}"
            )
        print(msg)

    def _print_stop(self, stop):
        """Print why training stops (``stop``: a callback asked)."""
        if stop:
            print("A callback asked to stop. Stopping.")
            return
        what = (
            "Validation log-likelihood"
            if self.monitor is not None
            else "Validation loss"
            if self.early_stopping
            else "Training loss"
        )
        print(
            f"{what} did not improve more than tol={self.tol} for "
            f"{self.n_iter_no_change} consecutive epochs. Stopping."
        )


def _checked_scores(monitor, energy, epoch, name):
    with torch.no_grad():
        scores, offset_variance = monitor(energy)
    scores = torch.as_tensor(scores).double()
    if not bool(torch.isfinite(scores).all()) or not math.isfinite(offset_variance):
        _raise_non_finite_scores(name, epoch)
    return scores, float(offset_variance)


def _raise_non_finite_scores(name, epoch):
    raise NonFiniteLossError(
        f"{name} training diverged at epoch {epoch}: the validation "
        "log-likelihood is not finite. Try a smaller learning_rate_init or "
        "standardize the data."
    )
