"""outbox rows without foreign-key triggers on PostgreSQL

A send to a million readers inserts a million outbox rows in one statement; on
PostgreSQL every foreign key adds a trigger call and a row lock on the parent per
inserted row, more than half of that statement's time. Outbox rows are only ever made
from rows that exist (subscribers and sends are never deleted: erasure keeps the row),
so the constraints are dropped there. SQLite keeps them.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CONSTRAINTS = {
    "outbox_subscriber_id_fkey": ("subscribers", "subscriber_id"),
    "outbox_confirmation_id_fkey": ("confirmations", "confirmation_id"),
    "fk_outbox_send_id_sends": ("sends", "send_id"),
    "fk_outbox_list_id_lists": ("lists", "list_id"),
    "fk_outbox_variant_id_send_variants": ("send_variants", "variant_id"),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in CONSTRAINTS:
        op.execute(f'ALTER TABLE outbox DROP CONSTRAINT IF EXISTS "{name}"')


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (table, column) in CONSTRAINTS.items():
        op.create_foreign_key(name, "outbox", table, [column], ["id"])
