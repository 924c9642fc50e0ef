"""Identity's tables (its own database).

- `customers`: golden records. An absorbed customer keeps its row with `merged_into` pointing at the
  customer it was merged into, so old ids keep resolving and a merge can be undone.
- `source_records`: every record as it arrived from a source system (form, store, import, partner),
  with its normalised matching fields; the golden record is assembled from them.
- `identifiers`, `blocking_keys`, `search_keys`: indexes derived from source records, for
  deterministic matching, candidate retrieval (blocking) and search.
- `merges`, `match_reviews`, `profile_changes`, `match_models`: lineage, the review queue, the audit
  trail and the matching weights in use.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import ServiceBase, UTCDateTime, new_metadata
from shared.messaging.tables import BigIntPK, messaging_tables

metadata = new_metadata()
MESSAGING = messaging_tables(metadata)


class Base(ServiceBase):
    __abstract__ = True
    metadata = metadata


class CustomerRow(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    given_name: Mapped[str | None] = mapped_column(String(200))
    family_name: Mapped[str | None] = mapped_column(String(200))
    organisation_name: Mapped[str | None] = mapped_column(String(300))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    language: Mapped[str | None] = mapped_column(String(16))
    source_system: Mapped[str | None] = mapped_column(String(100))
    birth_date: Mapped[date | None] = mapped_column(Date)
    gender: Mapped[str | None] = mapped_column(String(20))
    national_id: Mapped[str | None] = mapped_column(String(64))
    branch_id: Mapped[str | None] = mapped_column(String(64))
    addresses: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    external_ids: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    merged_into: Mapped[str | None] = mapped_column(String(36), index=True)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class SourceRecordRow(Base):
    __tablename__ = "source_records"
    __table_args__ = (UniqueConstraint("source_system", "source_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True)
    source_system: Mapped[str] = mapped_column(String(100))
    source_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    match: Mapped[dict[str, Any]] = mapped_column(JSON)  # normalised matching fields
    trust: Mapped[int] = mapped_column(Integer)
    verified: Mapped[list[str]] = mapped_column(JSON, default=list)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IdentifierRow(Base):
    __tablename__ = "identifiers"
    __table_args__ = (Index("ix_identifiers_kind_value", "kind", "value"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(120))
    value: Mapped[str] = mapped_column(String(320))
    # Read by (kind, value) and by source record (moves on merge, erasure); never by customer.
    customer_id: Mapped[str] = mapped_column(String(36))
    source_record_id: Mapped[str] = mapped_column(String(36), index=True)


class BlockingKeyRow(Base):
    __tablename__ = "blocking_keys"
    # Two indexes only (each costs every insert, and an import writes ~8 rows a record): candidates
    # by key, read from the (key, customer_id) index alone; rows by source record (moves on merge,
    # erasure) from the primary key, which leads with it.
    __table_args__ = (
        PrimaryKeyConstraint("source_record_id", "key", name="pk_blocking_keys"),
        Index("ix_blocking_keys_key_customer_id", "key", "customer_id"),
    )

    key: Mapped[str] = mapped_column(String(160))
    source_record_id: Mapped[str] = mapped_column(String(36))
    customer_id: Mapped[str] = mapped_column(String(36))


class SearchKeyRow(Base):
    __tablename__ = "search_keys"

    # Read by key (the primary key) and by source record; never by customer.
    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    source_record_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
    customer_id: Mapped[str] = mapped_column(String(36))


class MergeRow(Base):
    __tablename__ = "merges"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    survivor_id: Mapped[str] = mapped_column(String(36), index=True)
    absorbed_id: Mapped[str] = mapped_column(String(36), index=True)
    method: Mapped[str] = mapped_column(String(20))
    score: Mapped[float | None] = mapped_column(Float)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    actor: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    undone_by: Mapped[str | None] = mapped_column(String(200))


class MatchReviewRow(Base):
    __tablename__ = "match_reviews"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    candidate_id: Mapped[str] = mapped_column(String(36), index=True)
    source_record_id: Mapped[str | None] = mapped_column(String(36))
    probability: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    reason: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decision_reason: Mapped[str | None] = mapped_column(Text)


class ProfileChangeRow(Base):
    __tablename__ = "profile_changes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    cause: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(Text)
    before: Mapped[dict[str, Any]] = mapped_column(JSON)
    after: Mapped[dict[str, Any]] = mapped_column(JSON)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MatchModelRow(Base):
    __tablename__ = "match_models"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    origin: Mapped[str] = mapped_column(String(40))
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    model: Mapped[dict[str, Any]] = mapped_column(JSON)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# The sub-domains keep their tables on this metadata; importing them here lets Alembic and the
# migration tests see every table of the service.
from services.identity.attributes import models as _attribute_models  # noqa: E402
from services.identity.consents import models as _consent_models  # noqa: E402
from services.identity.households import models as _household_models  # noqa: E402
from services.identity.notes import models as _note_models  # noqa: E402

__all__ = ["_attribute_models", "_consent_models", "_household_models", "_note_models"]
