"""`crm loyalty check` and `crm loyalty expire` against the loyalty database (migrated by the command):
sound books exit 0; a cached balance tampered with by a raw UPDATE exits 1 naming the account; the
expire command releases pending points and expires due ones in one run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from services.cli import app
from services.loyalty import ledger
from services.loyalty.app import build
from services.loyalty.settings import load_settings
from shared.messaging.bus import InProcessBus
from tests.support.loyalty import balances, earn, enrol, make_program
from tests.support.servers import PG_ADMIN_DSN, create_database, drop_database, sqlalchemy_url

T0 = datetime(2026, 1, 10, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("CRM_VAR_DIR", str(tmp_path))
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'loyalty.db'}"
        return
    name = asyncio.run(create_database("loyaltycli"))
    url = sqlalchemy_url(PG_ADMIN_DSN, name)
    monkeypatch.setenv("CRM_LOYALTY_DATABASE_URL", url)
    yield url
    asyncio.run(drop_database(name))


async def _populate(url: str) -> str:
    runtime = build(load_settings(database_url=url, run_migrations=False), bus=InProcessBus())
    try:
        await make_program(runtime, pending_days=5, expiry_policy="after_days", expiry_period=30)
        one = await enrol(runtime, "club", "c-1", now=T0)
        two = await enrol(runtime, "club", "c-2", now=T0)
        await earn(runtime, one.id, 120, now=T0, reference="buy:1")
        await earn(runtime, two.id, 80, now=datetime(2026, 1, 20, tzinfo=UTC), reference="buy:2")
        return one.id
    finally:
        await runtime.engine.dispose()


async def _sql(url: str, statement: str) -> None:
    runtime = build(load_settings(database_url=url, run_migrations=False), bus=InProcessBus())
    try:
        async with runtime.engine.begin() as conn:
            await conn.execute(text(statement))
    finally:
        await runtime.engine.dispose()


async def _balances(url: str, member_id: str) -> dict[str, int]:
    runtime = build(load_settings(database_url=url, run_migrations=False), bus=InProcessBus())
    try:
        return await balances(runtime, member_id)
    finally:
        await runtime.engine.dispose()


def test_check_proves_the_books_and_names_a_tampered_account(database_url: str) -> None:
    runner = CliRunner()
    empty = runner.invoke(app, ["loyalty", "check"])  # migrates the empty database first
    assert empty.exit_code == 0, empty.output
    member_id = asyncio.run(_populate(database_url))

    sound = runner.invoke(app, ["loyalty", "check"])
    assert sound.exit_code == 0, sound.output
    assert "OK" in sound.output
    as_json = runner.invoke(app, ["loyalty", "check", "--json"])
    report = json.loads(as_json.output.strip().splitlines()[-1])
    assert report["ok"] is True
    assert report["total"] == 0

    account = ledger.member_account(member_id, "pending")
    asyncio.run(_sql(database_url, f"UPDATE accounts SET balance = balance + 7 WHERE id = '{account}'"))
    broken = runner.invoke(app, ["loyalty", "check"])
    assert broken.exit_code == 1, broken.output
    assert "WRONG" in broken.output
    assert f"drifted account {account}: cached balance 127, sum of entries 120" in broken.output
    report = json.loads(runner.invoke(app, ["loyalty", "check", "--json"]).output.strip().splitlines()[-1])
    assert report["drifted_accounts"] == [[account, 127, 120]]


def test_expire_runs_the_release_and_expiry_passes(database_url: str) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["loyalty", "check"]).exit_code == 0
    member_id = asyncio.run(_populate(database_url))

    released = runner.invoke(app, ["loyalty", "expire", "--now", "2026-01-16T00:00:00Z"])
    assert released.exit_code == 0, released.output
    assert asyncio.run(_balances(database_url, member_id))["available"] == 120
    expired = runner.invoke(app, ["loyalty", "expire", "--now", "2026-02-10T00:00:00+00:00"])
    assert expired.exit_code == 0, expired.output
    assert "expiry" in expired.output
    assert asyncio.run(_balances(database_url, member_id))["available"] == 0
    assert runner.invoke(app, ["loyalty", "check"]).exit_code == 0
    naive = runner.invoke(app, ["loyalty", "expire", "--now", "2026-02-10T00:00:00"])
    assert naive.exit_code != 0


def test_help_lists_the_loyalty_commands() -> None:
    result = CliRunner().invoke(app, ["loyalty", "--help"])
    assert result.exit_code == 0
    assert "check" in result.output
    assert "expire" in result.output
