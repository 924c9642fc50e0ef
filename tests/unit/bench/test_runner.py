"""The benchmark end to end on a few records: our service on SQLite, Splink if installed, the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.identity.analysis import error_analysis
from bench.identity.splink_run import flatten


def test_flatten_cleans_like_a_splink_user() -> None:
    row = flatten(
        {
            "source_system": "pos",
            "source_id": "pos-1",
            "given_name": "José-María",
            "family_name": "O'Neil",
            "email": " Ana@Example.COM ",
            "phone": "612 34 56 78",
            "birth_date": "1988-04-12",
            "addresses": [{"postcode": "sw1a 1aa", "locality": "Londres", "country": "ES"}],
        }
    )
    assert row == {
        "unique_id": "pos-1",
        "given_name": "jose maria",
        "family_name": "oneil",
        "full_name": "jose maria oneil",
        "email": "ana@example.com",
        "phone": "34612345678",
        "birth_date": "1988-04-12",
        "postcode": "SW1A1AA",
        "city": "londres",
    }
    assert flatten({"source_id": "x", "phone": "0034 612-345-678"})["phone"] == "34612345678"


def test_error_analysis_attributes_misses_and_false_merges() -> None:
    records = [
        {"source_id": "a", "given_name": "Ana", "family_name": "Ruiz", "email": "f@x.es"},
        {"source_id": "b", "given_name": "Anna", "family_name": "Ruiz", "email": "f@x.es"},
        {"source_id": "c", "given_name": "Luis", "family_name": "Ruiz", "email": "f@x.es"},
    ]
    truth = {"a": "P1", "b": "P1", "c": "P2"}
    tags = {"a": [], "b": ["name_typo"], "c": []}
    persons = {
        "P1": {"given_name": "Ana", "family_name": "Ruiz", "household": "H1"},
        "P2": {"given_name": "Luis", "family_name": "Ruiz", "household": "H1"},
    }
    analysis = error_analysis(
        {"a": 1, "b": 2, "c": 1}, truth, tags, persons, records, reviews={frozenset((1, 2))}
    )
    assert analysis["missed_pairs"] == 1
    assert analysis["missed_pairs_in_review"] == 1
    assert analysis["missed_by_kind"][0] == {
        "kind": "name_typo",
        "true_pairs": 1,
        "missed": 1,
        "miss_rate": 1.0,
    }
    assert analysis["missed_pairs_still_sharing"] == {"email": 1}
    assert analysis["false_merge_pairs"] == 1
    assert analysis["false_merges_by_relation"] == {"household": {"record_pairs": 1, "people_pairs": 1}}


def test_run_writes_figures(tmp_path: Path) -> None:
    from bench.identity import run

    with_splink = True
    try:
        import splink  # noqa: F401
    except ImportError:
        with_splink = False
    figures = run("small", tmp_path, None, records=300, seed=3, splink=with_splink, quiet=True)
    ours = figures["ours"]
    assert figures["dataset"]["records"] == 300
    assert ours["errors"] == {}
    assert sum(ours["outcomes"].values()) == 300
    assert 0.0 <= ours["recall"] <= ours["with_reviews_accepted"]["recall"] <= 1.0
    assert ours["latency"]["median_ms"] > 0
    assert ours["records_per_second"] > 0
    if with_splink:
        assert 0.0 < figures["splink"]["f1"] <= figures["splink"]["best"]["f1"] + 1e-9
    saved = json.loads((tmp_path / "identity.json").read_text())
    assert saved["ours"]["f1"] == pytest.approx(ours["f1"])
    assert "## Identity matching" in (tmp_path / "identity.md").read_text()


def test_arrival_analysis_splits_decisions_by_what_should_have_happened() -> None:
    from bench.identity.analysis import arrival_analysis

    truth = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "c1": "C", "c2": "C"}
    decisions = [
        ("a1", "created", None),
        ("b1", "matched", 0.995),  # B's first record joined A: a false merge
        ("a2", "matched", 0.999),
        ("c1", "created", 0.1),
        ("a3", "review", 0.9),
        ("c2", "created", None),  # no candidate came near its earlier record
    ]
    clusters = {"a1": 1, "b1": 1, "a2": 1, "c1": 2, "a3": 3, "c2": 4}
    arrivals = arrival_analysis(decisions, {"a3": "probable match"}, truth, clusters)
    assert arrivals["should_match"] == {
        "matched the right person": 1,
        "review: probable match": 1,
        "created (no candidate near)": 1,
    }
    assert arrivals["should_create"] == {"created": 2, "matched someone else (false merge)": 1}
    assert arrivals["should_match_not_matched_best_probability"] == {"0.90–0.95": 1, "no candidate near": 1}
