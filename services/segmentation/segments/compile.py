"""Compile a checked rule (`rules.Rule`) to one SQLAlchemy Core boolean over `customer_features`.

The SQL is what one would write by hand:

* comparisons are plain predicates on the features row (``net_spend_minor >= :v``); nullable fields
  are guarded (``last_csat IS NOT NULL AND last_csat >= :v``) so that ``not`` stays two-valued;
* "whole days since" fields become date comparisons against a cut-off computed once in Python
  (``days_since_last_purchase >= 30`` is ``last_purchase_at <= :now_minus_30d``): index-friendly,
  nothing is computed per row;
* a time window is an uncorrelated semi-join: ``customer_id IN (SELECT customer_id FROM
  purchase_facts WHERE occurred_at >= :cut GROUP BY customer_id HAVING count(*) >= 3)`` (no GROUP
  BY when one fact is enough); an upper bound alone (customers with no fact count too) is the
  ``NOT IN`` of the customers above it. PostgreSQL runs these as hash (anti-)joins;
* ``in_segment`` is ``EXISTS`` on the members' primary key.

`restrict` (a few customer ids, for the real-time path) is pushed into every fact subquery so that a
re-evaluation after one event reads only that customer's facts.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Table,
    and_,
    bindparam,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB

from services.segmentation.models import CustomerFeatures
from services.segmentation.segments import rules
from services.segmentation.segments.models import SegmentMember
from shared.db import UTCDateTime

FEATURES: Table = CustomerFeatures.__table__  # type: ignore[assignment]
MEMBERS: Table = SegmentMember.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class FactSource:
    table: str
    time_column: str
    amount_column: str | None = None  # None: count facts; else sum this column


FACTS: dict[str, FactSource] = {
    "purchases": FactSource("purchase_facts", "occurred_at"),
    "spend": FactSource("purchase_facts", "occurred_at", "total_minor"),
    "refunds": FactSource("refund_facts", "occurred_at"),
    "contacts": FactSource("contact_facts", "occurred_at"),
    "complaints": FactSource("complaint_facts", "opened_at"),
}

COMPARISONS: dict[str, Callable[[ColumnElement[Any], Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
DATE_OPS = {"before": "<", "after": ">", "within_last_days": ">=", "older_than_days": "<"}


class Compiler:
    def __init__(
        self,
        *,
        now: datetime,
        dialect: str,
        restrict: Sequence[str] | None = None,
        inline: Mapping[str, rules.Rule] | None = None,
        parametric: bool = False,
        value: Any = None,
    ) -> None:
        self.now = now
        # `value`: `customer_value` joined to the features row by the statement (the batch path: one
        # join instead of one primary-key lookup per customer and per value field in the rule).
        self.value = value
        self.dialect = dialect
        self.restrict = list(restrict) if restrict is not None else None
        # Parametric: the instants (`now` minus N days) and the restricting ids are bind parameters
        # (`cut_<N>`, `restrict_ids`), so the statement can be built once and run for any `now` and
        # any customers with `cut_params(cuts, now)` and the ids.
        self.parametric = parametric
        self.cuts: set[int] = set()
        # `in_segment` of these segments becomes their rule itself (the real-time path evaluates a
        # segment and those built on it in one statement: membership after it equals the rule).
        self.inline = dict(inline or {})
        self.inlining: list[str] = []

    def cut(self, days: int) -> ColumnElement[Any]:
        if self.parametric:
            self.cuts.add(days)
            return bindparam(f"cut_{days}", type_=UTCDateTime())
        return literal(self.now - timedelta(days=days), UTCDateTime())

    def restricted(self, column: ColumnElement[Any]) -> ColumnElement[bool]:
        if self.parametric:
            return column.in_(bindparam(RESTRICT_IDS, expanding=True))
        assert self.restrict is not None
        return column.in_(self.restrict)

    def compile(self, rule: rules.Rule) -> ColumnElement[bool]:
        if isinstance(rule, rules.All):
            return and_(*(self.compile(r) for r in rule.rules))
        if isinstance(rule, rules.AnyOf):
            return or_(*(self.compile(r) for r in rule.rules))
        if isinstance(rule, rules.Not):
            return not_(self.compile(rule.rule))
        if isinstance(rule, rules.Compare):
            return self.compare(rule)
        if isinstance(rule, rules.Window):
            return self.window(rule)
        target = self.inline.get(rule.segment_id)
        if target is not None and rule.segment_id not in self.inlining:
            self.inlining.append(rule.segment_id)
            try:
                return self.compile(target)
            finally:
                self.inlining.pop()
        return exists().where(
            MEMBERS.c.segment_id == rule.segment_id, MEMBERS.c.customer_id == FEATURES.c.customer_id
        )

    # -- comparisons --

    def column(self, spec: rules.FieldSpec) -> ColumnElement[Any]:
        column = FEATURES.c.get(spec.column)
        if column is not None:
            return column
        # Value, risk and stage live in `customer_value` (one row per customer, by primary key).
        value_table = FEATURES.metadata.tables.get("customer_value")
        if value_table is not None and spec.column in value_table.c:
            if self.value is not None:
                return self.value.c[spec.column]  # type: ignore[no-any-return]
            return (
                select(value_table.c[spec.column])
                .where(value_table.c.customer_id == FEATURES.c.customer_id)
                .scalar_subquery()
            )
        # A catalogue field whose column this deployment does not have yet.
        return null() if spec.type is not rules.FieldType.STRING else cast(null(), String)

    def compare(self, node: rules.Compare) -> ColumnElement[bool]:
        spec, op, value = node.field, node.op, node.value
        col = self.column(spec)
        if op == "is_null":
            return col.is_(None)
        if op == "is_not_null":
            return col.is_not(None)
        if spec.days_since:
            expr = self.days_since(col, op, value)
        elif spec.type is rules.FieldType.DATE:
            bound = value if op in ("before", "after") else self.cut(value)
            expr = COMPARISONS[DATE_OPS[op]](col, bound)
        elif spec.type is rules.FieldType.LIST:
            expr = self.contains(col, value)
        elif spec.ordered and op in rules.ORDERED_OPS:
            assert spec.choices is not None
            rank = spec.choices.index(value)
            keep = {
                "<": spec.choices[:rank],
                "<=": spec.choices[: rank + 1],
                ">": spec.choices[rank + 1 :],
                ">=": spec.choices[rank:],
            }[op]
            expr = col.in_(keep) if keep else false()
        else:
            expr = self.scalar(col, op, value)
        if spec.nullable or FEATURES.c.get(spec.column) is None:
            return and_(col.is_not(None), expr)
        return expr

    @staticmethod
    def scalar(col: ColumnElement[Any], op: str, value: Any) -> ColumnElement[bool]:
        if op == "between":
            return col.between(value[0], value[1])
        if op == "in":
            return col.in_(list(value))
        if op == "not_in":
            return col.not_in(list(value))
        result: ColumnElement[bool] = COMPARISONS[op](col, value)
        return result

    def days_since(self, col: ColumnElement[Any], op: str, value: Any) -> ColumnElement[bool]:
        """Whole days elapsed since `col` compared with `value`, as comparisons of `col` itself:
        floor((now - col) / 1 day) >= n  ⇔  col <= now - n days."""
        if op == ">=":
            return col <= self.cut(value)
        if op == ">":
            return col <= self.cut(value + 1)
        if op == "<=":
            return col > self.cut(value + 1)
        if op == "<":
            return col > self.cut(value)
        if op == "=":
            return and_(col <= self.cut(value), col > self.cut(value + 1))
        if op == "!=":
            return or_(col > self.cut(value), col <= self.cut(value + 1))
        low, high = value  # between
        return and_(col <= self.cut(low), col > self.cut(high + 1))

    def contains(self, col: ColumnElement[Any], value: str) -> ColumnElement[bool]:
        if self.dialect == "postgresql":
            # the jsonb `?` operator: is the string an element of the list
            has: ColumnElement[bool] = cast(col, JSONB).has_key(value)  # type: ignore[no-untyped-call]
            return has
        items = func.json_each(col).table_valued("value")
        return exists().select_from(items).where(items.c.value == value)

    # -- windows --

    def window(self, node: rules.Window) -> ColumnElement[bool]:
        source = FACTS[node.kind]
        table: Table = FEATURES.metadata.tables[source.table]
        customer = table.c.customer_id
        conditions: list[ColumnElement[bool]] = [table.c[source.time_column] >= self.cut(node.days)]
        for name, value in node.filters:
            conditions.append(table.c[name] == value)
        if self.restrict is not None or self.parametric:
            conditions.append(self.restricted(customer))
        measure = func.count() if source.amount_column is None else func.sum(table.c[source.amount_column])
        low, high = node.at_least or 0, node.at_most
        if low == 0 and high is None:
            return true()
        if high is None:
            if low == 1 and source.amount_column is None:
                return FEATURES.c.customer_id.in_(select(customer).where(*conditions))
            above = select(customer).where(*conditions).group_by(customer).having(measure >= low)
            return FEATURES.c.customer_id.in_(above)
        if low == 0:
            # Customers with no fact in the window have 0 too: keep everyone but those above `high`.
            over = select(customer).where(*conditions).group_by(customer).having(measure > high)
            return FEATURES.c.customer_id.not_in(over)
        inside = select(customer).where(*conditions).group_by(customer).having(measure.between(low, high))
        return FEATURES.c.customer_id.in_(inside)


def matching(
    rule: rules.Rule, *, now: datetime, dialect: str, restrict: Sequence[str] | None = None
) -> Select[tuple[str]]:
    """SELECT customer_id FROM customer_features WHERE not erased AND <rule> [AND id IN restrict]."""
    compiler = Compiler(now=now, dialect=dialect, restrict=restrict)
    statement = select(FEATURES.c.customer_id).where(FEATURES.c.erased == false(), compiler.compile(rule))
    if restrict is not None:
        statement = statement.where(FEATURES.c.customer_id.in_(list(restrict)))
    return statement


def predicate(
    rule: rules.Rule,
    *,
    now: datetime,
    dialect: str,
    restrict: Sequence[str] | None = None,
    inline: Mapping[str, rules.Rule] | None = None,
    value: Any = None,
) -> ColumnElement[bool]:
    """The rule alone as a boolean over `customer_features` (for a SELECT listing many segments);
    with `value`, over `customer_features` LEFT JOIN `value` (`customer_value`) on the customer id."""
    return Compiler(now=now, dialect=dialect, restrict=restrict, inline=inline, value=value).compile(rule)


RESTRICT_IDS = "restrict_ids"


def parametric_predicates(
    targets: Sequence[rules.Rule], *, dialect: str, inline: Mapping[str, rules.Rule] | None = None
) -> tuple[list[ColumnElement[bool]], frozenset[int]]:
    """`predicate` of each rule, restricted to the customers bound as `restrict_ids`, with every
    instant a bind parameter: built once, run for any `now` with `cut_params(cuts, now)`. Returns the
    predicates and the day offsets (cuts) they need."""
    compiler = Compiler(now=datetime.min, dialect=dialect, inline=inline, parametric=True)
    columns = [compiler.compile(rule) for rule in targets]
    return columns, frozenset(compiler.cuts)


def cut_params(cuts: frozenset[int], now: datetime) -> dict[str, datetime]:
    return {f"cut_{days}": now - timedelta(days=days) for days in cuts}


def fields(rule: rules.Rule) -> frozenset[str]:
    """What the rule reads, besides other segments: feature/value columns (`last_purchase_at` for
    `days_since_last_purchase`) and `window:<kind>` for windows over the facts."""
    out: set[str] = set()
    for node in rules.walk(rule):
        if isinstance(node, rules.Compare):
            out.add(node.field.column)
        elif isinstance(node, rules.Window):
            out.add(f"window:{node.kind}")
    return frozenset(out)
