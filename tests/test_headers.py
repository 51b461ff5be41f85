"""Security headers on every answer, and the editors' API used with a signed-in browser's
session cookie (reads freely, writes only with the session's CSRF token)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mailer.services import Services
from mailer.web.headers import policy_for
from tests.admin import csrf_of, sign_in


def directives(policy: str) -> dict[str, str]:
    parts = (part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    return {part[0]: (part[1] if len(part) > 1 else "") for part in parts}


@pytest.mark.parametrize(
    "path",
    ["/admin/", "/forms/default", "/forms/default/thanks", "/confirm/not-a-token", "/healthz"],
)
def test_every_answer_carries_a_policy_without_inline_scripts(
    client: TestClient, path: str
) -> None:
    answer = client.get(path)
    policy = directives(answer.headers["content-security-policy"])
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["object-src"] == "'none'" and policy["base-uri"] == "'none'"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_only_the_signup_form_pages_may_be_framed_by_other_sites(client: TestClient) -> None:
    for path in ("/forms/default", "/forms/default/thanks"):
        answer = client.get(path)
        assert directives(answer.headers["content-security-policy"])["frame-ancestors"] == "*"
        assert "x-frame-options" not in answer.headers
    for path in ("/admin/", "/unsubscribe/not-a-token", "/api/v1/lists", "/archive/news"):
        answer = client.get(path)
        assert directives(answer.headers["content-security-policy"])["frame-ancestors"] == (
            "'none'"
        ), path
        assert answer.headers["x-frame-options"] == "DENY", path


def test_the_api_docs_page_keeps_working_under_its_own_policy() -> None:
    policy, frameable = policy_for("/docs")
    assert "https://cdn.jsdelivr.net" in directives(policy)["script-src"] and not frameable


def test_a_signed_in_browser_reads_the_api_and_writes_only_with_its_csrf_token(
    client: TestClient, services: Services, editor_account: None
) -> None:
    assert client.get("/api/v1/lists").status_code == 401, "no cookie, no key"
    assert sign_in(client).status_code == 303
    assert client.get("/api/v1/lists").status_code == 200

    body = {"slug": "sport", "name": "Sport"}
    refused = client.post("/api/v1/lists", json=body)
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
    forged = client.post("/api/v1/lists", json=body, headers={"X-CSRF-Token": "forged"})
    assert forged.status_code == 403
    assert [item["slug"] for item in client.get("/api/v1/lists").json()] == ["news"]

    token = csrf_of(client.get("/admin/dashboard").text)
    made = client.post("/api/v1/lists", json=body, headers={"X-CSRF-Token": token})
    assert made.status_code == 201
    assert {item["slug"] for item in client.get("/api/v1/lists").json()} == {"news", "sport"}


def test_admin_pages_send_a_signed_out_browser_to_the_sign_in_form(client: TestClient) -> None:
    answer = client.get("/admin/dashboard", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/"
