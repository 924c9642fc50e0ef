"""Splink (DuckDB backend) on the same records, as a reference for the identity matcher.

The records are flattened and cleaned the way a Splink user would before linking: names lower-cased
without accents, hyphens or apostrophes; e-mail lower-cased; phone as E.164 digits (through
`phonenumbers`, with the address country as the region, as the identity service does); postcode
upper-cased without spaces; city like names. The model:

* names: `NameComparison` on the given and on the family name (exact with term frequencies, so a
  common name counts less; Jaro-Winkler ≥ 0.92 / 0.88 / 0.7);
* `EmailComparison`; phone: exact / Levenshtein ≤ 1; `DateOfBirthComparison`;
* postcode: exact / same first three characters / same city (the partial levels of Splink's
  `PostcodeComparison` read British postcodes only, so Spanish, German and French codes would
  agree exactly or not at all).

`name_comparison="forename_surname"` uses `ForenameSurnameComparison` instead (it knows swapped
names). On generated data (seed 7, 5,000 records) the two per-name comparisons with a third EM
session gave Splink its best F1 (0.905 at its best threshold against 0.870), so that is the
default: the reference should be Splink at its best.

Blocking mirrors the identity service's keys: e-mail, phone, family name + birth date, given name
+ birth date, postcode + family name, birth date + postcode, full name, and swapped names.
Training: probability of two random records matching from deterministic rules, u by random
sampling, m by expectation maximisation in three sessions (blocked on e-mail, on phone, on family
name + birth date). Predictions are kept from a low floor so the whole precision/recall curve can
be drawn, then clustered at the threshold.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

PREDICT_FLOOR = 0.01


def _clean_name(value: str | None) -> str | None:
    if not value:
        return None
    decomposed = unicodedata.normalize("NFKD", value)
    text = "".join(c for c in decomposed if not unicodedata.combining(c)).replace("ß", "ss").lower()
    text = text.replace("'", "").replace("’", "")
    text = re.sub(r"[^a-z0-9]+", " ", text).strip()
    return text or None


def _phone_digits(value: str | None, region: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if region is None and value.startswith("00"):
        value = "+" + value[2:]  # the international prefix, as the identity service reads it
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        digits = re.sub(r"\D", "", value)
        return digits or None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One record as Splink's input row."""
    address = (record.get("addresses") or [{}])[0]
    country = address.get("country")
    given, family = _clean_name(record.get("given_name")), _clean_name(record.get("family_name"))
    postcode = address.get("postcode")
    return {
        "unique_id": record["source_id"],
        "given_name": given,
        "family_name": family,
        "full_name": f"{given or ''} {family or ''}".strip() or None,
        "email": (record.get("email") or "").strip().lower() or None,
        "phone": _phone_digits(record.get("phone"), country),
        "birth_date": record.get("birth_date"),
        "postcode": re.sub(r"\s+", "", postcode).upper() if postcode else None,
        "city": _clean_name(address.get("locality")),
    }


@dataclass
class SplinkResult:
    version: str
    clusters: dict[str, str]  # unique_id → cluster at the threshold
    edges: list[tuple[str, str, float]]  # every predicted pair above the floor
    threshold: float
    seconds_training: float
    seconds_predict: float
    seconds_cluster: float
    predicted_pairs: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds_total(self) -> float:
        return self.seconds_training + self.seconds_predict + self.seconds_cluster


def _settings(name_comparison: str = "name") -> Any:
    import splink.blocking_rule_library as brl
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    names: list[Any]
    if name_comparison == "forename_surname":
        names = [
            cl.ForenameSurnameComparison(
                "given_name", "family_name", forename_surname_concat_col_name="full_name"
            )
        ]
    else:
        names = [
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("family_name").configure(term_frequency_adjustments=True),
        ]
    postcode = cl.CustomComparison(
        output_column_name="postcode",
        comparison_levels=[
            cll.And(cll.NullLevel("postcode"), cll.NullLevel("city")),
            cll.ExactMatchLevel("postcode"),
            cll.CustomLevel(
                "substr(postcode_l, 1, 3) = substr(postcode_r, 1, 3)", label_for_charts="postcode area"
            ),
            cll.ExactMatchLevel("city"),
            cll.ElseLevel(),
        ],
    )
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=[
            *names,
            cl.EmailComparison("email"),
            cl.LevenshteinAtThresholds("phone", 1),
            cl.DateOfBirthComparison("birth_date", input_is_string=True),
            postcode,
        ],
        blocking_rules_to_generate_predictions=[
            block_on("email"),
            block_on("phone"),
            block_on("family_name", "birth_date"),
            block_on("given_name", "birth_date"),
            block_on("postcode", "family_name"),
            block_on("birth_date", "postcode"),
            block_on("given_name", "family_name"),
            brl.CustomRule("l.given_name = r.family_name and l.family_name = r.given_name"),
        ],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


def run_splink(
    records: list[dict[str, Any]],
    *,
    threshold: float = 0.99,
    seed: int = 42,
    name_comparison: str = "name",
    also_cluster_at: float | None = None,
    em_rules: tuple[tuple[str, ...], ...] = (("email",), ("phone",), ("family_name", "birth_date")),
    u_pairs: float | None = None,
) -> SplinkResult:
    """Train, predict and cluster; the timings cover exactly those three steps."""
    import splink
    from splink import DuckDBAPI, Linker, block_on

    rows = [flatten(r) for r in records]
    db_api = DuckDBAPI()
    frame = db_api.register(rows, dataset_display_name="bench_records")
    start = time.perf_counter()
    linker = Linker(frame, _settings(name_comparison), log_level=logging.ERROR)
    training = linker.training
    training.estimate_probability_two_random_records_match(
        [
            block_on("given_name", "family_name", "birth_date"),
            block_on("email", "given_name"),
            block_on("phone"),
        ],
        recall=0.7,
    )
    training.estimate_u_using_random_sampling(
        max_pairs=u_pairs or max(5e6, min(5e7, 500.0 * len(rows))), seed=seed
    )
    for columns in em_rules:
        training.estimate_parameters_using_expectation_maximisation(block_on(*columns))
    trained = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=PREDICT_FLOOR)
    predicted = time.perf_counter()
    clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=threshold
    )
    cluster_rows = clustered.as_duckdbpyrelation().select("unique_id, cluster_id").fetchall()
    done = time.perf_counter()

    edge_rows = (
        predictions.as_duckdbpyrelation().select("unique_id_l, unique_id_r, match_probability").fetchall()
    )
    edges = [(str(a), str(b), float(p)) for a, b, p in edge_rows]
    extra: dict[str, Any] = {"name_comparison": name_comparison, "em_blocking": [list(r) for r in em_rules]}
    if also_cluster_at is not None:
        other = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=also_cluster_at
        )
        extra["clusters_at"] = {
            str(u): str(c) for u, c in other.as_duckdbpyrelation().select("unique_id, cluster_id").fetchall()
        }
    return SplinkResult(
        version=splink.__version__,
        clusters={str(u): str(c) for u, c in cluster_rows},
        edges=edges,
        threshold=threshold,
        seconds_training=trained - start,
        seconds_predict=predicted - trained,
        seconds_cluster=done - predicted,
        predicted_pairs=len(edges),
        extra=extra,
    )


def clusters_at(result: SplinkResult, truth_ids: list[str], threshold: float) -> dict[str, Hashable]:
    """Connected components of the result's edges at another threshold (the same rule as Splink's)."""
    parent = {r: r for r in truth_ids}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, p in result.edges:
        if p >= threshold and a in parent and b in parent:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[rb] = ra
    return {r: find(r) for r in truth_ids}
