"""The RFM distribution and the ladder funnel reports read what the value pass stored."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import insert

from services.segmentation.app import build
from services.segmentation.settings import load_settings
from services.segmentation.value.models import CustomerValue
from shared.messaging.bus import InProcessBus

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _row(
    n: int, r: int | None, f: int | None, m: int | None, segment: str | None, stage: str
) -> dict[str, object]:
    return {
        "customer_id": f"c{n}",
        "rfm_r": r,
        "rfm_f": f,
        "rfm_m": m,
        "rfm_segment": segment,
        "ladder_stage": stage,
        "clv_historic_minor": 0,
        "value_tier": "rest",
        "risk_score": 0,
        "risk_level": "low",
        "risk_reasons": {},
        "active": False,
        "lapsed": False,
        "updated_at": NOW,
    }


async def test_rfm_distribution_and_ladder_funnel(tmp_path: Path) -> None:
    runtime = build(load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 's.db'}"), InProcessBus())
    await runtime.start()
    try:
        rows = [
            _row(1, 5, 5, 4, "champions", "advocate"),
            _row(2, 5, 3, 4, "loyal", "client"),
            _row(3, 1, 1, 2, "lost", "customer"),
            _row(4, 2, 1, 1, "at_risk", "customer"),
            _row(5, None, None, None, None, "prospect"),  # no purchase: not scored
        ]
        async with runtime.engine.begin() as conn:
            await conn.execute(insert(CustomerValue), rows)
        transport = httpx.ASGITransport(app=runtime.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://segmentation") as client:
            rfm = await client.get("/reports/rfm-distribution")
            ladder = await client.get("/reports/ladder")
    finally:
        await runtime.stop()
    assert rfm.status_code == 200, rfm.text
    body = rfm.json()
    assert body["customers_scored"] == 4
    assert [c["customers"] for c in body["recency"]] == [1, 1, 0, 0, 2]
    assert [c["customers"] for c in body["frequency"]] == [2, 0, 1, 0, 1]
    assert [c["customers"] for c in body["monetary"]] == [1, 1, 0, 2, 0]
    assert body["segments"] == {"champions": 1, "loyal": 1, "lost": 1, "at_risk": 1}
    assert ladder.status_code == 200, ladder.text
    stages = {s["stage"]: (s["customers"], s["reached"]) for s in ladder.json()["stages"]}
    assert list(stages) == ["prospect", "customer", "client", "supporter", "advocate", "partner"]
    assert stages == {
        "prospect": (1, 5),
        "customer": (2, 4),
        "client": (1, 2),
        "supporter": (0, 1),
        "advocate": (1, 1),
        "partner": (0, 0),
    }
