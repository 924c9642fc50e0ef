"""`golden_member_ids` (one recursive statement) on SQLite and PostgreSQL: from any id of a merge tree it
answers the survivor first and every id merged into it, nearest first; an unknown id answers itself; a
merge chain longer than `MAX_CHAIN` is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from services.identity.app import MIGRATIONS
from services.identity.models import CustomerRow
from services.identity.repository import MAX_CHAIN, golden_member_ids
from shared.migrations import upgrade
from tests.support.servers import PG_ADMIN_DSN, create_database, drop_database, sqlalchemy_url


@pytest.fixture(params=["sqlite", "postgresql"])
async def session(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncSession]:
    database = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}"
    else:
        database = await create_database("identity")
        url = sqlalchemy_url(PG_ADMIN_DSN, database)
    await upgrade(url, Path(MIGRATIONS))
    engine = create_async_engine(url)
    try:
        async with async_sessionmaker(engine)() as session:
            yield session
            await session.rollback()
    finally:
        await engine.dispose()
        if database is not None:
            await drop_database(database)


def _customer(customer_id: str, merged_into: str | None = None) -> CustomerRow:
    now = datetime.now(UTC)
    return CustomerRow(
        id=customer_id,
        kind="person",
        status="merged" if merged_into else "customer",
        merged_into=merged_into,
        created_at=now,
        updated_at=now,
        version=1,
    )


async def test_every_id_of_a_merge_tree_answers_the_survivor_then_the_merged_ids_nearest_first(
    session: AsyncSession,
) -> None:
    # c <- b <- a, c <- d, and a loner e
    session.add_all(
        [_customer("c"), _customer("b", "c"), _customer("a", "b"), _customer("d", "c"), _customer("e")]
    )
    await session.flush()
    for asked in ("a", "b", "c", "d"):
        assert await golden_member_ids(session, asked) == ["c", "b", "d", "a"], asked
    assert await golden_member_ids(session, "e") == ["e"]
    assert await golden_member_ids(session, "nobody") == ["nobody"]


async def test_a_chain_longer_than_max_chain_is_refused(session: AsyncSession) -> None:
    ids = [f"x{i:03d}" for i in range(MAX_CHAIN + 2)]
    session.add(_customer(ids[-1]))
    session.add_all(_customer(ids[i], ids[i + 1]) for i in range(len(ids) - 1))
    await session.flush()
    with pytest.raises(RuntimeError, match="too long"):
        await golden_member_ids(session, ids[0])
    # from the middle, the survivor is within reach
    middle = await golden_member_ids(session, ids[10])
    assert middle[0] == ids[-1]
    assert len(middle) == len(ids)
