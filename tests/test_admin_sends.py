"""/admin/sends: the list of sends, a send's progress, and pausing, resuming and
cancelling it through the page's buttons."""

from __future__ import annotations

import re
import time

from fastapi.testclient import TestClient

from mailer.clock import FrozenClock
from mailer.services import Services
from tests.admin import csrf_of
from tests.conftest import SmtpSink, outbox_idle
from tests.factories import (
    READERS,
    article,
    confirm_readers,
    morning_brief,
    send_now,
    wait_until_retrying,
)


def press(client: TestClient, send_id: int, button: str) -> tuple[int, str]:
    """Open the send's page and press one of its buttons; the page it lands on."""
    page = client.get(f"/admin/sends/{send_id}")
    assert page.status_code == 200
    answer = client.post(f"/admin/sends/{send_id}/{button}", data={"csrf": csrf_of(page.text)})
    return answer.status_code, answer.text


def status_of(client: TestClient, send_id: int) -> str:
    return str(client.get(f"/api/v1/sends/{send_id}").json()["status"])


def test_pause_resume_and_cancel_on_the_page_change_the_send(
    signed_in: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    confirm_readers(signed_in, smtp, READERS)
    article(signed_in, clock, 1, ["world"], title="Harbour reopens")
    digest = morning_brief(signed_in)
    smtp.stop()  # nothing leaves until the relay is back
    send = send_now(signed_in, digest["id"])
    wait_until_retrying(services, send["id"], 2)

    page = signed_in.get(f"/admin/sends/{send['id']}")
    assert f"Send #{send['id']} of Morning Brief" in page.text
    assert re.search(r'id="send-pending">2<', page.text) and "Pause" in page.text

    status, shown = press(signed_in, send["id"], "pause")
    assert status == 200 and "The send is paused." in shown
    assert status_of(signed_in, send["id"]) == "paused"
    assert 'data-status="paused"' in shown

    status, shown = press(signed_in, send["id"], "resume")
    assert status == 200 and "The send is resumed." in shown
    assert status_of(signed_in, send["id"]) == "queued"

    status, shown = press(signed_in, send["id"], "cancel")
    assert status == 200 and "The send is cancelled." in shown
    progress = signed_in.get(f"/api/v1/sends/{send['id']}").json()
    assert (progress["status"], progress["dropped"], progress["sent"]) == ("cancelled", 2, 0)

    status, shown = press(signed_in, send["id"], "cancel")
    assert status == 409
    assert "a cancelled send cannot become cancelled" in shown
    assert status_of(signed_in, send["id"]) == "cancelled"

    listed = signed_in.get("/admin/sends").text
    assert f'href="/admin/sends/{send["id"]}"' in listed
    assert "Morning Brief: Harbour reopens" in listed
    assert '<span class="badge cancelled">cancelled</span>' in listed


def test_a_finished_send_shows_its_numbers_and_its_failures_with_the_relays_reply(
    signed_in: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    confirm_readers(signed_in, smtp, READERS)
    smtp.handler.replies[READERS[1]] = "550 5.1.1 mailbox unavailable"
    article(signed_in, clock, 1, ["world"])
    digest = morning_brief(signed_in)
    send = send_now(signed_in, digest["id"])
    outbox_idle(services)
    deadline = time.monotonic() + 10
    while status_of(signed_in, send["id"]) != "done":
        assert time.monotonic() < deadline, "the send did not finish"
        time.sleep(0.05)

    page = signed_in.get(f"/admin/sends/{send['id']}").text
    assert '<span id="send-status" class="badge done">done</span>' in page
    assert re.search(r'id="send-sent">1<', page) and re.search(r'id="send-failed">1<', page)
    assert "550 5.1.1 mailbox unavailable" in page and READERS[1] in page
    pause = f'action="/admin/sends/{send["id"]}/pause" data-when="queued sending" hidden'
    assert pause in page, "an ended send offers no pause"


def test_a_change_without_the_forms_token_is_refused(
    signed_in: TestClient, smtp: SmtpSink, clock: FrozenClock
) -> None:
    article(signed_in, clock, 1, ["world"])
    send = send_now(signed_in, morning_brief(signed_in)["id"])
    assert send["status"] == "done", "nobody to send to"
    for button in ("pause", "resume", "cancel"):
        refused = signed_in.post(f"/admin/sends/{send['id']}/{button}", data={})
        assert refused.status_code == 403 and "expired" in refused.text
    unknown = signed_in.get("/admin/sends/999999")
    assert unknown.status_code == 404
