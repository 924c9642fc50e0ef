"""Loyalty test helpers: a loyalty runtime on a fresh database (SQLite file or PostgreSQL), programs,
members and points at chosen instants, the events it wrote to its outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from services.loyalty import ledger, programs
from services.loyalty.app import build
from services.loyalty.models import Member, Program, metadata
from services.loyalty.settings import load_settings
from shared.messaging.bus import InProcessBus
from shared.runtime import ServiceRuntime
from tests.support.servers import PG_ADMIN_DSN, create_database, drop_database, sqlalchemy_url


@asynccontextmanager
async def database(tmp_path: Path, backend: str) -> AsyncIterator[str]:
    """A fresh database's URL: a SQLite file under `tmp_path`, or a new PostgreSQL database."""
    if backend == "postgresql":
        name = await create_database("loyalty")
        try:
            yield sqlalchemy_url(PG_ADMIN_DSN, name)
        finally:
            await drop_database(name)
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'loyalty.db'}"


@asynccontextmanager
async def loyalty_runtime(url: str) -> AsyncIterator[ServiceRuntime]:
    """The loyalty service on `url`, its tables created from the models (not started: no relay, no
    background jobs — tests run the passes themselves)."""
    runtime = build(load_settings(database_url=url, run_migrations=False), bus=InProcessBus())
    async with runtime.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield runtime
    finally:
        await runtime.engine.dispose()


def client(runtime: ServiceRuntime) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=runtime.app), base_url="http://loyalty", timeout=30
    )


async def make_program(runtime: ServiceRuntime, **values: Any) -> Program:
    defaults: dict[str, Any] = {
        "id": "club",
        "name": "Club",
        "timezone": "UTC",
        "points_per_unit": 1,
        "pending_days": 0,
        "expiry_policy": "never",
        "expiry_period": None,
        "negative_policy": "never",
        "negative_limit": 0,
        "expiring_notice_days": 30,
        "tiers": [],
        "settings": {},
    }
    async with runtime.uow() as uow:
        program = await programs.create_program(uow.session, {**defaults, **values})
        await uow.commit()
    return program


async def enrol(runtime: ServiceRuntime, program_id: str, customer_id: str, *, now: datetime) -> Member:
    async with runtime.uow() as uow:
        program = await programs.get_program(uow.session, program_id)
        member, _ = await programs.enrol(uow.session, program, customer_id, now=now)
        await uow.commit()
    return member


async def earn(
    runtime: ServiceRuntime, member_id: str, points: int, *, now: datetime, reference: str
) -> ledger.Posted:
    async with runtime.uow() as uow:
        member = await programs.get_member(uow.session, member_id)
        program = await programs.get_program(uow.session, member.program_id)
        posted = await ledger.earn(uow.session, program, member, points, reference=reference, now=now)
        await uow.commit()
    return posted


async def spend(
    runtime: ServiceRuntime, member_id: str, points: int, *, now: datetime, reference: str
) -> ledger.Posted:
    async with runtime.uow() as uow:
        member = await programs.get_member(uow.session, member_id)
        program = await programs.get_program(uow.session, member.program_id)
        posted = await ledger.spend(uow.session, program, member, points, reference=reference, now=now)
        await uow.commit()
    return posted


async def balances(runtime: ServiceRuntime, member_id: str) -> dict[str, int]:
    async with runtime.uow() as uow:
        return await ledger.balances(uow.session, member_id)


async def derived(runtime: ServiceRuntime, account_id: str) -> int:
    async with runtime.uow() as uow:
        return await ledger.derived_balance(uow.session, account_id)


async def books_ok(runtime: ServiceRuntime) -> ledger.CheckReport:
    async with runtime.uow() as uow:
        return await ledger.check(uow.session)


async def events(runtime: ServiceRuntime, event_type: str) -> list[dict[str, Any]]:
    """The payloads of the events of `event_type` in the loyalty outbox, oldest first."""
    outbox = runtime.tables.outbox
    async with runtime.uow() as uow:
        rows = (
            await uow.session.execute(
                select(outbox.c.envelope).where(outbox.c.type == event_type).order_by(outbox.c.id)
            )
        ).scalars()
        return [dict(envelope["data"]) for envelope in rows]


async def member_row(runtime: ServiceRuntime, member_id: str) -> Member:
    async with runtime.uow() as uow:
        member = await uow.session.scalar(select(Member).where(Member.id == member_id))
        assert member is not None
        return member
