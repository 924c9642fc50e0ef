"""`shared.db.copy_text` against a real PostgreSQL: whatever text goes through COPY's text format
escaped by it comes back exactly; and a bulk import stores such values as one-by-one ingest does."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.db import copy_text

# Any text PostgreSQL can hold (no NUL), with the characters COPY treats specially made likely.
texts = st.text(
    alphabet=st.one_of(
        st.sampled_from(["\\", "\t", "\n", "\r", "N", ".", "é", "{", "}", '"']),
        st.characters(codec="utf-8", blacklist_characters="\x00"),
    ),
    max_size=30,
)


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def examples(count: int) -> list[tuple[str, str]]:
    """`count` pairs of texts drawn by hypothesis (the check itself is async: one COPY of them all)."""
    drawn: list[tuple[str, str]] = []

    @settings(max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(texts, texts)
    def draw(a: str, b: str) -> None:
        drawn.append((a, b))

    draw()
    return drawn


async def test_every_text_survives_copy_text(pg_database: str) -> None:
    rows = examples(1000)
    assert any("\\" in a or "\t" in a or "\n" in a or "\r" in a for a, _ in rows)
    connection = await asyncpg.connect(dsn(pg_database))
    try:
        await connection.execute("CREATE TABLE t (n int, a text, b text)")
        lines = "".join(f"{i}\t{copy_text(a)}\t{copy_text(b)}\n" for i, (a, b) in enumerate(rows))
        await connection.copy_to_table("t", source=memoryview(lines.encode()), format="text")
        back = await connection.fetch("SELECT a, b FROM t ORDER BY n")
    finally:
        await connection.close()
    assert [(r["a"], r["b"]) for r in back] == rows


def test_nul_is_refused_not_mangled() -> None:
    with pytest.raises(ValueError, match="NUL"):
        copy_text("a\x00b")


def test_plain_values_come_back_unchanged() -> None:
    for value in ("", "abc", "Ünïcödé straße", "a b c", "N"):
        assert copy_text(value) is value or copy_text(value) == value


async def test_a_bulk_import_stores_special_characters_as_ingest_does(
    pg_database: str, pg_database_2: str
) -> None:
    from tests.e2e.test_identity_bulk import check_equal_stores

    nasty: list[dict[str, Any]] = []
    for i, name in enumerate(["Back\\slash", "Tab\tbed", "New\nline", "Ret\rurn", "\\N", 'O\'Brien "Jr"']):
        nasty.append(
            {
                "source_system": "legacy",
                "source_id": f"id\t{i}",
                "given_name": name,
                "family_name": f"Family{i}\\",
                "email": f"person{i}@example.com",
            }
        )
    await check_equal_stores(pg_database, pg_database_2, nasty)


async def test_a_nul_character_is_a_row_error_and_the_rest_of_the_import_lands(pg_database: str) -> None:
    """PostgreSQL text cannot hold NUL: such a row is refused by validation, naming the field, rather
    than failing the import when stored (or a single ingest with a 500)."""
    from services.identity.batch import Report
    from services.identity.bulk import BulkResolver
    from tests.e2e.test_identity_bulk import TIGHT, started_on

    runtime = await started_on(pg_database, **TIGHT)
    try:
        rows = [
            {"source_id": "a", "given_name": "Ann", "email": "ann@example.com"},
            {"source_id": "b", "given_name": "Bo\x00b", "email": "bob@example.com"},
            {"source_id": "c", "given_name": "Cy", "addresses": [{"street": "Main\x00St"}]},
            {"source_id": "d", "given_name": "Di", "email": "di@example.com"},
        ]
        resolver = BulkResolver(runtime.uow, runtime.settings, runtime.app.state.matcher, 2)  # type: ignore[arg-type]
        report = Report()
        await resolver.resolve_raw(list(enumerate(rows, start=1)), report, workers=1)
    finally:
        await runtime.stop()
    assert sorted((e["row"], e["field"]) for e in report.errors) == [(2, "given_name"), (3, "addresses")]
    assert all("NUL" in e["message"] for e in report.errors)
    assert report.outcomes["created"] == 2
