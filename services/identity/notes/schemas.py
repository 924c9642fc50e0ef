"""Notes' HTTP schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_NOTE_LENGTH = 10_000

NoteText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NOTE_LENGTH)]
Author = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


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

    text: NoteText
    author: Author | None = Field(
        default=None,
        description="Who wrote it, when the request carries no `X-Actor` (which takes precedence: "
        "once the gateway authenticates, the author is whoever is signed in)",
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
