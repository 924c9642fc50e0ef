"""Value, risk and ladder rules against a SQLite database: RFM quintiles, the CLV model validated on
CDNOW, the tier pyramid, the explainable risk score, lapsing and the ladder with its history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import hyp2f1
from sqlalchemy import insert, select

from services.segmentation.models import MESSAGING, CustomerFeatures, PurchaseFact, metadata
from services.segmentation.value import clv, rfm, tiers
from services.segmentation.value.models import CustomerValue, LadderHistory, RfmCutpoints
from services.segmentation.value.service import recompute_population, score_customers
from shared.db import create_engine, session_factory
from shared.uow import UnitOfWorkFactory

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Db:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.uow = UnitOfWorkFactory(session_factory(self.engine), MESSAGING, "/crm/segmentation")

    async def features(self, customer_id: str, **values: Any) -> None:
        row = {"customer_id": customer_id, "updated_at": NOW, "erased": False, "purchase_count": 0} | values
        async with self.uow() as uow:
            await uow.session.execute(insert(CustomerFeatures), [row])
            await uow.commit()

    async def buyer(self, customer_id: str, days_ago: list[int], amount: int = 10_000, **values: Any) -> None:
        """A customer with purchases `days_ago` (features derived here as features.refresh would)."""
        times = sorted(NOW - timedelta(days=d) for d in days_ago)
        n = len(times)
        mean = (times[-1] - times[0]).total_seconds() / 86400 / (n - 1) if n > 1 else None
        await self.features(
            customer_id,
            purchase_count=n,
            first_purchase_at=times[0],
            last_purchase_at=times[-1],
            currency="EUR",
            total_spend_minor=n * amount,
            net_spend_minor=n * amount,
            average_order_minor=amount,
            mean_interpurchase_days=mean,
            **values,
        )
        async with self.uow() as uow:
            await uow.session.execute(
                insert(PurchaseFact),
                [
                    {
                        "purchase_id": f"{customer_id}-{i}",
                        "customer_id": customer_id,
                        "occurred_at": t,
                        "currency": "EUR",
                        "total_minor": amount,
                        "channel": "store",
                    }
                    for i, t in enumerate(times)
                ],
            )
            await uow.commit()

    async def recompute(self) -> dict[str, Any]:
        async with self.uow() as uow:
            out = await recompute_population(uow.session, uow, now=NOW)
            await uow.commit()
        return out

    async def score(self, *ids: str, now: datetime = NOW) -> dict[str, int]:
        async with self.uow() as uow:
            out = await score_customers(uow.session, uow, list(ids), now=now)
            await uow.commit()
        return out

    async def value(self, customer_id: str) -> CustomerValue:
        async with self.uow() as uow:
            row = await uow.session.get(CustomerValue, customer_id)
        assert row is not None
        return row

    async def events(self) -> list[tuple[str, dict[str, Any]]]:
        async with self.uow() as uow:
            rows = await uow.session.execute(
                select(MESSAGING.outbox.c.type, MESSAGING.outbox.c.envelope).order_by(MESSAGING.outbox.c.id)
            )
            return [(t, e["data"]) for t, e in rows]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Db]:
    database = Db(f"sqlite+aiosqlite:///{tmp_path / 'seg.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.engine.dispose()


def test_cdnow_fit_matches_the_documented_lifetimes_parameters() -> None:
    from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

    d = load_cdnow_summary_data_with_monetary_value()
    data = clv.Rfmt(
        d["frequency"].to_numpy(float),
        d["recency"].to_numpy(float),
        d["T"].to_numpy(float),
        d["monetary_value"].to_numpy(float),
    )
    params = clv.fit(data)
    assert params is not None
    expected = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "v": 15.45}
    for name, value in expected.items():
        assert params[name] == pytest.approx(value, rel=0.01), name
    # Applying the stored parameters (the real-time path) gives lifetimes' own per-customer figures.
    # Customer 1 of CDNOW: 2 repeat purchases, documented 0.3569 expected purchases in 10 weeks.
    one = clv.Rfmt(np.array([2.0]), np.array([30.43]), np.array([38.86]), np.array([22.35]))
    assert clv.expected_purchases(params, 10, one)[0] == pytest.approx(0.3569, rel=0.01)
    predicted = clv.predict(params, data, months=12, monthly_discount=0.01)
    assert predicted[0] > predicted[1] > 0


def test_a_population_without_spend_heterogeneity_fits_no_model() -> None:
    """Every customer's purchases drawn from one price distribution: Gamma-Gamma has no maximum (q and v
    run off together) and its limit would predict the same spend for everyone — no model, so tiers use
    historic value rather than a prediction that cannot tell customers apart."""
    from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

    d = load_cdnow_summary_data_with_monetary_value()  # real purchase rhythms, spend replaced
    frequency = d["frequency"].to_numpy(float)
    rng = np.random.default_rng(1)
    monetary = np.array([rng.uniform(5, 300, int(f)).mean() if f else 0.0 for f in frequency])
    data = clv.Rfmt(frequency, d["recency"].to_numpy(float), d["T"].to_numpy(float), monetary)
    assert clv.fit(data) is None
    # The same rhythms with CDNOW's own spend (which differs between customers) do fit.
    assert clv.fit(clv.Rfmt(frequency, data.recency, data.T, d["monetary_value"].to_numpy(float)))


def _buy_till_you_die(n: int, seed: int) -> clv.Rfmt:
    """Customers acquired over five years, each alive for an exponential span (mean two years) and
    buying at their own gamma-distributed rate while alive, with their own typical basket."""
    rng = np.random.default_rng(seed)
    born = rng.uniform(0, 1825, n)
    dies = np.maximum(0, born - rng.exponential(730, n))
    rate = rng.gamma(2.0, 0.02, n)
    rows = []
    for i in range(n):
        span = born[i] - dies[i]
        k = rng.poisson(rate[i] * span)
        if k:
            t = np.sort(rng.uniform(0, span, k))
            rows.append((k - 1, t[-1] - t[0], born[i] - t[0]))
    f, r, age = (np.array(column, dtype=float) for column in zip(*rows, strict=True))
    basket = rng.gamma(4.0, 15.0, len(f))
    return clv.Rfmt(f, r, age, np.where(f > 0, basket, 0.0))


def test_a_fit_that_stops_on_a_line_search_is_tried_again_from_another_start() -> None:
    """On this population lifetimes' BG/NBD fit, from its own start, ends in a ConvergenceError
    (BFGS: "precision loss"); from the second start it converges, so there is a model."""
    import contextlib
    import io

    from lifetimes import BetaGeoFitter
    from lifetimes.utils import ConvergenceError

    data = _buy_till_you_die(20_000, seed=1)
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(ConvergenceError):
        BetaGeoFitter(penalizer_coef=0.0).fit(data.frequency, data.recency, data.T)
    params = clv.fit(data)
    assert params is not None
    # The model it found describes the population: the mean purchase rate r/α of those alive is near
    # the generator's (gamma with shape 2, scale 0.02: 0.04 a day).
    assert params["r"] / params["alpha"] == pytest.approx(0.04, rel=0.25)


def test_too_little_data_fits_no_model() -> None:
    data = clv.Rfmt(np.array([1.0, 0.0]), np.array([10.0, 0.0]), np.array([20.0, 20.0]), np.array([5.0, 0.0]))
    assert clv.fit(data) is None


def test_quantile_interpolation_is_percentile_cont() -> None:
    sorted_at = {1: 10.0, 2: 20.0, 3: 30.0, 4: 40.0, 5: 50.0}
    assert rfm.interpolate(sorted_at, 5, 0.2) == pytest.approx(18.0)
    assert rfm.interpolate(sorted_at, 5, 0.8) == pytest.approx(42.0)
    assert float(np.percentile([10, 20, 30, 40, 50], 20)) == pytest.approx(18.0)


def test_pyramid_boundaries() -> None:
    assert tiers.boundaries(1000, [0.01, 0.04, 0.15]) == [10, 50, 200]
    assert tiers.boundaries(7, [0.01, 0.04, 0.15]) == [1, 1, 2]


async def test_rfm_quintiles_and_scores(db: Db) -> None:
    for i in range(10):
        # customer i: i+1 purchases, the last one 10·(i+1) days ago, spending 1000·(i+1) each
        await db.buyer(f"c{i}", [10 * (i + 1) + k for k in range(i + 1)], amount=1000 * (i + 1))
    await db.features("prospect")
    out = await db.recompute()
    assert out["customers_with_purchases"] == 10
    assert out["cut_points"]["frequency"] == pytest.approx(np.percentile(range(1, 11), [20, 40, 60, 80]))
    best, worst = await db.value("c9"), await db.value("c0")
    assert (best.rfm_f, best.rfm_m, best.rfm_r) == (5, 5, 1)
    assert (worst.rfm_f, worst.rfm_m, worst.rfm_r) == (1, 1, 5)
    assert worst.rfm_segment == "new"
    assert (await db.value("prospect")).rfm_r is None
    async with db.uow() as uow:
        kept = (await uow.session.scalars(select(RfmCutpoints.dimension))).all()
    assert sorted(kept) == ["frequency", "monetary", "recency", "tier"]


async def test_tiers_form_a_pyramid_by_value(db: Db) -> None:
    for i in range(100):
        await db.buyer(f"c{i:03}", [5], amount=100 * (i + 1))
    out = await db.recompute()
    assert out["clv_model"] is None  # no repeat customers: tiers on historic CLV
    async with db.uow() as uow:
        rows = dict(
            (await uow.session.execute(select(CustomerValue.customer_id, CustomerValue.value_tier))).all()
        )
    counts = {t: list(rows.values()).count(t) for t in tiers.TIERS}
    assert counts == {"top": 1, "high": 4, "medium": 15, "rest": 80}
    assert rows["c099"] == "top"
    assert rows["c095"] == "high"
    assert rows["c079"] == "rest"


async def test_risk_is_explained_and_crossing_into_high_alerts_once(db: Db) -> None:
    # 100 customers make a pyramid; the most valuable one buys every 10 days, then stops.
    for i in range(99):
        await db.buyer(f"c{i:03}", [5], amount=100)
    await db.buyer("vip", [5, 15, 25, 35, 45], amount=100_000)
    await db.recompute()
    vip = await db.value("vip")
    assert vip.value_tier == "top"
    assert vip.risk_level == "low"
    assert vip.active
    # Forty days later, with two unanswered complaints and a detractor score:
    later = NOW + timedelta(days=40)
    async with db.uow() as uow:
        row = await uow.session.get(CustomerFeatures, "vip")
        assert row is not None
        row.unanswered_complaints = 2
        row.nps_category = "detractor"
        row.last_nps = 3
        await uow.commit()
    out = await db.score("vip", now=later)
    assert out["at_risk_published"] == 1
    vip = await db.value("vip")
    assert vip.risk_level == "high"
    # recency: 45 days since the last purchase against a 10-day rhythm → capped at 35 points
    assert vip.risk_reasons["recency"] == 35
    assert vip.risk_reasons["unanswered_complaints"] == 20
    assert vip.risk_reasons["low_satisfaction"] == 10
    assert vip.risk_score == sum(vip.risk_reasons.values())
    # Scoring again (a redelivered event) does not alert again.
    assert (await db.score("vip", now=later))["at_risk_published"] == 0
    alerts = [data for kind, data in await db.events() if "customer_at_risk" in kind]
    assert len(alerts) == 1
    assert alerts[0]["value_tier"] == "top"
    assert alerts[0]["reasons"][0] == {"component": "recency", "points": 35}


async def test_a_low_value_customer_crossing_into_high_risk_raises_no_alert(db: Db) -> None:
    for i in range(99):
        await db.buyer(f"c{i:03}", [5], amount=100_000)
    await db.buyer("small", [5, 15], amount=10, unanswered_complaints=2, sla_breaches=3, last_csat=1)
    await db.recompute()
    small = await db.value("small")
    assert small.value_tier == "rest"
    assert small.risk_level in {"medium", "high"}
    await db.score("small", now=NOW + timedelta(days=60))
    assert (await db.value("small")).risk_level == "high"
    assert not [k for k, _ in await db.events() if "customer_at_risk" in k]


async def test_lapsed_after_three_own_intervals_or_180_days(db: Db) -> None:
    await db.buyer("monthly", [10, 40, 70])
    await db.buyer("yearly", [10, 375, 740])
    await db.recompute()
    assert (await db.value("monthly")).active
    await db.score("monthly", "yearly", now=NOW + timedelta(days=175))
    # monthly: 185 days since the last purchase > max(3 × 30, 180); yearly: 185 < 3 × 365
    monthly, yearly = await db.value("monthly"), await db.value("yearly")
    assert (monthly.active, monthly.lapsed) == (False, True)
    assert (yearly.active, yearly.lapsed) == (True, False)


async def test_ladder_moves_by_the_rules_and_keeps_history(db: Db) -> None:
    await db.features("p")
    await db.recompute()
    assert (await db.value("p")).ladder_stage == "prospect"
    steps: list[tuple[dict[str, Any], str]] = [
        ({"purchase_count": 1, "first_purchase_at": NOW, "last_purchase_at": NOW}, "customer"),
        ({"purchase_count": 2, "mean_interpurchase_days": 1.0}, "client"),
        ({"last_csat": 5}, "supporter"),
        ({"nps_category": "promoter", "last_nps": 10}, "advocate"),
        ({"open_complaints": 1}, "client"),
    ]
    for change, expected in steps:
        async with db.uow() as uow:
            row = await uow.session.get(CustomerFeatures, "p")
            assert row is not None
            for key, value in change.items():
                setattr(row, key, value)
            await uow.commit()
        await db.score("p")
        assert (await db.value("p")).ladder_stage == expected, change
    async with db.uow() as uow:
        history = (
            await uow.session.execute(
                select(LadderHistory.from_stage, LadderHistory.to_stage).order_by(LadderHistory.id)
            )
        ).all()
    assert history == [
        ("prospect", "customer"),
        ("customer", "client"),
        ("client", "supporter"),
        ("supporter", "advocate"),
        ("advocate", "client"),
    ]
    changed = [d for k, d in await db.events() if "ladder_stage_changed" in k]
    assert [(d["from_stage"], d["to_stage"]) for d in changed] == history
    assert changed[-1]["reason"].startswith("down:")


def test_the_vectorised_clv_equals_lifetimes_itself() -> None:
    rng = np.random.default_rng(3)
    n = 2_000
    frequency = rng.integers(0, 30, n).astype(float)
    age = rng.uniform(30, 1_500, n)
    recency = np.where(frequency > 0, age * rng.uniform(0.1, 1.0, n), 0.0)
    monetary = np.where(frequency > 0, rng.uniform(5, 500, n), 0.0)
    data = clv.Rfmt(frequency, recency, age, monetary)
    params = {"r": 0.24, "alpha": 4.41, "a": 0.79, "b": 2.43, "p": 6.25, "q": 3.74, "v": 15.45}
    fast = clv.predict(params, data, months=12, monthly_discount=0.01)
    reference = clv.predict_lifetimes(params, data, months=12, monthly_discount=0.01)
    assert fast.shape == reference.shape
    assert np.allclose(fast, reference, rtol=1e-9, atol=1e-9)
    assert float(fast.sum()) > 0  # not trivially equal: most customers are predicted to buy again
    # Customers with so many purchases that the direct hypergeometric series overflows: Euler's
    # transformation, computed only for them, gives lifetimes' figures too.
    heavy = clv.Rfmt(
        np.array([3_000.0, 20_000.0, 400_000.0]),
        np.array([1_400.0, 1_450.0, 1_499.0]),
        np.array([1_500.0, 1_500.0, 1_500.0]),
        np.array([40.0, 55.0, 70.0]),
    )
    z = 360 / (params["alpha"] + 1_500 + 360)
    x = heavy.frequency
    assert np.isinf(hyp2f1(params["r"] + x, params["b"] + x, params["a"] + params["b"] + x - 1, z)).any()
    assert np.allclose(clv.predict(params, heavy), clv.predict_lifetimes(params, heavy), rtol=1e-9, atol=1e-9)
