"""The support code of the ``codemode-store`` command, apart from the library a host imports.

``display`` formats tables and JSON lines, ``inspection`` reads listings and
totals, ``admin`` opens existing stores and runs migrations by hand, ``demo``
is the guided demo, and ``errors`` holds the errors only these tools raise. A
host needs none of it: the library is ``codemode_store`` outside this folder,
and nothing there imports from here. Kept free of imports, so that the
command's ``--help`` loads no SQLAlchemy.
"""
