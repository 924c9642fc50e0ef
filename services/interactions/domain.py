"""Interactions' domain rules, free of I/O."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """Every channel a customer can reach us on, or we them."""

    STORE = "store"
    PHONE = "phone"
    EMAIL = "email"
    WEB = "web"
    CHAT = "chat"
    SMS = "sms"
    DIRECT_MAIL = "direct_mail"
    FAX = "fax"
    KIOSK = "kiosk"
    APP = "app"
    SOCIAL = "social"
    FIELD_VISIT = "field_visit"


def order_total(lines: list[tuple[int, int]]) -> int:
    """Sum of quantity × unit price, in minor units (integers: money is never a float)."""
    return sum(quantity * unit_price for quantity, unit_price in lines)


class Direction(StrEnum):
    INBOUND = "inbound"  # customer-initiated
    OUTBOUND = "outbound"  # we reached out


class InteractionKind(StrEnum):
    """What a contact was. The first group is recorded through `POST /interactions`; the others are
    written by their own use cases (a purchase, a complaint, a survey answer, a message sent) so that
    the timeline shows every contact in one place."""

    INQUIRY = "inquiry"
    SERVICE_REQUEST = "service_request"
    VISIT = "visit"
    EVENT_ATTENDANCE = "event_attendance"
    CAMPAIGN_RESPONSE = "campaign_response"
    SUGGESTION = "suggestion"
    WEB_ACTIVITY = "web_activity"
    APP_ACTIVITY = "app_activity"
    NOTE = "note"
    # written by their own use cases:
    PURCHASE = "purchase"
    REFUND = "refund"
    COMPLAINT = "complaint"
    SURVEY_ANSWER = "survey_answer"
    COMMUNICATION = "communication"


RECORDABLE_KINDS = frozenset(
    {
        InteractionKind.INQUIRY,
        InteractionKind.SERVICE_REQUEST,
        InteractionKind.VISIT,
        InteractionKind.EVENT_ATTENDANCE,
        InteractionKind.CAMPAIGN_RESPONSE,
        InteractionKind.SUGGESTION,
        InteractionKind.WEB_ACTIVITY,
        InteractionKind.APP_ACTIVITY,
        InteractionKind.NOTE,
    }
)


# ISO 4217 currencies whose minor unit is not the hundredth.
_EXPONENTS = {
    "BHD": 3, "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0, "KMF": 0,
    "KRW": 0, "KWD": 3, "LYD": 3, "OMR": 3, "PYG": 0, "RWF": 0, "TND": 3, "UGX": 0, "VND": 0, "VUV": 0,
    "XAF": 0, "XOF": 0, "XPF": 0,
}  # fmt: skip


def minor_exponent(currency: str) -> int:
    """How many decimals the currency's minor unit has (2 for EUR, 0 for JPY, 3 for KWD)."""
    return _EXPONENTS.get(currency.upper(), 2)


def format_money(minor: int, currency: str) -> str:
    """`9998, "EUR"` → `"99.98 EUR"`, with integer arithmetic only."""
    exponent = minor_exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**exponent)
    return f"{sign}{whole}.{fraction:0{exponent}d} {currency}" if exponent else f"{sign}{whole} {currency}"
