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
