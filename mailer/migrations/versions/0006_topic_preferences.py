"""topic preferences per subscription, and a send rendered per topic choice

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("topics", sa.JSON(), nullable=False,
                                             server_default="[]"))
    op.create_table(
        "send_variants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("send_id", sa.Integer(), nullable=False),
        sa.Column("topics", sa.JSON(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("article_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["send_id"], ["sends.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_send_variants_send_id", "send_variants", ["send_id"])
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("variant_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_outbox_variant_id_send_variants", "send_variants",
                                    ["variant_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint("fk_outbox_variant_id_send_variants", type_="foreignkey")
        batch_op.drop_column("variant_id")
    op.drop_index("ix_send_variants_send_id", table_name="send_variants")
    op.drop_table("send_variants")
    op.drop_column("subscriptions", "topics")
