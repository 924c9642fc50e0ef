"""The earning engine: what a purchase or a bonus event earns under a program's rules. Pure: no I/O,
every fact it needs (the member's tier and segments, what they already earned in a cap's period) is
handed in, so the dry run and real earning run exactly the same code on the same facts.

Evaluation order (deterministic; within a stage, rules by `priority` ascending, then name, then id):

1. **Currency gate** — a program with a currency earns only on purchases in it (0 points otherwise).
2. **Base** — `points_per_unit` per whole currency unit of the purchase total (fractions dropped).
   The base is shared among the purchase lines pro rata to their value (quantity × unit price), as
   exact fractions, so line-specific rules can act on each line's share.
3. **Product bonuses** (`bonus_points`) — fixed points when the conditions match: once per purchase
   (`per: purchase`), per matching line (`per: line`) or per unit of matching lines (`per: unit`).
4. **Multipliers** — first the tier benefit of the member's tier (`earn_multiplier`), then the
   `multiplier` rules. Each multiplies, by its rational `factor`, the points earned so far (base and
   product bonuses) of the lines it matches (all of them unless it names categories or skus; a
   per-purchase bonus belongs to no line, so only multipliers without line conditions touch it).
   Multipliers **combine multiplicatively**: tier 3/2 and a segment ×2 on the same line make ×3.
5. **Caps** (`cap`) — the total is cut to what the member may still earn in the cap's period (day,
   week, month or year in the program's time zone), given what they already earned in it
   (`applies_to`: purchase points, bonus points or both).
6. **Rounding** — the exact rational total is rounded down to whole points, once, at the end.

Each fired rule reports the whole points it added: the rounded-down total after it minus the
rounded-down total before it, so the fired rules always add up to the points earned. Tier-qualifying
points are the base points of stage 2 only: bonuses, multipliers and caps change what a member can
spend, not the tier they qualify for.

Bonus events (`event_bonus`: enrolment, birthday, referral_referrer, referral_referee,
survey_answered, custom:<name>) are evaluated on their own: each matching rule adds its points
(unless its `limit` — at most `count` grants per member and period — is reached), then caps that
apply to bonuses, then rounding. Multipliers never apply to event bonuses.

Points are integers; factors are integer numerator/denominator pairs computed with exact fractions.
No floating point is involved anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from math import floor
from typing import Any
from zoneinfo import ZoneInfo

from services.loyalty.domain import base_points
from services.loyalty.earning import Earning, FiredRule, PurchaseFacts, PurchaseLineFacts
from shared.errors import InvalidInput

KINDS = ("multiplier", "bonus_points", "event_bonus", "cap")
PERIODS = ("day", "week", "month", "year")
BUILTIN_EVENTS = (
    "enrolment",
    "birthday",
    "referral_referrer",
    "referral_referee",
    "survey_answered",
)
CUSTOM_EVENT = re.compile(r"^custom:[a-z0-9][a-z0-9_.-]{0,39}$")
CAP_SOURCES = ("purchase", "bonus")
MAX_FACTOR_TERM = 1000
MAX_POINTS = 10_000_000

_PURCHASE_CONDITIONS = ("tiers", "segments", "channels", "min_total_minor")
_LINE_CONDITIONS = ("categories", "skus")
_LABELS = {
    "tiers": "tier",
    "segments": "segment",
    "channels": "channel",
    "categories": "category",
    "skus": "sku",
}
_CONDITIONS_BY_KIND: dict[str, tuple[str, ...]] = {
    "multiplier": _PURCHASE_CONDITIONS + _LINE_CONDITIONS,
    "bonus_points": _PURCHASE_CONDITIONS + _LINE_CONDITIONS,
    "event_bonus": ("tiers", "segments"),
}


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule as the engine sees it (from an `EarningRule` row, or built in tests)."""

    id: str
    name: str
    kind: str
    definition: Mapping[str, Any]
    priority: int = 100
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    active: bool = True

    def valid_at(self, at: datetime) -> bool:
        if not self.active:
            return False
        if self.valid_from is not None and at < self.valid_from:
            return False
        return not (self.valid_until is not None and at >= self.valid_until)

    @property
    def conditions(self) -> Mapping[str, Any]:
        return self.definition.get("conditions") or {}


@dataclass(frozen=True, slots=True)
class TierMultiplier:
    tier: str
    factor: Fraction


@dataclass(frozen=True, slots=True)
class Context:
    """Facts about the member the rules may look at."""

    tier: str | None = None
    segments: frozenset[str] = frozenset()
    tier_multiplier: TierMultiplier | None = None
    # What the member already earned in each cap rule's period (rule id → points).
    earned_in_cap_period: Mapping[str, int] = field(default_factory=dict)
    # How often the member already got each limited event bonus in its period (rule id → count).
    granted_in_limit_period: Mapping[str, int] = field(default_factory=dict)


def ordered(rules: Sequence[Rule]) -> list[Rule]:
    """The documented order within a stage: priority, then name, then id."""
    return sorted(rules, key=lambda r: (r.priority, r.name, r.id))


def in_force(rules: Sequence[Rule], kind: str, at: datetime) -> list[Rule]:
    return ordered([r for r in rules if r.kind == kind and r.valid_at(at)])


def factor_of(value: Mapping[str, Any]) -> Fraction:
    return Fraction(int(value["numerator"]), int(value["denominator"]))


# --- periods ----------------------------------------------------------------------------------------


def period_bounds(period: str, at: datetime, timezone: str) -> tuple[datetime, datetime]:
    """The calendar day, ISO week (Monday first), month or year containing `at`, in the program's
    time zone, as aware datetimes [start, end)."""
    zone = ZoneInfo(timezone)
    local = at.astimezone(zone).date()
    if period == "day":
        start, end = local, local + timedelta(days=1)
    elif period == "week":
        start = local - timedelta(days=local.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = local.replace(day=1)
        end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    elif period == "year":
        start, end = date(local.year, 1, 1), date(local.year + 1, 1, 1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return _midnight(start, zone), _midnight(end, zone)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


# --- conditions -------------------------------------------------------------------------------------


def purchase_matches(conditions: Mapping[str, Any], ctx: Context, purchase: PurchaseFacts | None) -> bool:
    tiers = conditions.get("tiers")
    if tiers is not None and ctx.tier not in tiers:
        return False
    segments = conditions.get("segments")
    if segments is not None and not ctx.segments.intersection(segments):
        return False
    if purchase is None:
        return True
    channels = conditions.get("channels")
    if channels is not None and purchase.channel not in channels:
        return False
    minimum = conditions.get("min_total_minor")
    return minimum is None or purchase.total_minor >= int(minimum)


def has_line_conditions(conditions: Mapping[str, Any]) -> bool:
    return any(conditions.get(key) is not None for key in _LINE_CONDITIONS)


def line_matches(conditions: Mapping[str, Any], line: PurchaseLineFacts) -> bool:
    categories = conditions.get("categories")
    if categories is not None and line.category not in categories:
        return False
    skus = conditions.get("skus")
    return skus is None or line.sku in skus


def describe(conditions: Mapping[str, Any]) -> str:
    parts = []
    for key in _PURCHASE_CONDITIONS + _LINE_CONDITIONS:
        value = conditions.get(key)
        if value is None:
            continue
        if key == "min_total_minor":
            parts.append(f"total >= {value}")
        else:
            parts.append(f"{_LABELS[key]} in {', '.join(value)}")
    return "; ".join(parts) or "every purchase"


# --- purchases --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Portion:
    """Points earned so far by one line (or by the purchase as a whole: `line` None)."""

    line: int | None
    points: Fraction


@dataclass(slots=True)
class _Tally:
    portions: list[_Portion]
    fired: list[FiredRule]
    total: Fraction = Fraction(0)

    def record(self, rule_id: str, name: str, new_total: Fraction, detail: str) -> None:
        """A rule changed the total: it reports the whole points it added (telescoping floors)."""
        added = floor(new_total) - floor(self.total)
        self.total = new_total
        self.fired.append(FiredRule(rule_id, name, added, detail))

    def recount(self) -> Fraction:
        return sum((p.points for p in self.portions), Fraction(0))


def purchase_points(
    *,
    currency: str | None,
    points_per_unit: int,
    purchase: PurchaseFacts,
    rules: Sequence[Rule],
    ctx: Context,
) -> Earning:
    """What a purchase earns, in the order documented above."""
    if currency is not None and currency != purchase.currency.upper():
        return Earning(0, 0, [FiredRule("base", "Base rate", 0, f"only {currency} purchases earn")])
    base = base_points(purchase.total_minor, purchase.currency, points_per_unit)
    values = [line.quantity * line.unit_price_minor for line in purchase.lines]
    lines_value = sum(values)
    if lines_value > 0:
        portions = [_Portion(i, Fraction(base * v, lines_value)) for i, v in enumerate(values)]
    else:
        portions = [_Portion(None, Fraction(base))]
    tally = _Tally(portions, [])
    tally.record(
        "base",
        "Base rate",
        Fraction(base),
        f"{points_per_unit} point(s) per whole {purchase.currency.upper()}",
    )
    at = purchase.occurred_at

    for rule in in_force(rules, "bonus_points", at):
        _product_bonus(rule, purchase, ctx, tally)

    multipliers: list[tuple[str, str, Fraction, Mapping[str, Any], str]] = []
    if ctx.tier_multiplier is not None:
        tm = ctx.tier_multiplier
        multipliers.append(
            (f"tier:{tm.tier}", f"Tier {tm.tier}", tm.factor, {}, f"×{_ratio(tm.factor)} for tier {tm.tier}")
        )
    for rule in in_force(rules, "multiplier", at):
        factor = factor_of(rule.definition["factor"])
        multipliers.append(
            (rule.id, rule.name, factor, rule.conditions, f"×{_ratio(factor)} on {describe(rule.conditions)}")
        )
    for rule_id, name, factor, conditions, detail in multipliers:
        if not purchase_matches(conditions, ctx, purchase):
            continue
        line_bound = has_line_conditions(conditions)
        touched = False
        for portion in tally.portions:
            if line_bound and (
                portion.line is None or not line_matches(conditions, purchase.lines[portion.line])
            ):
                continue
            portion.points *= factor
            touched = True
        if touched:
            tally.record(rule_id, name, tally.recount(), detail)

    _caps(rules, "purchase", at, ctx, tally)
    return Earning(floor(tally.total), base, tally.fired)


def _product_bonus(rule: Rule, purchase: PurchaseFacts, ctx: Context, tally: _Tally) -> None:
    conditions = rule.conditions
    if not purchase_matches(conditions, ctx, purchase):
        return
    points = int(rule.definition["points"])
    per = rule.definition.get("per", "purchase")
    line_bound = has_line_conditions(conditions)
    matching = [
        i for i, line in enumerate(purchase.lines) if not line_bound or line_matches(conditions, line)
    ]
    added: list[_Portion] = []
    if per == "purchase":
        if line_bound and not matching:
            return
        added.append(_Portion(None, Fraction(points)))
        detail = f"{points} point(s) per purchase with {describe(conditions)}"
    else:
        for i in matching:
            each = points * (purchase.lines[i].quantity if per == "unit" else 1)
            added.append(_Portion(i, Fraction(each)))
        detail = f"{points} point(s) per {per} with {describe(conditions)} ({len(matching)} line(s))"
    if not added:
        return
    tally.portions.extend(added)
    tally.record(rule.id, rule.name, tally.recount(), detail)


def _caps(rules: Sequence[Rule], source: str, at: datetime, ctx: Context, tally: _Tally) -> None:
    for rule in in_force(rules, "cap", at):
        if source not in rule.definition.get("applies_to", CAP_SOURCES):
            continue
        maximum = int(rule.definition["max_points"])
        already = int(ctx.earned_in_cap_period.get(rule.id, 0))
        left = max(maximum - already, 0)
        if tally.total > left:
            period = rule.definition["period"]
            tally.record(
                rule.id,
                rule.name,
                Fraction(left),
                f"at most {maximum} point(s) per {period}: {already} already earned, {left} left",
            )


def _ratio(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


# --- bonus events -----------------------------------------------------------------------------------


def event_points(*, event: str, at: datetime, rules: Sequence[Rule], ctx: Context) -> Earning:
    """What a bonus event earns: matching `event_bonus` rules (within their limits), then caps."""
    tally = _Tally([], [])
    for rule in in_force(rules, "event_bonus", at):
        if rule.definition.get("event") != event or not purchase_matches(rule.conditions, ctx, None):
            continue
        limit = rule.definition.get("limit")
        if limit is not None and ctx.granted_in_limit_period.get(rule.id, 0) >= int(limit["count"]):
            detail = f"limit of {limit['count']} per {limit['period']} reached"
            tally.fired.append(FiredRule(rule.id, rule.name, 0, detail))
            continue
        points = int(rule.definition["points"])
        tally.record(rule.id, rule.name, tally.total + points, f"{points} point(s) for {event}")
    if tally.total > 0:
        _caps(rules, "bonus", at, ctx, tally)
    return Earning(floor(tally.total), 0, tally.fired)


def valid_event(event: str) -> bool:
    return event in BUILTIN_EVENTS or bool(CUSTOM_EVENT.match(event))


# --- validation -------------------------------------------------------------------------------------


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(definition: Mapping[str, Any], key: str, path: str, *, minimum: int, maximum: int) -> int:
    value = definition.get(key)
    where = f"{path}.{key}"
    if value is None:
        raise InvalidInput(where, "is required")
    if not _whole(value):
        raise InvalidInput(where, "must be a whole number")
    if value < minimum:
        raise InvalidInput(where, f"must be >= {minimum}" if minimum != 1 else "must be > 0")
    if value > maximum:
        raise InvalidInput(where, f"must be <= {maximum}")
    return int(value)


def _choice(
    definition: Mapping[str, Any], key: str, path: str, choices: Sequence[str], default: str | None
) -> str:
    value = definition.get(key, default)
    if value not in choices:
        raise InvalidInput(f"{path}.{key}", f"must be one of {', '.join(choices)}")
    return str(value)


def _no_extra(definition: Mapping[str, Any], allowed: Collection[str], path: str) -> None:
    for key in definition:
        if key not in allowed:
            raise InvalidInput(f"{path}.{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})")


def validate_factor(value: Any, path: str) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise InvalidInput(path, 'must be a rational {"numerator": int, "denominator": int}')
    _no_extra(value, ("numerator", "denominator"), path)
    numerator = _int(value, "numerator", path, minimum=0, maximum=MAX_FACTOR_TERM)
    denominator = _int(value, "denominator", path, minimum=1, maximum=MAX_FACTOR_TERM)
    return {"numerator": numerator, "denominator": denominator}


def validate_conditions(value: Any, kind: str, path: str, tier_names: Collection[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(path, "must be an object")
    allowed = _CONDITIONS_BY_KIND[kind]
    _no_extra(value, allowed, path)
    out: dict[str, Any] = {}
    for key, item in value.items():
        where = f"{path}.{key}"
        if key == "min_total_minor":
            out[key] = _int(value, key, path, minimum=0, maximum=10**15)
            continue
        if not isinstance(item, list) or not item:
            raise InvalidInput(where, "must be a non-empty list of strings")
        for i, entry in enumerate(item):
            if not isinstance(entry, str) or not entry or len(entry) > 64:
                raise InvalidInput(f"{where}.{i}", "must be a string of 1 to 64 characters")
            if key == "tiers" and entry not in tier_names:
                known = ", ".join(tier_names) or "none defined"
                raise InvalidInput(f"{where}.{i}", f"unknown tier {entry!r} (program tiers: {known})")
        out[key] = list(dict.fromkeys(item))
    return out


def validate_definition(
    kind: str, definition: Any, *, tier_names: Collection[str], path: str = "body.definition"
) -> dict[str, Any]:
    """Check a rule's definition for its kind and return it normalised (defaults filled in). Raises
    `InvalidInput` naming the exact field at fault (e.g. `body.definition.factor.denominator`)."""
    if not isinstance(definition, Mapping):
        raise InvalidInput(path, "must be an object")
    if kind == "multiplier":
        _no_extra(definition, ("factor", "conditions"), path)
        if "factor" not in definition:
            raise InvalidInput(f"{path}.factor", "is required")
        return {
            "factor": validate_factor(definition["factor"], f"{path}.factor"),
            "conditions": validate_conditions(
                definition.get("conditions"), kind, f"{path}.conditions", tier_names
            ),
        }
    if kind == "bonus_points":
        _no_extra(definition, ("points", "per", "conditions"), path)
        return {
            "points": _int(definition, "points", path, minimum=1, maximum=MAX_POINTS),
            "per": _choice(definition, "per", path, ("purchase", "line", "unit"), "purchase"),
            "conditions": validate_conditions(
                definition.get("conditions"), kind, f"{path}.conditions", tier_names
            ),
        }
    if kind == "event_bonus":
        _no_extra(definition, ("event", "points", "conditions", "limit"), path)
        event = definition.get("event")
        if not isinstance(event, str) or not valid_event(event):
            raise InvalidInput(
                f"{path}.event",
                f"must be one of {', '.join(BUILTIN_EVENTS)} or custom:<name> (a-z, 0-9, _ . -)",
            )
        out: dict[str, Any] = {
            "event": event,
            "points": _int(definition, "points", path, minimum=1, maximum=MAX_POINTS),
            "conditions": validate_conditions(
                definition.get("conditions"), kind, f"{path}.conditions", tier_names
            ),
        }
        limit = definition.get("limit")
        if limit is not None:
            where = f"{path}.limit"
            if not isinstance(limit, Mapping):
                raise InvalidInput(where, 'must be {"count": int, "period": "day|week|month|year"}')
            _no_extra(limit, ("count", "period"), where)
            out["limit"] = {
                "count": _int(limit, "count", where, minimum=1, maximum=1_000_000),
                "period": _choice(limit, "period", where, PERIODS, None),
            }
        return out
    if kind == "cap":
        _no_extra(definition, ("max_points", "period", "applies_to"), path)
        applies_to = definition.get("applies_to", list(CAP_SOURCES))
        if not isinstance(applies_to, list) or not applies_to:
            raise InvalidInput(f"{path}.applies_to", f"must be a non-empty list of {', '.join(CAP_SOURCES)}")
        for i, source in enumerate(applies_to):
            if source not in CAP_SOURCES:
                raise InvalidInput(f"{path}.applies_to.{i}", f"must be one of {', '.join(CAP_SOURCES)}")
        return {
            "max_points": _int(definition, "max_points", path, minimum=0, maximum=10**12),
            "period": _choice(definition, "period", path, PERIODS, None),
            "applies_to": list(dict.fromkeys(applies_to)),
        }
    raise InvalidInput("body.kind", f"must be one of {', '.join(KINDS)}")
