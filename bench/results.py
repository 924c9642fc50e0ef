"""The common result schema every benchmark writes to `bench/out/<name>.json`, read by `bench.report`.

    {"benchmark": "e2e", "title": "…", "written_at": "…", "figures": [Figure…], "raw": {…}}

A `Figure` is one measured figure: its value (for a latency, the statistic the target is about) with
median / p95 / p99 where it is a latency, the baseline measured in the same run, the ratio
value / baseline, the target and whether it was met. `met` is None when there is no target — and
never rounded in our favour: a target missed is reported missed, with the figure.

Benchmarks written before this schema keep their own JSON shapes; `legacy_figures` turns each of
them into figures when the report is rendered (one adapter per file name, in this module).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    name: str
    unit: str
    value: float | None
    median: float | None = None
    p95: float | None = None
    p99: float | None = None
    baseline: float | None = None
    baseline_name: str | None = None
    target: float | None = None
    higher_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline or _nan(self.value) or _nan(self.baseline):
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        if self.value is None or _nan(self.value):
            return None  # not measured: the report says so, never "met"
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}

    def line(self) -> str:
        text = f"{self.name}: {fmt(self.value)} {self.unit}"
        if self.p99 is not None:
            text += f" (median {fmt(self.median)}, p95 {fmt(self.p95)}, p99 {fmt(self.p99)} ms)"
        if self.baseline is not None:
            text += f"; baseline {fmt(self.baseline)} ({self.baseline_name}), ratio {fmt(self.ratio, 2)}"
        if self.target is not None:
            sign = "≥" if self.higher_is_better else "≤"
            verdict = "not measured" if self.met is None else "met" if self.met else "UNMET"
            text += f"; target {sign} {fmt(self.target)}: {verdict}"
        return text


def _nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)


def fmt(value: float | None, digits: int | None = None) -> str:
    if value is None or _nan(value):
        return "—"
    if digits is not None:
        return f"{value:,.{digits}f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def from_json(data: dict[str, Any]) -> Figure:
    keys = Figure.__dataclass_fields__
    return Figure(**{k: v for k, v in data.items() if k in keys})


def write_result(out: Path, name: str, title: str, figures: list[Figure], raw: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    document = {
        "benchmark": name,
        "title": title,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "figures": [f.to_json() for f in figures],
        "raw": raw,
    }
    path.write_text(json.dumps(document, indent=2, default=str, allow_nan=True) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------
# The benchmarks written before the schema
# ---------------------------------------------------------------------------------------------------


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def legacy_figures(name: str, data: dict[str, Any]) -> list[Figure]:
    """Figures from the JSON of a benchmark that predates the schema (by its file name)."""
    if name == "interactions_ingest":
        return [
            Figure(
                "Bulk contacts through the gateway, end to end (stored + in Kafka)",
                "contacts/s",
                data.get("end_to_end_per_second"),
                baseline=data.get("baseline_insert_per_second"),
                baseline_name="plain INSERT … VALUES",
                target=data.get("goal_per_second", 5_000),
                note=f"{data.get('items', 0):,} contacts, batches of {data.get('batch')}",
            ),
            Figure(
                "Bulk contacts: batch latency",
                "ms",
                _get(data, "batch_latency_ms", "median"),
                median=_get(data, "batch_latency_ms", "median"),
                p99=_get(data, "batch_latency_ms", "p99"),
            ),
        ]
    if name == "interactions_timeline":
        first, base = data.get("first_page", {}), data.get("baseline_select", {})
        out = [
            Figure(
                f"Timeline first page ({data.get('events', 0):,} contacts), through the API",
                "ms",
                first.get("p99"),
                median=first.get("median"),
                p95=first.get("p95"),
                p99=first.get("p99"),
                baseline=base.get("p99"),
                baseline_name="bare SELECT p99",
                target=20.0,
                higher_is_better=False,
            ),
        ]
        for key in ("filtered_first_page", "page_21"):
            if key in data:
                d = data[key]
                out.append(
                    Figure(
                        f"Timeline {key.replace('_', ' ')}",
                        "ms",
                        d.get("p99"),
                        median=d.get("median"),
                        p95=d.get("p95"),
                        p99=d.get("p99"),
                        baseline=base.get("p99"),
                        baseline_name="bare SELECT p99",
                    )
                )
        return out
    if name == "loyalty_ledger":
        spread, hot, redeem = data.get("spread", {}), data.get("hot_account", {}), data.get("redemption", {})
        return [
            Figure(
                "Ledger postings, spread over members (group commit)",
                "postings/s",
                spread.get("per_s"),
                baseline=spread.get("baseline_update_per_s"),
                baseline_name="plain single-row UPDATE",
                target=spread.get("target_per_s"),
            ),
            Figure(
                "Ledger postings, spread, one transaction per posting",
                "postings/s",
                spread.get("one_transaction_per_posting_per_s"),
                baseline=spread.get("baseline_update_per_s"),
                baseline_name="plain single-row UPDATE",
            ),
            Figure(
                "Ledger postings, one hot account",
                "postings/s",
                hot.get("per_s"),
                baseline=hot.get("baseline_update_per_s"),
                baseline_name="plain UPDATE of one row",
                target=hot.get("target_per_s"),
            ),
            Figure(
                "Redemption at the ledger",
                "ms",
                redeem.get("p99_ms"),
                median=redeem.get("median_ms"),
                p95=redeem.get("p95_ms"),
                p99=redeem.get("p99_ms"),
                target=redeem.get("target_p99_ms"),
                higher_is_better=False,
            ),
            Figure(
                "Ledger books check (drifted accounts)",
                "accounts",
                _get(data, "books", "drifted_accounts"),
                target=0,
                higher_is_better=False,
            ),
        ]
    if name == "loyalty_redemption":
        pair, base = data.get("reserve_and_confirm", {}), data.get("baseline_two_health_requests", {})
        return [
            Figure(
                "Redemption through the API (reserve + confirm)",
                "ms",
                pair.get("p99_ms"),
                median=pair.get("median_ms"),
                p95=pair.get("p95_ms"),
                p99=pair.get("p99_ms"),
                baseline=base.get("p99_ms"),
                baseline_name="two GET /health p99",
                target=pair.get("target_p99_ms"),
                higher_is_better=False,
            ),
        ]
    if name == "segmentation_batch_rule":
        return [
            Figure(
                "Rule segment in batch: compiled / hand-written SQL",
                "ratio",
                data.get("ratio"),
                baseline=data.get("hand_written_median_ms"),
                baseline_name="hand-written SQL median (ms)",
                target=data.get("target_ratio", 1.5),
                higher_is_better=False,
                note=f"compiled median {data.get('compiled_median_ms')} ms, {data.get('customers', 0):,} "
                f"customers, {data.get('purchases', 0):,} purchases",
            ),
        ]
    if name == "segmentation_features":
        event, only = (
            data.get("event_to_features_value_segments_ms", {}),
            data.get("event_to_features_only_ms", {}),
        )
        base = data.get("baseline_event_ms", {})
        return [
            Figure(
                "One purchase event to features, value, risk, ladder and rule segments",
                "ms",
                event.get("p99"),
                median=event.get("median"),
                p95=event.get("p95"),
                p99=event.get("p99"),
                baseline=base.get("p99"),
                baseline_name="bare INSERT + UPDATE p99",
                target=20.0,
                higher_is_better=False,
                note=f"{data.get('customers', 0):,} customers, {data.get('purchases', 0):,} purchases; "
                "target judged on the p99",
            ),
            Figure(
                "One purchase event to features only",
                "ms",
                only.get("p99"),
                median=only.get("median"),
                p95=only.get("p95"),
                p99=only.get("p99"),
                baseline=base.get("p99"),
                baseline_name="bare INSERT + UPDATE p99",
            ),
            Figure(
                "Full recompute of RFM, CLV, tiers and every segment",
                "s",
                data.get("full_recompute_seconds"),
                baseline=data.get("baseline_aggregate_seconds"),
                baseline_name="bare aggregate over the purchases (s)",
                target=60.0,
                higher_is_better=False,
                note=f"{data.get('customers', 0):,} customers, {data.get('purchases', 0):,} purchases; "
                "target at 1,000,000 / 20,000,000",
            ),
            Figure(
                "The same full recompute a day later (the daily scheduled pass)",
                "s",
                data.get("day_later_recompute_seconds"),
                baseline=data.get("baseline_aggregate_seconds"),
                baseline_name="bare aggregate over the purchases (s)",
                target=60.0,
                higher_is_better=False,
                note=f"after {data.get('day_purchases', 0):,} purchases of a day arrived through the "
                "consumer; the row above is the first pass after a replay (every customer's figures move)",
            ),
            Figure(
                "Features rebuilt from the facts, then value and segments",
                "s",
                data.get("recompute_seconds"),
                note=f"peak memory {data.get('peak_rss_mib', 0):,.0f} MiB",
            ),
        ]
    if name == "identity":
        return _identity(data)
    if name == "identity_scale":
        ingest, base = data.get("ingest_ms", {}), data.get("baseline_ms", {})
        return [
            Figure(
                "One record matched and stored against the customer base",
                "ms",
                ingest.get("p99"),
                median=ingest.get("median"),
                p95=ingest.get("p95"),
                p99=ingest.get("p99"),
                baseline=base.get("p99"),
                baseline_name="indexed SELECT + INSERT p99",
                target=25.0,
                higher_is_better=False,
            ),
        ]
    return _generic(data)


def _identity(data: dict[str, Any]) -> list[Figure]:
    out: list[Figure] = []
    ours, splink, batch = data.get("ours") or {}, data.get("splink") or {}, data.get("batch") or {}
    f1 = _find(ours, "f1")
    splink_f1 = _find(splink, "f1")
    if f1 is not None:
        out.append(
            Figure(
                "Identity matching F1 (ours, auto-merge threshold)",
                "F1",
                f1,
                baseline=splink_f1,
                baseline_name="Splink, same records",
                note=f"{_get(data, 'dataset', 'records')} records",
            )
        )
    goal = data.get("batch_goal") or {}
    rate = goal.get("records_per_second") or _find(batch, "records_per_second")
    if rate is not None:
        judged = goal.get("judged", True)
        out.append(
            Figure(
                "Identity batch resolution (import)",
                "records/s",
                rate,
                baseline=goal.get("splink_records_per_second"),
                baseline_name="Splink, same records",
                target=float(goal.get("records_per_second_min", 2_000)) if judged else None,
                note="" if judged else "target 2,000/s judged at the full size only",
            )
        )
    return out or _generic(data)


def _find(data: Any, suffix: str) -> float | None:
    """The first number whose key ends with `suffix`, depth first."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and str(key).endswith(suffix):
                return float(value)
        for value in data.values():
            found = _find(value, suffix)
            if found is not None:
                return found
    return None


def _generic(data: dict[str, Any]) -> list[Figure]:
    """Latency summaries ({median, p95?, p99}) found at the first two levels, as figures without targets."""
    out: list[Figure] = []
    for key, value in data.items():
        if isinstance(value, dict):
            median = value.get("median", value.get("median_ms"))
            p99 = value.get("p99", value.get("p99_ms"))
            if isinstance(median, int | float) and isinstance(p99, int | float):
                target = value.get("target_p99_ms") or value.get("target_ms")
                out.append(
                    Figure(
                        key.replace("_", " "),
                        "ms",
                        float(p99),
                        median=float(median),
                        p95=value.get("p95", value.get("p95_ms")),
                        p99=float(p99),
                        target=target,
                        higher_is_better=False,
                    )
                )
    return out
