"""The store's statements compiled once per dialect and run on the DB-API connection.

SQLAlchemy stays the source of every statement (built with Core in
``statements.py``), of the engine, the pool and the dialects. What it costs on
each execution (cache lookup of the compiled form, parameter processing, the
result object) is more than SQLite takes to run one of these short
statements, so each :class:`Statement` is compiled once per dialect into its
SQL string and the order of its parameters, and runs on the driver's cursor
through a :class:`Driver`.

The store passes only values the drivers take as they are (``str``, ``int``,
``bytes``, ``None``) and reads rows as plain tuples (booleans are 0/1 on SQLite,
payloads are bytes), so SQLAlchemy's type processing has nothing to add. A
driver error is raised as SQLAlchemy's own ``DBAPIError`` subclass (the one
``translate.py`` maps), after invalidating the connection when the dialect
says it was lost, exactly as SQLAlchemy's own execution path does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

__all__ = ["Driver", "Statement"]

Arranger = Callable[[tuple[Any, ...]], Any]


class _Compiled:
    """One statement compiled for one dialect: its SQL and how to lay out its arguments."""

    __slots__ = ("arrange", "sql")

    def __init__(self, sql: str, arrange: Arranger | None) -> None:
        self.sql = sql
        #: ``None`` when the argument tuple is already the driver's parameters.
        self.arrange = arrange


def _constant(clause: Any, name: str, compiled: Any, dialect: Dialect) -> Any:
    """Return the driver value of a bind parameter that holds a constant of the statement."""
    bind = compiled.binds[name]
    value = bind.effective_value
    processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
    return value if processor is None else processor(value)


def _compile(clause: ClauseElement, names: tuple[str, ...], dialect: Dialect) -> _Compiled:
    compiled: Any = clause.compile(dialect=dialect)
    bound = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
    unknown = set(names) - set(bound)
    if unknown:
        raise AssertionError(f"{clause!r} has no parameters {sorted(unknown)}")
    constants = {name: _constant(clause, name, compiled, dialect) for name in bound if name not in names}
    if compiled.positional:
        values = (*names, *constants)
        indices = tuple(values.index(name) for name in bound)
        constant_values = tuple(constants.values())
        if indices == tuple(range(len(names))) and not constants:
            return _Compiled(compiled.string, None)
        if len(indices) == 1:
            (index,) = indices
            return _Compiled(compiled.string, lambda args: ((args + constant_values)[index],))
        pick = itemgetter(*indices)
        return _Compiled(compiled.string, lambda args: pick(args + constant_values))
    return _Compiled(compiled.string, lambda args: {**dict(zip(names, args, strict=True)), **constants})


class Statement:
    """A Core statement with the names of its parameters, in the order an operation passes them.

    ``clause`` is one statement, or one per dialect name where the dialects
    need different constructs (``INSERT ... ON CONFLICT``). Compiled on first
    use for each dialect (a dialect class and paramstyle give the same SQL for
    these statements, whatever engine they belong to).
    """

    __slots__ = ("_compiled", "clause", "names")

    def __init__(self, clause: ClauseElement | Mapping[str, ClauseElement], *names: str) -> None:
        """Name the statement's bind parameters in the order its callers give their values."""
        self.clause = clause
        self.names = names
        self._compiled: dict[tuple[type[Dialect], str], _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        """Return the statement compiled for ``dialect``, compiling it the first time."""
        key = (type(dialect), dialect.paramstyle)
        found = self._compiled.get(key)
        if found is None:
            clause = self.clause[dialect.name] if isinstance(self.clause, Mapping) else self.clause
            found = self._compiled[key] = _compile(clause, self.names, dialect)
        return found


class Driver:
    """Statements on the DB-API connection under a SQLAlchemy ``Connection``, on one cursor.

    On SQLite the store keeps a driver with each idle connection
    (``engine.IdleConnections``) and calls :meth:`renew` before each
    transaction; a call without a kept one makes its own and closes it.
    """

    __slots__ = (
        "compiled_for",
        "conn",
        "cursor",
        "dbapi_connection",
        "dialect",
        "error",
        "one_statement",
        "traced",
    )

    def __init__(self, conn: Connection) -> None:
        """Open a cursor on the driver connection that ``conn`` holds."""
        self.conn = conn
        self.dialect = conn.dialect
        #: Which compiled form of a statement this connection runs (see ``Statement.compiled``).
        self.compiled_for = (type(self.dialect), self.dialect.paramstyle)
        #: The driver's base exception class: only these are wrapped.
        self.error: type[Exception] = self.dialect.loaded_dbapi.Error
        #: Whether the common path of an operation runs as one statement in autocommit.
        self.one_statement = self.dialect.name == "postgresql"
        self.traced = False
        self.renew()
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        self.dbapi_connection: Any = dbapi_connection
        try:
            self.cursor: Any = dbapi_connection.cursor()
        except self.error as exc:
            raise self._wrap(exc, None, None) from exc

    def renew(self) -> Driver:
        """Get ready for the next transaction: see whether anyone listens to cursor events now."""
        # SQLAlchemy's cursor events still fire for whoever listens (tests, tracing),
        # even one that began listening after this driver was made. (The engine's
        # dispatch: listeners are added to engines, never to one connection, and
        # it is cheaper to ask than the connection's joined one.)
        dispatch = self.conn.engine.dispatch
        self.traced = bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)
        return self

    def _run(self, statement: Statement, args: tuple[Any, ...]) -> Any:
        compiled = statement._compiled.get(self.compiled_for) or statement.compiled(self.dialect)
        params = args if compiled.arrange is None else compiled.arrange(args)
        cursor = self.cursor
        if self.traced:
            self.conn.dispatch.before_cursor_execute(self.conn, cursor, compiled.sql, params, None, False)
        try:
            cursor.execute(compiled.sql, params)
        except self.error as exc:
            raise self._wrap(exc, compiled.sql, params) from exc
        if self.traced:
            self.conn.dispatch.after_cursor_execute(self.conn, cursor, compiled.sql, params, None, False)
        return cursor

    def count(self, statement: Statement, args: tuple[Any, ...]) -> int:
        """Run a data-changing statement and return how many rows it changed."""
        return int(self._run(statement, args).rowcount)

    def first(self, statement: Statement, args: tuple[Any, ...]) -> Any:
        """Run a query and return its first row (a tuple), or ``None``."""
        cursor = self._run(statement, args)
        try:
            return cursor.fetchone()
        except self.error as exc:
            raise self._wrap(exc, None, None) from exc

    def first_list(self, statement: Statement, args: tuple[Any, ...]) -> list[Any] | None:
        """Run a query and return its first row as a list (an operation may take values out), or ``None``."""
        row = self.first(statement, args)
        return None if row is None else list(row)

    def all(self, statement: Statement, args: tuple[Any, ...] = ()) -> Sequence[Any]:
        """Run a query and return all its rows."""
        cursor = self._run(statement, args)
        try:
            return list(cursor.fetchall())
        except self.error as exc:
            raise self._wrap(exc, None, None) from exc

    def execute(self, sql: str) -> None:
        """Run a statement of transaction control (``BEGIN IMMEDIATE``, ``COMMIT``)."""
        try:
            self.cursor.execute(sql)
        except self.error as exc:
            raise self._wrap(exc, sql, None) from exc

    def commit(self) -> None:
        """Commit the driver connection's transaction."""
        try:
            self.dbapi_connection.commit()
        except self.error as exc:
            raise self._wrap(exc, "COMMIT", None) from exc

    def set_autocommit(self, on: bool) -> None:
        """Switch the driver's autocommit (a client-side setting of psycopg: no round trip).

        Switching it off after a statement that failed may fail too (a lost
        connection): then the connection is invalidated, never reused, and the
        statement's own error is the one that propagates.
        """
        try:
            self.dbapi_connection.autocommit = on
        except self.error as exc:
            if on:
                raise self._wrap(exc, None, None) from exc
            self._invalidate(exc)

    def rollback(self) -> None:
        """Roll back whatever is open; a connection that cannot is invalidated, never reused."""
        try:
            self.dbapi_connection.rollback()
        except Exception as exc:
            self._invalidate(exc)

    def close(self) -> None:
        """Close the cursor (its connection stays open); the driver is not used afterwards."""
        try:
            self.cursor.close()
        except Exception as exc:
            self._invalidate(exc)

    def _invalidate(self, exc: BaseException) -> None:
        """Mark the connection broken (once): the pool discards it, it is never reused."""
        if not self.conn.invalidated:
            self.conn.invalidate(exc)

    def _wrap(self, exc: Any, sql: str | None, params: Any) -> Exception:
        """Return SQLAlchemy's exception for a driver error, as its own execution would raise it."""
        lost = self.dialect.is_disconnect(exc, self.dbapi_connection, self.cursor)
        if lost:
            self._invalidate(exc)
        error: Exception = DBAPIError.instance(
            sql,
            params,
            exc,
            self.error,
            hide_parameters=True,  # parameters hold payloads: never put them in a message
            connection_invalidated=lost,
            dialect=self.dialect,
        )
        return error
