#!/usr/bin/env bash
# Set up a virtual environment from nothing and run the demo: a host session on
# the embedded SQLite default that survives a restart, then inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet .
exec .venv/bin/codemode-store demo "$@"
