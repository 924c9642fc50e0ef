"""Normalisation: one spelling per identifier, junk refused or recognised as a placeholder."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.identity.matching import (
    InvalidIdentifier,
    MatchRecord,
    is_placeholder,
    nickname_canonical,
    normalise_email,
    normalise_gender,
    normalise_name,
    normalise_national_id,
    normalise_phone,
    normalise_postcode,
    normalise_street,
)


class TestNormaliseEmail:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("  Ana.Garcia@Example.COM ", "ana.garcia@example.com"),
            ("J.Doe+shop@gmail.com", "jdoe@gmail.com"),
            ("j.doe@googlemail.com", "jdoe@gmail.com"),
            ("ana+news@outlook.com", "ana@outlook.com"),
            ("ana.lopez+x@hotmail.com", "ana.lopez@hotmail.com"),
            ("bob+1@proton.me", "bob@proton.me"),
            ("first.last+tag@company.es", "first.last+tag@company.es"),
            ("mailto:Ana@Example.com", "ana@example.com"),
            ("<ana@example.com>", "ana@example.com"),
        ],
    )
    def test_canonical_spelling(self, raw: str, expected: str) -> None:
        assert normalise_email(raw) == expected

    @pytest.mark.parametrize(
        "raw", ["", "   ", "ana", "ana@", "@example.com", "ana@example", "ana@@example.com",
                "a b@example.com", "ana..garcia@example.com", ".ana@example.com", "+tag@gmail.com",
                "x" * 65 + "@example.com"]
    )  # fmt: skip
    def test_not_an_address_is_refused_naming_the_field(self, raw: str) -> None:
        with pytest.raises(InvalidIdentifier) as error:
            normalise_email(raw)
        assert error.value.field == "email"
        assert error.value.reason

    @given(st.from_regex(r"[a-z][a-z0-9._+-]{0,20}[a-z0-9]@[a-z]{1,10}\.(com|es|de|org)", fullmatch=True))
    def test_idempotent(self, raw: str) -> None:
        try:
            once = normalise_email(raw)
        except InvalidIdentifier:
            return
        assert normalise_email(once) == once


class TestNormalisePhone:
    @pytest.mark.parametrize(
        ("raw", "region", "expected"),
        [
            ("+34 612 345 678", None, "+34612345678"),
            ("612 34 56 78", "ES", "+34612345678"),
            ("0034 612345678", None, "+34612345678"),
            ("(0)20 7946 0958", "GB", "+442079460958"),
            ("020 7946 0958", "gb", "+442079460958"),
            ("020 7946 0958", "en-GB", "+442079460958"),
            ("020 7946 0958", "UK", "+442079460958"),
            ("+49 30 12345678", "ES", "+493012345678"),
        ],
    )
    def test_e164(self, raw: str, region: str | None, expected: str) -> None:
        assert normalise_phone(raw, region) == expected

    @pytest.mark.parametrize(
        ("raw", "region"),
        [
            ("", None),
            ("call me", None),
            ("612345678", None),
            ("12", "ES"),
            ("+34 612", None),
            ("+999 1234567", None),
        ],
    )
    def test_unparseable_or_impossible_is_refused(self, raw: str, region: str | None) -> None:
        with pytest.raises(InvalidIdentifier) as error:
            normalise_phone(raw, region)
        assert error.value.field == "phone"

    def test_strict_refuses_unallocated_numbers_that_lenient_keeps(self) -> None:
        number = "+44 7700 1234567"  # right length for a UK mobile, outside allocated ranges
        with pytest.raises(InvalidIdentifier):
            normalise_phone(number)
        assert normalise_phone("+49 151 2345678", strict=False) == "+491512345678"


class TestNormaliseName:
    def test_accents_case_punctuation_and_spaces_fold_away(self) -> None:
        assert (
            normalise_name("  José-María  O'Neil ")
            == normalise_name("jose-maria o'neil")
            == "jose maria oneil"
        )

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("GARCÍA LÓPEZ", "garcia lopez"),
            ("García-López", "garcia lopez"),
            ("O’Connor", "oconnor"),
            ("Müller", "muller"),
            ("Strauß", "strauss"),
            ("Søren Ærø", "soren aero"),
            ("Łukasz", "lukasz"),
            ("J. R. R.", "j r r"),
            ("Ana\tMaría\n", "ana maria"),
        ],
    )
    def test_examples(self, raw: str, expected: str) -> None:
        assert normalise_name(raw) == expected

    @given(st.text())
    def test_idempotent_and_single_spaced(self, raw: str) -> None:
        once = normalise_name(raw)
        assert normalise_name(once) == once
        assert "  " not in once
        assert once == once.strip()


class TestOtherIdentifiers:
    def test_postcodes_lose_case_spaces_and_dashes(self) -> None:
        assert normalise_postcode("sw1a 1aa") == normalise_postcode("SW1A1AA") == "SW1A1AA"
        assert normalise_postcode("1000-001", "PT") == "1000001"
        assert normalise_postcode("12345-6789", "US") == "12345"

    def test_national_ids_keep_letters_and_digits(self) -> None:
        assert normalise_national_id(" 12.345.678-z ") == "12345678Z"

    @pytest.mark.parametrize(
        ("function", "field"),
        [
            (normalise_postcode, "postcode"),
            (normalise_national_id, "national_id"),
            (normalise_gender, "gender"),
        ],
    )
    def test_empty_is_refused(self, function, field: str) -> None:
        with pytest.raises(InvalidIdentifier) as error:
            function(" - ")
        assert error.value.field == field

    def test_streets_spell_out_abbreviations(self) -> None:
        assert normalise_street("C/ Mayor, 5") == "calle mayor 5"
        assert normalise_street("Avda. de la Constitución 12") == "avenida de la constitucion 12"
        assert normalise_street("Hauptstr. 3") == "hauptstrasse 3"

    @pytest.mark.parametrize(
        ("raw", "expected"), [("F", "f"), ("Mujer", "f"), ("male", "m"), ("Männlich", "m")]
    )
    def test_genders(self, raw: str, expected: str) -> None:
        assert normalise_gender(raw) == expected


class TestPlaceholders:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("email", "test@test.com"),
            ("email", "a@a.com"),
            ("email", "noemail@gmail.com"),
            ("email", "none@company.es"),
            ("email", "example@example.com"),
            ("email", "noreply@shop.de"),
            ("email", "xxxx@hotmail.com"),
            ("email", "asdf@yahoo.com"),
            ("email", "123@gmail.com"),
            ("email", "ana@shop.invalid"),
            ("phone", "000000000"),
            ("phone", "+34 000 000 000"),
            ("phone", "123456789"),
            ("phone", "1111111"),
            ("phone", "+44 7777 777777"),
            ("phone", "987654321"),
            ("phone", "12345"),
            ("given_name", "n/a"),
            ("given_name", "NA"),
            ("family_name", "None"),
            ("family_name", "Unknown"),
            ("family_name", "test"),
            ("family_name", "XXX"),
            ("given_name", "-"),
            ("given_name", "."),
            ("given_name", "Sin nombre"),
            ("national_id", "000000000"),
            ("national_id", "00000000T"),
            ("national_id", "123456789"),
            ("postcode", "00000"),
            ("postcode", "n/a"),
            ("birth_date", "1900-01-01"),
        ],
    )
    def test_junk_is_recognised(self, field: str, value: str) -> None:
        assert is_placeholder(field, value)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("email", "ana.garcia@example.com"),  # our demo data: example.com is not junk by itself
            ("email", "maria@gmail.com"),
            ("email", "info@acme.es"),
            ("phone", "+34612345678"),
            ("phone", "+442079460958"),
            ("given_name", "Ana"),
            ("given_name", "Li"),
            ("family_name", "Ng"),
            ("national_id", "12345678Z"),
            ("postcode", "28001"),
            ("postcode", "SW1A1AA"),
            ("birth_date", "1970-01-01"),
        ],
    )
    def test_real_values_are_not(self, field: str, value: str) -> None:
        assert not is_placeholder(field, value)

    def test_unknown_field_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="no placeholder rules"):
            is_placeholder("shoe_size", "42")


class TestNicknames:
    @pytest.mark.parametrize(
        ("given", "canonical"),
        [
            ("bob", "robert"),
            ("robbie", "robert"),
            ("bill", "william"),
            ("liam", "william"),
            ("kate", "catherine"),
            ("kathryn", "catherine"),
            ("pepe", "jose"),
            ("paco", "francisco"),
            ("lola", "dolores"),
            ("nacho", "ignacio"),
            ("chema", "jose maria"),
            ("hans", "johannes"),
            ("bob james", "robert james"),
            ("robert", "robert"),
            ("alex", "alex"),  # ambiguous: Alexander or Alexandra
        ],
    )
    def test_canonical(self, given: str, canonical: str) -> None:
        assert nickname_canonical(given) == canonical

    def test_applies_after_normalise_name(self) -> None:
        assert nickname_canonical(normalise_name("  PEPE ")) == nickname_canonical(normalise_name("José"))


class TestMatchRecordFromRaw:
    def test_normalises_and_drops_junk(self) -> None:
        record = MatchRecord.from_raw(
            "r1",
            given_name=" Ana ",
            family_name="n/a",
            email="test@test.com",
            phone="612 345 678",
            birth_date="1985-03-07",
            postcode="28 001",
            city="Madrid",
            street="C/ Mayor 5",
            national_id="000000000",
            gender="Mujer",
            default_region="ES",
        )
        assert record == MatchRecord(
            id="r1",
            given_name="ana",
            phone="+34612345678",
            birth_date=dt.date(1985, 3, 7),
            postcode="28001",
            city="madrid",
            street="calle mayor 5",
            gender="f",
        )

    def test_invalid_values_become_none(self) -> None:
        record = MatchRecord.from_raw(
            "r2",
            email="not-an-email",
            phone="call me",
            birth_date="31/02/1990",
            gender="?",
            today=dt.date(2026, 1, 1),
        )
        assert (record.email, record.phone, record.birth_date, record.gender) == (None, None, None, None)

    def test_impossible_birth_dates_become_none(self) -> None:
        today = dt.date(2026, 1, 1)
        assert MatchRecord.from_raw("a", birth_date="2030-01-01", today=today).birth_date is None
        assert MatchRecord.from_raw("b", birth_date="1900-01-01", today=today).birth_date is None
        assert MatchRecord.from_raw("c", birth_date=dt.date(1990, 5, 1), today=today).birth_date == dt.date(
            1990, 5, 1
        )
