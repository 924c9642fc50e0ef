"""HTTP routes of programs' rules: earning rules (create, list, read, replace, deactivate), the dry run,
custom bonus events, tier definitions and a member's tier status. Every write accepts an
`Idempotency-Key`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, status
from fastapi.responses import JSONResponse

from services.loyalty import earning, ledger, programs
from services.loyalty.models import Member
from services.loyalty.routes import REFUSALS, idempotent_write
from services.loyalty.rules import engine, tiers
from services.loyalty.rules import service as rules
from services.loyalty.rules.schemas import (
    RULE_EXAMPLES,
    BonusEventIn,
    BonusEventOut,
    DryRunIn,
    DryRunOut,
    RuleIn,
    RuleOut,
    TierProgressOut,
    TiersIn,
    TiersOut,
    TierStatusOut,
)
from shared.errors import PROBLEM_RESPONSES, InvalidInput, NotFound, Problem
from shared.idempotency import IdempotencyKey
from shared.runtime import UowDep

router = APIRouter(tags=["loyalty rules"])

ORDER = (engine.__doc__ or "").split("Evaluation order", 1)[-1].split("Points are integers", 1)[0]
EVALUATION_ORDER = "Evaluation order" + ORDER

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **PROBLEM_RESPONSES,
    404: {"model": Problem, "description": "No such program, member or rule"},
}


async def _member_in(uow: UowDep, program_id: str, member_id: str) -> Member:
    member = await programs.get_member(uow.session, member_id)
    if member.program_id != program_id:
        raise NotFound(f"member {member_id} is not in program {program_id}", member_id=member_id)
    return member


# --- rules ------------------------------------------------------------------------------------------


@router.post(
    "/programs/{program_id}/rules",
    status_code=status.HTTP_201_CREATED,
    response_model=RuleOut,
    summary="Create an earning rule",
    description=(
        "Adds a rule to the program: a `multiplier` (rational factor on matching purchases or lines), "
        "`bonus_points` (fixed points per purchase, line or unit), an `event_bonus` (enrolment, birthday, "
        "referral for each side, survey answered, custom events) or a `cap` (most points per member and "
        "day, week, month or year). The definition is validated for its kind; a 422 names the exact "
        "field (e.g. `body.definition.factor.denominator`, `body.definition.conditions.tiers.0` for an "
        "unknown tier).\n\n" + EVALUATION_ORDER
    ),
    responses=REFUSALS,
)
async def create_rule(
    program_id: str,
    body: Annotated[RuleIn, Body(openapi_examples=RULE_EXAMPLES)],
    uow: UowDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        program = await programs.get_program(uow.session, program_id)
        rule = await rules.create_rule(uow.session, program, body.model_dump())
        return 201, RuleOut.of(rule).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"create_rule:{program_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


@router.get(
    "/programs/{program_id}/rules",
    response_model=list[RuleOut],
    summary="List a program's earning rules",
    description=(
        "In evaluation order: product bonuses, multipliers, caps, then event bonuses; within a kind by "
        "priority, name, id. Deactivated rules are listed with `include_inactive=true`."
    ),
    responses=NOT_FOUND,
)
async def list_rules(
    program_id: str, uow: UowDep, include_inactive: Annotated[bool, Query()] = False
) -> list[RuleOut]:
    async with uow:
        await programs.get_program(uow.session, program_id)
        rows = await rules.list_rules(uow.session, program_id, include_inactive=include_inactive)
    return [RuleOut.of(r) for r in rows]


@router.get(
    "/programs/{program_id}/rules/{rule_id}",
    response_model=RuleOut,
    summary="Read an earning rule",
    description="The rule with its normalised definition (defaults filled in), validity window and version.",
    responses=NOT_FOUND,
)
async def read_rule(program_id: str, rule_id: str, uow: UowDep) -> RuleOut:
    async with uow:
        return RuleOut.of(await rules.get_rule(uow.session, program_id, rule_id))


@router.put(
    "/programs/{program_id}/rules/{rule_id}",
    response_model=RuleOut,
    summary="Replace an earning rule",
    description=(
        "Replaces the rule's name, kind, priority, definition, validity window and active flag "
        "(validated as on creation); `version` grows by one. Points already earned are not revisited."
    ),
    responses=REFUSALS,
)
async def replace_rule(
    program_id: str,
    rule_id: str,
    body: Annotated[RuleIn, Body(openapi_examples=RULE_EXAMPLES)],
    uow: UowDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        program = await programs.get_program(uow.session, program_id)
        rule = await rules.replace_rule(uow.session, program, rule_id, body.model_dump())
        return 200, RuleOut.of(rule).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"replace_rule:{rule_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


@router.delete(
    "/programs/{program_id}/rules/{rule_id}",
    response_model=RuleOut,
    summary="Deactivate an earning rule",
    description=(
        "Rules are never deleted (ledger transactions name the rules that fired): the rule is "
        "deactivated and stops applying at once. Deactivating twice changes nothing."
    ),
    responses=NOT_FOUND,
)
async def deactivate_rule(
    program_id: str, rule_id: str, uow: UowDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        rule = await rules.deactivate_rule(uow.session, program_id, rule_id)
        return 200, RuleOut.of(rule).model_dump(mode="json")

    return await idempotent_write(
        uow, scope=f"deactivate_rule:{rule_id}", key=idempotency_key, payload={}, action=action
    )


# --- dry run ----------------------------------------------------------------------------------------


@router.post(
    "/programs/{program_id}/dry-run",
    response_model=DryRunOut,
    summary="What a purchase would earn, and which rules fire",
    description=(
        "Evaluates a purchase exactly as earning does (same code, same facts: the member's tier, "
        "segments and what they already earned towards caps) and writes nothing. Give `member_id` or "
        "`customer_id` to evaluate as that member (a customer who is not a member is evaluated without "
        "tier or caps); neither evaluates an anonymous purchase.\n\n" + EVALUATION_ORDER
    ),
    responses=NOT_FOUND,
)
async def dry_run(
    program_id: str,
    body: Annotated[
        DryRunIn,
        Body(
            openapi_examples={
                "purchase": {
                    "summary": "Two pairs of shoes in store",
                    "value": {
                        "customer_id": "0b6f3c5e-8a47-4c1a-9d8e-3f2a1b4c5d6e",
                        "purchase": {
                            "currency": "EUR",
                            "total_minor": 9998,
                            "channel": "store",
                            "occurred_at": "2026-12-03T10:00:00Z",
                            "lines": [
                                {"sku": "SKU-1", "category": "shoes", "quantity": 2, "unit_price_minor": 4999}
                            ],
                        },
                    },
                }
            }
        ),
    ],
    uow: UowDep,
) -> DryRunOut:
    async with uow:  # never committed: nothing is written
        session = uow.session
        program = await programs.get_program(session, program_id)
        member: Member | None = None
        if body.member_id is not None:
            member = await _member_in(uow, program_id, body.member_id)
        elif body.customer_id is not None:
            member = await ledger.member_of(session, program_id, body.customer_id)
        customer_id = member.customer_id if member is not None else body.customer_id
        p = body.purchase
        facts = earning.PurchaseFacts(
            purchase_id="dry-run",
            customer_id=customer_id or "",
            occurred_at=p.occurred_at or datetime.now(UTC),
            currency=p.currency,
            total_minor=p.total_minor,
            channel=p.channel,
            lines=tuple(
                earning.PurchaseLineFacts(line.sku, line.category, line.quantity, line.unit_price_minor)
                for line in p.lines
            ),
        )
        outcome = await earning.evaluate(session, program, member, facts)
    return DryRunOut(
        program_id=program_id,
        member_id=member.id if member is not None else None,
        customer_id=customer_id,
        tier=member.tier if member is not None else None,
        points=outcome.points,
        qualifying=outcome.qualifying,
        rules=DryRunOut.fired(outcome),
    )


# --- bonus events -----------------------------------------------------------------------------------


@router.post(
    "/programs/{program_id}/members/{member_id}/bonus-events",
    status_code=status.HTTP_201_CREATED,
    response_model=BonusEventOut,
    summary="Record a custom bonus event for a member",
    description=(
        "Grants the bonus of the program's `event_bonus` rules for `custom:<event>` (e.g. an app "
        "download), once per member and `reference`: 201 when points were posted, 200 when nothing new "
        "was (`duplicate` true: that reference was already rewarded; or 0 points: out of the rules' "
        "validity window, limit or cap). 422 on `body.event` when no active rule names the event. "
        "Publishes `crm.loyalty.points_earned` with reason `bonus:custom:<event>`."
    ),
    responses={**REFUSALS, 200: {"model": BonusEventOut, "description": "Nothing new was granted"}},
)
async def bonus_event(
    program_id: str,
    member_id: str,
    body: BonusEventIn,
    uow: UowDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        program = await programs.get_program(uow.session, program_id)
        member = await _member_in(uow, program_id, member_id)
        programs.require_active(member)
        granted = await rules.custom_event(uow, program, member, body.event, body.reference)
        posted_now = granted.transaction is not None and not granted.duplicate
        out = BonusEventOut(
            event=granted.event,
            reference=granted.reference,
            granted=posted_now,
            duplicate=granted.duplicate,
            points=granted.points if granted.transaction is not None else 0,
            transaction_id=granted.transaction.id if granted.transaction is not None else None,
            rules=DryRunOut.fired(granted.earning),
        )
        return (201 if posted_now else 200), out.model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"bonus_event:{member_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


# --- tiers ------------------------------------------------------------------------------------------


def _tiers_out(program_id: str, program: Any) -> TiersOut:
    return TiersOut(
        program_id=program_id,
        tiers=program.tiers or [],
        grace_days=tiers.grace_days(program),
        warning_days=tiers.warning_days(program),
        version=program.version,
    )


@router.get(
    "/programs/{program_id}/tiers",
    response_model=TiersOut,
    summary="A program's tier definitions",
    description=(
        "The program's tiers, lowest first, with their qualification (threshold, measure, window) and "
        "benefits, the grace days before a downgrade and the warning lead time."
    ),
    responses=NOT_FOUND,
)
async def read_tiers(program_id: str, uow: UowDep) -> TiersOut:
    async with uow:
        program = await programs.get_program(uow.session, program_id)
        return _tiers_out(program_id, program)


@router.put(
    "/programs/{program_id}/tiers",
    response_model=TiersOut,
    summary="Define a program's tiers",
    description=(
        "Replaces the program's tiers (lowest first) with their qualification (threshold on qualifying "
        "points or spend, over a rolling window of days or the calendar year), their benefits (earn "
        "multiplier, reward access, perks), the grace period before a downgrade and the warning lead "
        "time. The program's `version` grows by one. Upgrades happen at once when a member's measure "
        "reaches a threshold; downgrades only at a period's review (its end plus the grace days), with "
        "a `tier_downgrade_warning` beforehand. Refused while an active rule names a dropped tier."
    ),
    responses=REFUSALS,
)
async def put_tiers(
    program_id: str, body: TiersIn, uow: UowDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        program = await programs.get_program(uow.session, program_id)
        await rules.set_tiers(
            uow.session, program, body.tiers, grace=body.grace_days, warning=body.warning_days
        )
        return 200, _tiers_out(program_id, program).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"put_tiers:{program_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


@router.get(
    "/programs/{program_id}/members/{member_id}/tier",
    response_model=TierStatusOut,
    summary="A member's tier: measures, the next tier and the next review",
    description=(
        "The member's tier and its benefits, their measure for every tier over its window, what the "
        "tier above still takes, when the current period ends and is reviewed (end + grace days), and "
        "the tier they would keep if reviewed on today's measures (`will_downgrade`)."
    ),
    responses=NOT_FOUND,
)
async def member_tier(
    program_id: str,
    member_id: str,
    uow: UowDep,
    at: Annotated[datetime | None, Query(description="Evaluate as of this instant (default now)")] = None,
) -> TierStatusOut:
    if at is not None and at.tzinfo is None:
        raise InvalidInput("query.at", "give a timezone (e.g. 2026-12-31T00:00:00Z)")
    now = at or datetime.now(UTC)
    async with uow:
        program = await programs.get_program(uow.session, program_id)
        member = await _member_in(uow, program_id, member_id)
        state = await tiers.status(uow.session, program, member, now)
    tier_def = tiers.definition(program, member.tier)

    def out(p: tiers.Progress) -> TierProgressOut:
        return TierProgressOut(
            tier=p.tier,
            measure=p.measure,
            value=p.value,
            threshold=p.threshold,
            missing=p.missing,
            qualified=p.qualified,
            window_start=p.window_start,
            window_end=p.window_end,
        )

    return TierStatusOut(
        program_id=program_id,
        member_id=member.id,
        tier=member.tier,
        tier_since=member.tier_since,
        benefits=(tier_def or {}).get("benefits") or {},
        qualified_tier=state.qualified,
        next_tier=out(state.next_tier) if state.next_tier is not None else None,
        progress=[out(p) for p in state.progress],
        period_end=state.period_end,
        review_at=state.review_at,
        expected_tier=state.expected,
        will_downgrade=tiers.rank(program, state.expected) < tiers.rank(program, member.tier),
    )
