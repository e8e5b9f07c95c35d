"""Helpers the test modules import: plain functions and classes, no fixtures.

Fixtures and hooks live in ``tests/conftest.py``; what a test calls lives here,
one module per job:

- ``backends``: the backend and front-end names and the PostgreSQL variable;
- ``tables``: read the store's tables straight, behind its back;
- ``idle_stores``: age, fill and tamper with stores, for the gc, check and vacuum tests;
- ``cli_runner``: invoke the CLI in-process;
- ``async_adapter``: ``AsyncObservationStore`` behind the sync surface.
"""
