"""Falling satisfaction and falling frequency/spend in the abandonment-risk score: the pure severity
functions, the satisfaction trend the features derive from the survey facts, the SQL score agreeing
with the pure functions, and the sentences that explain the points."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from services.segmentation import features as feature_store
from services.segmentation.models import MESSAGING, CustomerFeatures, PurchaseFact, SurveyFact, metadata
from services.segmentation.value import risk
from services.segmentation.value.config import ValueSettings
from services.segmentation.value.models import CustomerValue
from services.segmentation.value.service import risk_explanations, score_customers
from shared.db import create_engine, session_factory
from shared.uow import UnitOfWorkFactory

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEFAULTS = ValueSettings()


# -- the pure functions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "latest", "severity"),
    [
        (None, 4.0, 0.0),  # a single survey: no trend
        (9.0, None, 0.0),
        (4.0, 9.0, 0.0),  # rising
        (9.0, 9.0, 0.0),
        (9.0, 7.5, 0.0),  # a fall of 1.5, under the 2-point threshold
        (9.0, 7.0, 0.4),  # exactly the threshold counts: 2 / 5
        (9.0, 4.0, 1.0),  # 5 points: full weight
        (10.0, 0.0, 1.0),  # capped at 1
        (7.5, 4.5, 0.6),
    ],
)
def test_satisfaction_severity(before: float | None, latest: float | None, severity: float) -> None:
    assert risk.satisfaction_severity(before, latest, DEFAULTS) == pytest.approx(severity)


def test_satisfaction_thresholds_are_configurable() -> None:
    strict = ValueSettings(satisfaction_drop_threshold=1.0, satisfaction_drop_full=2.0)
    assert risk.satisfaction_severity(9.0, 7.5, strict) == pytest.approx(0.75)
    lenient = ValueSettings(satisfaction_drop_threshold=6.0)
    assert risk.satisfaction_severity(9.0, 4.0, lenient) == 0.0


@pytest.mark.parametrize(
    ("recent", "prior", "severity"),
    [(0, 0, 0.0), (3, 0, 0.0), (4, 4, 0.0), (6, 4, 0.0), (1, 4, 0.75), (0, 4, 1.0), (3000, 12000, 0.75)],
)
def test_trend_severity(recent: int, prior: int, severity: float) -> None:
    assert risk.trend_severity(recent, prior) == pytest.approx(severity)


def test_points_round_half_up() -> None:
    assert risk.points("falling_satisfaction", 1.0) == 15
    assert risk.points("falling_satisfaction", 0.4) == 6
    assert risk.points("falling_satisfaction", 0.1) == 2  # 1.5 rounds up, as SQL's round does
    assert risk.points("falling_frequency", 0.0) == 0


def test_satisfaction_score_scale() -> None:
    assert feature_store.satisfaction_score(csat=None, nps=None) is None
    assert feature_store.satisfaction_score(csat=1, nps=None) == 0.0
    assert feature_store.satisfaction_score(csat=3, nps=None) == 5.0
    assert feature_store.satisfaction_score(csat=5, nps=None) == 10.0
    assert feature_store.satisfaction_score(csat=1, nps=9) == 9.0  # NPS wins when both are given


def test_explain_says_what_fell_from_what_to_what() -> None:
    trends = risk.Trends(
        window_days=180,
        recent_purchases=1,
        prior_purchases=4,
        recent_spend_minor=3000,
        prior_spend_minor=12000,
        currency="EUR",
        satisfaction_before=9.0,
        satisfaction_latest=4.0,
    )
    reasons = {"falling_satisfaction": 15, "falling_frequency": 11, "falling_spend": 8, "recency": 0}
    assert risk.explain(reasons, trends) == [
        ("falling_satisfaction", 15, "satisfaction fell from 9.0 to 4.0"),
        ("falling_frequency", 11, "purchases fell from 4 to 1 (last 180 days against the 180 before)"),
        (
            "falling_spend",
            8,
            "spend fell from 12000 to 3000 EUR minor units (last 180 days against the 180 before)",
        ),
    ]
    # Without the figures, the fixed explanation.
    assert risk.explain({"falling_satisfaction": 6}, risk.Trends(window_days=180)) == [
        ("falling_satisfaction", 6, risk.EXPLANATIONS["falling_satisfaction"])
    ]


# -- against a database: the features' trend and the SQL score ----------------------------------------


class Db:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.uow = UnitOfWorkFactory(session_factory(self.engine), MESSAGING, "/crm/segmentation")

    async def insert(self, model: Any, rows: list[dict[str, Any]]) -> None:
        async with self.uow() as uow:
            await uow.session.execute(insert(model), rows)
            await uow.commit()

    async def surveys(self, customer_id: str, *answers: tuple[int, int | None, int | None]) -> None:
        """(days ago, csat, nps) per survey."""
        await self.insert(
            SurveyFact,
            [
                {
                    "survey_id": f"{customer_id}-s{i}",
                    "customer_id": customer_id,
                    "answered_at": NOW - timedelta(days=days),
                    "csat": csat,
                    "nps": nps,
                }
                for i, (days, csat, nps) in enumerate(answers)
            ],
        )

    async def refresh(self, *ids: str) -> dict[str, CustomerFeatures]:
        async with self.uow() as uow:
            await feature_store.refresh(uow.session, list(ids))
            await uow.commit()
        async with self.uow() as uow:
            out = {i: await uow.session.get(CustomerFeatures, i) for i in ids}
        assert all(v is not None for v in out.values())
        return {k: v for k, v in out.items() if v is not None}

    async def score(self, *ids: str) -> dict[str, dict[str, int]]:
        async with self.uow() as uow:
            await score_customers(uow.session, uow, list(ids), now=NOW)
            await uow.commit()
        async with self.uow() as uow:
            rows = {i: await uow.session.get(CustomerValue, i) for i in ids}
        return {i: dict(r.risk_reasons) for i, r in rows.items() if r is not None}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Db]:
    database = Db(f"sqlite+aiosqlite:///{tmp_path / 'seg.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.engine.dispose()


async def test_features_compare_the_latest_survey_with_the_earlier_average(db: Db) -> None:
    await db.surveys("falling", (90, None, 9), (60, 5, None), (30, None, 8), (1, None, 4))
    await db.surveys("single", (5, None, 3))
    await db.surveys("unscored_last", (20, None, 9), (10, 2, None), (1, None, None))
    await db.surveys("both_scores", (20, 1, 10), (10, 5, 2))
    # The same instant twice: the later id is the latest.
    await db.surveys("tie", (3, None, 10), (3, None, 2))
    found = await db.refresh("falling", "single", "unscored_last", "both_scores", "tie")
    trend = {k: (f.satisfaction_before, f.satisfaction_latest) for k, f in found.items()}
    assert trend == {
        "falling": (9.0, 4.0),  # (9 + 10 + 8) / 3 before, 4 now
        "single": (None, 3.0),
        "unscored_last": (9.0, 2.5),  # the survey without a score is not the latest scored one
        "both_scores": (10.0, 2.0),
        "tie": (10.0, 2.0),
    }
    # The surveys' own last values are unchanged by the trend (the unscored survey is the last one).
    assert (found["unscored_last"].last_csat, found["unscored_last"].last_nps) == (None, None)


async def test_the_sql_score_agrees_with_the_pure_functions(db: Db) -> None:
    cases = {  # customer: (before, latest)
        "none": (None, None),
        "rise": (4.0, 8.0),
        "small": (9.0, 7.5),
        "threshold": (9.0, 7.0),
        "big": (9.0, 4.0),
        "huge": (10.0, 0.0),
        "mid": (8.5, 5.0),
    }
    await db.insert(
        CustomerFeatures,
        [
            {
                "customer_id": c,
                "updated_at": NOW,
                "purchase_count": 0,
                "satisfaction_before": before,
                "satisfaction_latest": latest,
            }
            for c, (before, latest) in cases.items()
        ],
    )
    reasons = await db.score(*cases)
    for customer, (before, latest) in cases.items():
        expected = risk.points("falling_satisfaction", risk.satisfaction_severity(before, latest, DEFAULTS))
        assert reasons[customer]["falling_satisfaction"] == expected, customer
    assert reasons["big"]["falling_satisfaction"] == 15
    assert reasons["small"]["falling_satisfaction"] == 0
    assert reasons["threshold"]["falling_satisfaction"] == 6
    assert reasons["mid"]["falling_satisfaction"] == 11  # 3.5 / 5 × 15 = 10.5 → 11


async def test_falling_frequency_and_spend_with_their_sentences(db: Db) -> None:
    # Four purchases of 3000 in the window before the last 180 days, one in the last 180 days.
    days = [200, 230, 260, 300, 20]
    await db.insert(
        PurchaseFact,
        [
            {
                "purchase_id": f"p{i}",
                "customer_id": "slowing",
                "occurred_at": NOW - timedelta(days=d),
                "currency": "EUR",
                "total_minor": 3000,
                "channel": "store",
            }
            for i, d in enumerate(days)
        ],
    )
    await db.surveys("slowing", (100, None, 9), (2, None, 4))
    await db.refresh("slowing")
    reasons = await db.score("slowing")
    # frequency: 1 − 1/4 = 0.75 × 15 = 11.25 → 11; spend: the same × 10 = 7.5 → 8
    assert reasons["slowing"]["falling_frequency"] == 11
    assert reasons["slowing"]["falling_spend"] == 8
    assert reasons["slowing"]["falling_satisfaction"] == 15
    async with db.uow() as uow:
        explained = await risk_explanations(uow.session, "slowing", now=NOW)
    texts = {component: text for component, _, text in explained}
    assert texts["falling_satisfaction"] == "satisfaction fell from 9.0 to 4.0"
    assert texts["falling_frequency"] == "purchases fell from 4 to 1 (last 180 days against the 180 before)"
    assert texts["falling_spend"].startswith("spend fell from 12000 to 3000 EUR")
    assert [pts for _, pts, _ in explained] == sorted((pts for _, pts, _ in explained), reverse=True)
