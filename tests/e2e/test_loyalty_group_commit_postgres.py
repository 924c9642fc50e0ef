"""The ledger's group commit on real PostgreSQL (`services.loyalty.group_commit`): many concurrent
callers, their postings committed together, each with its own outcome.

- 100 concurrent spends against a member who can afford exactly 7: exactly 7 succeed, the balance ends
  at 0, the books prove balanced, and the spends went in groups (fewer commits than postings);
- random earns and spends over a few members from many callers: every outcome is what applying them one
  by one in submission order gives, and so are the balances and the events' `balance_after`;
- one bad posting in a group (a reference posted before, an unknown or closed member) fails alone:
  the others of its group are committed.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from services.loyalty import ledger, programs
from services.loyalty.app import MIGRATIONS
from services.loyalty.domain import InsufficientPoints, LoyaltyRuleRefused
from services.loyalty.group_commit import GroupCommit
from services.loyalty.models import MESSAGING, Member, Program
from shared.contracts.loyalty import PointsEarned
from shared.db import create_engine, session_factory
from shared.errors import Conflict, NotFound
from shared.migrations import upgrade
from shared.uow import UnitOfWorkFactory

PROGRAM = {
    "id": "gc",
    "name": "Group commit",
    "timezone": "Europe/Paris",
    "points_per_unit": 1,
    "pending_days": 0,
    "expiry_policy": "end_of_month",
    "expiry_period": 12,
    "negative_policy": "never",
    "negative_limit": 0,
    "tiers": [],
    "settings": {},
}


class World:
    def __init__(self, uows: UnitOfWorkFactory) -> None:
        self.uows = uows
        self.program: Program
        self.members: list[str] = []

    async def enrol(self, count: int) -> list[str]:
        async with self.uows() as uow:
            program = await uow.session.get(Program, "gc")
            assert program is not None
            ids = []
            for _ in range(count):
                member, _created = await programs.enrol(uow.session, program, str(uuid.uuid4()))
                ids.append(member.id)
            await uow.commit()
        return ids

    async def balance(self, member_id: str) -> int:
        async with self.uows() as uow:
            return (await ledger.balances(uow.session, member_id))["available"]

    async def books(self) -> ledger.CheckReport:
        async with self.uows() as uow:
            return await ledger.check(uow.session)

    async def events(self, event_type: str) -> list[dict]:  # type: ignore[type-arg]
        async with self.uows() as uow:
            envelopes = (
                await uow.session.scalars(
                    select(MESSAGING.outbox.c.envelope)
                    .where(MESSAGING.outbox.c.type == event_type)
                    .order_by(MESSAGING.outbox.c.id)
                )
            ).all()
        return [e if isinstance(e, dict) else json.loads(e) for e in envelopes]


@pytest.fixture
async def world(pg_database: str) -> AsyncIterator[World]:
    await upgrade(pg_database, MIGRATIONS)
    engine = create_engine(pg_database, pool_size=8)
    uows = UnitOfWorkFactory(session_factory(engine), MESSAGING, source="/crm/loyalty")
    w = World(uows)
    async with uows() as uow:
        w.program = await programs.create_program(uow.session, dict(PROGRAM))
        await uow.commit()
    try:
        yield w
    finally:
        await engine.dispose()


async def test_hundred_concurrent_spends_exactly_seven_succeed(world: World) -> None:
    (member_id,) = await world.enrol(1)
    async with GroupCommit(world.uows, lanes=2) as group:
        for part in (3, 2, 2):  # several lots, so spends consume more than one
            await group.earn(world.program, member_id, part, reference=f"seed:{part}:{uuid.uuid4()}")
        outcomes = await asyncio.gather(
            *(group.spend(world.program, member_id, 1, reference=f"s:{i}") for i in range(100)),
            return_exceptions=True,
        )
        succeeded = [o for o in outcomes if isinstance(o, ledger.Posted)]
        refused = [o for o in outcomes if isinstance(o, InsufficientPoints)]
        assert len(succeeded) == 7
        assert len(refused) == 93
        assert group.batches < group.postings  # grouped: fewer commits than postings
    assert await world.balance(member_id) == 0
    balances_after = sorted(p.balance(member_id) for p in succeeded)
    assert balances_after == [0, 1, 2, 3, 4, 5, 6]
    report = await world.books()
    assert report.ok, report
    redeemed = await world.events("crm.loyalty.points_redeemed.v1")
    assert len(redeemed) == 7
    assert sorted(e["data"]["balance_after"] for e in redeemed) == balances_after


async def test_outcomes_are_those_of_submission_order(world: World) -> None:
    members = await world.enrol(5)
    rng = random.Random(11)
    submitted: list[tuple[str, str, int]] = []

    async with GroupCommit(world.uows, lanes=2, max_batch=16) as group:

        async def caller(n: int) -> list[tuple[int, object]]:
            results = []
            for k in range(12):
                member_id = rng.choice(members)
                kind = "earn" if rng.random() < 0.5 else "spend"
                points = rng.randint(1, 60)
                index = len(submitted)
                submitted.append((kind, member_id, points))  # the order the group sees them in
                method = group.earn if kind == "earn" else group.spend
                try:
                    outcome: object = await method(world.program, member_id, points, reference=f"{n}:{k}")
                except InsufficientPoints as refusal:
                    outcome = refusal
                results.append((index, outcome))
            return results

        per_caller = await asyncio.gather(*(caller(n) for n in range(24)))
        assert group.batches < group.postings
    outcomes = dict(item for results in per_caller for item in results)

    model = dict.fromkeys(members, 0)
    for index, (kind, member_id, points) in enumerate(submitted):
        outcome = outcomes[index]
        if kind == "earn":
            model[member_id] += points
        elif model[member_id] >= points:
            model[member_id] -= points
        else:
            assert isinstance(outcome, InsufficientPoints), (index, outcome)
            continue
        assert isinstance(outcome, ledger.Posted), (index, outcome)
        assert outcome.balance(member_id) == model[member_id], index
    for member_id in members:
        assert await world.balance(member_id) == model[member_id]
    report = await world.books()
    assert report.ok, report


async def test_a_bad_posting_fails_alone(world: World) -> None:
    good, closed = await world.enrol(2)
    async with world.uows() as uow:
        member = await uow.session.get(Member, closed)
        assert member is not None
        member.status = "closed"
        await uow.commit()
    async with GroupCommit(world.uows, lanes=1) as group:
        first = await group.earn(world.program, good, 50, reference="once")
        outcomes = await asyncio.gather(
            group.earn(world.program, good, 10, reference="a"),
            group.earn(world.program, good, 10, reference="once"),  # posted before
            group.earn(world.program, str(uuid.uuid4()), 10, reference="b"),  # no such member
            group.earn(world.program, closed, 10, reference="c"),  # not active
            group.earn(world.program, good, 10, reference="a2"),
            group.earn(world.program, good, 10, reference="a2"),  # twice in one group
            group.spend(world.program, good, 1_000, reference="d"),  # cannot afford
            group.spend(world.program, good, 5, reference="e"),
            return_exceptions=True,
        )
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == [
        "Posted",
        "Conflict",
        "NotFound",
        "LoyaltyRuleRefused",
        "Posted",
        "Conflict",
        "InsufficientPoints",
        "Posted",
    ]
    duplicate = outcomes[1]
    assert isinstance(duplicate, Conflict)
    assert duplicate.extensions["transaction_id"] == first.id
    assert isinstance(outcomes[2], NotFound)
    assert isinstance(outcomes[3], LoyaltyRuleRefused)
    assert await world.balance(good) == 50 + 10 + 10 - 5
    assert await world.balance(closed) == 0
    report = await world.books()
    assert report.ok, report
    assert len(await world.events("crm.loyalty.points_earned.v1")) == 3


async def test_events_carry_what_was_posted(world: World) -> None:
    (member_id,) = await world.enrol(1)
    before = datetime.now(UTC)
    async with GroupCommit(world.uows) as group:
        earned = await group.earn(
            world.program, member_id, 40, reference="buy-1", qualifying=40, reason="purchase"
        )
        spent = await group.spend(world.program, member_id, 15, reference="pos-1")
    (event,) = await world.events("crm.loyalty.points_earned.v1")
    async with world.uows() as uow:
        member = await uow.session.get(Member, member_id)
        assert member is not None
        keys = (await uow.session.scalars(select(MESSAGING.outbox.c.key))).all()
    # The envelope is the one `publish` would write: its customer id (subject, data, Kafka key) and
    # balance were filled in by the posting statement.
    assert keys == [member.customer_id, member.customer_id]
    assert event["subject"] == member.customer_id
    assert event["data"]["customer_id"] == member.customer_id
    assert event["type"] == "crm.loyalty.points_earned.v1"
    assert event["source"] == "/crm/loyalty"
    PointsEarned.model_validate(event["data"])
    assert event["data"]["transaction_id"] == earned.id
    assert event["data"]["points"] == 40
    assert event["data"]["qualifying"] == 40
    assert event["data"]["reason"] == "purchase"
    assert event["data"]["balance_after"] == 40
    assert datetime.fromisoformat(event["data"]["occurred_at"]) >= before
    (redeemed,) = await world.events("crm.loyalty.points_redeemed.v1")
    assert redeemed["data"]["transaction_id"] == spent.id
    assert redeemed["data"]["balance_after"] == 25
    assert spent.balance(member_id, "qualifying") is None  # a spend does not move qualifying points
    async with world.uows() as uow:
        assert (await ledger.balances(uow.session, member_id))["qualifying"] == 40
