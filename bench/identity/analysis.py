"""Why a clustering went wrong: missed matches by error kind, false merges by relation.

Missed matches: every true pair (two records of one person) that ended in different clusters is
attributed to each error kind either record carries (`name_typo`, `moved`, …; `(none)` when both
are clean). A kind's *miss rate* is its missed pairs over all true pairs carrying it, so a kind the
matcher handles badly stands out from kinds that are merely frequent. Each missed pair also says
what its two records still shared (`email+phone`, `nothing`, …) and, when known, whether the
matcher had proposed it for review.

False merges: every pair of records of two different people in one cluster is attributed to how
those people relate: `household` (same family name, address and often e-mail), `common_name`
(one of the generator's common names, e.g. two María Garcías), `same_name` (the same names by
chance) or `other`, and to what the two records shared.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from itertools import combinations
from typing import Any

from bench.identity.splink_run import flatten

COMPARED = ("email", "phone", "birth_date", "postcode", "given_name", "family_name")


def _shared(a: dict[str, Any], b: dict[str, Any]) -> str:
    same = [f for f in COMPARED[:4] if a.get(f) and a.get(f) == b.get(f)]
    names = a.get("given_name") == b.get("given_name") and a.get("family_name") == b.get("family_name")
    if names and a.get("given_name"):
        same.append("names")
    return "+".join(same) or "nothing"


def _relation(p: Mapping[str, Any], q: Mapping[str, Any]) -> str:
    if p.get("household") and p.get("household") == q.get("household"):
        return "household"
    same_name = (p.get("given_name"), p.get("family_name")) == (q.get("given_name"), q.get("family_name"))
    if same_name and p.get("common_name") and q.get("common_name"):
        return "common_name"
    if same_name:
        return "same_name"
    if p.get("family_name") == q.get("family_name"):
        return "same_family_name"
    return "other"


def _example(a: dict[str, Any], b: dict[str, Any], tags: Mapping[str, list[str]]) -> dict[str, Any]:
    def short(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if v is not None and k != "full_name"} | {
            "errors": tags.get(row["unique_id"], [])
        }

    return {"left": short(a), "right": short(b)}


def error_analysis(
    predicted: Mapping[str, Hashable],
    truth: Mapping[str, str],
    tags: Mapping[str, list[str]],
    persons: Mapping[str, Mapping[str, Any]],
    records: list[dict[str, Any]],
    *,
    reviews: set[frozenset[Hashable]] | None = None,
    examples: int = 8,
) -> dict[str, Any]:
    flat = {r["source_id"]: flatten(r) for r in records}
    cluster = {rid: predicted.get(rid, ("__alone__", rid)) for rid in truth}

    by_person: dict[str, list[str]] = {}
    for rid, person in truth.items():
        by_person.setdefault(person, []).append(rid)
    total: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    missed_shared: Counter[str] = Counter()
    missed_in_review = 0
    missed_examples: list[dict[str, Any]] = []
    for rids in by_person.values():
        for a, b in combinations(sorted(rids), 2):
            kinds = (set(tags.get(a, [])) | set(tags.get(b, []))) or {"(none)"}
            total.update(kinds)
            if cluster[a] == cluster[b]:
                continue
            missed.update(kinds)
            missed_shared[_shared(flat[a], flat[b])] += 1
            if reviews is not None and frozenset((cluster[a], cluster[b])) in reviews:
                missed_in_review += 1
            if len(missed_examples) < examples:
                missed_examples.append(_example(flat[a], flat[b], tags))

    members: dict[Hashable, list[str]] = {}
    for rid, c in cluster.items():
        members.setdefault(c, []).append(rid)
    false_pairs: Counter[str] = Counter()
    false_people: Counter[str] = Counter()
    false_shared: Counter[str] = Counter()
    false_kinds: Counter[str] = Counter()
    false_examples: list[dict[str, Any]] = []
    for rids in members.values():
        people: dict[str, list[str]] = {}
        for rid in rids:
            people.setdefault(truth[rid], []).append(rid)
        if len(people) < 2:
            continue
        for p, q in combinations(sorted(people), 2):
            relation = _relation(persons.get(p, {}), persons.get(q, {}))
            false_people[relation] += 1
            for a in people[p]:
                for b in people[q]:
                    false_pairs[relation] += 1
                    false_shared[_shared(flat[a], flat[b])] += 1
                    false_kinds.update((set(tags.get(a, [])) | set(tags.get(b, []))) or {"(none)"})
            if len(false_examples) < examples:
                false_examples.append(
                    {"relation": relation, **_example(flat[people[p][0]], flat[people[q][0]], tags)}
                )

    by_kind = [
        {
            "kind": kind,
            "true_pairs": total[kind],
            "missed": missed[kind],
            "miss_rate": missed[kind] / total[kind] if total[kind] else 0.0,
        }
        for kind in sorted(total, key=lambda k: (-missed[k], k))
    ]
    return {
        "missed_pairs": sum(missed_shared.values()),
        "missed_pairs_in_review": missed_in_review if reviews is not None else None,
        "missed_by_kind": by_kind,
        "missed_pairs_still_sharing": dict(missed_shared.most_common()),
        "false_merge_pairs": sum(false_pairs.values()),
        "false_merges_by_relation": {
            relation: {"record_pairs": false_pairs[relation], "people_pairs": false_people[relation]}
            for relation, _ in false_pairs.most_common()
        },
        "false_merge_pairs_sharing": dict(false_shared.most_common()),
        "false_merge_pairs_by_kind": dict(false_kinds.most_common()),
        "examples": {"missed": missed_examples, "false_merges": false_examples},
    }


def _bucket(probability: float | None) -> str:
    if probability is None:
        return "no candidate near"
    for low, label in (
        (0.99, "≥ 0.99"),
        (0.95, "0.95–0.99"),
        (0.9, "0.90–0.95"),
        (0.8, "0.80–0.90"),
        (0.5, "0.50–0.80"),
    ):
        if probability >= low:
            return label
    return "< 0.50"


def arrival_analysis(
    decisions: list[tuple[str, str, float | None]],
    review_reasons: Mapping[str, str],
    truth: Mapping[str, str],
    clusters: Mapping[str, Hashable],
) -> dict[str, Any]:
    """What the service decided for each arriving record, split by what it should have done.

    A record whose person already had a record should join it (`should_match`); the first record
    of a person should create a customer (`should_create`). Decisions: matched (to the right or a
    wrong person), review (with the service's reason), created (no candidate came near the review
    threshold — a blocking miss or a low score: the service scores below it no further — or, with a
    candidate's probability, one was near).
    """
    seen: dict[str, list[str]] = {}
    should_match: Counter[str] = Counter()
    should_create: Counter[str] = Counter()
    best_of_missed: Counter[str] = Counter()
    for source_id, outcome, best in decisions:
        person = truth[source_id]
        earlier = seen.setdefault(person, [])
        if earlier:
            if outcome == "matched":
                right = any(clusters.get(e) == clusters.get(source_id) for e in earlier)
                key = "matched the right person" if right else "matched a wrong person"
            elif outcome == "review":
                key = f"review: {review_reasons.get(source_id) or '?'}"
            elif outcome == "created":
                key = "created (no candidate near)" if best is None else "created (candidate below review)"
            else:
                key = outcome
            should_match[key] += 1
            if outcome != "matched":
                best_of_missed[_bucket(best)] += 1
        else:
            if outcome == "matched":
                key = "matched someone else (false merge)"
            elif outcome == "review":
                key = f"review: {review_reasons.get(source_id) or '?'}"
            else:
                key = outcome
            should_create[key] += 1
        earlier.append(source_id)
    return {
        "should_match": dict(should_match.most_common()),
        "should_match_not_matched_best_probability": dict(best_of_missed.most_common()),
        "should_create": dict(should_create.most_common()),
    }
