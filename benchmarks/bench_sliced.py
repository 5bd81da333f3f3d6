"""Benchmark for SlicedScoreMatchingDensity (issue 3).

1. Time of one training step (loss + backward + Adam) of the same MLP energy
   (d-128-128-1 softplus, batch 256, float32, one Rademacher projection) for
   d = 16, 64, 256: ``sliced``, ``sliced_vr`` and ``finite_difference`` as a
   ratio to one plain forward+backward step (goals: sliced <= 4x,
   finite difference <= 3x, flat in d), and exact score matching over sliced
   at d = 128 (goal: >= 50x). Median over repeats.
2. Side by side with the PyPI package ``torchebm`` (its ``SlicedScoreMatching``)
   on two moons (standardized), the same energy module (a 2-128-128-1 softplus
   MLP plus the learned confining quadratic of
   :class:`skebm.energies.MLPEnergy`), batch 256, one Rademacher projection,
   Adam at 1e-3, no weight decay:

   - our time per training step through ``fit`` (whole ``fit`` time, log Z
     included, over the number of steps) against torchebm's bare step on a
     ready tensor batch (loss, backward, Adam step);
   - held-out log-likelihood after the same wall time: ours by ``score``,
     torchebm's trained module normalized by the same quadrature
     (:func:`skebm.partition.log_partition_quadrature`), next to the truth.

3. Per *fit*: ``ScoreMatchingDensity`` (exact) against
   ``SlicedScoreMatchingDensity`` (defaults, both with the default base
   density) on 4000 x 128 data (two moons in 2 of the 128 rotated dimensions,
   Gaussian noise in the rest), the same number of epochs, with the time of
   each phase of the fit (base density, training, log Z) read from
   scikit-learn's callback API: the per-step speed-up must survive to the
   whole fit, so the fixed costs must stay a small share.

Run with one thread: ``OMP_NUM_THREADS=1 python benchmarks/bench_sliced.py``
(``--quick`` for fewer repeats). Needs ``pip install -e ".[benchmark]"``.
"""

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from skebm import ScoreMatchingDensity, SlicedScoreMatchingDensity
from skebm.datasets import make_two_moons, toy_log_density
from skebm.energies import MLPEnergy
from skebm.objectives import (
    exact_score_matching_loss,
    finite_difference_score_matching_loss,
    sliced_score_matching_loss,
)
from skebm.partition import log_partition_quadrature

BATCH = 256


def median_time(fn, repeats, inner):
    """Median over ``repeats`` of the mean time of ``inner`` calls (s)."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def paired_ratio(fn, base, repeats, inner):
    """Median over repeats of time(fn) / time(base), measured back to back.

    Interleaving keeps the ratio honest on a machine whose load changes
    during the run (a shared CI runner): each ratio compares two blocks
    timed seconds apart.
    """
    fn(), base()  # warm-up
    ratios, times = [], []
    for _ in range(repeats):
        pair = []
        for f in (base, fn):
            start = time.perf_counter()
            for _ in range(inner):
                f()
            pair.append((time.perf_counter() - start) / inner)
        ratios.append(pair[1] / pair[0])
        times.append(pair)
    return statistics.median(ratios), statistics.median(t[0] for t in times)


def make_step(energy, loss_fn, x):
    opt = torch.optim.Adam(energy.parameters(), lr=1e-5)
    gen = torch.Generator().manual_seed(0)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(energy, x, gen).backward()
        opt.step()

    return step


LOSSES = {
    "fwd+bwd": lambda e, x, g: e(x).mean(),
    "sliced": lambda e, x, g: sliced_score_matching_loss(
        e, x, generator=g, projection="rademacher"
    ),
    "sliced_vr": lambda e, x, g: sliced_score_matching_loss(
        e, x, generator=g, projection="rademacher", variance_reduced=True
    ),
    "finite_difference": lambda e, x, g: finite_difference_score_matching_loss(
        e, x, generator=g, projection="rademacher"
    ),
    "exact": lambda e, x, g: exact_score_matching_loss(e, x),
}


def step_table(repeats, inner):
    print(
        f"\n== one training step: MLP d-128-128-1 softplus, batch {BATCH}, float32, "
        f"{torch.get_num_threads()} thread(s), ratios: median of {repeats} "
        f"paired blocks of {inner} steps =="
    )
    names = ["sliced", "sliced_vr", "finite_difference"]
    print(f"{'d':>5}{'fwd+bwd ms':>12}" + "".join(f"{n + ' x':>20}" for n in names))
    for d in (16, 64, 256):
        gen = torch.Generator().manual_seed(0)
        energy = MLPEnergy(d, (128, 128), "softplus", generator=gen)
        x = torch.randn(BATCH, d, generator=gen)
        base_step = make_step(energy, LOSSES["fwd+bwd"], x)
        ratios, bases = zip(
            *(
                paired_ratio(make_step(energy, LOSSES[n], x), base_step, repeats, inner)
                for n in names
            ),
            strict=True,
        )
        base = statistics.median(bases)
        print(
            f"{d:>5}{1e3 * base:>12.3f}" + "".join(f"{r:>20.2f}" for r in ratios),
            flush=True,
        )
    d = 128
    gen = torch.Generator().manual_seed(0)
    energy = MLPEnergy(d, (128, 128), "softplus", generator=gen)
    x = torch.randn(BATCH, d, generator=gen)
    sliced_step = make_step(energy, LOSSES["sliced"], x)
    exact_step = make_step(energy, LOSSES["exact"], x)
    ratio, t_sliced = paired_ratio(
        exact_step, lambda: [sliced_step() for _ in range(inner)], 3, 1
    )
    ratio *= inner
    print(
        f"d=128: sliced {1e3 * t_sliced / inner:.2f} ms, exact / sliced = "
        f"{ratio:.0f}x (goal >= 50x)"
    )


def log_likelihood(energy, Z, Z_test):
    """Held-out mean log-likelihood of exp(-energy) normalized by quadrature."""
    energy = energy.to(torch.float64).eval()
    lower = torch.as_tensor(Z.min(0) - 1.0, dtype=torch.float64)
    upper = torch.as_tensor(Z.max(0) + 1.0, dtype=torch.float64)
    with torch.no_grad():
        log_z, _ = log_partition_quadrature(energy, lower, upper)
        x_test = torch.as_tensor(Z_test, dtype=torch.float64)
        return float(-energy(x_test).mean()) - log_z


def torchebm_comparison(n_train, n_test, epochs, seed):
    from torchebm.losses import SlicedScoreMatching

    X = make_two_moons(n_train, random_state=seed)
    X_test = make_two_moons(n_test, random_state=seed + 1)
    scaler = StandardScaler().fit(X)
    Z = scaler.transform(X).astype(np.float32)
    Z_test = scaler.transform(X_test)
    truth = (toy_log_density("two_moons", X_test) + np.log(scaler.scale_).sum()).mean()

    module = MLPEnergy(
        2, (128, 128), "softplus", generator=torch.Generator().manual_seed(seed)
    )
    ours = SlicedScoreMatchingDensity(
        energy=module,
        method="sliced",
        n_projections=1,
        projection="rademacher",
        batch_size=BATCH,
        learning_rate_init=1e-3,
        alpha=0.0,
        max_iter=epochs,
        early_stopping=False,
        tol=0.0,
        n_iter_no_change=epochs,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Warm-up: the first torch.optim.Adam of a process imports
        # torch._dynamo (~3 s), a one-time cost that is not a training step.
        SlicedScoreMatchingDensity(hidden_layer_sizes=(8,), max_iter=1).fit(Z[:100])
        start = time.perf_counter()
        ours.fit(Z)
    t_ours = time.perf_counter() - start
    steps_per_epoch = -(-n_train // BATCH)
    n_steps = ours.n_iter_ * steps_per_epoch
    ll_ours = ours.score(Z_test)

    # torchebm: the same initial module, its loss, a bare Adam loop on
    # shuffled minibatches of a ready tensor.
    theirs = MLPEnergy(
        2, (128, 128), "softplus", generator=torch.Generator().manual_seed(seed)
    )
    loss_fn = SlicedScoreMatching(
        model=theirs, n_projections=1, projection_type="rademacher"
    )
    opt = torch.optim.Adam(theirs.parameters(), lr=1e-3)
    data = torch.as_tensor(Z)
    gen = torch.Generator().manual_seed(seed)

    def bare_step(xb):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(xb, generator=gen)
        loss.backward()
        opt.step()

    t_bare = median_time(lambda: bare_step(data[:BATCH]), 5, 20)
    # Same wall time as our whole fit (the timing above included).
    theirs_steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < t_ours:
        order = torch.randperm(len(data), generator=gen)
        for i in range(0, len(data), BATCH):
            bare_step(data[order[i : i + BATCH]])
            theirs_steps += 1
            if time.perf_counter() - start >= t_ours:
                break
    ll_theirs = log_likelihood(theirs, Z, Z_test)
    ll_ours_quad = log_likelihood(ours.energy_, Z, Z_test)

    print(
        f"\n== vs torchebm {__import__('torchebm').__version__} SlicedScoreMatching:"
        f" two moons, n_train={n_train}, batch {BATCH}, 1 Rademacher projection, "
        f"{torch.get_num_threads()} thread(s) =="
    )
    print(f"{'':<44}{'skebm':>10}{'torchebm':>10}{'ratio':>8}")
    t_step = t_ours / n_steps
    print(
        f"{'ms per training step (ours: through fit)':<44}{1e3 * t_step:>10.3f}"
        f"{1e3 * t_bare:>10.3f}{t_step / t_bare:>8.2f}"
    )
    print(f"{'steps in the same wall time':<44}{n_steps:>10d}{theirs_steps:>10d}")
    print(f"{'wall time (s)':<44}{t_ours:>10.2f}{t_ours:>10.2f}")
    print(
        f"{'held-out log-likelihood (truth ' + format(truth, '.3f') + ')':<44}"
        f"{ll_ours:>10.3f}{ll_theirs:>10.3f}{ll_ours - ll_theirs:>+8.3f}"
    )
    print(
        f"(ours normalized by the benchmark's quadrature: {ll_ours_quad:.3f}; "
        f"ratio column: ours / theirs for time, ours - theirs for likelihood)"
    )


class PhaseTimer:
    """A scikit-learn fit callback that adds up the time of each top task."""

    def __init__(self):
        self.times, self._start = {}, {}

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        self._start[id(context)] = time.perf_counter()

    def on_fit_task_end(self, estimator, context):
        start = self._start.pop(id(context), None)
        if start is not None and context.parent is not None:
            if context.parent.parent is None:  # a phase of the fit
                name = context.task_name
                self.times[name] = self.times.get(name, 0.0) + (
                    time.perf_counter() - start
                )


def per_fit_table(d=128, n=4000, epochs=20):
    print(f"\n== per fit: exact vs sliced, {n} x {d}, {epochs} epochs ==")
    rng = np.random.RandomState(0)
    X = np.c_[make_two_moons(n, random_state=0), rng.normal(size=(n, d - 2))]
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    X = StandardScaler().fit_transform(X @ Q)
    rows = {}
    for cls in (ScoreMatchingDensity, SlicedScoreMatchingDensity):
        timer = PhaseTimer()
        est = cls(random_state=0, max_iter=epochs, n_iter_no_change=epochs + 1)
        est.set_callbacks(timer)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X)
        total = time.perf_counter() - start
        rows[cls.__name__] = (total, timer.times)
        phases = "  ".join(f"{k} {v:6.1f} s" for k, v in timer.times.items())
        print(f"{cls.__name__:<28} fit {total:7.1f} s   {phases}", flush=True)
    exact, sliced = rows["ScoreMatchingDensity"], rows["SlicedScoreMatchingDensity"]
    print(
        f"whole fit: exact / sliced = {exact[0] / sliced[0]:.1f}x;  training "
        f"phase alone: {exact[1]['training'] / sliced[1]['training']:.1f}x"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats, inner = (3, 5) if args.quick else (7, 20)
    step_table(repeats, inner)
    torchebm_comparison(args.n_train, args.n_test, args.epochs, args.seed)
    per_fit_table()


if __name__ == "__main__":
    main()
