"""Test-suite wiring: markers by folder (unit / integration / e2e)."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from shared.logging import configure_logging

configure_logging("WARNING", json=False)

# Property tests check what is computed, not how fast: no per-example deadline (on a loaded two-core
# machine a first example, importing and warming up, was seen to exceed the default 200 ms).
settings.register_profile("crm", deadline=None)
settings.load_profile("crm")

# Authentication is on by default everywhere. The legacy tests that call service apps directly (and
# build the platform without logging in) run with it switched off by this explicit test setting;
# tests marked `auth` (every gateway-level e2e test and the auth tests) run with it on and log in
# for real (see tests/support/auth.py).
os.environ["CRM_AUTH_ENABLED"] = "false"

pytest_plugins = ["tests.support.servers", "tests.support.runs"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "auth: runs with authentication on (CRM_AUTH_ENABLED=true)")


@pytest.fixture(autouse=True)
def _auth_setting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("auth") is not None:
        monkeypatch.setenv("CRM_AUTH_ENABLED", "true")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        for kind in ("unit", "integration", "e2e"):
            if f"/tests/{kind}/" in path:
                item.add_marker(getattr(pytest.mark, kind))
