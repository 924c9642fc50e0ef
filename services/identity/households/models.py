"""Household and organisation-contact tables on identity's metadata.

- `households` and `household_members`: a family and its person members with their role. A person is
  in at most one household: the member's customer id is the membership's key.
- `organisation_contacts`: the persons who act for an organisation customer, with their role/title.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from services.identity.models import Base
from shared.db import UTCDateTime


class HouseholdRow(Base):
    __tablename__ = "households"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    members: Mapped[list[HouseholdMemberRow]] = relationship(
        back_populates="household",
        lazy="raise",
        order_by=lambda: (HouseholdMemberRow.joined_at, HouseholdMemberRow.customer_id),
        cascade="all, delete-orphan",
    )


class HouseholdMemberRow(Base):
    __tablename__ = "household_members"

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    household_id: Mapped[str] = mapped_column(ForeignKey("households.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime())

    household: Mapped[HouseholdRow] = relationship(back_populates="members", lazy="raise")


class OrganisationContactRow(Base):
    __tablename__ = "organisation_contacts"

    organisation_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
