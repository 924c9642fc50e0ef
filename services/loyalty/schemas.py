"""Loyalty's HTTP schemas."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class BalanceOut(BaseModel):
    customer_id: str
    points: int = Field(description="Spendable points (integer)", examples=[120])


class LedgerLineOut(BaseModel):
    transaction_id: str
    kind: str = Field(examples=["earn"])
    reference: str = Field(examples=["purchase:3f0c..."])
    points: int = Field(description="Signed change to the member's points", examples=[99])
    created_at: datetime
