"""subscribers are identified by their canonical address

Adds `subscribers.email_key`: the whole address lower-cased with its domain in IDNA
(ASCII) form. `email` stays as the reader first typed it (mail goes there); every lookup
uses `email_key`, which is unique. Suppressions are keyed by the digest of the canonical
form from now on, so theirs are re-keyed where the address is known.

Subscribers whose addresses differ only in case or domain spelling
(`Reader@Example.org`, `reader@example.org`, `reader@xn--xample-9ua.org` /
`reader@éxample.org`) become one. How each conflict resolves:

- The survivor is the oldest row (earliest `created_at`, then lowest id); it keeps its
  id, its spelling of the address and its name (or the first non-empty name of the
  others). `last_confirmation_at` is the latest of the group's.
- Consent events: every event of every row is kept with all its fields. They are
  re-homed to the survivor and re-chained in time order (seq 1..n, each `prev_hash` the
  one before), so the survivor's chain verifies. The consent-event guard of migration
  0002 is lifted for this step only. One `merged` event is appended last; its text names
  the rows merged and, for each, its former event count, chain head and whether that
  chain verified before the merge, so a tampered chain is never silently laundered.
- Subscriptions, per list: an unsubscribe on any spelling wins (a withdrawal of consent
  is never undone by a merge; the reader can rejoin in one click), else confirmed beats
  pending. Among rows of the winning status the most recently changed one gives the
  topics and `confirmed_at`; `created_at` is the earliest of the group's.
- Suppressions: any suppression of any spelling suppresses the canonical address; when
  several spellings were suppressed, the oldest entry is kept.
- Confirmations, outbox rows and bounce events move to the survivor, so confirm links
  already sent still work. A send that had queued mail for two spellings keeps one.
- The ids of the merged rows are kept in `subscriber_merges` (merged id -> survivor),
  so unsubscribe links already sent to a merged row still act on the survivor.

Erased subscribers keep their placeholder address as key and are never merged.
Downgrade drops the column and table but cannot split merged subscribers again.

Revision ID: 0012
Revises: 0011
"""

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import idna
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The same frozen list as migration 0002: the guard is re-created exactly as it was.
FROZEN = (
    "id",
    "subscriber_id",
    "seq",
    "action",
    "at",
    "form",
    "consent_text",
    "consent_version",
    "prev_hash",
    "hash",
)
ERASED_PREFIX = "sha256:"
PERSONAL_FIELDS = ("source_url", "ip", "user_agent")
STATUS_RANK = {"unsubscribed": 3, "confirmed": 2, "pending": 1}

TIME = sa.DateTime(timezone=True)
subscribers = sa.table(
    "subscribers",
    sa.column("id"),
    sa.column("email"),
    sa.column("email_key"),
    sa.column("name"),
    sa.column("created_at", TIME),
    sa.column("erased_at", TIME),
    sa.column("chain_head"),
    sa.column("chain_length"),
    sa.column("last_confirmation_at", TIME),
)
events = sa.table(
    "consent_events",
    sa.column("id"),
    sa.column("subscriber_id"),
    sa.column("seq"),
    sa.column("action"),
    sa.column("at", TIME),
    sa.column("lists", sa.JSON()),
    sa.column("form"),
    sa.column("consent_text"),
    sa.column("consent_version"),
    sa.column("source_url"),
    sa.column("ip"),
    sa.column("user_agent"),
    sa.column("prev_hash"),
    sa.column("hash"),
)
subscriptions = sa.table(
    "subscriptions",
    sa.column("id"),
    sa.column("subscriber_id"),
    sa.column("list_id"),
    sa.column("status"),
    sa.column("topics", sa.JSON()),
    sa.column("created_at", TIME),
    sa.column("updated_at", TIME),
    sa.column("confirmed_at", TIME),
)
suppressions = sa.table(
    "suppressions",
    sa.column("id"),
    sa.column("address_hash"),
    sa.column("subscriber_id"),
    sa.column("created_at", TIME),
)
outbox = sa.table(
    "outbox",
    sa.column("id"),
    sa.column("subscriber_id"),
    sa.column("send_id"),
    sa.column("status"),
)
merges = sa.table(
    "subscriber_merges",
    sa.column("merged_id"),
    sa.column("subscriber_id"),
    sa.column("merged_at", TIME),
)
MOVED = ("confirmations", "bounce_events")
UNDELIVERED = ("queued", "held", "sending")


def upgrade() -> None:
    op.add_column(
        "subscribers",
        sa.Column("email_key", sa.String(320), nullable=False, server_default=""),
    )
    op.create_table(
        "subscriber_merges",
        sa.Column("merged_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), sa.ForeignKey("subscribers.id"), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("merged_id"),
    )
    bind = op.get_bind()
    _backfill(bind)
    _rekey_suppressions(bind)
    groups = [
        key
        for (key,) in bind.execute(
            sa.select(subscribers.c.email_key)
            .group_by(subscribers.c.email_key)
            .having(sa.func.count() > 1)
        )
    ]
    if groups:
        _lift_guard(bind)
        now = datetime.now(UTC)
        for key in groups:
            _merge(bind, key, now)
        _restore_guard(bind)
    if bind.dialect.name == "postgresql":
        op.alter_column("subscribers", "email_key", server_default=None)
    op.create_index("ix_subscribers_email_key", "subscribers", ["email_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_subscribers_email_key", "subscribers")
    op.drop_table("subscriber_merges")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("email_key")


# ---- the canonical form, frozen as of this revision ------------------------------------


def address_key(email: str) -> str:
    local, _, domain = email.strip(" \t").rpartition("@")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            pass
    return f"{local.lower()}@{domain.lower()}"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _backfill(bind: Any) -> None:
    """ASCII addresses in one statement; the few others (IDN domain, non-ASCII local part)
    row by row, where SQL's lower() cannot be trusted."""
    bind.execute(subscribers.update().values(email_key=sa.func.lower(subscribers.c.email)))
    if bind.dialect.name == "postgresql":
        non_ascii = sa.func.octet_length(subscribers.c.email) != sa.func.char_length(
            subscribers.c.email
        )
    else:
        non_ascii = sa.func.length(sa.cast(subscribers.c.email, sa.LargeBinary)) != sa.func.length(
            subscribers.c.email
        )
    rows = bind.execute(
        sa.select(subscribers.c.id, subscribers.c.email).where(
            non_ascii, subscribers.c.erased_at.is_(None)
        )
    ).all()
    for subscriber_id, email in rows:
        bind.execute(
            subscribers.update()
            .where(subscribers.c.id == subscriber_id)
            .values(email_key=address_key(email))
        )


def _rekey_suppressions(bind: Any) -> None:
    """A suppression keyed by the digest of one spelling is re-keyed to the canonical one."""
    rows = bind.execute(
        sa.select(subscribers.c.email, subscribers.c.email_key).where(
            subscribers.c.email != subscribers.c.email_key, subscribers.c.erased_at.is_(None)
        )
    ).all()
    for email, key in rows:
        old, new = digest(email), digest(key)
        found = bind.execute(
            sa.select(suppressions.c.id, suppressions.c.created_at)
            .where(suppressions.c.address_hash.in_([old, new]))
            .order_by(suppressions.c.created_at, suppressions.c.id)
        ).all()
        if not found or (len(found) == 1 and old == new):
            continue
        oldest, *later = found
        if later:
            bind.execute(suppressions.delete().where(suppressions.c.id.in_([r.id for r in later])))
        bind.execute(
            suppressions.update().where(suppressions.c.id == oldest.id).values(address_hash=new)
        )


# ---- merging -------------------------------------------------------------------------


def _merge(bind: Any, key: str, now: datetime) -> None:
    group = bind.execute(
        sa.select(subscribers)
        .where(subscribers.c.email_key == key)
        .order_by(subscribers.c.created_at, subscribers.c.id)
    ).all()
    survivor, merged = group[0], group[1:]
    merged_ids = [row.id for row in merged]
    all_ids = [survivor.id, *merged_ids]

    for table in MOVED:
        moved = sa.table(table, sa.column("subscriber_id"))
        bind.execute(
            moved.update()
            .where(moved.c.subscriber_id.in_(merged_ids))
            .values(subscriber_id=survivor.id)
        )
    _merge_outbox(bind, survivor.id, merged_ids)
    _merge_subscriptions(bind, survivor.id, all_ids)
    bind.execute(
        suppressions.update()
        .where(suppressions.c.subscriber_id.in_(merged_ids))
        .values(subscriber_id=survivor.id)
    )
    head, length = _merge_events(bind, group, now)

    names = [row.name for row in group if row.name]
    confirmations = [row.last_confirmation_at for row in group if row.last_confirmation_at]
    bind.execute(
        subscribers.update()
        .where(subscribers.c.id == survivor.id)
        .values(
            name=names[0] if names else "",
            last_confirmation_at=max(confirmations, key=_aware) if confirmations else None,
            chain_head=head,
            chain_length=length,
        )
    )
    bind.execute(
        merges.insert(),
        [
            {"merged_id": row_id, "subscriber_id": survivor.id, "merged_at": now}
            for row_id in merged_ids
        ],
    )
    bind.execute(subscribers.delete().where(subscribers.c.id.in_(merged_ids)))


def _merge_outbox(bind: Any, survivor_id: int, merged_ids: list[int]) -> None:
    """Undelivered mail of a send the survivor gets too is dropped; the rest moves."""
    survivor_sends = sa.select(outbox.c.send_id).where(
        outbox.c.subscriber_id == survivor_id, outbox.c.send_id.is_not(None)
    )
    bind.execute(
        outbox.update()
        .where(
            outbox.c.subscriber_id.in_(merged_ids),
            outbox.c.status.in_(UNDELIVERED),
            outbox.c.send_id.in_(survivor_sends),
        )
        .values(status="superseded")
    )
    bind.execute(
        outbox.update()
        .where(outbox.c.subscriber_id.in_(merged_ids))
        .values(subscriber_id=survivor_id)
    )


def _merge_subscriptions(bind: Any, survivor_id: int, all_ids: list[int]) -> None:
    rows = bind.execute(
        sa.select(subscriptions).where(subscriptions.c.subscriber_id.in_(all_ids))
    ).all()
    by_list: dict[int, list[Any]] = {}
    for row in rows:
        by_list.setdefault(row.list_id, []).append(row)
    for same_list in by_list.values():
        if len(same_list) == 1 and same_list[0].subscriber_id == survivor_id:
            continue
        winner = max(
            same_list, key=lambda row: (STATUS_RANK.get(row.status, 0), _aware(row.updated_at))
        )
        kept = next((row for row in same_list if row.subscriber_id == survivor_id), winner)
        others = [row.id for row in same_list if row.id != kept.id]
        if others:
            bind.execute(subscriptions.delete().where(subscriptions.c.id.in_(others)))
        bind.execute(
            subscriptions.update()
            .where(subscriptions.c.id == kept.id)
            .values(
                subscriber_id=survivor_id,
                status=winner.status,
                topics=list(winner.topics or []),
                confirmed_at=winner.confirmed_at,
                updated_at=winner.updated_at,
                created_at=min((row.created_at for row in same_list), key=_aware),
            )
        )


def _merge_events(bind: Any, group: list[Any], now: datetime) -> tuple[str, int]:
    """Re-chain every event of the group under the survivor, in time order, and append
    the `merged` event; returns the new chain head and length."""
    survivor_id = group[0].id
    order = {row.id: position for position, row in enumerate(group)}
    found = bind.execute(sa.select(events).where(events.c.subscriber_id.in_(list(order)))).all()
    notes = []
    for row in group:
        own = sorted((e for e in found if e.subscriber_id == row.id), key=lambda e: e.seq)
        notes.append(
            f"#{row.id}: {len(own)} events, chain head {row.chain_head or '-'}, "
            f"{_chain_state(own, row)}"
        )
    ordered = sorted(found, key=lambda e: (_aware(e.at), order[e.subscriber_id], e.seq))
    # Out of the way of the (subscriber_id, seq) unique constraint first.
    bind.execute(
        events.update()
        .where(events.c.subscriber_id.in_(list(order)))
        .values(subscriber_id=survivor_id, seq=-events.c.id)
    )
    prev = ""
    for seq, event in enumerate(ordered, start=1):
        fields = dict(event._mapping, subscriber_id=survivor_id, seq=seq, prev_hash=prev)
        fields["hash"] = event_hash(fields)
        bind.execute(
            events.update()
            .where(events.c.id == event.id)
            .values(subscriber_id=survivor_id, seq=seq, prev_hash=prev, hash=fields["hash"])
        )
        prev = fields["hash"]
    merged_ids = ", ".join(f"#{row.id}" for row in group[1:])
    note = {
        "subscriber_id": survivor_id,
        "seq": len(ordered) + 1,
        "action": "merged",
        "at": now,
        "lists": [],
        "form": "",
        "consent_text": (
            f"Merged {merged_ids} into #{survivor_id}: the same canonical address. "
            f"Their events, re-chained above in time order, were before the merge: "
            + "; ".join(notes)
            + "."
        ),
        "consent_version": None,
        "source_url": "",
        "ip": "",
        "user_agent": "",
        "prev_hash": prev,
    }
    note["hash"] = event_hash(note)
    bind.execute(events.insert().values(**note))
    return note["hash"], len(ordered) + 1


def _chain_state(own: list[Any], subscriber: Any) -> str:
    prev = ""
    for expected, event in enumerate(own, start=1):
        if (
            event.seq != expected
            or event.prev_hash != prev
            or event_hash(dict(event._mapping)) != event.hash
        ):
            return f"did not verify at seq {event.seq}"
        prev = event.hash
    if prev != subscriber.chain_head or len(own) != subscriber.chain_length:
        return "did not verify (latest events missing)"
    return "verified"


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _personal_digest(value: str) -> str:
    if value.startswith(ERASED_PREFIX):
        return value
    return ERASED_PREFIX + hashlib.sha256(value.encode()).hexdigest()


def event_hash(event: dict[str, Any]) -> str:
    """The ledger's event hash (mailer.subscriptions.ledger.event_hash) as of this revision."""
    lists = event["lists"]
    if isinstance(lists, str):
        lists = json.loads(lists)
    material = [
        event["prev_hash"],
        event["subscriber_id"],
        event["seq"],
        event["action"],
        _aware(event["at"]).astimezone(UTC).isoformat(timespec="microseconds"),
        list(lists),
        event["form"],
        event["consent_text"],
        event["consent_version"],
        *(_personal_digest(event[name]) for name in PERSONAL_FIELDS),
    ]
    encoded = json.dumps(material, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(encoded).hexdigest()


# ---- the consent-event guard (as migration 0002 made it) -------------------------------


def _lift_guard(bind: Any) -> None:
    if bind.dialect.name == "sqlite":
        op.execute("DROP TRIGGER consent_events_no_delete")
        op.execute("DROP TRIGGER consent_events_erasure_only")
    else:
        op.execute("ALTER TABLE consent_events DISABLE TRIGGER consent_events_guard")


def _restore_guard(bind: Any) -> None:
    if bind.dialect.name == "sqlite":
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
        op.execute("ALTER TABLE consent_events ENABLE TRIGGER consent_events_guard")
