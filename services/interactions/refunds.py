"""Payment status and refund rules of a purchase, free of I/O.

A purchase's payment goes `pending → authorized → paid`, or `failed` (which may be retried) or
`cancelled`. Once money was taken, only refunds change it: `partially_refunded` while something is
left, `refunded` when the whole total came back. Those two are never set by hand: they follow from
the refunds recorded, so the status and the amounts can never disagree.

A refund returns goods (lines, by quantity), money (an amount in minor units), or both (goods back
with a restocking fee kept, say). Nobody gets back more goods than were bought, nor more money than
was paid, whatever the order or concurrency of the refunds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from services.interactions.domain import format_money
from shared.errors import Conflict, InvalidInput


class PaymentStatus(StrEnum):
    PENDING = "pending"  # ordered, not paid yet (invoice, cash on delivery)
    AUTHORIZED = "authorized"  # card authorised, not captured
    PAID = "paid"  # money taken
    FAILED = "failed"  # payment refused; may be retried
    CANCELLED = "cancelled"  # the order was cancelled before any money was taken
    PARTIALLY_REFUNDED = "partially_refunded"  # paid, part of it refunded (set by refunds only)
    REFUNDED = "refunded"  # paid, all of it refunded (set by refunds only)


#: The statuses a purchase may be recorded with.
INITIAL_STATUSES = frozenset(
    {PaymentStatus.PENDING, PaymentStatus.AUTHORIZED, PaymentStatus.PAID, PaymentStatus.FAILED}
)

#: What `POST /purchases/{id}/payment-status` may do; refunds do the rest.
TRANSITIONS: Mapping[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.PENDING: frozenset(
        {PaymentStatus.AUTHORIZED, PaymentStatus.PAID, PaymentStatus.FAILED, PaymentStatus.CANCELLED}
    ),
    PaymentStatus.AUTHORIZED: frozenset({PaymentStatus.PAID, PaymentStatus.FAILED, PaymentStatus.CANCELLED}),
    PaymentStatus.FAILED: frozenset({PaymentStatus.PENDING, PaymentStatus.PAID, PaymentStatus.CANCELLED}),
    PaymentStatus.PAID: frozenset(),
    PaymentStatus.PARTIALLY_REFUNDED: frozenset(),
    PaymentStatus.REFUNDED: frozenset(),
    PaymentStatus.CANCELLED: frozenset(),
}

#: Statuses under which money was taken, so that refunds (and returns) can be recorded.
REFUNDABLE = frozenset({PaymentStatus.PAID, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED})
_SET_BY_REFUNDS = frozenset({PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED})


class TransitionRefused(Exception):
    """The payment status cannot go there from where it is (the caller answers 409)."""


def check_transition(current: PaymentStatus, target: PaymentStatus) -> None:
    """Raise `TransitionRefused` unless `current → target` is allowed (staying put is allowed)."""
    if target == current:
        return
    if target in _SET_BY_REFUNDS:
        raise TransitionRefused(
            f"{target.value} follows from refunds: record one with POST /purchases/{{id}}/refunds"
        )
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none"
        raise TransitionRefused(
            f"a {current.value} purchase cannot become {target.value} (allowed: {allowed})"
        )


def status_after_refunds(current: PaymentStatus, total_minor: int, refunded_minor: int) -> PaymentStatus:
    """Goods returned without money back (a zero refund) leave a paid purchase paid."""
    if refunded_minor <= 0:
        return current
    return PaymentStatus.REFUNDED if refunded_minor >= total_minor else PaymentStatus.PARTIALLY_REFUNDED


@dataclass(frozen=True, slots=True)
class BoughtLine:
    """A purchase line as bought, and how much of it has come back so far."""

    line_no: int
    quantity: int
    unit_price_minor: int
    returned_quantity: int = 0

    @property
    def returnable(self) -> int:
        return self.quantity - self.returned_quantity


@dataclass(frozen=True, slots=True)
class ReturnedLine:
    line_no: int
    quantity: int


@dataclass(frozen=True, slots=True)
class RefundPlan:
    amount_minor: int  # money given back by this refund
    returned: tuple[ReturnedLine, ...]  # goods coming back, one entry per purchase line
    refunded_total_minor: int  # everything refunded on the purchase, this refund included
    status: PaymentStatus  # the purchase's payment status afterwards


def plan_refund(
    *,
    status: PaymentStatus,
    total_minor: int,
    refunded_minor: int,
    currency: str,
    lines: Mapping[int, BoughtLine],
    returns: Sequence[ReturnedLine],
    amount_minor: int | None,
    amount_currency: str | None,
) -> RefundPlan:
    """Check a refund against the purchase as it stands and say what it does. Without an amount, the
    refund is worth the returned goods at the price paid. Raises `InvalidInput` naming the field at
    fault: `body.lines.N.line_no`/`quantity`, `body.currency`, `body.amount_minor`, `body.lines`;
    `Conflict` when no money was taken (a pending, failed or cancelled purchase)."""
    if status not in REFUNDABLE:
        raise Conflict(f"the purchase is {status.value}: no money was taken, so there is nothing to refund")
    if amount_minor is not None and amount_currency is None:
        raise InvalidInput("body.currency", f"give the currency of amount_minor ({currency})")
    if amount_currency is not None and amount_currency != currency:
        raise InvalidInput("body.currency", f"the purchase is in {currency}, not {amount_currency}")
    seen: set[int] = set()
    returned: list[ReturnedLine] = []
    goods_minor = 0
    for index, item in enumerate(returns):
        bought = lines.get(item.line_no)
        if bought is None:
            raise InvalidInput(f"body.lines.{index}.line_no", f"the purchase has no line {item.line_no}")
        if item.line_no in seen:
            raise InvalidInput(f"body.lines.{index}.line_no", f"line {item.line_no} is given twice")
        seen.add(item.line_no)
        if item.quantity < 1:
            raise InvalidInput(f"body.lines.{index}.quantity", "must be at least 1")
        if item.quantity > bought.returnable:
            raise InvalidInput(
                f"body.lines.{index}.quantity",
                f"line {item.line_no}: {bought.quantity} bought, {bought.returned_quantity} already "
                f"returned, at most {bought.returnable} can come back",
            )
        returned.append(item)
        goods_minor += item.quantity * bought.unit_price_minor
    remaining = total_minor - refunded_minor
    if amount_minor is None:
        if not returned:
            raise InvalidInput("body", "give the returned lines, an amount_minor, or both")
        if goods_minor > remaining:
            raise InvalidInput(
                "body.lines",
                f"the returned goods are worth {format_money(goods_minor, currency)} but only "
                f"{format_money(remaining, currency)} is left to refund: give amount_minor",
            )
        amount = goods_minor
    else:
        if amount_minor < 0:
            raise InvalidInput("body.amount_minor", "must not be negative")
        if amount_minor == 0 and not returned:
            raise InvalidInput("body.amount_minor", "a refund without returned goods must give money back")
        if amount_minor > remaining:
            raise InvalidInput(
                "body.amount_minor",
                f"{format_money(amount_minor, currency)} is more than the "
                f"{format_money(remaining, currency)} left to refund "
                f"(total {format_money(total_minor, currency)}, "
                f"refunded {format_money(refunded_minor, currency)})",
            )
        amount = amount_minor
    refunded_total = refunded_minor + amount
    return RefundPlan(
        amount_minor=amount,
        returned=tuple(returned),
        refunded_total_minor=refunded_total,
        status=status_after_refunds(status, total_minor, refunded_total),
    )
