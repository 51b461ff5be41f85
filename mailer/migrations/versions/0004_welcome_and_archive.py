"""welcome mail and public archive per list

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN: a batch copy of `lists` would trip the foreign keys pointing at it.
    op.add_column("lists", sa.Column("welcome_enabled", sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    op.add_column("lists", sa.Column("welcome_articles", sa.Integer(), nullable=False,
                                     server_default="0"))
    op.add_column("lists", sa.Column("archive_enabled", sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("list_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_outbox_list_id_lists", "lists", ["list_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint("fk_outbox_list_id_lists", type_="foreignkey")
        batch_op.drop_column("list_id")
    with op.batch_alter_table("lists", schema=None) as batch_op:
        batch_op.drop_column("archive_enabled")
        batch_op.drop_column("welcome_articles")
        batch_op.drop_column("welcome_enabled")
