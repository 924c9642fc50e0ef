"""Charts of the reports, for people to look at: PNG or SVG, drawn with matplotlib's Agg backend.

Rendering is CPU work: the routes call `render` through `asyncio.to_thread`, so it never holds up
the event loop. Matplotlib is not thread-safe, so one lock lets a single chart be drawn at a time
(figures are built with the object API, never pyplot's global state). Every chart has a title, the
range it covers, labelled axes and a legend; periods are labelled by their first day (UTC).
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from datetime import date
from enum import StrEnum
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")  # no display: draw into memory

from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from services.interactions.reports.periods import Interval
from services.interactions.reports.schemas import (
    ComplaintsReport,
    ContactsReport,
    Period,
    ReportHeader,
    SatisfactionReport,
)

MAX_TICK_LABELS = 14
_LOCK = threading.Lock()
_RC: dict[Any, Any] = {"svg.fonttype": "none", "font.size": 10, "axes.titlesize": 11, "figure.titlesize": 13}


class ChartFormat(StrEnum):
    PNG = "png"
    SVG = "svg"

    @property
    def media_type(self) -> str:
        return "image/png" if self is ChartFormat.PNG else "image/svg+xml"


def render(report: ContactsReport | SatisfactionReport | ComplaintsReport, fmt: ChartFormat) -> bytes:
    """The report's chart as PNG or SVG bytes (blocking: call it in a worker thread)."""
    with _LOCK, rc_context(_RC):
        if isinstance(report, ContactsReport):
            figure = _contacts(report)
        elif isinstance(report, SatisfactionReport):
            figure = _satisfaction(report)
        else:
            figure = _complaints(report)
        buffer = io.BytesIO()
        # No creation date in the file: the same report gives the same bytes.
        metadata = {"Date": None} if fmt is ChartFormat.SVG else {}
        figure.savefig(buffer, format=fmt.value, dpi=110, metadata=metadata)
    return buffer.getvalue()


# -- layout helpers ---------------------------------------------------------------------------------

_PERIOD_NAMES = {Interval.DAY: "Day", Interval.WEEK: "Week starting", Interval.MONTH: "Month"}


def _centres(periods: Sequence[Period]) -> list[float]:
    # Periods sit side by side, one slot each (a 28-day month is drawn as wide as a 31-day one).
    return [float(i) for i in range(len(periods))]


def _widths(periods: Sequence[Period], fill: float = 0.8) -> list[float]:
    return [fill] * len(periods)


def _label(start: date, interval: Interval, previous: date | None) -> str:
    if interval is Interval.MONTH:
        return start.strftime("%b %Y")
    text = start.strftime("%d %b").lstrip("0")
    if previous is None or previous.year != start.year:
        text += start.strftime("\n%Y")
    return text


def _period_axis(axes: Axes, report: ReportHeader, periods: Sequence[Period], *, last: bool = True) -> None:
    """Ticks on the periods (at most MAX_TICK_LABELS labels) and the x label."""
    centres = _centres(periods)
    step = max(1, math.ceil(len(periods) / MAX_TICK_LABELS))
    shown = list(range(0, len(periods), step))
    axes.set_xticks([centres[i] for i in shown])
    labels, previous = [], None
    for i in shown:
        labels.append(_label(periods[i].start, report.interval, previous))
        previous = periods[i].start
    axes.set_xticklabels(labels if last else [])
    if centres:
        axes.set_xlim(centres[0] - 0.6, centres[-1] + 0.6)
    if last:
        axes.set_xlabel(f"{_PERIOD_NAMES[report.interval]} (UTC)")
    axes.grid(axis="y", alpha=0.3)


def _figure(report: ReportHeader, title: str, rows: int) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(11, 3.2 + 2.6 * rows), layout="constrained")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0].tolist()
    figure.suptitle(
        f"{title}, per {report.interval.value}\n"
        f"{report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC",
        fontweight="bold",
    )
    return figure, axes


def _nothing(axes: Axes, what: str) -> None:
    axes.text(
        0.5, 0.5, f"No {what} in this range", transform=axes.transAxes, ha="center", va="center", alpha=0.6
    )


def _dot(periods: Sequence[Period]) -> float:
    """Marker size: smaller when many periods would make the dots overlap."""
    return 5.0 if len(periods) <= 40 else 2.5


def _values(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]  # a gap in the line, not a zero


def _legend(*axes: Axes, loc: Literal["upper left", "lower left"] = "upper left") -> None:
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    if handles:
        axes[0].legend(handles, labels, loc=loc, fontsize=9, framealpha=0.85)


# -- the charts -------------------------------------------------------------------------------------


def _contacts(report: ContactsReport) -> Figure:
    figure, (axes,) = _figure(report, "Contacts per channel", 1)
    periods = report.periods
    centres, widths = _centres(periods), _widths(periods)
    colours = colormaps["tab20"].resampled(max(len(report.channels), 1))
    bottom = [0.0] * len(periods)
    for n, channel in enumerate(report.channels):
        counts = [float(p.by_channel.get(channel, 0)) for p in periods]
        axes.bar(centres, counts, widths, bottom=bottom, label=channel, color=colours(n))
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    axes.set_ylabel("Contacts")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if report.total == 0:
        _nothing(axes, "contacts")
    else:
        axes.legend(title="Channel", loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)
    _period_axis(axes, report, periods)
    return figure


def _satisfaction(report: SatisfactionReport) -> Figure:
    figure, (top, bottom) = _figure(report, "Customer satisfaction and NPS", 2)
    periods = report.periods
    x = _centres(periods)
    top.plot(
        x,
        _values([p.average_csat for p in periods]),
        "o-",
        markersize=_dot(periods),
        color="tab:blue",
        label="Average CSAT (1–5)",
    )
    top.set_ylim(1, 5.2)
    top.set_ylabel("CSAT (1–5)")
    share = top.twinx()
    share.plot(
        x,
        _values([p.overall_share for p in periods]),
        "s--",
        markersize=_dot(periods),
        color="tab:green",
        label="Overall score (% of maximum)",
    )
    share.set_ylim(0, 105)
    share.yaxis.set_major_formatter(PercentFormatter())
    share.set_ylabel("Overall score")
    top.set_title("Average CSAT and overall attribute score")
    _legend(top, share, loc="lower left")
    _period_axis(top, report, periods, last=False)

    bottom.bar(
        x, [p.nps_responses for p in periods], _widths(periods), color="lightgrey", label="NPS answers"
    )
    bottom.set_ylabel("Answers")
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    nps = bottom.twinx()
    nps.plot(
        x,
        _values([p.nps for p in periods]),
        "o-",
        markersize=_dot(periods),
        color="tab:purple",
        label="NPS (% promoters − % detractors)",
    )
    nps.axhline(0, color="black", linewidth=0.8, alpha=0.5)
    nps.set_ylim(-105, 105)
    nps.set_ylabel("NPS")
    bottom.set_title("Net Promoter Score")
    _legend(bottom, nps, loc="lower left")
    _period_axis(bottom, report, periods)
    if report.total.responses == 0:
        _nothing(top, "survey answers")
    return figure


def _complaints(report: ComplaintsReport) -> Figure:
    figure, (volumes, times, sla) = _figure(
        report, "Complaints: volumes, resolution times, SLA compliance", 3
    )
    periods = report.periods
    x = _centres(periods)
    half = [w / 2 for w in _widths(periods)]
    volumes.bar(
        [c - w / 2 for c, w in zip(x, half, strict=True)],
        [p.opened for p in periods],
        half,
        label="Opened",
        color="tab:red",
    )
    volumes.bar(
        [c + w / 2 for c, w in zip(x, half, strict=True)],
        [p.resolved for p in periods],
        half,
        label="Resolved",
        color="tab:green",
    )
    volumes.set_ylabel("Complaints")
    volumes.yaxis.set_major_locator(MaxNLocator(integer=True))
    volumes.set_title("Complaints opened and resolved")
    _legend(volumes)
    _period_axis(volumes, report, periods, last=False)

    times.plot(
        x,
        _values([p.median_first_response_hours for p in periods]),
        "o-",
        markersize=_dot(periods),
        color="tab:orange",
        label="Median first response",
    )
    times.plot(
        x,
        _values([p.median_resolution_hours for p in periods]),
        "s-",
        markersize=_dot(periods),
        color="tab:blue",
        label="Median resolution",
    )
    times.set_ylabel("Hours")
    times.set_ylim(bottom=0)
    times.set_title("Median response and resolution time")
    _legend(times)
    _period_axis(times, report, periods, last=False)

    sla.plot(
        x,
        _values([p.first_response_sla.compliance for p in periods]),
        "o-",
        markersize=_dot(periods),
        color="tab:orange",
        label="First response on time",
    )
    sla.plot(
        x,
        _values([p.resolution_sla.compliance for p in periods]),
        "s-",
        markersize=_dot(periods),
        color="tab:blue",
        label="Resolved on time",
    )
    sla.set_ylim(0, 105)
    sla.yaxis.set_major_formatter(PercentFormatter())
    sla.set_ylabel("Within SLA")
    sla.set_title("SLA compliance (complaints opened in the period)")
    _legend(sla, loc="lower left")
    _period_axis(sla, report, periods)
    if report.total.opened == 0 and report.total.resolved == 0:
        _nothing(volumes, "complaints")
    return figure
