"""The `crm` command line against an embedded platform's databases: dead letters listed and replayed."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.platform import build_platform
from shared.contracts.interactions import PurchaseLine, PurchaseRecorded
from shared.events.envelope import new_event
from shared.messaging.bus import OutboundMessage


async def _dead_letter_a_bad_purchase(tmp_path: Path) -> str:
    platform = build_platform(var_dir=tmp_path)
    await platform.start()
    try:
        # A purchase with a negative total: loyalty refuses it for good (a permanent failure).
        bad = PurchaseRecorded.model_construct(
            purchase_id="p-bad",
            customer_id="c-1",
            external_id=None,
            channel="store",
            occurred_at=datetime.now(UTC),
            currency="EUR",
            total_minor=-500,
            lines=[PurchaseLine(sku="A", quantity=1, unit_price_minor=0)],
        )
        event = new_event(bad, source="/crm/interactions")
        await platform.bus.publish([OutboundMessage(topic=PurchaseRecorded.topic.name, event=event)])
    finally:
        await platform.stop()
    return event.id


def test_dead_letters_are_listed_and_replayed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    event_id = asyncio.run(_dead_letter_a_bad_purchase(tmp_path))
    monkeypatch.setenv("CRM_VAR_DIR", str(tmp_path))
    runner = CliRunner()
    listed = runner.invoke(app, ["dlq", "list", "--json", "--group", "crm-loyalty"])
    assert listed.exit_code == 0, listed.output
    letters = [json.loads(line) for line in listed.output.splitlines() if line.startswith("{")]
    assert [(d["consumer_group"], d["event_id"]) for d in letters] == [("crm-loyalty", event_id)]
    assert "greater than or equal to 0" in letters[0]["error"]

    replay = runner.invoke(app, ["dlq", "replay", "--group", "crm-loyalty"])
    assert replay.exit_code == 0, replay.output
    assert "replayed 0" in replay.output  # still invalid: it fails again and stays listed
    again = runner.invoke(app, ["dlq", "list", "--json", "--group", "crm-loyalty"])
    assert len([line for line in again.output.splitlines() if line.startswith("{")]) == 1

    table = runner.invoke(app, ["dlq", "list"])
    assert "2 dead letter(s)" in table.output  # loyalty and segmentation both refused it


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "serve", "demo", "dlq", "db"):
        assert command in result.output
