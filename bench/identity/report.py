"""The identity benchmark's figures as a rich table on the terminal and as a markdown section."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

DASH = "—"


def _pct(x: float | None) -> str:
    return DASH if x is None else f"{x:.4f}"


def _num(x: float | None, digits: int = 1) -> str:
    return DASH if x is None else f"{x:,.{digits}f}"


def _columns(figures: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    ours, splink = figures.get("ours"), figures.get("splink")
    columns: list[tuple[str, dict[str, Any] | None]] = []
    if ours is not None:
        columns += [
            ("ours (auto-merge ≥ 0.99)", ours),
            ("ours + every review accepted", ours["with_reviews_accepted"]),
        ]
    if splink is not None:
        columns += [
            (f"Splink {splink['version']} @ {splink['threshold']}", splink),
            (f"Splink best F1 @ {splink['best']['threshold']:.4f}", splink["best"]),
        ]
    return columns


def _rows(figures: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    columns = _columns(figures)
    ours, splink = figures.get("ours"), figures.get("splink")
    header = ["", *(name for name, _ in columns)]
    rows: list[list[str]] = []
    for label, key in (("precision", "precision"), ("recall", "recall"), ("F1", "f1")):
        rows.append([label, *(_pct(col.get(key) if col else None) for _, col in columns)])
    rows.append(
        ["clusters / people", *(f"{col['clusters']:,} / {col['people']:,}" for _, col in columns if col)]
    )

    def ours_only(value: str) -> list[str]:
        return [value if name.startswith("ours (") else DASH for name, _ in columns]

    def splink_only(value: str) -> list[str]:
        return [value if name.startswith("Splink") and "best" not in name else DASH for name, _ in columns]

    if ours is not None:
        latency = ours["latency"]
        rows.append(["records/s", *ours_only(_num(ours["records_per_second"]))])
        for label, key in (
            ("latency median ms", "median_ms"),
            ("latency p95 ms", "p95_ms"),
            ("latency p99 ms", "p99_ms"),
        ):
            rows.append([label, *ours_only(_num(latency.get(key), 2))])
        rows.append(["pending reviews", *ours_only(f"{ours['pending_reviews']:,}")])
    if splink is not None:
        rows.append(["seconds (train + predict + cluster)", *splink_only(_num(splink["seconds_total"], 2))])
        if ours is not None:
            rows.append(["seconds (ingest loop)", *ours_only(_num(ours["seconds_total"], 2))])
    return header, rows


def _goal_text(figures: dict[str, Any]) -> str:
    goal = figures["goal"]
    ours, splink = figures.get("ours"), figures.get("splink")
    if ours is None:
        return "Goal: F1 ≥ Splink's and precision ≥ 0.995 (ours not run)."
    parts = [
        f"precision {ours['precision']:.4f} {'≥' if goal['precision_ok'] else '<'} {goal['precision_min']}"
    ]
    if splink is not None:
        best = splink["best"]["f1"]
        parts.append(
            f"F1 {ours['f1']:.4f} vs Splink {splink['f1']:.4f} @ {splink['threshold']} "
            f"and {best:.4f} at its best"
        )
    verdict = {True: "MET", False: "NOT MET", None: "not judged"}[goal["met"]]
    return f"Goal (F1 ≥ Splink's, precision ≥ 0.995): {verdict} — " + "; ".join(parts) + "."


def _batch_text(figures: dict[str, Any]) -> list[str]:
    batch, goal = figures.get("batch"), figures.get("batch_goal") or {}
    if batch is None:
        return []
    splink = figures.get("splink")
    lines = [
        f"Batch resolution (an import, {batch['database']}): {batch['records_per_second']:,.0f} records/s "
        f"({batch['seconds_total']:,.1f} s for {figures['dataset']['records']:,} records); "
        f"precision {batch['precision']:.4f}, recall {batch['recall']:.4f}, F1 {batch['f1']:.4f}."
    ]
    if splink is not None and goal.get("splink_records_per_second"):
        lines.append(
            f"Splink on the same records: {splink['seconds_total']:,.1f} s "
            f"({goal['splink_records_per_second']:,.0f} records/s); "
            f"ours ÷ Splink = {goal['ratio_to_splink']:.2f}."
        )
    verdict = {True: "MET", False: "NOT MET", None: "not judged at this size/database"}[goal.get("met")]
    lines.append(
        f"Goal (≥ {goal.get('records_per_second_min', 0):,} records/s at 100,000 on PostgreSQL): {verdict}."
    )
    phases = batch.get("phases") or {}
    if phases:
        top = sorted(((k, v) for k, v in phases.items() if "." not in k), key=lambda kv: -kv[1])
        lines.append("Time per phase (s, phases overlap): " + ", ".join(f"{k} {v:,.1f}" for k, v in top))
    return lines


def _analysis_rows(analysis: dict[str, Any], top: int = 18) -> list[list[str]]:
    return [
        [k["kind"], f"{k['true_pairs']:,}", f"{k['missed']:,}", f"{k['miss_rate']:.1%}"]
        for k in analysis["missed_by_kind"][:top]
    ]


def print_report(figures: dict[str, Any], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=132)
    stats = figures["dataset"]
    header, rows = _rows(figures)
    table = Table(
        title=(
            f"Identity matching — {figures['size']}: {stats['records']:,} records, "
            f"{stats['people']:,} people, "
            f"{stats['duplicate_pairs']:,} true pairs (seed {figures['seed']})"
        )
    )
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(_goal_text(figures))
    for line in _batch_text(figures):
        console.print(line)
    ours = figures.get("ours")
    if ours is None:
        return
    analysis = ours["error_analysis"]
    missed = Table(title=f"Ours: missed matches by error kind ({analysis['missed_pairs']:,} missed pairs)")
    for name in ("error kind (either record)", "true pairs", "missed", "miss rate"):
        missed.add_column(name, justify="left" if name.startswith("error") else "right")
    for row in _analysis_rows(analysis, top=len(analysis["missed_by_kind"])):
        missed.add_row(*row)
    console.print(missed)
    if analysis.get("missed_pairs_in_review") is not None:
        console.print(f"Missed pairs proposed for review: {analysis['missed_pairs_in_review']:,}")
    console.print("Missed pairs still sharing: " + _counts(analysis["missed_pairs_still_sharing"]))
    merges = Table(title=f"Ours: false merges ({analysis['false_merge_pairs']:,} record pairs)")
    for name in ("relation of the two people", "record pairs", "people pairs"):
        merges.add_column(name, justify="left" if name.startswith("relation") else "right")
    for relation, counts in analysis["false_merges_by_relation"].items():
        merges.add_row(relation, f"{counts['record_pairs']:,}", f"{counts['people_pairs']:,}")
    console.print(merges)
    if analysis["false_merge_pairs"]:
        console.print("False-merge pairs sharing: " + _counts(analysis["false_merge_pairs_sharing"]))
    arrivals = ours.get("arrivals")
    if arrivals:
        decided = Table(title="Ours: decision on each arriving record")
        for name in ("should have", "decision", "records"):
            decided.add_column(name, justify="right" if name == "records" else "left")
        for should, key in (("joined its person", "should_match"), ("created a customer", "should_create")):
            for decision, count in arrivals[key].items():
                decided.add_row(should, decision, f"{count:,}")
        console.print(decided)
        console.print(
            "Best candidate's probability when a record should have joined but did not: "
            + _counts(arrivals["should_match_not_matched_best_probability"])
        )
    splink = figures.get("splink")
    if splink is not None:
        theirs = splink["error_analysis"]
        console.print(
            f"For comparison, Splink @ {splink['threshold']}: {theirs['missed_pairs']:,} missed pairs, "
            f"{theirs['false_merge_pairs']:,} false-merge pairs ("
            + ", ".join(
                f"{relation} {c['record_pairs']:,}"
                for relation, c in theirs["false_merges_by_relation"].items()
            )
            + ")"
        )
    if ours["errors"]:
        console.print(f"[red]Records refused by the service: {ours['errors']}[/red]")


def _counts(counts: dict[str, int], top: int = 8) -> str:
    items = list(counts.items())[:top]
    return ", ".join(f"{k} {v:,}" for k, v in items) or "none"


def markdown(figures: dict[str, Any]) -> str:
    stats = figures["dataset"]
    header, rows = _rows(figures)
    lines = [
        "## Identity matching",
        "",
        f"{stats['records']:,} generated person records ({figures['size']}, seed {figures['seed']}) of "
        f"{stats['people']:,} people, {stats['duplicate_pairs']:,} true duplicate pairs; hard negatives: "
        f"{stats['people_in_households']:,} people in {stats['households']:,} households, "
        f"{stats['people_with_common_names']:,} with common names. Pairwise precision, recall and F1; "
        "ours resolves the records one at a time through `ingest`, as live traffic.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        _goal_text(figures),
    ]
    for line in _batch_text(figures):
        lines += ["", line]
    ours = figures.get("ours")
    if ours is not None:
        analysis = ours["error_analysis"]
        lines += [
            "",
            f"Ours, missed matches by error kind ({analysis['missed_pairs']:,} missed pairs"
            + (
                f", {analysis['missed_pairs_in_review']:,} of them proposed for review"
                if analysis.get("missed_pairs_in_review") is not None
                else ""
            )
            + "):",
            "",
            "| error kind (either record) | true pairs | missed | miss rate |",
            "| --- | ---: | ---: | ---: |",
            *("| " + " | ".join(row) + " |" for row in _analysis_rows(analysis, top=10)),
            "",
            "Missed pairs still sharing: " + _counts(analysis["missed_pairs_still_sharing"]) + ".",
            "",
            "Ours, decision on each arriving record that should have joined its person: "
            + _counts(ours.get("arrivals", {}).get("should_match", {}))
            + "; best candidate's probability when it did not: "
            + _counts(ours.get("arrivals", {}).get("should_match_not_matched_best_probability", {}))
            + ".",
            "",
            f"Ours, false merges: {analysis['false_merge_pairs']:,} record pairs"
            + (
                " ("
                + ", ".join(
                    f"{relation} {c['record_pairs']:,}"
                    for relation, c in analysis["false_merges_by_relation"].items()
                )
                + ")"
                if analysis["false_merge_pairs"]
                else ""
            )
            + ".",
        ]
    return "\n".join(lines) + "\n"
