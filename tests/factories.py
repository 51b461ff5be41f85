"""What tests make through the app, one definition each for every test module: readers
(signing up on a form the way a reader's browser does, following the link in the
confirmation mail), articles, digests and their sends. A module that needs other
details passes them (`email`, `form`, body fields, `user_agent`)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import select

from mailer.clock import FrozenClock, SystemClock
from mailer.db import session_scope
from mailer.models import MailingList, Subscriber, Subscription
from mailer.services import Services
from mailer.subscriptions import erasure
from tests.conftest import SmtpSink, link_in

READER = "reader@example.com"
ARTICLE = "https://news.example.com/2026/11/a-story"
"""The page the signup form was on (the body's source_url)."""
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0"


def sign_up(
    client: httpx.Client, email: str = READER, *, user_agent: str = BROWSER, **fields: Any
) -> httpx.Response:
    """POST /subscribe from a browser on ARTICLE; `fields` add to the body (form, lists,
    consent...) or replace its source_url. The answer is returned unchecked."""
    body = {"email": email, "source_url": ARTICLE, **fields}
    return client.post("/subscribe", json=body, headers={"User-Agent": user_agent})


def signed_up(
    client: httpx.Client, email: str = READER, *, user_agent: str = BROWSER, **fields: Any
) -> None:
    """`sign_up`, which must be accepted (202)."""
    answer = sign_up(client, email, user_agent=user_agent, **fields)
    assert answer.status_code == 202, answer.text


def confirmed_reader(
    client: httpx.Client,
    smtp: SmtpSink,
    email: str = READER,
    *,
    user_agent: str = BROWSER,
    **fields: Any,
) -> None:
    """A reader signed up (`signed_up`) who followed the link in the one confirmation mail
    that signup sent them, from the same browser. `client` is a TestClient or an
    httpx.Client on a live app: the link is taken relative to its base URL."""
    before = len(smtp.messages)
    signed_up(client, email, user_agent=user_agent, **fields)
    arrived = smtp.wait_for(before + 1)[before:]
    [mail] = [message for message in arrived if email in message.rcpt_tos]
    base = str(client.base_url).rstrip("/")
    confirm = link_in(mail.message, "/confirm/", base=base)
    answer = client.post(confirm, headers={"User-Agent": user_agent})
    assert answer.status_code == 200, answer.text


def id_of(services: Services, email: str = READER) -> int:
    """The id of the subscriber `email` names, in whichever spelling."""
    with session_scope(services.engine) as session:
        found = erasure.find_by_email(session, email)
        assert found is not None and found.id is not None, f"no subscriber {email}"
        return found.id


def confirmed_reader_id(
    client: httpx.Client, smtp: SmtpSink, services: Services, email: str = READER, **fields: Any
) -> int:
    """`confirmed_reader`, and the id of the subscriber it made."""
    confirmed_reader(client, smtp, email, **fields)
    return id_of(services, email)


# ---- articles and digests -------------------------------------------------------------


def confirm_readers(editor: TestClient, smtp: SmtpSink, addresses: list[str]) -> None:
    """A `confirmed_reader` for each address, one after the other."""
    for address in addresses:
        confirmed_reader(editor, smtp, address)


def article(
    editor: TestClient,
    clock: FrozenClock,
    n: int,
    topics: list[str],
    title: str | None = None,
    hours_ago: float = 1,
) -> dict[str, Any]:
    answer = editor.post(
        "/api/v1/articles",
        json={
            "url": f"https://news.example.com/story-{n}",
            "title": title or f"Story {n}",
            "summary": f"What happened in story {n}.",
            "topics": topics,
            "published_at": (clock.now() - timedelta(hours=hours_ago)).isoformat(),
        },
    )
    assert answer.status_code in (200, 201), answer.text
    return dict(answer.json())


def morning_brief(editor: TestClient, **extra: Any) -> dict[str, Any]:
    answer = editor.post(
        "/api/v1/digests",
        json={
            "list": "news",
            "name": "Morning Brief",
            "schedule": "0 7 * * mon-fri",
            "timezone": "Europe/Berlin",
            "topics": ["world", "health"],
            "max_articles": 8,
            **extra,
        },
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def send_now(editor: TestClient, digest_id: int) -> dict[str, Any]:
    answer = editor.post(f"/api/v1/digests/{digest_id}/send")
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


# ---- readers set up directly, and sends ----------------------------------------------


def add_readers(services: Services, emails: list[str]) -> None:
    """Confirmed readers of the list `news` (set up directly: signup is tested elsewhere)."""
    now = services.clock.now()
    with session_scope(services.engine) as session:
        news = session.exec(select(MailingList).where(MailingList.slug == "news")).one()
        for email in emails:
            subscriber = Subscriber(email=email, email_key=email.lower(), created_at=now)
            session.add(subscriber)
            session.flush()
            assert subscriber.id is not None and news.id is not None
            session.add(
                Subscription(
                    subscriber_id=subscriber.id,
                    list_id=news.id,
                    status="confirmed",
                    created_at=now,
                    updated_at=now,
                    confirmed_at=now,
                )
            )


def send_digest(editor: TestClient, story: int = 1, digest_id: int | None = None) -> int:
    """A new article, then the digest sent now; returns the send's id."""
    published = SystemClock().now() - timedelta(minutes=5 if digest_id is None else 0)
    answer = editor.post(
        "/api/v1/articles",
        json={
            "url": f"https://news.example.com/story-{story}",
            "title": f"Story {story}",
            "summary": "What happened.",
            "topics": ["world"],
            "published_at": published.isoformat(),
        },
    )
    assert answer.status_code in (200, 201), answer.text
    if digest_id is None:
        answer = editor.post(
            "/api/v1/digests",
            json={"list": "news", "name": "Brief", "schedule": "0 7 * * *", "max_articles": 5},
        )
        assert answer.status_code == 201, answer.text
        digest_id = int(answer.json()["id"])
    answer = editor.post(f"/api/v1/digests/{digest_id}/send")
    assert answer.status_code == 202, answer.text
    return int(answer.json()["id"])


def wait_done(editor: TestClient, send_id: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = dict(editor.get(f"/api/v1/sends/{send_id}").json())
        if state["status"] in ("done", "cancelled", "skipped"):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.05)


def wait_attempts(
    editor: TestClient, send_id: int, expected: dict[str, int], timeout: float = 10
) -> dict[str, dict[str, Any]]:
    """Wait until each address's message has had this many attempts and is not in flight."""
    deadline = time.monotonic() + timeout
    while True:
        messages = {m["email"]: m for m in editor.get(f"/api/v1/sends/{send_id}/messages").json()}
        done = {
            email: len(m["attempts"]) for email, m in messages.items() if m["status"] != "sending"
        }
        if all(done.get(email) == count for email, count in expected.items()):
            return messages
        assert time.monotonic() < deadline, messages
        time.sleep(0.05)


READERS = ["ada@example.com", "ben@example.org"]


def wait_until_retrying(services: Services, send_id: int, count: int) -> None:
    """Until `count` rows of the send have failed once and wait for their retry."""
    deadline = time.monotonic() + 10
    while True:
        with services.engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM outbox WHERE send_id = :s AND status = 'queued' "
                    "AND attempts >= 1"
                ),
                {"s": send_id},
            ).scalar_one()
        if waiting >= count:
            return
        assert time.monotonic() < deadline, "the send's rows were not tried"
        time.sleep(0.02)


DEFAULT_WORDING = "By submitting this form, I agree to the terms."


def find(editor: TestClient, email: str = READER) -> list[dict[str, Any]]:
    answer = editor.get("/api/v1/subscribers", params={"email": email})
    assert answer.status_code == 200
    return list(answer.json())
