"""Customer features: one computation from the facts, used by the real-time path and by the replay.

`refresh(session, ids)` recomputes the features rows of some customers from their facts (after an
event); `recompute_all(session)` runs the very same aggregate queries over every customer. So the
incremental path and a recompute from scratch give the same result by construction — a test replays
every event and compares the two. Each query is one GROUP BY inside the database, a batch of
customers at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Float, and_, case, cast, delete, func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.segmentation.models import (
    ComplaintFact,
    ContactFact,
    CustomerFeatures,
    CustomerSpend,
    LoyaltyMembershipFact,
    LoyaltyPointsFact,
    PurchaseFact,
    ReferralFact,
    RefundFact,
    RegistrationFact,
    SurveyFact,
)
from shared.db import insert_rows, padded

BATCH = 2_000
WRITE_BATCH = 900  # rows per INSERT … VALUES: 36 columns each, under asyncpg's 32,767 parameters
JSON_COLUMNS = ("channels", "loyalty_programs")
DEFAULT_PROGRAM = "default"  # the loyalty service's default program (its `loyalty_tier` counts first)
_NEVER = datetime.min.replace(tzinfo=UTC)


def nps_category(nps: int | None) -> str | None:
    """promoter (9–10), passive (7–8), detractor (0–6)."""
    if nps is None:
        return None
    return "promoter" if nps >= 9 else "passive" if nps >= 7 else "detractor"


def satisfaction_score(csat: int | None, nps: int | None) -> float | None:
    """A survey's satisfaction on a 0–10 scale: its NPS, or else its CSAT mapped 1→0 … 5→10."""
    if nps is not None:
        return float(nps)
    if csat is not None:
        return (csat - 1) * 2.5
    return None


def ratio3(numerator: int, denominator: int) -> float:
    """`numerator / denominator` (both ≥ 0, denominator > 0) rounded half up to three decimals, in exact
    integer arithmetic: the set-based rebuild computes the very same figure in SQL (`div`), where a
    float `round` would differ from PostgreSQL's in the last place now and then."""
    return ((2000 * numerator + denominator) // (2 * denominator)) / 1000


def interpurchase_days(first: datetime, last: datetime, purchases: int) -> float:
    """The mean days between a customer's purchases (needs two): the span from the first to the last
    over the gaps, to the microsecond, rounded half up to three decimals."""
    span = last - first
    microseconds = (span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds
    return ratio3(microseconds, 86_400_000_000 * (purchases - 1))


def _halves(score: float) -> int:
    """A satisfaction score (a multiple of 0.5 on the 0–10 scale) in halves: an exact integer."""
    return round(score * 2)


def _satisfaction_sql() -> Any:
    """`satisfaction_score` in SQL (NULL for a survey with neither score)."""
    return case(
        (SurveyFact.nps.is_not(None), cast(SurveyFact.nps, Float)),
        (SurveyFact.csat.is_not(None), (cast(SurveyFact.csat, Float) - 1.0) * 2.5),
        else_=None,
    )


def _only(statement: Any, column: Any, ids: Sequence[str] | None) -> Any:
    return statement if ids is None else statement.where(column.in_(list(ids)))


async def _rows(session: AsyncSession, ids: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """The features of `ids` (None: everyone with a fact or a features row), from the facts."""
    out: dict[str, dict[str, Any]] = {}

    def row(customer_id: str) -> dict[str, Any]:
        found = out.get(customer_id)
        if found is None:
            found = out[customer_id] = _empty(customer_id)
        return found

    known = await session.execute(
        _only(
            select(CustomerFeatures.customer_id, CustomerFeatures.registered_at, CustomerFeatures.erased),
            CustomerFeatures.customer_id,
            ids,
        )
    )
    for customer_id, registered_at, erased in known:
        row(customer_id).update(registered_at=_aware(registered_at), erased=bool(erased))
    # The earliest registration merged into the customer (a row without one keeps its stored value).
    registrations = await session.execute(
        _only(
            select(RegistrationFact.customer_id, func.min(RegistrationFact.registered_at)).group_by(
                RegistrationFact.customer_id
            ),
            RegistrationFact.customer_id,
            ids,
        )
    )
    for customer_id, registered_at in registrations:
        row(customer_id)["registered_at"] = _aware(registered_at)

    # Purchases per customer and currency: the main currency is the one spent most in.
    spend = await session.execute(
        _only(
            select(
                PurchaseFact.customer_id,
                PurchaseFact.currency,
                func.count(),
                func.sum(PurchaseFact.total_minor),
                func.min(PurchaseFact.occurred_at),
                func.max(PurchaseFact.occurred_at),
            ).group_by(PurchaseFact.customer_id, PurchaseFact.currency),
            PurchaseFact.customer_id,
            ids,
        )
    )
    per_currency: dict[str, list[tuple[str, int, int]]] = {}
    for customer_id, currency, count, total, first, last in spend:
        r = row(customer_id)
        r["purchase_count"] += int(count)
        r["first_purchase_at"] = _min(r["first_purchase_at"], _aware(first))
        r["last_purchase_at"] = _max(r["last_purchase_at"], _aware(last))
        per_currency.setdefault(customer_id, []).append((currency, int(count), int(total)))
    refunds = await session.execute(
        _only(
            select(
                RefundFact.customer_id, RefundFact.currency, func.count(), func.sum(RefundFact.amount_minor)
            ).group_by(RefundFact.customer_id, RefundFact.currency),
            RefundFact.customer_id,
            ids,
        )
    )
    refunded: dict[tuple[str, str], int] = {}
    for customer_id, currency, count, total in refunds:
        row(customer_id)["refund_count"] += int(count)
        refunded[(customer_id, currency)] = int(total)
    for customer_id, currencies in per_currency.items():
        r = out[customer_id]
        currency, count, total = max(currencies, key=lambda c: (c[2], c[1], c[0]))
        back = refunded.get((customer_id, currency), 0)
        r.update(
            currency=currency,
            total_spend_minor=total,
            refunded_minor=back,
            net_spend_minor=total - back,
            average_order_minor=total // count if count else 0,
        )
        if r["purchase_count"] >= 2:
            r["mean_interpurchase_days"] = interpurchase_days(
                r["first_purchase_at"], r["last_purchase_at"], r["purchase_count"]
            )
    purchase_channels = await session.execute(
        _only(
            select(PurchaseFact.customer_id, PurchaseFact.channel).distinct(), PurchaseFact.customer_id, ids
        )
    )
    channels: dict[str, set[str]] = {}
    for customer_id, channel in purchase_channels:
        channels.setdefault(customer_id, set()).add(channel)

    contacts = await session.execute(
        _only(
            select(
                ContactFact.customer_id, ContactFact.channel, func.count(), func.max(ContactFact.occurred_at)
            ).group_by(ContactFact.customer_id, ContactFact.channel),
            ContactFact.customer_id,
            ids,
        )
    )
    for customer_id, channel, count, last in contacts:
        r = row(customer_id)
        r["contact_count"] += int(count)
        r["last_contact_at"] = _max(r["last_contact_at"], _aware(last))
        channels.setdefault(customer_id, set()).add(channel)
    for customer_id, names in channels.items():
        r = row(customer_id)
        r.update(channels=sorted(names), channel_count=len(names), multichannel=len(names) >= 2)

    complaints = await session.execute(
        _only(
            select(
                ComplaintFact.customer_id,
                func.count(),
                func.sum(case((ComplaintFact.open, 1), else_=0)),
                func.sum(case((and_(ComplaintFact.open, ~ComplaintFact.answered), 1), else_=0)),
                func.sum(ComplaintFact.breaches),
            ).group_by(ComplaintFact.customer_id),
            ComplaintFact.customer_id,
            ids,
        )
    )
    for customer_id, count, open_, unanswered, breaches in complaints:
        row(customer_id).update(
            complaint_count=int(count),
            open_complaints=int(open_ or 0),
            unanswered_complaints=int(unanswered or 0),
            sla_breaches=int(breaches or 0),
        )

    latest = (
        _only(
            select(
                SurveyFact.customer_id,
                func.max(SurveyFact.answered_at).label("at"),
            ).group_by(SurveyFact.customer_id),
            SurveyFact.customer_id,
            ids,
        )
    ).subquery()
    surveys = await session.execute(
        select(
            SurveyFact.customer_id,
            SurveyFact.answered_at,
            SurveyFact.csat,
            SurveyFact.nps,
        )
        .join(
            latest,
            and_(SurveyFact.customer_id == latest.c.customer_id, SurveyFact.answered_at == latest.c.at),
        )
        .order_by(SurveyFact.customer_id, SurveyFact.survey_id)
    )
    for customer_id, at, csat, nps in surveys:  # ties at the same instant: the last id wins
        row(customer_id).update(
            last_survey_at=_aware(at), last_csat=csat, last_nps=nps, nps_category=nps_category(nps)
        )

    # Satisfaction trend: the latest scored survey against the average of the earlier ones.
    score = _satisfaction_sql()
    scored = or_(SurveyFact.nps.is_not(None), SurveyFact.csat.is_not(None))
    totals = (
        _only(
            select(
                SurveyFact.customer_id,
                func.count().label("n"),
                func.sum(score).label("total"),
                func.max(SurveyFact.answered_at).label("at"),
            )
            .where(scored)
            .group_by(SurveyFact.customer_id),
            SurveyFact.customer_id,
            ids,
        )
    ).subquery()
    latest_scored = await session.execute(
        select(SurveyFact.customer_id, totals.c.n, totals.c.total, score)
        .join(
            totals,
            and_(SurveyFact.customer_id == totals.c.customer_id, SurveyFact.answered_at == totals.c.at),
        )
        .where(scored)
        .order_by(SurveyFact.customer_id, SurveyFact.survey_id)
    )
    for customer_id, n, total_score, last in latest_scored:  # ties: the last id is the latest
        earlier = _halves(float(total_score)) - _halves(float(last))
        row(customer_id).update(
            satisfaction_latest=_halves(float(last)) / 2,
            satisfaction_before=ratio3(earlier, 2 * (int(n) - 1)) if int(n) >= 2 else None,
        )

    await _loyalty(session, ids, row)
    return out


def _membership_rank(customer_id: str, m: Any) -> tuple[Any, ...]:
    """Which of a customer's memberships of one program counts: their own (recorded for them) before
    one a merge brought, then the earliest enrolled (a membership not yet seen enrolled last)."""
    enrolled = _aware(m.enrolled_at)
    return (m.origin_customer_id != customer_id, enrolled is None, enrolled or _NEVER, m.member_id)


def loyalty_tier(customer_id: str, memberships: Sequence[Any]) -> str | None:
    """The tier in the default program if the customer is a member of it, else in the program they
    joined first (ties: the program id); tiers of different programs are never compared."""
    chosen: dict[str, Any] = {}
    for m in sorted(memberships, key=lambda m: _membership_rank(customer_id, m)):
        chosen.setdefault(m.program_id, m)
    if not chosen:
        return None
    if DEFAULT_PROGRAM in chosen:
        return chosen[DEFAULT_PROGRAM].tier  # type: ignore[no-any-return]
    first = min(
        chosen.values(),
        key=lambda m: (m.enrolled_at is None, _aware(m.enrolled_at) or _NEVER, m.program_id),
    )
    return first.tier  # type: ignore[no-any-return]


async def _loyalty(
    session: AsyncSession, ids: Sequence[str] | None, row: Callable[[str], dict[str, Any]]
) -> None:
    """Memberships, tier, referrals made and points, from the loyalty facts."""
    memberships = await session.execute(
        _only(
            select(
                LoyaltyMembershipFact.customer_id,
                LoyaltyMembershipFact.origin_customer_id,
                LoyaltyMembershipFact.member_id,
                LoyaltyMembershipFact.program_id,
                LoyaltyMembershipFact.enrolled_at,
                LoyaltyMembershipFact.tier,
            ),
            LoyaltyMembershipFact.customer_id,
            ids,
        )
    )
    per_customer: dict[str, list[Any]] = {}
    for m in memberships:
        per_customer.setdefault(m.customer_id, []).append(m)
    for customer_id, found in per_customer.items():
        enrolled = [at for at in (_aware(m.enrolled_at) for m in found) if at is not None]
        row(customer_id).update(
            loyalty_member=True,
            loyalty_programs=sorted({m.program_id for m in found}),
            loyalty_tier=loyalty_tier(customer_id, found),
            member_since=min(enrolled) if enrolled else None,
        )
    referrals = await session.execute(
        _only(
            select(ReferralFact.customer_id, func.count()).group_by(ReferralFact.customer_id),
            ReferralFact.customer_id,
            ids,
        )
    )
    for customer_id, count in referrals:
        row(customer_id)["referrals_made"] = int(count)
    points = await session.execute(
        _only(
            select(
                LoyaltyPointsFact.customer_id, LoyaltyPointsFact.kind, func.sum(LoyaltyPointsFact.points)
            ).group_by(LoyaltyPointsFact.customer_id, LoyaltyPointsFact.kind),
            LoyaltyPointsFact.customer_id,
            ids,
        )
    )
    for customer_id, kind, total in points:
        row(customer_id)[f"points_{kind}"] = int(total or 0)


def _empty(customer_id: str) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "registered_at": None,
        "erased": False,
        "first_purchase_at": None,
        "last_purchase_at": None,
        "purchase_count": 0,
        "refund_count": 0,
        "currency": None,
        "total_spend_minor": 0,
        "refunded_minor": 0,
        "net_spend_minor": 0,
        "average_order_minor": 0,
        "mean_interpurchase_days": None,
        "channels": [],
        "channel_count": 0,
        "multichannel": False,
        "contact_count": 0,
        "last_contact_at": None,
        "complaint_count": 0,
        "open_complaints": 0,
        "unanswered_complaints": 0,
        "sla_breaches": 0,
        "last_csat": None,
        "last_nps": None,
        "nps_category": None,
        "last_survey_at": None,
        "satisfaction_latest": None,
        "satisfaction_before": None,
        "loyalty_member": False,
        "loyalty_programs": [],
        "loyalty_tier": None,
        "member_since": None,
        "referrals_made": 0,
        "points_earned": 0,
        "points_redeemed": 0,
    }


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


async def _write(session: AsyncSession, rows: dict[str, dict[str, Any]]) -> None:
    if not rows:
        return
    now = datetime.now(UTC)
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = [{**r, "updated_at": now} for r in rows.values()]
    if dialect == "postgresql" and len(values) > WRITE_BATCH:
        await _copy_upsert(session, values)
        return
    for start in range(0, len(values), WRITE_BATCH):
        chunk = values[start : start + WRITE_BATCH]
        statement = insert(CustomerFeatures).values(chunk)
        columns = [c for c in chunk[0] if c != "customer_id"]
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[CustomerFeatures.customer_id],
                set_={c: statement.excluded[c] for c in columns},
            )
        )


async def _copy_upsert(session: AsyncSession, values: list[dict[str, Any]]) -> None:
    """Many features rows at once on PostgreSQL: COPY into a temporary table, then one upsert."""
    import orjson

    columns = list(values[0])
    connection = await session.connection()
    await connection.exec_driver_sql(
        "CREATE TEMPORARY TABLE IF NOT EXISTS features_load (LIKE customer_features) ON COMMIT DELETE ROWS"
    )
    raw = (await connection.get_raw_connection()).driver_connection
    assert raw is not None
    records = [[orjson.dumps(v[c]).decode() if c in JSON_COLUMNS else v[c] for c in columns] for v in values]
    await raw.copy_records_to_table("features_load", records=records, columns=columns)
    assignments = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "customer_id")
    listed = ", ".join(columns)
    await connection.exec_driver_sql(
        f"INSERT INTO customer_features ({listed}) SELECT {listed} FROM features_load "
        f"ON CONFLICT (customer_id) DO UPDATE SET {assignments}"
    )
    await connection.exec_driver_sql("DELETE FROM features_load")


async def _spend(session: AsyncSession, ids: Sequence[str] | None) -> None:
    """`customer_spend`: purchases and totals per customer and currency (never mixed)."""
    if ids is not None:
        await session.execute(delete(CustomerSpend).where(CustomerSpend.customer_id.in_(list(ids))))
    else:
        await session.execute(delete(CustomerSpend))
    rows = await session.execute(
        _only(
            select(
                PurchaseFact.customer_id,
                PurchaseFact.currency,
                func.count(),
                func.sum(PurchaseFact.total_minor),
            ).group_by(PurchaseFact.customer_id, PurchaseFact.currency),
            PurchaseFact.customer_id,
            ids,
        )
    )
    values = [
        {"customer_id": c, "currency": cur, "purchase_count": int(n), "total_minor": int(t)}
        for c, cur, n, t in rows
    ]
    await insert_rows(session, CustomerSpend.__table__, values)  # type: ignore[arg-type]


async def refresh(session: AsyncSession, customer_ids: Sequence[str]) -> None:
    """Recompute the features of these customers from their facts."""
    ids = sorted(set(customer_ids))
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        rows = await _rows(session, batch)
        for customer_id in batch:  # a customer with no fact left keeps an (empty) row
            rows.setdefault(customer_id, _empty(customer_id))
        await _write(session, rows)
        await _spend(session, batch)


# `recompute_all` on PostgreSQL: `_rows` over everyone as one statement, so the replay never brings a
# customer into Python. Each figure is computed exactly as `_rows` computes it (ties broken the same
# way, ids ordered by code point where Python sorts them, the rounding of `ratio3` in integers); a
# test compares the two on awkward data. The spend per customer and currency is written by the same
# statement (a data-modifying CTE), after the caller emptied `customer_spend`.
_COLUMNS = [*_empty("").keys(), "updated_at"]  # the order of the SELECT list below
_REBUILD_PG = text(
    """
WITH per AS (
    SELECT customer_id, currency, channel, count(*) AS n, sum(total_minor) AS total,
           min(occurred_at) AS first_at, max(occurred_at) AS last_at
    FROM purchase_facts GROUP BY customer_id, currency, channel
), cur AS (
    SELECT customer_id, currency, sum(n)::bigint AS n, sum(total)::bigint AS total
    FROM per GROUP BY customer_id, currency
), spent AS (
    INSERT INTO customer_spend (customer_id, currency, purchase_count, total_minor)
    SELECT customer_id, currency, n, total FROM cur
), bought AS (
    SELECT customer_id, sum(n)::bigint AS n, min(first_at) AS first_at, max(last_at) AS last_at
    FROM per GROUP BY customer_id
), main AS (
    SELECT DISTINCT ON (customer_id) customer_id, currency, n, total FROM cur
    ORDER BY customer_id, total DESC, n DESC, currency COLLATE "C" DESC
), refunded AS (
    SELECT customer_id, currency, count(*) AS n, sum(amount_minor)::bigint AS total
    FROM refund_facts GROUP BY customer_id, currency
), refunds AS (
    SELECT customer_id, sum(n)::bigint AS n FROM refunded GROUP BY customer_id
), contacted AS (
    SELECT customer_id, channel, count(*) AS n, max(occurred_at) AS last_at
    FROM contact_facts GROUP BY customer_id, channel
), contacts AS (
    SELECT customer_id, sum(n)::bigint AS n, max(last_at) AS last_at FROM contacted GROUP BY customer_id
), channels AS (
    SELECT customer_id, json_agg(channel ORDER BY channel COLLATE "C") AS names, count(*) AS n
    FROM (SELECT customer_id, channel FROM per UNION SELECT customer_id, channel FROM contacted) AS c
    GROUP BY customer_id
), complaints AS (
    SELECT customer_id, count(*) AS n,
           count(*) FILTER (WHERE open) AS open_n,
           count(*) FILTER (WHERE open AND NOT answered) AS unanswered,
           coalesce(sum(breaches), 0) AS breaches
    FROM complaint_facts GROUP BY customer_id
), last_survey AS (
    SELECT DISTINCT ON (customer_id) customer_id, answered_at, csat, nps FROM survey_facts
    ORDER BY customer_id, answered_at DESC, survey_id DESC
), scored AS (
    SELECT customer_id, survey_id, answered_at,
           CASE WHEN nps IS NOT NULL THEN 2 * nps ELSE (csat - 1) * 5 END AS halves
    FROM survey_facts WHERE nps IS NOT NULL OR csat IS NOT NULL
), satisfaction AS (
    SELECT customer_id, count(*) AS n, sum(halves)::bigint AS halves FROM scored GROUP BY customer_id
), last_scored AS (
    SELECT DISTINCT ON (customer_id) customer_id, halves FROM scored
    ORDER BY customer_id, answered_at DESC, survey_id DESC
), memberships AS (
    SELECT customer_id,
           json_agg(DISTINCT program_id COLLATE "C" ORDER BY program_id COLLATE "C") AS programs,
           min(enrolled_at) AS since
    FROM loyalty_membership_facts GROUP BY customer_id
), chosen AS (
    SELECT DISTINCT ON (customer_id, program_id) customer_id, program_id, enrolled_at, tier
    FROM loyalty_membership_facts
    ORDER BY customer_id, program_id, origin_customer_id <> customer_id, enrolled_at IS NULL, enrolled_at,
             member_id COLLATE "C"
), tiers AS (
    SELECT DISTINCT ON (customer_id) customer_id, tier FROM chosen
    ORDER BY customer_id, program_id <> CAST(:default_program AS text), enrolled_at IS NULL, enrolled_at,
             program_id COLLATE "C"
), referrals AS (
    SELECT customer_id, count(*) AS n FROM referral_facts GROUP BY customer_id
), points AS (
    SELECT customer_id,
           coalesce(sum(points) FILTER (WHERE kind = 'earned'), 0)::bigint AS earned,
           coalesce(sum(points) FILTER (WHERE kind = 'redeemed'), 0)::bigint AS redeemed
    FROM loyalty_points_facts GROUP BY customer_id
), registered AS (
    SELECT customer_id, min(registered_at) AS at FROM registration_facts GROUP BY customer_id
), everyone AS (
    SELECT customer_id FROM customer_features UNION SELECT customer_id FROM registered
    UNION SELECT customer_id FROM bought UNION SELECT customer_id FROM refunds
    UNION SELECT customer_id FROM contacts UNION SELECT customer_id FROM complaints
    UNION SELECT customer_id FROM last_survey UNION SELECT customer_id FROM memberships
    UNION SELECT customer_id FROM referrals UNION SELECT customer_id FROM points
), rebuilt AS (
    INSERT INTO customer_features AS f ({columns})
    SELECT e.customer_id,
           coalesce(registered.at, old.registered_at),
           coalesce(old.erased, false),
           bought.first_at, bought.last_at, coalesce(bought.n, 0),
           coalesce(refunds.n, 0),
           main.currency, coalesce(main.total, 0), coalesce(refunded.total, 0),
           coalesce(main.total - coalesce(refunded.total, 0), 0),
           coalesce(CASE WHEN main.total >= 0 THEN div(main.total, main.n)
                         ELSE -div(main.n - 1 - main.total, main.n) END, 0),
           CASE WHEN bought.n >= 2 THEN div(
               2000 * (extract(epoch FROM bought.last_at) - extract(epoch FROM bought.first_at)) * 1000000
                   + 86400000000 * (bought.n - 1),
               2 * 86400000000 * (bought.n - 1))::float8 / 1000 END,
           coalesce(channels.names, '[]'::json), coalesce(channels.n, 0), coalesce(channels.n >= 2, false),
           coalesce(contacts.n, 0), contacts.last_at,
           coalesce(complaints.n, 0), coalesce(complaints.open_n, 0), coalesce(complaints.unanswered, 0),
           coalesce(complaints.breaches, 0),
           last_survey.csat, last_survey.nps,
           CASE WHEN last_survey.nps >= 9 THEN 'promoter' WHEN last_survey.nps >= 7 THEN 'passive'
                WHEN last_survey.nps IS NOT NULL THEN 'detractor' END,
           last_survey.answered_at,
           last_scored.halves::float8 / 2,
           CASE WHEN satisfaction.n >= 2 THEN div(
               2000 * (satisfaction.halves - last_scored.halves) + 2 * (satisfaction.n - 1),
               4 * (satisfaction.n - 1))::float8 / 1000 END,
           memberships.customer_id IS NOT NULL, coalesce(memberships.programs, '[]'::json),
           tiers.tier, memberships.since,
           coalesce(referrals.n, 0), coalesce(points.earned, 0), coalesce(points.redeemed, 0),
           CAST(:now AS timestamptz)
    FROM everyone AS e
    LEFT JOIN customer_features AS old ON old.customer_id = e.customer_id
    LEFT JOIN registered ON registered.customer_id = e.customer_id
    LEFT JOIN bought ON bought.customer_id = e.customer_id
    LEFT JOIN main ON main.customer_id = e.customer_id
    LEFT JOIN refunded ON refunded.customer_id = e.customer_id AND refunded.currency = main.currency
    LEFT JOIN refunds ON refunds.customer_id = e.customer_id
    LEFT JOIN contacts ON contacts.customer_id = e.customer_id
    LEFT JOIN channels ON channels.customer_id = e.customer_id
    LEFT JOIN complaints ON complaints.customer_id = e.customer_id
    LEFT JOIN last_survey ON last_survey.customer_id = e.customer_id
    LEFT JOIN satisfaction ON satisfaction.customer_id = e.customer_id
    LEFT JOIN last_scored ON last_scored.customer_id = e.customer_id
    LEFT JOIN memberships ON memberships.customer_id = e.customer_id
    LEFT JOIN tiers ON tiers.customer_id = e.customer_id
    LEFT JOIN referrals ON referrals.customer_id = e.customer_id
    LEFT JOIN points ON points.customer_id = e.customer_id
    ON CONFLICT (customer_id) DO UPDATE SET {assignments}
    RETURNING 1
)
SELECT count(*) FROM rebuilt
""".format(
        columns=", ".join(_COLUMNS),
        assignments=", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "customer_id"),
    )
)


async def recompute_all(session: AsyncSession) -> int:
    """Recompute every customer's features from the facts (the replay path); returns how many. On
    PostgreSQL one statement inside the database (`_REBUILD_PG`); elsewhere `_rows` over everyone."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    if dialect == "postgresql":
        await session.execute(delete(CustomerSpend))
        result = await session.execute(
            _REBUILD_PG, {"default_program": DEFAULT_PROGRAM, "now": datetime.now(UTC)}
        )
        return int(result.scalar_one())
    rows = await _rows(session, None)
    items = list(rows.items())
    for start in range(0, len(items), BATCH):
        await _write(session, dict(items[start : start + BATCH]))
    await _spend(session, None)
    return len(rows)


async def add_purchase(
    session: AsyncSession, customer_id: str, occurred_at: datetime, currency: str, total: int, channel: str
) -> bool:
    """The features after one more purchase, updated in place (a handful of statements, whatever the
    customer's history): exactly what `refresh` would compute. Returns False, changing nothing, when
    the purchase is in another currency than the customer's main one (the main currency may change:
    `refresh` then recomputes everything)."""
    row = await session.get(CustomerFeatures, customer_id, with_for_update=True)
    if row is None or (row.currency is not None and row.currency != currency):
        return False
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(CustomerSpend).values(
        customer_id=customer_id, currency=currency, purchase_count=1, total_minor=total
    )
    spent = (
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[CustomerSpend.customer_id, CustomerSpend.currency],
                set_={
                    "purchase_count": CustomerSpend.purchase_count + 1,
                    "total_minor": CustomerSpend.total_minor + total,
                },
            ).returning(CustomerSpend.purchase_count, CustomerSpend.total_minor)
        )
    ).one()
    count, currency_total = int(spent[0]), int(spent[1])
    at = _aware(occurred_at)
    row.purchase_count += 1
    row.first_purchase_at = _min(_aware(row.first_purchase_at), at)
    row.last_purchase_at = _max(_aware(row.last_purchase_at), at)
    row.currency = currency
    row.total_spend_minor = currency_total
    row.net_spend_minor = currency_total - row.refunded_minor
    row.average_order_minor = currency_total // count
    if row.purchase_count >= 2 and row.first_purchase_at is not None and row.last_purchase_at is not None:
        row.mean_interpurchase_days = interpurchase_days(
            row.first_purchase_at, row.last_purchase_at, row.purchase_count
        )
    if channel not in (row.channels or []):
        names = sorted({*(row.channels or []), channel})
        row.channels, row.channel_count, row.multichannel = names, len(names), len(names) >= 2
    row.updated_at = datetime.now(UTC)
    await session.flush()
    return True


# `add_purchases`' spend upsert on PostgreSQL: the rows as arrays, so that a wave of any size is one
# prepared statement (a multi-row VALUES would be one per size; a repeat cannot pad an upsert).
_SPEND_UPSERT_PG = text(
    "INSERT INTO customer_spend (customer_id, currency, purchase_count, total_minor) "
    "SELECT * FROM unnest(CAST(:customer_id AS varchar[]), CAST(:currency AS varchar[]), "
    "CAST(:counts AS integer[]), CAST(:totals AS bigint[])) "
    "ON CONFLICT (customer_id, currency) DO UPDATE SET "
    "purchase_count = customer_spend.purchase_count + excluded.purchase_count, "
    "total_minor = customer_spend.total_minor + excluded.total_minor "
    "RETURNING customer_id, purchase_count, total_minor"
)


async def _locked(session: AsyncSession, ids: Sequence[str]) -> dict[str, CustomerFeatures]:
    """The features rows of these customers, locked for the transaction in id order (no deadlock
    between two batches locking overlapping customers)."""
    rows = await session.scalars(
        select(CustomerFeatures)
        .where(CustomerFeatures.customer_id.in_(padded(ids)))
        .order_by(CustomerFeatures.customer_id)
        .with_for_update()
    )
    return {row.customer_id: row for row in rows}


@dataclass(frozen=True, slots=True)
class NewPurchase:
    customer_id: str
    occurred_at: datetime
    currency: str
    total_minor: int
    channel: str


async def add_purchases(session: AsyncSession, purchases: Sequence[NewPurchase]) -> list[str]:
    """`add_purchase` for many purchases at once (a consumer's run of events): the features of their
    customers end exactly as after adding them one by one, in a fixed number of statements — their
    rows read and locked in one SELECT, the spend per customer and currency upserted in one statement,
    the rows written in one executemany. Customers that cannot be updated in place (no features row
    yet, or a purchase in another currency than their main one) are recomputed from their facts with
    `refresh` (the facts must be stored already). Returns the customers touched, sorted."""
    by_customer: dict[str, list[NewPurchase]] = {}
    for purchase in purchases:
        by_customer.setdefault(purchase.customer_id, []).append(purchase)
    ids = sorted(by_customer)
    if not ids:
        return []
    held = await _locked(session, ids)
    quick: list[str] = []
    slow: list[str] = []
    for customer_id in ids:
        row = held.get(customer_id)
        currencies = {p.currency for p in by_customer[customer_id]}
        in_place = row is not None and len(currencies) == 1 and row.currency in (None, *currencies)
        if not in_place:
            slow.append(customer_id)
        else:
            quick.append(customer_id)
    if quick:
        dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
        added_rows = [
            {
                "customer_id": customer_id,
                "currency": by_customer[customer_id][0].currency,
                "purchase_count": len(by_customer[customer_id]),
                "total_minor": sum(p.total_minor for p in by_customer[customer_id]),
            }
            for customer_id in quick
        ]
        if dialect == "postgresql":  # one statement text for any number of customers (see `padded`)
            result = await session.execute(
                _SPEND_UPSERT_PG,
                {key: [r[key] for r in added_rows] for key in ("customer_id", "currency")}
                | {"counts": [r["purchase_count"] for r in added_rows]}
                | {"totals": [r["total_minor"] for r in added_rows]},
            )
        else:
            statement = sqlite.insert(CustomerSpend)
            upsert = statement.on_conflict_do_update(
                index_elements=[CustomerSpend.customer_id, CustomerSpend.currency],
                set_={
                    "purchase_count": CustomerSpend.purchase_count + statement.excluded.purchase_count,
                    "total_minor": CustomerSpend.total_minor + statement.excluded.total_minor,
                },
            ).returning(CustomerSpend.customer_id, CustomerSpend.purchase_count, CustomerSpend.total_minor)
            result = await session.execute(upsert, added_rows)
        spent = {customer_id: (int(count), int(total)) for customer_id, count, total in result}
        now = datetime.now(UTC)
        for customer_id in quick:
            row, added = held[customer_id], by_customer[customer_id]
            count, currency_total = spent[customer_id]
            row.purchase_count += len(added)
            channels = set(row.channels or [])
            for purchase in added:
                at = _aware(purchase.occurred_at)
                row.first_purchase_at = _min(_aware(row.first_purchase_at), at)
                row.last_purchase_at = _max(_aware(row.last_purchase_at), at)
                channels.add(purchase.channel)
            row.currency = added[0].currency
            row.total_spend_minor = currency_total
            row.net_spend_minor = currency_total - row.refunded_minor
            row.average_order_minor = currency_total // count
            first, last = row.first_purchase_at, row.last_purchase_at
            if row.purchase_count >= 2 and first is not None and last is not None:
                row.mean_interpurchase_days = interpurchase_days(first, last, row.purchase_count)
            if not channels <= set(row.channels or []):
                names = sorted(channels)
                row.channels, row.channel_count, row.multichannel = names, len(names), len(names) >= 2
            row.updated_at = now
        await session.flush()
    if slow:
        await refresh(session, slow)
    return ids


async def add_contact(session: AsyncSession, customer_id: str, occurred_at: datetime, channel: str) -> bool:
    """The features after one more contact, updated in place: exactly what `refresh` computes (count,
    last contact, channels). False, changing nothing, for a customer with no features row yet."""
    row = await session.get(CustomerFeatures, customer_id, with_for_update=True)
    if row is None:
        return False
    row.contact_count += 1
    row.last_contact_at = _max(_aware(row.last_contact_at), _aware(occurred_at))
    if channel not in (row.channels or []):
        names = sorted({*(row.channels or []), channel})
        row.channels, row.channel_count, row.multichannel = names, len(names), len(names) >= 2
    row.updated_at = datetime.now(UTC)
    await session.flush()
    return True


async def add_points_many(
    session: AsyncSession, movements: Sequence[tuple[str, str, int]]
) -> tuple[list[str], list[str]]:
    """`add_points` for many (customer, `earned` | `redeemed`, points) movements at once: the rows read
    and locked in one SELECT and written in one executemany. Returns the customers updated in place
    and those with no features row yet (changed nothing: the caller refreshes them), both sorted."""
    totals: dict[str, dict[str, int]] = {}
    for customer_id, kind, points in movements:
        per_kind = totals.setdefault(customer_id, {"earned": 0, "redeemed": 0})
        per_kind[kind] += points
    ids = sorted(totals)
    if not ids:
        return [], []
    held = await _locked(session, ids)
    now = datetime.now(UTC)
    for customer_id, row in held.items():
        if totals[customer_id]["earned"]:
            row.points_earned = (row.points_earned or 0) + totals[customer_id]["earned"]
        if totals[customer_id]["redeemed"]:
            row.points_redeemed = (row.points_redeemed or 0) + totals[customer_id]["redeemed"]
        row.updated_at = now
    await session.flush()
    return sorted(held), [c for c in ids if c not in held]


async def add_points(session: AsyncSession, customer_id: str, kind: str, points: int) -> bool:
    """The features after one more points movement (`earned` or `redeemed`), updated in place: exactly
    what `refresh` computes. False, changing nothing, for a customer with no features row yet."""
    row = await session.get(CustomerFeatures, customer_id, with_for_update=True)
    if row is None:
        return False
    if kind == "earned":
        row.points_earned = (row.points_earned or 0) + points
    else:
        row.points_redeemed = (row.points_redeemed or 0) + points
    row.updated_at = datetime.now(UTC)
    await session.flush()
    return True
