"""Refund and payment status rules (`services.interactions.refunds`), without a database."""

from __future__ import annotations

from typing import Any

import pytest

from services.interactions.refunds import (
    TRANSITIONS,
    BoughtLine,
    PaymentStatus,
    ReturnedLine,
    TransitionRefused,
    check_transition,
    plan_refund,
)
from shared.errors import Conflict, InvalidInput

# 2 × 49.99 + 3 × 5.00 = 114.98 EUR
LINES = {
    1: BoughtLine(line_no=1, quantity=2, unit_price_minor=4999),
    2: BoughtLine(line_no=2, quantity=3, unit_price_minor=500),
}


def plan(**overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "status": PaymentStatus.PAID,
        "total_minor": 11498,
        "refunded_minor": 0,
        "currency": "EUR",
        "lines": LINES,
        "returns": [],
        "amount_minor": None,
        "amount_currency": None,
    } | overrides
    return plan_refund(**arguments)


def refused_field(**overrides: Any) -> str:
    with pytest.raises(InvalidInput) as refused:
        plan(**overrides)
    return refused.value.errors[0].field


class TestPlanRefund:
    def test_returned_lines_are_refunded_at_the_price_paid(self) -> None:
        result = plan(returns=[ReturnedLine(1, 1), ReturnedLine(2, 2)])
        assert result.amount_minor == 4999 + 1000
        assert result.refunded_total_minor == 5999
        assert result.status is PaymentStatus.PARTIALLY_REFUNDED
        assert result.returned == (ReturnedLine(1, 1), ReturnedLine(2, 2))

    def test_the_last_cent_makes_it_refunded(self) -> None:
        result = plan(refunded_minor=11000, amount_minor=498, amount_currency="EUR")
        assert (result.refunded_total_minor, result.status) == (11498, PaymentStatus.REFUNDED)

    def test_an_amount_can_differ_from_the_goods_value(self) -> None:
        result = plan(returns=[ReturnedLine(1, 2)], amount_minor=8998, amount_currency="EUR")
        assert result.amount_minor == 8998  # a restocking fee of 10.00 kept

    def test_goods_back_without_money_leave_a_paid_purchase_paid(self) -> None:
        result = plan(returns=[ReturnedLine(2, 1)], amount_minor=0, amount_currency="EUR")
        assert (result.amount_minor, result.status) == (0, PaymentStatus.PAID)

    def test_more_than_bought_minus_returned_names_the_quantity(self) -> None:
        lines = {**LINES, 1: BoughtLine(line_no=1, quantity=2, unit_price_minor=4999, returned_quantity=1)}
        assert refused_field(lines=lines, returns=[ReturnedLine(2, 1), ReturnedLine(1, 2)]) == (
            "body.lines.1.quantity"
        )
        assert plan(lines=lines, returns=[ReturnedLine(1, 1)]).amount_minor == 4999

    def test_an_unknown_or_repeated_line_names_the_line_number(self) -> None:
        assert refused_field(returns=[ReturnedLine(7, 1)]) == "body.lines.0.line_no"
        assert refused_field(returns=[ReturnedLine(2, 1), ReturnedLine(2, 1)]) == "body.lines.1.line_no"

    def test_a_quantity_below_one_names_it(self) -> None:
        assert refused_field(returns=[ReturnedLine(1, 0)]) == "body.lines.0.quantity"

    def test_over_refunding_names_the_amount(self) -> None:
        assert refused_field(amount_minor=11499, amount_currency="EUR") == "body.amount_minor"
        assert (
            refused_field(refunded_minor=11000, amount_minor=499, amount_currency="EUR")
            == "body.amount_minor"
        )

    def test_goods_worth_more_than_what_is_left_name_the_lines(self) -> None:
        assert refused_field(refunded_minor=10000, returns=[ReturnedLine(1, 1)]) == "body.lines"

    def test_another_currency_or_none_names_the_currency(self) -> None:
        assert refused_field(amount_minor=100, amount_currency="USD") == "body.currency"
        assert refused_field(amount_minor=100) == "body.currency"
        assert refused_field(returns=[ReturnedLine(1, 1)], amount_currency="GBP") == "body.currency"

    def test_nothing_to_refund_is_refused(self) -> None:
        assert refused_field() == "body"
        assert refused_field(amount_minor=0, amount_currency="EUR") == "body.amount_minor"

    @pytest.mark.parametrize(
        "status",
        [PaymentStatus.PENDING, PaymentStatus.AUTHORIZED, PaymentStatus.FAILED, PaymentStatus.CANCELLED],
    )
    def test_a_purchase_never_paid_is_a_conflict(self, status: PaymentStatus) -> None:
        with pytest.raises(Conflict):
            plan(status=status, returns=[ReturnedLine(1, 1)])

    def test_a_fully_refunded_purchase_takes_goods_but_no_money(self) -> None:
        done = {"status": PaymentStatus.REFUNDED, "refunded_minor": 11498}
        assert plan(**done, returns=[ReturnedLine(1, 1)], amount_minor=0, amount_currency="EUR").status is (
            PaymentStatus.REFUNDED
        )
        assert refused_field(**done, amount_minor=1, amount_currency="EUR") == "body.amount_minor"


class TestPaymentTransitions:
    @pytest.mark.parametrize(
        ("current", "target"),
        [
            ("pending", "authorized"),
            ("pending", "paid"),
            ("pending", "failed"),
            ("pending", "cancelled"),
            ("authorized", "paid"),
            ("authorized", "cancelled"),
            ("failed", "pending"),
            ("failed", "paid"),
            ("paid", "paid"),
        ],
    )
    def test_allowed(self, current: str, target: str) -> None:
        check_transition(PaymentStatus(current), PaymentStatus(target))

    @pytest.mark.parametrize(
        ("current", "target"),
        [
            ("paid", "pending"),
            ("paid", "failed"),
            ("paid", "cancelled"),
            ("cancelled", "paid"),
            ("refunded", "paid"),
            ("partially_refunded", "paid"),
            ("authorized", "pending"),
        ],
    )
    def test_refused(self, current: str, target: str) -> None:
        with pytest.raises(TransitionRefused):
            check_transition(PaymentStatus(current), PaymentStatus(target))

    @pytest.mark.parametrize("current", list(PaymentStatus))
    def test_refund_statuses_come_only_from_refunds(self, current: PaymentStatus) -> None:
        for target in (PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED):
            if target is current:
                continue
            with pytest.raises(TransitionRefused, match="refunds"):
                check_transition(current, target)
            assert target not in TRANSITIONS[current]
