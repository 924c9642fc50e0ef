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
            span = (r["last_purchase_at"] - r["first_purchase_at"]).total_seconds() / 86_400
            r["mean_interpurchase_days"] = round(span / (r["purchase_count"] - 1), 3)
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
        before = (float(total_score) - float(last)) / (int(n) - 1) if int(n) >= 2 else None
        row(customer_id).update(
            satisfaction_latest=round(float(last), 3),
            satisfaction_before=None if before is None else round(before, 3),
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


async def recompute_all(session: AsyncSession) -> int:
    """Recompute every customer's features from the facts (the replay path); returns how many."""
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
        span = (row.last_purchase_at - row.first_purchase_at).total_seconds() / 86_400
        row.mean_interpurchase_days = round(span / (row.purchase_count - 1), 3)
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
                span = (last - first).total_seconds() / 86_400
                row.mean_interpurchase_days = round(span / (row.purchase_count - 1), 3)
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
