"""Benchmarks of codemode_store against raw sqlite3 and a peer; run ``python -m benchmarks.run``."""
