"""Rewards' rules, free of I/O: what makes a reward redeemable for a member now (each refusal named by
its rule), calendar periods for per-member limits, blackout dates, voucher codes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.loyalty.domain import LoyaltyRuleRefused

KINDS = ("discount", "voucher", "free_product", "upgrade", "experience", "partner")
STATUSES = ("draft", "active", "retired")
LIMIT_PERIODS = ("lifetime", "day", "week", "month", "year")
PARTNER_KINDS = ("accrual", "redemption", "both")
# Every kind is presented somewhere to be honoured (a till, a partner, a venue) and gets a code,
# except an upgrade, which is applied to the member's booking directly.
CODED_KINDS = frozenset(KINDS) - {"upgrade"}
DEFAULT_HOLD_MINUTES = 15
VOUCHER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed safely


class RuleConflict(LoyaltyRuleRefused):
    """A rule refused the request because of the current state (out of stock, an expired or already
    settled reservation): retrying later may succeed."""

    status = 409


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a reward cannot be redeemed: the rule and a sentence for the member."""

    rule: str
    detail: str

    def refusal(self) -> LoyaltyRuleRefused:
        if self.rule in STATE_RULES:
            return RuleConflict(self.rule, self.detail)
        return LoyaltyRuleRefused(self.rule, self.detail)


STATE_RULES = frozenset({"reward.out_of_stock"})


def new_voucher_code() -> str:
    """12 characters of an unambiguous alphabet in groups of four (XXXX-XXXX-XXXX): 60 bits."""
    raw = "".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def local_date(moment: datetime, timezone: str) -> date:
    return moment.astimezone(ZoneInfo(timezone)).date()


def in_blackout(blackouts: list[dict[str, Any]], day: date) -> dict[str, Any] | None:
    """The blackout range (inclusive local dates) containing `day`, if any."""
    for blackout in blackouts:
        start = date.fromisoformat(str(blackout["from"]))
        end = date.fromisoformat(str(blackout["until"]))
        if start <= day <= end:
            return blackout
    return None


def period_start(period: str, now: datetime, timezone: str) -> datetime | None:
    """Start of the calendar period containing `now` in the program's time zone (None: lifetime).
    Weeks start on Monday."""
    if period == "lifetime":
        return None
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    day = local.date()
    if period == "day":
        start = day
    elif period == "week":
        start = day - timedelta(days=day.weekday())
    elif period == "month":
        start = day.replace(day=1)
    elif period == "year":
        start = day.replace(month=1, day=1)
    else:
        raise ValueError(f"unknown limit period {period!r}")
    return datetime(start.year, start.month, start.day, tzinfo=zone)


@dataclass(frozen=True, slots=True)
class Situation:
    """What is known about a member when deciding whether a reward is redeemable."""

    now: datetime
    timezone: str
    member_status: str
    member_tier: str | None
    segments: frozenset[str]
    available_points: int
    redeemed_in_period: int  # the member's reserved or confirmed redemptions of the reward this period


def reasons(reward: Any, situation: Situation, *, check_balance: bool = True) -> list[Reason]:
    """Every rule that refuses `reward` to the member now, in the order they are checked (empty: it
    can be redeemed). `reward` is a `Reward` (or anything with its attributes)."""
    out: list[Reason] = []
    now = situation.now
    if reward.status != "active":
        out.append(Reason("reward.inactive", f"this reward is {reward.status}"))
    if situation.member_status != "active":
        out.append(Reason("member.status", f"the membership is {situation.member_status}"))
    if reward.available_from is not None and now < reward.available_from:
        out.append(Reason("reward.window", f"available from {reward.available_from.isoformat()}"))
    if reward.available_until is not None and now >= reward.available_until:
        out.append(Reason("reward.window", f"no longer available since {reward.available_until.isoformat()}"))
    blackout = in_blackout(reward.blackout_dates or [], local_date(now, situation.timezone))
    if blackout is not None:
        out.append(
            Reason(
                "reward.blackout",
                f"not redeemable from {blackout['from']} to {blackout['until']} (blackout dates)",
            )
        )
    tiers = list(reward.eligible_tiers or [])
    if tiers and situation.member_tier not in tiers:
        out.append(
            Reason(
                "reward.tier",
                f"for tiers {', '.join(tiers)} only (member tier: {situation.member_tier or 'none'})",
            )
        )
    wanted = set(reward.eligible_segments or [])
    if wanted and not wanted & situation.segments:
        out.append(Reason("reward.segment", "for members of selected segments only"))
    if reward.stock is not None and reward.stock - reward.reserved <= 0:
        out.append(Reason("reward.out_of_stock", "out of stock"))
    if reward.per_member_limit is not None and situation.redeemed_in_period >= reward.per_member_limit:
        out.append(limit_reached(reward))
    if check_balance and situation.available_points < reward.cost_points:
        out.append(
            Reason(
                "balance.insufficient",
                f"costs {reward.cost_points} points; {situation.available_points} available",
            )
        )
    return out


def limit_reached(reward: Any) -> Reason:
    span = "" if reward.limit_period == "lifetime" else f" per {reward.limit_period}"
    return Reason("reward.member_limit", f"limited to {reward.per_member_limit} per member{span}; reached")


def restrictions(reward: Any) -> list[str]:
    """The reward's restrictions in plain words, shown before redemption (no hidden conditions)."""
    out: list[str] = []
    if reward.cash_minor:
        out.append(
            f"costs {reward.cost_points} points plus {reward.cash_minor} {reward.currency} (minor units)"
        )
    if reward.fees_minor:
        out.append(f"fees of {reward.fees_minor} {reward.currency} (minor units) are charged on redemption")
    if reward.stock is not None:
        out.append(f"{max(reward.stock - reward.reserved, 0)} left")
    if reward.per_member_limit is not None:
        span = "" if reward.limit_period == "lifetime" else f" per {reward.limit_period}"
        out.append(f"at most {reward.per_member_limit} per member{span}")
    if reward.available_from is not None:
        out.append(f"available from {reward.available_from.isoformat()}")
    if reward.available_until is not None:
        out.append(f"available until {reward.available_until.isoformat()}")
    for blackout in reward.blackout_dates or []:
        out.append(f"not redeemable from {blackout['from']} to {blackout['until']}")
    if reward.eligible_tiers:
        out.append(f"tiers: {', '.join(reward.eligible_tiers)}")
    if reward.eligible_segments:
        out.append("selected segments only")
    return out
