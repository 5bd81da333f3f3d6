"""scikit-learn's callback API (``sklearn.callback``, 1.9 and later), where
the installed release has it (layer A).

A fit is a task tree: ``fit`` holds ``base density`` (choosing and fitting
the base), ``training`` (one subtask per epoch; with cross-fitting, one per
fold, each holding its epochs, then the final run) and ``log Z``. With an
older scikit-learn every function here does nothing, and estimators have no
``set_callbacks``.

``ProgressBar`` draws with rich's global console. When standard output is not
a terminal (a log file, a pipe, CI, a notebook's subprocess), rich knows no
width and falls back to 80 columns: the nested rows of a search (``GridSearchCV
- candidate-split-evaluation | Pipeline - fit-final-estimator | ... #3``) take
them all, and rich drops the bar and cuts the time column to ``0:0…``. A fit
with a ``ProgressBar`` therefore widens that console to ``LOG_WIDTH`` columns
when it is not a terminal, unless the user chose a width (``COLUMNS``). Rich
draws a non-terminal display once, when the outermost fit ends, so the log
gets one complete table.
"""

import os

import numpy as np

try:  # scikit-learn >= 1.9
    from sklearn.callback import CallbackSupportMixin
except ImportError:  # pragma: no cover - older scikit-learn

    class CallbackSupportMixin:
        """Stand-in without callbacks for scikit-learn < 1.9."""


HAS_CALLBACKS = hasattr(CallbackSupportMixin, "set_callbacks")

# Wide enough for a row nested four levels deep (GridSearchCV > Pipeline >
# estimator > task): ~80 characters of description, the 40-column bar, the
# percentage and the elapsed time.
LOG_WIDTH = 160


def has_callbacks(estimator):
    """Whether a callback listens: set on the estimator, or a meta-estimator's."""
    if not HAS_CALLBACKS:
        return False
    return bool(getattr(estimator, "_skl_callbacks", None)) or hasattr(
        estimator, "_parent_callback_ctx"
    )


def widen_log_display(estimator):
    """Give rich's console ``LOG_WIDTH`` columns when a ``ProgressBar`` draws
    to something that is not a terminal (see the module docstring).

    The bar may be the estimator's own, or a meta-estimator's above it that
    does not reach into this fit (``max_propagation_depth``): its rows are cut
    as well."""
    callbacks = list(getattr(estimator, "_skl_callbacks", None) or [])
    context = getattr(estimator, "_parent_callback_ctx", None)
    while context is not None:
        callbacks += getattr(context, "_callbacks", None) or []
        context = getattr(context, "parent", None)
    if not callbacks:
        return
    try:
        import rich
        from sklearn.callback import ProgressBar
    except ImportError:  # pragma: no cover - ProgressBar itself needs both
        return
    if not any(isinstance(callback, ProgressBar) for callback in callbacks):
        return
    console = rich.get_console()
    if console.is_terminal or console.is_jupyter or "COLUMNS" in os.environ:
        return
    if console.width < LOG_WIDTH:
        console.width = LOG_WIDTH


class Task:
    """One task of the fit's tree, or a no-op when no callback listens."""

    def __init__(self, estimator, context):
        self.estimator = estimator
        self.context = context

    @classmethod
    def root(cls, estimator, X):
        if not has_callbacks(estimator):
            return cls(estimator, None)
        widen_log_display(estimator)
        context = estimator._init_callback_context(max_subtasks=None)
        context.call_on_fit_task_begin(estimator=estimator, X=X)
        return cls(estimator, context)

    def subtask(self, name, max_subtasks=0, X=None):
        if self.context is None:
            return Task(self.estimator, None)
        context = self.context.subcontext(task_name=name, max_subtasks=max_subtasks)
        context.call_on_fit_task_begin(estimator=self.estimator, X=X)
        return Task(self.estimator, context)

    def end(self, X=None, fitted=None):
        """End the task; ``fitted`` gives the attributes of a model usable as if
        fit stopped here. Returns whether a callback asked to stop."""
        if self.context is None:
            return False
        # ScoringMonitor scores only when a target is given; a density has none,
        # and skebm's scores ignore y: a placeholder lets it score held-out X.
        y = None if X is None else np.zeros(len(X))
        return bool(
            self.context.call_on_fit_task_end(
                estimator=self.estimator,
                X=X,
                y=y,
                reconstruction_attributes=fitted,
            )
        )
