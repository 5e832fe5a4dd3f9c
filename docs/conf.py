"""Sphinx configuration of the cfe_fast documentation.

Build from the repository root (warnings are errors, as in CI):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

It documents the cfe_fast of this source tree, runs the gallery scripts of
``examples/`` (``plot_*.py``) and includes the committed results files of
``benchmarks/results/``; it runs no benchmark.
"""

import argparse
import os
import re
import sys
from pathlib import Path
from unittest import mock

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the source tree's cfe_fast, not an installed copy

import cfe_fast  # noqa: E402
from numpydoc.xref import DEFAULT_LINKS  # noqa: E402

project = "cfe_fast"
author = "the cfe_fast developers"
copyright = "the cfe_fast developers"
release = version = cfe_fast.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated", "**.ipynb_checkpoints"]
html_theme = "alabaster"
html_title = f"cfe_fast {release}"

# Markdown pages (docs/method.md is the math contract, also read on GitHub): $...$ math,
# anchors for the headings so that pages can link to sections
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

autosummary_generate = True
templates_path = ["_templates"]  # autosummary/class.rst: a class page documents its members once
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": False}
autodoc_typehints = "none"  # the numpy-style docstrings carry the types
numpydoc_show_class_members = False  # autosummary/autodoc list the members once
numpydoc_class_members_toctree = False
# types become cross-references where they name a documented object (and plain text
# otherwise), so a name in a type, such as an attribute ``intercept_``, is not read as an
# RST hyperlink reference
numpydoc_xref_param_type = True
numpydoc_xref_ignore = {"or", "of", "in", "and", "default", "optional", "shape", "the", "a", "with"}
# numpydoc's default aliases (bool, int, None, array_like, ...) point into Python's and NumPy's
# docs, which this build does not fetch (it runs offline): those words stay words
numpydoc_xref_aliases = {word: word for word in DEFAULT_LINKS}

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # gallery scripts are the plot_*.py files; the other scripts of examples/ are command-line
    # programs that print tables (README.md runs them), not pages
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"^(?!plot_)",  # matched against the file name
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
}


def _help_texts(parser, prog):
    """(prog, help text) of the parser and of every subcommand, depth first."""
    yield prog, parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _help_texts(sub, f"{prog} {name}")


def write_cli_help(app):
    """Write docs/_generated/cli_help.md: the --help text of cfe-fast and of each subcommand.

    The texts come from the parser itself at build time, so the page always shows
    the options of this version (they are generated from the estimator's parameters).
    """
    from cfe_fast.cli import build_parser

    with mock.patch.dict("os.environ", COLUMNS="100"):  # argparse wraps at the terminal width
        texts = list(_help_texts(build_parser(), "cfe-fast"))
    sections = [f"### `{prog}`\n\n```text\n{text.rstrip()}\n```\n" for prog, text in texts]
    out = DOCS / "_generated" / "cli_help.md"
    out.parent.mkdir(exist_ok=True)
    _write_if_changed(out, "\n".join(sections))


def write_benchmark_pages(app):
    """Write docs/benchmark_results/: one page per committed results file of benchmarks/results/.

    A markdown results file is included as it is (its title is the page's); a text file
    is shown verbatim. Data files (.csv, .png) are what those pages show or cite.
    """
    out = DOCS / "benchmark_results"
    out.mkdir(exist_ok=True)
    pages = {}
    for path in sorted((ROOT / "benchmarks" / "results").iterdir()):
        source = os.path.relpath(path, out)
        if path.suffix == ".md" and path.read_text().startswith("# "):
            pages[path.stem] = f"```{{include}} {source}\n:relative-images:\n```\n"
        elif path.suffix == ".md":  # no title: the file name is the title, its sections go under it
            pages[path.stem] = f"# `{path.name}`\n\n{_headings_from(2, path.read_text())}"
        elif path.suffix == ".txt":
            pages[path.stem] = f"# `{path.name}`\n\n```{{literalinclude}} {source}\n:language: text\n```\n"
    for stale in out.glob("*.md"):
        if stale.stem not in pages:
            stale.unlink()
    for stem, content in pages.items():
        _write_if_changed(out / f"{stem}.md", content)


def _headings_from(level, markdown):
    """``markdown`` with its headings shifted so that the highest is of ``level``."""
    heading = re.compile(r"^(#+) ", re.MULTILINE)
    found = [len(h) for h in heading.findall(markdown)]
    shift = level - min(found) if found else 0
    return heading.sub(lambda match: "#" * (len(match.group(1)) + shift) + " ", markdown)


def _write_if_changed(path, content):
    """Write ``content`` to ``path`` unless it already holds it (so Sphinx rebuilds nothing needlessly)."""
    if not path.exists() or path.read_text() != content:
        path.write_text(content)


#: an absolute value |x| in a docstring (plain-text math) is, to RST, a substitution reference:
#: its bars are escaped before parsing (not ||x||, a norm, nor inside ``literals``)
ABSOLUTE_VALUE = re.compile(r"(?<![\\|`])\|([^|\s`][^|`\n]*?)\|(?![|_])")


def escape_absolute_values(app, what, name, obj, options, lines):
    lines[:] = [ABSOLUTE_VALUE.sub(r"\\|\1\\|", line) for line in lines]


def skip_inherited_api(app, what, name, obj, skip, options):
    """Document the members cfe_fast defines: what scikit-learn's base classes give the
    estimator (``get_params``, ``score``, the ``set_*_request`` methods) is documented by
    scikit-learn."""
    module = getattr(obj, "__module__", None) or ""
    if what == "class" and module and not module.startswith("cfe_fast"):
        return True
    return None


def setup(app):
    app.connect("autodoc-process-docstring", escape_absolute_values)
    app.connect("autodoc-skip-member", skip_inherited_api)
    app.connect("builder-inited", write_cli_help)
    app.connect("builder-inited", write_benchmark_pages)
