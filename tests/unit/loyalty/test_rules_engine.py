"""The earning engine, pure: evaluation order, multiplicative multipliers, line-bound rules, caps,
rounding once at the end, validity windows, event bonuses with limits, periods, and validation errors
naming the exact field."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from math import floor
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.loyalty.earning import PurchaseFacts, PurchaseLineFacts
from services.loyalty.rules import engine, tiers
from services.loyalty.rules.engine import Context, Rule, TierMultiplier
from shared.errors import InvalidInput

AT = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def purchase(
    *lines: tuple[str, str | None, int, int], total: int | None = None, channel: str = "store"
) -> PurchaseFacts:
    facts = tuple(PurchaseLineFacts(sku, category, qty, price) for sku, category, qty, price in lines)
    return PurchaseFacts(
        purchase_id="p1",
        customer_id="c1",
        occurred_at=AT,
        currency="EUR",
        total_minor=total if total is not None else sum(q * p for _, _, q, p in lines),
        channel=channel,
        lines=facts,
    )


def rule(rule_id: str, kind: str, definition: dict[str, Any], priority: int = 100, **kw: Any) -> Rule:
    normalised = engine.validate_definition(kind, definition, tier_names=["silver", "gold"])
    return Rule(
        id=rule_id, name=kw.pop("name", rule_id), kind=kind, definition=normalised, priority=priority, **kw
    )


def run(p: PurchaseFacts, rules: list[Rule], ctx: Context | None = None, ppu: int = 1) -> Any:
    return engine.purchase_points(
        currency="EUR", points_per_unit=ppu, purchase=p, rules=rules, ctx=ctx or Context()
    )


SHOES = ("SKU-1", "shoes", 2, 5000)  # 100.00
SOCKS = ("SKU-2", "socks", 1, 1000)  # 10.00


def test_base_only_is_the_old_behaviour() -> None:
    out = run(purchase(("A", None, 2, 4999)), [])
    assert (out.points, out.qualifying) == (99, 99)
    assert [(f.rule_id, f.points) for f in out.fired] == [("base", 99)]


def test_currency_gate() -> None:
    p = purchase(SHOES)
    out = engine.purchase_points(currency="USD", points_per_unit=1, purchase=p, rules=[], ctx=Context())
    assert out.points == 0
    assert out.qualifying == 0


def test_documented_order_and_multiplicative_combination() -> None:
    rules = [
        rule("cap", "cap", {"max_points": 10_000, "period": "day"}, priority=0),
        rule(
            "mul-vip",
            "multiplier",
            {"factor": {"numerator": 2, "denominator": 1}, "conditions": {"segments": ["vip"]}},
        ),
        rule(
            "bonus-shoes",
            "bonus_points",
            {"points": 10, "per": "unit", "conditions": {"categories": ["shoes"]}},
        ),
        rule(
            "mul-shoes",
            "multiplier",
            {"factor": {"numerator": 3, "denominator": 1}, "conditions": {"categories": ["shoes"]}},
            priority=5,
        ),
    ]
    ctx = Context(
        tier="silver", segments=frozenset({"vip"}), tier_multiplier=TierMultiplier("silver", Fraction(3, 2))
    )
    out = run(purchase(SHOES, SOCKS), rules, ctx)
    # base 110: shoes 100, socks 10; +20 shoe bonus on the shoe line; tier ×3/2 everywhere;
    # shoes ×3 on the shoe line; vip ×2 everywhere.
    expected = ((Fraction(100) + 20) * Fraction(3, 2) * 3 + Fraction(10) * Fraction(3, 2)) * 2
    assert out.points == floor(expected) == 1110
    assert out.qualifying == 110
    assert [f.rule_id for f in out.fired] == ["base", "bonus-shoes", "tier:silver", "mul-shoes", "mul-vip"]
    assert sum(f.points for f in out.fired) == out.points


def test_same_priority_orders_by_name_then_id() -> None:
    rules = [
        rule("r2", "bonus_points", {"points": 1}, name="b"),
        rule("r1", "bonus_points", {"points": 1}, name="b"),
        rule("r0", "bonus_points", {"points": 1}, name="a"),
    ]
    assert [f.rule_id for f in run(purchase(SHOES), rules).fired] == ["base", "r0", "r1", "r2"]


def test_line_bound_multiplier_acts_on_its_lines_share_only() -> None:
    rules = [
        rule(
            "m",
            "multiplier",
            {"factor": {"numerator": 2, "denominator": 1}, "conditions": {"skus": ["SKU-2"]}},
        )
    ]
    out = run(purchase(SHOES, SOCKS), rules)
    assert out.points == 110 + 10
    # a purchase whose lines match nothing: the rule does not fire
    assert [f.rule_id for f in run(purchase(SHOES), rules).fired] == ["base"]


def test_base_shared_pro_rata_when_total_differs_from_lines() -> None:
    # a 50% discount: total 55.00, lines 110.00 -> base 55, socks' share 5
    rules = [
        rule(
            "m",
            "multiplier",
            {"factor": {"numerator": 3, "denominator": 1}, "conditions": {"categories": ["socks"]}},
        )
    ]
    assert run(purchase(SHOES, SOCKS, total=5500), rules).points == 55 + 10


def test_bonus_per_purchase_line_unit() -> None:
    p = purchase(SHOES, SOCKS)
    per_purchase = rule(
        "a", "bonus_points", {"points": 7, "per": "purchase", "conditions": {"categories": ["shoes"]}}
    )
    per_line = rule("b", "bonus_points", {"points": 7, "per": "line"})
    per_unit = rule(
        "c", "bonus_points", {"points": 7, "per": "unit", "conditions": {"categories": ["shoes"]}}
    )
    assert run(p, [per_purchase]).points == 117
    assert run(p, [per_line]).points == 124
    assert run(p, [per_unit]).points == 124
    no_match = rule("d", "bonus_points", {"points": 7, "conditions": {"categories": ["hats"]}})
    assert run(p, [no_match]).points == 110


def test_per_purchase_bonus_is_only_multiplied_by_purchase_wide_multipliers() -> None:
    rules = [
        rule("bonus", "bonus_points", {"points": 10}),
        rule(
            "line",
            "multiplier",
            {"factor": {"numerator": 2, "denominator": 1}, "conditions": {"categories": ["shoes"]}},
        ),
        rule("all", "multiplier", {"factor": {"numerator": 3, "denominator": 1}}),
    ]
    assert run(purchase(SHOES), rules).points == (100 * 2 + 10) * 3


def test_purchase_conditions() -> None:
    rules = [
        rule("web", "bonus_points", {"points": 5, "conditions": {"channels": ["web"]}}),
        rule("gold", "bonus_points", {"points": 50, "conditions": {"tiers": ["gold"]}}),
        rule("big", "bonus_points", {"points": 500, "conditions": {"min_total_minor": 10_000}}),
    ]
    assert run(purchase(SHOES, channel="web"), rules, Context(tier="silver")).points == 100 + 5 + 500
    assert run(purchase(SOCKS, channel="store"), rules, Context(tier="gold")).points == 10 + 50


def test_rounding_happens_once_at_the_end() -> None:
    rules = [
        rule("a", "multiplier", {"factor": {"numerator": 3, "denominator": 2}}),
        rule("b", "multiplier", {"factor": {"numerator": 3, "denominator": 2}}),
    ]
    out = run(purchase(("A", None, 1, 100)), rules)  # base 1 -> 9/4
    assert out.points == 2
    assert [f.points for f in out.fired] == [1, 0, 1]  # telescoping: whole points each rule added


def test_caps_cut_to_what_is_left_in_the_period() -> None:
    cap = rule("cap", "cap", {"max_points": 150, "period": "month", "applies_to": ["purchase"]})
    out = run(purchase(SHOES), [cap], Context(earned_in_cap_period={"cap": 120}))
    assert out.points == 30
    assert out.qualifying == 100  # caps never touch tier-qualifying points
    assert out.fired[-1].rule_id == "cap"
    assert out.fired[-1].points == -70
    assert run(purchase(SHOES), [cap], Context(earned_in_cap_period={"cap": 500})).points == 0
    assert [f.rule_id for f in run(purchase(SOCKS), [cap]).fired] == ["base"]  # under the cap: not fired
    bonus_only = rule("cap2", "cap", {"max_points": 0, "period": "day", "applies_to": ["bonus"]})
    assert run(purchase(SHOES), [bonus_only]).points == 100


def test_validity_window_is_from_inclusive_until_exclusive() -> None:
    def windowed(start: datetime | None, end: datetime | None) -> int:
        r = rule("w", "bonus_points", {"points": 1}, valid_from=start, valid_until=end)
        return int(run(purchase(SOCKS), [r]).points)

    assert windowed(AT, None) == 11
    assert windowed(None, AT) == 10
    assert windowed(datetime(2026, 6, 11, tzinfo=UTC), None) == 10
    inactive = Rule(
        "x", "x", "bonus_points", {"points": 1, "per": "purchase", "conditions": {}}, active=False
    )
    assert run(purchase(SOCKS), [inactive]).points == 10


def test_event_bonus_limits_and_caps() -> None:
    rules = [
        rule(
            "ref",
            "event_bonus",
            {"event": "referral_referrer", "points": 500, "limit": {"count": 2, "period": "month"}},
        ),
        rule(
            "ref-gold",
            "event_bonus",
            {"event": "referral_referrer", "points": 100, "conditions": {"tiers": ["gold"]}},
        ),
        rule("enrol", "event_bonus", {"event": "enrolment", "points": 50}),
        rule("cap", "cap", {"max_points": 550, "period": "month", "applies_to": ["bonus"]}),
        rule("mul", "multiplier", {"factor": {"numerator": 10, "denominator": 1}}),
    ]
    out = engine.event_points(event="referral_referrer", at=AT, rules=rules, ctx=Context(tier="gold"))
    assert out.points == 550  # 600 capped at 550, never multiplied
    assert [f.rule_id for f in out.fired] == ["ref", "ref-gold", "cap"]
    limited = engine.event_points(
        event="referral_referrer", at=AT, rules=rules, ctx=Context(granted_in_limit_period={"ref": 2})
    )
    assert limited.points == 0
    assert limited.fired[0].detail.startswith("limit of 2")
    assert engine.event_points(event="enrolment", at=AT, rules=rules, ctx=Context()).points == 50
    assert engine.event_points(event="birthday", at=AT, rules=rules, ctx=Context()).points == 0


@pytest.mark.parametrize(
    ("period", "at", "start", "end"),
    [
        ("day", "2026-03-29T22:30:00+00:00", "2026-03-30T00:00:00+02:00", "2026-03-31T00:00:00+02:00"),
        ("week", "2026-06-10T12:00:00+00:00", "2026-06-08T00:00:00+02:00", "2026-06-15T00:00:00+02:00"),
        ("month", "2026-12-31T23:30:00+00:00", "2027-01-01T00:00:00+01:00", "2027-02-01T00:00:00+01:00"),
        ("year", "2026-06-10T12:00:00+00:00", "2026-01-01T00:00:00+01:00", "2027-01-01T00:00:00+01:00"),
    ],
)
def test_periods_in_the_program_time_zone(period: str, at: str, start: str, end: str) -> None:
    bounds = engine.period_bounds(period, datetime.fromisoformat(at), "Europe/Paris")
    assert bounds == (datetime.fromisoformat(start), datetime.fromisoformat(end))


@pytest.mark.parametrize(
    ("kind", "definition", "field", "message"),
    [
        (
            "multiplier",
            {"factor": {"numerator": 3, "denominator": 0}},
            "body.definition.factor.denominator",
            "must be > 0",
        ),
        (
            "multiplier",
            {"factor": {"numerator": 1.5, "denominator": 1}},
            "body.definition.factor.numerator",
            "whole number",
        ),
        ("multiplier", {}, "body.definition.factor", "is required"),
        ("multiplier", {"factor": 1.5}, "body.definition.factor", "rational"),
        (
            "multiplier",
            {"factor": {"numerator": 2, "denominator": 1}, "conditions": {"tiers": ["platinum"]}},
            "body.definition.conditions.tiers.0",
            "unknown tier 'platinum'",
        ),
        (
            "multiplier",
            {"factor": {"numerator": 2, "denominator": 1}, "conditions": {"colour": ["red"]}},
            "body.definition.conditions.colour",
            "unknown field",
        ),
        ("bonus_points", {"points": 0}, "body.definition.points", "must be > 0"),
        ("bonus_points", {"points": 5, "per": "week"}, "body.definition.per", "must be one of"),
        (
            "bonus_points",
            {"points": 5, "conditions": {"categories": []}},
            "body.definition.conditions.categories",
            "non-empty",
        ),
        ("event_bonus", {"event": "wedding", "points": 5}, "body.definition.event", "custom:<name>"),
        (
            "event_bonus",
            {"event": "birthday", "points": 5, "conditions": {"channels": ["web"]}},
            "body.definition.conditions.channels",
            "unknown field",
        ),
        (
            "event_bonus",
            {"event": "custom:x", "points": 5, "limit": {"count": 0, "period": "month"}},
            "body.definition.limit.count",
            "must be > 0",
        ),
        ("cap", {"max_points": 10, "period": "fortnight"}, "body.definition.period", "must be one of"),
        ("cap", {"max_points": -1, "period": "day"}, "body.definition.max_points", "must be >= 0"),
        (
            "cap",
            {"max_points": 1, "period": "day", "applies_to": ["refund"]},
            "body.definition.applies_to.0",
            "must be one of",
        ),
    ],
)
def test_validation_names_the_field(kind: str, definition: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        engine.validate_definition(kind, definition, tier_names=["silver", "gold"])
    [error] = caught.value.errors
    assert error.field == field
    assert message in error.message


def test_validation_fills_defaults() -> None:
    assert engine.validate_definition("cap", {"max_points": 5, "period": "week"}, tier_names=[]) == {
        "max_points": 5,
        "period": "week",
        "applies_to": ["purchase", "bonus"],
    }
    assert engine.validate_definition("bonus_points", {"points": 5}, tier_names=[])["per"] == "purchase"


@pytest.mark.parametrize(
    ("tier_defs", "field"),
    [
        ([{"name": "Silver!", "threshold": 1, "window": {"kind": "calendar_year"}}], "body.tiers.0.name"),
        ([{"name": "s", "threshold": 0, "window": {"kind": "calendar_year"}}], "body.tiers.0.threshold"),
        (
            [{"name": "s", "threshold": 1, "measure": "visits", "window": {"kind": "calendar_year"}}],
            "body.tiers.0.measure",
        ),
        (
            [{"name": "s", "threshold": 1, "window": {"kind": "rolling_days", "days": 0}}],
            "body.tiers.0.window.days",
        ),
        ([{"name": "s", "threshold": 1, "window": {"kind": "fortnight"}}], "body.tiers.0.window.kind"),
        (
            [
                {"name": "s", "threshold": 100, "window": {"kind": "calendar_year"}},
                {"name": "g", "threshold": 100, "window": {"kind": "calendar_year"}},
            ],
            "body.tiers.1.threshold",
        ),
        (
            [
                {"name": "s", "threshold": 100, "window": {"kind": "calendar_year"}},
                {"name": "s", "threshold": 200, "window": {"kind": "calendar_year"}},
            ],
            "body.tiers.1.name",
        ),
        (
            [
                {
                    "name": "s",
                    "threshold": 1,
                    "window": {"kind": "calendar_year"},
                    "benefits": {"earn_multiplier": {"numerator": 3, "denominator": 0}},
                }
            ],
            "body.tiers.0.benefits.earn_multiplier.denominator",
        ),
    ],
)
def test_tier_validation_names_the_field(tier_defs: list[dict[str, Any]], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        tiers.validate_tiers(tier_defs)
    assert caught.value.errors[0].field == field


def test_tier_periods() -> None:
    rolling = {"window": {"kind": "rolling_days", "days": 30}}
    since = datetime(2026, 1, 1, tzinfo=UTC)
    assert tiers.due_period_end(rolling, since, 5, datetime(2026, 2, 4, tzinfo=UTC), "UTC") is None
    assert tiers.due_period_end(rolling, since, 5, datetime(2026, 2, 5, tzinfo=UTC), "UTC") == datetime(
        2026, 1, 31, tzinfo=UTC
    )
    assert tiers.next_period_end(rolling, since, 5, datetime(2026, 2, 5, tzinfo=UTC), "UTC") == datetime(
        2026, 3, 2, tzinfo=UTC
    )
    yearly = {"window": {"kind": "calendar_year"}}
    since = datetime(2026, 3, 1, tzinfo=UTC)
    assert tiers.due_period_end(yearly, since, 30, datetime(2027, 1, 30, tzinfo=UTC), "UTC") is None
    assert tiers.due_period_end(yearly, since, 30, datetime(2027, 1, 31, tzinfo=UTC), "UTC") == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    assert tiers.next_period_end(yearly, since, 30, datetime(2027, 1, 30, tzinfo=UTC), "UTC") == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    start, _end = tiers.window(yearly, datetime(2027, 1, 1, tzinfo=UTC), "UTC")
    assert start == datetime(2026, 1, 1, tzinfo=UTC)  # at the period's end: the year that ended


lines = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", "C"]),
        st.sampled_from(["shoes", "socks", None]),
        st.integers(1, 5),
        st.integers(0, 50_000),
    ),
    min_size=0,
    max_size=4,
)
factors = st.tuples(st.integers(0, 5), st.integers(1, 4))


@given(
    lines, st.lists(factors, max_size=3), st.integers(0, 100), st.integers(0, 5_000), st.integers(0, 5_000)
)
def test_fired_rules_always_add_up_to_the_points(
    line_specs: list[tuple[str, str | None, int, int]],
    multipliers: list[tuple[int, int]],
    bonus: int,
    cap: int,
    earned: int,
) -> None:
    rules = [
        Rule(
            f"m{i}",
            f"m{i}",
            "multiplier",
            {
                "factor": {"numerator": n, "denominator": d},
                "conditions": {"categories": ["shoes"]} if i % 2 else {},
            },
        )
        for i, (n, d) in enumerate(multipliers)
    ]
    if bonus:
        rules.append(
            Rule(
                "b",
                "b",
                "bonus_points",
                {"points": bonus, "per": "unit", "conditions": {"categories": ["socks"]}},
            )
        )
    rules.append(Rule("c", "c", "cap", {"max_points": cap, "period": "day", "applies_to": ["purchase"]}))
    out = run(purchase(*line_specs), rules, Context(earned_in_cap_period={"c": earned}))
    assert isinstance(out.points, int)
    assert 0 <= out.points <= max(cap - earned, 0)
    assert sum(f.points for f in out.fired) == out.points
