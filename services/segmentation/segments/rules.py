"""The segment rule language: JSON in, a checked rule tree out, or errors naming the exact path.

A rule is one JSON object with exactly one of these keys:

Combinators
    ``{"all": [rule, ...]}``   every sub-rule holds (an empty list is refused)
    ``{"any": [rule, ...]}``   at least one holds
    ``{"not": rule}``          the sub-rule does not hold

Comparisons on a field of the catalogue (`FIELDS`; ``GET /segments/catalogue`` lists it)
    ``{"field": "net_spend_minor", "op": ">=", "value": 10000}``

    ======== ==================================================================================
    type     operators (``value``)
    ======== ==================================================================================
    number   ``=`` ``!=`` ``<`` ``<=`` ``>`` ``>=`` (a number), ``between`` (``[low, high]``,
             inclusive). Integer fields (counts, money in minor units) take integers only.
    string   ``=`` ``!=`` (a string), ``in`` ``not_in`` (a non-empty list of strings). Fields with a
             fixed vocabulary (``ladder_stage``, ``nps_category``) refuse other words; ordered
             ones (``ladder_stage``) also take ``<`` ``<=`` ``>`` ``>=`` (``>= "client"``: client,
             supporter, advocate or partner).
    boolean  ``=`` (``true`` / ``false``)
    date     ``before`` ``after`` (an ISO 8601 date or date-time; a date means its midnight UTC),
             ``within_last_days`` ``older_than_days`` (whole days, relative to now)
    list     ``contains`` (a string): ``{"field": "channels", "op": "contains", "value": "web"}``,
             ``{"field": "loyalty_programs", "op": "contains", "value": "default"}``
    any      ``is_null`` ``is_not_null`` (no ``value``)
    ======== ==================================================================================

    A comparison on a field without a value is false (so ``not`` of it is true): test absence with
    ``is_null``. ``days_since_last_purchase``, ``days_since_last_contact``, ``tenure_days`` … are
    whole days counted against now; they are never stored, so they never go stale.

    Loyalty fields come from the loyalty service's events: ``referrals_made`` (``{"field":
    "referrals_made", "op": ">=", "value": 2}``), ``loyalty_tier`` (``{"field": "loyalty_tier", "op":
    "=", "value": "gold"}``: tiers are each program's own words, so they are not a fixed vocabulary
    and have no order here), ``loyalty_member``, ``loyalty_programs``, ``member_since``,
    ``membership_days``, ``points_earned``, ``points_redeemed``.

Time windows over the facts (``within_days`` 1–3650 and ``at_least`` and/or ``at_most``)
    ``{"purchases": {"within_days": 90, "at_least": 3}}``            purchases (optionally ``channel``)
    ``{"spend": {"within_days": 365, "currency": "EUR", "at_least": 50000}}``  gross spend, minor units
    ``{"refunds": {"within_days": 90, "at_least": 2}}``              refunds
    ``{"contacts": {"within_days": 30, "channel": "phone", "at_least": 2}}``  contacts (optionally
                                                                     ``channel``, ``kind``, ``direction``)
    ``{"complaints": {"within_days": 180, "at_least": 1, "open": true}}``  complaints opened in the
                                                                     window (optionally only open ones)

Membership of another segment
    ``{"in_segment": "<segment id>"}`` — the referenced segment must exist; a chain of references
    that comes back to the segment being saved is refused, naming the path of the reference.

Errors are collected (up to `MAX_ERRORS`) as ``(path, message)`` pairs, the path being dotted from the
rule's root as given to `parse` (``body.rule.all.1.purchases.within_days``), so an API client can
point at the offending spot.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

MAX_DEPTH = 16
MAX_NODES = 256
MAX_ERRORS = 20
MAX_WINDOW_DAYS = 3650
MAX_LIST = 1000


class FieldType(StrEnum):
    INTEGER = "integer"
    NUMBER = "number"
    STRING = "string"
    BOOLEAN = "boolean"
    DATE = "date"
    LIST = "list"


LADDER = ("prospect", "customer", "client", "supporter", "advocate", "partner")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field a rule may test: its type, what it means, and how it maps onto `customer_features`."""

    name: str
    type: FieldType
    description: str
    nullable: bool = False
    choices: tuple[str, ...] | None = None
    ordered: bool = False  # choices are in rank order (comparisons allowed)
    days_since: str | None = None  # a whole-days-since-a-date field computed from this date column

    @property
    def column(self) -> str:
        return self.days_since or self.name


def _f(name: str, type_: FieldType, description: str, **kw: Any) -> FieldSpec:
    return FieldSpec(name, type_, description, **kw)


INT, NUM, STR, BOOL, DATE, LIST = (
    FieldType.INTEGER,
    FieldType.NUMBER,
    FieldType.STRING,
    FieldType.BOOLEAN,
    FieldType.DATE,
    FieldType.LIST,
)

FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        _f("registered_at", DATE, "When the customer registered", nullable=True),
        _f("first_purchase_at", DATE, "First purchase", nullable=True),
        _f("last_purchase_at", DATE, "Last purchase", nullable=True),
        _f("purchase_count", INT, "Purchases ever"),
        _f("refund_count", INT, "Refunds ever"),
        _f("currency", STR, "Main currency (ISO 4217), the one spent most in", nullable=True),
        _f("total_spend_minor", INT, "Gross spend in the main currency, minor units"),
        _f("refunded_minor", INT, "Refunded in the main currency, minor units"),
        _f("net_spend_minor", INT, "Spend minus refunds in the main currency, minor units"),
        _f("average_order_minor", INT, "Average order value in the main currency, minor units"),
        _f("mean_interpurchase_days", NUM, "Mean days between purchases (2+ purchases)", nullable=True),
        _f("channels", LIST, "Channels the customer used (purchases and contacts)"),
        _f("channel_count", INT, "How many channels"),
        _f("multichannel", BOOL, "Two channels or more"),
        _f("contact_count", INT, "Contacts ever"),
        _f("last_contact_at", DATE, "Last contact", nullable=True),
        _f("complaint_count", INT, "Complaints ever"),
        _f("open_complaints", INT, "Complaints not closed"),
        _f("unanswered_complaints", INT, "Open complaints without an answer"),
        _f("sla_breaches", INT, "Service-level breaches on complaints"),
        _f("last_csat", INT, "Last CSAT score", nullable=True),
        _f("last_nps", INT, "Last NPS answer (0–10)", nullable=True),
        _f(
            "nps_category",
            STR,
            "promoter, passive or detractor (last NPS answer)",
            nullable=True,
            choices=("promoter", "passive", "detractor"),
        ),
        _f("last_survey_at", DATE, "Last survey answer", nullable=True),
        _f("loyalty_member", BOOL, "A member of a loyalty program"),
        _f("loyalty_programs", LIST, "Ids of the loyalty programs the customer is a member of"),
        _f(
            "loyalty_tier",
            STR,
            "Loyalty tier in the default program (if a member of it), else in the program joined first",
            nullable=True,
        ),
        _f("member_since", DATE, "Earliest loyalty enrolment", nullable=True),
        _f("referrals_made", INT, "Completed referrals the customer made (all programs)"),
        _f("points_earned", INT, "Loyalty points earned, all programs"),
        _f("points_redeemed", INT, "Loyalty points redeemed, all programs"),
        _f("value_tier", STR, "Value tier of the customer pyramid", nullable=True),
        _f("risk_level", STR, "Abandonment risk level", nullable=True),
        _f(
            "ladder_stage",
            STR,
            "Loyalty ladder stage: " + " < ".join(LADDER),
            nullable=True,
            choices=LADDER,
            ordered=True,
        ),
        _f(
            "days_since_last_purchase",
            INT,
            "Whole days since the last purchase",
            nullable=True,
            days_since="last_purchase_at",
        ),
        _f(
            "days_since_first_purchase",
            INT,
            "Whole days since the first purchase",
            nullable=True,
            days_since="first_purchase_at",
        ),
        _f(
            "days_since_last_contact",
            INT,
            "Whole days since the last contact",
            nullable=True,
            days_since="last_contact_at",
        ),
        _f(
            "days_since_last_survey",
            INT,
            "Whole days since the last survey answer",
            nullable=True,
            days_since="last_survey_at",
        ),
        _f("tenure_days", INT, "Whole days since registration", nullable=True, days_since="registered_at"),
        _f(
            "membership_days",
            INT,
            "Whole days since the first loyalty enrolment",
            nullable=True,
            days_since="member_since",
        ),
    )
}

NUMBER_OPS = ("=", "!=", "<", "<=", ">", ">=", "between")
OPS: dict[FieldType, tuple[str, ...]] = {
    FieldType.INTEGER: NUMBER_OPS,
    FieldType.NUMBER: NUMBER_OPS,
    FieldType.STRING: ("=", "!=", "in", "not_in"),
    FieldType.BOOLEAN: ("=",),
    FieldType.DATE: ("before", "after", "within_last_days", "older_than_days"),
    FieldType.LIST: ("contains",),
}
NULL_OPS = ("is_null", "is_not_null")
ORDERED_OPS = ("<", "<=", ">", ">=")


def operators(spec: FieldSpec) -> tuple[str, ...]:
    ops = OPS[spec.type]
    if spec.ordered:
        ops = ops + ORDERED_OPS
    return ops + NULL_OPS if spec.nullable else ops


# ---- the checked tree -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class All:
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Not:
    rule: Rule


@dataclass(frozen=True, slots=True)
class Compare:
    field: FieldSpec
    op: str
    value: Any = None  # int | float | str | bool | datetime | tuple, per op


@dataclass(frozen=True, slots=True)
class Window:
    """A count (or a sum of money) of facts of one kind within the last `days`, between bounds."""

    kind: str  # purchases | spend | refunds | contacts | complaints
    days: int
    at_least: int | None
    at_most: int | None
    filters: tuple[tuple[str, Any], ...] = ()  # (fact column, value)


@dataclass(frozen=True, slots=True)
class InSegment:
    segment_id: str
    path: str = field(compare=False, default="")


Rule = All | AnyOf | Not | Compare | Window | InSegment


def walk(rule: Rule) -> Iterator[Rule]:
    yield rule
    if isinstance(rule, All | AnyOf):
        for child in rule.rules:
            yield from walk(child)
    elif isinstance(rule, Not):
        yield from walk(rule.rule)


def references(rule: Rule) -> list[InSegment]:
    """The `in_segment` nodes of a rule (with their paths), in document order."""
    return [node for node in walk(rule) if isinstance(node, InSegment)]


def is_time_relative(rule: Rule) -> bool:
    """Whether the rule's result can change by time passing alone (so the scheduled pass re-runs it)."""
    for node in walk(rule):
        if isinstance(node, Window):
            return True
        if isinstance(node, Compare) and (
            node.field.days_since or node.op in ("within_last_days", "older_than_days")
        ):
            return True
    return False


# ---- parsing --------------------------------------------------------------------------------


class RuleErrors(Exception):
    """The rule is invalid; `errors` holds (path, message) pairs, most specific path first."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class WindowSpec:
    description: str
    bound: str  # what at_least / at_most bound: "count" or "amount (minor units)"
    filters: Mapping[str, FieldType]  # optional (or required, see `required`) filter keys
    required: tuple[str, ...] = ()


WINDOWS: dict[str, WindowSpec] = {
    "purchases": WindowSpec("purchases in the window", "count", {"channel": STR}),
    "spend": WindowSpec(
        "gross spend in one currency in the window", "amount in minor units", {"currency": STR}, ("currency",)
    ),
    "refunds": WindowSpec("refunds in the window", "count", {}),
    "contacts": WindowSpec(
        "contacts in the window", "count", {"channel": STR, "kind": STR, "direction": STR}
    ),
    "complaints": WindowSpec("complaints opened in the window", "count", {"open": BOOL}),
}
COMBINATORS = ("all", "any", "not")
NODE_KEYS = (*COMBINATORS, "field", "in_segment", *WINDOWS)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_DIRECTIONS = ("inbound", "outbound")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _suggest(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(options), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class _Parser:
    def __init__(self, segment_exists: Callable[[str], bool] | None) -> None:
        self.errors: list[tuple[str, str]] = []
        self.nodes = 0
        self.segment_exists = segment_exists

    def fail(self, path: str, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append((path, message))

    def rule(self, raw: Any, path: str, depth: int) -> Rule | None:
        self.nodes += 1
        if self.nodes == MAX_NODES + 1:
            self.fail(path, f"a rule may have at most {MAX_NODES} nodes")
        if depth > MAX_DEPTH:
            self.fail(path, f"rules nest at most {MAX_DEPTH} levels deep")
            return None
        if not isinstance(raw, dict):
            self.fail(path, f"expected a rule object, got {_type_name(raw)}")
            return None
        kinds = [k for k in raw if k in NODE_KEYS]
        if not kinds:
            unknown = next(iter(raw), None)
            hint = _suggest(unknown, NODE_KEYS) if isinstance(unknown, str) else ""
            where = f"{path}.{unknown}" if unknown is not None else path
            self.fail(where, f"a rule needs one of {', '.join(NODE_KEYS)}{hint}")
            return None
        if len(kinds) > 1:
            self.fail(
                f"{path}.{kinds[1]}",
                f"a rule has exactly one of {', '.join(NODE_KEYS)}; "
                f"combine {kinds[0]!r} and {kinds[1]!r} with 'all' or 'any'",
            )
            return None
        kind = kinds[0]
        if kind == "field":
            return self.compare(raw, path)
        extra = [k for k in raw if k != kind]
        for key in extra:
            self.fail(f"{path}.{key}", f"unexpected key next to {kind!r}")
        if kind in ("all", "any"):
            return self.combine(kind, raw[kind], f"{path}.{kind}", depth)
        if kind == "not":
            child = self.rule(raw["not"], f"{path}.not", depth + 1)
            return Not(child) if child is not None else None
        if kind == "in_segment":
            return self.in_segment(raw["in_segment"], f"{path}.in_segment")
        return self.window(kind, raw[kind], f"{path}.{kind}")

    def combine(self, kind: str, raw: Any, path: str, depth: int) -> Rule | None:
        if not isinstance(raw, list):
            self.fail(path, f"expected a list of rules, got {_type_name(raw)}")
            return None
        if not raw:
            self.fail(path, "expected at least one rule")
            return None
        children = [self.rule(child, f"{path}.{i}", depth + 1) for i, child in enumerate(raw)]
        if any(c is None for c in children):
            return None
        rules = tuple(c for c in children if c is not None)
        return All(rules) if kind == "all" else AnyOf(rules)

    def in_segment(self, raw: Any, path: str) -> Rule | None:
        if not isinstance(raw, str) or not raw.strip():
            self.fail(path, f"expected a segment id (a string), got {_type_name(raw)}")
            return None
        if self.segment_exists is not None and not self.segment_exists(raw):
            self.fail(path, f"no segment {raw!r}")
            return None
        return InSegment(raw, path)

    # -- comparisons --

    def compare(self, raw: dict[str, Any], path: str) -> Rule | None:
        name = raw["field"]
        for key in raw:
            if key not in ("field", "op", "value"):
                self.fail(f"{path}.{key}", "unexpected key; a comparison has field, op and value")
        if not isinstance(name, str):
            self.fail(f"{path}.field", f"expected a field name (a string), got {_type_name(name)}")
            return None
        spec = FIELDS.get(name)
        if spec is None:
            self.fail(f"{path}.field", f"unknown field {name!r}{_suggest(name, list(FIELDS))}")
            return None
        allowed = operators(spec)
        op = raw.get("op")
        if op is None:
            self.fail(f"{path}.op", f"missing; one of {', '.join(allowed)}")
            return None
        if not isinstance(op, str) or op not in allowed:
            shown = op if isinstance(op, str) else _type_name(op)
            self.fail(
                f"{path}.op",
                f"{shown!r} does not apply to {name} ({spec.type}); use one of {', '.join(allowed)}",
            )
            return None
        vpath = f"{path}.value"
        if op in NULL_OPS:
            if "value" in raw:
                self.fail(vpath, f"{op} takes no value")
                return None
            return Compare(spec, op)
        if "value" not in raw:
            self.fail(vpath, f"missing; {op} on {name} needs a value")
            return None
        value = self.value(spec, op, raw["value"], vpath)
        return None if value is _BAD else Compare(spec, op, value)

    def value(self, spec: FieldSpec, op: str, raw: Any, path: str) -> Any:
        t = spec.type
        if op in ("within_last_days", "older_than_days"):
            return self.days(raw, path)
        if op == "between":
            if not isinstance(raw, list) or len(raw) != 2:
                self.fail(path, f"between takes [low, high], got {_type_name(raw)}")
                return _BAD
            low = self.scalar(spec, raw[0], f"{path}.0")
            high = self.scalar(spec, raw[1], f"{path}.1")
            if low is _BAD or high is _BAD:
                return _BAD
            if low > high:
                self.fail(path, f"low ({low}) is above high ({high})")
                return _BAD
            return (low, high)
        if op in ("in", "not_in"):
            if not isinstance(raw, list) or not raw:
                self.fail(path, f"{op} takes a non-empty list, got {_type_name(raw)}")
                return _BAD
            if len(raw) > MAX_LIST:
                self.fail(path, f"at most {MAX_LIST} values")
                return _BAD
            items = [self.scalar(spec, item, f"{path}.{i}") for i, item in enumerate(raw)]
            return _BAD if any(i is _BAD for i in items) else tuple(dict.fromkeys(items))
        if t is FieldType.LIST:
            if not isinstance(raw, str):
                self.fail(path, f"contains takes a string, got {_type_name(raw)}")
                return _BAD
            return raw
        return self.scalar(spec, raw, path)

    def scalar(self, spec: FieldSpec, raw: Any, path: str) -> Any:
        t = spec.type
        if t in (FieldType.INTEGER, FieldType.NUMBER):
            ok = isinstance(raw, int) and not isinstance(raw, bool)
            if t is FieldType.NUMBER:
                ok = ok or isinstance(raw, float)
            if not ok:
                want = "an integer" if t is FieldType.INTEGER else "a number"
                self.fail(path, f"{spec.name} is {t}: expected {want}, got {_type_name(raw)}")
                return _BAD
            return raw
        if t is FieldType.BOOLEAN:
            if not isinstance(raw, bool):
                self.fail(path, f"{spec.name} is boolean: expected true or false, got {_type_name(raw)}")
                return _BAD
            return raw
        if t is FieldType.DATE:
            return self.instant(raw, path)
        if not isinstance(raw, str):
            self.fail(path, f"{spec.name} is a string: expected a string, got {_type_name(raw)}")
            return _BAD
        if spec.choices is not None and raw not in spec.choices:
            self.fail(
                path,
                f"{raw!r} is not a {spec.name}: one of {', '.join(spec.choices)}"
                f"{_suggest(raw, spec.choices)}",
            )
            return _BAD
        return raw

    def instant(self, raw: Any, path: str) -> Any:
        if isinstance(raw, str):
            try:
                if len(raw) == 10:
                    d = date.fromisoformat(raw)
                    return datetime(d.year, d.month, d.day, tzinfo=UTC)
                parsed = datetime.fromisoformat(raw)
            except ValueError:
                pass
            else:
                if parsed.tzinfo is None:
                    self.fail(path, "a date-time needs a time zone (e.g. 2025-01-31T00:00:00Z)")
                    return _BAD
                return parsed.astimezone(UTC)
        self.fail(path, f"expected an ISO 8601 date or date-time, got {_type_name(raw)}")
        return _BAD

    def days(self, raw: Any, path: str) -> Any:
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_WINDOW_DAYS:
            self.fail(path, f"expected whole days from 0 to {MAX_WINDOW_DAYS}, got {raw!r}")
            return _BAD
        return raw

    # -- windows --

    def window(self, kind: str, raw: Any, path: str) -> Rule | None:
        spec = WINDOWS[kind]
        if not isinstance(raw, dict):
            self.fail(
                path, f'expected an object like {{"within_days": 90, "at_least": 1}}, got {_type_name(raw)}'
            )
            return None
        ok = True
        known = ("within_days", "at_least", "at_most", *spec.filters)
        for key in raw:
            if key not in known:
                self.fail(
                    f"{path}.{key}",
                    f"unknown key for {kind}; allowed: {', '.join(known)}{_suggest(key, known)}",
                )
                ok = False
        days = raw.get("within_days")
        if days is None:
            self.fail(f"{path}.within_days", "missing; how many days back the window reaches")
            ok = False
        elif isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_WINDOW_DAYS:
            self.fail(f"{path}.within_days", f"expected whole days from 1 to {MAX_WINDOW_DAYS}, got {days!r}")
            ok = False
        bounds: dict[str, int | None] = {}
        for key in ("at_least", "at_most"):
            value = raw.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                self.fail(f"{path}.{key}", f"expected a whole {spec.bound} of 0 or more, got {value!r}")
                ok = False
                value = None
            bounds[key] = value
        if "at_least" not in raw and "at_most" not in raw:
            self.fail(path, "give at_least, at_most or both")
            ok = False
        low, high = bounds["at_least"], bounds["at_most"]
        if low is not None and high is not None and low > high:
            self.fail(f"{path}.at_most", f"below at_least ({low})")
            ok = False
        filters: list[tuple[str, Any]] = []
        for key, type_ in spec.filters.items():
            if key not in raw:
                if key in spec.required:
                    self.fail(f"{path}.{key}", f"missing; {kind} needs a {key}")
                    ok = False
                continue
            value = raw[key]
            fpath = f"{path}.{key}"
            if type_ is FieldType.BOOLEAN and not isinstance(value, bool):
                self.fail(fpath, f"expected true or false, got {_type_name(value)}")
                ok = False
            elif type_ is FieldType.STRING and (not isinstance(value, str) or not value):
                self.fail(fpath, f"expected a non-empty string, got {_type_name(value)}")
                ok = False
            elif key == "currency" and not _CURRENCY.match(value):
                self.fail(fpath, f"expected a 3-letter ISO 4217 code in capitals, got {value!r}")
                ok = False
            elif key == "direction" and value not in _DIRECTIONS:
                self.fail(fpath, f"expected inbound or outbound, got {value!r}")
                ok = False
            else:
                filters.append((key, value))
        if not ok:
            return None
        assert isinstance(days, int)
        return Window(kind, days, low, high, tuple(filters))


_BAD: Any = object()


def parse(raw: Any, path: str = "rule", *, segment_exists: Callable[[str], bool] | None = None) -> Rule:
    """Check a JSON rule and build its tree, or raise `RuleErrors` naming every fault's path.

    `segment_exists` (if given) is asked about each `in_segment` id."""
    parser = _Parser(segment_exists)
    rule = parser.rule(raw, path, 0)
    if parser.errors or rule is None:
        raise RuleErrors(parser.errors or [(path, "invalid rule")])
    return rule


def find_cycle(
    start: str, first_refs: list[InSegment], refs_of: Callable[[str], list[str]]
) -> tuple[InSegment, list[str]] | None:
    """If segment `start`, referencing `first_refs`, would reach itself through the references of
    other segments (`refs_of(id)`), the reference that starts the cycle and the cycle's ids."""
    for ref in first_refs:
        stack: list[tuple[str, list[str]]] = [(ref.segment_id, [start, ref.segment_id])]
        seen: set[str] = set()
        while stack:
            current, trail = stack.pop()
            if current == start:
                return ref, trail
            if current in seen:
                continue
            seen.add(current)
            for nxt in refs_of(current):
                stack.append((nxt, [*trail, nxt]))
    return None


def catalogue() -> list[dict[str, Any]]:
    """The fields, their types and operators, as documented to API clients."""
    return [
        {
            "field": spec.name,
            "type": spec.type.value,
            "nullable": spec.nullable,
            "operators": list(operators(spec)),
            "choices": list(spec.choices) if spec.choices else None,
            "description": spec.description,
        }
        for spec in FIELDS.values()
    ]
