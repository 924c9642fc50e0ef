"""Delivery of outbound communications, free of I/O: which statuses exist and how the current one
follows from delivery events that may arrive late, twice or out of order.

A message goes `queued → sent → delivered → opened → clicked`, or fails: `bounced` (e-mail, SMS,
push: `hard` = the address is dead, `soft` = try again later), `returned` (direct mail sent back by
the post) or `failed` (never left). Every event is kept in the history; the current status is the
furthest progress reached, so a `delivered` arriving after `opened` does not move it back. A soft
bounce is overtaken by a later success (the retry worked); a hard bounce, a return or a failure is
final. A failure after the customer opened the message contradicts it and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.interactions.domain import Channel


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    BOUNCED = "bounced"
    RETURNED = "returned"
    FAILED = "failed"


class BounceType(StrEnum):
    HARD = "hard"  # permanent: the address does not exist or refuses us
    SOFT = "soft"  # temporary: mailbox full, phone off, server down


#: The statuses a communication may be recorded with.
INITIAL = frozenset({DeliveryStatus.QUEUED, DeliveryStatus.SENT})
PROGRESS = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENT: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.OPENED: 3,
    DeliveryStatus.CLICKED: 4,
}
FAILURES = frozenset({DeliveryStatus.BOUNCED, DeliveryStatus.RETURNED, DeliveryStatus.FAILED})
#: Engagement can be measured on these channels only.
TRACKED_CHANNELS = frozenset(
    {Channel.EMAIL, Channel.SMS, Channel.APP, Channel.WEB, Channel.SOCIAL, Channel.CHAT}
)


class DeliveryRefused(Exception):
    """The event is well formed but impossible for this communication (the caller answers 409 or 422)."""

    def __init__(self, field: str, message: str, *, conflict: bool) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.conflict = conflict


@dataclass(frozen=True, slots=True)
class Current:
    status: DeliveryStatus
    bounce_type: BounceType | None = None
    reason: str | None = None

    @property
    def final_failure(self) -> bool:
        return self.status in (DeliveryStatus.RETURNED, DeliveryStatus.FAILED) or (
            self.status is DeliveryStatus.BOUNCED and self.bounce_type is BounceType.HARD
        )


def check_event(
    channel: Channel, status: DeliveryStatus, bounce_type: BounceType | None, reason: str | None
) -> None:
    """Refuse a delivery event that cannot be right for the channel, or lacks what it must say."""
    if status is DeliveryStatus.RETURNED and channel is not Channel.DIRECT_MAIL:
        raise DeliveryRefused("body.status", "only direct mail is returned; use bounced", conflict=False)
    if status is DeliveryStatus.BOUNCED and channel is Channel.DIRECT_MAIL:
        raise DeliveryRefused("body.status", "direct mail is returned, not bounced", conflict=False)
    if status in (DeliveryStatus.OPENED, DeliveryStatus.CLICKED) and channel not in TRACKED_CHANNELS:
        raise DeliveryRefused(
            "body.status", f"{status.value} is not tracked on {channel.value}", conflict=False
        )
    if status in FAILURES and not reason:
        raise DeliveryRefused("body.reason", f"say why it was {status.value}", conflict=False)
    if status is DeliveryStatus.BOUNCED and bounce_type is None:
        raise DeliveryRefused("body.bounce_type", "hard or soft", conflict=False)
    if status is not DeliveryStatus.BOUNCED and bounce_type is not None:
        raise DeliveryRefused("body.bounce_type", "only a bounce has a bounce type", conflict=False)


def advance(
    current: Current, status: DeliveryStatus, bounce_type: BounceType | None, reason: str | None
) -> Current:
    """The current status after one more delivery event (already checked by `check_event`)."""
    if current.final_failure:
        raise DeliveryRefused(
            "body.status",
            f"the communication was already {_describe(current)}: nothing can follow",
            conflict=True,
        )
    if status in FAILURES:
        if current.status in PROGRESS and PROGRESS[current.status] >= PROGRESS[DeliveryStatus.OPENED]:
            raise DeliveryRefused(
                "body.status",
                f"the communication was {current.status.value}: the customer received it",
                conflict=True,
            )
        return Current(status, bounce_type, reason)
    if current.status in FAILURES:  # a soft bounce, overtaken by a retry that worked
        return Current(status)
    if PROGRESS[status] > PROGRESS[current.status]:
        return Current(status)
    return current  # late or repeated news: kept in the history, the status stays


def _describe(current: Current) -> str:
    if current.status is DeliveryStatus.BOUNCED and current.bounce_type is not None:
        return f"bounced ({current.bounce_type.value})"
    return current.status.value
