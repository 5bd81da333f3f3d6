"""scikit-learn's callbacks (``sklearn.callback``): progress bars and monitors."""

import re
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skebm import (
    AutoregressiveScoreMatchingDensity,
    EnergyDiscrepancyDensity,
    MCMCLikelihoodBinary,
    MCMCLikelihoodDensity,
    PseudoLikelihoodIsing,
    RatioMatchingBinary,
    ScoreMatchingDensity,
    SlicedScoreMatchingDensity,
)
from skebm.metrics import (
    mean_log_likelihood_scorer,
    neg_training_loss_scorer,
    validation_scorer,
)

callback = pytest.importorskip(
    "sklearn.callback", reason="scikit-learn < 1.9 has no callback API"
)
pytest.importorskip("rich", reason="ProgressBar needs rich (the 'progress' extra)")

SMALL = dict(hidden_layer_sizes=(8,), max_iter=4, random_state=0)
ESTIMATORS = {
    "ScoreMatchingDensity": lambda: ScoreMatchingDensity(**SMALL),
    "SlicedScoreMatchingDensity": lambda: SlicedScoreMatchingDensity(**SMALL),
    "EnergyDiscrepancyDensity": lambda: EnergyDiscrepancyDensity(**SMALL),
    "ScoreMatchingDensity(base=None)": lambda: ScoreMatchingDensity(
        base=None, **SMALL
    ),
    "AutoregressiveScoreMatchingDensity": lambda: AutoregressiveScoreMatchingDensity(
        **SMALL
    ),
    "RatioMatchingBinary": lambda: RatioMatchingBinary(**SMALL),
    "PseudoLikelihoodIsing": lambda: PseudoLikelihoodIsing(),
    "MCMCLikelihoodDensity": lambda: MCMCLikelihoodDensity(n_mcmc_steps=3, **SMALL),
    "MCMCLikelihoodBinary": lambda: MCMCLikelihoodBinary(n_mcmc_steps=2, **SMALL),
}
ITERATIVE = [name for name in ESTIMATORS if name != "PseudoLikelihoodIsing"]


def _data(name, n=1200):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n, 3))
    if name in ("RatioMatchingBinary", "PseudoLikelihoodIsing",
                "MCMCLikelihoodBinary"):
        X = (X + 0.5 * X[:, :1] > 0).astype(float)
    return X


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_progress_bar_alone_in_a_pipeline_and_in_a_search(name, capsys):
    X = _data(name)
    ESTIMATORS[name]().set_callbacks(callback.ProgressBar()).fit(X)
    out = capsys.readouterr().out
    assert f"{name.split('(')[0]} - fit" in out
    pipe = make_pipeline(StandardScaler(), ESTIMATORS[name]())
    if name in ("RatioMatchingBinary", "PseudoLikelihoodIsing",
                "MCMCLikelihoodBinary"):
        pipe = make_pipeline(ESTIMATORS[name]())
    pipe.set_callbacks(callback.ProgressBar(max_propagation_depth=None)).fit(X)
    assert "Pipeline - fit" in capsys.readouterr().out
    search = GridSearchCV(
        ESTIMATORS[name](), {"random_state": [0, 1]}, cv=2
    ).set_callbacks(callback.ProgressBar(max_propagation_depth=None))
    search.fit(X)
    out = capsys.readouterr().out
    assert "GridSearchCV - fit" in out
    # Each fit is nested under the search, with its own tasks.
    assert f"{name.split('(')[0]} - " in out


@pytest.mark.parametrize("name", ITERATIVE)
def test_scoring_monitor_logs_one_row_per_epoch(name):
    X = _data(name)
    monitor = callback.ScoringMonitor(
        scoring={
            "training": neg_training_loss_scorer,
            "validation": validation_scorer,
        }
    )
    est = ESTIMATORS[name]().set_callbacks(monitor).fit(X)
    rows = [r for r in monitor.get_logs().data if r["task_name"] == "epoch"]
    assert len(rows) == est.n_iter_
    np.testing.assert_allclose(
        [r["training"] for r in rows], [-loss for loss in est.loss_curve_]
    )
    scores = getattr(est, "validation_scores_", None)
    if scores:  # with a base: the held-out log-likelihood, epoch by epoch
        np.testing.assert_allclose([r["validation"] for r in rows], scores[1:])


def test_scoring_monitor_in_a_pipeline_and_a_search_scores_held_out_likelihood():
    X = _data("SlicedScoreMatchingDensity")
    # A monitor is not propagated: it is set on the estimator it watches, and
    # the search's clones keep it.
    monitor = callback.ScoringMonitor(scoring={"score": mean_log_likelihood_scorer})
    est = SlicedScoreMatchingDensity(**SMALL).set_callbacks(monitor)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), est),
        {"slicedscorematchingdensity__learning_rate_init": [1e-3, 1e-2]},
        cv=2,
    )
    search.fit(X)
    rows = [r for r in monitor.get_logs().data if r["task_name"] == "epoch"]
    assert rows and all(np.isfinite(r["score"]) for r in rows)


def test_callbacks_are_optional_and_not_parameters():
    est = SlicedScoreMatchingDensity(**SMALL)
    assert "callbacks" not in est.get_params()
    est.fit(_data("SlicedScoreMatchingDensity"))
    assert not hasattr(est, "_skl_callbacks")


LOGGED_SEARCH = """
import re
import warnings
from sklearn.callback import ProgressBar
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skebm import SlicedScoreMatchingDensity
from skebm.datasets import make_two_moons

warnings.simplefilter("ignore")
X = make_two_moons(300, random_state=0)
est = SlicedScoreMatchingDensity(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
search = GridSearchCV(make_pipeline(StandardScaler(), est),
                      {"slicedscorematchingdensity__random_state": [0]}, cv=2)
search.set_callbacks(ProgressBar(max_propagation_depth=None)).fit(X)
"""


@pytest.mark.slow
@pytest.mark.parametrize("columns", [None, "100"])
def test_progress_bar_in_a_log_file_keeps_whole_rows(columns, tmp_path):
    """Output that is not a terminal: rich falls back to 80 columns, where the
    nested rows of a search used to lose their bar and time (``0:0…``)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    if columns is not None:
        env["COLUMNS"] = columns
    log = tmp_path / "fit.log"
    with open(log, "w") as stdout:
        subprocess.run(
            [sys.executable, "-c", LOGGED_SEARCH],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=env,
            check=True,
            timeout=600,
        )
    rows = log.read_text(encoding="utf-8").splitlines()
    assert any("SlicedScoreMatchingDensity - fit" in row for row in rows)
    if columns is None:  # widened: every row whole, elapsed time last
        assert rows and "…" not in "".join(rows)
        assert all(re.search(r"100% \d+:\d\d:\d\d$", row.rstrip()) for row in rows)
    else:  # the user's width is kept
        assert max(len(row.rstrip()) for row in rows) <= int(columns)


@pytest.mark.parametrize(
    "terminal, columns, widened", [(False, None, True), (False, "100", False),
                                   (True, None, False)]
)
def test_a_progress_bar_widens_rich_only_when_not_a_terminal(
    terminal, columns, widened, monkeypatch
):
    import io

    import rich
    from rich.console import Console

    from skebm._callbacks import LOG_WIDTH, widen_log_display

    monkeypatch.delenv("COLUMNS", raising=False)
    if columns is not None:
        monkeypatch.setenv("COLUMNS", columns)
    # rich's global console, writing to a file; a terminal of 80 columns
    console = Console(file=io.StringIO(), force_terminal=terminal)
    if terminal:
        console.width = 80
    monkeypatch.setattr(rich, "_console", console)
    before = console.width  # 80, COLUMNS, or a terminal's width on stdin/stderr
    est = SlicedScoreMatchingDensity()
    widen_log_display(est)  # no callback: nothing changes
    assert console.width == before
    widen_log_display(est.set_callbacks(callback.ProgressBar()))
    assert console.width == (max(before, LOG_WIDTH) if widened else before)
