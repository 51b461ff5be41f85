"""provider notification tokens seen, so a replayed signature is refused

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_notification_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("keep_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "provider", "token_hash", name="uq_provider_notification_tokens_provider"
        ),
    )
    op.create_index(
        "ix_provider_notification_tokens_keep_until",
        "provider_notification_tokens",
        ["keep_until"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_provider_notification_tokens_keep_until", table_name="provider_notification_tokens"
    )
    op.drop_table("provider_notification_tokens")
