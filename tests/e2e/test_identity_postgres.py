"""One-by-one resolution (`service.ingest`) on PostgreSQL decides exactly as bulk resolution does.

`test_identity_bulk.py` checks the equivalence on SQLite; `ingest` has PostgreSQL-only statement
shapes (block sizes, candidates and their records in one statement; a record's index rows in one
statement), so the same comparison runs here on fresh PostgreSQL databases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.test_identity_bulk import TIGHT, dataset, in_bulk, one_by_one, started, state
from tests.support.servers import PG_ADMIN_DSN, create_database, drop_database, sqlalchemy_url


@pytest.fixture
async def two_databases() -> AsyncIterator[tuple[str, str]]:
    names = [await create_database("idpg"), await create_database("idpg")]
    try:
        yield sqlalchemy_url(PG_ADMIN_DSN, names[0]), sqlalchemy_url(PG_ADMIN_DSN, names[1])
    finally:
        for name in names:
            await drop_database(name)


@pytest.mark.parametrize(("n", "seed", "chunk_size"), [(700, 3, 50), (300, 11, 7)])
async def test_ingest_on_postgres_equals_bulk(
    tmp_path: Path, two_databases: tuple[str, str], n: int, seed: int, chunk_size: int
) -> None:
    records, _ = dataset(n, seed)
    single_url, bulk_url = two_databases
    single = await started(tmp_path / "single", database_url=single_url, **TIGHT)
    bulk = await started(tmp_path / "bulk", database_url=bulk_url, **TIGHT)
    try:
        expected = await one_by_one(single, records)
        got = await in_bulk(bulk, records, chunk_size)
        before, after = await state(single), await state(bulk)
    finally:
        await single.stop()
        await bulk.stop()

    assert set(expected.outcomes) == {"created", "matched", "updated", "review"}
    assert got.outcomes == expected.outcomes
    assert got.errors == expected.errors
    assert after["partition"] == before["partition"]
    assert after["golden"] == before["golden"]
    assert after["reviews"] == before["reviews"]
    assert after["audit"] == before["audit"]
    assert after["events"] == before["events"]
    assert after["customers_without_records"] == before["customers_without_records"] == 0
