"""Golden-record assembly: the one-record shortcut (`_assemble_one`) gives exactly what the general
survivorship pass (`_assemble_many`) gives for that record, whatever the record holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.identity.domain import (
    GOLDEN_FIELDS,
    SCALAR_RULES,
    Rule,
    SourceView,
    _assemble_many,
    _assemble_one,
    assemble,
)

blank: st.SearchStrategy[Any] = st.sampled_from([None, "", [], {}])
scalar = st.one_of(blank, st.text(max_size=5), st.integers(0, 3))
address = st.fixed_dictionaries(
    {},
    optional={
        k: st.one_of(st.none(), st.sampled_from(["", "1", " 1 ", "Main St", "main st", "ES"]))
        for k in ("street_number", "street", "postcode", "country", "locality")
    },
)
data = st.fixed_dictionaries(
    {},
    optional={
        **{name: scalar for name in SCALAR_RULES},
        "addresses": st.one_of(st.none(), st.lists(address, max_size=4)),
        "external_ids": st.one_of(st.none(), st.dictionaries(st.sampled_from("abc"), st.text(max_size=2))),
        "attributes": st.one_of(st.none(), st.dictionaries(st.sampled_from("xyz"), scalar)),
        "status": st.sampled_from(["customer", "prospect", None]),
        "kind": st.sampled_from(["person", "organisation"]),
    },
)
view = st.builds(
    SourceView,
    id=st.sampled_from(["r1", "r2"]),
    source_system=st.sampled_from(["web", "pos"]),
    trust=st.integers(0, 100),
    observed_at=st.just(datetime(2026, 1, 1, tzinfo=UTC)),
    verified=st.frozensets(st.sampled_from([*SCALAR_RULES, "addresses"])),
    data=data,
)
rules = st.dictionaries(st.sampled_from(list(SCALAR_RULES)), st.sampled_from(list(Rule)), max_size=3)


@settings(max_examples=500)
@given(view, rules)
def test_one_record_is_assembled_as_in_general(record: SourceView, overrides: dict[str, Rule]) -> None:
    merged = {**SCALAR_RULES, **overrides}
    one, many = _assemble_one(record, merged), _assemble_many([record], merged)
    assert one.values == many.values
    assert list(one.values) == list(many.values)
    assert one.provenance == many.provenance
    assert assemble([record], overrides).values == many.values


def test_the_shortcut_copies_what_it_may_not_share() -> None:
    attributes: dict[str, Any] = {"x": 1}
    at = datetime(2026, 1, 1, tzinfo=UTC)
    record = SourceView("r", "web", 10, at, frozenset(), {"attributes": attributes})
    golden = assemble([record])
    golden.values["attributes"]["y"] = 2
    assert attributes == {"x": 1}
    assert set(golden.values) == set(GOLDEN_FIELDS)
