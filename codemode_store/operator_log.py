"""What an operator must know, said on the ``codemode_store`` logger at WARNING.

The store logs little, and only what needs a person: recovery failed
pending generations (a host died while running them), and the database
became unavailable and came back. A message names the database (password
hidden), and sessions, cells and generations where it is about them; never
a payload's content, nor an error text a host stored (that is a payload too).
The library adds no handler: the host's logging configuration decides where
these go.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.engine import URL

from .errors import DatabaseUnavailable, StoreError

__all__ = ["LOGGER", "Availability", "recovered"]

#: The logger of the whole package.
LOGGER = logging.getLogger("codemode_store")


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def recovered(url: URL, count: int) -> None:
    """Say that recovery (``fail_pending``) failed ``count`` pending generations, if any."""
    if count:
        LOGGER.warning(
            "recovery failed %d pending generation%s of %s: they replay as failed",
            count,
            "" if count == 1 else "s",
            _shown(url),
        )


class Availability:
    """Whether one store's database answers: an outage is logged when it starts and when it ends.

    ``failed`` sees every error a call raises and notes a ``DatabaseUnavailable``
    (once per outage); the store calls ``back`` after a call succeeded while
    ``down`` is true. Safe between threads.
    """

    __slots__ = ("_failures", "_lock", "_since", "_url", "down")

    def __init__(self, url: URL) -> None:
        """Watch the database at ``url``, which is taken to answer."""
        self._url = url
        self._lock = threading.Lock()
        self._since = 0.0
        self._failures = 0
        #: True from a call that found the database unavailable until one succeeds.
        self.down = False

    def failed(self, error: StoreError) -> StoreError:
        """Note the error a call raises (it is returned); log the start of an outage."""
        if isinstance(error, DatabaseUnavailable):
            with self._lock:
                self._failures += 1
                if not self.down:
                    self.down = True
                    self._since = time.monotonic()
                    LOGGER.warning("database %s unavailable: %s", _shown(self._url), error)
        return error

    def back(self) -> None:
        """Log the end of an outage: a call succeeded."""
        with self._lock:
            if not self.down:
                return
            self.down = False
            LOGGER.warning(
                "database %s available again after %.1f s (%d call%s failed meanwhile)",
                _shown(self._url),
                time.monotonic() - self._since,
                self._failures,
                "" if self._failures == 1 else "s",
            )
            self._failures = 0
