"""The errors only the command line tools raise; the CLI prints them like any ``StoreError``."""

from __future__ import annotations

from ..errors import StoreError

__all__ = ["CannotListen", "DemoFailed", "NoOutcome", "StoreNotFound"]


class StoreNotFound(StoreError):
    """No store exists at the location a tool was given (a read never creates one); fix the path."""


class NoOutcome(StoreError):
    """The generation holds no outcome to print (it is pending, failed or released)."""


class DemoFailed(StoreError):
    """The demo could not run (its database file is someone else's, or its host process failed)."""


class CannotListen(StoreError):
    """``serve`` cannot listen where it was asked (a port in use, an unknown host); choose another."""
