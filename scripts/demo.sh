#!/usr/bin/env bash
# Set up a virtual environment from nothing and run the demo: a host session on
# the embedded SQLite default that survives a restart, then inspection.
# The demo's database is written in the folder you run this from; the commands
# the demo prints at its end work as printed, from any folder.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python3 -m venv "$root/.venv"
"$root/.venv/bin/python" -m pip install --quiet --upgrade pip
"$root/.venv/bin/python" -m pip install --quiet "$root"
exec "$root/.venv/bin/codemode-store" demo "$@"
