"""The gateway's own operations (auth, admin, self-service) are documented like the services': a
summary and request-body examples; and the security schemes are declared."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.platform import build_platform
from tests.unit.test_openapi_documented import _has_examples

pytestmark = pytest.mark.auth


def test_gateway_operations_and_security_schemes_are_documented(tmp_path: Path) -> None:
    document = build_platform(var_dir=tmp_path, auth_enabled=True).gateway().openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert set(schemes["oauth2"]["flows"]) == {"password", "clientCredentials"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "in": "header", "name": "X-API-Key"}
    assert document["paths"]["/auth/token"]["post"]["security"] == []
    components = document.get("components", {}).get("schemas", {})
    missing = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            name = f"{method.upper()} {path}"
            if not operation.get("summary"):
                missing.append(f"summary: {name}")
            for media in ("application/json", "application/x-www-form-urlencoded"):
                content = operation.get("requestBody", {}).get("content", {}).get(media)
                if content is None or "examples" in content or "example" in content:
                    continue
                if not _has_examples(content.get("schema"), components, set()):
                    missing.append(f"examples: {name}")
    assert missing == []
    for path in ("/auth/token", "/auth/member/token", "/api/me", "/api/admin/api-keys", "/api/admin/audit"):
        assert path in document["paths"], path
