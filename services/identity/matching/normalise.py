"""Normalisation of identifiers before matching: one spelling per value, and junk recognised.

Matching compares values, so every value is first brought to a canonical spelling; two spellings
of the same identifier must normalise to the same string and anything that is not an identifier
must be refused (`InvalidIdentifier`) or recognised as a placeholder (`is_placeholder`) so it never
counts as evidence. All functions are pure.

Decisions worth knowing:

* E-mail: lowercase; for providers that ignore them, dots in the local part (Gmail) and `+tag`
  sub-addresses (Gmail, Outlook/Hotmail/Live, iCloud, Fastmail, Proton) are dropped, because
  `j.doe+shop@gmail.com` and `jdoe@gmail.com` reach the same mailbox. Other domains keep their
  local part as written (apart from case): for them a dot or a `+` may be significant.
* Phone: E.164 through `phonenumbers`. A number without `+` needs a region (the address country
  or the customer's country); `00` is read as the international prefix when no region is known.
* Names: accents stripped (NFKD), case folded, and every separator (hyphen, dot, comma, slash,
  underscore, runs of spaces) becomes one space while apostrophes vanish, so `José-María O'Neil`,
  `jose maria o'neil` and `JOSE MARIA ONEIL` all read `jose maria oneil`. Keeping inner hyphens
  and apostrophes would make `García-López` and `García López` (or `O'Neil` and `ONeil`) differ
  for nothing: people and clerks write them both ways.
* Placeholders: a table per kind of field of values that clerks type when they have nothing
  (`n/a`, `test@test.com`, `000000000`). Our own demo data uses `@example.com` for real-looking
  customers, so a domain alone never makes an e-mail a placeholder; an obvious local part does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from itertools import pairwise

import phonenumbers
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from services.identity.matching.nicknames import NICKNAMES


class InvalidIdentifier(ValueError):
    """A raw value that is not an identifier of its kind (`field`), with the `reason`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# ---------------------------------------------------------------------------------------- e-mail

_EMAIL = re.compile(
    r"^(?P<local>[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59}))$"
)
_DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}
_DOTS_IGNORED = frozenset({"gmail.com"})
_TAGS_IGNORED = frozenset(
    {
        "gmail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "icloud.com",
        "me.com",
        "fastmail.com",
        "protonmail.com",
        "proton.me",
    }
)


def normalise_email(raw: str) -> str:
    """`raw` as one canonical address, or `InvalidIdentifier("email", …)` when it is not one."""
    text = raw.strip().lower()
    if text.startswith("mailto:"):
        text = text[len("mailto:") :]
    text = text.strip("<> ")
    if not text:
        raise InvalidIdentifier("email", "empty")
    if len(text) > 254:
        raise InvalidIdentifier("email", "longer than 254 characters")
    match = _EMAIL.match(text)
    if match is None:
        raise InvalidIdentifier("email", "not an e-mail address")
    local, domain = match["local"], match["domain"]
    if len(local) > 64:
        raise InvalidIdentifier("email", "local part longer than 64 characters")
    domain = _DOMAIN_ALIASES.get(domain, domain)
    if domain in _TAGS_IGNORED:
        local = local.split("+", 1)[0]
    if domain in _DOTS_IGNORED:
        local = local.replace(".", "")
    if not local:
        raise InvalidIdentifier("email", "empty local part")
    return f"{local}@{domain}"


# ----------------------------------------------------------------------------------------- phone

_REGION_ALIASES = {"UK": "GB", "EL": "GR"}


def _region(default_region: str | None) -> str | None:
    """An ISO 3166 region from `GB`, `gb`, `UK`, `en-GB` or `es_ES`; None when there is none."""
    if not default_region:
        return None
    code = re.split(r"[-_]", default_region.strip())[-1].upper()
    code = _REGION_ALIASES.get(code, code)
    return code if len(code) == 2 and code.isalpha() else None


def normalise_phone(raw: str, default_region: str | None = None, *, strict: bool = True) -> str:
    """`raw` in E.164 (`+34612345678`), or `InvalidIdentifier("phone", …)`.

    `default_region` is used for numbers written without `+`. With `strict` (the default) the number
    must be valid (allocated ranges, right length); without, a merely possible number (right length
    for its country) is kept, which is what matching wants: a well-formed number identifies its owner
    even if it lies in a range the metadata does not know yet.
    """
    text = raw.strip()
    if not any(c.isdigit() for c in text):
        raise InvalidIdentifier("phone", "no digits")
    region = _region(default_region)
    if region is None and text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentifier("phone", f"unparseable: {exc}") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentifier("phone", "not a possible number")
    if strict and not phonenumbers.is_valid_number(number):
        raise InvalidIdentifier("phone", "not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# ------------------------------------------------------------------------------------------ names

# Latin letters that NFKD does not decompose into a base letter plus accent.
_LETTERS = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"})
_APOSTROPHES = str.maketrans({c: "" for c in "'’‘`´ʼ"})


def normalise_name(raw: str) -> str:
    """A name folded for comparison: `"  José-María  O'Neil "` → `"jose maria oneil"`."""
    text = unicodedata.normalize("NFKD", raw)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.casefold().translate(_LETTERS).translate(_APOSTROPHES)
    return " ".join("".join(c if c.isalnum() else " " for c in text).split())


def nickname_canonical(given: str) -> str:
    """The canonical form of a (normalised) given name: `bob` → `robert`, `pepe` → `jose`.

    A whole-name entry wins (`chema` → `jose maria`); otherwise each word is looked up on its own
    (`bob james` → `robert james`).
    """
    whole = NICKNAMES.get(given)
    if whole is not None:
        return whole
    words = given.split()
    if len(words) < 2:
        return given
    return " ".join(NICKNAMES.get(w, w) for w in words)


_STREET_WORDS = {
    "c": "calle",
    "cl": "calle",
    "avda": "avenida",
    "avd": "avenida",
    "av": "avenida",
    "pza": "plaza",
    "po": "paseo",
    "ctra": "carretera",
    "rd": "road",
    "ave": "avenue",
    "blvd": "boulevard",
    "ln": "lane",
    "sq": "square",
    "str": "strasse",
    "bd": "boulevard",
}


def normalise_street(raw: str) -> str:
    """A street line as `normalise_name` does it, with common abbreviations spelt out
    (`C/ Mayor, 5` → `calle mayor 5`, `Hauptstr. 3` → `hauptstrasse 3`)."""
    words = []
    for word in normalise_name(raw).split():
        word = _STREET_WORDS.get(word, word)
        if word.endswith("str") and len(word) > 5:
            word += "asse"
        words.append(word)
    return " ".join(words)


_GENDERS = {
    **dict.fromkeys(["f", "female", "woman", "w", "mujer", "femenino", "weiblich", "frau", "femme"], "f"),
    **dict.fromkeys(["m", "male", "man", "h", "hombre", "masculino", "mannlich", "mann", "homme"], "m"),
    **dict.fromkeys(["x", "other", "diverse", "divers", "non binary", "nonbinary", "otro", "autre"], "x"),
}


def normalise_gender(raw: str) -> str:
    """`f`, `m` or `x` from the usual spellings in English, Spanish, German and French."""
    gender = _GENDERS.get(normalise_name(raw))
    if gender is None:
        raise InvalidIdentifier("gender", "not a recognised gender")
    return gender


# ------------------------------------------------------------------------------- codes and numbers


def normalise_postcode(raw: str, country: str | None = None) -> str:
    """Uppercase without spaces or dashes (`sw1a 1aa` → `SW1A1AA`); US ZIP+4 keeps the ZIP."""
    code = "".join(c for c in raw.upper() if c.isalnum())
    if not code:
        raise InvalidIdentifier("postcode", "empty")
    if _region(country) == "US" and len(code) == 9 and code.isdigit():
        code = code[:5]
    return code


def normalise_national_id(raw: str) -> str:
    """Uppercase letters and digits only (`12.345.678-z` → `12345678Z`)."""
    code = "".join(c for c in raw.upper() if c.isalnum())
    if not code:
        raise InvalidIdentifier("national_id", "empty")
    return code


# ----------------------------------------------------------------------------------- placeholders

PLACEHOLDER_EMAIL_LOCAL_PARTS = frozenset(
    {
        "test", "testing", "tester", "none", "noemail", "no-email", "no.email", "no_email", "nomail",
        "no-mail", "noreply", "no-reply", "donotreply", "do-not-reply", "na", "n.a", "unknown",
        "xxx", "xxxx", "asdf", "qwerty", "123", "1234", "12345", "123456", "null", "nil", "dummy",
        "fake", "sample", "example", "nobody", "anonymous", "sinemail", "sincorreo", "nocorreo",
        "keine", "keinemail", "aucun",
    }
)  # fmt: skip
PLACEHOLDER_EMAIL_DOMAINS = frozenset(
    {"test.com", "test.test", "none.com", "noemail.com", "nomail.com", "noreply.com", "no-email.com"}
)
PLACEHOLDER_EMAIL_TLDS = frozenset({"invalid", "test", "localhost", "example"})
PLACEHOLDER_TEXTS = frozenset(
    {
        "", "na", "n a", "none", "null", "nil", "unknown", "test", "testing", "xxx", "xx", "x",
        "asdf", "dummy", "fake", "no name", "noname", "nobody", "anonymous", "anonimo", "desconocido",
        "sin nombre", "unbekannt", "inconnu", "tbd", "tba", "nn", "customer", "cliente", "kunde",
        "client",
    }
)  # fmt: skip
PLACEHOLDER_CODES = frozenset({"", "NA", "NONE", "NULL", "UNKNOWN", "XXX", "TEST", "NIL"})
PLACEHOLDER_BIRTH_DATES = frozenset(
    {"0001-01-01", "1800-01-01", "1899-12-31", "1900-01-01", "1901-01-01", "9999-12-31"}
)
_MIN_PHONE_DIGITS = 7


def _repetitive(text: str) -> bool:
    """One character, or a pair of characters, repeated: `0000000`, `xxx`, `121212`."""
    if not text:
        return False
    n = len(text)
    return text == text[0] * n or (n >= 6 and text == (text[:2] * n)[:n])


def _sequential(digits: str) -> bool:
    """A run of consecutive digits up or down: `123456789`, `0123456`, `987654321`."""
    if len(digits) < 6:
        return False
    step = (int(digits[1]) - int(digits[0])) % 10
    # Most values differ at the first step: only a run's first step is worth going on from.
    return step in (1, 9) and all((int(b) - int(a)) % 10 == step for a, b in pairwise(digits))


def _email_placeholder(value: str) -> bool:
    text = value.strip().lower()
    local, _, domain = text.rpartition("@")
    if not local or not domain:
        return True
    if local in PLACEHOLDER_EMAIL_LOCAL_PARTS or domain in PLACEHOLDER_EMAIL_DOMAINS:
        return True
    if domain.rsplit(".", 1)[-1] in PLACEHOLDER_EMAIL_TLDS:
        return True
    first_label = domain.split(".", 1)[0]
    if local == first_label and len(local) <= 4:  # a@a.com, abc@abc.com
        return True
    return len(local) >= 3 and _repetitive(local)


def _national_digits(digits: str) -> str:
    """The digits after the country calling code of an international number (`34612345678` →
    `612345678`). Calling codes are prefix-free (ITU-T E.164), so the first 1–3 digits that form a
    known one are it: the same answer as `phonenumbers.parse(…).national_number` without a parse
    (which costs ~30 µs), whose integer form drops leading zeros too."""
    for length in (1, 2, 3):
        if digits[:length].isdigit() and int(digits[:length]) in COUNTRY_CODE_TO_REGION_CODE:
            return digits[length:].lstrip("0")
    return digits


def _phone_placeholder(value: str) -> bool:
    digits = "".join(filter(str.isdigit, value))
    national = digits
    if value.strip().startswith("+"):
        national = _national_digits(digits)
    candidates = {digits, national, digits[-9:]}
    if len(national) < _MIN_PHONE_DIGITS:
        return True
    return any(_repetitive(d) or _sequential(d) for d in candidates if len(d) >= _MIN_PHONE_DIGITS)


def _text_placeholder(value: str) -> bool:
    text = normalise_name(value)
    return text in PLACEHOLDER_TEXTS or (len(text) >= 2 and _repetitive(text.replace(" ", "")))


def _code_placeholder(value: str) -> bool:
    code = "".join(c for c in value.upper() if c.isalnum())
    if code in PLACEHOLDER_CODES or _repetitive(code):
        return True
    return code.isdigit() and _sequential(code)


def _national_id_placeholder(value: str) -> bool:
    code = "".join(c for c in value.upper() if c.isalnum())
    return _code_placeholder(code) or len(code) < 4 or _repetitive(code.rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def _birth_date_placeholder(value: str) -> bool:
    return value.strip()[:10] in PLACEHOLDER_BIRTH_DATES


_PLACEHOLDER_RULES: dict[str, Callable[[str], bool]] = {
    "email": _email_placeholder,
    "phone": _phone_placeholder,
    "given_name": _text_placeholder,
    "family_name": _text_placeholder,
    "organisation_name": _text_placeholder,
    "name": _text_placeholder,
    "city": _text_placeholder,
    "street": _text_placeholder,
    "postcode": _code_placeholder,
    "national_id": _national_id_placeholder,
    "birth_date": _birth_date_placeholder,
}


def is_placeholder(field: str, value: str) -> bool:
    """Whether `value` is junk typed for lack of a real `field` value, never to be matched on.

    Works on raw or normalised values. Fields: email, phone, given_name, family_name,
    organisation_name, name, city, street, postcode, national_id, birth_date (ISO text).

    | field | placeholder when |
    | --- | --- |
    | email | obvious local part (test, none, noemail, noreply, na, unknown, xxx, asdf, 123…), a
      throwaway domain (test.com, none.com…) or reserved TLD (.invalid, .test, .example), the same
      short word both sides of the @ (a@a.com), or a local part of one repeated character |
    | phone | fewer than 7 national digits, one digit or a pair repeated (000000, 1111111,
      12121212), or a run of consecutive digits (123456789, 987654321) |
    | names, city, street | n/a, na, none, unknown, test, xxx, "-", ".", "sin nombre", … or one
      repeated letter |
    | postcode, national_id | NA, NONE, one repeated character (00000), a run of digits;
      national ids shorter than 4 |
    | birth_date | system defaults such as 1900-01-01 or 9999-12-31 |
    """
    rule = _PLACEHOLDER_RULES.get(field)
    if rule is None:
        raise ValueError(f"no placeholder rules for field {field!r}")
    return rule(value)
