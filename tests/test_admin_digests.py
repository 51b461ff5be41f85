"""/admin/digests: creating and editing digests through the pages, the cron builder's next
runs, the preview in its own sandbox, test-sends and send now."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailer.clock import FrozenClock
from mailer.models import Digest, Send
from mailer.services import Services
from tests.admin import csrf_of, sign_in
from tests.conftest import SmtpSink, count_rows
from tests.factories import article, confirm_readers

# A Thursday before Europe/Berlin moves its clocks forward (Sunday 29 March 2026).
BEFORE_DST = datetime(2026, 3, 26, 12, 0, tzinfo=UTC)


def form_fields(**changes: Any) -> dict[str, Any]:
    fields = {
        "name": "Morning Brief",
        "list": "news",
        "schedule": "0 7 * * 1-5",
        "timezone": "Europe/Berlin",
        "topics": "World, Health",
        "max_articles": "8",
        "enabled": "on",
        "subject_template": "",
        "html_template": "",
        "text_template": "",
    }
    return fields | changes


def post_form(client: TestClient, page: str, action: str, **changes: Any) -> Any:
    """Open `page` as a signed-in editor and post its form to `action`."""
    shown = client.get(page)
    assert shown.status_code == 200, shown.text
    data = form_fields(**changes) | {"csrf": csrf_of(shown.text)}
    return client.post(action, data=data, follow_redirects=False)


@pytest.fixture
def signed_in(editor: TestClient, editor_account: None, clock: FrozenClock) -> TestClient:
    """The editor's client (API key) signed in to /admin/ too, on a known Thursday."""
    clock.current = BEFORE_DST
    assert sign_in(editor).status_code == 303
    return editor


def create_by_form(client: TestClient, **changes: Any) -> int:
    made = post_form(client, "/admin/digests/new", "/admin/digests/new", **changes)
    assert made.status_code == 303, made.text
    found = re.fullmatch(r"/admin/digests/(\d+)\?notice=created", made.headers["location"])
    assert found, made.headers["location"]
    return int(found.group(1))


def text_of(html: str) -> str:
    """The page's text without tags, spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_digests_made_by_form_and_by_api_are_listed_with_their_schedule(
    signed_in: TestClient,
) -> None:
    digest_id = create_by_form(signed_in)
    made = signed_in.post(
        "/api/v1/digests",
        json={"list": "news", "name": "Weekend Read", "schedule": "30 9 * * 6,0"},
    )
    assert made.status_code == 201, made.text

    from_api = signed_in.get(f"/api/v1/digests/{digest_id}").json()
    assert from_api["schedule"] == "0 7 * * 1-5"
    assert from_api["timezone"] == "Europe/Berlin"
    assert from_api["topics"] == ["world", "health"]
    assert from_api["max_articles"] == 8
    assert from_api["next_run_at"].startswith("2026-03-27T06:00"), "Friday 07:00 CET"

    listed = text_of(signed_in.get("/admin/digests").text)
    assert "Morning Brief News weekdays at 07:00 0 7 * * 1-5 Europe/Berlin" in listed
    assert "Fri 27 Mar 2026, 07:00 CET" in listed
    assert "Weekend Read News every Sat, Sun at 09:30 30 9 * * 6,0 UTC" in listed
    assert "Sat 28 Mar 2026, 09:30 UTC" in listed

    page = text_of(signed_in.get(f"/admin/digests/{digest_id}").text)
    assert "Next five runs" in page
    assert (
        "Fri 27 Mar 2026, 07:00 CET Mon 30 Mar 2026, 07:00 CEST Tue 31 Mar 2026, 07:00 CEST" in page
    ), "without script the page shows the next runs in the digest's time zone"


def test_editing_changes_the_schedule_and_a_bad_one_is_refused_with_nothing_written(
    signed_in: TestClient, services: Services
) -> None:
    digest_id = create_by_form(signed_in)
    page = f"/admin/digests/{digest_id}"
    saved = post_form(signed_in, page, page, schedule="15 18 * * 5", timezone="America/New_York")
    assert saved.status_code == 303 and saved.headers["location"] == f"{page}?notice=saved"
    after = signed_in.get(f"/api/v1/digests/{digest_id}").json()
    assert (after["schedule"], after["timezone"]) == ("15 18 * * 5", "America/New_York")

    bad_cron = post_form(signed_in, page, page, schedule="61 7 * * *", name="Renamed")
    assert bad_cron.status_code == 422
    assert "invalid cron expression" in bad_cron.text
    assert 'value="61 7 * * *"' in bad_cron.text, "the form keeps what the editor typed"
    bad_zone = post_form(signed_in, page, page, timezone="Mars/Olympus")
    assert bad_zone.status_code == 422 and "unknown time zone" in bad_zone.text
    bad_template = post_form(signed_in, page, page, html_template="{% for %}")
    assert bad_template.status_code == 422 and "html template" in bad_template.text
    assert signed_in.get(f"/api/v1/digests/{digest_id}").json() == after, "nothing written"

    refused = post_form(
        signed_in, "/admin/digests/new", "/admin/digests/new", name="Other", schedule="7 * *"
    )
    assert refused.status_code == 422 and "invalid cron expression" in refused.text
    assert count_rows(services, Digest) == 1


def test_the_schedule_endpoint_gives_five_runs_in_the_zone_across_the_change_to_summer_time(
    signed_in: TestClient,
) -> None:
    answer = signed_in.get(
        "/api/v1/digests/schedule",
        params={"schedule": "0 7 * * 1-5", "timezone": "Europe/Berlin"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["described"] == "weekdays at 07:00"
    assert body["next_runs"] == [
        "2026-03-27T07:00:00+01:00",
        "2026-03-30T07:00:00+02:00",
        "2026-03-31T07:00:00+02:00",
        "2026-04-01T07:00:00+02:00",
        "2026-04-02T07:00:00+02:00",
    ]
    assert body["labels"][:2] == ["Fri 27 Mar 2026, 07:00 CET", "Mon 30 Mar 2026, 07:00 CEST"]

    bad = signed_in.get(
        "/api/v1/digests/schedule", params={"schedule": "0 25 * * *", "timezone": "UTC"}
    )
    assert bad.status_code == 422 and "invalid cron expression" in bad.json()["detail"]
    zone = signed_in.get(
        "/api/v1/digests/schedule", params={"schedule": "0 7 * * *", "timezone": "Nowhere/City"}
    )
    assert zone.status_code == 422 and "unknown time zone" in zone.json()["detail"]


def test_the_preview_shows_the_articles_in_a_frame_with_its_own_policy(
    signed_in: TestClient, clock: FrozenClock
) -> None:
    article(signed_in, clock, 1, ["World"], title="Council approves the new bridge")
    digest_id = create_by_form(signed_in)

    page = signed_in.get(f"/admin/digests/{digest_id}")
    assert '<iframe name="preview-frame"' in page.text and " sandbox " in page.text
    assert "Council approves the new bridge" in page.text, "the text version and the subject"

    shown = signed_in.get(f"/admin/digests/{digest_id}/preview.html")
    assert shown.status_code == 200
    assert "Council approves the new bridge" in shown.text
    policy = shown.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'; style-src 'unsafe-inline'")
    assert "frame-ancestors 'self'" in policy and "script-src" not in policy
    assert shown.headers["x-frame-options"] == "SAMEORIGIN"

    draft = signed_in.post(
        f"/admin/digests/{digest_id}/preview.html",
        data=form_fields(html_template="<p>Draft: {{ articles[0].title | upper }}</p>")
        | {"csrf": csrf_of(page.text)},
    )
    assert "Draft: COUNCIL APPROVES THE NEW BRIDGE" in draft.text
    assert draft.headers["content-security-policy"] == policy
    text = signed_in.post(
        f"/admin/digests/{digest_id}/preview.json",
        data=form_fields(subject_template="Today: {{ articles | length }} story")
        | {"csrf": csrf_of(page.text)},
    ).json()
    assert text["subject"] == "Today: 1 story"
    assert "1. Council approves the new bridge" in text["text"]
    saved = signed_in.get(f"/api/v1/digests/{digest_id}").json()
    assert saved["html_template"] == "" and saved["subject_template"] == "", "a draft saves nothing"


def test_a_test_send_delivers_one_marked_message_and_nothing_to_subscribers(
    signed_in: TestClient, clock: FrozenClock, smtp: SmtpSink, services: Services
) -> None:
    article(signed_in, clock, 1, ["Health"], title="Clinics open longer")
    digest_id = create_by_form(signed_in)
    page = signed_in.get(f"/admin/digests/{digest_id}")

    tested = signed_in.post(
        f"/admin/digests/{digest_id}/test",
        data={"addresses": "desk@example.org\n", "csrf": csrf_of(page.text)},
    )
    assert tested.status_code == 200
    assert "Sent to: desk@example.org" in tested.text
    [received] = smtp.wait_for(1)
    assert received.rcpt_tos == ["desk@example.org"]
    assert received.message["Subject"].startswith("[TEST] Morning Brief: Clinics open longer")
    assert count_rows(services, Send) == 0

    refused = signed_in.post(
        f"/admin/digests/{digest_id}/test",
        data={"addresses": "not an address", "csrf": csrf_of(page.text)},
    )
    assert refused.status_code == 422 and "email" in refused.text
    assert len(smtp.messages) == 1


def test_send_now_opens_the_send_page_and_a_send_with_nothing_new_says_why(
    signed_in: TestClient, clock: FrozenClock, smtp: SmtpSink
) -> None:
    confirm_readers(signed_in, smtp, ["ada@example.com"])
    digest_id = create_by_form(signed_in, topics="")
    page = signed_in.get(f"/admin/digests/{digest_id}")
    empty = signed_in.post(
        f"/admin/digests/{digest_id}/send",
        data={"csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert empty.status_code == 303
    skipped = signed_in.get(empty.headers["location"])
    assert "Nothing was sent" in skipped.text
    assert "no new articles since the previous send" in skipped.text

    article(signed_in, clock, 2, ["World"], title="Harbour reopens", hours_ago=0.5)
    clock.advance(minutes=1)
    started = signed_in.post(
        f"/admin/digests/{digest_id}/send",
        data={"csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    location = started.headers["location"]
    assert started.status_code == 303 and re.fullmatch(
        r"/admin/sends/\d+\?notice=started", location
    )
    send_id = int(location.split("/")[-1].split("?")[0])
    assert signed_in.get(f"/api/v1/sends/{send_id}").json()["total"] == 1
    assert "The send has started." in signed_in.get(location).text

    forged = signed_in.post(f"/admin/digests/{digest_id}/send", data={"csrf": "made-up"})
    assert forged.status_code == 403
