"""Group commit: single postings from many concurrent callers, committed together.

A caller that posts one earn or spend at a time in its own database transaction pays a round trip for
the member read, the `loyalty_post` call, BEGIN and COMMIT — and, in Python, a session and the ORM
around each. With many callers at once (a point-of-sale fleet, a partner's accruals, a load test) that
per-transaction work, not the ledger, is the limit. `GroupCommit` queues the postings and a worker
writes whatever has queued up as one database transaction: every posting one `loyalty_post` call of
one statement (in arrival order), which also reads and checks each member, their `points_earned` /
`points_redeemed` events in one outbox insert, one COMMIT. Each caller's `await` returns only after
that commit, with its own outcome.

What each posting keeps of its own:

* **Atomicity and refusal.** Every `loyalty_post` call is a whole ledger transaction or nothing: a spend
  its member cannot afford writes nothing and raises `InsufficientPoints` for that caller alone, while
  the others of the batch commit. A member that does not exist, is in another program or is not active
  is refused (404 / `member.active`) before anything is written.
* **Order.** Postings of one member are applied in the order they were submitted: a member belongs to
  one lane (a hash of its id), each lane one queue and one worker. Lanes never share a member, so their
  transactions never wait on each other's account rows (no deadlock between them), and two lanes let
  PostgreSQL use two cores while Python prepares the next batch.
* **Failure isolation.** If the batch's statement fails (a reference already posted, a deadlock with
  another writer, a lost connection), nothing of it was committed, and each of its postings is retried
  alone in its own transaction, so one bad posting fails only its own caller. A reference posted before
  is a 409 naming the existing transaction.
* **Durability.** A posting is acknowledged after COMMIT (PostgreSQL's `synchronous_commit` as
  configured). A caller cancelled while waiting may still see its posting committed: the reference
  identifies it.

On a database without `loyalty_post` (SQLite, the embedded mode) the same API posts each posting in its
own transaction through the ORM path.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.loyalty import ledger
from services.loyalty.domain import InsufficientPoints, LoyaltyRuleRefused
from services.loyalty.models import LedgerTransaction, Member, Program
from shared.contracts.loyalty import PointsEarned, PointsRedeemed
from shared.errors import Conflict, NotFound
from shared.events import EventPayload
from shared.uow import UnitOfWork


@dataclass(slots=True)
class _Request:
    kind: str  # earn | spend
    program: Program
    member_id: str
    points: int
    reference: str
    options: dict[str, Any]
    future: asyncio.Future[ledger.Posted]
    member: Member | ledger.MemberRef | None = None
    call: ledger.PreparedCall | None = None
    posted: ledger.Posted | None = None
    error: BaseException | None = field(default=None, repr=False)


class GroupCommit:
    """Postings from concurrent callers committed in groups (see the module's text).

    `uows` makes a fresh unit of work (loyalty's database and outbox). Use as an async context manager,
    or call `close()`, which waits for what was queued."""

    def __init__(self, uows: Callable[[], UnitOfWork], *, lanes: int = 2, max_batch: int = 256) -> None:
        if lanes < 1 or max_batch < 1:
            raise ValueError("lanes and max_batch must be at least 1")
        self._uows = uows
        self._max_batch = max_batch
        self._queues: list[asyncio.Queue[_Request | None]] = [asyncio.Queue() for _ in range(lanes)]
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False
        self.batches = 0  # statistics: committed batches and postings, for the bench and the logs
        self.postings = 0

    async def __aenter__(self) -> GroupCommit:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the callers' side ----------------------------------------------------------------------

    async def earn(
        self,
        program: Program,
        member_id: str,
        points: int,
        *,
        reference: str,
        qualifying: int = 0,
        reason: str | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> ledger.Posted:
        """`ledger.earn` for `member_id`, committed with the group; publishes `points_earned`."""
        if points <= 0 or qualifying < 0:
            raise LoyaltyRuleRefused("points.positive", "points to earn must be a positive whole number")
        options = {"qualifying": qualifying, "reason": reason, "actor": actor, "details": details}
        return await self._submit("earn", program, member_id, points, reference, options)

    async def spend(
        self,
        program: Program,
        member_id: str,
        points: int,
        *,
        reference: str,
        reason: str | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> ledger.Posted:
        """`ledger.spend` from `member_id` (never below zero, oldest-expiring lots first), committed with
        the group; publishes `points_redeemed`. Raises `InsufficientPoints` if the member cannot afford
        it when its turn comes."""
        if points <= 0:
            raise LoyaltyRuleRefused("points.positive", "points to spend must be a positive whole number")
        options = {"reason": reason, "actor": actor, "details": details}
        return await self._submit("spend", program, member_id, points, reference, options)

    async def _submit(
        self,
        kind: str,
        program: Program,
        member_id: str,
        points: int,
        reference: str,
        options: dict[str, Any],
    ) -> ledger.Posted:
        if self._closed:
            raise RuntimeError("the group commit is closed")
        if not self._workers:
            self._workers = [asyncio.create_task(self._work(queue)) for queue in self._queues]
        future: asyncio.Future[ledger.Posted] = asyncio.get_running_loop().create_future()
        request = _Request(kind, program, member_id, points, reference, options, future)
        self._queues[zlib.crc32(member_id.encode()) % len(self._queues)].put_nowait(request)
        return await future

    async def close(self) -> None:
        """Post what is queued, then stop the workers."""
        if self._closed:
            return
        self._closed = True
        for queue in self._queues:
            queue.put_nowait(None)
        await asyncio.gather(*self._workers)

    # --- the workers' side ----------------------------------------------------------------------

    async def _work(self, queue: asyncio.Queue[_Request | None]) -> None:
        while True:
            first = await queue.get()
            batch = [] if first is None else [first]
            stop = first is None
            while not stop and len(batch) < self._max_batch and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                # One batch at a time per lane, committed before the next begins: a posting's guard
                # (`balance + delta >= floor`) reads the committed balance, and an UPDATE skips a row
                # whose committed version fails its condition without waiting for a transaction
                # holding it — a spend behind an uncommitted earn of the same member would be refused.
                await self._post(batch)
            if stop:
                return

    async def _post(self, batch: list[_Request]) -> None:
        """One transaction for the batch: postings, events, commit; then every caller answered. If it
        fails, nothing of it was committed: its requests are retried alone (after the transaction
        has let go of its connection and locks)."""
        failed: Exception | None = None
        async with self._uows() as uow:
            try:
                events = await self._prepare_and_post(uow, batch)
                if any(r.error is None for r in batch):
                    await uow.publish_many(events, trusted=True)
                    await uow.commit()
            except Exception as error:  # every caller gets its outcome
                failed = error
        if failed is not None:
            await self._retry(batch, failed)
            return
        self.batches += 1
        for request in batch:
            if request.future.done():  # the caller was cancelled
                continue
            if request.error is not None:
                request.future.set_exception(request.error)
            else:
                assert request.posted is not None
                self.postings += 1
                request.future.set_result(request.posted)

    async def _retry(self, batch: list[_Request], error: Exception) -> None:
        """Nothing of the batch was committed: each request again alone, so that only the one at fault
        fails (a batch of one: its caller gets the error)."""
        if len(batch) == 1:
            await self._fail_alone(batch[0], error)
            return
        for request in batch:
            request.member = request.call = request.posted = request.error = None
            await self._post([request])

    async def _fail_alone(self, request: _Request, error: BaseException) -> None:
        if isinstance(error, IntegrityError):
            with contextlib.suppress(Exception):
                async with self._uows() as uow:
                    existing = await uow.session.scalar(
                        select(LedgerTransaction.id).where(LedgerTransaction.reference == request.reference)
                    )
                if existing is not None:
                    error = Conflict(
                        f"reference {request.reference!r} was posted before",
                        reference=request.reference,
                        transaction_id=existing,
                    )
        if not request.future.done():
            request.future.set_exception(error)

    async def _prepare_and_post(self, uow: UnitOfWork, batch: list[_Request]) -> list[EventPayload]:
        """In the batch's transaction: the postings made (each member read and checked by the same
        statement); their events returned. Refusals are recorded on their request."""
        session = uow.session
        now = datetime.now(UTC)
        if not await ledger.one_round_trip(session):
            await self._orm_path(uow, batch, now)
            return []
        calls: list[ledger.PreparedCall] = []
        for request in batch:
            make = ledger.earn_call if request.kind == "earn" else ledger.spend_call
            member = ledger.MemberRef(request.member_id, None, request.program.id)
            request.call = make(
                request.program, member, request.points, reference=request.reference, now=now,
                **{k: v for k, v in request.options.items() if v is not None},
            )  # fmt: skip
            calls.append(request.call)
        events: list[EventPayload] = []
        outcomes = await ledger.post_for_members(session, calls)
        for request, (customer_id, outcome) in zip(batch, outcomes, strict=True):
            if isinstance(outcome, ledger.Posted):
                assert customer_id is not None
                request.member = ledger.MemberRef(request.member_id, customer_id, request.program.id)
                request.posted = outcome
                events.append(_event(request, now))
            else:
                request.error = outcome
        return events

    async def _orm_path(self, uow: UnitOfWork, batch: list[_Request], now: datetime) -> None:
        """A batch of one on a database without `loyalty_post`: the member read and checked, then the
        ORM path's posting and its event (a refused one rolls back with its transaction)."""
        if len(batch) > 1:
            raise _OneByOne  # the ORM path cannot take back one refused posting: each alone
        (request,) = batch
        try:
            found = await uow.session.get(Member, request.member_id)
            member = _active(found, request)
            assert isinstance(member, Member)
            request.member = member
            await self._post_orm(uow, request, member, now)
        except (NotFound, LoyaltyRuleRefused, InsufficientPoints) as refusal:
            request.error = refusal

    async def _post_orm(self, uow: UnitOfWork, request: _Request, member: Member, now: datetime) -> None:
        """One request through the ledger's ORM path (databases without `loyalty_post`)."""
        loaded = member
        options = {k: v for k, v in request.options.items() if v is not None}
        if request.kind == "earn":
            request.posted = await ledger.earn(
                uow.session, request.program, loaded, request.points, reference=request.reference, now=now,
                **options,
            )  # fmt: skip
        else:
            request.posted = await ledger.spend(
                uow.session, request.program, loaded, request.points, reference=request.reference, now=now,
                **options,
            )  # fmt: skip
        await uow.publish(_event(request, now))


class _OneByOne(Exception):
    """The batch is to be posted one request per transaction."""


def _active(member: Member | ledger.MemberRef | None, request: _Request) -> Member | ledger.MemberRef:
    if member is None or member.program_id != request.program.id:
        raise NotFound(
            f"member {request.member_id} is not in program {request.program.id}", member_id=request.member_id
        )
    if member.status != "active":
        raise LoyaltyRuleRefused("member.active", f"member {member.id} is {member.status}, not active")
    return member


def _event(request: _Request, now: datetime) -> EventPayload:
    member, posted = request.member, request.posted
    assert member is not None
    assert posted is not None
    program = request.program
    customer_id = member.customer_id
    if request.kind == "earn":
        pending = program.pending_days > 0
        account = ledger.member_account(member.id, "pending" if pending else "available")
        return PointsEarned(
            customer_id=customer_id,
            program_id=program.id,
            transaction_id=posted.id,
            points=request.points,
            qualifying=request.options.get("qualifying") or 0,
            pending=pending,
            reason=request.options.get("reason") or "earn",
            reference=request.reference,
            balance_after=posted.balances[account],
            occurred_at=now,
        )
    return PointsRedeemed(
        customer_id=customer_id,
        program_id=program.id,
        transaction_id=posted.id,
        points=request.points,
        reference=request.reference,
        balance_after=posted.balances[ledger.member_account(member.id)],
        occurred_at=now,
    )


__all__ = ["GroupCommit"]
