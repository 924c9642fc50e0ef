"""Background jobs of complaints."""

from __future__ import annotations

from shared.runtime import ServiceRuntime


def register(runtime: ServiceRuntime) -> None:
    """Attach the complaints' background jobs to the service runtime."""
