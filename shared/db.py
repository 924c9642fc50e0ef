"""Persistence helpers: async engines for PostgreSQL (asyncpg) and SQLite (aiosqlite), one per service.

Each service owns its database; nothing here lets one service see another's tables. SQLite (the
embedded mode) gets WAL, a busy timeout and `BEGIN IMMEDIATE` transactions so that concurrent
writers wait for each other instead of failing, and savepoints work as on PostgreSQL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, DateTime, Dialect, MetaData, Table, TypeDecorator, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    """A metadata with stable constraint names, so Alembic migrations are reproducible."""
    return MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on PostgreSQL and on SQLite alike.

    SQLite has no time zones: values are stored as UTC wall-clock text (so they sort and compare
    correctly) and come back marked UTC. Naive datetimes are refused: their zone is unknowable.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give a timezone-aware value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ServiceBase(DeclarativeBase):
    """Declarative base each service subclasses with its own metadata (`metadata = new_metadata()`)."""

    __abstract__ = True


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    echo: bool = False,
    statement_cache_size: int | None = None,
) -> AsyncEngine:
    """An engine for `url`: SQLite made transactional, or a PostgreSQL pool (`pool_size` kept, and
    `max_overflow` more — as many again by default — opened for a burst and closed after it; idle
    connections pinged; `statement_cache_size` prepared statements kept per connection, default
    `PREPARED_STATEMENTS`)."""
    if is_sqlite(url):
        path = make_url(url).database
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 60})
        _make_sqlite_transactional(engine)
        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        connect_args={
            "prepared_statement_cache_size": PREPARED_STATEMENTS
            if statement_cache_size is None
            else statement_cache_size
        },
    )
    _ping_idle_connections(engine, PING_AFTER_IDLE_SECONDS)
    return engine


# Prepared statements kept per PostgreSQL connection (SQLAlchemy's asyncpg adapter keeps 100 by default;
# segmentation's consumer used ~500 distinct texts before its batch statements were `padded`).
PREPARED_STATEMENTS = 250

# A pooled connection that sat unused this long is checked (a round trip) before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_idle_connections(engine: AsyncEngine, idle_seconds: float) -> None:
    """Pessimistic disconnect handling, without its price under load.

    SQLAlchemy's `pool_pre_ping` costs every transaction a round trip (three with asyncpg: BEGIN,
    `;`, ROLLBACK) — a fifth of a short write's statements. After a database restart or a dropped
    connection, the stale connections are the ones that sat in the pool while it happened, so only
    those idle for `idle_seconds` are pinged; one that fails is replaced on the spot (the pool
    reconnects it). A connection used again within the second is handed out as it is: if the
    database went away in that second, the statement fails as a disconnect, SQLAlchemy recycles
    the whole pool, and the caller's retry (consumers) or the client's (HTTP 503) gets a new one.
    """

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.DisconnectionError(f"pooled connection failed its ping: {error}") from error


def _make_sqlite_transactional(engine: AsyncEngine) -> None:
    """Let SQLAlchemy, not the driver, emit BEGIN (so SAVEPOINT works) and take the write lock up front."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


COPY_THRESHOLD = 32

_T = TypeVar("_T")


def padded(items: Sequence[_T]) -> list[_T]:
    """`items` with its last item repeated up to the next power of two (1, 2, 4, … 512, …).

    A statement whose SQL grows with its parameters — an IN list, a multi-row VALUES — has one text per
    length, and each text is one more prepared statement per connection: prepared again whenever it
    falls out of the cache, kept in the server's memory while it stays. Padded, a batch of any length
    has one of ~10 texts. Only where a repeat changes nothing: IN lists, and INSERT … ON CONFLICT DO
    NOTHING (the repeat conflicts with the row just inserted and is skipped; RETURNING omits it)."""
    items = list(items)
    if items:
        items.extend([items[-1]] * ((1 << (len(items) - 1).bit_length()) - len(items)))
    return items


def dialect_insert(session: AsyncSession) -> Any:
    """The INSERT construct of the session's dialect, for ON CONFLICT clauses (PostgreSQL or SQLite)."""
    from sqlalchemy.dialects import postgresql, sqlite

    bind = session.bind
    return postgresql.insert if bind is not None and bind.dialect.name == "postgresql" else sqlite.insert


async def insert_rows(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many rows (dicts keyed by column name, all with the same keys) in the session's
    transaction: by COPY on PostgreSQL (several times faster than INSERT for thousands of rows),
    by executemany elsewhere. JSON columns are encoded here; uniqueness violations raise
    SQLAlchemy's `IntegrityError`, as an INSERT would."""
    if not rows:
        return
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        await session.execute(table.insert(), list(rows))
        return
    import orjson

    columns = list(rows[0])
    encoded = [i for i, name in enumerate(columns) if isinstance(table.c[name].type, JSON)]
    records: list[list[Any]] = []
    for row in rows:
        values = [row[name] for name in columns]
        for i in encoded:
            values[i] = orjson.dumps(values[i]).decode()
        records.append(values)
    if len(rows) <= COPY_THRESHOLD:
        # A few rows: COPY would cost a type lookup and two more round trips. One INSERT … SELECT
        # FROM unnest(one array per column): one text per table and columns (prepared once per
        # connection, whatever the row count), the arrays encoded by asyncpg in C. SQLAlchemy's
        # executemany ("insertmanyvalues") cost ~25 µs of Python a row, and a text per row count.
        sql = _unnest_insert(connection.dialect, table, tuple(columns))
        await connection.exec_driver_sql(sql, tuple(list(column) for column in zip(*records, strict=True)))
        return
    import asyncpg
    from sqlalchemy.exc import IntegrityError

    # The first statement of a transaction goes through SQLAlchemy, which begins it lazily: COPY sent
    # straight to asyncpg before that would run outside the session's transaction.
    await connection.exec_driver_sql("SELECT 1")
    raw = (await connection.get_raw_connection()).driver_connection
    assert raw is not None
    try:
        await raw.copy_records_to_table(
            table.name, records=records, columns=columns, schema_name=table.schema
        )
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(f"COPY {table.name}", None, exc) from exc


_UNNEST_INSERTS: dict[tuple[str, tuple[str, ...]], str] = {}


def _unnest_insert(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str:
    """`INSERT INTO table (columns) SELECT … FROM unnest($1::type[], …) WITH ORDINALITY ORDER BY n`:
    the rows in the arrays' order (identity and serial columns numbered in that order)."""
    key = (table.fullname, columns)
    sql = _UNNEST_INSERTS.get(key)
    if sql is None:
        preparer = dialect.identifier_preparer
        types = [table.c[name].type.compile(dialect=dialect) for name in columns]
        names = ", ".join(preparer.quote(name) for name in columns)
        aliases = ", ".join(f"c{i}" for i in range(len(columns)))
        arrays = ", ".join(f"CAST(${i + 1} AS {kind}[])" for i, kind in enumerate(types))
        sql = (
            f"INSERT INTO {preparer.format_table(table)} ({names}) SELECT {aliases} "
            f"FROM unnest({arrays}) WITH ORDINALITY AS u({aliases}, n) ORDER BY n"
        )
        _UNNEST_INSERTS[key] = sql
    return sql


# PostgreSQL's COPY text format: one line per row, columns separated by tabs, and in each value a
# backslash, tab, newline or carriage return written as a backslash escape (`\N` would be NULL).
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: str) -> str:
    """`value` as a column of a line of COPY text (values without special characters, nearly all of
    them, come back as they are). A NUL character, which no PostgreSQL text can hold, is refused."""
    if "\x00" in value:
        raise ValueError("PostgreSQL text cannot hold a NUL character")
    if _COPY_SPECIAL.search(value) is None:
        return value
    return value.translate(_COPY_ESCAPES)


class CreateTempTableAs(Executable, ClauseElement):
    """`CREATE TEMPORARY TABLE name AS <select>` (PostgreSQL), the select's parameters bound as usual.

    Unlike an INSERT … SELECT, or a SELECT inside a statement that writes, PostgreSQL may run this
    SELECT with parallel workers: a set computed over millions of rows is made with every core, then
    joined by the statement that writes."""

    inherit_cache = False

    def __init__(self, name: str, query: Any) -> None:
        self.name = name
        self.query = query


@compiles(CreateTempTableAs)
def _create_temp_table_as(element: CreateTempTableAs, compiler: Any, **kw: Any) -> str:
    return f"CREATE TEMPORARY TABLE {element.name} AS {compiler.process(element.query, **kw)}"
