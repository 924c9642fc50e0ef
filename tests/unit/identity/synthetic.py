"""A seeded generator of customer records with known truth, for testing the matching engine.

People live in households (shared family name, address, sometimes a landline or one family
e-mail); some are recorded more than once, and each extra record carries the errors real data
has: typos, nicknames, swapped given/family names, missing values, transposed birth dates, a new
address, a new e-mail or phone. Raw values go through `MatchRecord.from_raw`, so normalisation is
exercised too. `entity` tells which records are the same person.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from services.identity.matching import MatchRecord, normalise_email

GIVEN: dict[str, dict[str, list[str]]] = {
    "es": {
        "m": ["José", "Francisco", "Antonio", "Manuel", "Javier", "Ignacio", "Rafael", "Enrique", "Pablo",
              "Diego", "Alejandro", "Fernando", "Santiago", "Daniel", "Mario", "Jesús", "Juan", "Luis"],
        "f": ["María", "Carmen", "Dolores", "Lucía", "Ana", "Pilar", "Mercedes", "Rosario", "Elena",
              "Marta", "Sofía", "Laura", "Concepción", "Daniela", "Isabel", "Cristina", "Paula"],
    },
    "en": {
        "m": ["James", "John", "Robert", "William", "Michael", "David", "Richard", "Thomas", "Charles",
              "Edward", "Henry", "George", "Oliver", "Jack", "Harry", "Daniel", "Peter", "Andrew"],
        "f": ["Mary", "Elizabeth", "Catherine", "Margaret", "Sarah", "Jennifer", "Susan", "Emily",
              "Olivia", "Amelia", "Grace", "Jessica", "Rebecca", "Victoria", "Anne", "Emma", "Sophie"],
    },
    "de": {
        "m": ["Johannes", "Josef", "Friedrich", "Heinrich", "Wolfgang", "Lukas", "Jonas", "Felix",
              "Paul", "Bernhard", "Gerhard", "Ulrich", "Stefan", "Michael", "Thomas", "Andreas"],
        "f": ["Ursula", "Gabriele", "Stefanie", "Susanne", "Lena", "Hannah", "Mia", "Lea", "Anna",
              "Julia", "Sabine", "Petra", "Katharina", "Monika", "Claudia"],
    },
}  # fmt: skip
FAMILY: dict[str, list[str]] = {
    "es": ["García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez",
           "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno", "Muñoz", "Álvarez",
           "Romero", "Alonso", "Gutiérrez", "Navarro", "Torres", "Domínguez", "Vázquez", "Ramos"],
    "en": ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Evans",
           "Walker", "Thomas", "Roberts", "Robinson", "Wright", "Thompson", "White", "Hughes",
           "Edwards", "Green", "Hall", "Wood", "Harris", "Lewis", "Martin", "O'Neil"],
    "de": ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
           "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder",
           "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange"],
}  # fmt: skip
NICKNAMES: dict[str, list[str]] = {
    "josé": ["Pepe"], "francisco": ["Paco", "Curro"], "dolores": ["Lola"], "ignacio": ["Nacho"],
    "manuel": ["Manolo"], "enrique": ["Quique"], "rafael": ["Rafa"], "javier": ["Javi"],
    "santiago": ["Santi"], "fernando": ["Nando"], "concepción": ["Concha"], "rosario": ["Charo"],
    "mercedes": ["Merche"], "pilar": ["Pili"], "robert": ["Bob", "Rob", "Bobby"],
    "william": ["Bill", "Will"], "catherine": ["Kate", "Cathy"], "james": ["Jim", "Jimmy"],
    "michael": ["Mike"], "richard": ["Rick", "Dick"], "thomas": ["Tom"], "david": ["Dave"],
    "elizabeth": ["Liz", "Beth"], "margaret": ["Maggie", "Peggy"], "jennifer": ["Jenny"],
    "edward": ["Ed", "Ted"], "henry": ["Harry"], "rebecca": ["Becky"], "susan": ["Sue"],
    "johannes": ["Hans"], "josef": ["Sepp"], "friedrich": ["Fritz"], "heinrich": ["Heinz"],
    "ursula": ["Uschi"], "gabriele": ["Gabi"], "stefanie": ["Steffi"], "wolfgang": ["Wolfi"],
    "daniel": ["Dani"], "peter": ["Pete"], "andrew": ["Andy"], "victoria": ["Vicky"],
}  # fmt: skip
STREETS = {
    "es": ["Calle Mayor", "Calle Real", "Avenida de la Constitución", "Calle del Carmen", "Paseo del Prado",
           "Calle Alcalá", "Gran Vía", "Calle San Juan", "Plaza de España", "Calle Nueva"],
    "en": ["High Street", "Station Road", "Church Lane", "Victoria Road", "Park Avenue", "Mill Lane",
           "Green Lane", "King Street", "Queen Street", "London Road"],
    "de": ["Hauptstraße", "Schulstraße", "Bahnhofstraße", "Gartenstraße", "Dorfstraße", "Bergstraße",
           "Lindenstraße", "Kirchstraße", "Waldstraße", "Ringstraße"],
}  # fmt: skip
CITIES = {
    "es": ["Madrid", "Barcelona", "Valencia", "Sevilla", "Zaragoza", "Málaga", "Bilbao", "Murcia"],
    "en": ["London", "Manchester", "Leeds", "Bristol", "Sheffield", "Liverpool", "York", "Bath"],
    "de": ["Berlin", "Hamburg", "München", "Köln", "Frankfurt", "Stuttgart", "Leipzig", "Bremen"],
}  # fmt: skip
REGION = {"es": "ES", "en": "GB", "de": "DE"}
PROVIDERS = ["gmail.com", "hotmail.com", "yahoo.com", "outlook.com", "example.com", "icloud.com", "web.de"]


@dataclass
class Person:
    entity: str
    lang: str
    given: str
    family: str
    gender: str
    birth: dt.date
    email: str | None
    phone: str | None
    national_id: str | None
    home: dict[str, str]


@dataclass
class Dataset:
    records: list[MatchRecord]
    entity: dict[str, str]  # record id -> person id
    household: dict[str, str] = field(default_factory=dict)  # record id -> household id

    def true_pairs(self) -> set[tuple[str, str]]:
        by_entity: dict[str, list[str]] = {}
        for record_id, person in self.entity.items():
            by_entity.setdefault(person, []).append(record_id)
        return {pair_key(x, y) for ids in by_entity.values() for x, y in itertools.combinations(ids, 2)}


def pair_key(x: str, y: str) -> tuple[str, str]:
    return (x, y) if x < y else (y, x)


def _zipf(rng: random.Random, items: Sequence[str]) -> str:
    return rng.choices(items, weights=[1.0 / (i + 1) ** 0.8 for i in range(len(items))])[0]


def _ascii(text: str) -> str:
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isalnum() and c.isascii()).lower()


def typo(rng: random.Random, text: str) -> str:
    """One keyboard slip: a letter inserted, dropped, replaced or two swapped (not the first)."""
    if len(text) < 3:
        return text
    i = rng.randrange(1, len(text) - 1)
    kind = rng.choice(["insert", "delete", "replace", "swap"])
    letter = rng.choice(string.ascii_lowercase)
    if kind == "insert":
        return text[:i] + letter + text[i:]
    if kind == "delete":
        return text[:i] + text[i + 1 :]
    if kind == "replace":
        return text[:i] + letter + text[i + 1 :]
    return text[: i - 1] + text[i] + text[i - 1] + text[i + 1 :]


def _mobile(rng: random.Random, lang: str) -> str:
    if lang == "es":
        return f"6{rng.randrange(10**8):08d}"
    if lang == "en":
        return f"07{rng.choice('123459')}{rng.randrange(10**8):08d}"
    return f"0151{rng.randrange(10**8):08d}"


def _landline(rng: random.Random, lang: str) -> str:
    if lang == "es":
        return f"91{rng.randrange(10**7):07d}"
    if lang == "en":
        return f"020{rng.choice('78')}{rng.randrange(10**7):07d}"
    return f"030{rng.randrange(10**8):08d}"


def _home(rng: random.Random, lang: str) -> dict[str, str]:
    city_index = rng.randrange(len(CITIES[lang]))
    if lang == "en":
        district = rng.randrange(1, 20)
        outward = ["M", "LS", "BS", "S", "L", "YO", "BA", "SW"][city_index] + str(district)
        postcode = f"{outward} {rng.randrange(1, 10)}{rng.choice('ABDEFGHJ')}{rng.choice('LNPQRSTUW')}"
    else:
        postcode = f"{(city_index + 1) * 10 + rng.randrange(8):02d}{rng.randrange(1, 60):03d}"
    return {
        "street": f"{_zipf(rng, STREETS[lang])} {rng.randrange(1, 120)}",
        "postcode": postcode,
        "city": CITIES[lang][city_index],
        "landline": _landline(rng, lang),
    }


def _email(rng: random.Random, given: str, family: str) -> str:
    g, f = _ascii(given), _ascii(family)
    local = rng.choice(
        [
            f"{g}.{f}",
            f"{g}{f}",
            f"{g[0]}{f}",
            f"{g}.{f}{rng.randrange(100)}",
            f"{f}.{g}",
            f"{g}{rng.randrange(1000)}",
        ]
    )
    return f"{local}@{rng.choice(PROVIDERS)}"


def _dni(rng: random.Random) -> str:
    number = rng.randrange(10**7, 10**8)
    return f"{number}{'TRWAGMYFPDXBNJZSQVHLCKE'[number % 23]}"


def _birth(rng: random.Random, start: int, end: int) -> dt.date:
    return dt.date(start, 1, 1) + dt.timedelta(
        days=rng.randrange((dt.date(end, 12, 31) - dt.date(start, 1, 1)).days)
    )


def _people(
    rng: random.Random, households: int, size_weights: Sequence[float]
) -> Iterable[tuple[str, Person]]:
    serial = itertools.count()
    mailboxes: set[str] = set()  # one mailbox, one owner (family mailboxes aside)
    for h in range(households):
        lang = rng.choice(list(GIVEN))
        home = _home(rng, lang)
        family = _zipf(rng, FAMILY[lang])
        size = rng.choices([1, 2, 3, 4], weights=size_weights)[0]
        family_email = None
        if size > 1 and rng.random() < 0.35:
            family_email = f"{_ascii(family)}.family{rng.randrange(100)}@{rng.choice(PROVIDERS)}"
        twins = size >= 3 and rng.random() < 0.1
        child_birth = _birth(rng, 1990, 2008)
        taken: set[str] = set()
        for k in range(size):
            gender = rng.choice("mf")
            adult = k < 2
            person_family = family
            if k == 1 and lang == "es" and rng.random() < 0.7:
                person_family = _zipf(rng, FAMILY[lang])  # Spanish spouses keep their own name
            birth = _birth(rng, 1950, 1985) if adult else child_birth if twins else _birth(rng, 1990, 2008)
            given = _zipf(rng, GIVEN[lang][gender])
            while given in taken and rng.random() > 0.03:  # relatives rarely share a given name
                given = _zipf(rng, GIVEN[lang][gender])
            taken.add(given)
            if rng.random() < 0.15:
                given = f"{given} {_zipf(rng, GIVEN[lang][gender])}" if lang == "es" else given
            email: str | None = _email(rng, given, person_family) if rng.random() < 0.8 else None
            while email is not None and normalise_email(email) in mailboxes:  # gmail ignores dots
                local, _, domain = email.partition("@")
                email = f"{local}{rng.randrange(10, 10000)}@{domain}"
            if email is not None:
                mailboxes.add(normalise_email(email))
            if family_email and rng.random() < 0.7:
                email = family_email
            phone = (
                _mobile(rng, lang)
                if rng.random() < 0.75
                else home["landline"]
                if rng.random() < 0.6
                else None
            )
            national_id = _dni(rng) if lang == "es" and adult and rng.random() < 0.5 else None
            entity = f"p{next(serial)}"
            yield (
                f"h{h}",
                Person(entity, lang, given, person_family, gender, birth, email, phone, national_id, home),
            )


def _variant(rng: random.Random, person: Person, duplicate: bool) -> dict[str, object]:
    """The raw fields of one record of `person`; a duplicate carries errors and changes."""
    given, family = person.given, person.family
    home = dict(person.home)
    email, phone, birth = person.email, person.phone, person.birth
    fields: dict[str, object] = {}
    if duplicate:
        nicknames = NICKNAMES.get(given.lower().split()[0])
        if nicknames and rng.random() < 0.3:
            given = rng.choice(nicknames)
        if rng.random() < 0.2:
            given = typo(rng, given)
        if rng.random() < 0.2:
            family = typo(rng, family)
        if rng.random() < 0.05:
            given, family = family, given
        if rng.random() < 0.3:
            home = _home(rng, person.lang)  # moved
            if rng.random() < 0.5:
                phone = _mobile(rng, person.lang) if phone == person.home["landline"] else phone
        if rng.random() < 0.25:
            local, _, domain = _email(rng, given, family).partition("@")
            email = f"{local}{rng.randrange(100, 100_000)}@{domain}"  # a new, personal mailbox
        elif email and rng.random() < 0.05:
            local, _, domain = email.partition("@")
            email = f"{typo(rng, local)}@{domain}"
        if rng.random() < 0.2:
            phone = _mobile(rng, person.lang)
        elif phone and rng.random() < 0.05:
            phone = typo(rng, phone)
        if rng.random() < 0.04 and birth.day <= 12 and birth.day != birth.month:
            birth = birth.replace(day=birth.month, month=birth.day)
        elif rng.random() < 0.05:
            birth = birth + dt.timedelta(days=rng.choice([1, -1, 10, -10, 365, -365]))
        if rng.random() < 0.2:
            given = given.upper()
        if rng.random() < 0.3:
            family = _ascii(family) if " " not in family and "'" not in family else family
    fields.update(
        given_name=given,
        family_name=family,
        email=email,
        phone=phone,
        birth_date=birth.isoformat(),
        postcode=home["postcode"],
        city=home["city"],
        street=home["street"],
        national_id=person.national_id,
        gender=person.gender,
    )
    missing = {"email": 0.15, "phone": 0.15, "birth_date": 0.25, "postcode": 0.1, "street": 0.15,
               "city": 0.1, "gender": 0.4, "national_id": 0.3}  # fmt: skip
    for name, p in missing.items():
        if rng.random() < p:
            fields[name] = None
    return fields


def generate(
    households: int = 200,
    seed: int = 0,
    duplicate_share: float = 0.3,
    size_weights: Sequence[float] = (45, 30, 15, 10),
) -> Dataset:
    """Records for the people of `households` households (of 1–4 people, in the proportions
    `size_weights`); a `duplicate_share` of people are recorded 2–4 times."""
    rng = random.Random(seed)
    records: list[MatchRecord] = []
    entity: dict[str, str] = {}
    household: dict[str, str] = {}
    serial = itertools.count()
    for house, person in _people(rng, households, size_weights):
        copies = 1
        if rng.random() < duplicate_share:
            copies += rng.choices([1, 2, 3], weights=[70, 22, 8])[0]
        for c in range(copies):
            fields = _variant(rng, person, duplicate=c > 0)
            record_id = f"r{next(serial)}"
            record = MatchRecord.from_raw(record_id, default_region=REGION[person.lang], **fields)  # type: ignore[arg-type]
            records.append(record)
            entity[record_id] = person.entity
            household[record_id] = house
    rng.shuffle(records)
    return Dataset(records, entity, household)
