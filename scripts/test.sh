#!/usr/bin/env bash
# Set up a virtual environment from nothing and run lint, types and the tests.
# PostgreSQL tests run when CODEMODE_STORE_TEST_POSTGRES_URL is set (see
# scripts/start-postgres.sh); otherwise they skip with one line saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet '.[test,postgres,async,bench,web]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy --strict codemode_store cli.py
.venv/bin/python -m pytest "$@"
