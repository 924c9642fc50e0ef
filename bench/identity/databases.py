"""Fresh, empty PostgreSQL databases for one benchmark run, dropped afterwards."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from sqlalchemy.engine import make_url


async def _admin(server_url: str, statements: list[str]) -> None:
    url = make_url(server_url)
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database=url.database
    )
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def fresh_databases(server_url: str | None, count: int) -> Iterator[list[str | None]]:
    """`count` SQLAlchemy URLs of new empty databases on `server_url` (any database of the server,
    e.g. `…/postgres`); without a server, `count` Nones (the benchmarks then use SQLite files)."""
    if not server_url:
        yield [None] * count
        return
    tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    names = [f"bench_identity_{tag}_{i}" for i in range(count)]
    asyncio.run(_admin(server_url, [f'CREATE DATABASE "{name}"' for name in names]))
    base = make_url(server_url)
    try:
        yield [base.set(database=name).render_as_string(hide_password=False) for name in names]
    finally:
        asyncio.run(_admin(server_url, [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in names]))
