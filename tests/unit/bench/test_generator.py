"""The benchmark's labelled data set: deterministic, consistent labels, valid records, hard negatives."""

from __future__ import annotations

from collections import Counter, defaultdict
from functools import cache

import phonenumbers
import pytest

from bench.identity.generator import ERROR_KINDS, Dataset, generate, strip_accents, typo
from services.identity.schemas import SourceRecordIn

NAME_KINDS = {"name_typo", "swapped_names", "nickname", "accents_dropped", "upper_case", "surname_partial"}


@cache
def dataset() -> Dataset:
    return generate(3000, seed=11)


def test_deterministic_under_a_seed() -> None:
    first, again, other = generate(400, seed=3), generate(400, seed=3), generate(400, seed=4)
    assert first.records == again.records
    assert first.truth == again.truth
    assert first.tags == again.tags
    assert first.persons == again.persons
    assert first.records != other.records


@pytest.mark.parametrize("n", [1, 2, 57, 1000])
def test_exactly_the_requested_number_of_records(n: int) -> None:
    data = generate(n, seed=1)
    assert len(data.records) == n
    assert len({r["source_id"] for r in data.records}) == n


def test_labels_cover_every_record_and_person() -> None:
    data = dataset()
    ids = [r["source_id"] for r in data.records]
    assert set(ids) == set(data.truth) == set(data.tags)
    assert set(data.truth.values()) == set(data.persons)
    sizes = Counter(data.truth.values())
    assert set(sizes.values()) <= {1, 2, 3, 4}
    assert sizes.most_common(1)[0][1] == 4
    assert 0.35 < sum(1 for n in sizes.values() if n == 1) / len(sizes) < 0.65  # Zipf-ish: mostly ones
    assert set().union(*data.tags.values()) <= set(ERROR_KINDS)


def test_every_error_kind_occurs() -> None:
    seen = set().union(*dataset().tags.values())
    assert seen == set(ERROR_KINDS)


def test_records_are_valid_source_records() -> None:
    for record in dataset().records:
        data = SourceRecordIn.model_validate(record)
        assert data.kind == "person"
        assert data.source_system in {"web", "pos", "callcentre", "import", "partner"}
        assert record.get("email") or record.get("phone") or record.get("addresses")


def test_phones_are_valid_and_normalise_to_the_persons_number() -> None:
    data = dataset()
    for record in data.records:
        if "phone" not in record:
            continue
        region = record["addresses"][0]["country"] if record.get("addresses") else None
        text = record["phone"]
        parsed = phonenumbers.parse("+" + text[2:] if text.startswith("00") else text, region)
        assert phonenumbers.is_valid_number(parsed), record["phone"]
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        assert e164 == data.persons[data.truth[record["source_id"]]]["phone"]
        if not record["phone"].startswith(("+", "00")):
            assert "phone_national" in data.tags[record["source_id"]]
            assert region is not None  # a national number always comes with its country


def test_clean_values_equal_the_persons_and_changed_ones_are_tagged() -> None:
    data = dataset()
    for record in data.records:
        tags = set(data.tags[record["source_id"]])
        person = data.persons[data.truth[record["source_id"]]]
        names_clean = not (tags & NAME_KINDS)
        assert names_clean == (
            (record["given_name"], record["family_name"]) == (person["given_name"], person["family_name"])
        ), (record, tags)
        if "swapped_names" in tags and not tags & (NAME_KINDS - {"swapped_names"}):
            assert (record["family_name"], record["given_name"]) == (
                person["given_name"],
                person["family_name"],
            )
        if "accents_dropped" in tags:
            assert strip_accents(record["given_name"] + record["family_name"]).isascii()
        assert ("birth_date" in record) != ("missing_birth_date" in tags)
        if "birth_date" in record:
            same = record["birth_date"] == person["birth_date"]
            assert same != ("dob_transposed" in tags)
        assert ("email" in record) != ("missing_email" in tags)
        if "email" in record and not tags & {"second_email", "email_variant"}:
            assert record["email"] == person["email"]
        if "second_email" in tags:
            assert record["email"].lower() != person["email"]
        assert ("phone" in record) != ("missing_phone" in tags)
        assert ("addresses" in record) != ("missing_address" in tags)
        if "addresses" in record and not tags & {"moved", "postcode_format"}:
            assert record["addresses"][0]["postcode"] == person["postcode"]


def test_households_are_hard_negatives() -> None:
    data = dataset()
    households: dict[str, list[dict[str, object]]] = defaultdict(list)
    for person in data.persons.values():
        if person["household"]:
            households[str(person["household"])].append(person)
    multi = [members for members in households.values() if len(members) >= 2]
    assert len(multi) >= 20
    shared_email = 0
    for members in multi:
        assert len({m["family_name"] for m in members}) == 1
        assert len({m["postcode"] for m in members}) == 1
        assert len({m["given_name"] for m in members}) == len(members)
        assert len({m["birth_date"] for m in members}) == len(members)
        assert len({m["phone"] for m in members}) == len(members)
        emails = Counter(m["email"] for m in members)
        shared_email += emails.most_common(1)[0][1] >= 2
    assert shared_email >= len(multi) // 3
    # The shared e-mail really shows up on records of different people.
    people_by_email: dict[str, set[str]] = defaultdict(set)
    for record in data.records:
        if "email" in record:
            people_by_email[record["email"]].add(data.truth[record["source_id"]])
    assert sum(1 for people in people_by_email.values() if len(people) >= 2) >= 10


def test_common_names_are_hard_negatives() -> None:
    data = generate(20000, seed=5)
    by_name: dict[tuple[object, object], list[dict[str, object]]] = defaultdict(list)
    for person in data.persons.values():
        if person["common_name"]:
            by_name[(person["given_name"], person["family_name"])].append(person)
    assert ("María", "García") in by_name
    assert ("John", "Smith") in by_name
    assert max(len(people) for people in by_name.values()) >= 20
    for people in by_name.values():
        assert len({p["birth_date"] for p in people}) == len(people)  # same name, other birth dates
        assert len({p["phone"] for p in people}) == len(people)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance with adjacent transpositions (optimal string alignment)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def test_typo_is_one_edit() -> None:
    import random

    assert edit_distance("garcia", "gracia") == 1
    rng = random.Random(0)
    for word in ("García", "Smith", "Li", "Jo", "Müller", "O'Brien"):
        for _ in range(50):
            changed = typo(word, rng)
            assert changed != word
            assert edit_distance(word, changed) == 1
            assert changed[0] == word[0]
