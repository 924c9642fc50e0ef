"""The identity benchmark end to end: generate, resolve with ours and with Splink, score, report."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from bench.identity import metrics
from bench.identity.analysis import arrival_analysis, error_analysis
from bench.identity.generator import generate

SIZES = {"small": 2_000, "medium": 20_000, "full": 100_000}
GOAL_PRECISION = 0.995
THRESHOLD = 0.99  # the identity service's default auto-merge threshold


def _scores(predicted: dict[str, Any], truth: dict[str, str]) -> dict[str, Any]:
    return {**metrics.pairwise(predicted, truth).as_dict(), **metrics.cluster_summary(predicted, truth)}


def _point(point: metrics.SweepPoint | None) -> dict[str, float] | None:
    if point is None:
        return None
    return {
        "threshold": point.threshold,
        "precision": point.precision,
        "recall": point.recall,
        "f1": point.f1,
    }


def run_ours_part(dataset: Any, database_url: str | None, *, quiet: bool = False) -> dict[str, Any]:
    from bench.identity.ours import run_ours, with_reviews_accepted

    progress_cb = None
    progress = None
    if not quiet:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        task = progress.add_task("identity service", total=len(dataset.records))
        progress.start()

        def progress_cb(done: int) -> None:
            progress.update(task, completed=done)

    try:
        result = run_ours(dataset.records, database_url, progress_cb)
    finally:
        if progress is not None:
            progress.stop()
    accepted = with_reviews_accepted(result)
    reviews: set[frozenset[Hashable]] = {frozenset((a, b)) for a, b, _ in result.reviews}
    return {
        "database": "postgresql" if (database_url or "").startswith("postgresql") else "sqlite",
        "auto_merge_threshold": THRESHOLD,
        **_scores(result.clusters, dataset.truth),
        "with_reviews_accepted": _scores(accepted, dataset.truth),
        "pending_reviews": len(result.reviews),
        "records_per_second": result.records_per_second,
        "seconds_total": result.seconds_total,
        "seconds_training": result.seconds_training,
        "latency": result.latency_summary(),
        "outcomes": result.outcomes,
        "errors": result.errors,
        "error_examples": result.error_examples,
        "error_analysis": error_analysis(
            result.clusters, dataset.truth, dataset.tags, dataset.persons, dataset.records, reviews=reviews
        ),
        "arrivals": arrival_analysis(result.decisions, result.review_reasons, dataset.truth, result.clusters),
    }


def run_batch_part(dataset: Any, database_url: str | None, *, quiet: bool = False) -> dict[str, Any]:
    """The same records resolved as one import (`BulkResolver`, chunks decided in memory, written in
    bulk): throughput and the quality of the result, which must equal the one-by-one result."""
    from bench.identity.ours import run_batch

    progress = None
    progress_cb = None
    if not quiet:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        task = progress.add_task("identity import", total=len(dataset.records))
        progress.start()

        def progress_cb(done: int) -> None:
            progress.update(task, completed=done)

    try:
        result = run_batch(dataset.records, database_url, progress_cb)
    finally:
        if progress is not None:
            progress.stop()
    return {
        "database": "postgresql" if (database_url or "").startswith("postgresql") else "sqlite",
        **_scores(result.clusters, dataset.truth),
        "records_per_second": result.records_per_second,
        "seconds_total": result.seconds_total,
        "outcomes": result.outcomes,
        "rejected": result.rejected,
        "phases": result.phases,
        "counters": result.counters,
    }


def run_splink_part(dataset: Any, *, seed: int) -> dict[str, Any]:
    from bench.identity.splink_run import clusters_at, run_splink

    result = run_splink(dataset.records, threshold=THRESHOLD, seed=seed)
    points = metrics.sweep(result.edges, dataset.truth)
    best = metrics.best_f1(points)
    at_best = clusters_at(result, list(dataset.truth), best.threshold) if best else result.clusters
    return {
        "version": result.version,
        "settings": result.extra,
        "threshold": THRESHOLD,
        **_scores(result.clusters, dataset.truth),
        "best": {**(_point(best) or {}), **_scores(at_best, dataset.truth)},
        "curve": [_point(p) for p in _thin(points)],
        "seconds_training": result.seconds_training,
        "seconds_predict": result.seconds_predict,
        "seconds_cluster": result.seconds_cluster,
        "seconds_total": result.seconds_total,
        "scored_pairs": result.predicted_pairs,
        "error_analysis": error_analysis(
            result.clusters, dataset.truth, dataset.tags, dataset.persons, dataset.records
        ),
    }


def _thin(points: list[metrics.SweepPoint], keep: int = 40) -> list[metrics.SweepPoint]:
    if len(points) <= keep:
        return points
    step = len(points) / keep
    return [points[int(i * step)] for i in range(keep)] + [points[-1]]


def _goal(ours: dict[str, Any] | None, splink: dict[str, Any] | None) -> dict[str, Any]:
    if ours is None:
        return {"met": None}
    goal: dict[str, Any] = {
        "precision_min": GOAL_PRECISION,
        "precision_ok": ours["precision"] >= GOAL_PRECISION,
    }
    if splink is not None:
        goal["f1_ge_splink_at_threshold"] = ours["f1"] >= splink["f1"]
        goal["f1_ge_splink_best"] = ours["f1"] >= splink["best"]["f1"]
        goal["met"] = goal["precision_ok"] and goal["f1_ge_splink_at_threshold"] and goal["f1_ge_splink_best"]
    else:
        goal["met"] = None
    return goal


BATCH_GOAL_RECORDS_PER_SECOND = 2_000  # at the full size (100,000 records), PostgreSQL


def _batch_goal(batch: dict[str, Any] | None, splink: dict[str, Any] | None, n: int) -> dict[str, Any]:
    if batch is None:
        return {"met": None}
    goal: dict[str, Any] = {
        "records_per_second_min": BATCH_GOAL_RECORDS_PER_SECOND,
        "records_per_second": batch["records_per_second"],
        "judged": n >= SIZES["full"] and batch["database"] == "postgresql",
    }
    if splink is not None:
        goal["splink_records_per_second"] = n / splink["seconds_total"] if splink["seconds_total"] else None
        goal["ratio_to_splink"] = (
            batch["records_per_second"] / goal["splink_records_per_second"]
            if goal["splink_records_per_second"]
            else None
        )
    goal["met"] = batch["records_per_second"] >= BATCH_GOAL_RECORDS_PER_SECOND if goal["judged"] else None
    return goal


def run(
    size: str,
    out_dir: Path,
    database_url: str | None = None,
    *,
    seed: int = 42,
    records: int | None = None,
    ours: bool = True,
    splink: bool = True,
    batch: bool = True,
    batch_database_url: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the benchmark at `size` (small, medium, full), write identity.json and identity.md to
    `out_dir`, print the table (unless `quiet`) and return the figures."""
    from bench.identity.report import markdown, print_report

    n = records or SIZES[size]
    started = time.perf_counter()
    dataset = generate(n, seed)
    figures: dict[str, Any] = {
        "benchmark": "identity",
        "size": size,
        "seed": seed,
        "dataset": dataset.stats(),
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
    }
    figures["ours"] = run_ours_part(dataset, database_url, quiet=quiet) if ours else None
    figures["batch"] = run_batch_part(dataset, batch_database_url, quiet=quiet) if batch else None
    figures["splink"] = run_splink_part(dataset, seed=seed) if splink else None
    figures["goal"] = _goal(figures["ours"], figures["splink"])
    figures["batch_goal"] = _batch_goal(figures["batch"], figures["splink"], n)
    figures["seconds_wall"] = time.perf_counter() - started

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "identity.json").write_text(
        json.dumps(figures, indent=2, ensure_ascii=False, default=str) + "\n"
    )
    (out_dir / "identity.md").write_text(markdown(figures))
    if not quiet:
        print_report(figures)
    return figures
