"""Group commit: single postings from many concurrent callers, committed together.

A caller that posts one earn or spend at a time in its own database transaction pays a round trip for
the member read, the `loyalty_post` call, BEGIN and COMMIT — and, in Python, a session and the ORM
around each. With many callers at once (a point-of-sale fleet, a partner's accruals, a load test) that
per-transaction work, not the ledger, is the limit. `GroupCommit` queues the postings and a worker
writes whatever has queued up as one statement in its own implicit transaction (no BEGIN, no COMMIT
round trip): every posting one `loyalty_post` call, in arrival order, which also reads and checks the
member, and the `points_earned` / `points_redeemed` events of the postings made, written to the outbox
by the same statement from envelopes made here (the customer id and the balance after filled in by the
statement). Each caller's `await` returns only after that statement committed, with its own outcome.

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
import warnings
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.loyalty import ledger
from services.loyalty.domain import InsufficientPoints, LoyaltyRuleRefused
from services.loyalty.models import LedgerTransaction, Member, Program
from shared.contracts.loyalty import PointsEarned, PointsRedeemed
from shared.errors import Conflict, NotFound
from shared.events import EventPayload, new_event
from shared.uow import UnitOfWork, UnitOfWorkFactory


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

    `uows` makes units of work of loyalty's database and outbox. Use as an async context manager,
    or call `close()`, which waits for what was queued."""

    def __init__(self, uows: UnitOfWorkFactory, *, lanes: int = 2, max_batch: int = 256) -> None:
        if lanes < 1 or max_batch < 1:
            raise ValueError("lanes and max_batch must be at least 1")
        self._uows = uows
        engine = uows.sessions.kw["bind"]
        # One statement per group, in its own implicit transaction: no BEGIN and COMMIT round trips.
        self._autocommit: AsyncEngine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._one_statement: bool | None = None  # known at the first group
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
        """The batch's postings and their events, committed together; then every caller answered. If
        it fails, nothing of it was committed: its requests are retried alone."""
        try:
            if self._one_statement is None:
                async with self._uows() as uow:
                    self._one_statement = await ledger.one_round_trip(uow.session)
            if self._one_statement:
                await self._post_in_one_statement(batch)
            else:
                await self._post_in_a_unit_of_work(batch)
        except Exception as error:  # every caller gets its outcome
            await self._retry(batch, error)
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

    async def _post_in_one_statement(self, batch: list[_Request]) -> None:
        """PostgreSQL: every posting a `loyalty_post` call that also reads and checks its member, and
        each posting's event written from a template made here (its customer id and balance filled in
        by the statement), all in one statement in its own transaction — one round trip."""
        now = datetime.now(UTC)
        calls: list[ledger.PreparedCall] = []
        templates: list[ledger.EventTemplate] = []
        with warnings.catch_warnings():  # placeholders in the templates' integer fields
            warnings.simplefilter("ignore")
            for request in batch:
                make = ledger.earn_call if request.kind == "earn" else ledger.spend_call
                member = ledger.MemberRef(request.member_id, None, request.program.id)
                request.call = make(
                    request.program, member, request.points, reference=request.reference, now=now,
                    **{k: v for k, v in request.options.items() if v is not None},
                )  # fmt: skip
                calls.append(request.call)
                templates.append(self._template(request, now))
        async with self._autocommit.connect() as connection:
            outcomes = await ledger.post_and_publish(
                connection, calls, templates, outbox=self._uows.tables.outbox.name
            )
        for request, (customer_id, outcome) in zip(batch, outcomes, strict=True):
            if isinstance(outcome, ledger.Posted):
                request.member = ledger.MemberRef(request.member_id, customer_id, request.program.id)
                request.posted = outcome
            else:
                request.error = outcome
        if any(r.error is None for r in batch):
            self._uows.notify_committed()

    def _template(self, request: _Request, now: datetime) -> ledger.EventTemplate:
        """The request's event, its customer id and balance after left as placeholders."""
        payload = _payload(request, ledger.CUSTOMER_MARK, ledger.BALANCE_MARK, now, construct=True)
        event = new_event(payload, source=self._uows.source, trusted=True)
        pending = request.kind == "earn" and request.program.pending_days > 0
        account = ledger.member_account(request.member_id, "pending" if pending else "available")
        return ledger.EventTemplate(
            event.id,
            payload.topic.name,
            event.type,
            orjson.dumps(event.model_dump(mode="json")).decode(),
            account,
        )

    async def _post_in_a_unit_of_work(self, batch: list[_Request]) -> None:
        """Databases without `loyalty_post` (SQLite): one request per transaction through the ORM path
        (a refused posting rolls back with its transaction)."""
        if len(batch) > 1:
            raise _OneByOne
        (request,) = batch
        async with self._uows() as uow:
            now = datetime.now(UTC)
            try:
                member = _active(await uow.session.get(Member, request.member_id), request)
                assert isinstance(member, Member)
                request.member = member
                await self._post_orm(uow, request, member, now)
            except (NotFound, LoyaltyRuleRefused, InsufficientPoints) as refusal:
                request.error = refusal
                return
            await uow.commit()

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

    async def _post_orm(self, uow: UnitOfWork, request: _Request, member: Member, now: datetime) -> None:
        """One request through the ledger's ORM path (databases without `loyalty_post`)."""
        options = {k: v for k, v in request.options.items() if v is not None}
        post = ledger.earn if request.kind == "earn" else ledger.spend
        posted = request.posted = await post(
            uow.session, request.program, member, request.points, reference=request.reference, now=now,
            **options,
        )  # fmt: skip
        pending = request.kind == "earn" and request.program.pending_days > 0
        balance = posted.balances[ledger.member_account(member.id, "pending" if pending else "available")]
        await uow.publish(_payload(request, member.customer_id, balance, now, transaction_id=posted.id))


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


def _payload(
    request: _Request,
    customer_id: str,
    balance_after: int | str,
    now: datetime,
    *,
    transaction_id: str | None = None,
    construct: bool = False,
) -> EventPayload:
    """The request's `points_earned` or `points_redeemed`. With `construct`, not validated: a template
    whose customer id and balance are placeholders."""
    program = request.program
    if transaction_id is None:
        assert request.call is not None
        transaction_id = str(request.call.params["id"])
    fields: dict[str, Any] = {
        "customer_id": customer_id,
        "program_id": program.id,
        "transaction_id": transaction_id,
        "points": request.points,
        "reference": request.reference,
        "balance_after": balance_after,
        "occurred_at": now,
    }
    kind: type[EventPayload] = PointsRedeemed
    if request.kind == "earn":
        kind = PointsEarned
        fields["qualifying"] = request.options.get("qualifying") or 0
        fields["pending"] = program.pending_days > 0
        fields["reason"] = request.options.get("reason") or "earn"
    return kind.model_construct(**fields) if construct else kind(**fields)


__all__ = ["GroupCommit"]
