"""Blocking: which records are worth scoring against each other at all.

Scoring every pair of a register is quadratic, so each record gets a few keys and only records
sharing at least one key become candidates. A duplicate is found as long as ONE key survives its
errors, so the keys are chosen to fail independently of each other:

* `e:<email>` — the same mailbox: survives any change of name or address.
* `p:<last 8 digits>` — the same phone, even with a country code guessed differently.
* `n:<national id>` — the same national id.
* `nd:<phonetic>:<birth date>` — one name (given or family) and the birth date: survives a typo
  or nickname in the other name, swapped names, a married name, a move.
* `gf:<given prefix>:<phonetic family>` (both orientations) — the first three letters of the
  canonical given name and the family name's sound: survives a move with a new e-mail and phone,
  a missing birth date, and nicknames outside the table that start alike (`dani`/`daniel`).
* `pn:<postcode>:<phonetic>` — postcode and one name: survives typos or a swap in the other
  name, a new e-mail, a missing birth date.
* `dp:<birth date>:<postcode>` — survives both names mangled.
* `o:<phonetic organisation>` — the organisation's name sound, legal forms dropped.

Names key on Metaphone codes (typos that keep the sound, `smith`/`smyth`) of the canonical given
name (nicknames resolved, so `bob`/`robert` share keys) and of each significant family-name word
(particles such as `de`, `van` skipped; `garcia lopez` keys on both words, so a dropped second
surname still matches). Name keys do not say which name they came from: a record whose given and
family names were swapped gets exactly the same `nd` and `pn` keys, and `gf` is emitted both ways.
Every key also includes a second, rarer value (birth date, postcode, another name) so that blocks
stay small: a key on a surname alone would make every García a candidate of every other.
Keys are at most 120 characters (longer ones are hashed).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import jellyfish

from services.identity.matching.comparisons import LEGAL_FORMS, _canonical
from services.identity.matching.record import MatchRecord

MAX_KEY_LENGTH = 120
PARTICLES = frozenset(
    {"de", "del", "la", "las", "los", "da", "das", "do", "dos", "di", "du", "van", "von", "der", "den",
     "le", "el", "y", "e", "i"}
)  # fmt: skip


def phonetic(word: str) -> str:
    """Metaphone code of one word (the word itself when Metaphone gives nothing, e.g. digits)."""
    return jellyfish.metaphone(word) or word


_phonetic = lru_cache(maxsize=65536)(phonetic)


def _key(*parts: str) -> str:
    key = ":".join(parts)
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    return f"{parts[0]}#{digest}"


def _family_words(family: str) -> list[str]:
    """The first two significant words of a family name (particles skipped)."""
    words = [w for w in family.split() if w not in PARTICLES] or family.split()
    return words[:2]


def _given_word(given: str) -> str:
    return _canonical(given).split()[0]


def blocking_keys(r: MatchRecord) -> set[str]:
    """The keys of `r`; records sharing any key are candidates to score (see module doc)."""
    keys: set[str] = set()
    if r.email:
        keys.add(_key("e", r.email))
    if r.phone and len(r.phone) >= 8:
        keys.add(_key("p", r.phone[-8:]))
    if r.national_id:
        keys.add(_key("n", r.national_id))

    given = _given_word(r.given_name) if r.given_name else None
    family_words = _family_words(r.family_name) if r.family_name else []
    family_codes = [_phonetic(w) for w in family_words]
    given_code = _phonetic(given) if given else None
    name_codes = set(family_codes) | ({given_code} if given_code else set())
    birth = r.birth_date.isoformat() if r.birth_date else None

    for code in name_codes:
        if birth:
            keys.add(_key("nd", code, birth))
        if r.postcode:
            keys.add(_key("pn", r.postcode, code))
    if given and given_code and family_words:
        for code in family_codes:
            keys.add(_key("gf", given[:3], code))
        keys.add(_key("gf", _given_word(family_words[0])[:3], given_code))  # swapped names
    if birth and r.postcode:
        keys.add(_key("dp", birth, r.postcode))
    if r.organisation_name:
        words = [
            w for w in r.organisation_name.split() if w not in LEGAL_FORMS
        ] or r.organisation_name.split()
        keys.add(_key("o", *(_phonetic(w) for w in words[:3])))
    return keys


def candidate_pairs(records: list[MatchRecord], max_block_size: int = 500) -> set[tuple[int, int]]:
    """Index pairs (i < j) of `records` sharing a key; blocks larger than `max_block_size` (a
    shared office e-mail, a default birth date that escaped the placeholder table) are skipped,
    since they would add quadratic work and almost no true matches."""
    blocks: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        for key in blocking_keys(record):
            blocks.setdefault(key, []).append(i)
    pairs: set[tuple[int, int]] = set()
    for members in blocks.values():
        if len(members) < 2 or len(members) > max_block_size:
            continue
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                pairs.add((members[x], members[y]))
    return pairs
