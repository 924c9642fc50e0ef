"""Loyalty-ladder stage, derived by rules evaluated from the top rung down (the first that holds):

- partner: an advocate in the `top` value tier with at least 10 purchases and at least 365 days
  since the first purchase (settings `partner_min_purchases`, `partner_min_tenure_days`);
- advocate: a supporter whose last NPS answer is a promoter (9–10) or who made at least one completed
  loyalty referral (`referrals_made`, from the loyalty service's `referral_completed`);
- supporter: a client whose last CSAT is ≥ 4 or last NPS is passive/promoter, with no open complaint;
- client: at least 2 purchases (repeat transactions, whatever their sentiment);
- customer: exactly 1 purchase;
- prospect: no purchase.

Stages move both ways (an open complaint takes a supporter back to client). Every change is appended
to `ladder_history` with the rule that now holds as its reason, and published as `LadderStageChanged`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, or_
from sqlalchemy.sql.elements import ColumnElement

from services.segmentation.models import CustomerFeatures as F
from services.segmentation.value.config import ValueSettings
from services.segmentation.value.sqltime import Moment, at, days_between

STAGES = ("prospect", "customer", "client", "supporter", "advocate", "partner")
RULES = {
    "prospect": "no purchase",
    "customer": "exactly one purchase",
    "client": "two or more purchases",
    "supporter": "client with CSAT ≥ 4 or NPS passive/promoter and no open complaint",
    "advocate": "supporter who is an NPS promoter or has referred a customer",
    "partner": "advocate in the top value tier with enough purchases and tenure",
}


def stage(tier: ColumnElement[Any], now: Moment, dialect: str, settings: ValueSettings) -> ColumnElement[Any]:
    client = F.purchase_count >= 2
    supporter = and_(
        client,
        or_(F.last_csat >= 4, F.nps_category.in_(["passive", "promoter"])),
        F.open_complaints == 0,
    )
    advocate = and_(supporter, or_(F.nps_category == "promoter", F.referrals_made >= 1))
    tenure = days_between(at(now), F.first_purchase_at, dialect)
    partner = and_(
        advocate,
        tier == "top",
        F.purchase_count >= settings.partner_min_purchases,
        tenure >= settings.partner_min_tenure_days,
    )
    return case(
        (partner, "partner"),
        (advocate, "advocate"),
        (supporter, "supporter"),
        (client, "client"),
        (F.purchase_count == 1, "customer"),
        else_="prospect",
    )


def reason(from_stage: str, to_stage: str) -> str:
    if STAGES.index(to_stage) >= STAGES.index(from_stage):
        return f"up: {RULES[to_stage]}"
    return f"down: no longer {from_stage} ({RULES[from_stage]}); now {RULES[to_stage]}"
