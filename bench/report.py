"""Render every benchmark result in `bench/out/*.json` as one report: `bench/report.md`,
`bench/out/report.json` and charts (`bench/out/charts/*.png`).

For each figure: the value (for a latency its median, p95 and p99), the baseline measured in the same
run, the ratio, the target and met / UNMET. Results in the common schema (`bench.results`) carry their
figures; older JSON shapes are converted by `bench.results.legacy_figures`.

    python -m bench.report --out bench/out --report bench/report.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results import Figure, fmt, from_json, legacy_figures

SECTIONS = [  # file stem → section title, in report order
    ("e2e", "End to end under load"),
    ("interactions_ingest", "Interactions: bulk contact ingestion"),
    ("interactions_timeline", "Interactions: timeline"),
    ("identity", "Identity: accuracy"),
    ("identity_scale", "Identity: speed at scale"),
    ("segmentation_features", "Segmentation: features on a purchase"),
    ("segmentation_batch_rule", "Segmentation: rule segment in batch"),
    ("loyalty_ledger", "Loyalty: ledger"),
    ("loyalty_redemption", "Loyalty: redemption"),
    ("consumers", "Consumers: purchase events per second"),
]
LATENCY_UNITS = {"ms"}


def load(out: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for path in sorted(out.glob("*.json")):
        if path.stem == "report":
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(data, dict):
            results[path.stem] = data
    return results


def figures_of(stem: str, data: dict[str, Any]) -> list[Figure]:
    if isinstance(data.get("figures"), list):
        return [from_json(f) for f in data["figures"]]
    return legacy_figures(stem, data)


def table(figures: list[Figure]) -> list[str]:
    lines = [
        "| figure | value | median | p95 | p99 | baseline (same run) | ratio | target | met |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for f in figures:
        target = "—"
        if f.target is not None:
            target = f"{'≥' if f.higher_is_better else '≤'} {fmt(f.target)}"
        met = (
            "—"
            if f.target is None
            else ("not measured" if f.met is None else "met" if f.met else "**UNMET**")
        )
        baseline = "—" if f.baseline is None else f"{fmt(f.baseline)} ({f.baseline_name or ''})"
        latency = f.unit in LATENCY_UNITS
        name = f.name + (f" — {f.note}" if f.note else "")
        lines.append(
            f"| {name} | {fmt(f.value)} {f.unit} | {fmt(f.median) if latency else '—'} | "
            f"{fmt(f.p95) if latency else '—'} | {fmt(f.p99) if latency else '—'} | {baseline} | "
            f"{fmt(f.ratio, 3)} | {target} | {met} |"
        )
    return lines


# ---------------------------------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _shade(ax: Any, phases: list[list[Any]]) -> None:
    colours = ["#f0f0f0", "#e0ecf8"]
    for i, (name, start, end) in enumerate(phases):
        ax.axvspan(start, end, color=colours[i % 2], zorder=0)
        ax.text(start, 1.0, f" {name}", transform=ax.get_xaxis_transform(), fontsize=7, va="top", rotation=90)


def e2e_charts(raw: dict[str, Any], charts: Path) -> list[tuple[str, Path]]:
    plt = _plt()
    series, phases = raw.get("series", []), raw.get("phases", [])
    made: list[tuple[str, Path]] = []
    if series:
        t = [p["t"] for p in series]
        for key, title, ylabel in (
            ("lag", "Kafka consumer lag over time (crm_consumer_lag, summed per service)", "records behind"),
            ("outbox", "Outbox backlog over time (rows not yet relayed)", "rows"),
        ):
            fig, ax = plt.subplots(figsize=(10, 4))
            _shade(ax, phases)
            for name in ("identity", "interactions", "segmentation", "loyalty"):
                ax.plot(t, [p.get(f"{key}_{name}", math.nan) for p in series], label=name, linewidth=1)
            ax.set(title=title, xlabel="seconds since start", ylabel=ylabel)
            ax.legend(loc="upper right", fontsize=8)
            path = charts / f"e2e_{key}.png"
            fig.tight_layout()
            fig.savefig(path, dpi=110)
            plt.close(fig)
            made.append((title, path))
        fig, ax = plt.subplots(figsize=(10, 4))
        _shade(ax, phases)
        counted = [p for p in series if "ledger" in p]  # the counts are sampled every 2 s, not every point
        tc = [p["t"] for p in counted]
        ax.plot(tc, [p["ledger"] for p in counted], label="loyalty ledger: purchase earnings")
        ax.plot(
            tc,
            [p["facts"] for p in counted],
            label="segmentation: purchase facts",
            linestyle="--",
        )
        ax.set(title="Catch-up: purchases reflected downstream", xlabel="seconds since start", ylabel="rows")
        ax.legend(loc="upper left", fontsize=8)
        path = charts / "e2e_catchup.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(("Catch-up: purchases reflected downstream", path))
    operations = raw.get("mixed", {}).get("operations", {})
    if operations:
        names = list(operations)
        fig, ax = plt.subplots(figsize=(10, 4))
        x = range(len(names))
        for offset, key, label in (
            (-0.27, "median_ms", "median"),
            (0, "p95_ms", "p95"),
            (0.27, "p99_ms", "p99"),
        ):
            ax.bar([i + offset for i in x], [operations[n][key] for n in names], width=0.27, label=label)
        ax.set_xticks(list(x), names, rotation=20, fontsize=8)
        ax.set(title="Mixed workload: latency per operation (open loop)", ylabel="ms")
        ax.legend(fontsize=8)
        path = charts / "e2e_mixed_latency.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(("Mixed workload: latency per operation", path))
    parts = raw.get("parts")
    if parts and raw.get("bulk") and raw.get("single"):
        bars = [
            ("bulk purchases\nend to end", raw["bulk"]["end_to_end_per_s"]),
            ("bulk purchases\nacknowledged", raw["bulk"]["acknowledged_per_s"]),
            ("aiokafka\nproduce+consume", parts["kafka"]["produce_and_consume_per_s"]),
            ("PostgreSQL\nCOPY", parts["postgres"]["copy_per_s"]),
            ("PostgreSQL\nexecutemany", parts["postgres"]["executemany_per_s"]),
            ("single purchases\n(gateway)", raw["single"]["gateway"]["per_s"]),
            ("single purchases\n(direct)", raw["single"]["direct"]["per_s"]),
            ("empty FastAPI\nPOST", parts["fastapi"]["post_closed_loop"]["per_s"]),
        ]
        fig, ax = plt.subplots(figsize=(10, 4.5))
        colours = ["#1f77b4", "#1f77b4", "#999999", "#999999", "#999999", "#ff7f0e", "#ff7f0e", "#999999"]
        ax.bar([b[0] for b in bars], [b[1] for b in bars], color=colours)
        ax.set_yscale("log")
        ax.set(title="The platform (colour) against its parts (grey), same run", ylabel="per second (log)")
        ax.tick_params(axis="x", labelsize=7)
        path = charts / "e2e_parts.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(("The platform against its parts", path))
    return made


def figure_chart(stem: str, figures: list[Figure], charts: Path) -> Path | None:
    """Value against baseline for the figures of one benchmark that have both."""
    pairs = [f for f in figures if f.baseline is not None and f.value is not None and f.unit != "ratio"]
    if not pairs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.55 * len(pairs)))
    y = range(len(pairs))
    ax.barh([i + 0.2 for i in y], [f.value or 0 for f in pairs], height=0.4, label="ours")
    ax.barh(
        [i - 0.2 for i in y], [f.baseline or 0 for f in pairs], height=0.4, label="baseline", color="#999"
    )
    ax.set_yticks(list(y), [f"{f.name[:55]} ({f.unit})" for f in pairs], fontsize=7)
    ax.set_xscale("log")
    ax.legend(fontsize=7)
    ax.set_title(f"{stem}: ours against the baseline of the same run", fontsize=9)
    path = charts / f"{stem}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------


def render(out: Path, report: Path) -> dict[str, Any]:
    results = load(out)
    charts = out / "charts"
    charts.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(out, report.parent)
    size = results.get("e2e", {}).get("raw", {}).get("size") or os.environ.get("BENCH_SIZE", "?")
    lines = [
        "# Benchmark report",
        "",
        f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} by `make bench` "
        f"(`BENCH_SIZE={size}`) on {platform.node()}: {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}. Every figure is printed "
        "beside a baseline measured in the same run; a target missed says **UNMET** with the figure.",
        "",
    ]
    ordered = [(s, t) for s, t in SECTIONS if s in results] + [
        (s, s.replace("_", " ").capitalize()) for s in results if s not in dict(SECTIONS)
    ]
    document: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat(), "benchmarks": {}}
    summary: list[str] = [
        "## Summary",
        "",
        "| benchmark | figure | value | target | met |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    body: list[str] = []
    for stem, title in ordered:
        data = results[stem]
        figures = figures_of(stem, data)
        document["benchmarks"][stem] = {"title": title, "figures": [f.to_json() for f in figures]}
        for f in figures:
            if f.target is not None:
                sign = "≥" if f.higher_is_better else "≤"
                summary.append(
                    f"| {title} | {f.name} | {fmt(f.value)} {f.unit} | {sign} {fmt(f.target)} | "
                    f"{'not measured' if f.met is None else 'met' if f.met else '**UNMET**'} |"
                )
        body += [f"## {title}", "", f"Source: `{rel}/{stem}.json`.", ""]
        body += table(figures) if figures else ["(no figures found in this result)"]
        body.append("")
        if stem == "e2e":
            raw = data.get("raw", {})
            body += e2e_details(raw)
            for caption, path in e2e_charts(raw, charts):
                body += [f"![{caption}]({os.path.relpath(path, report.parent)})", ""]
        else:
            chart = figure_chart(stem, figures, charts)
            if chart is not None:
                body += [f"![{title}]({os.path.relpath(chart, report.parent)})", ""]
    lines += [*summary, "", *body]
    report.write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    return document


def e2e_details(raw: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if "dataset" in raw:
        d = raw["dataset"]
        lines += [
            "**Data set** (seeded, `bench.data`): "
            + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in d.items())
            + ". Loaded through the gateway: "
            + ", ".join(f"{k} {v:,}" for k, v in raw.get("load", {}).items() if k != "seconds")
            + f" in {raw.get('load', {}).get('seconds', 0):.0f} s.",
            "",
        ]
    parts = raw.get("parts")
    if parts:
        k, p, f = parts["kafka"], parts["postgres"], parts["fastapi"]
        bulk_e2e, bulk_ack = raw["bulk"]["end_to_end_per_s"], raw["bulk"]["acknowledged_per_s"]
        single, c360 = raw["single"]["gateway"]["per_s"], raw["customer_360"]["p99_ms"]
        post, get = f["post_closed_loop"], f["get_open_loop"]
        lines += [
            "### Parts",
            "",
            "The raw limits of the parts, measured in the same run on the same machine:",
            "",
            "| part | figure | ours | ours / part |",
            "| --- | ---: | ---: | ---: |",
            f"| aiokafka produce + consume, {k['messages']:,} messages of {k['bytes']} bytes (acks=all) | "
            f"{fmt(k['produce_and_consume_per_s'])}/s | bulk purchases end to end "
            f"{fmt(bulk_e2e)}/s | {bulk_e2e / k['produce_and_consume_per_s']:.3f} |",
            f"| PostgreSQL COPY of {p['rows']:,} rows shaped like `purchases` | {fmt(p['copy_per_s'])}/s | "
            f"bulk purchases acknowledged {fmt(bulk_ack)}/s | {bulk_ack / p['copy_per_s']:.3f} |",
            f"| PostgreSQL executemany, same rows | {fmt(p['executemany_per_s'])}/s | single purchases "
            f"{fmt(single)}/s | {single / p['executemany_per_s']:.3f} |",
            f"| empty FastAPI POST behind uvicorn, same closed loop | {fmt(post['per_s'])}/s, "
            f"median {fmt(f['post_closed_loop']['median_ms'])} ms | single purchases through the gateway "
            f"{fmt(raw['single']['gateway']['per_s'])}/s | "
            f"{raw['single']['gateway']['per_s'] / f['post_closed_loop']['per_s']:.3f} |",
            f"| empty FastAPI GET at {fmt(f['get_open_loop']['rate'])}/s open loop | p99 "
            f"{fmt(get['p99_ms'])} ms | customer 360 p99 {fmt(c360)} ms | "
            f"{raw['customer_360']['p99_ms'] / f['get_open_loop']['p99_ms']:.1f}× |",
            "",
        ]
    lines += [
        "### Consumer lag and outbox backlog",
        "",
        "Sampled every 0.5 s: `crm_consumer_lag` from each service's `/metrics` (summed over its "
        "partitions) and the rows in each service's outbox. Shaded bands are the phases.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--report", type=Path, default=Path("bench/report.md"))
    args = parser.parse_args(argv)
    document = render(args.out, args.report)
    unmet = [
        f"{stem}: {f['name']}"
        for stem, b in document["benchmarks"].items()
        for f in b["figures"]
        if f["met"] is False
    ]
    print(
        f"[report] {args.report} and {args.out / 'report.json'}: {len(document['benchmarks'])} benchmarks, "
        f"{len(unmet)} targets unmet"
    )
    for line in unmet:
        print(f"  UNMET {line}")


if __name__ == "__main__":
    main()
