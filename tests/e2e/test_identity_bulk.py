"""Bulk resolution (`services.identity.bulk`) against the one-by-one path (`service.ingest`).

The same labelled records (`bench.identity.generator`, plus national ids, external ids, conflicting
ids, repeated source ids and invalid rows, so that every rule of the decision gets exercised) are
resolved one by one into one database and in small chunks into another. Both must end the same:
the same partition of source records into customers, the same golden records and versions, the
same review queue, audit trail and events.

The outbox relay is stopped after start-up so that the outbox keeps every event written.
"""

from __future__ import annotations

import gc
import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from bench.identity.generator import generate
from services.identity import service
from services.identity.app import build
from services.identity.batch import Report, import_records
from services.identity.bulk import BulkResolver, _chunk_sizes
from services.identity.models import (
    BlockingKeyRow,
    CustomerRow,
    IdentifierRow,
    MatchReviewRow,
    ProfileChangeRow,
    SearchKeyRow,
    SourceRecordRow,
)
from services.identity.schemas import SourceRecordIn
from services.identity.settings import load_settings
from shared import heap
from shared.contracts.identity import CustomerRegistered, CustomerUpdated
from shared.errors import DomainError
from shared.messaging.bus import InProcessBus
from shared.runtime import ServiceRuntime

# Small limits, so that shared identifiers, oversized customers and reviews all occur in a small set.
TIGHT = {"max_customers_per_identifier": 2, "max_records_per_customer": 3, "auto_train": False}


async def started(path: Path, **overrides: Any) -> ServiceRuntime:
    runtime = build(load_settings(var_dir=path, **overrides), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()
    return runtime


@pytest.fixture
async def identity(tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    runtime = await started(tmp_path / "bulk", auto_train=False)
    yield runtime
    await runtime.stop()


def dataset(n: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Generated records in arrival order, with strong identifiers, updates and bad rows mixed in."""
    data = generate(n, seed=seed)
    rng = random.Random(seed)
    people = sorted(set(data.truth.values()))
    records: list[dict[str, Any]] = []
    later: list[tuple[int, dict[str, Any]]] = []
    for raw in data.records:
        record = dict(raw)
        person = data.truth[record["source_id"]]
        draw = rng.random()
        if draw < 0.25:
            record["national_id"] = f"NI{people.index(person):06d}"
        elif draw < 0.28:  # somebody else's id: a deterministic match the other fields may contradict
            record["national_id"] = f"NI{rng.randrange(len(people)):06d}"
        elif draw < 0.38:
            record["external_ids"] = {"shop": f"S{people.index(person)}"}
        records.append(record)
        if rng.random() < 0.03:  # the same source record again, changed, soon after or in a later chunk
            again = {k: v for k, v in record.items() if k != "phone"}
            again["given_name"] = record.get("given_name", "X") + "a"
            later.append((len(records) + rng.randrange(0, 80), again))
        if rng.random() < 0.01:
            records.append({**record, "source_id": record["source_id"] + "-bad", "email": "not an email"})
    for position, again in reversed(later):
        records.insert(min(position, len(records)), again)
    return records, data.truth


async def one_by_one(runtime: ServiceRuntime, records: list[dict[str, Any]]) -> Report:
    """The reference: what `import_records` did before bulk resolution, one `ingest` per row."""
    settings = runtime.settings
    matcher = runtime.app.state.matcher
    report = Report()
    for number, raw in enumerate(records, start=1):
        try:
            data = SourceRecordIn.model_validate(raw)
            result = await service.ingest(runtime.uow(), settings, matcher, data)  # type: ignore[arg-type]
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(map(str, err["loc"])) or None
                report.errors.append({"row": number, "field": field, "message": err["msg"]})
            continue
        except DomainError as exc:
            for problem in exc.errors or []:
                field = problem.field.removeprefix("body.")
                report.errors.append({"row": number, "field": field, "message": problem.message})
            if not exc.errors:
                report.errors.append({"row": number, "field": None, "message": exc.detail})
            continue
        report.outcomes[result.outcome] += 1
    return report


async def in_bulk(
    runtime: ServiceRuntime,
    records: list[dict[str, Any]],
    chunk_size: int,
    resolver: BulkResolver | None = None,
    *,
    workers: int | None = None,
) -> Report:
    """`import_records` with a given chunk size (validation as there, resolution by the bulk resolver);
    with `workers`, rows validated and normalised in that many worker processes (`resolve_raw`)."""
    if resolver is None:
        resolver = BulkResolver(runtime.uow, runtime.settings, runtime.app.state.matcher, chunk_size)  # type: ignore[arg-type]
    report = Report()
    if workers is not None:
        await resolver.resolve_raw(list(enumerate(records, start=1)), report, workers=workers)
        report.errors.sort(key=lambda e: int(e["row"]))
        return report
    valid = []
    for number, raw in enumerate(records, start=1):
        try:
            valid.append((number, SourceRecordIn.model_validate(raw)))
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(map(str, err["loc"])) or None
                report.errors.append({"row": number, "field": field, "message": err["msg"]})
    await resolver.resolve(valid, report)
    report.errors.sort(key=lambda e: int(e["row"]))
    return report


async def state(runtime: ServiceRuntime) -> dict[str, Any]:
    """What the database holds, with generated ids replaced by the source records they stand for."""
    async with runtime.sessions() as session:
        sources = list(await session.scalars(select(SourceRecordRow)))
        customers = list(await session.scalars(select(CustomerRow)))
        reviews = list(await session.scalars(select(MatchReviewRow)))
        changes = list(await session.scalars(select(ProfileChangeRow).order_by(ProfileChangeRow.id)))
        outbox = runtime.tables.outbox
        events = list(await session.execute(select(outbox.c.type, outbox.c.envelope).order_by(outbox.c.id)))
        indexes = {
            row.__tablename__: [tuple(r) for r in await session.execute(select(*columns))]
            for row, columns in (
                (IdentifierRow, (IdentifierRow.kind, IdentifierRow.value)),
                (BlockingKeyRow, (BlockingKeyRow.key,)),
                (SearchKeyRow, (SearchKeyRow.key,)),
            )
            for columns in [(*columns, row.customer_id, row.source_record_id)]
        }
    members: dict[str, set[str]] = {}
    source_of = {s.id: s.source_id for s in sources}
    for s in sources:
        members.setdefault(s.customer_id, set()).add(s.source_id)
    cluster = {c: frozenset(m) for c, m in members.items()}

    def provenance(p: dict[str, Any]) -> dict[str, Any]:
        return {k: {**v, "source_record_id": source_of[v["source_record_id"]]} for k, v in p.items()}

    golden = {
        cluster[c.id]: (
            {name: getattr(c, name) for name in (*service.GOLDEN_COLUMNS, "source_system", "version")},
            provenance(c.provenance),
        )
        for c in customers
    }
    audit: dict[frozenset[str], list[Any]] = {}
    for change in changes:
        audit.setdefault(cluster[change.customer_id], []).append((change.cause, change.before, change.after))
    published = []
    for kind, envelope in events:
        data = dict(envelope["data"])
        subject = cluster[data.pop("customer_id")]
        data.pop("registered_at", None)
        data.pop("updated_at", None)
        assert envelope["subject"] == envelope["data"]["customer_id"]
        rest = {k: v for k, v in envelope.items() if k not in ("id", "time", "subject", "data")}
        published.append((kind, subject, data, sorted(rest.items())))
    # Every column of the source records but the generated ids and clock readings; the index rows.
    stored = {
        (s.source_system, s.source_id): (
            (s.kind, s.data, s.match, s.trust, sorted(s.verified)),
            (cluster[s.customer_id], cluster[s.origin_customer_id], s.received_at == s.updated_at),
        )
        for s in sources
    }
    index_rows = {
        table: Counter(
            (*values, cluster[customer_id], source_of[record_id]) for *values, customer_id, record_id in rows
        )
        for table, rows in indexes.items()
    }
    return {
        "partition": set(cluster.values()),
        "customers_without_records": len(customers) - len(cluster),
        "golden": golden,
        "reviews": sorted(
            (source_of[r.source_record_id or ""], sorted(cluster[r.candidate_id]), r.reason, r.probability)
            for r in reviews
        ),
        "audit": audit,
        "events": published,
        "sources": stored,
        "indexes": index_rows,
    }


async def started_on(url: str, **overrides: Any) -> ServiceRuntime:
    runtime = build(load_settings(database_url=url, **overrides), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()
    return runtime


@pytest.mark.parametrize(("n", "seed", "chunk_size"), [(700, 3, 50), (300, 11, 7)])
async def test_bulk_equals_one_by_one(tmp_path: Path, n: int, seed: int, chunk_size: int) -> None:
    single = await started(tmp_path / "single", **TIGHT)
    bulk = await started(tmp_path / "bulk", **TIGHT)
    resolver = await check_bulk_equals_one_by_one(single, bulk, n, seed, chunk_size)
    assert resolver.stats.replayed_runs == 0  # SQLite: each run waits for the one before


@pytest.mark.parametrize("workers", [1, 2])
async def test_bulk_equals_one_by_one_on_postgres(pg_database: str, pg_database_2: str, workers: int) -> None:
    """The same on PostgreSQL, where the bulk path writes by COPY and updates through a temporary
    table, and later chunks reuse the views and golden records cached by earlier ones; with one worker
    process and with two (an import's default), whose chunks come back in turn."""
    single = await started_on(pg_database, **TIGHT)
    bulk = await started_on(pg_database_2, **TIGHT)
    resolver = await check_bulk_equals_one_by_one(single, bulk, 600, 5, 45, workers=workers)
    # Chunks were decided while the previous one was still being written, over its replayed additions,
    # and chunks were read while the previous one was still being decided.
    assert resolver.stats.replayed_runs > 0
    assert resolver.stats.read_ahead > 0


async def check_bulk_equals_one_by_one(
    single: ServiceRuntime,
    bulk: ServiceRuntime,
    n: int,
    seed: int,
    chunk_size: int,
    workers: int | None = None,
) -> BulkResolver:
    records, truth = dataset(n, seed)
    try:
        expected = await one_by_one(single, records)
        resolver = BulkResolver(bulk.uow, bulk.settings, bulk.app.state.matcher, chunk_size)  # type: ignore[arg-type]
        got = await in_bulk(bulk, records, chunk_size, resolver, workers=workers)
        before, after = await state(single), await state(bulk)
    finally:
        await single.stop()
        await bulk.stop()

    # The data set does exercise what matters: duplicates within a chunk and across chunks, updates,
    # reviews, and every kind of outcome.
    positions: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        positions.setdefault(truth.get(r["source_id"], r["source_id"]), []).append(i // chunk_size)
    chunks_of = [p for p in positions.values() if len(p) > 1]
    assert any(len(set(p)) < len(p) for p in chunks_of), "no duplicates within one chunk"
    assert any(len(set(p)) > 1 for p in chunks_of), "no duplicates across chunks"
    assert set(expected.outcomes) == {"created", "matched", "updated", "review"}
    reasons = Counter(r[2].split(" ")[0] for r in before["reviews"])
    assert len(reasons) >= 3, reasons

    assert got.outcomes == expected.outcomes
    assert got.errors == expected.errors
    assert after["partition"] == before["partition"]
    assert after["golden"] == before["golden"]
    assert after["reviews"] == before["reviews"]
    assert after["audit"] == before["audit"]
    assert after["events"] == before["events"]
    assert after["sources"] == before["sources"]
    assert after["indexes"] == before["indexes"]
    assert after["customers_without_records"] == before["customers_without_records"] == 0
    # Later chunks did reuse what earlier ones built, and the cached views were checked, not trusted:
    # source records updated in between (repeated source ids) were read again.
    assert resolver.stats.record_views_cached > 0
    assert resolver.stats.goldens_cached > 0
    assert resolver.stats.record_views_loaded > 0 or resolver.stats.goldens_loaded > 0
    return resolver


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


async def test_bad_rows_are_reported_and_good_rows_land(identity: ServiceRuntime, tmp_path: Path) -> None:
    good = {"given_name": "Lena", "family_name": "Becker", "email": "lena.becker@example.de"}
    rows: list[object] = [
        {"source_id": "1", **good, "birth_date": "1990-03-04"},
        {"source_id": "2", "given_name": "Jonas", "email": "not an email", "phone": "12"},
        "{broken json",
        {"source_id": "3", "given_name": "Mia", "birth_date": "1990-13-45"},
        {"source_id": "4", **good, "phone": "+49 151 27384915"},
        {"source_id": "5", "family_name": "Schulz", "colour": "blue"},
        {"source_id": "1", **good, "family_name": "Becker-Wolf"},
        {"source_id": "6", "given_name": "Paul", "family_name": "Weber", "card_number": "12"},
    ]
    report = await import_records(
        identity, write_jsonl(tmp_path / "people.jsonl", rows), source_system="import", show_progress=False
    )
    assert [(e["row"], e["field"]) for e in report.errors] == [
        (2, "email"),
        (2, "phone"),
        (3, None),
        (4, "birth_date"),
        (6, "colour"),
        (8, "card_number"),
    ]
    assert report.errors[2]["message"].startswith("not JSON")
    assert dict(report.outcomes) == {"created": 1, "matched": 1, "updated": 1}
    async with identity.sessions() as session:
        stored = {s.source_id: s for s in await session.scalars(select(SourceRecordRow))}
        customer = await session.get(CustomerRow, stored["1"].customer_id)
    assert set(stored) == {"1", "4"}
    assert stored["1"].customer_id == stored["4"].customer_id
    assert customer is not None
    assert (customer.family_name, customer.phone) == ("Becker-Wolf", "+4915127384915")


async def test_one_registered_event_per_created_customer(identity: ServiceRuntime) -> None:
    records, _ = dataset(200, 5)
    report = await in_bulk(identity, records, chunk_size=40)
    async with identity.sessions() as session:
        customers = {c.id: c for c in await session.scalars(select(CustomerRow))}
        outbox = identity.tables.outbox
        events = list(await session.execute(select(outbox.c.key, outbox.c.type, outbox.c.envelope)))
    registered = [key for key, kind, _ in events if kind == CustomerRegistered.full_type()]
    assert sorted(registered) == sorted(customers)  # exactly one per customer, none for matches
    assert len(registered) == report.outcomes["created"] + report.outcomes["review"]
    updates = [(key, env["data"]) for key, kind, env in events if kind == CustomerUpdated.full_type()]
    assert updates, "matched records changed some golden records"
    last_version: dict[str, int] = {}
    for key, data in updates:
        assert data["cause"] == "source_record"
        assert data["changed_fields"]
        assert data["record_version"] > last_version.get(key, 1)
        last_version[key] = data["record_version"]
    for key, version in last_version.items():
        assert customers[key].version >= version  # (a change of provenance alone bumps it silently)


async def test_an_import_holds_only_the_rows_of_the_chunks_in_hand(
    identity: ServiceRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of chunks already written are let go: an import's memory does not grow with the file
    (the chunks' prepared rows were once all kept until its end)."""
    monkeypatch.setattr(heap, "keep", lambda: None)  # frozen objects are not listed by gc.get_objects
    records, _ = dataset(400, 7)
    resolver = BulkResolver(identity.uow, identity.settings, identity.app.state.matcher, chunk_size=40)  # type: ignore[arg-type]
    alive: list[int] = []

    def count_rows(done: int) -> None:
        gc.collect()
        alive.append(sum(1 for o in gc.get_objects() if type(o).__name__ == "_Row"))

    report = Report()
    await resolver.resolve_raw(list(enumerate(records, start=1)), report, progress=count_rows, workers=0)
    assert sum(report.outcomes.values()) > 300
    assert len(alive) == len(_chunk_sizes(len(records), 40)) > len(records) // 40  # (the ramps)
    # The chunk being decided, the one being written and the one prepared ahead: never the file.
    assert max(alive) <= 3 * 40, alive
    assert not resolver.cache.records
    assert not resolver.cache.goldens


async def test_a_customer_met_through_a_strong_identifier_is_known_in_full(tmp_path: Path) -> None:
    # The second record joins the first one's customer through a shared external id alone (no
    # blocking key in common); the third then meets that customer through the second record, and
    # must see both of its records (two: the size limit sends it to review).
    shop = {"external_ids": {"shop": "77-1"}}
    person = {"email": "hanna.berger@example.de", "phone": "+49 151 27384915", "birth_date": "1985-07-09"}
    records: list[dict[str, Any]] = [
        {
            "source_id": "1",
            "given_name": "Anna",
            "family_name": "Schmidt",
            "birth_date": "1980-05-06",
            **shop,
        },
        {"source_id": "2", "given_name": "Jonas", "family_name": "Weber", "email": "jonas@example.de"},
        {"source_id": "3", "given_name": "Hanna", "family_name": "Berger", **person, **shop},
        {"source_id": "4", "given_name": "Hanna", "family_name": "Berger", **person},
    ]
    limits = {"max_records_per_customer": 2, "auto_train": False}
    single = await started(tmp_path / "single", **limits)
    bulk = await started(tmp_path / "bulk", **limits)
    try:
        expected = await one_by_one(single, records)
        got = await in_bulk(bulk, records, chunk_size=2)
        before, after = await state(single), await state(bulk)
    finally:
        await single.stop()
        await bulk.stop()
    assert dict(expected.outcomes) == {"created": 2, "matched": 1, "review": 1}
    assert got.outcomes == expected.outcomes
    assert after == before


async def test_a_run_another_writer_conflicts_with_is_redone_one_by_one(
    pg_database: str, pg_database_2: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a chunk is being written, another writer stores one of its source records first: the
    chunk's transaction fails on the uniqueness conflict and its rows are resolved one by one, and
    the next chunk (decided meanwhile over the failed chunk's replayed additions) is decided again.
    The result is what one-by-one resolution gives with the other writer's record in between."""
    from services.identity import bulk as bulk_module

    chunk = 40
    records, _ = dataset(200, 13)
    first_seen: dict[str, int] = {}
    for i, raw in enumerate(records):
        first_seen.setdefault(str(raw.get("source_id")), i)

    def usable(i: int) -> bool:
        raw = records[i]
        if first_seen.get(str(raw.get("source_id"))) != i or raw.get("source_id") is None:
            return False
        try:
            SourceRecordIn.model_validate(raw)
        except ValidationError:
            return False
        return True

    clash = next(i for i in range(chunk + 5, 2 * chunk) if usable(i))
    concurrent = dict(records[clash])

    single = await started_on(pg_database, **TIGHT)
    other = await started_on(pg_database_2, **TIGHT)
    original = bulk_module._Run.write
    calls = 0

    async def write_after_another_writer(self: Any, decided: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the second chunk: another writer stores one of its records first
            data = SourceRecordIn.model_validate(concurrent)
            await service.ingest(other.uow(), other.settings, other.app.state.matcher, data)  # type: ignore[arg-type]
        await original(self, decided)

    monkeypatch.setattr(bulk_module._Run, "write", write_after_another_writer)
    try:
        reference = await one_by_one(single, [*records[:chunk], concurrent, *records[chunk:]])
        resolver = BulkResolver(other.uow, other.settings, other.app.state.matcher, chunk)  # type: ignore[arg-type]
        got = await in_bulk(other, records, chunk, resolver)
        before, after = await state(single), await state(other)
    finally:
        await single.stop()
        await other.stop()

    assert resolver.stats.fallbacks == 1
    assert resolver.stats.redecided == 1
    assert sum(got.outcomes.values()) == sum(reference.outcomes.values()) - 1
    assert got.errors == [
        {**e, "row": e["row"] - 1 if e["row"] > chunk + 1 else e["row"]} for e in reference.errors
    ]
    assert after["partition"] == before["partition"]
    assert after["golden"] == before["golden"]
    assert after["reviews"] == before["reviews"]
    assert after["audit"] == before["audit"]
    assert after["events"] == before["events"]
    assert after["sources"] == before["sources"]
    assert after["indexes"] == before["indexes"]


async def check_equal_stores(url: str, url_2: str, records: list[dict[str, Any]]) -> None:
    """`records` ingested one by one into the database at `url` and imported in bulk (chunks of 2,
    through a worker process) into the one at `url_2` end the same."""
    single = await started_on(url, **TIGHT)
    bulk = await started_on(url_2, **TIGHT)
    try:
        expected = await one_by_one(single, records)
        got = await in_bulk(bulk, records, 2, workers=1)
        before, after = await state(single), await state(bulk)
    finally:
        await single.stop()
        await bulk.stop()
    assert got.outcomes == expected.outcomes
    assert got.errors == expected.errors == []
    assert after == before
