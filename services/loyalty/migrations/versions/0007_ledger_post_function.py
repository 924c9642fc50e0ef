"""The ledger's one-round-trip posting on PostgreSQL: `loyalty_post(...)`, a PL/pgSQL function that does
what `services.loyalty.ledger.post` and the lot bookkeeping after it do, in one call.

In order, like the Python code: the member (cached) accounts move in id order, each guarded by its
floor (`balance + delta >= floor`), which takes the member's lock; if one is refused, the ones already
moved are put back and nothing else is written (`refused_account`, `refused_balance` say why). Then
the transaction and its entries are inserted; `p_consume` points are taken from the member's available
lots, oldest-expiring first (FIFO, the lots locked `FOR UPDATE`), each take recorded as a lot movement;
a new lot is created (its remaining points the credit budget on `p_lot_budget_account`'s new balance:
lots hold max(balance, 0)) with its movement; the member's `last_activity_at` is set.

Each statement of a PL/pgSQL function takes a fresh snapshot under READ COMMITTED, so the lots read
after the account row is locked include those committed by the transaction that held the lock —
which one statement with data-modifying CTEs could not guarantee.

SQLite has no stored functions: there the migration does nothing and the ledger runs its ORM path.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE = (
    "text, text, text, text, text, text, text, text, text, json, timestamptz, text[], bigint[], "
    "text[], bigint[], bigint[], bigint, bigint, text, text, text, timestamptz, timestamptz, text, "
    "timestamptz"
)

FUNCTION = """
CREATE OR REPLACE FUNCTION loyalty_post(
    p_id text, p_program_id text, p_kind text, p_reference text, p_customer_id text,
    p_member_id text, p_reason text, p_actor text, p_reverses_id text, p_details json,
    p_created_at timestamptz,
    p_accounts text[], p_amounts bigint[],
    p_cached text[], p_deltas bigint[], p_floors bigint[],
    p_consume bigint,
    p_lot_points bigint, p_lot_status text, p_lot_source text, p_lot_program_id text,
    p_lot_available_at timestamptz, p_lot_expires_at timestamptz, p_lot_budget_account text,
    p_activity_at timestamptz,
    OUT balances bigint[], OUT refused_account text, OUT refused_balance bigint,
    OUT new_lot_id bigint, OUT new_lot_remaining bigint,
    OUT taken_ids bigint[], OUT taken_remaining bigint[], OUT taken_amounts bigint[]
) LANGUAGE plpgsql AS $fn$
DECLARE
    n int := coalesce(array_length(p_cached, 1), 0);
    moved bigint;
BEGIN
    balances := '{}';
    FOR i IN 1..n LOOP
        UPDATE accounts SET balance = balance + p_deltas[i]
         WHERE id = p_cached[i]
           AND (p_floors[i] IS NULL OR p_deltas[i] >= 0 OR balance + p_deltas[i] >= p_floors[i])
        RETURNING balance INTO moved;
        IF NOT FOUND THEN
            FOR j IN 1..i - 1 LOOP
                UPDATE accounts SET balance = balance - p_deltas[j] WHERE id = p_cached[j];
            END LOOP;
            balances := NULL;
            refused_account := p_cached[i];
            SELECT a.balance INTO refused_balance FROM accounts a WHERE a.id = p_cached[i];
            RETURN;
        END IF;
        balances := balances || moved;
    END LOOP;

    INSERT INTO ledger_transactions
        (id, program_id, kind, reference, customer_id, member_id, reason, actor, reverses_id, details,
         created_at)
    VALUES
        (p_id, p_program_id, p_kind, p_reference, p_customer_id, p_member_id, p_reason, p_actor,
         p_reverses_id, p_details, p_created_at);
    INSERT INTO ledger_entries (transaction_id, account_id, amount, line_no)
    SELECT p_id, e.account_id, e.amount, e.line_no
      FROM unnest(p_accounts, p_amounts) WITH ORDINALITY AS e(account_id, amount, line_no)
     ORDER BY e.line_no;

    IF p_consume > 0 THEN
        WITH locked AS (
            SELECT l.id, l.remaining, l.expires_at, l.earned_at
              FROM lots l
             WHERE l.member_id = p_member_id AND l.status = 'available' AND l.remaining > 0
             ORDER BY l.expires_at IS NULL, l.expires_at, l.earned_at, l.id
               FOR UPDATE
        ), ranked AS (
            SELECT k.id, k.remaining, row_number() OVER w AS ord,
                   sum(k.remaining) OVER w - k.remaining AS before
              FROM locked k
            WINDOW w AS (ORDER BY k.expires_at IS NULL, k.expires_at, k.earned_at, k.id
                         ROWS UNBOUNDED PRECEDING)
        ), taken AS (
            UPDATE lots l SET remaining = l.remaining - least(r.remaining, p_consume - r.before)
              FROM ranked r
             WHERE l.id = r.id AND r.before < p_consume
            RETURNING l.id, l.remaining, least(r.remaining, p_consume - r.before) AS amount, r.ord
        ), recorded AS (
            INSERT INTO lot_movements (lot_id, transaction_id, amount)
            SELECT t.id, p_id, -t.amount FROM taken t ORDER BY t.ord
        )
        SELECT array_agg(t.id ORDER BY t.ord), array_agg(t.remaining ORDER BY t.ord),
               array_agg(t.amount ORDER BY t.ord)
          INTO taken_ids, taken_remaining, taken_amounts
          FROM taken t;
    END IF;

    IF p_lot_points IS NOT NULL THEN
        IF p_lot_budget_account IS NULL THEN
            new_lot_remaining := p_lot_points;
        ELSE
            moved := balances[array_position(p_cached, p_lot_budget_account)];
            new_lot_remaining := greatest(moved, 0) - greatest(moved - p_lot_points, 0);
        END IF;
        INSERT INTO lots
            (member_id, program_id, transaction_id, source, points, remaining, status, earned_at,
             available_at, expires_at)
        VALUES
            (p_member_id, p_lot_program_id, p_id, p_lot_source, p_lot_points, new_lot_remaining,
             p_lot_status, p_created_at, p_lot_available_at, p_lot_expires_at)
        RETURNING id INTO new_lot_id;
        INSERT INTO lot_movements (lot_id, transaction_id, amount)
        VALUES (new_lot_id, p_id, new_lot_remaining);
    END IF;

    IF p_activity_at IS NOT NULL THEN
        UPDATE members SET last_activity_at = p_activity_at WHERE id = p_member_id;
    END IF;
END
$fn$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP FUNCTION IF EXISTS loyalty_post({SIGNATURE})")
