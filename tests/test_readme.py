"""The README's python blocks run as written, in order, in a fresh interpreter,
and print what the README says they print.

A ```python block followed by a ```text block is checked against it: the text
block is the block's expected standard output (exactly, after stripping
trailing whitespace). Blocks are run one after the other in one namespace, as
a reader pasting them into one session would.
"""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.S | re.M)

RUNNER = r"""
import contextlib, io, json, sys, warnings
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__readme__"}
outputs = []
for label, source in blocks:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(source, label, "exec"), namespace)
    outputs.append(buffer.getvalue())
json.dump(outputs, open(sys.argv[2], "w"))
"""


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


@pytest.mark.slow
def test_readme_python_blocks_run_and_print_what_they_claim(tmp_path):
    blocks = readme_blocks()
    source_file = tmp_path / "blocks.json"
    output_file = tmp_path / "outputs.json"
    source_file.write_text(json.dumps([(label, source) for label, source, _ in blocks]))
    run = subprocess.run(
        [sys.executable, "-c", RUNNER, str(source_file), str(output_file)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    outputs = json.loads(output_file.read_text())
    for (label, source, expected), output in zip(blocks, outputs, strict=True):
        if expected is None:
            continue
        got = "\n".join(line.rstrip() for line in output.strip().splitlines())
        want = "\n".join(line.rstrip() for line in expected.strip().splitlines())
        assert got == want, f"{label}\n{source}\nprinted\n{got}\nnot\n{want}"
