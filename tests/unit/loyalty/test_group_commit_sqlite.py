"""The ledger's group commit on SQLite (the embedded mode, no `loyalty_post`): the same API, each
posting in its own transaction through the ORM path, the same outcomes and events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from services.loyalty import ledger, programs
from services.loyalty.domain import InsufficientPoints, LoyaltyRuleRefused
from services.loyalty.group_commit import GroupCommit
from services.loyalty.models import MESSAGING, Program, metadata
from shared.db import create_engine, session_factory
from shared.errors import Conflict
from shared.uow import UnitOfWorkFactory


@pytest.fixture
async def uows(tmp_path: Path) -> AsyncIterator[UnitOfWorkFactory]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'loyalty.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    factory = UnitOfWorkFactory(session_factory(engine), MESSAGING, source="/crm/loyalty")
    async with factory() as uow:
        await programs.create_program(
            uow.session,
            {
                "id": "p",
                "name": "P",
                "timezone": "UTC",
                "expiry_policy": "never",
                "tiers": [],
                "settings": {},
            },
        )
        await uow.commit()
    try:
        yield factory
    finally:
        await engine.dispose()


async def test_concurrent_spends_on_the_orm_path(uows: UnitOfWorkFactory) -> None:
    async with uows() as uow:
        program = await uow.session.get(Program, "p")
        assert program is not None
        member, _ = await programs.enrol(uow.session, program, str(uuid.uuid4()))
        await uow.commit()
    async with GroupCommit(uows) as group:
        await group.earn(program, member.id, 3, reference="seed")
        outcomes = await asyncio.gather(
            *(group.spend(program, member.id, 1, reference=f"s:{i}") for i in range(10)),
            group.earn(program, member.id, 5, reference="seed"),  # posted before
            group.spend(program, member.id, 0, reference="zero"),
            return_exceptions=True,
        )
    spends = outcomes[:10]
    assert sum(isinstance(o, ledger.Posted) for o in spends) == 3
    assert sum(isinstance(o, InsufficientPoints) for o in spends) == 7
    assert isinstance(outcomes[10], Conflict)
    assert isinstance(outcomes[11], LoyaltyRuleRefused)
    async with uows() as uow:
        assert (await ledger.balances(uow.session, member.id))["available"] == 0
        assert (await ledger.check(uow.session)).ok
        types = (await uow.session.scalars(select(MESSAGING.outbox.c.type))).all()
    assert sorted(types) == ["crm.loyalty.points_earned.v1"] + ["crm.loyalty.points_redeemed.v1"] * 3
