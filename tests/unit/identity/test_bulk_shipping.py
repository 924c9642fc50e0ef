"""Rows prepared in an import's worker process cross to the main process without their validated
record and normalised values (`_Row.shipped`): everything the decision and the writing read is the
same as on the row before shipping, and the record itself is validated again from the raw row. The
worker processes run at a lower priority than the process deciding."""

from __future__ import annotations

import copy
import datetime as dt
import os
import pickle
from dataclasses import fields
from typing import Any

from services.identity.bulk import WORKER_NICENESS, _give_raw, _Row, _worker_pool, prepare_rows
from services.identity.matching.record import MatchRecord

RAW: list[dict[str, Any]] = [
    {
        "source_system": "web",
        "source_id": "w-1",
        "given_name": "Zoë",
        "family_name": "Müller",
        "email": "Zoe.Mueller+news@Gmail.com",
        "phone": "030 1234567",
        "birth_date": "1984-02-29",
        "addresses": [{"street": "Hauptstr. 5", "postcode": "10115", "locality": "Berlin", "country": "DE"}],
        "observed_at": "2026-01-02T03:04:05+00:00",
        "verified": ["email"],
    },
    {"given_name": "no", "email": "not an e-mail"},  # invalid: reported, not shipped
    {
        "kind": "organisation",
        "organisation_name": "ACME GmbH",
        "phone": "+49 89 123456",
        "status": "customer",
    },
    {"given_name": "Ann", "family_name": "Lee", "email": "test@test.com"},  # a placeholder: kept, not used
]
RANDOM = {"record_id", "source_id", "new_id", "event_id", "match", "copy"}  # hold fresh uuids each time
GONE = {"data", "normal", "raw"}


def prepared(ship: bool) -> list[_Row]:
    result = prepare_rows(list(enumerate(RAW, start=1)), "DE", frozenset(), "crm", copy=True, ship=ship)
    assert [e["row"] for e in result.errors] == [2]
    return result.rows


def test_a_shipped_row_keeps_all_the_decision_and_writing_read() -> None:
    kept, shipped = prepared(ship=False), prepared(ship=True)
    arrived: list[_Row] = pickle.loads(pickle.dumps(shipped, protocol=5))
    assert [r.number for r in arrived] == [1, 3, 4]
    for before, after in zip(kept, arrived, strict=True):
        assert after.data is None
        assert after.normal is None
        for f in fields(_Row):
            if f.name not in RANDOM | GONE:
                assert getattr(after, f.name) == getattr(before, f.name), f.name
        assert after.match is not None
        assert before.match is not None
        assert after.match.id == after.record_id
        assert after.match == MatchRecord(after.record_id, *[getattr(before.match, n) for n in _values()[1:]])
        assert after.copy is not None
        assert before.copy is not None
        assert after.copy == type(before.copy)(*_same_ids(before.copy, before, after))
    assert arrived[0].system == "web"
    assert arrived[1].system == "crm"  # the import's default source system
    assert arrived[1].kind == "organisation"
    assert arrived[0].observed_at == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_a_shipped_row_given_its_raw_fields_back_is_the_record_as_validated() -> None:
    kept = prepared(ship=False)
    arrived: list[_Row] = pickle.loads(pickle.dumps(prepared(ship=True), protocol=5))
    _give_raw(arrived, list(enumerate(RAW, start=1)))
    assert [r.raw is RAW[r.number - 1] for r in arrived] == [True, True, True]
    for before, after in zip(kept, arrived, strict=True):
        assert after.given() == before.given() == before.data


def test_a_row_kept_in_process_is_not_validated_again() -> None:
    row = prepared(ship=False)[0]
    assert row.given() is row.data


def test_a_match_record_pickles_and_copies_as_its_value_only() -> None:
    record = MatchRecord("r", given_name="ann", birth_date=dt.date(1990, 1, 2), gender="female")
    object.__setattr__(record, "derived", object())  # what comparisons cache on it
    for twin in (pickle.loads(pickle.dumps(record, protocol=5)), copy.copy(record), copy.deepcopy(record)):
        assert twin == record
        assert twin.derived is None


def _same_ids(text: tuple[Any, ...], before: _Row, after: _Row) -> list[Any]:
    """`before`'s COPY text with `after`'s ids."""

    def swap(value: Any) -> Any:
        if isinstance(value, tuple):
            return tuple(swap(v) for v in value)
        if isinstance(value, str):
            return value.replace(before.record_id, after.record_id).replace(before.source_id, after.source_id)
        return value

    return [swap(v) for v in text]


def _values() -> list[str]:
    return [f.name for f in fields(MatchRecord) if f.init]


def test_import_workers_run_nicer_than_the_deciding_process() -> None:
    pool = _worker_pool(1)
    try:
        theirs = pool.submit(os.nice, 0).result(timeout=60)
    finally:
        pool.shutdown()
    assert theirs == min(19, os.nice(0) + WORKER_NICENESS)
