"""Charts of loyalty's reports, PNG or SVG, drawn with matplotlib's Agg backend (object API only).

Rendering is CPU work: the routes call `render` through `asyncio.to_thread`. Matplotlib is not
thread-safe, so one lock lets a single chart be drawn at a time. SVGs carry no creation date: the
same figures give the same bytes.
"""

from __future__ import annotations

import io
import threading
from enum import StrEnum
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: draw into memory

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from services.loyalty.reports.schemas import (
    ActiveMembersReport,
    ExpiringReport,
    IssuanceReport,
    LiabilityReport,
    PenetrationReport,
)

Report = LiabilityReport | ExpiringReport | IssuanceReport | PenetrationReport | ActiveMembersReport

_LOCK = threading.Lock()
_RC: dict[Any, Any] = {"svg.fonttype": "none", "font.size": 10, "axes.titlesize": 11, "figure.titlesize": 13}


class ChartFormat(StrEnum):
    PNG = "png"
    SVG = "svg"

    @property
    def media_type(self) -> str:
        return "image/png" if self is ChartFormat.PNG else "image/svg+xml"


def render(report: Report, fmt: ChartFormat) -> bytes:
    """The report's chart as PNG or SVG bytes (blocking: call it in a worker thread)."""
    with _LOCK, rc_context(_RC):
        if isinstance(report, LiabilityReport):
            figure = _liability(report)
        elif isinstance(report, ExpiringReport):
            figure = _expiring(report)
        elif isinstance(report, IssuanceReport):
            figure = _issuance(report)
        elif isinstance(report, PenetrationReport):
            figure = _penetration(report)
        else:
            figure = _active(report)
        buffer = io.BytesIO()
        metadata = {"Date": None} if fmt is ChartFormat.SVG else {}
        figure.savefig(buffer, format=fmt.value, dpi=110, metadata=metadata)
    return buffer.getvalue()


def _figure(title: str, subtitle: str, width: float = 10, height: float = 5) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots()
    figure.suptitle(f"{title}\n{subtitle}", fontweight="bold")
    return figure, axes


def _nothing(axes: Axes, what: str) -> None:
    axes.text(0.5, 0.5, f"No {what}", transform=axes.transAxes, ha="center", va="center", alpha=0.6)


def _points_axis(axes: Axes, label: str = "Points") -> None:
    axes.set_ylabel(label)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(axis="y", alpha=0.3)


def _liability(report: LiabilityReport) -> Figure:
    figure, axes = _figure("Outstanding points liability", f"as of {report.as_of:%Y-%m-%d %H:%M} UTC")
    programs = report.programs
    x = list(range(len(programs)))
    width = 0.2
    bottom = [0.0] * len(programs)
    for name, colour in (("available", "tab:blue"), ("pending", "tab:cyan"), ("reserved", "tab:purple")):
        values = [float(getattr(p, name)) for p in programs]
        axes.bar(
            [i - 1.5 * width for i in x],
            values,
            width,
            bottom=bottom,
            label=f"Outstanding: {name}",
            color=colour,
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for offset, (name, colour) in enumerate(
        (("issued", "tab:green"), ("redeemed", "tab:orange"), ("expired", "tab:red")), start=0
    ):
        axes.bar(
            [i - 0.5 * width + offset * width for i in x],
            [getattr(p, name) for p in programs],
            width,
            label=name.capitalize(),
            color=colour,
        )
    axes.set_xticks(x)
    axes.set_xticklabels([p.program_id for p in programs])
    axes.set_xlabel("Program")
    _points_axis(axes)
    if not programs:
        _nothing(axes, "programs")
    else:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)
    return figure


def _expiring(report: ExpiringReport) -> Figure:
    figure, axes = _figure(
        f"Points expiring — {report.program_id} ({report.expiry_policy})",
        f"from {report.as_of:%Y-%m-%d %H:%M} UTC",
        width=8,
    )
    labels = [f"within {w.days} days" for w in report.windows]
    x = list(range(len(labels)))
    bars = axes.bar(
        x, [w.points for w in report.windows], 0.6, color="tab:red", label="Points expiring (cumulative)"
    )
    axes.bar_label(bars, labels=[f"{w.points} pts\n{w.members} members" for w in report.windows], fontsize=9)
    axes.set_xticks(x)
    axes.set_xticklabels(labels)
    axes.set_xlabel("Window")
    _points_axis(axes)
    axes.legend(loc="upper left", fontsize=9)
    if not any(w.points for w in report.windows):
        _nothing(axes, "points expiring in these windows")
    return figure


def _issuance(report: IssuanceReport) -> Figure:
    figure, axes = _figure(
        f"Points issued vs redeemed per month — {report.program_id}",
        f"{report.since:%Y-%m-%d} to {report.until:%Y-%m-%d} (months in {report.timezone})",
        width=11,
    )
    months = report.months
    x = list(range(len(months)))
    width = 0.2
    for offset, (name, colour) in enumerate(
        (
            ("net_issued", "tab:green"),
            ("redeemed", "tab:orange"),
            ("expired", "tab:red"),
            ("clawed_back", "tab:grey"),
        )
    ):
        axes.bar(
            [i + (offset - 1.5) * width for i in x],
            [getattr(m, name) for m in months],
            width,
            label=name.replace("_", " ").capitalize(),
            color=colour,
        )
    axes.set_xticks(x)
    axes.set_xticklabels([m.month.strftime("%b %Y") for m in months], rotation=45 if len(months) > 8 else 0)
    axes.set_xlabel("Month")
    _points_axis(axes)
    axes.legend(loc="upper left", fontsize=9)
    if not any(m.issued or m.redeemed or m.expired for m in months):
        _nothing(axes, "points moved in this range")
    return figure


def _penetration(report: PenetrationReport) -> Figure:
    share = "n/a" if report.penetration is None else f"{report.penetration:.1f}%"
    figure, axes = _figure(
        f"Program penetration — {report.program_id}: {share}",
        f"{report.members} members of {report.customers} customers, as of {report.as_of:%Y-%m-%d}",
        width=11,
    )
    months = report.months
    x = list(range(len(months)))
    axes.bar([i - 0.2 for i in x], [m.customers for m in months], 0.4, label="Customers", color="lightgrey")
    axes.bar([i + 0.2 for i in x], [m.members for m in months], 0.4, label="Members", color="tab:blue")
    axes.set_xticks(x)
    axes.set_xticklabels([m.month.strftime("%b %Y") for m in months], rotation=45 if len(months) > 8 else 0)
    axes.set_xlabel("End of month")
    _points_axis(axes, "Customers / members")
    rate = axes.twinx()
    rate.plot(
        x,
        [float("nan") if m.penetration is None else m.penetration for m in months],
        "o-",
        color="tab:red",
        label="Penetration (members / customers)",
    )
    rate.set_ylim(0, 105)
    rate.yaxis.set_major_formatter(PercentFormatter())
    rate.set_ylabel("Penetration")
    handles, labels = axes.get_legend_handles_labels()
    h2, l2 = rate.get_legend_handles_labels()
    axes.legend(handles + h2, labels + l2, loc="upper left", fontsize=9)
    if not months:
        _nothing(axes, "months")
    return figure


def _active(report: ActiveMembersReport) -> Figure:
    share = "n/a" if report.active_share is None else f"{report.active_share:.1f}%"
    figure, axes = _figure(
        f"Active members — {report.program_id}: {share} active",
        f"earned or redeemed in the {report.days} days before {report.as_of:%Y-%m-%d %H:%M} UTC",
        width=9,
    )
    names = ["Members", "Active", "Earned", "Redeemed", "Earned and redeemed", "Inactive"]
    values = [
        report.members,
        report.active,
        report.earned,
        report.redeemed,
        report.earned_and_redeemed,
        report.inactive,
    ]
    colours = ["lightgrey", "tab:green", "tab:blue", "tab:orange", "tab:purple", "tab:red"]
    y = list(range(len(names)))
    bars = axes.barh(y, values, color=colours)
    axes.bar_label(bars, fontsize=9)
    axes.set_yticks(y)
    axes.set_yticklabels(names)
    axes.invert_yaxis()
    axes.set_xlabel("Members")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(axis="x", alpha=0.3)
    if report.members == 0:
        _nothing(axes, "members")
    return figure
