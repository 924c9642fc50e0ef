"""Events published by the segmentation service."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from shared.events.envelope import EventPayload, Topic

SEGMENTS = Topic(
    name="crm.segmentation.segments",
    owner="segmentation",
    description=(
        "Customers entering and leaving segments, whether a rule re-evaluated after an event, a "
        "definition changed (backfill), time passed (the scheduled pass) or a static list was "
        "uploaded. Key: customer id."
    ),
)


class SegmentEntered(EventPayload):
    """A customer became a member of a segment. Carries ids only, no personal data."""

    event_type: ClassVar[str] = "crm.segmentation.segment_entered"
    topic: ClassVar[Topic] = SEGMENTS

    segment_id: str
    segment_name: str = Field(examples=["Lapsing high spenders"])
    customer_id: str
    at: datetime = Field(description="When the membership began")
    cause: str = Field(
        description="What changed it: event (real-time), backfill (definition saved), schedule "
        "(time-relative rules re-evaluated), upload (static list), merge or unmerge (the customer's "
        "records were joined or split), erasure or deletion",
        examples=["event"],
    )


class SegmentExited(EventPayload):
    """A customer stopped being a member of a segment (or the segment was deleted)."""

    event_type: ClassVar[str] = "crm.segmentation.segment_exited"
    topic: ClassVar[Topic] = SEGMENTS

    segment_id: str
    segment_name: str = Field(examples=["Lapsing high spenders"])
    customer_id: str
    at: datetime = Field(description="When the membership ended")
    cause: str = Field(
        description="What changed it: event (real-time), backfill (definition saved), schedule "
        "(time-relative rules re-evaluated), upload (static list), merge or unmerge (the customer's "
        "records were joined or split), erasure or deletion",
        examples=["schedule"],
    )
