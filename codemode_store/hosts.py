"""Many hosts on one store (docs/several-hosts.md): host ids, incarnations, leases, and recovery.

A store opened with a host id *claims* it (:func:`claim`): in one
transaction its incarnation goes up by one (a new host id starts at 1), its
lease starts, and the generations still pending from earlier incarnations of
the same host id are failed. The lease is renewed in the background
(``lease_keeper.py``) by :func:`renew`; a closing store ends it (:func:`end_lease`).

Lease times are the database's clock, never the host's: ``now()`` on
PostgreSQL (the start of the statement's transaction), the machine's clock on
SQLite (whose file is shared only by processes of one machine). A host whose
lease ran out more than ``lease_seconds`` ago is **lost**.

Row locks order the races on PostgreSQL (SQLite's writers are serialised by
``BEGIN IMMEDIATE`` already): ``begin`` takes a ``KEY SHARE`` lock on its
host's row in the statement that writes the pending row (``statements.py``),
which a renewal (a plain ``UPDATE``) does not wait for; a claim and a recovery
take ``FOR UPDATE``, which waits for those begins to commit and makes the
begins that come later re-read the row (and find themselves fenced). A
recovery locks the lost hosts' rows first, re-checking the lease after any
wait, then fails their rows with an ``UPDATE`` that checks it once more: a
renewal that committed first saves the host; one that comes after waits, and
the host was lost when its rows were failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, and_, bindparam, exists, func, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from .driver import Driver, Statement
from .observation import from_micros
from .payload import PreparedPayload
from .schema import hosts, observations
from .statements import insert_or_ignore

__all__ = [
    "RESTARTED_PAYLOAD",
    "RESTARTED_TEXT",
    "HostInfo",
    "Recovered",
    "claim",
    "end_lease",
    "fail_lost",
    "host_info",
    "host_infos",
    "lost_text",
    "renew",
]

#: The error text of generations left pending by an earlier incarnation of the same host id.
RESTARTED_TEXT = "host restarted: the observation was interrupted"
#: ``RESTARTED_TEXT`` as the payload of a failed generation.
RESTARTED_PAYLOAD = PreparedPayload(RESTARTED_TEXT.encode("utf-8"))


def lost_text(host_id: str) -> str:
    """Return the error text of the generations of a lost host."""
    return f"host {host_id} lost: the observation was interrupted"


@dataclass(frozen=True, slots=True)
class HostInfo:
    """One host id the store has seen (``store.hosts()``).

    ``incarnation`` is the current one; ``lease_expires_at`` is when its lease
    runs out (the database's clock, timezone-aware UTC); ``live`` is false once
    the host is lost (its lease ran out ``lease_seconds`` ago or more, or it
    closed its store); ``pending`` counts the generations still pending under
    the host id.
    """

    host_id: str
    incarnation: int
    lease_expires_at: datetime
    live: bool
    pending: int


class DatabaseClock(FunctionElement[int]):
    """The database's clock in integer microseconds since the Unix epoch."""

    type = BigInteger()
    inherit_cache = True


@compiles(DatabaseClock, "postgresql")
def _db_now_postgresql(_element: DatabaseClock, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "CAST(EXTRACT(EPOCH FROM now()) * 1000000 AS BIGINT)"


@compiles(DatabaseClock, "sqlite")
def _db_now_sqlite(_element: DatabaseClock, _compiler: SQLCompiler, **_kw: Any) -> str:
    # julianday('now') is fixed for the whole statement, to the millisecond.
    return "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)"


h = hosts.c
o = observations.c

_this_host = h.host_id == bindparam("p_host_id")
_this_incarnation = and_(_this_host, h.incarnation == bindparam("p_incarnation"))
#: The host of the outer query's row is lost: its lease ran out ``lease_micros`` ago or more.
_lost = h.lease_expires_at + h.lease_micros < DatabaseClock()

_new_host = {
    "host_id": bindparam("p_host_id"),
    "incarnation": 0,
    "lease_micros": bindparam("p_lease_micros"),
    "lease_expires_at": DatabaseClock(),
    "started_at": DatabaseClock(),
}

insert_host = insert_or_ignore(hosts, _new_host, "p_host_id", "p_lease_micros")

select_host_locked = Statement(select(h.incarnation).where(_this_host).with_for_update(), "p_host_id")

update_host_claimed = Statement(
    update(hosts)
    .where(_this_host)
    .values(
        incarnation=h.incarnation + 1,
        lease_micros=bindparam("p_lease_micros"),
        lease_expires_at=DatabaseClock() + bindparam("p_lease_micros"),
        started_at=DatabaseClock(),
    ),
    "p_host_id",
    "p_lease_micros",
)

_PAYLOAD = ("p_payload", "p_payload_bytes", "p_payload_sha256", "p_now")
_failed: dict[str, Any] = {
    "state": "failed",
    "payload": bindparam("p_payload"),
    "payload_bytes": bindparam("p_payload_bytes"),
    "payload_sha256": bindparam("p_payload_sha256"),
    "recorded_at": bindparam("p_now"),
}

#: Fail the rows left pending by earlier incarnations of a host id.
update_earlier_incarnations_failed = Statement(
    update(observations)
    .where(
        o.state == "pending",
        o.host_id == bindparam("p_host_id"),
        o.incarnation < bindparam("p_incarnation"),
    )
    .values(**_failed),
    "p_host_id",
    "p_incarnation",
    *_PAYLOAD,
)

#: Fail the rows begun by stores without a host id.
update_anonymous_pending_failed = Statement(
    update(observations).where(o.state == "pending", o.host_id.is_(None)).values(**_failed), *_PAYLOAD
)

#: The lost hosts other than ``p_host_id``, locked; the lease re-checked after any wait.
select_lost_hosts_locked = Statement(
    select(h.host_id).where(_lost, h.host_id != bindparam("p_host_id")).order_by(h.host_id).with_for_update(),
    "p_host_id",
)
select_lost_hosts_locked_anonymous = Statement(
    select(h.host_id).where(_lost).order_by(h.host_id).with_for_update()
)

#: Fail a lost host's pending rows, if it is still lost (the lease checked again).
update_lost_host_pending_failed = Statement(
    update(observations)
    .where(
        o.state == "pending",
        o.host_id == bindparam("p_host_id"),
        exists(select(h.host_id).where(_this_host, _lost)),
    )
    .values(**_failed),
    "p_host_id",
    *_PAYLOAD,
)

#: Renew the lease of the current incarnation (no row: superseded).
update_lease_renewed = Statement(
    update(hosts).where(_this_incarnation).values(lease_expires_at=DatabaseClock() + h.lease_micros),
    "p_host_id",
    "p_incarnation",
)

#: End the lease of the current incarnation at once: the host is lost from now on.
update_lease_ended = Statement(
    update(hosts).where(_this_incarnation).values(lease_expires_at=DatabaseClock() - h.lease_micros - 1),
    "p_host_id",
    "p_incarnation",
)

_pending_of_host = (
    select(func.count())
    .where(o.state == "pending", o.host_id == h.host_id)
    .correlate(hosts)
    .scalar_subquery()
)

select_host_infos = Statement(
    select(h.host_id, h.incarnation, h.lease_expires_at, _lost, _pending_of_host).order_by(h.host_id)
)


# -- operations ---------------------------------------------------------------------------


def claim(db: Driver, now: int, host_id: str, lease_micros: int) -> tuple[int, int]:
    """Claim ``host_id``: next incarnation, a new lease, earlier incarnations' rows failed.

    Returns the new incarnation and how many generations it failed.
    """
    db.count(insert_host, (host_id, lease_micros))
    # FOR UPDATE: waits for the begins of the old incarnation in flight (they
    # hold KEY SHARE), so the UPDATE below, a statement later, sees their rows.
    (previous,) = db.first(select_host_locked, (host_id,))
    db.count(update_host_claimed, (host_id, lease_micros))
    incarnation = int(previous) + 1
    restarted = RESTARTED_PAYLOAD
    recovered = db.count(
        update_earlier_incarnations_failed,
        (host_id, incarnation, restarted.data, restarted.size, restarted.sha256, now),
    )
    return incarnation, recovered


def renew(db: Driver, now: int, host_id: str, incarnation: int) -> bool:
    """Renew the lease of ``incarnation``; ``False`` if a later incarnation superseded it."""
    return db.count(update_lease_renewed, (host_id, incarnation)) == 1


def end_lease(db: Driver, now: int, host_id: str, incarnation: int) -> bool:
    """End the lease of ``incarnation`` now (a clean close); ``False`` if superseded."""
    return db.count(update_lease_ended, (host_id, incarnation)) == 1


@dataclass(frozen=True, slots=True)
class Recovered:
    """What one ``fail_pending`` failed: the caller's own rows, and each lost host's.

    ``own`` counts the rows of the store's earlier incarnations (a store with a
    host id) or the rows begun without a host id (a store without); ``lost``
    maps each lost host whose rows were failed to how many.
    """

    own: int
    lost: dict[str, int]

    @property
    def total(self) -> int:
        """How many generations were failed, all told."""
        return self.own + sum(self.lost.values())


def fail_lost(db: Driver, now: int, host_id: str | None) -> dict[str, int]:
    """Fail the pending rows of every lost host but ``host_id``; return how many of each host."""
    if host_id is None:
        lost = db.all(select_lost_hosts_locked_anonymous)
    else:
        lost = db.all(select_lost_hosts_locked, (host_id,))
    failed: dict[str, int] = {}
    for (lost_id,) in lost:
        text = PreparedPayload(lost_text(lost_id).encode("utf-8"))
        count = db.count(update_lost_host_pending_failed, (lost_id, text.data, text.size, text.sha256, now))
        if count:
            failed[lost_id] = count
    return failed


def host_info(row: Any) -> HostInfo:
    """Return the HostInfo of a row of ``select_host_infos``."""
    host_id, incarnation, expires, lost, pending = row
    expires_at = from_micros(expires)
    assert expires_at is not None
    return HostInfo(host_id, int(incarnation), expires_at, not lost, int(pending or 0))


def host_infos(db: Driver, now: int) -> list[HostInfo]:
    """Return every host id the store has seen, in host id order."""
    return [host_info(row) for row in db.all(select_host_infos)]
