"""Build the API reference of codemode_store from its docstrings, as HTML (pdoc).

The reference is generated, never committed, so it cannot go stale: every
public module, class, function and method of this checkout, with its
signature and docstring. Any warning while building (a module that fails to
import, a docstring pdoc cannot read) fails the build.

Usage::

    .venv/bin/python scripts/build_docs.py [--out docs/api]

then open ``docs/api/index.html``. ``pdoc`` comes with the ``test`` extra.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    # Run as a file: document this checkout, not a copy installed in the environment.
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import pkgutil  # noqa: E402
import warnings  # noqa: E402

DEFAULT_OUT = ROOT / "docs" / "api"
PACKAGE = ROOT / "codemode_store"


def modules() -> list[str]:
    """Return the modules the reference covers: the package and each module of its folder.

    Listed from the folder, not from ``codemode_store.__all__`` (which pdoc
    would follow): the facade is a few names, the architecture is every module.
    The CLI (docs/cli.md), the migrations (Alembic's) and private modules
    (``_name``, ``__main__``, which would run when imported) are not API.
    """
    return ["codemode_store"] + [
        f"codemode_store.{info.name}"
        for info in pkgutil.iter_modules([str(PACKAGE)])
        if info.name not in ("cli", "migrations") and not info.name.startswith("_")
    ]


def build(out: Path) -> Path:
    """Write the HTML reference into ``out``; return the path of its index page."""
    import pdoc
    import pdoc.render

    pdoc.render.configure(
        docformat="restructuredtext",
        footer_text="codemode_store: generated from the docstrings by scripts/build_docs.py",
        show_source=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pdoc.pdoc(*modules(), output_directory=out)
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    """Build the reference; print where it is."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    try:
        import pdoc  # noqa: F401
    except ImportError:
        print("error: building the API reference needs pdoc: pip install -e '.[test]'", file=sys.stderr)
        return 1
    index = build(args.out.resolve())
    print(f"API reference written: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
