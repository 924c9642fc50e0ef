"""Identity's domain rules, free of I/O: how a golden record is assembled from its source records.

Survivorship, per field:
- a value a source *verified* is never overwritten by an unverified one (most recent verified wins);
- otherwise the field's rule decides: `most_trusted` (the source system's trust, ties to the most
  recent), `most_recent` (when the source observed it), `most_complete` (most filled-in);
- collections are unions: addresses (most recent first, duplicates dropped), external ids,
  attributes (per key, most recent);
- status is `customer` as soon as any source says so.

Every chosen value is recorded in the provenance: which source record, and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Rule(StrEnum):
    MOST_TRUSTED = "most_trusted"
    MOST_RECENT = "most_recent"
    MOST_COMPLETE = "most_complete"


SCALAR_RULES: dict[str, Rule] = {
    "given_name": Rule.MOST_TRUSTED,
    "family_name": Rule.MOST_TRUSTED,
    "organisation_name": Rule.MOST_TRUSTED,
    "email": Rule.MOST_RECENT,
    "phone": Rule.MOST_RECENT,
    "birth_date": Rule.MOST_TRUSTED,
    "gender": Rule.MOST_TRUSTED,
    "language": Rule.MOST_RECENT,
    "national_id": Rule.MOST_TRUSTED,
    "branch_id": Rule.MOST_RECENT,
}
GOLDEN_FIELDS = (*SCALAR_RULES, "addresses", "external_ids", "attributes", "status", "kind")


@dataclass(frozen=True, slots=True)
class SourceView:
    """What survivorship needs of a source record."""

    id: str
    source_system: str
    trust: int
    observed_at: datetime
    verified: frozenset[str]
    data: dict[str, Any]


@dataclass
class Golden:
    values: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _completeness(value: Any) -> int:
    if isinstance(value, dict):
        return sum(1 for v in value.values() if _present(v))
    return len(str(value))


def _pick(field_name: str, rule: Rule, records: Sequence[SourceView]) -> tuple[SourceView, str] | None:
    having = [r for r in records if _present(r.data.get(field_name))]
    if not having:
        return None
    verified = [r for r in having if field_name in r.verified]
    if verified:
        return max(verified, key=lambda r: (r.observed_at, r.trust)), "verified"
    if rule is Rule.MOST_TRUSTED:
        return max(having, key=lambda r: (r.trust, r.observed_at)), rule.value
    if rule is Rule.MOST_COMPLETE:
        return max(having, key=lambda r: (_completeness(r.data[field_name]), r.observed_at)), rule.value
    return max(having, key=lambda r: (r.observed_at, r.trust)), rule.value


def _address_key(address: dict[str, Any]) -> tuple[str, ...]:
    return tuple(
        str(address.get(k) or "").strip().casefold()
        for k in ("street_number", "street", "postcode", "country")
    )


def assemble(records: Sequence[SourceView], rules: dict[str, Rule] | None = None) -> Golden:
    """The golden record of a customer from its source records (at least one)."""
    if not records:
        raise ValueError("a golden record needs at least one source record")
    rules = {**SCALAR_RULES, **(rules or {})}
    if len(records) == 1:
        return _assemble_one(records[0], rules)
    return _assemble_many(records, rules)


def _assemble_one(record: SourceView, rules: dict[str, Rule]) -> Golden:
    """`_assemble_many` of one record (a new customer, most of an import's), without its sorting and
    picking: every present value is the record's own."""
    data = record.data
    golden = Golden()
    values, provenance = golden.values, golden.provenance
    for name, rule in rules.items():
        value = data.get(name)
        if not _present(value):
            values[name] = None
            continue
        values[name] = value
        provenance[name] = {
            "source_record_id": record.id,
            "source_system": record.source_system,
            "rule": "verified" if name in record.verified else rule.value,
        }
    addresses: list[dict[str, Any]] = []
    seen: set[tuple[str, ...]] = set()
    for address in data.get("addresses") or []:
        key = _address_key(address)
        if key not in seen:
            seen.add(key)
            addresses.append(address)
    values["addresses"] = addresses
    values["external_ids"] = {system: [value] for system, value in (data.get("external_ids") or {}).items()}
    values["attributes"] = dict(data.get("attributes") or {})
    values["status"] = "customer" if data.get("status") == "customer" else "prospect"
    values["kind"] = data.get("kind", "person")
    return golden


def _assemble_many(records: Sequence[SourceView], rules: dict[str, Rule]) -> Golden:
    golden = Golden()
    for name, rule in rules.items():
        picked = _pick(name, rule, records)
        if picked is None:
            golden.values[name] = None
            continue
        source, why = picked
        golden.values[name] = source.data[name]
        golden.provenance[name] = {
            "source_record_id": source.id,
            "source_system": source.source_system,
            "rule": why,
        }

    newest_first = sorted(records, key=lambda r: r.observed_at, reverse=True)
    addresses: list[dict[str, Any]] = []
    seen: set[tuple[str, ...]] = set()
    for record in newest_first:
        for address in record.data.get("addresses") or []:
            key = _address_key(address)
            if key not in seen:
                seen.add(key)
                addresses.append(address)
    golden.values["addresses"] = addresses

    external: dict[str, list[str]] = {}
    for record in sorted(records, key=lambda r: r.observed_at):
        for system, value in (record.data.get("external_ids") or {}).items():
            external.setdefault(system, [])
            if value not in external[system]:
                external[system].append(value)
    golden.values["external_ids"] = external

    attributes: dict[str, Any] = {}
    for record in sorted(records, key=lambda r: r.observed_at):
        attributes.update(record.data.get("attributes") or {})
    golden.values["attributes"] = attributes

    golden.values["status"] = (
        "customer" if any(r.data.get("status") == "customer" for r in records) else "prospect"
    )
    golden.values["kind"] = min(records, key=lambda r: r.observed_at).data.get("kind", "person")
    return golden


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
