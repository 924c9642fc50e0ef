"""Test-suite wiring: markers by folder (unit / integration / e2e)."""

from __future__ import annotations

import pytest

from shared.logging import configure_logging

configure_logging("WARNING", json=False)

pytest_plugins = ["tests.support.servers"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        for kind in ("unit", "integration", "e2e"):
            if f"/tests/{kind}/" in path:
                item.add_marker(getattr(pytest.mark, kind))
