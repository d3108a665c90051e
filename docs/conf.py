"""Sphinx configuration of the stem-loop documentation.

Build with ``make docs`` (``sphinx-build -W -b html docs docs/_build/html``): warnings are errors.
Only Sphinx's built-in extensions are used, so the docs build wherever ``pip install -e .[docs]``
has run.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # Import the checkout, installed or not.

from stem_loop import __version__  # noqa: E402

project = "stem-loop"
author = "stem-loop developers"
copyright = "stem-loop developers, BSD-3-Clause"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
]

exclude_patterns = ["_build"]
# Single backticks in docstrings (`open_catalog`) are cross-references where they resolve.
default_role = "py:obj"
# Unresolved references to third-party types (ndarray, RunEngine, ...) are not errors.
nitpicky = False

# -- autodoc / napoleon (numpydoc-style docstrings) ------------------------------------------
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
}
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True
napoleon_google_docstring = False
napoleon_numpy_docstring = True
# "Attributes" sections become :ivar: fields, so they never clash with autodoc'd members.
napoleon_use_ivar = True
napoleon_use_rtype = False

# -- HTML ---------------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"stem-loop {release}"
html_theme_options = {
    "description": "Autonomous 4D-STEM with Bluesky, Ophyd and Tiled",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "240px",
}


def _protocol_signature(app, what, name, obj, options, signature, return_annotation):
    """Show protocols (ScanBackend, FrameSource, ForwardModel) without a constructor signature."""
    if what == "class" and getattr(obj, "_is_protocol", False):
        return "", return_annotation
    return None


def setup(app):
    app.connect("autodoc-process-signature", _protocol_signature)
