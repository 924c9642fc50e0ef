"""Micro-segmentation: k-means over value and behaviour features, and readable cluster profiles.

Pure computation (numpy / scikit-learn), no database: `service` streams the customers in and out.

1. Each customer becomes a vector of `FEATURES` in original units (days, counts, minor units of the
   main currency, scores); missing values (no satisfaction answer, no second purchase …) are imputed
   from the fitted sample (median, or the maximum for "days since": never bought = as stale as the
   stalest).
2. Skewed money and count features are compressed with ``log1p`` and every feature is standardised
   (`StandardScaler`), so no feature dominates by its unit.
3. `KMeans` (fixed ``random_state``, ``n_init=10``) is fitted on a seeded sample of at most N
   customers for each candidate k; the k with the best silhouette score wins (ties: the smaller k).
   Clusters are renumbered by size, largest first, so numbering is stable and readable.
4. Every customer is then assigned to the nearest centre in chunks (`Model.assign`), memory bounded.
5. A profile per cluster compares it with the population: means and medians in original units and the
   centre's z-score on each feature, from which a label ("High spend, frequent, recent — 4% of
   customers") and a description are generated.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

Row = Mapping[str, Any]
Matrix = NDArray[np.float64]

NOTABLE_Z = 0.5  # a centre this many standard deviations from the population is worth a word
DESCRIBED_Z = 0.25
MAX_LABEL_TRAITS = 3
MAX_DESCRIBED = 5
SILHOUETTE_SAMPLE = 5_000
MIN_PER_CLUSTER = 3


def whole_days(since: datetime | None, now: datetime) -> float | None:
    """Whole days elapsed since `since` (as the rule language counts them), never negative."""
    if since is None:
        return None
    return float(max(0, math.floor((now - since).total_seconds() / 86400)))


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _column(name: str) -> Callable[[Row, datetime], float | None]:
    return lambda row, _now: _number(row.get(name))


def _days_since(name: str) -> Callable[[Row, datetime], float | None]:
    return lambda row, now: whole_days(row.get(name), now)


def _tenure(row: Row, now: datetime) -> float | None:
    start = row.get("registered_at") or row.get("first_purchase_at")
    return whole_days(start, now) if start is not None else 0.0


def _monetary(row: Row, _now: datetime) -> float | None:
    return float(max(0, int(row.get("net_spend_minor") or 0)))


@dataclass(frozen=True, slots=True)
class ClusterFeature:
    """One clustering dimension: how it is read from a customer's features and how it is described."""

    name: str
    title: str
    unit: str
    description: str
    read: Callable[[Row, datetime], float | None]
    high: str  # the trait of a cluster whose centre is well above the population
    low: str
    log: bool = False  # compress with log1p before standardising (skewed money and counts)
    missing: str = "median"  # how a missing value is imputed: median | max | zero
    default: bool = False


FEATURES: dict[str, ClusterFeature] = {
    f.name: f
    for f in (
        ClusterFeature(
            "recency_days",
            "Days since last purchase",
            "days",
            "Whole days since the last purchase (no purchase: the stalest value)",
            _days_since("last_purchase_at"),
            high="lapsing",
            low="recent",
            missing="max",
            default=True,
        ),
        ClusterFeature(
            "frequency",
            "Purchases",
            "purchases",
            "Purchases ever",
            _column("purchase_count"),
            high="frequent",
            low="infrequent",
            log=True,
            default=True,
        ),
        ClusterFeature(
            "monetary_minor",
            "Net spend",
            "minor units",
            "Spend minus refunds in the main currency, minor units",
            _monetary,
            high="high spend",
            low="low spend",
            log=True,
            default=True,
        ),
        ClusterFeature(
            "average_order_minor",
            "Average order",
            "minor units",
            "Average order value in the main currency, minor units",
            _column("average_order_minor"),
            high="large baskets",
            low="small baskets",
            log=True,
            default=True,
        ),
        ClusterFeature(
            "tenure_days",
            "Tenure",
            "days",
            "Whole days since registration (or the first purchase)",
            _tenure,
            high="long-standing",
            low="new",
            default=True,
        ),
        ClusterFeature(
            "channels",
            "Channels",
            "channels",
            "How many channels the customer used",
            _column("channel_count"),
            high="multichannel",
            low="single-channel",
            default=True,
        ),
        ClusterFeature(
            "complaints",
            "Complaints",
            "complaints",
            "Complaints ever",
            _column("complaint_count"),
            high="complaining",
            low="rarely complaining",
            log=True,
            default=True,
        ),
        ClusterFeature(
            "satisfaction",
            "Satisfaction (CSAT)",
            "points",
            "Last CSAT score (missing: the median); in the default set when half the customers have one",
            _column("last_csat"),
            high="satisfied",
            low="dissatisfied",
        ),
        ClusterFeature(
            "nps",
            "NPS answer",
            "points",
            "Last NPS answer, 0-10 (missing: the median)",
            _column("last_nps"),
            high="recommending",
            low="detracting",
        ),
        ClusterFeature(
            "contacts",
            "Contacts",
            "contacts",
            "Contacts ever, any channel",
            _column("contact_count"),
            high="in frequent contact",
            low="rarely in contact",
            log=True,
        ),
        ClusterFeature(
            "refunds",
            "Refunds",
            "refunds",
            "Refunds ever",
            _column("refund_count"),
            high="refund-prone",
            low="rarely refunding",
            log=True,
        ),
        ClusterFeature(
            "interpurchase_days",
            "Days between purchases",
            "days",
            "Mean days between purchases (one purchase: the median)",
            _column("mean_interpurchase_days"),
            high="long gaps between purchases",
            low="short gaps between purchases",
        ),
        ClusterFeature(
            "predicted_clv_minor",
            "Predicted CLV",
            "minor units",
            "Predicted value of the next 12 months, minor units (none yet: 0)",
            _column("clv_predicted_minor"),
            high="high predicted value",
            low="low predicted value",
            log=True,
            missing="zero",
        ),
        ClusterFeature(
            "risk_score",
            "Risk score",
            "points",
            "Abandonment-risk score, 0-100 (none yet: 0)",
            _column("risk_score"),
            high="at risk",
            low="safe",
            missing="zero",
        ),
    )
}
DEFAULT_FEATURES = tuple(name for name, f in FEATURES.items() if f.default)
AUTO_FEATURES = ("satisfaction",)  # joins the default set when at least half the customers have one


def vectorise(rows: Sequence[Row], features: Sequence[str], now: datetime) -> Matrix:
    """Customers × features in original units, NaN where a value is missing."""
    readers = [FEATURES[name].read for name in features]
    out = np.full((len(rows), len(readers)), np.nan)
    for i, row in enumerate(rows):
        for j, read in enumerate(readers):
            value = read(row, now)
            if value is not None:
                out[i, j] = value
    return out


# ---- the model ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Model:
    """Everything needed to place a customer: imputation, log1p, scaling and the renumbered centres."""

    features: list[str]
    impute: list[float]
    log: list[bool]
    mean: list[float]
    scale: list[float]
    centers: list[list[float]]  # in the standardised space, cluster 0 first

    def standardise(self, raw: Matrix) -> Matrix:
        x = np.where(np.isnan(raw), np.asarray(self.impute), raw)
        logged = np.asarray(self.log)
        if logged.any():
            x[:, logged] = np.log1p(np.clip(x[:, logged], 0, None))
        result: Matrix = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return result

    def assign(self, raw: Matrix) -> tuple[NDArray[np.int64], Matrix]:
        """Nearest centre (as KMeans.predict) and the Euclidean distance to it, per row."""
        z = self.standardise(raw)
        centers = np.asarray(self.centers)
        distances = np.sqrt(((z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2))
        labels = distances.argmin(axis=1)
        return labels.astype(np.int64), distances[np.arange(len(z)), labels]

    def to_json(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "impute": self.impute,
            "log1p": self.log,
            "mean": self.mean,
            "scale": self.scale,
            "centers": self.centers,
        }


@dataclass(slots=True)
class Fit:
    model: Model
    k: int
    silhouette: float | None
    scores: list[dict[str, Any]]  # every k tried: {"k", "silhouette"}


class TooFewCustomers(ValueError):
    """The sample cannot support the requested number of clusters."""


def feasible_k(population: int, distinct: int) -> int:
    """The largest k the data supports: MIN_PER_CLUSTER customers per cluster, distinct centres."""
    return min(population // MIN_PER_CLUSTER, distinct)


def _impute_values(raw: Matrix, features: Sequence[str]) -> list[float]:
    values: list[float] = []
    for j, name in enumerate(features):
        column = raw[:, j]
        present = column[~np.isnan(column)]
        how = FEATURES[name].missing
        if present.size == 0 or how == "zero":
            values.append(0.0)
        elif how == "max":
            values.append(float(present.max()))
        else:
            values.append(float(np.median(present)))
    return values


def prepare(raw: Matrix, features: Sequence[str]) -> Model:
    """Imputation and scaling fitted on the sample (no centres yet)."""
    from sklearn.preprocessing import StandardScaler

    model = Model(
        features=list(features),
        impute=_impute_values(raw, features),
        log=[FEATURES[name].log for name in features],
        mean=[0.0] * len(features),
        scale=[1.0] * len(features),
        centers=[],
    )
    scaler = StandardScaler().fit(model.standardise(raw))
    model.mean = [float(v) for v in scaler.mean_]
    model.scale = [float(v) for v in scaler.scale_]  # 1.0 where a feature is constant
    return model


def distinct_rows(z: Matrix) -> int:
    return int(np.unique(np.round(z, 9), axis=0).shape[0]) if len(z) else 0


def fit(raw: Matrix, features: Sequence[str], ks: Sequence[int], random_state: int) -> Fit:
    """Fit k-means for every candidate k on the sample `raw` and keep the best silhouette."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import silhouette_score

    model = prepare(raw, features)
    z = model.standardise(raw)
    limit = feasible_k(len(z), distinct_rows(z))
    candidates = [k for k in ks if k <= limit]
    if not candidates:
        raise TooFewCustomers(f"{len(z)} customers ({limit} feasible clusters)")
    best: tuple[float, int, Any] | None = None
    scores: list[dict[str, Any]] = []
    for k in candidates:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            km = KMeans(n_clusters=k, n_init=10, random_state=random_state).fit(z)
        labels = km.labels_
        score: float | None = None
        if 1 < len(set(labels.tolist())) < len(z):
            score = float(
                silhouette_score(
                    z, labels, sample_size=min(len(z), SILHOUETTE_SAMPLE), random_state=random_state
                )
            )
        scores.append({"k": k, "silhouette": score})
        rank = score if score is not None else -2.0
        if best is None or rank > best[0]:
            best = (rank, k, km)
    assert best is not None
    _, k, km = best
    counts = np.bincount(km.labels_, minlength=k)
    centers = np.asarray(km.cluster_centers_, dtype=float)
    order = sorted(range(k), key=lambda c: (-int(counts[c]), tuple(centers[c].round(9))))
    model.centers = [[float(v) for v in centers[c]] for c in order]
    chosen = next(s["silhouette"] for s in scores if s["k"] == k)
    return Fit(model=model, k=k, silhouette=chosen, scores=scores)


# ---- profiles -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Totals:
    """Running sums per cluster over the full population (original units, values present only)."""

    k: int
    n_features: int
    count: NDArray[np.int64] = field(init=False)
    sums: Matrix = field(init=False)
    present: NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.count = np.zeros(self.k, dtype=np.int64)
        self.sums = np.zeros((self.k, self.n_features))
        self.present = np.zeros((self.k, self.n_features), dtype=np.int64)

    def add(self, raw: Matrix, labels: NDArray[np.int64]) -> None:
        self.count += np.bincount(labels, minlength=self.k)
        seen = ~np.isnan(raw)
        filled = np.where(seen, raw, 0.0)
        for c in range(self.k):
            mine = labels == c
            self.sums[c] += filled[mine].sum(axis=0)
            self.present[c] += seen[mine].sum(axis=0)


def _share(share: float) -> str:
    percent = share * 100
    return f"{percent:.0f}%" if percent >= 1 or percent == 0 else f"{percent:.1f}%"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "minor units":
        return f"{round(value):,} minor units"
    text = f"{value:,.1f}".removesuffix(".0")
    return f"{text} {unit}"


def label(z: Mapping[str, float], share: float) -> str:
    """A label such as "High spend, frequent, recent — 4% of customers", from the centre's z-scores."""
    traits = sorted(
        ((name, value) for name, value in z.items() if abs(value) >= NOTABLE_Z),
        key=lambda item: (-abs(item[1]), item[0]),
    )[:MAX_LABEL_TRAITS]
    words = [FEATURES[name].high if value > 0 else FEATURES[name].low for name, value in traits]
    head = ", ".join(words) if words else "average on every feature"
    return f"{head[0].upper()}{head[1:]} — {_share(share)} of customers"


def profiles(
    fit: Fit,
    totals: Totals,
    sample_raw: Matrix,
    sample_labels: NDArray[np.int64],
    currency: str | None,
) -> list[dict[str, Any]]:
    """One readable profile per cluster (JSON-ready): size, share, per-feature mean and median in
    original units against the population's, the centre's z-scores, a label and a description.
    Means are exact over every assigned customer; medians are taken on the fitted sample."""
    model = fit.model
    population = int(totals.count.sum())
    pop_present = totals.present.sum(axis=0)
    pop_sums = totals.sums.sum(axis=0)
    out: list[dict[str, Any]] = []
    for c in range(fit.k):
        size = int(totals.count[c])
        share = size / population if population else 0.0
        z = {name: round(float(model.centers[c][j]), 3) for j, name in enumerate(model.features)}
        mine = sample_raw[sample_labels == c]
        stats: dict[str, dict[str, Any]] = {}
        sentences: list[tuple[float, str]] = []
        for j, name in enumerate(model.features):
            spec = FEATURES[name]
            mean = float(totals.sums[c, j] / totals.present[c, j]) if totals.present[c, j] else None
            pop_mean = float(pop_sums[j] / pop_present[j]) if pop_present[j] else None
            median = _median(mine[:, j])
            pop_median = _median(sample_raw[:, j])
            stats[name] = {
                "unit": spec.unit,
                "mean": _round(mean),
                "median": _round(median),
                "population_mean": _round(pop_mean),
                "population_median": _round(pop_median),
                "z": z[name],
            }
            if abs(z[name]) >= DESCRIBED_Z:
                ratio = ""
                if mean is not None and pop_mean:
                    ratio = f", {mean / pop_mean:.1f}× the average"
                sentences.append(
                    (
                        abs(z[name]),
                        f"{spec.title.lower()} averages {_fmt(mean, spec.unit)} against "
                        f"{_fmt(pop_mean, spec.unit)} overall{ratio} (median {_fmt(median, spec.unit)})",
                    )
                )
        sentences.sort(key=lambda s: -s[0])
        money = f" Money in {currency}, minor units." if currency else ""
        if sentences:
            text = "; ".join(s for _, s in sentences[:MAX_DESCRIBED])
            description = f"{size:,} customers ({_share(share)}): {text[0].upper()}{text[1:]}.{money}"
        else:
            description = f"{size:,} customers ({_share(share)}), close to the average on every feature."
        out.append(
            {
                "cluster": c,
                "size": size,
                "share": round(share, 6),
                "label": label(z, share),
                "description": description,
                "features": stats,
            }
        )
    return out


def _median(column: Matrix) -> float | None:
    present = column[~np.isnan(column)]
    return float(np.median(present)) if present.size else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class Reservoir:
    """A uniform sample of at most `capacity` items of a stream (algorithm R), seeded: the same stream
    in the same order always gives the same sample."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.items: list[Any] = []
        self.seen = 0
        self._rng = np.random.default_rng(seed)

    def offer(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(item)
            return
        slot = int(self._rng.integers(0, self.seen))
        if slot < self.capacity:
            self.items[slot] = item
