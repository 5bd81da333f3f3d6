"""The code in the user guide and on the landing page runs as written.

Every ``>>>`` example in ``doc/index.rst`` and ``doc/user_guide/*.rst`` is a
doctest; this runs each page that has any, and (slow) the same examples saved
as a script. Every ``.. code-block:: python`` runs as a script and pasted into
``python -i`` (see ``_snippets``).
"""

import doctest
import re
import textwrap
from pathlib import Path

import pytest
from _snippets import (
    finish,
    in_order,
    lines,
    paste_problems,
    repl_input,
    start_repl,
    start_script,
)

DOC = Path(__file__).resolve().parents[1] / "doc"
PAGES = sorted(
    page
    for page in [DOC / "index.rst", *(DOC / "user_guide").glob("*.rst")]
    if ">>>" in page.read_text(encoding="utf-8")
)


def test_pages_with_examples_are_found():
    names = {page.name for page in PAGES}
    assert {"index.rst", "score_matching.rst", "truncated.rst"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_user_guide_examples(page):
    result = doctest.testfile(
        str(page),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False,
    )
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} failed examples in {page.name}"


# -- the same code saved as a script, and the code blocks ----------------------
# A doctest runs its examples the way the interactive interpreter does (one
# statement at a time, values echoed and compared). A reader also saves a
# page's code as a script: the examples' sources, joined, must run there too.
# The ``.. code-block:: python`` snippets are run both ways.

CODE_BLOCK = re.compile(r"^\.\. code-block:: python\n\n((?:(?: {4}.*)?\n)+)", re.M)


def _doctest_script(page):
    examples = doctest.DocTestParser().get_examples(page.read_text(encoding="utf-8"))
    return "".join(example.source for example in examples)


# Pages whose code blocks are not snippets to paste, with the reason.
NOT_STANDALONE = {
    # a module file of the reader's own, then its use on a fitted ``est``
    "persistence.rst": "run by tests/test_io.py",
    # needs a torch.distributed process group or a Dask scheduler
    "distributed.rst": "run by tests/test_data_parallel.py",
    # a million-row Dask array: tests/test_streaming.py runs Incremental smaller
    "scale.rst": "run by tests/test_streaming.py",
}


def _code_blocks():
    blocks = []
    for page in sorted([DOC / "index.rst", *(DOC / "user_guide").glob("*.rst")]):
        if page.name in NOT_STANDALONE:
            continue
        text = page.read_text(encoding="utf-8")
        for match in CODE_BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((f"{page.name}:{line}", textwrap.dedent(match.group(1))))
    return blocks


BLOCKS = _code_blocks()


def test_code_blocks_are_found_and_paste():
    assert len(BLOCKS) >= 2
    for label, source in BLOCKS:
        compile(source, label, "exec")
        assert paste_problems(source) == [], label
    for page in PAGES:
        compile(_doctest_script(page), page.name, "exec")


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_user_guide_examples_run_as_a_script(page, tmp_path):
    finish(start_script(_doctest_script(page), tmp_path), f"{page.name} as a script")


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block[0])
def test_code_blocks_run_as_scripts_and_in_a_repl(block, tmp_path):
    label, source = block
    (tmp_path / "repl").mkdir()
    repl = start_repl(repl_input(source), tmp_path / "repl")
    script = finish(start_script(source, tmp_path), f"{label} as a script")
    pasted = finish(repl, f"{label} pasted into python -i")
    # the last line printed (a progress table, echoed values may come before)
    assert lines(script) and in_order(lines(script)[-1], pasted), (script, pasted)
