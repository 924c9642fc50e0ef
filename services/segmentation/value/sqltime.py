"""Portable SQL helpers: day differences on PostgreSQL and SQLite, clamping."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, case, cast, func, literal
from sqlalchemy.sql.elements import ColumnElement

from shared.db import UTCDateTime


def at(moment: datetime) -> ColumnElement[Any]:
    return literal(moment, UTCDateTime())


def days_between(later: Any, earlier: Any, dialect: str) -> ColumnElement[Any]:
    """(later - earlier) in days, fractional; NULL if either is NULL."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", later - earlier), Float) / 86400.0
    return cast(func.julianday(later) - func.julianday(earlier), Float)


def clamp01(value: Any) -> ColumnElement[float]:
    return case((value < 0, 0.0), (value > 1, 1.0), else_=value)
