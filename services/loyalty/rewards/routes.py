"""Rewards' HTTP routes: the staff catalogue, the member's catalogue and quotes (every cost, fee and
restriction shown before redemption), two-phase redemptions and the partner network. Every write
takes an `Idempotency-Key`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import JSONResponse

from services.loyalty import programs
from services.loyalty.rewards import domain, service
from services.loyalty.rewards.domain import Reason
from services.loyalty.rewards.models import Partner
from services.loyalty.rewards.schemas import (
    AccrualIn,
    CancelIn,
    CatalogueItem,
    CatalogueOut,
    ConfirmIn,
    PartnerIn,
    PartnerOut,
    QuoteOut,
    ReasonOut,
    RedeemIn,
    RedemptionOut,
    RewardIn,
    RewardOut,
)
from services.loyalty.routes import idempotent_write, transaction_out
from services.loyalty.schemas import TransactionOut
from shared.errors import PROBLEM_RESPONSES, InvalidInput, Problem
from shared.idempotency import IdempotencyKey
from shared.runtime import UowDep
from shared.uow import UnitOfWork

router = APIRouter(tags=["rewards"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such program, member, reward, redemption or partner"}
}
RULES: dict[int | str, dict[str, Any]] = {
    **PROBLEM_RESPONSES,
    **NOT_FOUND,
    409: {
        "model": Problem,
        "description": (
            "Not enough points (`insufficient-points`), out of stock (`rule: reward.out_of_stock`), a "
            "reservation expired or already settled (`rule: redemption.expired`, `redemption.confirmed`, "
            "...), or the Idempotency-Key was used for another request"
        ),
    },
    422: {
        "model": Problem,
        "description": (
            "Invalid input (negative or fractional points), or a program rule refused it; `rule` names "
            "it: reward.inactive, reward.window, reward.blackout, reward.tier, reward.segment, "
            "reward.member_limit, member.status, partner.kind, partner.status, "
            "redemption.payment_required"
        ),
    },
}
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description='The version of your read (e.g. "3"): 412 if it changed since'),
]


def _version(value: str | None) -> int | None:
    if value is None or value.strip() == "*":
        return None
    try:
        return int(value.strip().removeprefix("W/").strip('"'))
    except ValueError as exc:
        raise InvalidInput("header.If-Match", 'give the version of your read, e.g. "3"') from exc


def _reasons(reasons: list[Reason]) -> list[ReasonOut]:
    return [ReasonOut(rule=r.rule, detail=r.detail) for r in reasons]


# --- staff catalogue --------------------------------------------------------------------------------


@router.post(
    "/programs/{program_id}/rewards",
    status_code=status.HTTP_201_CREATED,
    response_model=RewardOut,
    summary="Add a reward to the catalogue",
    description=(
        "A discount, voucher, free product, upgrade, experience or partner reward. Its full price is "
        "explicit: `cost_points`, optionally money on top (`cash_minor` + `currency`), `fees_minor` and "
        "`terms` — all shown to members before they redeem. Stock (null: unlimited), a per-member limit "
        "per calendar period, an availability window, blackout dates (local dates in the program's "
        "time zone) and eligibility by tier or segment restrict who can redeem it when. A partner "
        "reward names a redemption partner: its points go to that partner's redeemed account."
    ),
    responses=RULES,
)
async def create_reward(
    program_id: str, body: RewardIn, uow: UowDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        reward = await service.create_reward(uow.session, program_id, body)
        return 201, RewardOut.of(reward).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"create_reward:{program_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


@router.get(
    "/programs/{program_id}/rewards",
    response_model=list[RewardOut],
    summary="List the program's rewards (staff view)",
    description="Every reward of the program, cheapest first; `status` filters (draft, active, retired).",
    responses=NOT_FOUND,
)
async def list_rewards(
    program_id: str,
    uow: UowDep,
    status_: Annotated[str | None, Query(alias="status", pattern="^(draft|active|retired)$")] = None,
) -> list[RewardOut]:
    async with uow:
        return [RewardOut.of(r) for r in await service.list_rewards(uow.session, program_id, status_)]


@router.get(
    "/programs/{program_id}/rewards/{reward_id}",
    response_model=RewardOut,
    summary="Read a reward",
    description="The reward with its stock: `stock` units left, `reserved` held, `available` reservable.",
    responses=NOT_FOUND,
)
async def read_reward(program_id: str, reward_id: str, uow: UowDep) -> RewardOut:
    async with uow:
        return RewardOut.of(await service.get_reward(uow.session, program_id, reward_id))


@router.put(
    "/programs/{program_id}/rewards/{reward_id}",
    response_model=RewardOut,
    summary="Replace a reward's definition",
    description=(
        "Replaces every field (send the whole definition). Open reservations keep the price they were "
        "given. `stock` cannot go below the units held by open reservations (rule `reward.stock`). "
        "With `If-Match`, refused with 412 if someone changed the reward since your read."
    ),
    responses={**RULES, 412: {"model": Problem, "description": "Stale If-Match"}},
)
async def update_reward(
    program_id: str,
    reward_id: str,
    body: RewardIn,
    uow: UowDep,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> JSONResponse:
    expected = _version(if_match)

    async def action() -> tuple[int, Any]:
        reward = await service.update_reward(
            uow.session, program_id, reward_id, body, expected_version=expected
        )
        return 200, RewardOut.of(reward).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"update_reward:{reward_id}",
        key=idempotency_key,
        payload={"body": body.model_dump(mode="json"), "if_match": expected},
        action=action,
    )


# --- what the member sees ---------------------------------------------------------------------------


@router.get(
    "/programs/{program_id}/members/{member_id}/catalogue",
    response_model=CatalogueOut,
    summary="The catalogue as a member sees it",
    description=(
        "Every active reward with what it costs (points, money, fees), its terms and restrictions in "
        "plain words, and whether this member can redeem it now; if not, `reasons` name each rule "
        "that refuses it (e.g. `reward.blackout`, `reward.tier`, `balance.insufficient`). Nothing is "
        "hidden until after redemption."
    ),
    responses=NOT_FOUND,
)
async def member_catalogue(program_id: str, member_id: str, uow: UowDep) -> CatalogueOut:
    async with uow:
        _, member, available, items = await service.catalogue(uow.session, program_id, member_id)
    return CatalogueOut(
        program_id=program_id,
        member_id=member_id,
        available_points=available,
        tier=member.tier,
        items=[
            CatalogueItem(
                reward=RewardOut.of(reward),
                redeemable=not why,
                reasons=_reasons(why),
                restrictions=domain.restrictions(reward),
                total_cash_minor=reward.cash_minor + reward.fees_minor,
            )
            for reward, why in items
        ],
    )


@router.get(
    "/programs/{program_id}/rewards/{reward_id}/quote",
    response_model=QuoteOut,
    summary="Quote a reward for a member",
    description=(
        "What redeeming the reward would cost this member now — points, money on top, fees, the "
        "total money due — the terms and restrictions, the balance left afterwards, how long a "
        "reservation holds the points, and the reasons it cannot be redeemed (if any). Writes nothing."
    ),
    responses=NOT_FOUND,
)
async def quote(
    program_id: str, reward_id: str, uow: UowDep, member_id: Annotated[str, Query(min_length=1)]
) -> QuoteOut:
    async with uow:
        session = uow.session
        program = await programs.get_program(session, program_id)
        member = await service.member_in(session, program_id, member_id)
        reward = await service.get_reward(session, program_id, reward_id)
        sit, why = await service.evaluate(session, program, member, reward, datetime.now(UTC))
    return QuoteOut(
        reward_id=reward.id,
        member_id=member.id,
        points=reward.cost_points,
        cash_minor=reward.cash_minor,
        fees_minor=reward.fees_minor,
        total_cash_minor=reward.cash_minor + reward.fees_minor,
        currency=reward.currency,
        terms=reward.terms,
        restrictions=domain.restrictions(reward),
        available_points=sit.available_points,
        balance_after=sit.available_points - reward.cost_points,
        hold_minutes=service.hold_minutes(program),
        redeemable=not why,
        reasons=_reasons(why),
    )


# --- redemptions ------------------------------------------------------------------------------------


@router.post(
    "/programs/{program_id}/members/{member_id}/redemptions",
    status_code=status.HTTP_201_CREATED,
    response_model=RedemptionOut,
    summary="Redeem a reward (reserve, or redeem now)",
    description=(
        "Reserves the reward: its points move from the member's available to reserved balance (taken "
        "from the oldest-expiring lots) and one unit of stock is held, until `expires_at` (the "
        "program's `reservation_hold_minutes` setting, 15 by default). Confirm it to spend the "
        "points and get the voucher code, or cancel it; unconfirmed it expires and everything is "
        "given back. With `confirm: true` the reward is redeemed at once (reserve and confirm in one "
        "transaction). Refused, with nothing written, with 409 if the balance cannot pay "
        "(`insufficient-points`) or the reward is out of stock, and 422 naming the rule otherwise."
    ),
    responses=RULES,
)
async def redeem(
    program_id: str, member_id: str, body: RedeemIn, uow: UowDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        redemption = await service.redeem(
            uow,
            program_id,
            member_id,
            body.reward_id,
            confirm_now=body.confirm,
            payment_reference=body.payment_reference,
        )
        return 201, RedemptionOut.of(redemption).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"redeem:{member_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


@router.get(
    "/programs/{program_id}/members/{member_id}/redemptions",
    response_model=list[RedemptionOut],
    summary="A member's redemptions, newest first",
    description="Reservations, confirmations (with voucher codes), cancellations and expiries; "
    "`status` filters.",
    responses=NOT_FOUND,
)
async def member_redemptions(
    program_id: str,
    member_id: str,
    uow: UowDep,
    status_: Annotated[
        str | None, Query(alias="status", pattern="^(reserved|confirmed|cancelled|expired)$")
    ] = None,
) -> list[RedemptionOut]:
    async with uow:
        rows = await service.member_redemptions(uow.session, program_id, member_id, status_)
    return [RedemptionOut.of(r) for r in rows]


@router.get(
    "/redemptions/{redemption_id}",
    response_model=RedemptionOut,
    summary="Read a redemption",
    description="Its status, the price agreed at reservation, when the hold expires, the ledger "
    "transactions that reserved, confirmed or released its points, and its voucher code once confirmed.",
    responses=NOT_FOUND,
)
async def read_redemption(redemption_id: str, uow: UowDep) -> RedemptionOut:
    async with uow:
        return RedemptionOut.of(await service.get_redemption(uow.session, redemption_id))


@router.post(
    "/redemptions/{redemption_id}/confirm",
    response_model=RedemptionOut,
    summary="Confirm a reservation",
    description=(
        "Spends the reserved points (to the program's redeemed account, or the partner's for a partner "
        "reward), consumes the held unit of stock and issues a unique voucher code (12 characters of "
        "an unambiguous alphabet, `XXXX-XXXX-XXXX`; every kind but an upgrade). Publishes "
        "`crm.loyalty.points_redeemed.v1` and `crm.loyalty.reward_redeemed.v1`. A reward with money "
        "or fees needs `payment_reference`. An expired reservation is refused with 409 "
        "(`rule: redemption.expired`): its points are (or are about to be) given back."
    ),
    responses=RULES,
)
async def confirm(
    redemption_id: str, uow: UowDep, body: ConfirmIn | None = None, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    body = body or ConfirmIn()

    async def action() -> tuple[int, Any]:
        redemption = await service.confirm(uow, redemption_id, payment_reference=body.payment_reference)
        return 200, RedemptionOut.of(redemption).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"confirm_redemption:{redemption_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


@router.post(
    "/redemptions/{redemption_id}/cancel",
    response_model=RedemptionOut,
    summary="Cancel a reservation",
    description=(
        "Gives the reserved points back into the lots they came from (with their original expiry "
        "dates) and the held unit back to stock. Only a reservation can be cancelled (409 otherwise)."
    ),
    responses=RULES,
)
async def cancel(
    redemption_id: str, uow: UowDep, body: CancelIn | None = None, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    body = body or CancelIn()

    async def action() -> tuple[int, Any]:
        redemption = await service.cancel(uow, redemption_id, reason=body.reason)
        return 200, RedemptionOut.of(redemption).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"cancel_redemption:{redemption_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


# --- partners ---------------------------------------------------------------------------------------


async def _partner_out(uow: UnitOfWork, partner: Partner) -> PartnerOut:
    issued, redeemed = await service.partner_balances(uow.session, partner.id)
    return PartnerOut.of(partner, issued, redeemed)


@router.post(
    "/programs/{program_id}/partners",
    status_code=status.HTTP_201_CREATED,
    response_model=PartnerOut,
    summary="Add a partner",
    description=(
        "An accrual partner (members earn points with it: the earn network), a redemption partner "
        "(members spend points on its rewards: the redemption network) or both. Its own liability "
        "accounts (`issued`, `redeemed`) are opened in the ledger with it."
    ),
    responses=RULES,
)
async def create_partner(
    program_id: str, body: PartnerIn, uow: UowDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        partner = await service.create_partner(uow.session, program_id, body)
        return 201, (await _partner_out(uow, partner)).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"create_partner:{program_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


@router.get(
    "/programs/{program_id}/partners",
    response_model=list[PartnerOut],
    summary="List the program's partners with their balances",
    description="Each partner with the points it issued to members (its liability) and the points "
    "members redeemed with it, from its own ledger accounts.",
    responses=NOT_FOUND,
)
async def list_partners(program_id: str, uow: UowDep) -> list[PartnerOut]:
    async with uow:
        return [await _partner_out(uow, p) for p in await service.list_partners(uow.session, program_id)]


@router.get(
    "/programs/{program_id}/partners/{partner_id}",
    response_model=PartnerOut,
    summary="Read a partner with its balances",
    description="The partner with the points it issued and the points redeemed with it.",
    responses=NOT_FOUND,
)
async def read_partner(program_id: str, partner_id: str, uow: UowDep) -> PartnerOut:
    async with uow:
        return await _partner_out(uow, await service.get_partner(uow.session, program_id, partner_id))


@router.post(
    "/programs/{program_id}/partners/{partner_id}/accruals",
    status_code=status.HTTP_201_CREATED,
    response_model=TransactionOut,
    summary="Credit points a member earned with an accrual partner",
    description=(
        "The partner's `issued` account is the other side of the entry (its liability, not the "
        "program's). Credited once per partner `reference`: sending it again returns the first "
        "transaction with 200; the same reference with another member or amount is a 409. Points "
        "are whole and positive. Publishes `crm.loyalty.points_earned.v1`."
    ),
    responses={**RULES, 200: {"model": TransactionOut, "description": "Already credited"}},
)
async def accrue(
    program_id: str,
    partner_id: str,
    body: AccrualIn,
    uow: UowDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        transaction, created = await service.accrue(uow, program_id, partner_id, body)
        return (201 if created else 200), (await transaction_out(uow, transaction)).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"partner_accrual:{partner_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )
