"""Portable SQL helpers: day differences on PostgreSQL and SQLite, clamping.

A moment is a datetime (written into the statement as a bound literal) or a bound parameter such
as `NOW`: statements built once around `NOW` are templates, executed with `{"now": …}` (the real-time
path reuses one instead of building the same expression tree for every event)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, bindparam, case, cast, func, literal
from sqlalchemy.sql.elements import ColumnElement

from shared.db import UTCDateTime

Moment = datetime | ColumnElement[Any]

NOW: ColumnElement[Any] = bindparam("now", type_=UTCDateTime())


def at(moment: Moment) -> ColumnElement[Any]:
    if isinstance(moment, ColumnElement):
        return moment
    return literal(moment, UTCDateTime())


def days_between(later: Any, earlier: Any, dialect: str) -> ColumnElement[Any]:
    """(later - earlier) in days, fractional; NULL if either is NULL."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", later - earlier), Float) / 86400.0
    return cast(func.julianday(later) - func.julianday(earlier), Float)


def clamp01(value: Any) -> ColumnElement[float]:
    return case((value < 0, 0.0), (value > 1, 1.0), else_=value)
