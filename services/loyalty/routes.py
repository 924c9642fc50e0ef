"""Loyalty's HTTP routes: programs, members, the ledger (balances, history, adjustments, reversals,
transfers, the books check). Every write accepts an `Idempotency-Key`."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy import select

from services.loyalty import ledger, programs, service, transfers
from services.loyalty.models import IDEMPOTENCY, LedgerEntry, LedgerTransaction, Member, Program
from services.loyalty.schemas import (
    AdjustIn,
    BalanceOut,
    CheckOut,
    EnrolIn,
    EntryOut,
    LedgerLineOut,
    MemberOut,
    MemberPatch,
    ProgramIn,
    ProgramOut,
    ReverseIn,
    TransactionOut,
    TransferIn,
)
from shared.context import actor_var
from shared.errors import PROBLEM_RESPONSES, InvalidInput, NotFound, Problem
from shared.idempotency import IdempotencyKey, idempotent
from shared.runtime import UowDep
from shared.uow import UnitOfWork

router = APIRouter(tags=["loyalty"])

REFUSALS: dict[int | str, dict[str, Any]] = {
    **PROBLEM_RESPONSES,
    404: {"model": Problem, "description": "No such program, member or transaction"},
    409: {
        "model": Problem,
        "description": "Not enough points, or the Idempotency-Key was used for another request",
    },
}


async def idempotent_write(
    uow: UnitOfWork,
    *,
    scope: str,
    key: str | None,
    payload: Any,
    action: Callable[[], Awaitable[tuple[int, Any]]],
) -> JSONResponse:
    """Run a write once per Idempotency-Key, in one transaction with the stored response."""
    async with uow:
        outcome = await idempotent(
            uow.session, IDEMPOTENCY, scope=scope, key=key, payload=payload, action=action
        )
        await uow.commit()
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)


async def member_out(uow: UnitOfWork, member: Member) -> MemberOut:
    return MemberOut.of(member, await ledger.balances(uow.session, member.id))


# --- programs ---------------------------------------------------------------------------------------


@router.post(
    "/programs",
    status_code=status.HTTP_201_CREATED,
    response_model=ProgramOut,
    summary="Create a loyalty program",
    description=(
        "A program with its earning base (`points_per_unit` per whole currency unit), pending window "
        "(`pending_days`: points held before they can be spent, e.g. the return window), expiry policy "
        "(never, after N days, end of month/year N ahead in the program's time zone, or after N days of "
        "inactivity) and negative-balance policy for refunds after spending. Its issuer accounts are "
        "opened with it."
    ),
    responses=REFUSALS,
)
async def create_program(
    body: ProgramIn, uow: UowDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        program = await programs.create_program(uow.session, body.model_dump())
        return 201, ProgramOut.of(program).model_dump(mode="json")

    return await idempotent_write(
        uow, scope="create_program", key=idempotency_key, payload=body.model_dump(mode="json"), action=action
    )


@router.get("/programs", response_model=list[ProgramOut], summary="List loyalty programs")
async def list_programs(uow: UowDep) -> list[ProgramOut]:
    async with uow:
        await programs.ensure_default_program(uow.session)
        rows = (await uow.session.scalars(select(Program).order_by(Program.id))).all()
        await uow.commit()
    return [ProgramOut.of(p) for p in rows]


@router.get(
    "/programs/{program_id}",
    response_model=ProgramOut,
    summary="Read a loyalty program",
    responses={404: {"model": Problem, "description": "No such program"}},
)
async def read_program(program_id: str, uow: UowDep) -> ProgramOut:
    async with uow:
        return ProgramOut.of(await programs.get_program(uow.session, program_id))


# --- members ----------------------------------------------------------------------------------------


@router.post(
    "/programs/{program_id}/members",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberOut,
    summary="Enrol a customer",
    description=(
        "Makes the customer a member of the program with a new 16-digit card number (Luhn check digit) "
        "and a referral code of their own. `referral_code` names the member who referred them: both "
        "are rewarded when the referral completes (see the program's referral rules). Enrolling a "
        "member again returns the existing membership with 200. Publishes "
        "`crm.loyalty.member_enrolled.v1`."
    ),
    responses={**REFUSALS, 200: {"model": MemberOut, "description": "Already a member"}},
)
async def enrol(
    program_id: str, body: EnrolIn, uow: UowDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        session = uow.session
        program = await programs.get_program(session, program_id)
        referrer = None
        if body.referral_code:
            referrer = await session.scalar(
                select(Member).where(
                    Member.program_id == program_id, Member.referral_code == body.referral_code.upper()
                )
            )
            if referrer is None:
                raise NotFound(f"no member of {program_id} has referral code {body.referral_code}")
        member, created = await service.enrol_and_announce(
            uow, program, body.customer_id, referred_by=referrer, birth_date=body.birth_date
        )
        return (201 if created else 200), (await member_out(uow, member)).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"enrol:{program_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


@router.get(
    "/programs/{program_id}/members/{member_id}",
    response_model=MemberOut,
    summary="Read a member: card, status, tier and balances",
    responses={404: {"model": Problem, "description": "No such member"}},
)
async def read_member(program_id: str, member_id: str, uow: UowDep) -> MemberOut:
    async with uow:
        member = await programs.get_member(uow.session, member_id)
        if member.program_id != program_id:
            raise NotFound(f"member {member_id} is not in program {program_id}")
        return await member_out(uow, member)


@router.get(
    "/cards/{card_number}",
    response_model=MemberOut,
    summary="Find a member by card number",
    description="Card numbers carry a Luhn check digit: a mistyped number is refused with 422 before lookup.",
    responses={**REFUSALS},
)
async def read_card(card_number: str, uow: UowDep) -> MemberOut:
    if not programs.luhn_valid(card_number):
        raise InvalidInput("path.card_number", "not a valid card number (check digit mismatch)")
    async with uow:
        member = await programs.member_by_card(uow.session, card_number)
        if member.card_status != "active":
            raise NotFound(f"card {card_number} is {member.card_status}", card_status=member.card_status)
        return await member_out(uow, member)


@router.patch(
    "/programs/{program_id}/members/{member_id}",
    response_model=MemberOut,
    summary="Change a member's status or card status",
    description=(
        "Suspend, close or reactivate a membership; block a card, or report it lost (a new card number "
        "is issued at once). Points and tier are not settable here: they follow the ledger and the tier "
        "rules only."
    ),
    responses=REFUSALS,
)
async def patch_member(
    program_id: str, member_id: str, body: MemberPatch, uow: UowDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        member = await programs.get_member(uow.session, member_id, lock=True)
        if member.program_id != program_id:
            raise NotFound(f"member {member_id} is not in program {program_id}")
        if body.status is not None:
            member.status = body.status
        if body.card_status == "lost":
            member.card_status = "active"
            member.card_number = programs.new_card_number()
        elif body.card_status is not None:
            member.card_status = body.card_status
        member.version += 1
        await uow.session.flush()
        return 200, (await member_out(uow, member)).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"patch_member:{member_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


# --- ledger -----------------------------------------------------------------------------------------


async def _history(uow: UnitOfWork, member_id: str, limit: int) -> list[LedgerLineOut]:
    available = ledger.member_account(member_id)
    pending = ledger.member_account(member_id, "pending")
    rows = (
        await uow.session.execute(
            select(LedgerTransaction, LedgerEntry.account_id, LedgerEntry.amount)
            .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
            .where(LedgerEntry.account_id.in_([available, pending]))
            .order_by(LedgerTransaction.created_at.desc(), LedgerEntry.id.desc())
            .limit(limit * 2)
        )
    ).all()
    lines: dict[str, LedgerLineOut] = {}
    for tx, account_id, amount in rows:
        line = lines.get(tx.id)
        if line is None:
            if len(lines) == limit:
                continue
            line = lines[tx.id] = LedgerLineOut(
                transaction_id=tx.id,
                kind=tx.kind,
                reference=tx.reference,
                points=0,
                pending=0,
                reason=tx.reason,
                actor=tx.actor,
                reverses_id=tx.reverses_id,
                created_at=tx.created_at,
            )
        if account_id == available:
            line.points += int(amount)
        else:
            line.pending += int(amount)
    return list(lines.values())


@router.get(
    "/programs/{program_id}/members/{member_id}/transactions",
    response_model=list[LedgerLineOut],
    summary="A member's points history, newest first",
)
async def member_history(
    program_id: str, member_id: str, uow: UowDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[LedgerLineOut]:
    async with uow:
        await programs.get_member(uow.session, member_id)
        return await _history(uow, member_id, limit)


@router.post(
    "/programs/{program_id}/members/{member_id}/adjustments",
    status_code=status.HTTP_201_CREATED,
    response_model=TransactionOut,
    summary="Adjust a member's points with a reason",
    description=(
        "A staff correction: positive points are credited as a new lot (expiring by the program's "
        "policy); negative points are taken oldest-expiring first and may not overdraw the balance. "
        "The reason and the caller (`X-Actor`) are kept on the transaction."
    ),
    responses=REFUSALS,
)
async def adjust(
    program_id: str, member_id: str, body: AdjustIn, uow: UowDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        session = uow.session
        program = await programs.get_program(session, program_id)
        member = await programs.get_member(session, member_id)
        if member.program_id != program_id:
            raise NotFound(f"member {member_id} is not in program {program_id}")
        posted = await ledger.adjust(
            session, program, member, body.points, reason=body.reason, actor=actor_var.get()
        )
        return 201, (await transaction_out(uow, posted.transaction)).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"adjust:{member_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


@router.post(
    "/programs/{program_id}/members/{member_id}/transfers",
    status_code=status.HTTP_201_CREATED,
    response_model=TransactionOut,
    summary="Transfer points to another member",
    description=(
        "Moves available points to another member of the same program. The points keep their expiry "
        "dates. Refused: a transfer to oneself, across programs, more than the balance, and — when the "
        "program's `settings.transfer_limits` set them — fewer than `min_points` "
        "(rule `transfer.min_points`), more than `max_points_per_transfer` (`transfer.max_per_transfer`) "
        "or more than `max_points_per_month` sent in the calendar month of the program's time zone "
        "(`transfer.monthly_limit`, 422, nothing written). Household pool transfers do not count."
    ),
    responses=REFUSALS,
)
async def transfer(
    program_id: str, member_id: str, body: TransferIn, uow: UowDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        session = uow.session
        program = await programs.get_program(session, program_id)
        sender = await programs.get_member(session, member_id)
        receiver = await programs.get_member(session, body.to_member_id)
        if sender.program_id != program_id:
            raise NotFound(f"member {member_id} is not in program {program_id}")
        programs.require_active(sender)
        programs.require_active(receiver)
        await transfers.check_limits(session, program, sender, body.points)
        posted = await ledger.transfer(
            session,
            program,
            sender,
            receiver,
            body.points,
            reference=f"transfer:{member_id}:{idempotency_key or uuid.uuid4()}",
            reason=body.reason,
            actor=actor_var.get(),
        )
        return 201, (await transaction_out(uow, posted.transaction)).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"transfer:{member_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


@router.post(
    "/transactions/{transaction_id}/reversal",
    status_code=status.HTTP_201_CREATED,
    response_model=TransactionOut,
    summary="Reverse a ledger transaction",
    description=(
        "A correction never edits the ledger: it posts a new transaction with every entry negated. "
        "Points the original gave are taken back (refused with 409 if already spent and the program "
        "does not allow a negative balance); points it took are given back to their lots. A "
        "transaction is reversed at most once."
    ),
    responses=REFUSALS,
)
async def reverse(
    transaction_id: str, body: ReverseIn, uow: UowDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        session = uow.session
        original = await session.get(LedgerTransaction, transaction_id)
        if original is None or original.program_id is None:
            raise NotFound(f"transaction {transaction_id} does not exist")
        program = await programs.get_program(session, original.program_id)
        posted = await ledger.reverse(
            session, program, transaction_id, reason=body.reason, actor=actor_var.get()
        )
        return 201, (await transaction_out(uow, posted.transaction)).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"reverse:{transaction_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


async def transaction_out(uow: UnitOfWork, tx: LedgerTransaction) -> TransactionOut:
    entries = (
        await uow.session.scalars(
            select(LedgerEntry).where(LedgerEntry.transaction_id == tx.id).order_by(LedgerEntry.line_no)
        )
    ).all()
    return TransactionOut.of(tx, [EntryOut(account_id=e.account_id, amount=e.amount) for e in entries])


@router.get(
    "/transactions/{transaction_id}",
    response_model=TransactionOut,
    summary="Read a ledger transaction with its entries",
    responses={404: {"model": Problem, "description": "No such transaction"}},
)
async def read_transaction(transaction_id: str, uow: UowDep) -> TransactionOut:
    async with uow:
        tx = await uow.session.get(LedgerTransaction, transaction_id)
        if tx is None:
            raise NotFound(f"transaction {transaction_id} does not exist")
        return await transaction_out(uow, tx)


@router.get(
    "/ledger/check",
    response_model=CheckOut,
    summary="Prove the books",
    description=(
        "Every cached balance equals the sum of its entries, every transaction sums to zero, all "
        "entries together sum to zero, and each member's unexpired lots hold exactly their available "
        "points. `ok` is false with the offending accounts listed otherwise (same as `crm loyalty check`)."
    ),
)
async def check_books(uow: UowDep) -> CheckOut:
    async with uow:
        report = await ledger.check(uow.session)
    return CheckOut(
        ok=report.ok,
        accounts=report.accounts,
        transactions=report.transactions,
        total=report.total,
        drifted_accounts=[
            {"account_id": a, "balance": b, "entries": e} for a, b, e in report.drifted_accounts
        ],
        unbalanced_transactions=[{"transaction_id": t, "sum": s} for t, s in report.unbalanced_transactions],
        lot_mismatches=[{"member_id": m, "available": b, "lots": r} for m, b, r in report.lot_mismatches],
    )


# --- by customer (what the customer 360 and member apps read) ----------------------------------------

customers = APIRouter(prefix="/members", tags=["members"])


@customers.get(
    "/{customer_id}/balance",
    response_model=BalanceOut,
    summary="A customer's points balance in a program",
    responses={404: {"model": Problem, "description": "The customer is not a member of the program"}},
)
async def read_balance(
    customer_id: str, uow: UowDep, program: Annotated[str, Query()] = programs.DEFAULT_PROGRAM
) -> BalanceOut:
    async with uow:
        member = await programs.member_for_customer(uow.session, program, customer_id)
        b = await ledger.balances(uow.session, member.id)
    return BalanceOut(
        customer_id=customer_id,
        program_id=program,
        points=b["available"],
        pending=b["pending"],
        reserved=b["reserved"],
        qualifying=b["qualifying"],
        tier=member.tier,
    )


@customers.get(
    "/{customer_id}/transactions",
    response_model=list[LedgerLineOut],
    summary="A customer's points history in a program, newest first",
)
async def read_history(
    customer_id: str,
    uow: UowDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    program: Annotated[str, Query()] = programs.DEFAULT_PROGRAM,
) -> list[LedgerLineOut]:
    async with uow:
        member = await ledger.member_of(uow.session, program, customer_id)
        if member is None:
            return []
        return await _history(uow, member.id, limit)


@customers.get(
    "/{customer_id}/memberships",
    response_model=list[MemberOut],
    summary="Every program membership of a customer, with balances",
)
async def read_memberships(customer_id: str, uow: UowDep) -> list[MemberOut]:
    async with uow:
        members = (
            await uow.session.scalars(
                select(Member).where(Member.customer_id == customer_id).order_by(Member.program_id)
            )
        ).all()
        return [await member_out(uow, m) for m in members]


@customers.get(
    "/{customer_id}/export", tags=["privacy"], summary="Right of access: the member's points and history"
)
async def export_member(customer_id: str, uow: UowDep, response: Response) -> dict[str, object]:
    async with uow:
        members = (await uow.session.scalars(select(Member).where(Member.customer_id == customer_id))).all()
        out: list[dict[str, object]] = []
        for m in members:
            history = await _history(uow, m.id, 1_000_000)
            out.append(
                {
                    "membership": (await member_out(uow, m)).model_dump(mode="json"),
                    "transactions": [h.model_dump(mode="json") for h in history],
                }
            )
    default = next((o for o in out if o["membership"]["program_id"] == programs.DEFAULT_PROGRAM), None)  # type: ignore[index]
    points = default["membership"]["balances"]["available"] if default else None  # type: ignore[index]
    return {"points": points, "memberships": out}
