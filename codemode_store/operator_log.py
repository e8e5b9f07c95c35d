"""What an operator must know, said on the ``codemode_store`` logger at WARNING.

The store logs little, and only what needs a person: recovery failed
pending generations (a host died while running them), and whose; a host was
fenced (two processes with one host id); the database became unavailable and
came back. A message names the database (password hidden), hosts, and
sessions, cells and generations where it is about them; never a payload's
content, nor an error text a host stored (that is a payload too). The
library adds no handler: the host's logging configuration decides where
these go.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.engine import URL

from .errors import DatabaseUnavailable, HostFenced, StoreError
from .hosts import Recovered

__all__ = ["LOGGER", "OperatorLog"]

#: The logger of the whole package.
LOGGER = logging.getLogger("codemode_store")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class OperatorLog:
    """The warnings of one store: recoveries, fencing, and outages of its database.

    ``failed`` sees every error a call raises: a ``DatabaseUnavailable``
    starts an outage (logged once), a ``HostFenced`` is logged once. The
    store calls ``back`` after a call succeeded while ``down`` is true.
    Safe between threads.
    """

    __slots__ = ("_failures", "_fenced", "_lock", "_shown", "_since", "down")

    def __init__(self, url: URL) -> None:
        """Speak for the store on the database at ``url``, which is taken to answer."""
        self._shown = url.render_as_string(hide_password=True)
        self._lock = threading.Lock()
        self._since = 0.0
        self._failures = 0
        self._fenced = False
        #: True from a call that found the database unavailable until one succeeds.
        self.down = False

    def failed(self, error: StoreError) -> StoreError:
        """Note the error a call raises (it is returned): an outage, or this host fenced."""
        if isinstance(error, DatabaseUnavailable):
            with self._lock:
                self._failures += 1
                if not self.down:
                    self.down = True
                    self._since = time.monotonic()
                    LOGGER.warning("database %s unavailable: %s", self._shown, error)
        elif isinstance(error, HostFenced):
            self.fenced(error.host_id, error.incarnation)
        return error

    def back(self) -> None:
        """Log the end of an outage: a call succeeded."""
        with self._lock:
            if not self.down:
                return
            self.down = False
            LOGGER.warning(
                "database %s available again after %.1f s (%s failed meanwhile)",
                self._shown,
                time.monotonic() - self._since,
                _plural(self._failures, "call"),
            )
            self._failures = 0

    def fenced(self, host_id: str, incarnation: int | None) -> None:
        """Log, once, that a later open of the same host id superseded this store's incarnation."""
        with self._lock:
            if self._fenced:
                return
            self._fenced = True
        LOGGER.warning(
            "host %r incarnation %s on %s was fenced: a later open of the same host id took over "
            "(two processes with one host id); this process must stop serving",
            host_id,
            incarnation,
            self._shown,
        )

    def claimed(self, host_id: str, incarnation: int, recovered: int) -> None:
        """Log what opening as ``host_id`` failed of its earlier incarnations' pending generations."""
        if recovered:
            LOGGER.warning(
                "recovery failed %s on %s: host %r (now incarnation %d) had left them pending "
                "in an earlier incarnation; they replay as failed",
                _plural(recovered, "pending generation"),
                self._shown,
                host_id,
                incarnation,
            )

    def recovered(self, recovered: Recovered, host_id: str | None) -> None:
        """Log what a ``fail_pending`` failed, and whose those generations were."""
        if not recovered.total:
            return
        whose = []
        if recovered.own:
            mine = (
                "begun without a host id"
                if host_id is None
                else f"of host {host_id!r}'s earlier incarnations"
            )
            whose.append(f"{recovered.own} {mine}")
        whose += [f"{count} of lost host {lost!r}" for lost, count in sorted(recovered.lost.items())]
        LOGGER.warning(
            "recovery failed %s on %s (%s); they replay as failed",
            _plural(recovered.total, "pending generation"),
            self._shown,
            ", ".join(whose),
        )
