"""Notes' HTTP schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_NOTE_LENGTH = 10_000


class NoteCreate(BaseModel):
    """A free-form note about the customer."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "text": "Prefers to be called after 18:00. Asked about the gold tier benefits.",
                    "author": "agent:mlopez",
                    "pinned": True,
                }
            ]
        },
    )

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NOTE_LENGTH)]
    author: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] = Field(
        description="Who wrote it. Taken from the authenticated principal once the gateway authenticates."
    )
    pinned: bool = Field(default=False, description="Pinned notes are listed first")


class NoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str = Field(description="The customer id the note was written under (merged ids differ)")
    text: str
    author: str
    pinned: bool
    created_at: datetime
