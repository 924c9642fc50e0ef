"""The points ledger: every movement of points, as balanced transactions over accounts, with lots.

Every function here runs inside the caller's transaction and never commits. The member's
`available` account row is the member's lock: each operation that takes or gives available points
moves that row first (`UPDATE … WHERE balance + delta >= floor RETURNING balance`), so concurrent
spends of one member are serialised by the database and can never overdraw it, and lot bookkeeping
that follows happens under that lock. Accounts are always updated in id order (no deadlocks between
two members' transfers).

Account ids: `m:<member>:<kind>` (available, pending, reserved, qualifying — cached balances),
`p:<program>:<kind>` (issued, redeemed, expired, qualifying_issued) and `x:<partner>:<kind>` (issued,
redeemed) — balances derived from entries, never updated in place (they would be hot rows).
"""

from __future__ import annotations

import contextlib
import json
import uuid
import weakref
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, and_, bindparam, case, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from services.loyalty.domain import (
    InsufficientPoints,
    LoyaltyRuleRefused,
    Posting,
    balanced,
    expiry_date,
)
from services.loyalty.models import Account, LedgerEntry, LedgerTransaction, Lot, LotMovement, Member, Program
from shared.db import UTCDateTime, insert_rows
from shared.db import dialect_insert as _insert
from shared.errors import Conflict, DomainError, NotFound

MEMBER_KINDS = ("available", "pending", "reserved", "qualifying")
PROGRAM_KINDS = ("issued", "redeemed", "expired", "qualifying_issued")
PARTNER_KINDS = ("issued", "redeemed")


def member_account(member_id: str, kind: str = "available") -> str:
    return f"m:{member_id}:{kind}"


def program_account(program_id: str, kind: str) -> str:
    return f"p:{program_id}:{kind}"


def partner_account(partner_id: str, kind: str) -> str:
    return f"x:{partner_id}:{kind}"


def _cached(account_id: str) -> bool:
    return account_id.startswith("m:")


class Posted:
    """A transaction written, with the member balances it left behind (cached accounts it moved) and
    the lots it created. On the one-statement paths the transaction and lot objects are made only when
    asked for (an ORM object costs ~20 µs, and a group of postings rarely needs them)."""

    __slots__ = ("_lot_rows", "_lots", "_params", "_transaction", "balances")

    def __init__(
        self,
        transaction: LedgerTransaction | None = None,
        balances: dict[str, int] | None = None,
        *,
        params: dict[str, Any] | None = None,
    ) -> None:
        if transaction is None and params is None:
            raise ValueError("a Posted needs its transaction or the parameters it was posted with")
        self._transaction = transaction
        self._params = params
        self.balances: dict[str, int] = balances if balances is not None else {}
        self._lots: list[Lot] = []
        self._lot_rows: list[dict[str, Any]] = []

    @property
    def transaction(self) -> LedgerTransaction:
        if self._transaction is None:
            p = self._params
            assert p is not None
            self._transaction = LedgerTransaction(
                id=p["id"],
                program_id=p["program_id"],
                kind=p["kind"],
                reference=p["reference"],
                customer_id=p["customer_id"],
                member_id=p["member_id"],
                reason=p["reason"],
                actor=p["actor"],
                reverses_id=p["reverses_id"],
                details=p["details"],
                created_at=p["created_at"],
            )
        return self._transaction

    @property
    def id(self) -> str:
        if self._transaction is not None:
            return self._transaction.id
        assert self._params is not None
        return str(self._params["id"])

    @property
    def lots(self) -> list[Lot]:
        if self._lot_rows:
            self._lots.extend(Lot(**row) for row in self._lot_rows)
            self._lot_rows.clear()
        return self._lots

    def balance(self, member_id: str, kind: str = "available") -> int | None:
        return self.balances.get(member_account(member_id, kind))


@dataclass(frozen=True, slots=True)
class MemberRef:
    """What a posting needs of a member, without an ORM object. With no `customer_id`, for
    `post_and_publish`, which reads it from the member's row."""

    id: str
    customer_id: str | None
    program_id: str
    status: str = "active"


async def open_accounts(
    session: AsyncSession, owner_kind: str, owner_id: str, kinds: Iterable[str], program_id: str | None
) -> None:
    """Create an owner's accounts (once; opening again does nothing)."""
    prefix = {"member": "m", "program": "p", "partner": "x"}[owner_kind]
    now = datetime.now(UTC)
    rows = [
        {
            "id": f"{prefix}:{owner_id}:{kind}",
            "program_id": program_id,
            "owner_kind": owner_kind,
            "owner_id": owner_id,
            "kind": kind,
            "balance": 0,
            "cached": owner_kind == "member",
            "created_at": now,
        }
        for kind in kinds
    ]
    await session.execute(_insert(session)(Account).values(rows).on_conflict_do_nothing())


async def transaction_for(session: AsyncSession, reference: str) -> LedgerTransaction | None:
    return await session.scalar(select(LedgerTransaction).where(LedgerTransaction.reference == reference))


async def post(
    session: AsyncSession,
    *,
    program_id: str,
    kind: str,
    postings: Sequence[Posting],
    member: Member | None = None,
    reference: str | None = None,
    floors: dict[str, int] | None = None,
    reason: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
    reverses_id: str | None = None,
    now: datetime | None = None,
) -> Posted:
    """Write one balanced transaction. Cached (member) accounts move first, in id order, each refused
    if it would end below its floor in `floors`; then the transaction and its entries are inserted."""
    postings = [p for p in postings if p.amount != 0]
    balanced(postings)
    floors = floors or {}
    transaction_id = str(uuid.uuid4())
    balances: dict[str, int] = {}
    deltas: dict[str, int] = {}
    for p in postings:
        deltas[p.account_id] = deltas.get(p.account_id, 0) + p.amount
    for account_id in sorted(a for a in deltas if _cached(a)):
        delta = deltas[account_id]
        statement = update(Account).where(Account.id == account_id)
        floor = floors.get(account_id)
        if floor is not None and delta < 0:
            statement = statement.where(Account.balance + delta >= floor)
        new_balance = await session.scalar(
            statement.values(balance=Account.balance + delta).returning(Account.balance)
        )
        if new_balance is None:
            current = await session.scalar(select(Account.balance).where(Account.id == account_id))
            if current is None:
                raise NotFound(f"account {account_id} does not exist", account_id=account_id)
            raise InsufficientPoints(available=current - (floor or 0), requested=-delta)
        balances[account_id] = int(new_balance)
    created_at = now or datetime.now(UTC)
    transaction = LedgerTransaction(
        id=transaction_id,
        program_id=program_id,
        kind=kind,
        reference=reference or f"{kind}:{transaction_id}",
        customer_id=member.customer_id if member is not None else None,
        member_id=member.id if member is not None else None,
        reason=reason,
        actor=actor,
        reverses_id=reverses_id,
        details=details or {},
        created_at=created_at,
    )
    session.add(transaction)
    await session.flush()
    await insert_rows(
        session,
        LedgerEntry.__table__,  # type: ignore[arg-type]
        [
            {"transaction_id": transaction_id, "account_id": p.account_id, "amount": p.amount, "line_no": i}
            for i, p in enumerate(postings, start=1)
        ],
    )
    return Posted(transaction, balances)


# --- one round trip on PostgreSQL ------------------------------------------------------------------
#
# On PostgreSQL (with migration 0007's `loyalty_post` function), earn, spend, reserve and
# confirm_reservation are one call: the guarded account updates, the transaction and its entries, the
# FIFO lot consumption, the new lot and its movement and the member's last activity, in the order the
# ORM path below does them, with the same results. The ORM path serves SQLite (and the other
# operations). `FAST_PATH = False` turns the fast path off.

FAST_PATH = True
_fast_engines: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()

_POST_CALL = text(
    "SELECT balances, refused_account, refused_balance, new_lot_id, new_lot_remaining, taken_ids, "
    "taken_remaining FROM loyalty_post(:id, :program_id, :kind, :reference, :customer_id, :member_id, "
    ":reason, :actor, :reverses_id, :details, :created_at, :accounts, :amounts, :cached, :deltas, "
    ":floors, :consume, :lot_points, :lot_status, :lot_source, :lot_program_id, :lot_available_at, "
    ":lot_expires_at, :lot_budget_account, :activity_at)"
).bindparams(
    bindparam("details", type_=JSON()),
    bindparam("created_at", type_=UTCDateTime()),
    bindparam("lot_available_at", type_=UTCDateTime()),
    bindparam("lot_expires_at", type_=UTCDateTime()),
    bindparam("activity_at", type_=UTCDateTime()),
)


async def _fast(session: AsyncSession) -> bool:
    """Whether this session's database runs the one-round-trip postings (asked once per engine)."""
    if not FAST_PATH:
        return False
    bind = session.get_bind()
    engine = getattr(bind, "engine", bind)
    known = _fast_engines.get(engine)
    if known is None:
        known = engine.dialect.name == "postgresql" and bool(
            await session.scalar(text("SELECT to_regproc('loyalty_post') IS NOT NULL"))
        )
        _fast_engines[engine] = known
    return known


async def one_round_trip(session: AsyncSession) -> bool:
    """Whether postings on this session's database are single `loyalty_post` calls (PostgreSQL)."""
    return await _fast(session)


@dataclass(slots=True)
class _NewLot:
    points: int
    status: str
    source: str
    available_at: datetime
    expires_at: datetime | None
    budget_account: str | None  # remaining = credit budget on this account's new balance (None: all)


@dataclass(slots=True)
class _Call:
    """One `loyalty_post` call, prepared: its parameters and what `_finish` needs to read its result."""

    params: dict[str, Any]
    member: Member | MemberRef
    cached: list[str]
    deltas: dict[str, int]
    floors: dict[str, int]
    lot: _NewLot | None
    touch: bool
    now: datetime
    posted: Posted | None = None


PreparedCall = _Call  # what `earn_call` and `spend_call` return, for `post_and_publish`


def _prepare(
    *,
    program_id: str,
    kind: str,
    postings: Sequence[Posting],
    member: Member | MemberRef,
    reference: str | None,
    floors: dict[str, int] | None = None,
    reason: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
    now: datetime,
    consume: int = 0,
    lot: _NewLot | None = None,
    touch: bool = False,
) -> _Call:
    postings = [p for p in postings if p.amount != 0]
    balanced(postings)
    floors = floors or {}
    deltas: dict[str, int] = {}
    for p in postings:
        deltas[p.account_id] = deltas.get(p.account_id, 0) + p.amount
    cached = sorted(a for a in deltas if _cached(a))
    guards = [floors.get(a) if deltas[a] < 0 else None for a in cached]
    transaction_id = str(uuid.uuid4())
    reference = reference or f"{kind}:{transaction_id}"
    details = details or {}
    params = {
        "id": transaction_id,
        "program_id": program_id,
        "kind": kind,
        "reference": reference,
        "customer_id": member.customer_id,
        "member_id": member.id,
        "reason": reason,
        "actor": actor,
        "reverses_id": None,
        "details": details,
        "created_at": now,
        "accounts": [p.account_id for p in postings],
        "amounts": [p.amount for p in postings],
        "cached": cached,
        "deltas": [deltas[a] for a in cached],
        "floors": guards,
        "consume": consume,
        "lot_points": lot.points if lot is not None else None,
        "lot_status": lot.status if lot is not None else None,
        "lot_source": lot.source if lot is not None else None,
        "lot_program_id": member.program_id,
        "lot_available_at": lot.available_at if lot is not None else None,
        "lot_expires_at": lot.expires_at if lot is not None else None,
        "lot_budget_account": lot.budget_account if lot is not None else None,
        "activity_at": now if touch else None,
    }
    return _Call(params, member, cached, deltas, floors, lot, touch, now)


def _finish(
    session: AsyncSession | None, call: _Call, row: Sequence[Any], posted: Posted | None = None
) -> Posted:
    """What one `loyalty_post` call returned, as a `Posted` (filled into `posted` if given); the objects
    the session holds made to see what the database did, as after the ORM path."""
    new_balances, refused, current, lot_id, lot_remaining, taken_ids, taken_remaining = row
    if new_balances is None:
        if current is None:
            raise NotFound(f"account {refused} does not exist", account_id=refused)
        raise InsufficientPoints(
            available=int(current) - (call.floors.get(refused) or 0), requested=-call.deltas[refused]
        )
    balances = {a: int(b) for a, b in zip(call.cached, new_balances, strict=True)}
    if posted is None:
        posted = Posted(balances=balances, params=call.params)
    else:
        posted.balances.update(balances)
    identities = session.identity_map if session is not None else None
    if identities:
        for account_id, balance in balances.items():
            account = identities.get(identity_key(Account, account_id))
            if account is not None:
                set_committed_value(account, "balance", balance)
        for lot_id_taken, remaining in zip(taken_ids or (), taken_remaining or (), strict=True):
            held = identities.get(identity_key(Lot, lot_id_taken))
            if held is not None:
                set_committed_value(held, "remaining", int(remaining))
    if call.touch and isinstance(call.member, Member):
        set_committed_value(call.member, "last_activity_at", call.now)
    lot = call.lot
    if lot is not None:
        posted._lot_rows.append(
            {
                "id": int(lot_id),
                "member_id": call.member.id,
                "program_id": call.member.program_id,
                "transaction_id": call.params["id"],
                "source": lot.source,
                "points": lot.points,
                "remaining": int(lot_remaining),
                "status": lot.status,
                "earned_at": call.now,
                "available_at": lot.available_at,
                "expires_at": lot.expires_at,
            }
        )
    return posted


async def _post_fast(session: AsyncSession, **posting: Any) -> Posted:
    """`post`, then `_consume(consume)`, `_new_lot(lot)` and `member.last_activity_at = now` (if
    `touch`), in one call of `loyalty_post`. Credits a write-behind buffer holds are posted first."""
    await flush_buffered(session)
    call = _prepare(**posting)
    if session.new or session.dirty or session.deleted:
        await session.flush()  # what the ORM path's flush would have written first
    row = (await session.execute(_POST_CALL, call.params)).one()
    return _finish(session, call, row)


# --- write-behind: a consumer's run of credits in one statement -------------------------------------
#
# A run of purchases earns one after the other, and on PostgreSQL each earn is one `loyalty_post` call:
# a round trip, and ~0.3 ms of driver work, per purchase. Inside `write_behind`, `earn` may hold a
# credit instead (it cannot be refused: no floor guards an account that only rises), and the held ones
# go in one statement — `loyalty_post` called for each, in order — when the block ends or as soon as
# anything else posts (`_post_fast` flushes first). The caller keeps its other reads of the ledger after
# `flush_buffered` (`earn_for_purchase` holds only earns whose evaluation reads nothing the held ones
# write). A held credit's `Posted` has its transaction at once and its balances and lot after the flush.

_BUFFER = "loyalty.ledger.write_behind"

# The calls' parameters go as one array per parameter, unnested side by side (asyncpg encodes arrays
# in binary, in C); the per-call lists (accounts, amounts, …) as array literals cast per row. JSON per
# call, unpacked by `->>` and sub-selects, had cost PostgreSQL more than the postings themselves
# (~150 µs a call against the function's ~115).
_SCALARS: tuple[tuple[str, str], ...] = (
    ("id", "text"),
    ("program_id", "text"),
    ("kind", "text"),
    ("reference", "text"),
    ("customer_id", "text"),
    ("member_id", "text"),
    ("reason", "text"),
    ("actor", "text"),
    ("reverses_id", "text"),
    ("details", "json"),
    ("created_at", "timestamptz"),
    ("accounts", "text"),
    ("amounts", "text"),
    ("cached", "text"),
    ("deltas", "text"),
    ("floors", "text"),
    ("consume", "bigint"),
    ("lot_points", "bigint"),
    ("lot_status", "text"),
    ("lot_source", "text"),
    ("lot_program_id", "text"),
    ("lot_available_at", "timestamptz"),
    ("lot_expires_at", "timestamptz"),
    ("lot_budget_account", "text"),
    ("activity_at", "timestamptz"),
)
_LISTS = {
    "accounts": "text[]",
    "amounts": "bigint[]",
    "cached": "text[]",
    "deltas": "bigint[]",
    "floors": "bigint[]",
}

_POST_MANY = text(
    "SELECT r.balances, r.refused_account, r.refused_balance, r.new_lot_id, r.new_lot_remaining, "
    "r.taken_ids, r.taken_remaining FROM unnest("
    + ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _SCALARS)
    + ") WITH ORDINALITY AS c("
    + ", ".join(name for name, _ in _SCALARS)
    + ", n) CROSS JOIN LATERAL loyalty_post("
    + ", ".join(
        f"CAST(c.{name} AS {_LISTS[name]})" if name in _LISTS else f"c.{name}" for name, _ in _SCALARS
    )
    + ") AS r ORDER BY c.n"
)


def _array_literal(values: Sequence[Any]) -> str:
    """A PostgreSQL array literal of strings or integers (None: NULL), every string quoted."""
    items = []
    for value in values:
        if value is None:
            items.append("NULL")
        elif isinstance(value, int):
            items.append(str(value))
        else:
            items.append('"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(items) + "}"


def _columns(calls: Sequence[_Call]) -> dict[str, list[Any]]:
    """`_POST_MANY`'s parameters: one list per parameter, one item per call."""
    columns: dict[str, list[Any]] = {name: [] for name, _ in _SCALARS}
    for call in calls:
        params = call.params
        for name, values in columns.items():
            value = params[name]
            if name in _LISTS:
                value = _array_literal(value)
            elif name == "details":
                value = json.dumps(value)
            elif isinstance(value, datetime) and value.tzinfo is None:
                raise ValueError("naive datetime: give a timezone-aware value")
            values.append(value)
    return columns


class WriteBehind:
    """Credits held for one statement (see above). Use through `write_behind`."""

    def __init__(self) -> None:
        self.calls: list[_Call] = []

    def hold(self, call: _Call) -> Posted:
        call.posted = Posted(params=call.params)
        self.calls.append(call)
        return call.posted

    async def flush(self, session: AsyncSession) -> None:
        calls, self.calls = self.calls, []
        if not calls:
            return
        for call, row in zip(calls, await _post_many(session, calls), strict=True):
            _finish(session, call, row, call.posted)


async def _post_many(session: AsyncSession, calls: Sequence[_Call]) -> Sequence[Sequence[Any]]:
    """`loyalty_post` for each of `calls`, in order, in one statement: its result rows."""
    if session.new or session.dirty or session.deleted:
        await session.flush()
    rows = (await session.execute(_POST_MANY, _columns(calls))).all()
    if len(rows) != len(calls):  # pragma: no cover - one row per call, always
        raise RuntimeError(f"loyalty_post: {len(rows)} results for {len(calls)} calls")
    return rows


def _member_outcomes(
    session: AsyncSession | None, calls: Sequence[_Call], rows: Sequence[Sequence[Any]]
) -> list[tuple[str | None, Posted | DomainError]]:
    """What `post_and_publish`'s rows (member status, program, customer id, then `loyalty_post`'s
    result) say of each call."""
    if len(rows) != len(calls):  # pragma: no cover - one row per call, always
        raise RuntimeError(f"loyalty_post: {len(rows)} results for {len(calls)} calls")
    outcomes: list[tuple[str | None, Posted | DomainError]] = []
    for call, row in zip(calls, rows, strict=True):
        status, program_id, customer_id = row[0], row[1], row[2]
        member_id = call.params["member_id"]
        if status is None or program_id != call.params["program_id"]:
            outcomes.append(
                (None, NotFound(f"member {member_id} is not in program {call.params['program_id']}"))
            )
            continue
        if status != "active":
            refusal = LoyaltyRuleRefused("member.active", f"member {member_id} is {status}, not active")
            outcomes.append((customer_id, refusal))
            continue
        call.params["customer_id"] = customer_id
        try:
            outcomes.append((customer_id, _finish(session, call, row[3:10], call.posted)))
        except (InsufficientPoints, NotFound) as refused:
            outcomes.append((customer_id, refused))
    return outcomes


@dataclass(frozen=True, slots=True)
class EventTemplate:
    """A posting's event, made before the posting: its outbox row, the envelope's JSON text holding
    `CUSTOMER_MARK` where the member's customer id goes (the subject and the data's `customer_id`) and
    `BALANCE_MARK` where the balance after the posting goes (the posting's cached account
    `balance_account`)."""

    event_id: str
    topic: str
    type: str
    envelope: str
    balance_account: str


CUSTOMER_MARK = "\x00customer_id\x00"
BALANCE_MARK = "\x00balance_after\x00"
_EVENT_SCALARS = (
    ("event_id", "text"),
    ("topic", "text"),
    ("type", "text"),
    ("envelope", "text"),
    ("balance_at", "int"),
)


def _post_and_publish_sql(outbox: str) -> str:
    """`loyalty_post` for each call, its member read and checked in the statement, and the outbox rows
    of the postings made, in one statement (a data-modifying CTE): run in an implicit transaction, a
    group of postings is one round trip.

    Each call's member is looked up in the statement: a call is posted only if its member exists, is
    in the call's program and is active, and the member's current customer id goes into the
    transaction. `OFFSET 0` keeps each subquery whole, so that both stay nested loops over the calls
    in their order (the members' lookup, flattened into a join, could be hashed and the calls made in
    the members' order), and the call's condition gates it (a one-time filter; flattened, it became a
    join filter tested after the call had run). Tests hold the order, and a closed member untouched."""
    names = [name for name, _ in _SCALARS] + [name for name, _ in _EVENT_SCALARS]
    arrays = [f"CAST(:{name} AS {kind}[])" for name, kind in (*_SCALARS, *_EVENT_SCALARS)]
    call_args = ", ".join(
        "m.customer_id"
        if name == "customer_id"
        else f"CAST(c.{name} AS {_LISTS[name]})"
        if name in _LISTS
        else f"c.{name}"
        for name, _ in _SCALARS
    )
    customer = '"\\u0000customer_id\\u0000"'
    balance = '"\\u0000balance_after\\u0000"'
    return (
        "WITH r AS MATERIALIZED (SELECT c.n, c.event_id, c.topic, c.type, c.envelope, c.balance_at, "
        "m.status, m.program_id AS member_program_id, m.customer_id AS member_customer_id, p.* "
        f"FROM unnest({', '.join(arrays)}) WITH ORDINALITY AS c({', '.join(names)}, n) "
        "LEFT JOIN LATERAL (SELECT mm.status, mm.program_id, mm.customer_id FROM members mm "
        "WHERE mm.id = c.member_id OFFSET 0) AS m ON true "
        f"LEFT JOIN LATERAL (SELECT * FROM loyalty_post({call_args}) "
        "WHERE m.status = 'active' AND m.program_id = c.program_id OFFSET 0) AS p ON true), "
        f"published AS (INSERT INTO {outbox} (event_id, topic, key, type, envelope, created_at) "
        "SELECT r.event_id, r.topic, r.member_customer_id, r.type, CAST(replace(replace(r.envelope, "
        f"'{customer}', CAST(to_json(r.member_customer_id) AS text)), '{balance}', "
        "CAST(r.balances[r.balance_at] AS text)) AS json), CAST(:created_at_outbox AS timestamptz) "
        "FROM r WHERE r.balances IS NOT NULL ORDER BY r.n) "
        "SELECT r.status, r.member_program_id, r.member_customer_id, r.balances, r.refused_account, "
        "r.refused_balance, r.new_lot_id, r.new_lot_remaining, r.taken_ids, r.taken_remaining "
        "FROM r ORDER BY r.n"
    )


async def post_and_publish(
    connection: AsyncConnection, calls: Sequence[_Call], events: Sequence[EventTemplate], *, outbox: str
) -> list[tuple[str | None, Posted | DomainError]]:
    """Prepared calls (`earn_call`, `spend_call`, members as `MemberRef` without a customer id) posted
    in order, and for each posting made its event written to `outbox` from its template, in one
    statement (PostgreSQL). On a connection in autocommit mode that statement is its own transaction:
    the postings and their events commit together, or (an error) none of them. For each call: the
    member's customer id (None if no such member) and its `Posted`, or its refusal — `NotFound` (no
    such member in the program), `LoyaltyRuleRefused` "member.active", `InsufficientPoints` — for
    which nothing was written."""
    columns = _columns(calls)
    columns["event_id"] = [e.event_id for e in events]
    columns["topic"] = [e.topic for e in events]
    columns["type"] = [e.type for e in events]
    columns["envelope"] = [e.envelope for e in events]
    columns["balance_at"] = [
        call.cached.index(e.balance_account) + 1 for call, e in zip(calls, events, strict=True)
    ]
    columns["created_at_outbox"] = datetime.now(UTC)  # type: ignore[assignment]
    statement = _POST_AND_PUBLISH.get(outbox)
    if statement is None:
        statement = _POST_AND_PUBLISH[outbox] = text(_post_and_publish_sql(outbox))
    rows = (await connection.execute(statement, columns)).all()
    return _member_outcomes(None, calls, rows)


_POST_AND_PUBLISH: dict[str, Any] = {}


async def flush_buffered(session: AsyncSession) -> None:
    """Post the credits a write-behind buffer of this session holds (nothing if none)."""
    buffer: WriteBehind | None = session.info.get(_BUFFER)
    if buffer is not None and buffer.calls:
        await buffer.flush(session)


def buffered(session: AsyncSession) -> WriteBehind | None:
    """The session's write-behind buffer, if a `write_behind` block is open."""
    return session.info.get(_BUFFER)


@contextlib.asynccontextmanager
async def write_behind(session: AsyncSession) -> AsyncIterator[WriteBehind | None]:
    """A block in which `earn(behind=True)` holds credits and posts them together; `None` where the
    database has no `loyalty_post` (SQLite), where everything is posted at once as before. If the block
    raises, what it held is dropped (the transaction is abandoned)."""
    if not await _fast(session) or _BUFFER in session.info:
        yield session.info.get(_BUFFER)
        return
    buffer = session.info[_BUFFER] = WriteBehind()
    try:
        yield buffer
        await buffer.flush(session)
    finally:
        session.info.pop(_BUFFER, None)


# --- lots -------------------------------------------------------------------------------------------


def _fifo() -> list[Any]:
    # Oldest expiry first (never-expiring last), then oldest earned.
    return [Lot.expires_at.is_(None), Lot.expires_at, Lot.earned_at, Lot.id]


async def _movements(session: AsyncSession, transaction_id: str, moves: list[tuple[int, int]]) -> None:
    if moves:
        await insert_rows(
            session,
            LotMovement.__table__,  # type: ignore[arg-type]
            [
                {"lot_id": lot_id, "transaction_id": transaction_id, "amount": amount}
                for lot_id, amount in moves
            ],
        )


async def _consume(
    session: AsyncSession, member_id: str, points: int, transaction_id: str, prefer: Sequence[int] = ()
) -> list[tuple[Lot, int]]:
    """Take `points` from the member's available lots: the lots in `prefer` first, then FIFO. Takes
    what there is if the lots hold less (the balance then went negative, by policy)."""
    if points <= 0:
        return []
    lots = list(
        (
            await session.scalars(
                select(Lot)
                .where(Lot.member_id == member_id, Lot.status == "available", Lot.remaining > 0)
                .order_by(*_fifo())
                .with_for_update()
            )
        ).all()
    )
    preferred = [lot for lot in lots if lot.id in prefer]
    ordered = preferred + [lot for lot in lots if lot.id not in prefer]
    taken: list[tuple[Lot, int]] = []
    left = points
    for lot in ordered:
        if left == 0:
            break
        take = min(lot.remaining, left)
        lot.remaining -= take
        left -= take
        taken.append((lot, take))
    await session.flush()
    await _movements(session, transaction_id, [(lot.id, -take) for lot, take in taken])
    return taken


def _credit_budget(balance_after: int, delta: int) -> int:
    """How many of `delta` points credited to available go into lots: lots hold max(balance, 0), so
    a member in debt first repays it."""
    return max(balance_after, 0) - max(balance_after - delta, 0)


async def _new_lot(
    session: AsyncSession,
    *,
    member: Member,
    transaction_id: str,
    source: str,
    points: int,
    remaining: int,
    status: str,
    earned_at: datetime,
    available_at: datetime,
    expires_at: datetime | None,
) -> Lot:
    lot = Lot(
        member_id=member.id,
        program_id=member.program_id,
        transaction_id=transaction_id,
        source=source,
        points=points,
        remaining=remaining,
        status=status,
        earned_at=earned_at,
        available_at=available_at,
        expires_at=expires_at,
    )
    session.add(lot)
    await session.flush()
    await _movements(session, transaction_id, [(lot.id, remaining)])
    return lot


# --- operations -------------------------------------------------------------------------------------


def _earn_posting(
    program: Program,
    member: Member | MemberRef,
    points: int,
    *,
    reference: str,
    kind: str = "earn",
    qualifying: int = 0,
    pending_days: int | None = None,
    partner_id: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
    now: datetime,
) -> tuple[dict[str, Any], _NewLot | None]:
    """An earn's transaction (the arguments of `post`) and the lot it creates (None for no points)."""
    if points < 0 or qualifying < 0:
        raise LoyaltyRuleRefused("points.positive", "points to earn must not be negative")
    hold = program.pending_days if pending_days is None else pending_days
    target = "pending" if hold > 0 else "available"
    issuer = partner_account(partner_id, "issued") if partner_id else program_account(program.id, "issued")
    postings = [Posting(member_account(member.id, target), points), Posting(issuer, -points)]
    if qualifying:
        postings += [
            Posting(member_account(member.id, "qualifying"), qualifying),
            Posting(program_account(program.id, "qualifying_issued"), -qualifying),
        ]
    posting: dict[str, Any] = {
        "program_id": program.id,
        "kind": kind,
        "postings": postings,
        "member": member,
        "reference": reference,
        "reason": reason,
        "actor": actor,
        "details": {"points": points, "qualifying": qualifying, **(details or {})},
        "now": now,
    }
    new_lot = None
    if points:
        new_lot = _NewLot(
            points=points,
            status=target,
            source=reference,
            available_at=now + timedelta(days=hold) if hold > 0 else now,
            expires_at=expiry_date(program.expiry_policy, program.expiry_period, now, program.timezone),
            budget_account=None if target == "pending" else member_account(member.id),
        )
    return posting, new_lot


def earn_call(
    program: Program, member: Member | MemberRef, points: int, *, reference: str, **options: Any
) -> _Call:
    """An earn prepared as one `loyalty_post` call (for a caller that posts calls itself: the group
    commit). `options` as `earn`'s; `now` defaults to the present."""
    options.setdefault("now", datetime.now(UTC))
    posting, new_lot = _earn_posting(program, member, points, reference=reference, **options)
    return _prepare(**posting, lot=new_lot, touch=True)


async def earn(
    session: AsyncSession,
    program: Program,
    member: Member,
    points: int,
    *,
    reference: str,
    kind: str = "earn",
    qualifying: int = 0,
    pending_days: int | None = None,
    partner_id: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
    behind: bool = False,
) -> Posted:
    """Credit `points` (held pending for the program's pending window unless `pending_days` says
    otherwise) and `qualifying` tier points. The other side is the program's (or the accrual
    partner's) issued account. One lot records the points with their expiry date. With `behind`, inside
    a `write_behind` block, the credit waits for the block's one statement: the `Posted` has its
    balances and lot only after `flush_buffered` (or the block's end)."""
    now = now or datetime.now(UTC)
    posting, new_lot = _earn_posting(
        program,
        member,
        points,
        reference=reference,
        kind=kind,
        qualifying=qualifying,
        pending_days=pending_days,
        partner_id=partner_id,
        reason=reason,
        actor=actor,
        details=details,
        now=now,
    )
    if await _fast(session):
        buffer = buffered(session) if behind else None
        if buffer is not None:
            return buffer.hold(_prepare(**posting, lot=new_lot, touch=True))
        return await _post_fast(session, **posting, lot=new_lot, touch=True)
    posted = await post(session, **posting)
    if new_lot is not None:
        if new_lot.budget_account is None:
            remaining = points
        else:
            remaining = _credit_budget(posted.balances[new_lot.budget_account], points)
        lot = await _new_lot(
            session,
            member=member,
            transaction_id=posted.id,
            source=reference,
            points=points,
            remaining=remaining,
            status=new_lot.status,
            earned_at=now,
            available_at=new_lot.available_at,
            expires_at=new_lot.expires_at,
        )
        posted.lots.append(lot)
    member.last_activity_at = now
    return posted


async def release_pending(
    session: AsyncSession, program: Program, lot: Lot, now: datetime | None = None
) -> Posted | None:
    """Pending points whose hold has passed become spendable (pending → available)."""
    now = now or datetime.now(UTC)
    member = await session.get(Member, lot.member_id)
    assert member is not None
    points = lot.remaining
    if points <= 0:
        lot.status = "cancelled"
        await session.flush()
        return None
    posted = await post(
        session,
        program_id=program.id,
        kind="release",
        postings=[
            Posting(member_account(member.id, "pending"), -points),
            Posting(member_account(member.id, "available"), points),
        ],
        member=member,
        reference=f"release:{lot.id}",
        details={"lot_id": lot.id, "points": points},
        now=now,
    )
    budget = _credit_budget(posted.balances[member_account(member.id)], points)
    lot.status = "available"
    lot.remaining = budget
    await session.flush()
    await _movements(session, posted.id, [(lot.id, budget - points)] if budget != points else [])
    return posted


def _spend_posting(
    program: Program,
    member: Member | MemberRef,
    points: int,
    *,
    reference: str,
    kind: str = "redeem",
    to_account: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
    now: datetime,
) -> dict[str, Any]:
    """A spend's transaction (the arguments of `post`): guarded by the available balance's floor 0."""
    if points <= 0:
        raise LoyaltyRuleRefused("points.positive", "points to spend must be a positive whole number")
    available = member_account(member.id)
    return {
        "program_id": program.id,
        "kind": kind,
        "postings": [
            Posting(available, -points),
            Posting(to_account or program_account(program.id, "redeemed"), points),
        ],
        "member": member,
        "reference": reference,
        "floors": {available: 0},
        "reason": reason,
        "actor": actor,
        "details": {"points": points, **(details or {})},
        "now": now,
    }


def spend_call(
    program: Program, member: Member | MemberRef, points: int, *, reference: str, **options: Any
) -> _Call:
    """A spend prepared as one `loyalty_post` call (see `earn_call`); `options` as `spend`'s."""
    options.setdefault("now", datetime.now(UTC))
    posting = _spend_posting(program, member, points, reference=reference, **options)
    return _prepare(**posting, consume=points, touch=True)


async def spend(
    session: AsyncSession,
    program: Program,
    member: Member,
    points: int,
    *,
    reference: str,
    kind: str = "redeem",
    to_account: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Posted:
    """Take `points` from the available balance (never below zero), oldest-expiring lots first."""
    now = now or datetime.now(UTC)
    posting = _spend_posting(
        program,
        member,
        points,
        reference=reference,
        kind=kind,
        to_account=to_account,
        reason=reason,
        actor=actor,
        details=details,
        now=now,
    )
    if await _fast(session):
        return await _post_fast(session, **posting, consume=points, touch=True)
    posted = await post(session, **posting)
    await _consume(session, member.id, points, posted.id)
    member.last_activity_at = now
    return posted


async def reserve(
    session: AsyncSession,
    program: Program,
    member: Member,
    points: int,
    *,
    reference: str,
    now: datetime | None = None,
) -> Posted:
    """Hold points for a redemption (available → reserved); lots are consumed now, given back on cancel."""
    if points <= 0:
        raise LoyaltyRuleRefused("points.positive", "points to reserve must be a positive whole number")
    available = member_account(member.id)
    posting: dict[str, Any] = {
        "program_id": program.id,
        "kind": "reserve",
        "postings": [Posting(available, -points), Posting(member_account(member.id, "reserved"), points)],
        "member": member,
        "reference": reference,
        "floors": {available: 0},
        "details": {"points": points},
        "now": now or datetime.now(UTC),
    }
    if await _fast(session):
        return await _post_fast(session, **posting, consume=points)
    posted = await post(session, **posting)
    await _consume(session, member.id, points, posted.id)
    return posted


async def confirm_reservation(
    session: AsyncSession,
    program: Program,
    member: Member,
    reservation: LedgerTransaction,
    *,
    to_account: str | None = None,
    now: datetime | None = None,
) -> Posted:
    """Reserved points are spent (reserved → redeemed)."""
    points = int(reservation.details["points"])
    reserved = member_account(member.id, "reserved")
    now = now or datetime.now(UTC)
    posting: dict[str, Any] = {
        "program_id": program.id,
        "kind": "redeem",
        "postings": [
            Posting(reserved, -points),
            Posting(to_account or program_account(program.id, "redeemed"), points),
        ],
        "member": member,
        "reference": f"confirm:{reservation.id}",
        "floors": {reserved: 0},
        "details": {"points": points, "reservation_id": reservation.id},
        "now": now,
    }
    if await _fast(session):
        return await _post_fast(session, **posting, touch=True)
    posted = await post(session, **posting)
    member.last_activity_at = now
    return posted


async def cancel_reservation(
    session: AsyncSession,
    program: Program,
    member: Member,
    reservation: LedgerTransaction,
    *,
    reason: str = "cancelled",
    now: datetime | None = None,
) -> Posted:
    """Reserved points go back (reserved → available), into the lots they came from."""
    points = int(reservation.details["points"])
    reserved = member_account(member.id, "reserved")
    posted = await post(
        session,
        program_id=program.id,
        kind="release_reservation",
        postings=[Posting(reserved, -points), Posting(member_account(member.id), points)],
        member=member,
        reference=f"cancel:{reservation.id}",
        floors={reserved: 0},
        reason=reason,
        details={"points": points, "reservation_id": reservation.id},
        now=now,
    )
    budget = _credit_budget(posted.balances[member_account(member.id)], points)
    await _restore(session, member, reservation.id, posted.id, budget, now=now)
    return posted


async def _restore(
    session: AsyncSession,
    member: Member,
    from_transaction_id: str,
    transaction_id: str,
    points: int,
    *,
    now: datetime | None,
) -> None:
    """Give `points` back to the lots transaction `from_transaction_id` took them from (newest-taken
    first); a lot that expired meanwhile is reopened and the next expiry pass expires it."""
    if points <= 0:
        return
    taken = (
        await session.execute(
            select(LotMovement.lot_id, func.sum(LotMovement.amount))
            .where(LotMovement.transaction_id == from_transaction_id, LotMovement.amount < 0)
            .group_by(LotMovement.lot_id)
        )
    ).all()
    moves: list[tuple[int, int]] = []
    left = points
    for lot_id, amount in sorted(taken, key=lambda row: -row[0]):
        if left == 0:
            break
        lot = await session.get(Lot, lot_id, with_for_update=True)
        assert lot is not None
        give = min(-int(amount), left)
        lot.remaining += give
        if lot.status == "expired":
            lot.status = "available"
        moves.append((lot.id, give))
        left -= give
    await session.flush()
    await _movements(session, transaction_id, moves)
    if left:
        when = now or datetime.now(UTC)
        await _new_lot(
            session,
            member=member,
            transaction_id=transaction_id,
            source=f"restore:{from_transaction_id}",
            points=left,
            remaining=left,
            status="available",
            earned_at=when,
            available_at=when,
            expires_at=None,
        )


async def take_back(
    session: AsyncSession,
    program: Program,
    member: Member,
    points: int,
    *,
    source_lots: Sequence[Lot],
    reference: str,
    kind: str,
    to_account: str,
    qualifying: int = 0,
    reason: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> tuple[Posted | None, int]:
    """Take back up to `points` that `source_lots` earned (a refund, a reversal): pending points of
    those lots first, then available points (those lots first, then FIFO), then — if the program's
    negative-balance policy allows — a negative balance down to its limit. Returns the posting (None
    if nothing moved) and the points that could not be collected."""
    now = now or datetime.now(UTC)
    pending_lots = [lot for lot in source_lots if lot.status == "pending" and lot.remaining > 0]
    from_pending = 0
    for lot in pending_lots:
        from_pending += min(lot.remaining, points - from_pending)
    rest = points - from_pending
    available_id = member_account(member.id)
    current = int(await session.scalar(select(Account.balance).where(Account.id == available_id)) or 0)
    floor = -program.negative_limit if program.negative_policy == "within_limit" else 0
    from_available = max(min(rest, current - floor), 0)
    uncollected = rest - from_available
    qualifying_now = int(
        await session.scalar(
            select(Account.balance).where(Account.id == member_account(member.id, "qualifying"))
        )
        or 0
    )
    qualifying = max(min(qualifying, qualifying_now), 0)
    total = from_pending + from_available
    if total == 0 and qualifying == 0:
        return None, uncollected
    postings = [
        Posting(member_account(member.id, "pending"), -from_pending),
        Posting(available_id, -from_available),
        Posting(to_account, total),
    ]
    if qualifying:
        postings += [
            Posting(member_account(member.id, "qualifying"), -qualifying),
            Posting(program_account(program.id, "qualifying_issued"), qualifying),
        ]
    posted = await post(
        session,
        program_id=program.id,
        kind=kind,
        postings=postings,
        member=member,
        reference=reference,
        floors={available_id: floor},
        reason=reason,
        actor=actor,
        details={
            "points": total,
            "from_pending": from_pending,
            "from_available": from_available,
            "uncollected": uncollected,
            "qualifying": qualifying,
            **(details or {}),
        },
        now=now,
    )
    left = from_pending
    moves: list[tuple[int, int]] = []
    for lot in pending_lots:
        take = min(lot.remaining, left)
        if take:
            lot.remaining -= take
            left -= take
            moves.append((lot.id, -take))
            if lot.remaining == 0:
                lot.status = "cancelled"
    await session.flush()
    await _movements(session, posted.id, moves)
    # Lots hold max(balance, 0): going negative empties them.
    lot_points = min(from_available, max(current, 0))
    await _consume(session, member.id, lot_points, posted.id, prefer=[lot.id for lot in source_lots])
    return posted, uncollected


async def adjust(
    session: AsyncSession,
    program: Program,
    member: Member,
    points: int,
    *,
    reason: str,
    actor: str | None,
    reference: str | None = None,
    now: datetime | None = None,
) -> Posted:
    """A staff correction with a reason: positive credits a lot (expiring by policy), negative takes
    points FIFO and may not overdraw."""
    if points == 0:
        raise LoyaltyRuleRefused("points.nonzero", "an adjustment must move at least one point")
    if points > 0:
        return await earn(
            session, program, member, points, reference=reference or f"adjust:{uuid.uuid4()}",
            kind="adjust", pending_days=0, reason=reason, actor=actor, now=now,
        )  # fmt: skip
    return await spend(
        session, program, member, -points, reference=reference or f"adjust:{uuid.uuid4()}", kind="adjust",
        to_account=program_account(program.id, "issued"), reason=reason, actor=actor, now=now,
    )  # fmt: skip


async def transfer(
    session: AsyncSession,
    program: Program,
    sender: Member,
    receiver: Member,
    points: int,
    *,
    reference: str,
    kind: str = "transfer",
    reason: str | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> Posted:
    """Move available points from one member to another of the same program. The receiver's lots keep
    the sender's expiry dates: a transfer never extends the points' life."""
    if sender.id == receiver.id:
        raise LoyaltyRuleRefused("transfer.self", "a member cannot transfer points to themselves")
    if sender.program_id != receiver.program_id:
        raise LoyaltyRuleRefused("transfer.program", "points move only between members of one program")
    if points <= 0:
        raise LoyaltyRuleRefused("points.positive", "points to transfer must be a positive whole number")
    now = now or datetime.now(UTC)
    source = member_account(sender.id)
    posted = await post(
        session,
        program_id=program.id,
        kind=kind,
        postings=[Posting(source, -points), Posting(member_account(receiver.id), points)],
        member=sender,
        reference=reference,
        floors={source: 0},
        reason=reason,
        actor=actor,
        details={"points": points, "from_member": sender.id, "to_member": receiver.id},
        now=now,
    )
    taken = await _consume(session, sender.id, points, posted.id)
    budget = _credit_budget(posted.balances[member_account(receiver.id)], points)
    for lot, amount in taken:
        if budget <= 0:
            break
        give = min(amount, budget)
        budget -= give
        await _new_lot(
            session, member=receiver, transaction_id=posted.id, source=f"transfer:{posted.id}", points=give,
            remaining=give, status="available", earned_at=lot.earned_at, available_at=now,
            expires_at=lot.expires_at,
        )  # fmt: skip
    sender.last_activity_at = now
    receiver.last_activity_at = now
    return posted


async def expire_lots(
    session: AsyncSession,
    program: Program,
    member: Member,
    lots: Sequence[Lot],
    *,
    now: datetime,
    reason: str,
) -> Posted | None:
    """Expire what remains of `lots` (available → the program's expired account)."""
    points = sum(lot.remaining for lot in lots)
    if points <= 0:
        return None
    available = member_account(member.id)
    posted = await post(
        session,
        program_id=program.id,
        kind="expire",
        postings=[Posting(available, -points), Posting(program_account(program.id, "expired"), points)],
        member=member,
        reference=f"expire:{member.id}:{min(lot.id for lot in lots)}:{now.isoformat()}",
        reason=reason,
        details={"points": points, "lots": [lot.id for lot in lots]},
        now=now,
    )
    moves = [(lot.id, -lot.remaining) for lot in lots if lot.remaining]
    for lot in lots:
        lot.remaining = 0
        lot.status = "expired"
    await session.flush()
    await _movements(session, posted.id, moves)
    return posted


async def reverse(
    session: AsyncSession,
    program: Program,
    transaction_id: str,
    *,
    reason: str,
    actor: str | None,
    now: datetime | None = None,
) -> Posted:
    """A correction: a new transaction with every entry of `transaction_id` negated. Points it gave are
    taken back (from its own lots first; refused if already spent and the program does not allow a
    negative balance); points it took are given back to the lots they came from."""
    original = await session.get(LedgerTransaction, transaction_id)
    if original is None:
        raise NotFound(f"transaction {transaction_id} does not exist", transaction_id=transaction_id)
    if original.reverses_id is not None:
        raise LoyaltyRuleRefused(
            "reverse.reversal", "a reversal cannot itself be reversed; post a new movement"
        )
    if original.kind == "reserve":
        raise LoyaltyRuleRefused("reverse.reservation", "cancel the reservation instead of reversing it")
    if original.kind == "transfer":
        raise LoyaltyRuleRefused("reverse.transfer", "transfer the points back instead of reversing it")
    already = await session.scalar(
        select(LedgerTransaction.id).where(LedgerTransaction.reverses_id == transaction_id)
    )
    if already is not None:
        raise Conflict(f"transaction {transaction_id} was already reversed by {already}", reversal_id=already)
    member = await session.get(Member, original.member_id) if original.member_id else None
    if member is None:
        raise LoyaltyRuleRefused("reverse.member", "only a member's transactions can be reversed")
    entries = (
        await session.scalars(select(LedgerEntry).where(LedgerEntry.transaction_id == transaction_id))
    ).all()
    postings = [Posting(e.account_id, -e.amount) for e in entries]
    available = member_account(member.id)
    pending = member_account(member.id, "pending")
    own_lots = list((await session.scalars(select(Lot).where(Lot.transaction_id == transaction_id))).all())
    # Points it credited as pending that have been released since are available points now: those are
    # taken back from the available balance, not from pending (which holds other earnings' points).
    credited_pending = -sum(p.amount for p in postings if p.account_id == pending)
    if credited_pending > 0 and own_lots:
        released = sum(
            int((details or {}).get("points", 0))
            for details in await session.scalars(
                select(LedgerTransaction.details).where(
                    LedgerTransaction.kind == "release",
                    LedgerTransaction.reference.in_([f"release:{lot.id}" for lot in own_lots]),
                )
            )
        )
        moved = min(released, credited_pending)
        if moved:
            postings = [p for p in postings if p.account_id != pending]
            if credited_pending - moved:
                postings.append(Posting(pending, -(credited_pending - moved)))
            postings.append(Posting(available, -moved))
    delta = sum(p.amount for p in postings if p.account_id == available)
    floor = -program.negative_limit if program.negative_policy == "within_limit" else 0
    pending_delta = sum(p.amount for p in postings if p.account_id == pending)
    floors = {
        available: floor,
        pending: 0,
        member_account(member.id, "reserved"): 0,
    }
    current = int(await session.scalar(select(Account.balance).where(Account.id == available)) or 0)
    posted = await post(
        session,
        program_id=program.id,
        kind="reversal",
        postings=postings,
        member=member,
        reference=f"reverse:{transaction_id}",
        floors=floors,
        reason=reason,
        actor=actor,
        reverses_id=transaction_id,
        details={"reversed_kind": original.kind, "points": -delta - pending_delta},
        now=now,
    )
    if pending_delta < 0:
        left = -pending_delta
        moves = []
        for lot in own_lots:
            if lot.status == "pending" and left:
                take = min(lot.remaining, left)
                lot.remaining -= take
                left -= take
                moves.append((lot.id, -take))
                if lot.remaining == 0:
                    lot.status = "cancelled"
        await session.flush()
        await _movements(session, posted.id, moves)
    if delta < 0:
        await _consume(
            session, member.id, min(-delta, max(current, 0)), posted.id, prefer=[lot.id for lot in own_lots]
        )
    elif delta > 0:
        budget = _credit_budget(posted.balances[available], delta)
        if original.kind == "expire":
            # Reinstated points get a new life under the program's policy, not their old expiry.
            when = now or datetime.now(UTC)
            lot = await _new_lot(
                session, member=member, transaction_id=posted.id, source=f"reinstate:{transaction_id}",
                points=budget, remaining=budget, status="available", earned_at=when, available_at=when,
                expires_at=expiry_date(program.expiry_policy, program.expiry_period, when, program.timezone),
            )  # fmt: skip
            posted.lots.append(lot)
        else:
            await _restore(session, member, transaction_id, posted.id, budget, now=now)
    return posted


# --- reading ----------------------------------------------------------------------------------------


async def balances(session: AsyncSession, member_id: str) -> dict[str, int]:
    rows = await session.execute(
        select(Account.kind, Account.balance).where(
            Account.owner_kind == "member", Account.owner_id == member_id
        )
    )
    out = dict.fromkeys(MEMBER_KINDS, 0)
    out.update({kind: int(balance) for kind, balance in rows})
    return out


async def derived_balance(session: AsyncSession, account_id: str) -> int:
    return int(
        await session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(LedgerEntry.account_id == account_id)
        )
        or 0
    )


async def member_of(session: AsyncSession, program_id: str, customer_id: str) -> Member | None:
    return await session.scalar(
        select(Member).where(Member.program_id == program_id, Member.customer_id == customer_id)
    )


async def due_lots(session: AsyncSession, program: Program, now: datetime, *, limit: int) -> list[Lot]:
    """Available lots with points left whose expiry has passed (or whose member has been inactive for
    longer than the program allows)."""
    condition = and_(Lot.program_id == program.id, Lot.status == "available", Lot.remaining > 0)
    if program.expiry_policy == "inactivity" and program.expiry_period:
        cutoff = now - timedelta(days=program.expiry_period)
        inactive = select(Member.id).where(Member.program_id == program.id, Member.last_activity_at <= cutoff)
        condition = and_(condition, or_(Lot.expires_at <= now, Lot.member_id.in_(inactive)))
    else:
        condition = and_(condition, Lot.expires_at <= now)
    return list(
        (
            await session.scalars(select(Lot).where(condition).order_by(Lot.member_id, Lot.id).limit(limit))
        ).all()
    )


async def due_pending(session: AsyncSession, program: Program, now: datetime, *, limit: int) -> list[Lot]:
    return list(
        (
            await session.scalars(
                select(Lot)
                .where(Lot.program_id == program.id, Lot.status == "pending", Lot.available_at <= now)
                .order_by(Lot.id)
                .limit(limit)
            )
        ).all()
    )


@dataclass(frozen=True, slots=True)
class CheckReport:
    accounts: int
    transactions: int
    drifted_accounts: list[tuple[str, int, int]]  # account, cached balance, sum of entries
    unbalanced_transactions: list[tuple[str, int]]
    lot_mismatches: list[tuple[str, int, int]]  # member, available balance, lots remaining
    total: int  # sum of every entry: always 0

    @property
    def ok(self) -> bool:
        return (
            not (self.drifted_accounts or self.unbalanced_transactions or self.lot_mismatches)
            and self.total == 0
        )


async def check(session: AsyncSession) -> CheckReport:
    """Prove the books: every cached balance equals the sum of its entries, every transaction sums to
    zero, all entries sum to zero, and every member's available lots hold max(available balance, 0)."""
    sums = (
        select(LedgerEntry.account_id, func.sum(LedgerEntry.amount).label("total"))
        .group_by(LedgerEntry.account_id)
        .subquery()
    )
    drift = (
        await session.execute(
            select(Account.id, Account.balance, func.coalesce(sums.c.total, 0))
            .outerjoin(sums, sums.c.account_id == Account.id)
            .where(Account.cached.is_(True), Account.balance != func.coalesce(sums.c.total, 0))
        )
    ).all()
    unbalanced = (
        await session.execute(
            select(LedgerEntry.transaction_id, func.sum(LedgerEntry.amount))
            .group_by(LedgerEntry.transaction_id)
            .having(func.sum(LedgerEntry.amount) != 0)
        )
    ).all()
    lots = (
        select(Lot.member_id, func.sum(Lot.remaining).label("remaining"))
        .where(Lot.status == "available")
        .group_by(Lot.member_id)
        .subquery()
    )
    mismatched = (
        await session.execute(
            select(Account.owner_id, Account.balance, func.coalesce(lots.c.remaining, 0))
            .outerjoin(lots, lots.c.member_id == Account.owner_id)
            .where(
                Account.owner_kind == "member",
                Account.kind == "available",
                func.coalesce(lots.c.remaining, 0) != case((Account.balance > 0, Account.balance), else_=0),
            )
        )
    ).all()
    total = int(await session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0))) or 0)
    accounts = int(await session.scalar(select(func.count()).select_from(Account)) or 0)
    transactions = int(await session.scalar(select(func.count()).select_from(LedgerTransaction)) or 0)
    return CheckReport(
        accounts=accounts,
        transactions=transactions,
        drifted_accounts=[(a, int(b), int(t)) for a, b, t in drift],
        unbalanced_transactions=[(t, int(s)) for t, s in unbalanced],
        lot_mismatches=[(m, int(b), int(r)) for m, b, r in mismatched],
        total=total,
    )
