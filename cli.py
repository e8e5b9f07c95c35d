"""The ``codemode-store`` command line (installed as ``codemode_store.cli``)."""

from __future__ import annotations

import click

from codemode_store import __version__


@click.group()
@click.version_option(__version__, prog_name="codemode-store")
def main() -> None:
    """Inspect and manage what a code-mode host's store retains."""


if __name__ == "__main__":
    main()
