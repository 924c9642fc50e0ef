"""Charts of the analytics, for people to look at: PNG or SVG, drawn with matplotlib's Agg backend.

Rendering is CPU work: the routes call `render` through `asyncio.to_thread`, so it never holds up the
event loop. Matplotlib is not thread-safe, so a module-level lock lets a single chart be drawn at a
time (figures are built with the object API, never pyplot's global state). Every chart has a title
with the range it covers, labelled axes and a legend where there is more than one series; the cohort
retention table is drawn as a heatmap with the percentages written in its cells.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from datetime import date
from enum import StrEnum
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: draw into memory

from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from services.segmentation.analytics.periods import Interval
from services.segmentation.analytics.schemas import (
    CohortTable,
    DefectionReport,
    MixReport,
    RetentionReport,
    TierReport,
    Window,
)

MAX_TICK_LABELS = 14
_LOCK = threading.Lock()
_RC: dict[Any, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "crm-analytics",  # stable element ids: the same figures give the same SVG
    "font.size": 10,
    "axes.titlesize": 11,
    "figure.titlesize": 13,
}

Report = CohortTable | RetentionReport | MixReport | TierReport | DefectionReport


class ChartFormat(StrEnum):
    PNG = "png"
    SVG = "svg"

    @property
    def media_type(self) -> str:
        return "image/png" if self is ChartFormat.PNG else "image/svg+xml"


def render(report: Report, fmt: ChartFormat) -> bytes:
    """The report's chart as PNG or SVG bytes (blocking: call it in a worker thread)."""
    with _LOCK, rc_context(_RC):
        if isinstance(report, CohortTable):
            figure = _cohorts(report)
        elif isinstance(report, RetentionReport):
            figure = _retention(report)
        elif isinstance(report, MixReport):
            figure = _mix(report)
        elif isinstance(report, TierReport):
            figure = _tiers(report)
        else:
            figure = _defections(report)
        buffer = io.BytesIO()
        # No creation date in the file: the same figures give the same bytes.
        metadata = {"Date": None} if fmt is ChartFormat.SVG else {}
        figure.savefig(buffer, format=fmt.value, dpi=110, metadata=metadata)
    return buffer.getvalue()


# -- helpers ----------------------------------------------------------------------------------------


def _span(window: Window) -> str:
    return f"{window.since:%Y-%m-%d} to {window.until:%Y-%m-%d} UTC"


def _figure(title: str, window: Window, rows: int = 1, width: float = 11) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(width, 2.4 + 2.8 * rows), layout="constrained")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0].tolist()
    figure.suptitle(f"{title}\n{_span(window)}", fontweight="bold")
    return figure, axes


def _nothing(axes: Axes, what: str) -> None:
    axes.text(0.5, 0.5, what, transform=axes.transAxes, ha="center", va="center", alpha=0.6, wrap=True)


def _label(start: date, interval: Interval, previous: date | None) -> str:
    if interval is Interval.MONTH:
        return start.strftime("%b %Y")
    text = start.strftime("%d %b").lstrip("0")
    if previous is None or previous.year != start.year:
        text += start.strftime("\n%Y")
    return text


_PERIOD_NAMES = {Interval.DAY: "Day", Interval.WEEK: "Week starting", Interval.MONTH: "Month"}


def _period_axis(axes: Axes, starts: Sequence[date], interval: Interval) -> None:
    step = max(1, math.ceil(len(starts) / MAX_TICK_LABELS))
    shown = list(range(0, len(starts), step))
    axes.set_xticks(shown)
    labels, previous = [], None
    for i in shown:
        labels.append(_label(starts[i], interval, previous))
        previous = starts[i]
    axes.set_xticklabels(labels)
    if starts:
        axes.set_xlim(-0.6, len(starts) - 0.4)
    axes.set_xlabel(f"{_PERIOD_NAMES[interval]} (UTC)")


def _values(values: Sequence[float | None], scale: float = 1.0) -> list[float]:
    return [math.nan if v is None else v * scale for v in values]  # a gap in the line, not a zero


def _money(minor: float) -> str:
    units = minor / 100
    if abs(units) >= 1_000_000:
        return f"{units / 1_000_000:.1f}M"
    if abs(units) >= 10_000:
        return f"{units / 1_000:.0f}k"
    return f"{units:,.0f}"


# -- the charts -------------------------------------------------------------------------------------


def _cohorts(report: CohortTable) -> Figure:
    rows = report.cohorts
    figure = Figure(
        figsize=(max(8.0, 1.2 + 0.75 * (report.months + 1)), 2.6 + 0.42 * len(rows)), layout="constrained"
    )
    axes = figure.subplots()
    figure.suptitle(f"Cohort retention by month of first purchase\n{_span(report)}", fontweight="bold")
    grid = [_values(c.retention, 100.0) for c in rows]
    colours = colormaps["Blues"].with_extremes(bad="whitesmoke")  # months not begun, empty cohorts
    image = axes.imshow(grid, cmap=colours, vmin=0, vmax=100, aspect="auto", interpolation="nearest")
    for y, cohort in enumerate(rows):
        for x, share in enumerate(cohort.retention):
            if share is not None and cohort.customers:
                axes.text(
                    x,
                    y,
                    f"{share * 100:.0f}%",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if share > 0.55 else "black",
                )
    axes.set_xticks(range(report.months + 1))
    axes.set_xlabel("Months since the first purchase (0 = the month of the first purchase)")
    axes.set_yticks(range(len(rows)))
    axes.set_yticklabels([f"{c.month:%b %Y}  (n={c.customers})" for c in rows])
    axes.set_ylabel("Cohort: month of first purchase (customers)")
    bar = figure.colorbar(image, ax=axes, format=PercentFormatter())
    bar.set_label("Share of the cohort who bought that month")
    if not any(c.customers for c in rows):
        _nothing(axes, "No first purchases in this range")
    return figure


def _retention(report: RetentionReport) -> Figure:
    figure, (top, bottom) = _figure(f"Customer retention, per {report.interval.value}", report, rows=2)
    periods = report.periods
    x = list(range(len(periods)))
    top.plot(
        x,
        _values([p.retention_rate for p in periods], 100.0),
        "o-",
        markersize=4 if len(x) <= 40 else 2,
        color="tab:blue",
        label="Retention rate (bought in the previous period and again)",
    )
    top.set_ylim(0, 105)
    top.yaxis.set_major_formatter(PercentFormatter())
    top.set_ylabel("Retention rate")
    repeat, churn = report.repeat_customers, report.churn
    notes = [
        "Repeat customers: "
        + ("n/a" if repeat.share is None else f"{repeat.share:.1%}")
        + f" ({repeat.repeat_customers} of {repeat.customers})",
        "Churn: "
        + ("n/a" if churn.rate is None else f"{churn.rate:.1%}")
        + f" ({churn.churned} of {churn.customers}; "
        + (
            "value model"
            if churn.basis.value == "customer_value.active"
            else f"no purchase for {churn.lapse_days} days"
        )
        + ")",
    ]
    top.set_title("  ·  ".join(notes))
    top.legend(loc="lower left", fontsize=9, framealpha=0.85)
    top.grid(axis="y", alpha=0.3)
    bottom.bar([i - 0.2 for i in x], [p.buyers for p in periods], 0.4, label="Buyers", color="tab:gray")
    bottom.bar(
        [i + 0.2 for i in x], [p.retained for p in periods], 0.4, label="Of them, retained", color="tab:blue"
    )
    bottom.set_ylabel("Customers")
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.legend(loc="upper left", fontsize=9, framealpha=0.85)
    bottom.grid(axis="y", alpha=0.3)
    _period_axis(bottom, [p.start for p in periods], report.interval)
    return figure


def _mix(report: MixReport) -> Figure:
    def total(currency: str) -> int:
        return sum(
            p.new.revenue.get(currency, 0) + p.returning.revenue.get(currency, 0) for p in report.periods
        )

    # One panel per currency, the three largest (the others are in the JSON: more would not fit).
    currencies = sorted(report.currencies, key=lambda c: (-total(c), c))[:3]
    figure, axes = _figure(
        f"New vs returning buyers, per {report.interval.value}", report, rows=1 + max(1, len(currencies))
    )
    periods = report.periods
    x = list(range(len(periods)))
    new = [p.new.customers for p in periods]
    returning = [p.returning.customers for p in periods]
    axes[0].bar(x, new, 0.8, label="First-time buyers", color="tab:orange")
    axes[0].bar(x, returning, 0.8, bottom=new, label="Returning buyers", color="tab:blue")
    axes[0].set_ylabel("Customers")
    axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(loc="upper left", fontsize=9, framealpha=0.85)
    axes[0].set_title("Customers who bought")
    shown: list[str | None] = list(currencies) or [None]
    for ax, currency in zip(axes[1:], shown, strict=False):
        if currency is None:
            _nothing(ax, "No purchases in this range")
            ax.set_ylabel("Revenue")
            continue
        first = [p.new.revenue.get(currency, 0) / 100 for p in periods]
        again = [p.returning.revenue.get(currency, 0) / 100 for p in periods]
        ax.bar(x, first, 0.8, label="From first-time buyers", color="tab:orange")
        ax.bar(x, again, 0.8, bottom=first, label="From returning buyers", color="tab:blue")
        ax.set_ylabel(f"Revenue ({currency})")
        ax.set_title(
            f"Gross revenue in {currency}"
            + (" (largest currencies only)" if len(report.currencies) > 3 else "")
        )
        ax.legend(loc="upper left", fontsize=9, framealpha=0.85)
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    _period_axis(axes[-1], [p.start for p in periods], report.interval)
    return figure


def _tiers(report: TierReport) -> Figure:
    figure, (axes,) = _figure("Net revenue (purchases − refunds) by value tier", report, width=10)
    if not report.available:
        _nothing(axes, report.explanation or "No value tiers yet")
        axes.set_axis_off()
        return figure
    tiers = [t.tier for t in report.tiers]
    currencies = report.currencies
    width = 0.8 / max(1, len(currencies))
    colours = colormaps["tab10"]
    for n, currency in enumerate(currencies):
        values = [
            next((c.net_minor for c in t.by_currency if c.currency == currency), 0) / 100
            for t in report.tiers
        ]
        offsets = [i - 0.4 + width * (n + 0.5) for i in range(len(tiers))]
        bars = axes.bar(offsets, values, width, label=currency, color=colours(n % 10))
        axes.bar_label(bars, labels=[_money(v * 100) for v in values], fontsize=8, padding=2)
    axes.set_xticks(range(len(tiers)))
    axes.set_xticklabels(
        [f"{t.tier}\n({t.customers} customer{'' if t.customers == 1 else 's'})" for t in report.tiers]
    )
    axes.set_xlabel("Value tier")
    axes.set_ylabel("Net revenue (major units of each currency)")
    axes.axhline(0, color="black", linewidth=0.8)
    axes.grid(axis="y", alpha=0.3)
    if currencies:
        axes.legend(title="Currency (never added together)", loc="upper right", fontsize=9)
    else:
        _nothing(axes, "No purchases in this range")
    return figure


def _defections(report: DefectionReport) -> Figure:
    figure, (axes,) = _figure("Defection reasons", report, width=10)
    if not report.available or not report.reasons:
        _nothing(axes, report.explanation or "No defections recorded in this range")
        axes.set_axis_off()
        return figure
    reasons = list(reversed(report.reasons))  # most frequent at the top
    bars = axes.barh(
        range(len(reasons)), [r.defections for r in reasons], color="tab:red", label="Defections"
    )
    axes.bar_label(bars, labels=[f"{r.defections} ({r.share:.0%})" for r in reasons], fontsize=8, padding=3)
    axes.set_yticks(range(len(reasons)))
    axes.set_yticklabels([r.reason.replace("_", " ") for r in reasons])
    axes.set_xlabel(f"Defections recorded (total {report.total})")
    axes.set_ylabel("Reason")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(axis="x", alpha=0.3)
    axes.legend(loc="lower right", fontsize=9)
    return figure
