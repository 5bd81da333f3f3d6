"""The README's python blocks run however a reader runs them, and print what
the README says they print.

A ```python block followed by a ```text block is checked against it: the text
block is the block's expected standard output. Each block is run saved as a
script on its own (``python snippet.py``: the output must match exactly), and
all blocks are pasted one after the other into one interactive session
(``python -i``: the expected lines must appear in order, among the values the
interpreter echoes). A quick test checks without running anything that every
block compiles, pastes (blank lines where the interpreter needs them) and
guards code that starts processes.
"""

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

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.S | re.M)

def readme_blocks():
    """``[(label, python source, expected output or None)]`` in the README's
    order; the label names the block's first line in the README, so that a
    traceback points at it."""
    text = README.read_text(encoding="utf-8")
    fences = [
        (lang, textwrap.dedent(match.group(3)), text.count("\n", 0, match.start()) + 2)
        for match in FENCE.finditer(text)
        for lang in [match.group(2)]
    ]
    blocks = []
    for i, (lang, body, line) in enumerate(fences):
        if lang != "python":
            continue
        follows = fences[i + 1] if i + 1 < len(fences) else (None, None, None)
        expected = follows[1] if follows[0] == "text" else None
        blocks.append((f"README.md, block at line {line}", body, expected))
    return blocks


def test_readme_has_checked_python_blocks():
    blocks = readme_blocks()
    assert len(blocks) >= 5
    assert sum(expected is not None for _, _, expected in blocks) >= 4


@pytest.mark.parametrize(
    "block", readme_blocks(), ids=lambda block: block[0].rsplit(" ", 1)[-1]
)
def test_readme_block_compiles_as_a_script_and_pastes_into_a_repl(block):
    label, source, _ = block
    compile(source, label, "exec")
    assert paste_problems(source) == [], f"{label} does not paste:\n{source}"
    if "LocalCluster" in source or "ProcessPool" in source:
        # the workers re-import a script: without the guard they run it again
        assert 'if __name__ == "__main__":' in source, label


def test_paste_check_catches_what_the_interpreter_rejects():
    with_block = "with open('f') as f:\n    x = 1\nprint(x)\n"
    assert paste_problems(with_block)
    assert not paste_problems(with_block.replace("\nprint", "\n\nprint"))
    assert paste_problems("def f():\n    x = 1\n\n    return x\n")


MARKER = "<<< block {} >>>"


@pytest.mark.slow
def test_readme_blocks_run_as_scripts_and_in_a_repl(tmp_path):
    blocks = readme_blocks()
    session = "".join(
        repl_input(source) + f"print({MARKER.format(i)!r})\n"
        for i, (_, source, _) in enumerate(blocks)
    )
    (tmp_path / "repl").mkdir()
    repl = start_repl(session, tmp_path / "repl")  # runs beside the scripts
    for i, (label, source, expected) in enumerate(blocks):
        directory = tmp_path / f"script_{i}"
        directory.mkdir()
        output = finish(start_script(source, directory), f"{label}, as a script")
        if expected is not None:
            assert lines(output) == lines(expected), (
                f"{label}, as a script, printed\n{output}\nnot\n{expected}"
            )
    output = finish(repl, "the README pasted into python -i")
    for i, (label, _, expected) in enumerate(blocks):
        before, _, output = output.partition(MARKER.format(i))
        if expected is not None:
            assert in_order(expected, before), (
                f"{label}, pasted, printed\n{before}\nnot\n{expected}"
            )
