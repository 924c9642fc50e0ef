"""The segments each customer belongs to, as segmentation announces them (`segment_entered` /
`segment_exited`), kept locally so earning rules and reward eligibility never call another service.

A row per customer and segment remembers the time of the last change it applied, so a late,
out-of-order or redelivered event never undoes a newer one."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.loyalty.models import Base
from shared.contracts.segmentation import SegmentEntered, SegmentExited
from shared.db import UTCDateTime


class CustomerSegment(Base):
    __tablename__ = "customer_segments"

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    segment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    segment_name: Mapped[str] = mapped_column(String(200))
    member: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


async def apply(session: AsyncSession, event: SegmentEntered | SegmentExited) -> None:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = {
        "customer_id": event.customer_id,
        "segment_id": event.segment_id,
        "segment_name": event.segment_name,
        "member": isinstance(event, SegmentEntered),
        "changed_at": event.at,
    }
    statement = insert(CustomerSegment).values(values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["customer_id", "segment_id"],
            set_={k: statement.excluded[k] for k in ("segment_name", "member", "changed_at")},
            where=CustomerSegment.changed_at <= statement.excluded.changed_at,
        )
    )


async def of(session: AsyncSession, customer_id: str) -> set[str]:
    """The ids of the segments the customer is in now."""
    rows = await session.scalars(
        select(CustomerSegment.segment_id).where(
            CustomerSegment.customer_id == customer_id, CustomerSegment.member.is_(True)
        )
    )
    return set(rows)
