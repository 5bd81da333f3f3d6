"""The code in the user guide and on the landing page runs as written.

Every ``>>>`` example in ``doc/index.rst`` and ``doc/user_guide/*.rst`` is a
doctest; this runs each page that has any.
"""

import doctest
from pathlib import Path

import pytest

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
