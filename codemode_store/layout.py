"""Find the CLI and the migrations in both layouts: the wheel's and a source checkout's.

The wheel ships the top-level ``cli.py`` and ``migrations/`` inside the package,
as ``codemode_store/cli.py`` and ``codemode_store/migrations``. A source
checkout (an editable install, the test suite) keeps them beside the package.
:func:`install_checkout_finder` maps the two module names onto the checkout's
files, so ``codemode_store.cli`` (the command's entry point) and
``codemode_store.migrations`` name the same code in both layouts, and edits to
the checkout take effect at once. :func:`migrations_folder` asks the import
system, so Alembic reads the scripts from the very folder Python would import.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import SchemaError

# Imported on every `import codemode_store`: pathlib and importlib.abc (which
# pulls in importlib.resources, tempfile and shutil) would cost the command line
# about 9 ms at start, so they are left out of the imports at run time.
if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from pathlib import Path
    from types import ModuleType

__all__ = ["checkout_root", "install_checkout_finder", "migrations_folder"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_CLI = "codemode_store.cli"
_MIGRATIONS = "codemode_store.migrations"


def checkout_root() -> str | None:
    """Return the source checkout holding this package, or ``None`` in an installed wheel.

    A checkout is recognised by what the wheel moves into the package: a
    top-level ``cli.py`` and ``migrations/env.py`` beside the package, and no
    ``cli.py`` inside it.
    """
    if os.path.exists(os.path.join(_PACKAGE, "cli.py")):
        return None
    root = os.path.dirname(_PACKAGE)
    if os.path.isfile(os.path.join(root, "cli.py")) and os.path.isfile(
        os.path.join(root, "migrations", "env.py")
    ):
        return root
    return None


class _CheckoutFinder:
    """Serve ``codemode_store.cli`` and ``codemode_store.migrations`` from a checkout's top level.

    A meta path finder by protocol (``find_spec``), not by subclassing ``importlib.abc``.
    """

    def __init__(self, root: str) -> None:
        self.root = root

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """Return the spec of the checkout's file for the two names; ``None`` for any other."""
        if fullname == _CLI:
            return importlib.util.spec_from_file_location(fullname, os.path.join(self.root, "cli.py"))
        if fullname == _MIGRATIONS:
            folder = os.path.join(self.root, "migrations")
            return importlib.util.spec_from_file_location(
                fullname, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
            )
        return None


def install_checkout_finder() -> None:
    """Let ``codemode_store.cli`` and ``.migrations`` import from a source checkout.

    Does nothing in an installed wheel, where they are files of the package,
    and nothing the second time.
    """
    root = checkout_root()
    if root is None or any(isinstance(finder, _CheckoutFinder) for finder in sys.meta_path):
        return
    # Appended: the package's own folder is searched first, so the finder only
    # answers for names the package does not hold.
    sys.meta_path.append(_CheckoutFinder(root))


def migrations_folder() -> Path:
    """Return the folder of the migration scripts, wherever the layout puts them."""
    from pathlib import Path

    install_checkout_finder()
    spec = importlib.util.find_spec(_MIGRATIONS)
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise SchemaError(f"the migration scripts are missing from {_PACKAGE}")
    folder = Path(locations[0])
    if not (folder / "env.py").is_file():
        raise SchemaError(f"the migration scripts are missing from {folder}")
    return folder
