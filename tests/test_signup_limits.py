"""Bursts against POST /subscribe: the limits hold under concurrent posts and the database
holds no more than they allow (bench/subscribe_burst.py measures the same with wrk)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailer.models import Confirmation, ConsentEvent, OutboxMessage, Subscriber
from mailer.services import Services
from tests.conftest import count_rows

LIMIT = 5
BURST = 40


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", {}))


def burst(client: TestClient, posts: list[tuple[str, dict[str, str]]]) -> Counter[int]:
    """Post every (address, headers) at once from 8 threads; the statuses counted."""

    def post(item: tuple[str, dict[str, str]]) -> int:
        email, headers = item
        return client.post("/subscribe", json={"email": email}, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        return Counter(pool.map(post, posts))


@pytest.mark.parametrize(
    "settings_overrides", [{"signup": {"rate_limit_per_ip": LIMIT}}], indirect=True
)
def test_a_burst_from_one_address_gets_429_past_the_limit_and_writes_only_the_limit(
    client: TestClient, services: Services
) -> None:
    statuses = burst(client, [(f"burst{n}@example.com", {}) for n in range(BURST)])

    assert statuses == Counter({202: LIMIT, 429: BURST - LIMIT})
    assert count_rows(services, Subscriber) == LIMIT
    assert count_rows(services, Confirmation) == LIMIT
    assert count_rows(services, ConsentEvent) == LIMIT
    assert count_rows(services, OutboxMessage) == LIMIT
    limited = client.post("/subscribe", json={"email": "one-more@example.com"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    "settings_overrides",
    [{"signup": {"trusted_proxies": ["203.0.113.0/24"], "rate_limit_per_address": LIMIT}}],
    indirect=True,
)
def test_one_address_posted_from_many_networks_gets_one_confirmation_mail(
    client: TestClient, services: Services
) -> None:
    posts = [
        ("target@example.com", {"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(1, BURST)
    ]
    statuses = burst(client, posts)

    assert statuses == Counter({202: LIMIT, 429: len(posts) - LIMIT})
    assert count_rows(services, Subscriber) == 1
    assert count_rows(services, OutboxMessage) == 1, "one confirmation mail per window"
    assert count_rows(services, Confirmation) == 1


SPELLINGS = [
    "target@example.com",
    "Target@example.com",
    "TARGET@EXAMPLE.COM",
    "tArGeT@Example.Com",
    " target@example.COM ",
    "targeT@exAmple.com",
    "TARGET@example.com",
    "Target@EXAMPLE.com",
]


@pytest.mark.parametrize(
    "settings_overrides",
    [{"signup": {"trusted_proxies": ["203.0.113.0/24"], "rate_limit_per_address": LIMIT}}],
    indirect=True,
)
def test_spellings_of_one_address_share_its_limit_and_get_one_confirmation_mail(
    client: TestClient, services: Services
) -> None:
    posts = [
        (SPELLINGS[n % len(SPELLINGS)], {"X-Forwarded-For": f"198.51.100.{n}"})
        for n in range(1, BURST)
    ]
    statuses = burst(client, posts)

    assert statuses == Counter({202: LIMIT, 429: len(posts) - LIMIT})
    assert count_rows(services, Subscriber) == 1
    assert count_rows(services, OutboxMessage) == 1, "one confirmation mail per window"
    assert count_rows(services, Confirmation) == 1
