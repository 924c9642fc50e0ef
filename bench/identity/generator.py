"""A seeded, labelled data set of person records with the errors real source systems make.

`generate(n_records, seed)` invents true people in Spain, Great Britain, Germany and France and
writes each of them 1–4 times (Zipf-ish) as source records from the systems web, pos, callcentre,
import and partner, in the shape of the identity API's `SourceRecordIn`. Every record carries the
errors applied to it, so a benchmark can say which kinds of error its matcher misses:

| tag | what happened to the record |
| --- | --- |
| `name_typo` | one edit (insert, delete, transpose, substitute) in the given or the family name |
| `swapped_names` | given and family name exchanged |
| `nickname` | the given name written as a nickname (Robert → Bob, José → Pepe) |
| `accents_dropped` | accents stripped (German umlauts sometimes as `ue`, `oe`, `ae`, `ss`) |
| `upper_case` | the names in capitals |
| `surname_partial` | a Spanish double surname cut to the first one |
| `missing_email`, `missing_phone`, `missing_birth_date`, `missing_address` | that value absent |
| `moved` | the person's address after moving house |
| `second_email` | the person's other e-mail (work) |
| `email_variant` | the same mailbox written differently (Gmail dots dropped, capitals) |
| `phone_national` | the phone in national format (`612 34 56 78`): its country comes from the address |
| `phone_format` | the phone in international form with spaces, dashes or a `00` prefix |
| `dob_transposed` | day and month of the birth date swapped |
| `street_abbrev` | the street type abbreviated (`C/`, `Rd`, `Str.`, `Av.`) |
| `postcode_format` | a British postcode in lower case or without its space |

Hard negatives, people who must NOT be joined: households (2–4 people sharing a family name, an
address and often one e-mail, with different given names and birth dates) and common names (many
María Garcías, John Smiths, Thomas Müllers and Marie Martins, each with another birth date).

Phones are valid for `phonenumbers` and unique per person; e-mails are unique per person (a
household's shared e-mail aside).
"""

from __future__ import annotations

import functools
import itertools
import random
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import phonenumbers

SYSTEMS = ("web", "pos", "callcentre", "import", "partner")
SYSTEM_WEIGHTS = (0.35, 0.25, 0.15, 0.15, 0.10)
# Chance that each value is missing, per system: (email, phone, birth_date, address).
MISSING = {
    "web": (0.0, 0.45, 0.5, 0.5),
    "pos": (0.5, 0.15, 0.65, 0.45),
    "callcentre": (0.4, 0.05, 0.3, 0.2),
    "import": (0.15, 0.2, 0.15, 0.15),
    "partner": (0.2, 0.4, 0.4, 0.3),
}
# Chance of a one-edit typo in a name, per system (people on the phone mishear, clerks mistype).
TYPO = {"web": 0.05, "pos": 0.12, "callcentre": 0.18, "import": 0.08, "partner": 0.10}
RECORDS_PER_PERSON = (1, 2, 3, 4)
RECORDS_WEIGHTS = (0.50, 0.27, 0.15, 0.08)
HOUSEHOLD_SHARE = 0.12  # chance that a new unit of people is a household rather than one person
COMMON_NAME_SHARE = 0.06  # chance that a person outside a household has one of the common names

ERROR_KINDS = (
    "name_typo",
    "swapped_names",
    "nickname",
    "accents_dropped",
    "upper_case",
    "surname_partial",
    "missing_email",
    "missing_phone",
    "missing_birth_date",
    "missing_address",
    "moved",
    "second_email",
    "email_variant",
    "phone_national",
    "phone_format",
    "dob_transposed",
    "street_abbrev",
    "postcode_format",
)

# Nicknames and short forms (formal → variants). Our own table, independent of the matcher's.
NICKNAMES: dict[str, tuple[str, ...]] = {
    "Robert": ("Bob", "Rob", "Bobby"),
    "William": ("Bill", "Will"),
    "Katherine": ("Kate", "Katie", "Kathy"),
    "Elizabeth": ("Liz", "Beth", "Lizzie"),
    "Margaret": ("Maggie", "Peggy"),
    "James": ("Jim", "Jimmy"),
    "Michael": ("Mike",),
    "Thomas": ("Tom", "Tommy"),
    "Richard": ("Rick", "Dick"),
    "Jennifer": ("Jenny", "Jen"),
    "Daniel": ("Dan", "Danny"),
    "Anthony": ("Tony",),
    "Rebecca": ("Becky",),
    "Joseph": ("Joe",),
    "José": ("Pepe",),
    "Francisco": ("Paco", "Curro"),
    "Manuel": ("Manolo",),
    "Dolores": ("Lola",),
    "Concepción": ("Concha",),
    "Ignacio": ("Nacho",),
    "Enrique": ("Quique",),
    "Rosario": ("Charo",),
    "Mercedes": ("Merche",),
    "Guadalupe": ("Lupe",),
    "Johannes": ("Hans",),
    "Friedrich": ("Fritz",),
    "Katharina": ("Kathi", "Katja"),
    "Elisabeth": ("Lisa", "Elli"),
    "Wolfgang": ("Wolf",),
    "Margarete": ("Grete",),
    "Frédéric": ("Fred",),
    "Nicolas": ("Nico",),
    "Isabelle": ("Isa",),
    "Catherine": ("Cathy",),
    "Dominique": ("Dom",),
}


@dataclass(frozen=True)
class City:
    name: str
    region: str
    postcodes: tuple[str, ...]  # prefixes (ES), explicit codes or ranges "lo-hi" (DE, FR), outward (GB)


@dataclass(frozen=True)
class Country:
    code: str
    female: tuple[str, ...]
    male: tuple[str, ...]
    family: tuple[str, ...]
    cities: tuple[City, ...]
    streets: tuple[str, ...]
    domains: tuple[str, ...]
    mobile_prefixes: tuple[str, ...]
    common_names: tuple[tuple[str, str, str], ...]  # (given, family, gender)
    household_word: str


COUNTRIES: dict[str, Country] = {
    "ES": Country(
        code="ES",
        female=(
            "María", "Carmen", "Ana", "Lucía", "Isabel", "Laura", "Cristina", "Marta", "Sofía", "Elena",
            "Paula", "Dolores", "Concepción", "Rosario", "Mercedes", "Guadalupe", "Pilar", "Raquel",
            "Nuria", "Beatriz", "Inés", "Irene", "Ángela", "Rocío", "Begoña", "Montserrat", "Silvia",
        ),
        male=(
            "José", "Antonio", "Manuel", "Francisco", "Juan", "David", "Javier", "Daniel", "Carlos",
            "Jesús", "Alejandro", "Miguel", "Rafael", "Pablo", "Sergio", "Fernando", "Jorge", "Ignacio",
            "Enrique", "Álvaro", "Andrés", "Ramón", "Óscar", "Rubén", "Adrián", "Iñaki", "Joaquín",
        ),
        family=(
            "García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez", "Pérez",
            "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno", "Muñoz", "Álvarez",
            "Romero", "Alonso", "Gutiérrez", "Navarro", "Torres", "Domínguez", "Vázquez", "Ramos",
            "Gil", "Ramírez", "Serrano", "Blanco", "Molina", "Morales", "Suárez", "Ortega", "Delgado",
            "Castro", "Ortiz", "Rubio", "Marín", "Sanz", "Núñez", "Iglesias", "Medina", "Garrido",
            "Cortés", "Castillo", "Santos", "Lozano", "Guerrero", "Cano", "Prieto", "Méndez", "Calvo",
            "Cruz", "Gallego", "Vidal", "León", "Márquez", "Herrera", "Peña", "Flores", "Cabrera",
            "Campos", "Vega", "Fuentes", "Carrasco", "Diez", "Caballero", "Reyes", "Nieto", "Aguilar",
            "Pascual", "Santana", "Herrero", "Montero", "Lorenzo", "Hidalgo", "Giménez", "Ibáñez",
            "Ferrer", "Durán", "Santiago", "Benítez", "Mora", "Vicente", "Vargas", "Arias", "Carmona",
            "Crespo", "Román", "Pastor", "Soto", "Sáez", "Velasco", "Moya", "Soler", "Parra", "Esteban",
        ),
        cities=(
            City("Madrid", "Madrid", ("280",)),
            City("Barcelona", "Cataluña", ("080",)),
            City("Valencia", "Comunidad Valenciana", ("460",)),
            City("Sevilla", "Andalucía", ("410",)),
            City("Zaragoza", "Aragón", ("500",)),
            City("Málaga", "Andalucía", ("290",)),
            City("Bilbao", "País Vasco", ("480",)),
            City("Alicante", "Comunidad Valenciana", ("030",)),
            City("Córdoba", "Andalucía", ("140",)),
            City("Valladolid", "Castilla y León", ("470",)),
        ),
        streets=(
            "Calle Mayor", "Calle Real", "Gran Vía", "Calle de Alcalá", "Avenida de la Constitución",
            "Calle del Carmen", "Calle de Toledo", "Avenida de América", "Calle San Juan",
            "Calle de la Paz", "Paseo de la Castellana", "Calle Nueva", "Avenida del Puerto",
            "Calle de Cervantes", "Calle del Sol", "Calle Ancha", "Avenida de Andalucía", "Calle Larga",
            "Calle de Goya", "Calle de Serrano", "Calle Princesa", "Avenida de Valencia",
        ),
        domains=("gmail.com", "hotmail.com", "yahoo.es", "outlook.es", "telefonica.net", "icloud.com"),
        mobile_prefixes=("6", "7"),
        common_names=(
            ("María", "García", "female"),
            ("José", "García", "male"),
            ("Antonio", "Fernández", "male"),
            ("María", "López", "female"),
            ("Carmen", "Martínez", "female"),
            ("Juan", "Rodríguez", "male"),
        ),
        household_word="familia",
    ),
    "GB": Country(
        code="GB",
        female=(
            "Sarah", "Emma", "Katherine", "Elizabeth", "Margaret", "Jennifer", "Rebecca", "Charlotte",
            "Emily", "Sophie", "Hannah", "Laura", "Rachel", "Claire", "Helen", "Lucy", "Amy", "Olivia",
            "Jessica", "Victoria", "Alice", "Grace", "Chloe", "Megan", "Eleanor", "Harriet", "Zoe",
        ),
        male=(
            "John", "David", "James", "Robert", "William", "Michael", "Thomas", "Richard", "Daniel",
            "Anthony", "Joseph", "Paul", "Mark", "Andrew", "Peter", "Stephen", "Matthew", "George",
            "Oliver", "Harry", "Jack", "Charles", "Edward", "Samuel", "Benjamin", "Luke", "Adam",
        ),
        family=(
            "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas",
            "Johnson", "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards",
            "Hughes", "Green", "Hall", "Lewis", "Harris", "Clarke", "Patel", "Jackson", "Wood",
            "Turner", "Martin", "Cooper", "Hill", "Ward", "Morris", "Moore", "Clark", "Lee", "King",
            "Baker", "Harrison", "Morgan", "Allen", "James", "Scott", "Phillips", "Watson", "Davis",
            "Parker", "Price", "Bennett", "Young", "Griffiths", "Mitchell", "Kelly", "Cook", "Carter",
            "Richardson", "Bailey", "Collins", "Bell", "Shaw", "Murphy", "Miller", "Cox", "Richards",
            "Khan", "Marshall", "Anderson", "Simpson", "Ellis", "Adams", "Singh", "Begum", "Wilkinson",
            "Foster", "Chapman", "Powell", "Webb", "Rogers", "Gray", "Mason", "Ali", "Hunt", "Hussain",
            "Campbell", "Matthews", "Owen", "Palmer", "Holmes", "Mills", "Barnes", "Knight", "Lloyd",
            "O'Brien", "O'Connor", "MacDonald", "McCarthy", "Fitzgerald", "Armstrong", "Stewart",
        ),
        cities=(
            City("London", "Greater London", ("SW1A", "SW3", "SE1", "E1", "N1", "NW1", "W2", "EC1A", "E14")),
            City("Manchester", "Greater Manchester", ("M1", "M4", "M14", "M20")),
            City("Birmingham", "West Midlands", ("B1", "B5", "B15", "B29")),
            City("Leeds", "West Yorkshire", ("LS1", "LS2", "LS6")),
            City("Glasgow", "Scotland", ("G1", "G2", "G12")),
            City("Bristol", "Bristol", ("BS1", "BS6", "BS8")),
            City("Edinburgh", "Scotland", ("EH1", "EH3", "EH9")),
            City("Liverpool", "Merseyside", ("L1", "L8", "L17")),
            City("Cardiff", "Wales", ("CF10", "CF11", "CF24")),
        ),
        streets=(
            "High Street", "Station Road", "Church Lane", "Main Street", "Park Road", "Victoria Road",
            "Green Lane", "Manor Road", "Church Street", "Park Avenue", "Queens Road", "Kings Road",
            "New Road", "Mill Lane", "London Road", "Albert Road", "The Crescent", "York Road",
            "Springfield Road", "Grange Road", "Chester Road", "Windsor Road",
        ),
        domains=("gmail.com", "hotmail.co.uk", "yahoo.co.uk", "outlook.com", "btinternet.com", "icloud.com"),
        mobile_prefixes=("74", "75", "77", "78", "79"),
        common_names=(
            ("John", "Smith", "male"),
            ("David", "Jones", "male"),
            ("Sarah", "Smith", "female"),
            ("James", "Williams", "male"),
            ("Emma", "Brown", "female"),
        ),
        household_word="the",
    ),
    "DE": Country(
        code="DE",
        female=(
            "Anna", "Julia", "Katharina", "Elisabeth", "Margarete", "Sabine", "Petra", "Monika",
            "Ursula", "Claudia", "Andrea", "Stefanie", "Lena", "Laura", "Lea", "Hannah", "Jana", "Jülide",
            "Sophie", "Marie", "Franziska", "Birgit", "Gisela", "Ingrid", "Käthe", "Jördis", "Mareike",
        ),
        male=(
            "Thomas", "Michael", "Andreas", "Stefan", "Johannes", "Friedrich", "Wolfgang", "Jürgen",
            "Klaus", "Uwe", "Frank", "Peter", "Markus", "Christian", "Tobias", "Lukas", "Jonas",
            "Felix", "Maximilian", "Jörg", "Björn", "Sören", "Matthias", "Sebastian", "Florian",
            "Dieter", "Günter",
        ),
        family=(
            "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
            "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
            "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt",
            "Werner", "Schmitz", "Krause", "Meier", "Lehmann", "Schmid", "Schulze", "Maier", "Köhler",
            "Herrmann", "König", "Walter", "Mayer", "Huber", "Kaiser", "Fuchs", "Peters", "Lang",
            "Scholz", "Möller", "Weiß", "Jung", "Hahn", "Schubert", "Vogel", "Friedrich", "Keller",
            "Günther", "Frank", "Berger", "Winkler", "Roth", "Beck", "Lorenz", "Baumann", "Franke",
            "Albrecht", "Schuster", "Simon", "Ludwig", "Böhm", "Winter", "Kraus", "Martin", "Schumacher",
            "Krämer", "Vogt", "Stein", "Jäger", "Otto", "Sommer", "Groß", "Seidel", "Heinrich", "Brandt",
            "Haas", "Schreiber", "Graf", "Schulte", "Dietrich", "Ziegler", "Kuhn", "Kühn", "Pohl",
        ),
        cities=(
            City("Berlin", "Berlin", ("10115-14199",)),
            City("Hamburg", "Hamburg", ("20095-22769",)),
            City("München", "Bayern", ("80331-81929",)),
            City("Köln", "Nordrhein-Westfalen", ("50667-51149",)),
            City("Frankfurt am Main", "Hessen", ("60306-60599",)),
            City("Stuttgart", "Baden-Württemberg", ("70173-70629",)),
            City("Düsseldorf", "Nordrhein-Westfalen", ("40210-40629",)),
            City("Leipzig", "Sachsen", ("04103-04357",)),
            City("Dresden", "Sachsen", ("01067-01328",)),
        ),
        streets=(
            "Hauptstraße", "Schulstraße", "Gartenstraße", "Bahnhofstraße", "Dorfstraße", "Bergstraße",
            "Birkenweg", "Lindenstraße", "Kirchstraße", "Waldstraße", "Ringstraße", "Schillerstraße",
            "Goethestraße", "Mühlenweg", "Wiesenweg", "Am Markt", "Friedrichstraße", "Mozartstraße",
            "Blumenstraße", "Rosenweg", "Feldstraße", "Kastanienallee",
        ),
        domains=("gmail.com", "gmx.de", "web.de", "t-online.de", "outlook.de", "posteo.de"),
        mobile_prefixes=("151", "152", "157", "160", "162", "170", "171", "172", "175", "176", "177"),
        common_names=(
            ("Thomas", "Müller", "male"),
            ("Anna", "Schmidt", "female"),
            ("Michael", "Schneider", "male"),
            ("Julia", "Fischer", "female"),
        ),
        household_word="familie",
    ),
    "FR": Country(
        code="FR",
        female=(
            "Marie", "Camille", "Isabelle", "Catherine", "Nathalie", "Sophie", "Chloé", "Léa", "Manon",
            "Hélène", "Céline", "Élodie", "Amélie", "Juliette", "Sandrine", "Valérie", "Aurélie",
            "Mélanie", "Émilie", "Margaux", "Inès", "Zoé", "Clémence", "Anaïs", "Dominique", "Noémie",
            "Françoise",
        ),
        male=(
            "Jean", "Nicolas", "Frédéric", "Pierre", "Michel", "Philippe", "Alain", "Thierry", "Julien",
            "Sébastien", "Stéphane", "Jérôme", "François", "Éric", "Laurent", "Olivier", "Benoît",
            "Antoine", "Hugo", "Lucas", "Théo", "Mathieu", "Guillaume", "Cédric", "Rémi", "Jérémy",
            "Loïc",
        ),
        family=(
            "Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau",
            "Laurent", "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David", "Bertrand", "Morel",
            "Fournier", "Girard", "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent",
            "Muller", "Lefebvre", "Faure", "André", "Mercier", "Blanc", "Guérin", "Boyer", "Garnier",
            "Chevalier", "François", "Legrand", "Gauthier", "Garcia", "Perrin", "Robin", "Clément",
            "Morin", "Nicolas", "Henry", "Roussel", "Mathieu", "Gautier", "Masson", "Marchand", "Duval",
            "Denis", "Dumont", "Marie", "Lemaire", "Noël", "Meyer", "Dufour", "Meunier", "Brun",
            "Blanchard", "Giraud", "Joly", "Rivière", "Lucas", "Brunet", "Gaillard", "Barbier", "Arnaud",
            "Martinez", "Gérard", "Roche", "Renard", "Schmitt", "Roy", "Leroux", "Colin", "Vidal",
            "Caron", "Picard", "Roger", "Fabre", "Aubert", "Lemoine", "Renaud", "Dumas", "Lacroix",
            "Olivier", "Philippe", "Bourgeois", "Pierre", "Benoît", "Rey", "Leclerc", "Payet", "Rolland",
        ),
        cities=(
            City("Paris", "Île-de-France", tuple(f"750{i:02d}" for i in range(1, 21))),
            City("Lyon", "Auvergne-Rhône-Alpes", tuple(f"6900{i}" for i in range(1, 10))),
            City("Marseille", "Provence-Alpes-Côte d'Azur", tuple(f"130{i:02d}" for i in range(1, 17))),
            City("Toulouse", "Occitanie", ("31000", "31100", "31200", "31300", "31400", "31500")),
            City("Nice", "Provence-Alpes-Côte d'Azur", ("06000", "06100", "06200", "06300")),
            City("Nantes", "Pays de la Loire", ("44000", "44100", "44200", "44300")),
            City("Lille", "Hauts-de-France", ("59000", "59160", "59260", "59800")),
            City("Bordeaux", "Nouvelle-Aquitaine", ("33000", "33100", "33200", "33300", "33800")),
            City("Strasbourg", "Grand Est", ("67000", "67100", "67200")),
        ),
        streets=(
            "Rue de la Paix", "Avenue Victor Hugo", "Boulevard Saint-Germain", "Rue de la République",
            "Rue Victor Hugo", "Rue Jean Jaurès", "Avenue de la Gare", "Rue de l'Église",
            "Place de la Mairie", "Rue du Moulin", "Rue des Écoles", "Rue Pasteur", "Boulevard Voltaire",
            "Avenue Jean Moulin", "Rue Nationale", "Rue du Château", "Rue des Lilas", "Rue Gambetta",
            "Avenue Foch", "Rue de Verdun", "Rue Carnot", "Boulevard Haussmann",
        ),
        domains=("gmail.com", "orange.fr", "free.fr", "laposte.net", "hotmail.fr", "sfr.fr", "yahoo.fr"),
        mobile_prefixes=("6", "7"),
        common_names=(
            ("Marie", "Martin", "female"),
            ("Jean", "Bernard", "male"),
            ("Nicolas", "Dubois", "male"),
            ("Camille", "Petit", "female"),
        ),
        household_word="famille",
    ),
}  # fmt: skip
COUNTRY_WEIGHTS = {"ES": 0.35, "GB": 0.25, "DE": 0.2, "FR": 0.2}
WORK_DOMAINS = ("acme-corp.com", "globex.eu", "initech.io", "umbrella.net", "hooli.com", "vandelay.eu")
STREET_ABBREVIATIONS = (
    ("Calle de ", "C/ "),
    ("Calle ", "C/ "),
    ("Avenida ", "Avda. "),
    ("Paseo ", "Pº "),
    (" Street", " St"),
    (" Road", " Rd"),
    (" Lane", " Ln"),
    (" Avenue", " Ave"),
    ("straße", "str."),
    ("Avenue ", "Av. "),
    ("Boulevard ", "Bd "),
    ("Rue ", "R. "),
)
UMLAUTS = {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"}
LETTERS = "abcdefghijklmnopqrstuvwxyz"
GB_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


@dataclass
class Person:
    id: str
    country: str
    given_name: str
    family_name: str
    gender: str
    birth_date: date
    email: str
    work_email: str
    phone: str  # E.164
    address: dict[str, str]
    new_address: dict[str, str]
    household: str | None = None
    common_name: bool = False
    moves: bool = False
    has_work_email: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "country": self.country,
            "given_name": self.given_name,
            "family_name": self.family_name,
            "birth_date": self.birth_date.isoformat(),
            "email": self.email,
            "phone": self.phone,
            "postcode": self.address["postcode"],
            "household": self.household,
            "common_name": self.common_name,
        }


@dataclass
class Dataset:
    """Records in arrival order, and for each source_id: its true person and the errors it carries."""

    seed: int
    records: list[dict[str, Any]]
    truth: dict[str, str]
    tags: dict[str, list[str]]
    persons: dict[str, dict[str, Any]] = field(default_factory=dict)

    def stats(self) -> dict[str, Any]:
        tag_counts: dict[str, int] = {}
        for kinds in self.tags.values():
            for kind in kinds:
                tag_counts[kind] = tag_counts.get(kind, 0) + 1
        sizes: dict[str, int] = {}
        for person in self.truth.values():
            sizes[person] = sizes.get(person, 0) + 1
        return {
            "records": len(self.records),
            "people": len(sizes),
            "duplicate_pairs": sum(n * (n - 1) // 2 for n in sizes.values()),
            "households": len({p["household"] for p in self.persons.values() if p["household"]}),
            "people_in_households": sum(1 for p in self.persons.values() if p["household"]),
            "people_with_common_names": sum(1 for p in self.persons.values() if p["common_name"]),
            "errors": dict(sorted(tag_counts.items())),
        }


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("ß", "ss")


def ascii_word(text: str) -> str:
    return "".join(c for c in strip_accents(text).lower() if c.isalnum())


def typo(word: str, rng: random.Random) -> str:
    """One edit: insert, delete, transpose or substitute a letter (rarely the first one)."""
    letters = list(word)
    for _ in range(20):
        op = rng.choice(("insert", "delete", "transpose", "substitute"))
        out = letters[:]
        if op == "insert":
            i = rng.randint(1, len(out))
            out.insert(i, rng.choice(LETTERS))
        elif op == "delete" and len(out) > 2:
            del out[rng.randint(1, len(out) - 1)]
        elif op == "transpose" and len(out) > 2:
            i = rng.randint(1, len(out) - 2)
            out[i], out[i + 1] = out[i + 1], out[i]
        elif op == "substitute":
            i = rng.randint(1, len(out) - 1)
            out[i] = rng.choice(LETTERS)
        candidate = "".join(out)
        if candidate != word and candidate.strip() and not candidate[-1].isspace():
            return candidate
    return word + rng.choice(LETTERS)


@functools.cache
def _surname_weights(n: int) -> list[float]:
    """Cumulative weights 1/(rank+3): the commonest surname is about 7 % of people."""
    return list(itertools.accumulate(1 / (rank + 3) for rank in range(1, n + 1)))


def _postcode(country: str, city: City, rng: random.Random) -> str:
    spec = rng.choice(city.postcodes)
    if country == "ES":
        return f"{spec}{rng.randint(1, 80):02d}"
    if country == "GB":
        return f"{spec} {rng.randint(1, 9)}{rng.choice(GB_INWARD_LETTERS)}{rng.choice(GB_INWARD_LETTERS)}"
    if "-" in spec:
        lo, hi = spec.split("-")
        return f"{rng.randint(int(lo), int(hi)):05d}"
    return spec


def _address(country: Country, rng: random.Random, city: City | None = None) -> dict[str, str]:
    city = city or rng.choice(country.cities)
    return {
        "street_number": str(rng.randint(1, 180)),
        "street": rng.choice(country.streets),
        "locality": city.name,
        "postcode": _postcode(country.code, city, rng),
        "region": city.region,
        "country": country.code,
    }


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.persons: list[Person] = []
        self.phones: set[str] = set()
        self.emails: set[str] = set()
        self.name_dates: set[tuple[str, str, date]] = set()
        self.households = 0

    # -- people -----------------------------------------------------------------------------------

    def _phone(self, country: Country) -> str:
        rng = self.rng
        code = phonenumbers.country_code_for_region(country.code)
        while True:
            prefix = rng.choice(country.mobile_prefixes)
            rest = 10 - len(prefix) if country.code in ("GB",) else 9 - len(prefix)
            if country.code == "DE":
                rest = rng.choice((7, 8))
            candidate = f"+{code}{prefix}{rng.randint(0, 10**rest - 1):0{rest}d}"
            parsed = phonenumbers.parse(candidate)
            if phonenumbers.is_valid_number(parsed) and candidate not in self.phones:
                self.phones.add(candidate)
                return candidate

    def _unique_email(self, local: str, domain: str) -> str:
        email = f"{local}@{domain}"
        while email in self.emails:
            email = f"{local}{self.rng.randint(1, 999)}@{domain}"
        self.emails.add(email)
        return email

    def _personal_email(self, country: Country, given: str, family: str, birth: date) -> str:
        rng = self.rng
        g, f = ascii_word(given), ascii_word(family.split()[0])
        local = rng.choice(
            (
                f"{g}.{f}",
                f"{g}{f}",
                f"{g[0]}.{f}",
                f"{g}_{f}",
                f"{f}.{g}",
                f"{g}{birth.year % 100:02d}",
                f"{g}.{f}{rng.randint(1, 99)}",
                f"{g[0]}{f}{birth.year}",
            )
        )
        return self._unique_email(local, rng.choice(country.domains))

    def _birth_date(self, given: str, family: str, lo: int, hi: int) -> date:
        while True:
            birth = date(lo, 1, 1) + timedelta(
                days=self.rng.randint(0, (date(hi, 12, 31) - date(lo, 1, 1)).days)
            )
            key = (given, family, birth)
            if key not in self.name_dates:
                self.name_dates.add(key)
                return birth

    def _given(self, country: Country, gender: str, avoid: frozenset[str] | set[str] = frozenset()) -> str:
        pool = country.female if gender == "female" else country.male
        while True:
            name = self.rng.choice(pool)
            if name not in avoid:
                return name

    def _family(self, country: Country) -> str:
        rng = self.rng
        # Zipf-ish: the first surnames of each list are the most frequent.
        weights = _surname_weights(len(country.family))
        family = rng.choices(country.family, cum_weights=weights)[0]
        if country.code == "ES" and rng.random() < 0.5:
            second = rng.choices(country.family, cum_weights=weights)[0]
            if second != family:
                family = f"{family} {second}"
        return family

    def _person(
        self,
        country: Country,
        *,
        given: str,
        family: str,
        gender: str,
        birth: date,
        address: dict[str, str],
        email: str | None = None,
        household: str | None = None,
        common: bool = False,
    ) -> Person:
        rng = self.rng
        moves = household is None and rng.random() < 0.15
        new_city = (
            None if rng.random() < 0.5 else next(c for c in country.cities if c.name == address["locality"])
        )
        person = Person(
            id=f"P{len(self.persons):07d}",
            country=country.code,
            given_name=given,
            family_name=family,
            gender=gender,
            birth_date=birth,
            email=email or self._personal_email(country, given, family, birth),
            work_email=self._unique_email(
                f"{ascii_word(given)[0]}{ascii_word(family.split()[0])}", rng.choice(WORK_DOMAINS)
            ),
            phone=self._phone(country),
            address=address,
            new_address=_address(country, rng, new_city) if moves else address,
            household=household,
            common_name=common,
            moves=moves,
            has_work_email=rng.random() < 0.12,
        )
        self.persons.append(person)
        return person

    def single(self) -> list[Person]:
        rng = self.rng
        country = COUNTRIES[rng.choices(list(COUNTRY_WEIGHTS), weights=list(COUNTRY_WEIGHTS.values()))[0]]
        if rng.random() < COMMON_NAME_SHARE:
            given, family, gender = rng.choice(country.common_names)
            common = True
        else:
            gender = rng.choice(("female", "male"))
            given, family, common = self._given(country, gender), self._family(country), False
        birth = self._birth_date(given, family, 1940, 2006)
        address = _address(country, rng)
        return [
            self._person(
                country,
                given=given,
                family=family,
                gender=gender,
                birth=birth,
                address=address,
                common=common,
            )
        ]

    def household(self) -> list[Person]:
        """2–4 people: one family name, one address, often one e-mail; other names and birth dates."""
        rng = self.rng
        country = COUNTRIES[rng.choices(list(COUNTRY_WEIGHTS), weights=list(COUNTRY_WEIGHTS.values()))[0]]
        self.households += 1
        household = f"H{self.households:06d}"
        family = self._family(country)
        address = _address(country, rng)
        word = country.household_word
        shared_local = rng.choice(
            (
                f"{word}.{ascii_word(family.split()[0])}",
                f"{word}{ascii_word(family.split()[0])}",
                f"{ascii_word(family.split()[0])}.home",
            )
        )
        shared_email = self._unique_email(shared_local, rng.choice(country.domains))
        size = rng.choice((2, 2, 2, 3, 3, 4))
        members: list[Person] = []
        names: set[str] = set()
        for i in range(size):
            gender = rng.choice(("female", "male"))
            given = self._given(country, gender, names)
            names.add(given)
            lo, hi = (1950, 1985) if i < 2 else (1988, 2007)
            birth = self._birth_date(given, family, lo, hi)
            email = shared_email if rng.random() < 0.75 else None
            members.append(
                self._person(
                    country,
                    given=given,
                    family=family,
                    gender=gender,
                    birth=birth,
                    address=address,
                    email=email,
                    household=household,
                )
            )
        return members

    # -- records ----------------------------------------------------------------------------------

    def _phone_text(self, person: Person, national_ok: bool, tags: list[str]) -> str:
        rng = self.rng
        parsed = phonenumbers.parse(person.phone)
        style = rng.choices(
            ("e164", "intl", "intl_dashed", "double_zero", "national", "national_compact", "national_punct"),
            weights=(0.3, 0.2, 0.05, 0.05, 0.25, 0.1, 0.05),
        )[0]
        if style.startswith("national") and not national_ok:
            style = "intl"
        intl = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        if style == "e164":
            return person.phone
        if style.startswith("national"):
            tags.append("phone_national")
            if style == "national_compact":
                return "".join(c for c in national if c.isdigit())
            if style == "national_punct":
                sep = {"FR": ".", "DE": "/", "ES": "-", "GB": "-"}[person.country]
                if person.country == "DE":
                    digits = "".join(c for c in national if c.isdigit())
                    return f"{digits[:4]}/{digits[4:]}"
                return national.replace(" ", sep)
            return national
        tags.append("phone_format")
        if style == "intl_dashed":
            return intl.replace(" ", "-")
        if style == "double_zero":
            return "00" + intl[1:]
        return intl

    def record(
        self, person: Person, system: str, source_id: str, moved: bool, second: bool
    ) -> dict[str, Any]:
        rng = self.rng
        tags: list[str] = []
        given, family = person.given_name, person.family_name

        if " " in family and rng.random() < 0.15:
            family = family.split()[0]
            tags.append("surname_partial")
        if given in NICKNAMES and rng.random() < 0.3:
            given = rng.choice(NICKNAMES[given])
            tags.append("nickname")
        if rng.random() < TYPO[system]:
            if rng.random() < 0.5:
                given = typo(given, rng)
            else:
                family = typo(family, rng)
            tags.append("name_typo")
        if strip_accents(given + family) != given + family and rng.random() < 0.25:
            if person.country == "DE" and rng.random() < 0.5:
                given = "".join(UMLAUTS.get(c, c) for c in given)
                family = "".join(UMLAUTS.get(c, c) for c in family)
            given, family = strip_accents(given), strip_accents(family)
            tags.append("accents_dropped")
        if rng.random() < 0.07:
            given, family = given.upper(), family.upper()
            tags.append("upper_case")
        if rng.random() < 0.03:
            given, family = family, given
            tags.append("swapped_names")

        miss_email, miss_phone, miss_birth, miss_address = (rng.random() < p for p in MISSING[system])
        if miss_email and miss_phone and miss_address:
            # A source keeps at least one way to reach the customer.
            choice = rng.choice(("email", "phone", "address"))
            miss_email, miss_phone, miss_address = choice != "email", choice != "phone", choice != "address"

        record: dict[str, Any] = {
            "source_system": system,
            "source_id": source_id,
            "kind": "person",
            "given_name": given,
            "family_name": family,
        }
        address = dict(person.new_address if moved else person.address)
        if not miss_address:
            if moved and person.new_address is not person.address:
                tags.append("moved")
            if rng.random() < 0.15:
                street = address["street"]
                for long, short in STREET_ABBREVIATIONS:
                    if long in street:
                        address["street"] = street.replace(long, short, 1)
                        tags.append("street_abbrev")
                        break
            if person.country == "GB" and rng.random() < 0.2:
                address["postcode"] = rng.choice(
                    (address["postcode"].lower(), address["postcode"].replace(" ", ""))
                )
                tags.append("postcode_format")
            if rng.random() < 0.1:
                address.pop("region")
            record["addresses"] = [address]
        else:
            tags.append("missing_address")

        if not miss_email:
            email = person.work_email if second else person.email
            if second:
                tags.append("second_email")
            if rng.random() < 0.05:
                local, domain = email.split("@")
                if domain == "gmail.com" and "." in local:
                    email = f"{local.replace('.', '')}@{domain}"
                else:
                    email = email.capitalize()
                tags.append("email_variant")
            record["email"] = email
        else:
            tags.append("missing_email")

        if not miss_phone:
            record["phone"] = self._phone_text(person, national_ok=not miss_address, tags=tags)
        else:
            tags.append("missing_phone")

        if not miss_birth:
            birth = person.birth_date
            if birth.day <= 12 and birth.day != birth.month and rng.random() < 0.04:
                birth = birth.replace(month=birth.day, day=birth.month)
                tags.append("dob_transposed")
            record["birth_date"] = birth.isoformat()
        else:
            tags.append("missing_birth_date")

        if rng.random() < 0.5:
            record["gender"] = person.gender
        record["_tags"] = tags
        return record


def generate(n_records: int, seed: int = 42) -> Dataset:
    """About `n_records` labelled person records (exactly that many), deterministic under `seed`."""
    gen = _Generator(seed)
    rng = gen.rng
    pending: list[tuple[float, Person, int, int]] = []  # (arrival, person, index among its records, count)
    total = 0
    while total < n_records:
        people = gen.household() if rng.random() < HOUSEHOLD_SHARE else gen.single()
        for person in people:
            if total >= n_records:
                break
            count = min(rng.choices(RECORDS_PER_PERSON, weights=RECORDS_WEIGHTS)[0], n_records - total)
            arrivals = sorted(rng.random() for _ in range(count))
            for index, arrival in enumerate(arrivals):
                pending.append((arrival, person, index, count))
            total += count
    pending.sort(key=lambda item: item[0])

    move_at = {p.id: rng.randint(1, 3) for p in gen.persons if p.moves}
    counters = dict.fromkeys(SYSTEMS, 0)
    records: list[dict[str, Any]] = []
    truth: dict[str, str] = {}
    tags: dict[str, list[str]] = {}
    for _, person, index, _count in pending:
        system = rng.choices(SYSTEMS, weights=SYSTEM_WEIGHTS)[0]
        counters[system] += 1
        source_id = f"{system}-{counters[system]:07d}"
        moved = person.moves and index >= move_at[person.id]
        second = person.has_work_email and index > 0 and rng.random() < 0.6
        record = gen.record(person, system, source_id, moved, second)
        tags[source_id] = record.pop("_tags")
        truth[source_id] = person.id
        records.append(record)
    used = set(truth.values())
    persons = {p.id: p.summary() for p in gen.persons if p.id in used}
    return Dataset(seed=seed, records=records, truth=truth, tags=tags, persons=persons)
