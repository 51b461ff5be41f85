"""Take the README's screenshots from a running instance.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

In a temporary directory it migrates a fresh SQLite database, records a month of sample
signups and unsubscribes (through the subscription code, with the clock set to each past
day), creates an administrator and an API key, then starts `mailer serve` and uses the
editors' API to add articles and a digest and to send it to the Maildir outbox. Chromium
(Debian's, through Playwright) signs in and photographs the dashboard, then opens the
digest exactly as it was delivered (the HTML part of the .eml file) and photographs it.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import io
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright
from sqlalchemy import Engine, delete
from sqlmodel import col, select

from mailer import accounts, apikeys, config, db
from mailer.db import session_scope
from mailer.models import OutboxMessage, Subscriber, UserRole
from mailer.subscriptions import catalog, leaving, signup, transfer
from mailer.subscriptions.ledger import ConsentContext

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ADMIN = "editor@example.org"
PASSWORD = "screenshots only, not a real password"  # noqa: S105 (a throwaway instance)
ARTICLES = [
    ("Council approves the new bridge after a close vote", "city", "The river crossing"),
    ("Hospitals extend evening opening hours", "health", "Three clinics stay open"),
    ("Storm warning for the coast this weekend", "weather", "Gusts up to 100 km/h"),
    ("Local team reaches the cup final", "sport", "A late goal decided it"),
    ("New cycle lanes open on Ring Road", "city", "Eight kilometres of protected lanes"),
    ("Library opens on Sundays from December", "culture", "A pilot for six months"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def seed_history(settings: config.Settings, today: datetime) -> str:
    """A base of imported readers, then thirty days of signups (each confirmed the same
    day) and some unsubscribes on two lists; returns an API key."""
    engine = db.make_engine(settings)
    db.upgrade(engine)
    rng = random.Random(7)
    with session_scope(engine) as session:
        catalog.create_list(session, "morning", "Morning Brief", "Weekday mornings", today)
        accounts.create_user(session, ADMIN, UserRole.admin, PASSWORD, today)
        key = apikeys.create(session, "screenshots", today)
    start = today - timedelta(days=31)
    for slug, count in (("news", 180), ("morning", 70)):
        rows = "\n".join(["email"] + [f"{slug}{n}@example.net" for n in range(count)])
        transfer.import_csv(engine, io.StringIO(rows), slug, "sample", lambda: start)
    number = 0
    for days_ago in range(30, -1, -1):
        day = today - timedelta(days=days_ago, hours=rng.randint(1, 8))
        for slug, mean in (("news", 9), ("morning", 4)):
            for _ in range(max(0, int(rng.gauss(mean, mean / 3)))):
                number += 1
                sign_up(engine, settings, f"reader{number}@example.net", slug, day)
        with session_scope(engine) as session:
            ids = session.scalars(select(Subscriber.id).order_by(col(Subscriber.id))).all()
            leaving_ids = [i for i in ids if i is not None and rng.random() < 0.01]
            news = catalog.list_by_slug(session, "news")
        for subscriber_id in leaving_ids:
            with session_scope(engine) as session:
                leaving.unsubscribe(
                    session, subscriber_id, {news.id or 0}, ConsentContext(form="sample"), day
                )
    with session_scope(engine) as session:
        # The confirmation mails of the past month are not sent by the instance started now.
        session.execute(delete(OutboxMessage))
    engine.dispose()
    return key


def sign_up(
    engine: Engine, settings: config.Settings, address: str, slug: str, day: datetime
) -> None:
    """A reader signs up through the default form and confirms a few minutes later."""
    with session_scope(engine) as session:
        form = catalog.form_by_slug(session, "default")
        context = ConsentContext(
            form=form.slug,
            consent_text=form.consent_text,
            consent_version=form.consent_version,
            source_url="https://news.example.org/2026/11/an-article",
        )
        done = signup.request(
            session,
            email=address,
            name="",
            lists=[catalog.list_by_slug(session, slug)],
            form_id=form.id,
            context=context,
            settings=settings.signup,
            now=day,
        )
    assert done.confirmation_id is not None
    with session_scope(engine) as session:
        signup.confirm(session, done.confirmation_id, context, day + timedelta(minutes=4))


def start_server(env: dict[str, str], port: int, workdir: Path) -> subprocess.Popen[bytes]:
    mailer = Path(sys.executable).parent / "mailer"
    server = subprocess.Popen(  # noqa: S603 (our own console script)
        [str(mailer), "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("mailer serve did not start")


def send_digest(api: httpx.Client, outbox: Path) -> EmailMessage:
    """Articles and a digest through the editors' API; waits for the first delivered copy."""
    now = datetime.now(UTC)
    for hours, (title, topic, summary) in enumerate(ARTICLES):
        slug = title.lower().replace(" ", "-")[:40]
        made = api.post(
            "/api/v1/articles",
            json={
                "url": f"https://news.example.org/2026/{slug}",
                "title": title,
                "summary": f"{summary}. {title}: what it means for readers in the city.",
                "topics": [topic],
                "published_at": (now - timedelta(hours=hours + 1)).isoformat(),
            },
        )
        made.raise_for_status()
    digest = api.post(
        "/api/v1/digests",
        json={
            "list": "news",
            "name": "Evening digest",
            "schedule": "0 18 * * *",
            "timezone": "Europe/Berlin",
            "topics": [],
            "max_articles": 6,
        },
    )
    digest.raise_for_status()
    send = api.post(f"/api/v1/digests/{digest.json()['id']}/send")
    send.raise_for_status()
    subject = send.json()["subject"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for path in sorted((outbox / "new").glob("*")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if message["Subject"] == subject:
                assert isinstance(message, EmailMessage)
                return message
        time.sleep(0.5)
    raise SystemExit("the digest was not delivered to the outbox")


def photograph(base: str, digest: EmailMessage, out: Path, scratch: Path) -> None:
    html_part = digest.get_body(("html",))
    assert html_part is not None
    digest_file = scratch / "digest.html"
    digest_file.write_text(html_part.get_content(), encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/admin/")
        page.get_by_label("Email address").fill(ADMIN)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text(f"Signed in as {ADMIN}").wait_for()
        page.screenshot(path=str(out / "dashboard.png"), full_page=True)
        mail = browser.new_page(viewport={"width": 720, "height": 900})
        mail.goto(digest_file.as_uri())
        mail.screenshot(path=str(out / "digest.png"), full_page=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mailer-screenshots-") as scratch_name:
        scratch = Path(scratch_name)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "MAILER_DATA_DIR": str(scratch / "var"),
            "MAILER_PUBLIC_URL": base,
            "MAILER_MAIL__SITE_NAME": "The Riverside Courier",
            "MAILER_MAIL__FROM_NAME": "The Riverside Courier",
            "MAILER_MAIL__FROM_ADDRESS": "news@courier.example.org",
            "MAILER_MAIL__POSTAL_ADDRESS": "1 Press Street, 10115 Berlin",
        }
        os.environ.update(env)
        settings = config.load()
        key = seed_history(settings, datetime.now(UTC))
        server = start_server(env, port, scratch)
        try:
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as api:
                digest = send_digest(api, settings.maildir_path)
            photograph(base, digest, args.out, scratch)
        finally:
            server.terminate()
            server.wait(timeout=30)
    for name in ("dashboard.png", "digest.png"):
        print(args.out / name)


if __name__ == "__main__":
    main()
