"""Tiers: qualification, immediate upgrades, downgrades only at a period's review, warnings.

A program's tiers (`Program.tiers`) are listed lowest first. Each names its `threshold` on a `measure`
over a `window`:

- `qualifying_points`: the sum of the member's qualifying-account entries in the window (earning
  credits them, clawbacks take them back);
- `spend_minor`: the purchase totals of the member's earn transactions in the window, less what
  refunds of those purchases took back (minor units; a program without a currency adds them as they
  come);
- windows: `{"kind": "rolling_days", "days": N}` (the N days up to the moment of evaluation) or
  `{"kind": "calendar_year"}` (the program's local calendar year so far).

A member qualifies for the highest tier whose threshold their measure reaches. **Upgrades** happen at
once, after each earning (`requalify`). **Downgrades** never happen mid-period: the member's tier is
reviewed at the end of its period plus `tier_grace_days` (program setting): the period ends every
`days` days after `tier_since` for a rolling window, at the end of each calendar year for a calendar
window. At the review the member keeps the best tier they qualified for either over the period that
ended or over the window as of the review (so activity during the grace period counts); lower than
their tier means a downgrade (`tier_changed`, direction downgrade). `tier_warning_days` (default 30)
before a review, a member on course to drop gets one `tier_downgrade_warning` for that period.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import ledger
from services.loyalty.models import LedgerEntry, LedgerTransaction, Member, Program
from services.loyalty.rules.engine import TierMultiplier, factor_of, validate_factor
from services.loyalty.rules.models import TierReview
from shared.contracts.loyalty import TierChanged, TierDowngradeWarning
from shared.errors import InvalidInput
from shared.logging import get_logger
from shared.uow import UnitOfWork, UnitOfWorkFactory

log = get_logger(__name__)

MEASURES = ("qualifying_points", "spend_minor")
WINDOWS = ("rolling_days", "calendar_year")
TIER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
DEFAULT_WARNING_DAYS = 30
_EPSILON = timedelta(microseconds=1)


# --- definitions ------------------------------------------------------------------------------------


def validate_tiers(tiers: Any, path: str = "body.tiers") -> list[dict[str, Any]]:
    """Check tier definitions (lowest first) and return them normalised. Errors name the field."""
    if not isinstance(tiers, list):
        raise InvalidInput(path, "must be a list of tier definitions, lowest first")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, tier in enumerate(tiers):
        where = f"{path}.{i}"
        if not isinstance(tier, Mapping):
            raise InvalidInput(where, "must be an object")
        for key in tier:
            if key not in ("name", "threshold", "measure", "window", "benefits"):
                raise InvalidInput(f"{where}.{key}", "unknown field")
        name = tier.get("name")
        if not isinstance(name, str) or not TIER_NAME.match(name):
            raise InvalidInput(f"{where}.name", "must be 1-40 characters: a-z, 0-9, _ and -")
        if name in seen:
            raise InvalidInput(f"{where}.name", f"duplicate tier name {name!r}")
        seen.add(name)
        threshold = tier.get("threshold")
        if not isinstance(threshold, int) or isinstance(threshold, bool):
            raise InvalidInput(f"{where}.threshold", "must be a whole number")
        if threshold <= 0:
            raise InvalidInput(f"{where}.threshold", "must be > 0")
        measure = tier.get("measure", "qualifying_points")
        if measure not in MEASURES:
            raise InvalidInput(f"{where}.measure", f"must be one of {', '.join(MEASURES)}")
        window = _validate_window(tier.get("window"), f"{where}.window")
        benefits = _validate_benefits(tier.get("benefits") or {}, f"{where}.benefits")
        previous = out[-1] if out else None
        if previous is not None and previous["measure"] == measure and threshold <= previous["threshold"]:
            raise InvalidInput(
                f"{where}.threshold",
                f"must be greater than the tier below ({previous['name']}: {previous['threshold']})",
            )
        out.append(
            {"name": name, "threshold": threshold, "measure": measure, "window": window, "benefits": benefits}
        )
    return out


def _validate_window(window: Any, path: str) -> dict[str, Any]:
    if not isinstance(window, Mapping):
        raise InvalidInput(path, 'must be {"kind": "rolling_days", "days": N} or {"kind": "calendar_year"}')
    kind = window.get("kind")
    if kind not in WINDOWS:
        raise InvalidInput(f"{path}.kind", f"must be one of {', '.join(WINDOWS)}")
    if kind == "calendar_year":
        for key in window:
            if key != "kind":
                raise InvalidInput(f"{path}.{key}", "unknown field")
        return {"kind": kind}
    for key in window:
        if key not in ("kind", "days"):
            raise InvalidInput(f"{path}.{key}", "unknown field")
    days = window.get("days")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3660:
        raise InvalidInput(f"{path}.days", "must be a whole number of days from 1 to 3660")
    return {"kind": kind, "days": days}


def _validate_benefits(benefits: Any, path: str) -> dict[str, Any]:
    if not isinstance(benefits, Mapping):
        raise InvalidInput(path, "must be an object")
    out: dict[str, Any] = {}
    for key, value in benefits.items():
        if key == "earn_multiplier":
            out[key] = validate_factor(value, f"{path}.earn_multiplier")
        elif key in ("reward_access", "perks"):
            if not isinstance(value, list) or not all(
                isinstance(v, str) and 0 < len(v) <= 120 for v in value
            ):
                raise InvalidInput(f"{path}.{key}", "must be a list of strings (1-120 characters)")
            out[key] = list(dict.fromkeys(value))
        else:
            raise InvalidInput(
                f"{path}.{key}", "unknown benefit (allowed: earn_multiplier, reward_access, perks)"
            )
    return out


def tier_names(program: Program) -> list[str]:
    return [t["name"] for t in program.tiers or []]


def definition(program: Program, name: str | None) -> dict[str, Any] | None:
    return next((t for t in program.tiers or [] if t["name"] == name), None)


def rank(program: Program, name: str | None) -> int:
    names = tier_names(program)
    return names.index(name) if name in names else -1


def multiplier_for(program: Program, tier: str | None) -> TierMultiplier | None:
    tier_def = definition(program, tier)
    if tier_def is None or tier is None:
        return None
    factor = (tier_def.get("benefits") or {}).get("earn_multiplier")
    return TierMultiplier(tier, factor_of(factor)) if factor else None


def grace_days(program: Program) -> int:
    return int((program.settings or {}).get("tier_grace_days", 0))


def warning_days(program: Program) -> int:
    return int((program.settings or {}).get("tier_warning_days", DEFAULT_WARNING_DAYS))


# --- windows and periods ----------------------------------------------------------------------------


def window(tier_def: Mapping[str, Any], at: datetime, timezone: str) -> tuple[datetime, datetime]:
    """The window a tier's measure is taken over as of `at`: [start, at] (inclusive of `at`)."""
    spec = tier_def["window"]
    if spec["kind"] == "rolling_days":
        return at - timedelta(days=int(spec["days"])), at
    zone = ZoneInfo(timezone)
    year = (at - _EPSILON).astimezone(zone).year  # at a year's first instant: the year that just ended
    return datetime(year, 1, 1, tzinfo=zone).astimezone(UTC), at


def _jan_first(year: int, timezone: str) -> datetime:
    return datetime(year, 1, 1, tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def due_period_end(
    tier_def: Mapping[str, Any], tier_since: datetime, grace: int, now: datetime, timezone: str
) -> datetime | None:
    """The latest end of a tier period (counted from `tier_since`) whose review (end + grace) is due."""
    spec = tier_def["window"]
    cutoff = now - timedelta(days=grace)
    if spec["kind"] == "rolling_days":
        length = timedelta(days=int(spec["days"]))
        periods = (cutoff - tier_since) // length
        return tier_since + periods * length if periods >= 1 else None
    zone = ZoneInfo(timezone)
    year = cutoff.astimezone(zone).year
    if year <= tier_since.astimezone(zone).year:
        return None
    return _jan_first(year, timezone)


def next_period_end(
    tier_def: Mapping[str, Any], tier_since: datetime, grace: int, now: datetime, timezone: str
) -> datetime:
    """The end of the tier period whose review (end + grace) comes next after `now`."""
    spec = tier_def["window"]
    cutoff = now - timedelta(days=grace)
    if spec["kind"] == "rolling_days":
        length = timedelta(days=int(spec["days"]))
        periods = max((cutoff - tier_since) // length, 0)
        return tier_since + (periods + 1) * length
    zone = ZoneInfo(timezone)
    year = max(cutoff.astimezone(zone).year, tier_since.astimezone(zone).year)
    return _jan_first(year + 1, timezone)


# --- measures ---------------------------------------------------------------------------------------


async def measure(session: AsyncSession, member_id: str, kind: str, start: datetime, end: datetime) -> int:
    """A member's qualifying points or net spend over [start, end]."""
    if kind == "qualifying_points":
        total = await session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0))
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(
                LedgerTransaction.member_id == member_id,
                LedgerEntry.account_id == ledger.member_account(member_id, "qualifying"),
                LedgerTransaction.created_at >= start,
                LedgerTransaction.created_at <= end,
            )
        )
        return int(total or 0)
    earned = (
        await session.scalars(
            select(LedgerTransaction.details).where(
                LedgerTransaction.member_id == member_id,
                LedgerTransaction.kind == "earn",
                LedgerTransaction.created_at >= start,
                LedgerTransaction.created_at <= end,
            )
        )
    ).all()
    spend: dict[str, int] = {}
    for details in earned:
        purchase_id = details.get("purchase_id")
        if purchase_id is not None and "total_minor" in details:
            spend[str(purchase_id)] = int(details["total_minor"])
    if not spend:
        return 0
    refunds = (
        await session.scalars(
            select(LedgerTransaction.details).where(
                LedgerTransaction.member_id == member_id,
                LedgerTransaction.kind == "clawback",
                LedgerTransaction.created_at >= start,
                LedgerTransaction.created_at <= end,
            )
        )
    ).all()
    refunded: dict[str, int] = {}
    for details in refunds:
        purchase_id = str(details.get("purchase_id"))
        if purchase_id in spend:
            refunded[purchase_id] = max(
                refunded.get(purchase_id, 0), int(details.get("refunded_total_minor", 0))
            )
    return sum(max(total - refunded.get(pid, 0), 0) for pid, total in spend.items())


@dataclass(frozen=True, slots=True)
class Progress:
    tier: str
    measure: str
    value: int
    threshold: int
    window_start: datetime
    window_end: datetime

    @property
    def qualified(self) -> bool:
        return self.value >= self.threshold

    @property
    def missing(self) -> int:
        return max(self.threshold - self.value, 0)


async def progress(session: AsyncSession, program: Program, member: Member, at: datetime) -> list[Progress]:
    """Each tier's measure for the member as of `at` (one query per distinct measure and window)."""
    cache: dict[tuple[str, datetime, datetime], int] = {}
    out = []
    for tier_def in program.tiers or []:
        start, end = window(tier_def, at, program.timezone)
        key = (tier_def["measure"], start, end)
        if key not in cache:
            cache[key] = await measure(session, member.id, tier_def["measure"], start, end)
        out.append(
            Progress(tier_def["name"], tier_def["measure"], cache[key], tier_def["threshold"], start, end)
        )
    return out


def best(progresses: Sequence[Progress]) -> str | None:
    qualified = [p.tier for p in progresses if p.qualified]
    return qualified[-1] if qualified else None


async def qualified_tier(session: AsyncSession, program: Program, member: Member, at: datetime) -> str | None:
    return best(await progress(session, program, member, at))


# --- changes ----------------------------------------------------------------------------------------


async def _change(
    uow: UnitOfWork, program: Program, member: Member, to_tier: str | None, direction: str, now: datetime
) -> None:
    from_tier = member.tier
    member.tier = to_tier
    member.tier_since = now
    member.version += 1
    await uow.session.flush()
    await uow.publish(
        TierChanged(
            customer_id=member.customer_id,
            program_id=program.id,
            member_id=member.id,
            from_tier=from_tier,
            to_tier=to_tier,
            direction=direction,
            changed_at=now,
        )
    )
    log.info("tier_changed", member_id=member.id, from_tier=from_tier, to_tier=to_tier, direction=direction)


async def requalify(uow: UnitOfWork, program: Program, member: Member, now: datetime) -> str | None:
    """After an earning: upgrade at once if the member now qualifies for a higher tier. Never
    downgrades (that waits for the period's review). Returns the new tier if it changed."""
    if not program.tiers or member.status != "active":
        return None
    target = await qualified_tier(uow.session, program, member, now)
    if rank(program, target) > rank(program, member.tier):
        await _change(uow, program, member, target, "upgrade", now)
        return target
    return None


async def _review_row(session: AsyncSession, member: Member, period_end: datetime) -> TierReview:
    row = await session.get(TierReview, (member.id, period_end))
    if row is None:
        row = TierReview(
            member_id=member.id, period_end=period_end, program_id=member.program_id, tier=member.tier
        )
        session.add(row)
    return row


async def review_member(uow: UnitOfWork, program: Program, member: Member, now: datetime) -> str | None:
    """The scheduled review of one member: downgrade when a period's review is due and they no longer
    qualify; otherwise warn once if the next review is within the warning window and they are on course
    to drop. Returns what happened: downgraded | kept | warned | None."""
    session = uow.session
    if member.tier is None or member.status != "active" or not program.tiers:
        return None
    tier_def = definition(program, member.tier)
    if tier_def is None:  # the tier was removed from the program: settle at once
        target = await qualified_tier(session, program, member, now)
        await _change(uow, program, member, target, "downgrade" if target is None else "upgrade", now)
        return "downgraded"
    since = member.tier_since or member.enrolled_at
    grace = grace_days(program)
    due = due_period_end(tier_def, since, grace, now, program.timezone)
    if due is not None:
        row = await _review_row(session, member, due)
        if row.reviewed_at is None:
            ended = await qualified_tier(session, program, member, due)
            current = await qualified_tier(session, program, member, now)
            keep = max(ended, current, key=lambda name: rank(program, name))
            row.reviewed_at = now
            if rank(program, keep) < rank(program, member.tier):
                row.outcome = "downgraded"
                await session.flush()
                await _change(uow, program, member, keep, "downgrade", now)
                return "downgraded"
            row.outcome = "kept"
            await session.flush()
            return "kept"
    return await _warn(uow, program, member, tier_def, now)


async def _warn(
    uow: UnitOfWork, program: Program, member: Member, tier_def: Mapping[str, Any], now: datetime
) -> str | None:
    session = uow.session
    since = member.tier_since or member.enrolled_at
    grace = grace_days(program)
    period_end = next_period_end(tier_def, since, grace, now, program.timezone)
    review_at = period_end + timedelta(days=grace)
    if now < review_at - timedelta(days=warning_days(program)):
        return None
    existing = await session.get(TierReview, (member.id, period_end))
    if existing is not None and existing.warned_at is not None:
        return None
    at_end = await progress(session, program, member, min(now, period_end))
    at_now = await progress(session, program, member, now) if now > period_end else at_end
    expected = max(best(at_end), best(at_now), key=lambda name: rank(program, name))
    if rank(program, expected) >= rank(program, member.tier):
        return None
    row = await _review_row(session, member, period_end)
    row.warned_at = now
    await session.flush()
    mine = [p for p in (*at_end, *at_now) if p.tier == member.tier]
    missing = min(p.missing for p in mine) if mine else 0
    await uow.publish(
        TierDowngradeWarning(
            customer_id=member.customer_id,
            program_id=program.id,
            member_id=member.id,
            current_tier=member.tier or "",
            expected_tier=expected,
            review_at=review_at,
            missing_qualifying=missing,
            occurred_at=now,
        )
    )
    return "warned"


async def review_all(
    uow_factory: UnitOfWorkFactory, *, now: datetime | None = None, batch: int = 200
) -> dict[str, int]:
    """The scheduled tier review over every program with tiers (each batch of members in its own
    transaction). Safe to repeat: a period is reviewed and warned about once (`tier_reviews`)."""
    now = now or datetime.now(UTC)
    counts: dict[str, int] = {"downgraded": 0, "kept": 0, "warned": 0}
    async with uow_factory() as uow:
        program_ids = list(await uow.session.scalars(select(Program.id).where(Program.status == "active")))
    for program_id in program_ids:
        after = ""
        while True:
            async with uow_factory() as uow:
                program = await uow.session.get(Program, program_id)
                if program is None or not program.tiers:
                    break
                members = list(
                    await uow.session.scalars(
                        select(Member)
                        .where(Member.program_id == program_id, Member.tier.is_not(None), Member.id > after)
                        .order_by(Member.id)
                        .limit(batch)
                        .with_for_update()
                    )
                )
                if not members:
                    break
                for member in members:
                    outcome = await review_member(uow, program, member, now)
                    if outcome is not None:
                        counts[outcome] = counts.get(outcome, 0) + 1
                await uow.commit()
                after = members[-1].id
    return counts


@dataclass(frozen=True, slots=True)
class Status:
    """Where a member stands: measures per tier, the tier above, the next review and its likely outcome."""

    progress: list[Progress]
    qualified: str | None
    next_tier: Progress | None
    period_end: datetime | None
    review_at: datetime | None
    expected: str | None


async def status(session: AsyncSession, program: Program, member: Member, now: datetime) -> Status:
    now_progress = await progress(session, program, member, now)
    qualified = best(now_progress)
    above = rank(program, member.tier) + 1
    next_tier = now_progress[above] if above < len(now_progress) else None
    tier_def = definition(program, member.tier)
    if tier_def is None:
        return Status(now_progress, qualified, next_tier, None, None, qualified)
    since = member.tier_since or member.enrolled_at
    grace = grace_days(program)
    period_end = next_period_end(tier_def, since, grace, now, program.timezone)
    at_end = now_progress if now <= period_end else await progress(session, program, member, period_end)
    expected = max(best(at_end), qualified, key=lambda name: rank(program, name))
    return Status(
        now_progress, qualified, next_tier, period_end, period_end + timedelta(days=grace), expected
    )


def today_in(timezone: str, now: datetime) -> date:
    return now.astimezone(ZoneInfo(timezone)).date()
