"""Importing contacts from CSV and JSONL files (`services.interactions.importer`, `crm interactions
import`): valid rows are recorded, each malformed one is reported with its row, field and reason and
never blocks the others."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.cli import app as cli
from services.interactions.importer import import_file
from services.platform import Platform, build_platform

WHEN = "2026-01-05T10:00:00Z"
ANA = {"given_name": "Ana", "family_name": "García", "email": "ana@example.com", "phone": "+34 612 345 678"}
CHANNELS = (
    "'store', 'phone', 'email', 'web', 'chat', 'sms', 'direct_mail', 'fax', 'kiosk', 'app', 'social' "
    "or 'field_visit'"
)
HEADER = (
    "customer_id,customer_email,channel,direction,kind,occurred_at,summary,tags,attributes,"
    "idempotency_key,source_system"
)


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(var_dir=tmp_path)


@pytest.fixture
async def gw(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = platform.gateway()
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as c,
    ):
        yield c


async def customer(gw: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await gw.post("/api/identity/customers", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["customer"]["id"])


def mixed_csv(ana: str) -> str:
    return "\n".join(
        [
            HEADER,
            f"{ana},,phone,inbound,inquiry,{WHEN},Asked about the catalogue,catalogue|winter,"
            '"{""page"": 1}",row-2,callcentre',
            f",ana@example.com,web,inbound,web_activity,{WHEN},,,,row-3,web",
            f"{ana},,pigeon,inbound,inquiry,{WHEN},,,,row-4,callcentre",
            f"{ana},,phone,inbound,inquiry,{WHEN},,,{{not json,row-5,callcentre",
            f"nobody,,phone,inbound,inquiry,{WHEN},,,,row-6,callcentre",
            f",nobody@example.com,email,inbound,inquiry,{WHEN},,,,row-7,callcentre",
            f"{ana},,phone,inbound,purchase,{WHEN},,,,row-8,callcentre",
            f"{ana},,phone,inbound,inquiry,{WHEN},,,,row-2,callcentre",  # the key of row 2 again
            f'{ana},,phone,inbound,inquiry,{WHEN},,"[""a"", 3]",,row-10,callcentre',
            ",,,,,,,,,,",  # a spreadsheet's empty trailing row
            f'{ana},,chat,inbound,note,{WHEN},,"[""vip""]",,row-12,callcentre',
        ]
    )


CSV_ERRORS = [
    {"row": 4, "field": "channel", "message": f"Input should be {CHANNELS}"},
    {
        "row": 5,
        "field": "attributes",
        "message": "not JSON: Expecting property name enclosed in double quotes",
    },
    {"row": 6, "field": "customer_id", "message": "unknown customer nobody"},
    {"row": 7, "field": "customer_email", "message": "no customer has this email"},
    {
        "row": 8,
        "field": "kind",
        "message": "purchase contacts are recorded by their own endpoint (purchases, complaints, surveys)",
    },
    {"row": 10, "field": "tags", "message": "a JSON list of strings, or a|b"},
]


def mixed_jsonl(ana: str) -> str:
    return "\n".join(
        [
            json.dumps({"customer_id": ana, "channel": "email", "kind": "inquiry", "idempotency_key": "j-1"}),
            '{"customer_id": "x", ',
            "[1, 2]",
            "",
            json.dumps(
                {"customer": {"phone": "+34 612 345 678"}, "channel": "sms", "kind": "note", "tags": ["a"]}
            ),
            json.dumps({"customer_id": ana, "channel": "email", "kind": "inquiry", "colour": "red"}),
            json.dumps(
                {
                    "customer_id": ana,
                    "channel": "email",
                    "kind": "inquiry",
                    "occurred_at": "2999-01-01T00:00:00Z",
                }
            ),
            json.dumps({"customer": {"email": "nobody@example.com"}, "channel": "sms", "kind": "note"}),
            json.dumps({"customer_id": ana, "channel": "email", "kind": "inquiry", "idempotency_key": "j-1"}),
        ]
    )


JSONL_ERRORS = [
    {
        "row": 2,
        "field": None,
        "message": "not JSON: Expecting property name enclosed in double quotes (column 21)",
    },
    {"row": 3, "field": None, "message": "not a JSON object"},
    {"row": 6, "field": "colour", "message": "Extra inputs are not permitted"},
    {"row": 7, "field": "occurred_at", "message": "occurred_at is in the future"},
    {"row": 8, "field": "customer.email", "message": "no customer has this email"},
]


async def timeline(gw: httpx.AsyncClient, customer_id: str) -> list[dict[str, Any]]:
    response = await gw.get(f"/api/interactions/customers/{customer_id}/timeline", params={"limit": 200})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


@pytest.mark.parametrize("batch_size", [3, 1000])
async def test_a_mixed_csv_records_the_valid_rows_and_reports_the_others(
    gw: httpx.AsyncClient, platform: Platform, tmp_path: Path, batch_size: int
) -> None:
    ana = await customer(gw, ANA)
    path = tmp_path / "contacts.csv"
    path.write_text(mixed_csv(ana), encoding="utf-8")

    report = await import_file(
        platform.runtimes["interactions"], path, batch_size=batch_size, show_progress=False
    )

    assert report.as_dict() == {
        "rows": 10,
        "outcomes": {"created": 3, "duplicate": 1},
        "rejected": 6,
        "errors": CSV_ERRORS,
    }
    rows = {row["idempotency_key"]: row for row in await timeline(gw, ana)}
    assert sorted(rows) == ["row-12", "row-2", "row-3"]
    assert rows["row-2"]["tags"] == ["catalogue", "winter"]
    assert rows["row-2"]["attributes"] == {"page": 1}
    assert rows["row-2"]["summary"] == "Asked about the catalogue"
    assert rows["row-3"]["channel"] == "web"  # found by its e-mail
    assert rows["row-12"]["tags"] == ["vip"]


async def test_a_mixed_jsonl_file_is_reported_line_by_line(
    gw: httpx.AsyncClient, platform: Platform, tmp_path: Path
) -> None:
    ana = await customer(gw, ANA)
    path = tmp_path / "contacts.jsonl"
    path.write_text(mixed_jsonl(ana), encoding="utf-8")
    progressed: list[int] = []

    report = await import_file(
        platform.runtimes["interactions"],
        path,
        batch_size=2,
        show_progress=False,
        on_progress=progressed.append,
    )

    assert report.as_dict() == {
        "rows": 8,
        "outcomes": {"created": 2, "duplicate": 1},
        "rejected": 5,
        "errors": JSONL_ERRORS,
    }
    assert sum(progressed) == 8
    kinds = sorted((row["channel"], row["kind"]) for row in await timeline(gw, ana))
    assert kinds == [("email", "inquiry"), ("sms", "note")]


async def test_importing_the_same_file_again_only_finds_duplicates(
    gw: httpx.AsyncClient, platform: Platform, tmp_path: Path
) -> None:
    ana = await customer(gw, ANA)
    path = tmp_path / "contacts.csv"
    path.write_text(mixed_csv(ana), encoding="utf-8")
    runtime = platform.runtimes["interactions"]
    await import_file(runtime, path, show_progress=False)
    again = await import_file(runtime, path, show_progress=False)
    assert again.as_dict()["outcomes"] == {"created": 0, "duplicate": 4}
    assert len(await timeline(gw, ana)) == 3


async def _registered(var_dir: Path) -> str:
    platform = build_platform(var_dir=var_dir)
    app = platform.gateway()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw,
    ):
        return await customer(gw, ANA)


async def _timeline_after(var_dir: Path, customer_id: str) -> list[dict[str, Any]]:
    platform = build_platform(var_dir=var_dir)
    app = platform.gateway()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw,
    ):
        return await timeline(gw, customer_id)


def test_the_command_imports_a_file_and_writes_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = asyncio.run(_registered(tmp_path))
    path = tmp_path / "contacts.csv"
    path.write_text(mixed_csv(ana), encoding="utf-8")
    out = tmp_path / "report.json"
    monkeypatch.setenv("CRM_VAR_DIR", str(tmp_path))

    result = CliRunner().invoke(
        cli, ["interactions", "import", str(path), "--report", str(out), "--batch-size", "2"]
    )

    assert result.exit_code == 0, result.output
    assert "row 4: channel" in result.output
    assert json.loads(out.read_text()) == {
        "rows": 10,
        "outcomes": {"created": 3, "duplicate": 1},
        "rejected": 6,
        "errors": CSV_ERRORS,
    }
    assert len(asyncio.run(_timeline_after(tmp_path, ana))) == 3


async def test_bytes_that_are_not_utf8_only_cost_their_row(
    gw: httpx.AsyncClient, platform: Platform, tmp_path: Path
) -> None:
    ana = await customer(gw, ANA)
    runtime = platform.runtimes["interactions"]
    good = f"{ana},,phone,inbound,inquiry,{WHEN},Called back,,,row-3,callcentre\n"
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes(
        (HEADER + "\n").encode()
        + f"{ana},,phone,inbound,inquiry,{WHEN},Se quej\xf3,,,row-2,callcentre\n".encode("latin-1")
        + good.encode()
    )
    report = await import_file(runtime, csv_path, show_progress=False)
    assert report.as_dict()["errors"] == [{"row": 2, "field": "summary", "message": "not UTF-8 text"}]
    assert report.created == 1

    jsonl_path = tmp_path / "latin1.jsonl"
    jsonl_path.write_bytes(
        '{"customer_id": "x", "text": "Se quej\xf3"}\n'.encode("latin-1")
        + json.dumps({"customer_id": ana, "channel": "email", "kind": "note"}).encode()
        + b"\n"
    )
    report = await import_file(runtime, jsonl_path, show_progress=False)
    assert report.as_dict()["errors"] == [{"row": 1, "field": None, "message": "not UTF-8 text"}]
    assert report.created == 1
