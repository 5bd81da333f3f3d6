"""Run documentation snippets the two ways a reader runs them: saved as a
script (``python snippet.py``) and pasted into the interactive interpreter
(``python -i``, fed the snippet's lines on standard input).

The two differ in what they forgive. A script needs an ``if __name__ ==
"__main__":`` guard around code that starts worker processes (Dask's
``LocalCluster``): the workers re-import the script. The interpreter reads one
statement at a time and needs a blank line to end a compound statement (a
``with`` block followed directly by an unindented line is a SyntaxError), and
it ends any block at a blank line (a blank line inside a function body breaks
the paste).
"""

import codeop
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# An error in the pasted code: a traceback or a SyntaxError whose frame is the
# interpreter's input. (Libraries may log tracebacks of their own threads, e.g.
# Dask's scheduler while a cluster shuts down: not an error of the snippet.)
REPL_ERROR = re.compile(r'File "<stdin>", line \d+')


def environment():
    """A plain environment: this checkout first on the path, figures off-screen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["MPLBACKEND"] = "Agg"
    env["PYTHONWARNINGS"] = "ignore"
    return env


def paste_problems(source):
    """The lines at which pasting ``source`` into the interpreter fails,
    without running it: the interpreter's own statement splitting (``codeop``,
    as ``code.InteractiveConsole`` uses)."""
    problems, buffer = [], []
    for number, line in enumerate(source.splitlines() + [""], start=1):
        buffer.append(line)
        try:
            code = codeop.compile_command("\n".join(buffer), "<stdin>", "single")
        except (SyntaxError, ValueError, OverflowError) as error:
            problems.append(f"line {number}: {type(error).__name__}: {error.msg}")
            buffer = []
            continue
        if code is not None:
            buffer = []
    return problems


def repl_input(source):
    """What a reader pastes, then Enter: a compound statement at the end of
    the snippet is closed by the blank line the reader types."""
    return source.rstrip("\n") + "\n\n"


def start_script(source, directory, name="snippet.py"):
    """``python snippet.py`` in ``directory``, started; ``finish`` waits."""
    path = Path(directory) / name
    path.write_text(source, encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, name],
        cwd=directory,
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_repl(text, directory, name="pasted.txt"):
    """``python -i`` reading ``text`` on standard input, started."""
    path = Path(directory) / name
    path.write_text(text, encoding="utf-8")
    with open(path, encoding="utf-8") as stdin:
        return subprocess.Popen(
            [sys.executable, "-i", "-q"],
            cwd=directory,
            env=environment(),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def finish(process, what, timeout=1800):
    """Standard output of a started run; fails with its error output if it
    exited non-zero (a script) or reported an error in its input (the
    interpreter goes on after one and exits 0)."""
    stdout, stderr = process.communicate(timeout=timeout)
    failed = process.returncode != 0 or REPL_ERROR.search(stderr)
    assert not failed, f"{what} failed (exit {process.returncode}):\n{stderr[-4000:]}"
    return stdout


def lines(text):
    return [line.rstrip() for line in text.strip().splitlines() if line.strip()]


def in_order(expected, output):
    """Whether the expected lines appear in ``output`` in order (the
    interpreter also echoes the value of every bare expression)."""
    remaining = iter(lines(output))
    return all(any(line == got for got in remaining) for line in lines(expected))
