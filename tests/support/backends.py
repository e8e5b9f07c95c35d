"""The backends and front ends the suite runs on, and the variable that names the PostgreSQL server."""

from __future__ import annotations

POSTGRES_URL_VARIABLE = "CODEMODE_STORE_TEST_POSTGRES_URL"

#: Every test of ``backend`` (or of ``store_url``, ``store``) runs on each of these.
BACKENDS = ["sqlite", "postgres"]

#: A test of ``store`` in a module marked ``front_ends`` runs on each of these.
FRONT_ENDS = ["sync", "async"]
