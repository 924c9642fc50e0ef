"""Comparison levels: how well two records agree on one field, as one of a few named outcomes.

Each function takes two records and returns the name of the first level whose condition holds,
from the most to the least convincing agreement, ending with `else` (the values disagree); or None
when either side is missing, a "null" outcome that carries no evidence either way. The levels of
each comparison are listed in `LEVELS`, in that order, and `LEVEL_FUNCTIONS` maps a comparison to
its function.

Fields that are not independent of each other are compared together, because Fellegi–Sunter adds
their weights as if they were independent:

* Swapped given/family names are one piece of evidence, so the given-name comparison reports
  `swapped` and the family-name comparison then stays silent (None) instead of counting it twice.
* Postcode, street and city describe one fact, where someone lives. Moving changes all three and
  a household shares all three, so counting them separately would count a move three times against
  a true duplicate and a shared home three times for two neighbours. The `address` comparison
  grades them together; `postcode_level`, `street_level` and `city_level` remain available for a
  model that prefers them apart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import lru_cache
from typing import cast

from rapidfuzz import fuzz
from rapidfuzz.distance import Hamming, JaroWinkler, Levenshtein

from services.identity.matching.normalise import nickname_canonical
from services.identity.matching.record import MatchRecord

LevelFunction = Callable[[MatchRecord, MatchRecord], str | None]

ELSE = "else"

# Legal forms dropped before comparing organisation names ("Acme Ltd" is "Acme").
LEGAL_FORMS = frozenset(
    {
        "ltd", "limited", "plc", "llc", "llp", "inc", "incorporated", "corp", "corporation", "co",
        "company", "gmbh", "ag", "kg", "ohg", "ug", "ev", "sa", "sl", "slu", "sau", "sas", "sarl",
        "scp", "sc", "cb", "bv", "nv", "srl", "spa", "the", "y", "and", "und", "et", "cia",
    }
)  # fmt: skip


def _similar(x: str, y: str, cutoff: float | None = None) -> float:
    """Jaro-Winkler similarity; with `cutoff`, 0 for any below it (found out sooner)."""
    return float(JaroWinkler.similarity(x, y, score_cutoff=cutoff))


# ----------------------------------------------------------------------------- per-record values
#
# Scoring compares one record with dozens of candidates, and the same record object is scored
# again and again during bulk resolution. What a comparison derives from ONE record (canonical
# nickname, e-mail local part, street words, postcode area, …) is therefore computed once per
# record object and kept in a bounded side table keyed by the object's id (the entry holds the
# record itself, so an id cannot be reused while its entry exists). `MatchRecord` is immutable,
# so an entry never goes stale.

_canonical = lru_cache(maxsize=65536)(nickname_canonical)


class _Profile:
    """Values derived from one record for the comparisons (see above)."""

    __slots__ = (
        "_shown",
        "birth_date",
        "birth_digits",
        "birth_ordinal",
        "city",
        "domain",
        "email",
        "family",
        "family_canon",
        "family_words",
        "gender",
        "given",
        "given_canon",
        "local",
        "local_digits",
        "local_letters",
        "name_letters",
        "national_id",
        "org_words",
        "phone",
        "postcode",
        "postcode_prefix",
        "street",
        "street_number",
        "street_words",
    )  # fmt: skip

    def __init__(self, r: MatchRecord) -> None:
        self.given = r.given_name
        self.family = r.family_name
        self.given_canon = None if r.given_name is None else _canonical(r.given_name)
        self.family_canon = None if r.family_name is None else _canonical(r.family_name)
        self.family_words = None if r.family_name is None else frozenset(r.family_name.split())
        letters: list[str] = []
        for name in (r.family_name, r.given_name):
            if name:
                word = _letters(name)
                if len(word) >= 3:
                    letters.append(word)
        self.name_letters = tuple(letters)
        self.org_words = None if r.organisation_name is None else _organisation_words(r.organisation_name)
        self.email = r.email
        if r.email is not None:
            local, _, domain = r.email.rpartition("@")
            self.local, self.domain = local, domain
            self.local_letters, self.local_digits = _letters(local), _digits(local)
        else:
            self.local = self.domain = self.local_letters = self.local_digits = ""
        self.phone = r.phone
        self.national_id = r.national_id
        self.birth_date = r.birth_date
        if r.birth_date is not None:
            self.birth_ordinal = r.birth_date.toordinal()
            self.birth_digits = _date_digits(r.birth_date)
        else:
            self.birth_ordinal, self.birth_digits = 0, ""
        self.postcode: str | None = r.postcode
        self.postcode_prefix = None if r.postcode is None else postcode_prefix(r.postcode)
        self.city: str | None = r.city
        self.street: str | None = r.street
        if r.street is not None:
            words = r.street.split()
            self.street_words = " ".join(w for w in words if not w[0].isdigit())
            numbers = [w for w in words if w[0].isdigit()]
            self.street_number = numbers[0] if numbers else None
        else:
            self.street_words, self.street_number = "", None
        self.gender: str | None = r.gender
        self._shown: dict[str, str | None] | None = None

    def shown(self, record: MatchRecord) -> dict[str, str | None]:
        """The values of `record` (the one this profile was made of) as evidence shows them, per
        comparison: made when it is first scored in full (most pairs are dropped by `ScoreFloor`
        before). The record is passed, not kept: the record keeps its profile, and a reference back
        would make every record a cycle that only the cyclic collector frees."""
        shown = self._shown
        if shown is None:
            shown = self._shown = {key: shown_values(key, record) for key in LEVELS}
        return shown


def _profile(record: MatchRecord) -> _Profile:
    """The record's derived values, computed once and kept on the record itself: they live exactly
    as long as it does (a process-wide cache kept every record ever scored alive, and the growing
    long-lived heap made Python's full garbage collections take hundreds of milliseconds)."""
    profile = record.derived
    if profile is None:
        profile = _Profile(record)
        object.__setattr__(record, "derived", profile)  # a cache, not a value: frozen otherwise
    return cast(_Profile, profile)


# ------------------------------------------------------------------------------------------ names


def _one_edit(x: str, y: str) -> bool:
    """One typo apart (a letter wrong, missing, extra, or two neighbours swapped), for words of
    four letters or more; shorter names are too easily one edit from another real name."""
    if min(len(x), len(y)) < 4:
        return False
    return Levenshtein.distance(x, y, score_cutoff=1) <= 1 or _one_transposition(x, y)


@lru_cache(maxsize=16384)
def _name_similarity(x: str, y: str) -> str:
    """`close` (Jaro-Winkler ≥ 0.92 or one typo), `similar` (Jaro-Winkler ≥ 0.80) or `else`."""
    similarity = _similar(x, y)
    if similarity >= 0.92 or _one_edit(x, y):
        return "close"
    return "similar" if similarity >= 0.80 else ELSE


def _swapped(pa: _Profile, pb: _Profile) -> bool:
    ga, fa, gb, fb = pa.given, pa.family, pb.given, pb.family
    if ga is None or fa is None or gb is None or fb is None:
        return False
    if ga == gb and fa == fb:
        return False
    return (ga == fb or pa.given_canon == pb.family_canon or _name_similarity(ga, fb) == "close") and (
        fa == gb or pa.family_canon == pb.given_canon or _name_similarity(fa, gb) == "close"
    )


def names_swapped(a: MatchRecord, b: MatchRecord) -> bool:
    """Whether one record has the other's given name as family name and vice versa."""
    return _swapped(_profile(a), _profile(b))


def _given_name(pa: _Profile, pb: _Profile) -> str | None:
    ga, gb = pa.given, pb.given
    if ga is None or gb is None:
        return None
    ca, cb = pa.given_canon, pb.given_canon
    if ca == cb:
        return "exact"
    if _swapped(pa, pb):
        return "swapped"
    level = _name_similarity(ga, gb)
    if level != "close" and (ca != ga or cb != gb):
        assert ca is not None
        assert cb is not None
        level = min(level, _name_similarity(ca, cb), key=_NAME_ORDER.index)
    if level == ELSE and min(len(ga), len(gb)) == 1 and ga[0] == gb[0]:
        return "similar"
    return level


def given_name_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact (same after nicknames) / swapped / close (Jaro-Winkler ≥ 0.92 or one typo) /
    similar (Jaro-Winkler ≥ 0.80, or an initial) / else."""
    return _given_name(_profile(a), _profile(b))


_NAME_ORDER = ("close", "similar", ELSE)


def _family_name(pa: _Profile, pb: _Profile) -> str | None:
    fa, fb = pa.family, pb.family
    if fa is None or fb is None:
        return None
    if fa == fb:
        return "exact"
    if _swapped(pa, pb):
        return None
    level = _name_similarity(fa, fb)
    if level == "close":
        return level
    if " " in fa or " " in fb:
        assert pa.family_words is not None
        assert pb.family_words is not None
        shared = pa.family_words & pb.family_words
        if any(len(word) > 3 for word in shared):
            return "token"
    return level


def family_name_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact / close (Jaro-Winkler ≥ 0.92 or one typo) / token (shares a surname: `garcia lopez`
    and `garcia`) / similar (Jaro-Winkler ≥ 0.80) / else; None when the names are swapped (the
    given-name comparison counts that)."""
    return _family_name(_profile(a), _profile(b))


def _organisation_words(name: str) -> str:
    return " ".join(w for w in name.split() if w not in LEGAL_FORMS) or name


def _organisation_name(pa: _Profile, pb: _Profile) -> str | None:
    wa, wb = pa.org_words, pb.org_words
    if wa is None or wb is None:
        return None
    if wa == wb:
        return "exact"
    ratio = fuzz.token_set_ratio(wa, wb)
    if ratio >= 90:
        return "ts90"
    if ratio >= 75:
        return "ts75"
    return ELSE


def organisation_name_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact (legal forms aside) / ts90 / ts75 (token-set ratio) / else."""
    return _organisation_name(_profile(a), _profile(b))


# ------------------------------------------------------------------------------- contact points


def _letters(text: str) -> str:
    return "".join(c for c in text if c.isalpha())


def _name_derived(letters: str, pa: _Profile, pb: _Profile) -> bool:
    """Whether an e-mail local part (its `letters`) is built from a name on either record
    (`maria.garcia`): a name of three letters or more found in it."""
    for word in pa.name_letters:
        if word in letters:
            return True
    return any(word in letters for word in pb.name_letters)


def _email(pa: _Profile, pb: _Profile) -> str | None:
    ea, eb = pa.email, pb.email
    if ea is None or eb is None:
        return None
    if ea == eb:
        return "exact"
    la, lb = pa.local, pb.local
    if la == lb:
        return None if _name_derived(pa.local_letters, pa, pb) else "local"
    if _similar(la, lb, 0.90) >= 0.90:
        if not (_name_derived(pa.local_letters, pa, pb) and _name_derived(pb.local_letters, pa, pb)):
            return "jw90"
        # Name-built on both sides: only a slip of the keyboard in one mailbox still counts.
        same_box = pa.domain == pb.domain and pa.local_digits == pb.local_digits
        letters_a, letters_b = pa.local_letters, pb.local_letters
        return "jw90" if same_box and letters_a != letters_b and _one_edit(letters_a, letters_b) else None
    return ELSE


def email_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact / local (same local part, other domain) / jw90 (local parts alike) / else.

    `local` and `jw90` are reported as None when the local parts are built from the names (as
    `maria.garcia@…` is): two Marías García at different providers are no more alike than their
    names, which their own comparisons already count. A same mailbox stays `exact` regardless.
    """
    return _email(_profile(a), _profile(b))


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _phone(pa: _Profile, pb: _Profile) -> str | None:
    pha, phb = pa.phone, pb.phone
    if pha is None or phb is None:
        return None
    if pha == phb:
        return "exact"
    if len(pha) >= 8 and len(phb) >= 8 and pha[-8:] == phb[-8:]:
        return "last8"
    if Levenshtein.distance(pha, phb, score_cutoff=1) <= 1:
        return "typo"
    return ELSE


def phone_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact / last8 (same last 8 digits: a country code guessed differently) / typo (one digit
    wrong, missing or extra) / else."""
    return _phone(_profile(a), _profile(b))


def _national_id(pa: _Profile, pb: _Profile) -> str | None:
    na, nb = pa.national_id, pb.national_id
    if na is None or nb is None:
        return None
    if na == nb:
        return "exact"
    if Levenshtein.distance(na, nb, score_cutoff=1) <= 1 or _one_transposition(na, nb):
        return "typo"
    return ELSE


def national_id_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact / typo (one character wrong, missing, extra, or two swapped) / else."""
    return _national_id(_profile(a), _profile(b))


def _one_transposition(x: str, y: str) -> bool:
    if len(x) != len(y) or sorted(x) != sorted(y):
        return False
    diff = [i for i, (p, q) in enumerate(zip(x, y, strict=True)) if p != q]
    return len(diff) == 2 and diff[1] == diff[0] + 1


# -------------------------------------------------------------------------------- dates, gender


@lru_cache(maxsize=65536)
def _date_digits(date: dt.date) -> str:
    return date.strftime("%Y%m%d")


def _birth_date(pa: _Profile, pb: _Profile) -> str | None:
    da, db = pa.birth_date, pb.birth_date
    if da is None or db is None:
        return None
    if da == db:
        return "exact"
    if da.year == db.year and da.day == db.month and da.month == db.day:
        return "transposed"
    if (da.year == db.year and da.month == db.month) or abs(pa.birth_ordinal - pb.birth_ordinal) <= 31:
        return "close"
    if Hamming.distance(pa.birth_digits, pb.birth_digits, score_cutoff=1) <= 1:
        return "close"
    return ELSE


def birth_date_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact / transposed (day and month swapped) / close (same year and month, at most 31 days
    apart, or one digit different) / else."""
    return _birth_date(_profile(a), _profile(b))


def _gender(pa: _Profile, pb: _Profile) -> str | None:
    if pa.gender is None or pb.gender is None:
        return None
    return "same" if pa.gender == pb.gender else ELSE


def gender_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """same / else."""
    return _gender(_profile(a), _profile(b))


# -------------------------------------------------------------------------------------- address


def postcode_prefix(code: str) -> str:
    """The area part of a postcode: a UK outward code (all but the last 3 characters of 5–7
    character alphanumeric codes), otherwise the first 3 characters."""
    if 5 <= len(code) <= 7 and code[-3].isdigit() and code[-2:].isalpha() and code[0].isalpha():
        return code[:-3]
    return code[:3]


def _postcode_outcome(pa: _Profile, pb: _Profile) -> str:
    if pa.postcode == pb.postcode:
        return "exact"
    if pa.postcode_prefix == pb.postcode_prefix:
        return "prefix"
    return ELSE


def _street_similarity(pa: _Profile, pb: _Profile) -> tuple[float, bool]:
    """Token-set ratio of the street words, and whether the house numbers agree (the first number
    on each side is the same, or one side has none)."""
    na, nb = pa.street_number, pb.street_number
    numbers_agree = na is None or nb is None or na == nb
    words_a, words_b = pa.street_words, pb.street_words
    if not words_a or not words_b:
        return (100.0 if pa.street == pb.street else 0.0), numbers_agree
    if words_a == words_b:  # what token_set_ratio gives for the same (non-empty) words
        return 100.0, numbers_agree
    return float(fuzz.token_set_ratio(words_a, words_b)), numbers_agree


def _postcode(pa: _Profile, pb: _Profile) -> str | None:
    if pa.postcode is None or pb.postcode is None:
        return None
    return _postcode_outcome(pa, pb)


def postcode_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact / prefix (same outward code, or first 3 characters) / else."""
    return _postcode(_profile(a), _profile(b))


def _city(pa: _Profile, pb: _Profile) -> str | None:
    if pa.city is None or pb.city is None:
        return None
    return "jw90" if pa.city == pb.city or _similar(pa.city, pb.city) >= 0.90 else ELSE


def city_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """jw90 / else."""
    return _city(_profile(a), _profile(b))


def _street(pa: _Profile, pb: _Profile) -> str | None:
    if pa.street is None or pb.street is None:
        return None
    ratio, numbers_agree = _street_similarity(pa, pb)
    if ratio >= 90 and numbers_agree:
        return "ts90"
    if ratio >= 70:
        return "ts70"
    return ELSE


def street_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """ts90 (token-set ratio ≥ 90 and the same house number) / ts70 / else."""
    return _street(_profile(a), _profile(b))


def _same_city(pa: _Profile, pb: _Profile) -> bool:
    return (
        pa.city is not None
        and pb.city is not None
        and (pa.city == pb.city or _similar(pa.city, pb.city, 0.90) >= 0.90)
    )


def _same_street(pa: _Profile, pb: _Profile) -> bool:
    """Same house number (or one side without) and street words at least 90 alike."""
    if pa.street is None or pb.street is None:
        return False
    na, nb = pa.street_number, pb.street_number
    if na is not None and nb is not None and na != nb:  # (known before comparing the words)
        return False
    return _street_similarity(pa, pb)[0] >= 90


def _address(pa: _Profile, pb: _Profile) -> str | None:
    # Each part is compared only where the outcome depends on it (city similarity seldom does).
    if pa.postcode is not None and pb.postcode is not None:
        postcode = _postcode_outcome(pa, pb)
        same_street = _same_street(pa, pb)
        if postcode == "exact":
            return "exact" if same_street else "postcode"
        if same_street:
            return "street"
        return "area" if postcode == "prefix" or _same_city(pa, pb) else ELSE
    has_city = pa.city is not None and pb.city is not None
    if not has_city and (pa.street is None or pb.street is None):
        return None  # no address part on both sides
    # Without postcodes the city is the locality.
    same_street, same_city = _same_street(pa, pb), _same_city(pa, pb)
    if same_street:
        return "exact" if same_city else "street"
    return "area" if same_city else ELSE


def address_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """Postcode, street and city graded together as one fact:

    * exact — same street and house number, in the same postcode (or, without postcodes, city);
    * postcode — same postcode, another street or house number (or a street missing);
    * street — same street and number, but postcode or city differ (a typo, or a namesake street);
    * area — same postcode area (outward code / first 3 characters) or the same city;
    * else — nothing in common; None when the two records share no address part to compare.
    """
    return _address(_profile(a), _profile(b))


# ------------------------------------------------------------------------------------- registry

LEVELS: dict[str, tuple[str, ...]] = {
    "given_name": ("exact", "swapped", "close", "similar", ELSE),
    "family_name": ("exact", "close", "token", "similar", ELSE),
    "organisation_name": ("exact", "ts90", "ts75", ELSE),
    "email": ("exact", "local", "jw90", ELSE),
    "phone": ("exact", "last8", "typo", ELSE),
    "birth_date": ("exact", "transposed", "close", ELSE),
    "address": ("exact", "postcode", "street", "area", ELSE),
    "postcode": ("exact", "prefix", ELSE),
    "city": ("jw90", ELSE),
    "street": ("ts90", "ts70", ELSE),
    "national_id": ("exact", "typo", ELSE),
    "gender": ("same", ELSE),
}

# The same comparisons on per-record values (`_profile`), for `score`.
_PROFILE_FUNCTIONS: dict[str, Callable[[_Profile, _Profile], str | None]] = {
    "given_name": _given_name,
    "family_name": _family_name,
    "organisation_name": _organisation_name,
    "email": _email,
    "phone": _phone,
    "birth_date": _birth_date,
    "address": _address,
    "postcode": _postcode,
    "city": _city,
    "street": _street,
    "national_id": _national_id,
    "gender": _gender,
}

# Per comparison: whether a record has what it compares. Without it, its level is None (null)
# whatever the other record holds: a bound on a pair's score leaves such a comparison out.
PRESENT: dict[str, Callable[[_Profile], bool]] = {
    "given_name": lambda p: p.given is not None,
    "family_name": lambda p: p.family is not None,
    "organisation_name": lambda p: p.org_words is not None,
    "email": lambda p: p.email is not None,
    "phone": lambda p: p.phone is not None,
    "birth_date": lambda p: p.birth_date is not None,
    "address": lambda p: p.postcode is not None or p.city is not None or p.street is not None,
    "postcode": lambda p: p.postcode is not None,
    "city": lambda p: p.city is not None,
    "street": lambda p: p.street is not None,
    "national_id": lambda p: p.national_id is not None,
    "gender": lambda p: p.gender is not None,
}

LEVEL_FUNCTIONS: dict[str, LevelFunction] = {
    "given_name": given_name_level,
    "family_name": family_name_level,
    "organisation_name": organisation_name_level,
    "email": email_level,
    "phone": phone_level,
    "birth_date": birth_date_level,
    "address": address_level,
    "postcode": postcode_level,
    "city": city_level,
    "street": street_level,
    "national_id": national_id_level,
    "gender": gender_level,
}


# Comparisons whose exact agreement is weighed by how common the value is (term frequency).
TERM_FIELDS = ("given_name", "family_name")


def term_value(field: str, record: MatchRecord) -> str | None:
    """The value whose frequency weighs an exact agreement on `field` (nicknames resolved)."""
    if field == "given_name":
        return None if record.given_name is None else nickname_canonical(record.given_name)
    if field == "family_name":
        return record.family_name
    return None


def shown_values(field: str, record: MatchRecord) -> str | None:
    """The record's value(s) behind a comparison, as text for explanations."""
    if field == "address":
        parts = [p for p in (record.street, record.postcode, record.city) if p]
        return ", ".join(parts) if parts else None
    value = getattr(record, field, None)
    return None if value is None else str(value)
