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

from collections.abc import Callable

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


def _similar(x: str, y: str) -> float:
    return float(JaroWinkler.similarity(x, y))


# ------------------------------------------------------------------------------------------ names


def _one_edit(x: str, y: str) -> bool:
    """One typo apart (a letter wrong, missing, extra, or two neighbours swapped), for words of
    four letters or more; shorter names are too easily one edit from another real name."""
    if min(len(x), len(y)) < 4:
        return False
    return Levenshtein.distance(x, y, score_cutoff=1) <= 1 or _one_transposition(x, y)


def _name_similarity(x: str, y: str) -> str:
    """`close` (Jaro-Winkler ≥ 0.92 or one typo), `similar` (Jaro-Winkler ≥ 0.80) or `else`."""
    similarity = _similar(x, y)
    if similarity >= 0.92 or _one_edit(x, y):
        return "close"
    return "similar" if similarity >= 0.80 else ELSE


def _same_name(x: str, y: str) -> bool:
    return x == y or nickname_canonical(x) == nickname_canonical(y) or _name_similarity(x, y) == "close"


def names_swapped(a: MatchRecord, b: MatchRecord) -> bool:
    """Whether one record has the other's given name as family name and vice versa."""
    ga, fa, gb, fb = a.given_name, a.family_name, b.given_name, b.family_name
    if ga is None or fa is None or gb is None or fb is None:
        return False
    if ga == gb and fa == fb:
        return False
    return _same_name(ga, fb) and _same_name(fa, gb)


def given_name_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact (same after nicknames) / swapped / close (Jaro-Winkler ≥ 0.92 or one typo) /
    similar (Jaro-Winkler ≥ 0.80, or an initial) / else."""
    ga, gb = a.given_name, b.given_name
    if ga is None or gb is None:
        return None
    ca, cb = nickname_canonical(ga), nickname_canonical(gb)
    if ca == cb:
        return "exact"
    if names_swapped(a, b):
        return "swapped"
    level = _name_similarity(ga, gb)
    if level != "close" and (ca != ga or cb != gb):
        level = min(level, _name_similarity(ca, cb), key=_NAME_ORDER.index)
    if level == ELSE and min(len(ga), len(gb)) == 1 and ga[0] == gb[0]:
        return "similar"
    return level


_NAME_ORDER = ("close", "similar", ELSE)


def family_name_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact / close (Jaro-Winkler ≥ 0.92 or one typo) / token (shares a surname: `garcia lopez`
    and `garcia`) / similar (Jaro-Winkler ≥ 0.80) / else; None when the names are swapped (the
    given-name comparison counts that)."""
    fa, fb = a.family_name, b.family_name
    if fa is None or fb is None:
        return None
    if fa == fb:
        return "exact"
    if names_swapped(a, b):
        return None
    level = _name_similarity(fa, fb)
    if level == "close":
        return level
    if " " in fa or " " in fb:
        shared = set(fa.split()) & set(fb.split())
        if any(len(word) > 3 for word in shared):
            return "token"
    return level


def _organisation_words(name: str) -> str:
    return " ".join(w for w in name.split() if w not in LEGAL_FORMS) or name


def organisation_name_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact (legal forms aside) / ts90 / ts75 (token-set ratio) / else."""
    oa, ob = a.organisation_name, b.organisation_name
    if oa is None or ob is None:
        return None
    wa, wb = _organisation_words(oa), _organisation_words(ob)
    if wa == wb:
        return "exact"
    ratio = fuzz.token_set_ratio(wa, wb)
    if ratio >= 90:
        return "ts90"
    if ratio >= 75:
        return "ts75"
    return ELSE


# ------------------------------------------------------------------------------- contact points


def _letters(text: str) -> str:
    return "".join(c for c in text if c.isalpha())


def _name_derived(local: str, a: MatchRecord, b: MatchRecord) -> bool:
    """Whether an e-mail local part is built from a name on either record (`maria.garcia`)."""
    letters = _letters(local)
    for record in (a, b):
        for name in (record.family_name, record.given_name):
            if name:
                word = _letters(name)
                if len(word) >= 3 and word in letters:
                    return True
    return False


def email_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact / local (same local part, other domain) / jw90 (local parts alike) / else.

    `local` and `jw90` are reported as None when the local parts are built from the names (as
    `maria.garcia@…` is): two Marías García at different providers are no more alike than their
    names, which their own comparisons already count. A same mailbox stays `exact` regardless.
    """
    ea, eb = a.email, b.email
    if ea is None or eb is None:
        return None
    if ea == eb:
        return "exact"
    la = ea.rpartition("@")[0]
    lb = eb.rpartition("@")[0]
    if la == lb:
        return None if _name_derived(la, a, b) else "local"
    if _similar(la, lb) >= 0.90:
        if not (_name_derived(la, a, b) and _name_derived(lb, a, b)):
            return "jw90"
        # Name-built on both sides: only a slip of the keyboard in one mailbox still counts.
        same_box = ea.rpartition("@")[2] == eb.rpartition("@")[2] and _digits(la) == _digits(lb)
        letters_a, letters_b = _letters(la), _letters(lb)
        return "jw90" if same_box and letters_a != letters_b and _one_edit(letters_a, letters_b) else None
    return ELSE


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def phone_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact / last8 (same last 8 digits: a country code guessed differently) / typo (one digit
    wrong, missing or extra) / else."""
    pa, pb = a.phone, b.phone
    if pa is None or pb is None:
        return None
    if pa == pb:
        return "exact"
    if len(pa) >= 8 and len(pb) >= 8 and pa[-8:] == pb[-8:]:
        return "last8"
    if Levenshtein.distance(pa, pb, score_cutoff=1) <= 1:
        return "typo"
    return ELSE


def national_id_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact / typo (one character wrong, missing, extra, or two swapped) / else."""
    na, nb = a.national_id, b.national_id
    if na is None or nb is None:
        return None
    if na == nb:
        return "exact"
    if Levenshtein.distance(na, nb, score_cutoff=1) <= 1 or _one_transposition(na, nb):
        return "typo"
    return ELSE


def _one_transposition(x: str, y: str) -> bool:
    if len(x) != len(y) or sorted(x) != sorted(y):
        return False
    diff = [i for i, (p, q) in enumerate(zip(x, y, strict=True)) if p != q]
    return len(diff) == 2 and diff[1] == diff[0] + 1


# -------------------------------------------------------------------------------- dates, gender


def birth_date_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact / transposed (day and month swapped) / close (same year and month, at most 31 days
    apart, or one digit different) / else."""
    da, db = a.birth_date, b.birth_date
    if da is None or db is None:
        return None
    if da == db:
        return "exact"
    if da.year == db.year and da.day == db.month and da.month == db.day:
        return "transposed"
    if (da.year == db.year and da.month == db.month) or abs((da - db).days) <= 31:
        return "close"
    if Hamming.distance(da.strftime("%Y%m%d"), db.strftime("%Y%m%d"), score_cutoff=1) <= 1:
        return "close"
    return ELSE


def gender_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """same / else."""
    if a.gender is None or b.gender is None:
        return None
    return "same" if a.gender == b.gender else ELSE


# -------------------------------------------------------------------------------------- address


def postcode_prefix(code: str) -> str:
    """The area part of a postcode: a UK outward code (all but the last 3 characters of 5–7
    character alphanumeric codes), otherwise the first 3 characters."""
    if 5 <= len(code) <= 7 and code[-3].isdigit() and code[-2:].isalpha() and code[0].isalpha():
        return code[:-3]
    return code[:3]


def _postcode_outcome(pa: str, pb: str) -> str:
    if pa == pb:
        return "exact"
    if postcode_prefix(pa) == postcode_prefix(pb):
        return "prefix"
    return ELSE


def _street_similarity(sa: str, sb: str) -> tuple[float, bool]:
    """Token-set ratio of the street words, and whether the house numbers agree (the first number
    on each side is the same, or one side has none)."""
    words_a = [w for w in sa.split() if not w[0].isdigit()]
    words_b = [w for w in sb.split() if not w[0].isdigit()]
    numbers_a = [w for w in sa.split() if w[0].isdigit()]
    numbers_b = [w for w in sb.split() if w[0].isdigit()]
    numbers_agree = not numbers_a or not numbers_b or numbers_a[0] == numbers_b[0]
    if not words_a or not words_b:
        return (100.0 if sa == sb else 0.0), numbers_agree
    return float(fuzz.token_set_ratio(" ".join(words_a), " ".join(words_b))), numbers_agree


def postcode_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """exact / prefix (same outward code, or first 3 characters) / else."""
    if a.postcode is None or b.postcode is None:
        return None
    return _postcode_outcome(a.postcode, b.postcode)


def city_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """jw90 / else."""
    if a.city is None or b.city is None:
        return None
    return "jw90" if a.city == b.city or _similar(a.city, b.city) >= 0.90 else ELSE


def street_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """ts90 (token-set ratio ≥ 90 and the same house number) / ts70 / else."""
    if a.street is None or b.street is None:
        return None
    ratio, numbers_agree = _street_similarity(a.street, b.street)
    if ratio >= 90 and numbers_agree:
        return "ts90"
    if ratio >= 70:
        return "ts70"
    return ELSE


def address_level(a: MatchRecord, b: MatchRecord) -> str | None:
    """Postcode, street and city graded together as one fact:

    * exact — same street and house number, in the same postcode (or, without postcodes, city);
    * postcode — same postcode, another street or house number (or a street missing);
    * street — same street and number, but postcode or city differ (a typo, or a namesake street);
    * area — same postcode area (outward code / first 3 characters) or the same city;
    * else — nothing in common; None when the two records share no address part to compare.
    """
    postcode = None if a.postcode is None or b.postcode is None else _postcode_outcome(a.postcode, b.postcode)
    same_city = None
    if a.city is not None and b.city is not None:
        same_city = a.city == b.city or _similar(a.city, b.city) >= 0.90
    same_street = None
    if a.street is not None and b.street is not None:
        ratio, numbers_agree = _street_similarity(a.street, b.street)
        same_street = ratio >= 90 and numbers_agree
    if postcode is None and same_city is None and same_street is None:
        return None
    locality = postcode == "exact" if postcode is not None else same_city
    if same_street and locality:
        return "exact"
    if postcode == "exact":
        return "postcode"
    if same_street:
        return "street"
    if postcode == "prefix" or same_city:
        return "area"
    return ELSE


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
