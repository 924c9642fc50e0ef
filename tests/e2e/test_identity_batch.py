"""Batch jobs of identity: import a file (bad rows reported, good rows resolved), re-match, train."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.identity.app import build
from services.identity.batch import import_records, rematch, train
from services.identity.settings import load_settings
from shared.messaging.bus import InProcessBus
from shared.runtime import ServiceRuntime


@pytest.fixture
async def identity(tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    runtime = build(load_settings(var_dir=tmp_path), InProcessBus())
    await runtime.start()
    yield runtime
    await runtime.stop()


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


async def test_import_reports_every_outcome_and_every_bad_row(
    identity: ServiceRuntime, tmp_path: Path
) -> None:
    rows = [
        {
            "source_id": "1",
            "given_name": "Olivia",
            "family_name": "Smith",
            "email": "olivia.smith@example.co.uk",
            "phone": "+44 7911 123456",
            "birth_date": "1990-01-02",
        },
        {
            "source_id": "2",
            "given_name": "olivia",
            "family_name": "smith",
            "phone": "07911 123456",
            "birth_date": "1990-01-02",
            "addresses": [{"country": "GB", "postcode": "SW1A 1AA"}],
        },
        {"source_id": "3", "given_name": "James", "family_name": "Jones", "email": "not an email"},
        "{broken json",
        {"source_id": "4", "given_name": "Harry", "family_name": "Taylor", "birth_date": "1990-13-45"},
        {
            "source_id": "1",
            "given_name": "Olivia",
            "family_name": "Smith-Brown",
            "email": "olivia.smith@example.co.uk",
        },
    ]
    report = await import_records(
        identity, write_jsonl(tmp_path / "people.jsonl", rows), source_system="import", show_progress=False
    )
    assert dict(report.outcomes) == {"created": 1, "matched": 1, "updated": 1}
    assert sorted((e["row"], e["field"]) for e in report.errors) == [
        (3, "email"),
        (4, None),
        (5, "birth_date"),
    ]


async def test_import_from_csv(identity: ServiceRuntime, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        "source_id,given_name,family_name,email,external_ids\n"
        'a1,Mia,Wagner,mia@example.de,"{""shop"": ""991""}"\n'
        "a2,Finn,,finn@example,\n"
    )
    report = await import_records(identity, path, source_system="import", show_progress=False)
    assert report.outcomes["created"] == 1
    assert [(e["row"], e["field"]) for e in report.errors] == [(3, "email")]


async def test_rematch_and_train(identity: ServiceRuntime, tmp_path: Path) -> None:
    people = []
    for i in range(30):
        people.append(
            {
                "source_id": f"p{i}",
                "given_name": ["Lena", "Jonas", "Mia", "Paul", "Emma"][i % 5],
                "family_name": ["Becker", "Wagner", "Schulz", "Hoffmann", "Fischer", "Weber"][i % 6],
                "email": f"user{i}@example.de",
                "birth_date": f"19{60 + i}-0{1 + i % 9}-1{i % 9}",
            }
        )
    await import_records(
        identity, write_jsonl(tmp_path / "a.jsonl", people), source_system="crm", show_progress=False
    )
    summary = await train(identity)
    assert summary["origin"] == "em"
    assert 0 < summary["prior"] < 1
    report = await rematch(identity, show_progress=False)
    assert sum(report.outcomes.values()) == 30
    assert report.outcomes["merged"] == 0  # thirty different people stay thirty customers


async def test_weights_are_trained_automatically_as_the_register_grows(tmp_path: Path) -> None:
    import asyncio

    from sqlalchemy import select

    from services.identity.models import MatchModelRow

    runtime = build(
        load_settings(
            var_dir=tmp_path, auto_train_interval=0.05, auto_train_min_records=20, auto_train_growth=2.0
        ),
        InProcessBus(),
    )
    await runtime.start()
    try:
        people = [
            {
                "source_id": f"a{i}",
                "given_name": ["Lena", "Jonas", "Mia"][i % 3],
                "family_name": f"Name{i}",
                "email": f"a{i}@example.de",
            }
            for i in range(25)
        ]
        await import_records(
            runtime, write_jsonl(tmp_path / "a.jsonl", people), source_system="crm", show_progress=False
        )

        async def models() -> list[MatchModelRow]:
            async with runtime.uow() as uow:
                return list(
                    await uow.session.scalars(select(MatchModelRow).order_by(MatchModelRow.created_at))
                )

        async with asyncio.timeout(30):
            while not await models():
                await asyncio.sleep(0.05)
        first = (await models())[0]
        assert first.active
        assert first.model["trained_on"] == 25
        assert runtime.app.state.matcher.model_id == first.id
        await asyncio.sleep(0.3)
        assert len(await models()) == 1  # not retrained until the register doubles
    finally:
        await runtime.stop()


@pytest.mark.parametrize("options", [[], ["--workers", "0"], ["--workers", "2"]])
def test_the_import_command_resolves_a_file_and_writes_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str]
) -> None:
    from typer.testing import CliRunner

    from services.cli import app as cli

    monkeypatch.setenv("CRM_VAR_DIR", str(tmp_path))
    rows = [
        {"source_id": "1", "given_name": "Mia", "family_name": "Wagner", "email": "mia.w@example.de"},
        {"source_id": "2", "given_name": "mia", "family_name": "wagner", "email": "Mia.W@example.de"},
        {"source_id": "3", "given_name": "Finn", "email": "finn@example"},
    ]
    path, out = write_jsonl(tmp_path / "people.jsonl", rows), tmp_path / "report.json"
    result = CliRunner().invoke(
        cli, ["identity", "import", str(path), "--source-system", "shop", "--report", str(out), *options]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["outcomes"] == {"created": 1, "matched": 1}
    assert [(e["row"], e["field"]) for e in report["errors"]] == [(3, "email")]
