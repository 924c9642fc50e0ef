"""Erased customers' segment history goes.

Until this revision an erased customer left every segment (history rows and `segment_exited` with cause
`erasure`) but the rows of their entries and exits stayed. Erasure now deletes them (as the value
package deletes the ladder history); this removes those left by earlier erasures. No schema change.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM segment_history WHERE customer_id IN "
        "(SELECT customer_id FROM customer_features WHERE erased = true)"
    )


def downgrade() -> None:
    pass  # what was erased stays erased
