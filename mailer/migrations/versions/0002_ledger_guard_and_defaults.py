"""consent events are append-only; the default list and form exist

Revision ID: 0002
Revises: 0001
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Columns erasure may overwrite with a hash; every other column is frozen.
FROZEN = ("id", "subscriber_id", "seq", "action", "at", "form", "consent_text",
          "consent_version", "prev_hash", "hash")

DEFAULT_CONSENT = "By submitting this form, I agree to the terms."


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in (*FROZEN, "lists"))
        op.execute(
            "CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events "
            "BEGIN SELECT RAISE(ABORT, 'consent events are append-only'); END"
        )
        op.execute(
            f"CREATE TRIGGER consent_events_erasure_only BEFORE UPDATE ON consent_events "
            f"WHEN {changed} "
            "BEGIN SELECT RAISE(ABORT, 'consent events are append-only'); END"
        )
    else:
        new = ", ".join([*(f"NEW.{c}" for c in FROZEN), "NEW.lists::text"])
        old = ", ".join([*(f"OLD.{c}" for c in FROZEN), "OLD.lists::text"])
        op.execute(
            "CREATE FUNCTION consent_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN "
            "IF TG_OP = 'DELETE' THEN RAISE EXCEPTION 'consent events are append-only'; END IF; "
            f"IF ({new}) IS DISTINCT FROM ({old}) THEN "
            "RAISE EXCEPTION 'consent events are append-only'; END IF; "
            "RETURN NEW; END $$"
        )
        op.execute(
            "CREATE TRIGGER consent_events_guard BEFORE UPDATE OR DELETE ON consent_events "
            "FOR EACH ROW EXECUTE FUNCTION consent_events_guard()"
        )

    now = datetime.now(UTC)
    lists = sa.table("lists", sa.column("id"), sa.column("slug"), sa.column("name"),
                     sa.column("description"), sa.column("created_at"))
    forms = sa.table("forms", sa.column("id"), sa.column("slug"), sa.column("name"),
                     sa.column("heading"), sa.column("consent_text"),
                     sa.column("consent_version"), sa.column("consent_checkbox"),
                     sa.column("redirect_url"), sa.column("created_at"),
                     sa.column("updated_at"))
    bind = op.get_bind()
    list_id = bind.execute(
        lists.insert().values(slug="news", name="News", description="Our latest news",
                              created_at=now).returning(lists.c.id)
    ).scalar_one()
    form_id = bind.execute(
        forms.insert().values(slug="default", name="Default signup form",
                              heading="Sign up to receive our latest news!",
                              consent_text=DEFAULT_CONSENT, consent_version=1,
                              consent_checkbox=False, redirect_url="", created_at=now,
                              updated_at=now).returning(forms.c.id)
    ).scalar_one()
    op.bulk_insert(sa.table("form_lists", sa.column("form_id"), sa.column("list_id")),
                   [{"form_id": form_id, "list_id": list_id}])
    op.bulk_insert(
        sa.table("form_consent_versions", sa.column("form_id"), sa.column("version"),
                 sa.column("consent_text"), sa.column("created_at")),
        [{"form_id": form_id, "version": 1, "consent_text": DEFAULT_CONSENT, "created_at": now}],
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER consent_events_no_delete")
        op.execute("DROP TRIGGER consent_events_erasure_only")
    else:
        op.execute("DROP TRIGGER consent_events_guard ON consent_events")
        op.execute("DROP FUNCTION consent_events_guard()")
