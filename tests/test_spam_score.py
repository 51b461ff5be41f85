"""The default digest, as a publisher would send it (realistic articles, DKIM-signed),
scores well below SpamAssassin's threshold with Debian's rules and no network tests."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailer.clock import FrozenClock
from mailer.services import Services
from tests.commands import keygen
from tests.conftest import SmtpSink, link_in, outbox_idle

SPAMASSASSIN = Path("/usr/bin/spamassassin")
MAX_SCORE = 2.0
SITE = "https://www.example-news.com"
READER = "maria.keller@example.net"

ARTICLES = [
    {
        "path": "world/2026/11/26/climate-talks-reach-agreement-on-methane",
        "title": "Climate talks reach an agreement on methane",
        "summary": (
            "After two weeks of negotiations, delegates agreed to cut methane emissions from "
            "oil and gas production by a third before 2035, with yearly reports to the UN."
        ),
        "author": "Jana Weber",
        "topics": ["world"],
    },
    {
        "path": "health/2026/11/26/city-hospitals-extend-winter-vaccination-hours",
        "title": "City hospitals extend their winter vaccination hours",
        "summary": (
            "Clinics in all twelve districts will stay open until 8 p.m. on weekdays through "
            "February; appointments can be booked online or by phone."
        ),
        "author": "Tomasz Nowak",
        "topics": ["health"],
    },
    {
        "path": "world/2026/11/25/rail-strike-ends-after-new-wage-deal",
        "title": "Rail strike ends after a new wage deal",
        "summary": (
            "Train drivers return to work on Thursday morning after the union accepted a "
            "4.5 percent raise over two years. Regional services resume first."
        ),
        "author": "Lea Schmidt",
        "topics": ["world"],
    },
    {
        "path": "health/2026/11/25/study-links-short-walks-to-better-sleep",
        "title": "Study links short daily walks to better sleep",
        "summary": (
            "Researchers followed 3,000 adults for a year: those who walked twenty minutes a "
            "day fell asleep faster and woke less often during the night."
        ),
        "author": "",
        "topics": ["health"],
    },
]


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    key = keygen(tmp_path, "news2026")
    return {
        "public_url": "https://newsletter.example-news.com",
        "mail": {
            "from_address": "news@example-news.com",
            "from_name": "Example News",
            "site_name": "Example News",
            "reply_to": "newsroom@example-news.com",
            "postal_address": "Example News GmbH, Friedrichstrasse 120, 10117 Berlin, Germany",
        },
        "dkim": {
            "domain": "example-news.com",
            "selector": "news2026",
            "private_key_path": str(key.path),
        },
    }


def spamassassin_report(data: bytes, home: Path) -> tuple[float, list[str], str]:
    """The score and the rules that hit, from `spamassassin -t -L` (local tests only)."""
    assert SPAMASSASSIN.exists(), (
        f"{SPAMASSASSIN} is missing: install Debian's spamassassin package (scripts/test does)"
    )
    home.mkdir(exist_ok=True)
    prefs = home / "user_prefs"
    # No Bayes and no auto-whitelist: their state would make the score depend on history.
    prefs.write_text("use_bayes 0\nuse_auto_whitelist 0\n")
    result = subprocess.run(
        [str(SPAMASSASSIN), "-t", "-L", "-p", str(prefs)],
        input=data,
        capture_output=True,
        timeout=120,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )
    output = result.stdout.decode("utf-8", "replace")
    status = re.search(r"^X-Spam-Status: .*?score=(-?[\d.]+)", output, re.MULTILINE)
    assert status, f"no X-Spam-Status in spamassassin's answer:\n{output}\n{result.stderr!r}"
    rules = re.findall(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s", output, re.MULTILINE)
    hits = [f"{name} {points}" for points, name in rules]
    return float(status.group(1)), hits, output


def test_the_default_digest_scores_below_two_with_spamassassin(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    editor.post("/subscribe", json={"email": READER})
    [confirmation] = smtp.wait_for(1)
    confirm = link_in(confirmation.message, "/confirm/", "https://newsletter.example-news.com")
    assert editor.post(confirm).status_code == 200
    for hours_ago, item in enumerate(ARTICLES, start=1):
        answer = editor.post(
            "/api/v1/articles",
            json={
                "url": f"{SITE}/{item['path']}",
                "title": item["title"],
                "summary": item["summary"],
                "author": item["author"],
                "topics": item["topics"],
                "image_url": f"{SITE}/images/2026/11/{item['path'].rsplit('/', 1)[1]}.jpg",
                "published_at": (clock.now() - timedelta(hours=hours_ago)).isoformat(),
            },
        )
        assert answer.status_code == 201, answer.text
    digest = editor.post(
        "/api/v1/digests",
        json={
            "list": "news",
            "name": "Morning Brief",
            "schedule": "0 7 * * *",
            "timezone": "Europe/Berlin",
            "topics": ["world", "health"],
            "max_articles": 5,
        },
    ).json()
    assert editor.post(f"/api/v1/digests/{digest['id']}/send").status_code == 202
    outbox_idle(services)
    [delivered] = [m for m in smtp.to(READER) if "Morning Brief" in m.message["Subject"]]
    assert delivered.data.startswith(b"DKIM-Signature:")

    score, hits, report = spamassassin_report(delivered.data, tmp_path / "sa-home")
    print(f"SpamAssassin score {score}; rules hit: {', '.join(hits) or 'none'}")
    assert score < MAX_SCORE, f"score {score} >= {MAX_SCORE}; rules hit: {hits}\n{report}"
