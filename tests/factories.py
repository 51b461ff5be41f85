"""Readers made over HTTP, the way a reader's browser makes them: signing up on a form
and following the link in the confirmation mail. One definition each, for every test
module; a module that needs other details passes them (`email`, `form`, body fields,
`user_agent`)."""

from __future__ import annotations

from typing import Any

import httpx

from mailer.db import session_scope
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
