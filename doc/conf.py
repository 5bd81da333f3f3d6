"""Sphinx configuration of the skebm documentation.

Build from the repository root (warnings are errors)::

    python -m sphinx -W --keep-going -b html doc doc/_build/html

Add ``-D plot_gallery=0`` to skip running the gallery examples.
"""

import os
import sys

# Document the checkout this file lives in, not whatever skebm is installed.
sys.path.insert(0, os.path.abspath(".."))

import skebm  # noqa: E402

project = "skebm"
author = "the skebm developers"
copyright = "2025, the skebm developers"
version = release = skebm.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # MathJax from the installed package, copied into _static: math renders
    # offline (the default loads it from a CDN).
    "sphinx-mathjax-offline",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "literal"
pygments_style = "sphinx"

# -- autodoc / autosummary ----------------------------------------------------
# One stub page per object, generated under doc/generated/ from doc/api.rst.
autosummary_generate = True
autodoc_typehints = "none"
autodoc_member_order = "groupwise"

# -- numpydoc -------------------------------------------------------------------
# Class pages list their members through the autosummary template instead.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Completeness of the docstrings (sections, parameters, Examples) is checked
# by tests/test_docstrings.py, which runs with the test suite.

# -- sphinx-gallery -------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("skebm",),
    "backreferences_dir": os.path.join("generated", "backreferences"),
    "inspect_global_variables": False,
    "remove_config_comments": True,
    "min_reported_time": 0,
    "matplotlib_animations": False,
    "show_memory": False,
}

# -- HTML -------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skebm {release}"
html_static_path = []
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_depth": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_sidebars = {"index": [], "install": []}
html_show_sourcelink = False
