"""The event types a subscription may choose: every payload the platform declares (the AsyncAPI catalogue)."""

from __future__ import annotations

import importlib

from shared.events.asyncapi import CONTRACT_MODULES
from shared.events.envelope import EventPayload, registered_events


def event_types() -> dict[str, type[EventPayload]]:
    """Every declared event type (`crm.<service>.<name>.v<version>`) and its payload class."""
    for name in CONTRACT_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    return dict(sorted(registered_events().items()))
