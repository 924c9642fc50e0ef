"""Tables of the insights (in segmentation's metadata, migration 0005).

- `cluster_runs`: every clustering run, kept as history (the latest is current): the chosen k, the
  features, the silhouette score of each k tried, cluster sizes, the readable profiles and the fitted
  model (imputation, scaling and centres), so a run can be explained and reproduced.
- `cluster_assignments`: each customer's cluster in a run, with the distance to its centre.
- `playbooks`: next-best-action decision trees (JSON), written by staff or learned from data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.segmentation.models import Base
from shared.db import UTCDateTime


class ClusterRun(Base):
    __tablename__ = "cluster_runs"
    __table_args__ = (Index("ix_cluster_runs_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    k: Mapped[int] = mapped_column(Integer)
    features: Mapped[list[str]] = mapped_column(JSON)
    currency: Mapped[str | None] = mapped_column(String(3))
    population: Mapped[int] = mapped_column(Integer)
    sample_size: Mapped[int] = mapped_column(Integer)
    random_state: Mapped[int] = mapped_column(Integer)
    silhouette: Mapped[float | None] = mapped_column(Float)
    k_scores: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    sizes: Mapped[list[int]] = mapped_column(JSON)
    profiles: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    model: Mapped[dict[str, Any]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)


class ClusterAssignment(Base):
    __tablename__ = "cluster_assignments"
    __table_args__ = (Index("ix_cluster_assignments_customer", "customer_id"),)

    run_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("cluster_runs.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    cluster: Mapped[int] = mapped_column(Integer)
    distance: Mapped[float] = mapped_column(Float)


class Playbook(Base):
    __tablename__ = "playbooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    tree: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    source: Mapped[str] = mapped_column(String(10))  # staff | learned
    training: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
