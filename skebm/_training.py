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
    rng = np.random.default_rng(seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    n_samples = X.shape[0]
    indices = np.arange(n_samples)
    val_indices = None
    if monitor is not None:
        early_stopping = False
    if early_stopping:
        perm = rng.permutation(n_samples)
        n_val = max(1, int(round(validation_fraction * n_samples)))
        if n_samples - n_val < 1:
            raise ValueError(
                f"validation_fraction={validation_fraction} leaves no training "
                f"samples out of {n_samples}."
            )
        val_indices = np.sort(perm[:n_val])
        indices = np.sort(perm[n_val:])
        # Fixed generator for the validation objective: comparable across epochs.
        val_generator = torch.Generator(device=device)
    n_train = len(indices)
    batch_size = min(batch_size, n_train)
    params = [p for p in energy.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The energy module has no trainable parameters.")
    optimizer = torch.optim.Adam(params, lr=learning_rate_init)

    result = TrainingResult()
    reference = None
    best_state = None
    no_improvement = 0
    start_time = time.perf_counter()
    if monitor is not None:
        initial_scores, _ = _checked_scores(monitor, energy, 0, name)
        result.validation_score_curve.append(float(initial_scores.mean()))
        result.validation_gain_stderr.append(0.0)
        # Minimized internally: minus the lower confidence bound of the gain
        # over epoch 0, which is 0 for epoch 0 itself.
        result.best_loss = 0.0
        best_state = copy.deepcopy(energy.state_dict())
    energy.train()
    for epoch in range(max_iter):
        if on_epoch_begin is not None:
            on_epoch_begin(epoch + 1)
        order = indices[rng.permutation(n_train)]
        epoch_sum = torch.zeros((), device=device, dtype=dtype)
        for start in range(0, n_train, batch_size):
            idx = np.sort(order[start : start + batch_size])
            xb = as_tensor(X[idx], device=device, dtype=dtype)
            loss = objective(energy, xb, generator=generator)
            if reference is None:
                reference = abs(float(loss.detach())) + 1.0
            total = loss
            if alpha > 0:
                total = loss + alpha / (2.0 * n_train) * _l2_penalty(energy)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            epoch_sum = epoch_sum + loss.detach() * len(idx)
        epoch_loss = float(epoch_sum) / n_train
        exploded = (
            math.isfinite(epoch_loss) and abs(epoch_loss) > _BLOWUP_FACTOR * reference
        )
        if (
            exploded
            or not math.isfinite(epoch_loss)
            or not all(bool(torch.isfinite(p).all()) for p in params)
        ):
            raise NonFiniteLossError(
                f"{name} training diverged at epoch {epoch + 1}: the loss became "
                f"{epoch_loss!r}. Try a smaller learning_rate_init (now "
                f"{learning_rate_init}), a larger alpha, or standardize the data "
                "(e.g. StandardScaler in a Pipeline)."
            )
        result.loss_curve.append(epoch_loss)
        result.n_iter = epoch + 1
        if early_stopping:
            val_generator.manual_seed(int(seed) + 1)
            monitored = _mean_loss(
                objective,
                energy,
                X,
                val_indices,
                batch_size,
                device=device,
                dtype=dtype,
                generator=val_generator,
            )
            if not math.isfinite(monitored):
                raise NonFiniteLossError(
                    f"{name} training diverged at epoch {epoch + 1}: the "
                    "validation loss is not finite. Try a smaller "
                    "learning_rate_init or standardize the data."
                )
            result.validation_loss_curve.append(monitored)
        elif monitor is not None:
            energy.eval()
            scores, offset_variance = _checked_scores(monitor, energy, epoch + 1, name)
            energy.train()
            gain = scores - initial_scores
            n_val = gain.shape[0]
            variance = float(gain.var()) / n_val if n_val > 1 else 0.0
            stderr = math.sqrt(variance + offset_variance)
            result.validation_score_curve.append(float(scores.mean()))
            result.validation_gain_stderr.append(stderr)
            monitored = -(float(gain.mean()) - monitor_margin * stderr)
        else:
            monitored = epoch_loss
        if verbose:
            msg = f"Iteration {epoch + 1}, loss = {epoch_loss:.8f}"
            if early_stopping:
                msg += f", validation loss = {monitored:.8f}"
            elif monitor is not None:
                msg += (
                    f", validation log-likelihood = "
                    f"{result.validation_score_curve[-1]:.6f}"
                )
            print(msg)
        if monitored < result.best_loss - tol:
            no_improvement = 0
        else:
            no_improvement += 1
        if monitored < result.best_loss:
            result.best_loss = monitored
            result.best_iter = epoch + 1
            if early_stopping or monitor is not None:
                best_state = copy.deepcopy(energy.state_dict())
        stop = on_epoch_end is not None and on_epoch_end(epoch + 1, energy, result)
        if no_improvement >= n_iter_no_change or stop:
            result.converged = True
            if verbose and stop:
                print("A callback asked to stop. Stopping.")
            elif verbose:
                what = (
                    "Validation log-likelihood"
                    if monitor is not None
                    else "Validation loss"
                    if early_stopping
                    else "Training loss"
                )
                print(
                    f"{what} did not improve more than tol={tol} for "
                    f"{n_iter_no_change} consecutive epochs. Stopping."
                )
            break
    if best_state is not None:
        energy.load_state_dict(best_state)
    energy.eval()
    result.fit_time = time.perf_counter() - start_time
    return result


def _checked_scores(monitor, energy, epoch, name):
    with torch.no_grad():
        scores, offset_variance = monitor(energy)
    scores = torch.as_tensor(scores).double()
    if not bool(torch.isfinite(scores).all()) or not math.isfinite(offset_variance):
        raise NonFiniteLossError(
            f"{name} training diverged at epoch {epoch}: the validation "
            "log-likelihood is not finite. Try a smaller learning_rate_init or "
            "standardize the data."
        )
    return scores, float(offset_variance)
