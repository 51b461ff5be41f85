"""Addresses: one normalized form per mailbox, and no way to smuggle a header into mail."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from mailer.errors import Invalid
from mailer.models import Subscriber
from mailer.services import Services
from mailer.subscriptions.addresses import (
    MAX_ADDRESS_LENGTH,
    address_digest,
    address_key,
    canonical_email,
    check_header_safe,
    normalize_email,
)
from tests.conftest import SmtpSink, count_rows, outbox_idle

pytestmark = pytest.mark.both_databases
"""One subscriber per canonical address rests on a unique key and row locks: both databases."""


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("reader@example.com", "reader@example.com"),
        ("  Reader@EXAMPLE.COM ", "Reader@example.com"),
        ("\tFirst.Last+Tag@Sub.Example.ORG\t", "First.Last+Tag@sub.example.org"),
        ("ÜSER@Example.com", "ÜSER@example.com"),
        ("user@Bücher.Example", "user@bücher.example"),
        ("user@xn--bcher-kva.example", "user@bücher.example"),
    ],
)
def test_the_domain_is_lower_cased_and_the_local_part_kept(raw: str, normalized: str) -> None:
    assert normalize_email(raw) == normalized


def test_normalizing_twice_changes_nothing() -> None:
    once = normalize_email("  Reader@EXAMPLE.Com ")
    assert normalize_email(once) == once


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "no-at-sign",
        "two@@example.com",
        "reader@",
        "@example.com",
        "reader@localhost",
        "reader@example.com.",
        "reader@[127.0.0.1]",
        '"quoted local"@example.com',
        "x" * (MAX_ADDRESS_LENGTH - len("@example.com") + 1) + "@example.com",
    ],
)
def test_malformed_addresses_are_refused(raw: str) -> None:
    with pytest.raises(Invalid) as refused:
        normalize_email(raw)
    assert refused.value.field == "email"


@pytest.mark.parametrize(
    "raw",
    [
        "reader@example.com\r\nBcc: victim@example.com",
        "reader@example.com\nBcc: victim@example.com",
        "reader@example.com\n",
        "reader@example.com\r",
        "read\x00er@example.com",
        "reader@example.com\u2028",
        "=?utf-8?q?reader=0D=0ABcc=3A_x=40y=2Ez?=@example.com",
        "=?utf-8?b?cmVhZGVyDQpCY2M6IHhAeS56?=@example.com",
    ],
)
def test_header_injection_in_an_address_is_refused(raw: str) -> None:
    with pytest.raises(Invalid):
        normalize_email(raw)


@pytest.mark.parametrize(
    "value",
    [
        "Eve\r\nBcc: victim@example.com",
        "Eve\nBcc: victim@example.com",
        "Eve\r",
        "Eve\x00",
        "Eve\x1b[31m",
        "Eve\x7f",
        "Eve\u2028Bcc: victim@example.com",
        "Eve\u2029",
        "Eve\x85",
    ],
)
def test_raw_control_characters_are_refused(value: str) -> None:
    with pytest.raises(Invalid, match="line breaks or control"):
        check_header_safe("name", value)


@pytest.mark.parametrize(
    "value",
    [
        "=?utf-8?q?Eve=0D=0ABcc=3A_victim=40example=2Ecom?=",
        "=?UTF-8?Q?Eve=0A?=",
        "=?utf-8?b?RXZlDQpCY2M6IHZAeC55?=",
        "=?utf-8?B?Cg==?=",
        "Eve =?iso-8859-1?q?=0D?= Smith",
        "=?utf-8?q?Eve=E2=80=A8Bcc?=",
        "=?utf-8?q?Eve=00?=",
    ],
)
def test_control_characters_hidden_in_an_encoded_word_are_refused(value: str) -> None:
    with pytest.raises(Invalid, match="encoded line breaks"):
        check_header_safe("name", value)


@pytest.mark.parametrize(
    "value", ["=?x-no-such-charset?q?Eve?=", "=?utf-8?b?a?=", "=?utf-8?b?abcde?="]
)
def test_a_malformed_encoded_word_is_refused_not_a_crash(value: str) -> None:
    with pytest.raises(Invalid, match="malformed encoded word"):
        check_header_safe("name", value)


@pytest.mark.parametrize(
    "value",
    ["", "Ada Lovelace", "Zoë O'Brien", "李小龍", "=?utf-8?q?Zo=C3=AB?=", "a = b ? c"],
)
def test_ordinary_values_pass_unchanged(value: str) -> None:
    assert check_header_safe("name", value) == value


def test_the_address_digest_is_stable_and_reveals_nothing() -> None:
    digest = address_digest("reader@example.com")
    assert digest == address_digest("reader@example.com")
    assert digest != address_digest("other@example.com")
    assert len(digest) == 64 and "reader" not in digest


SPELLINGS = {
    "reader@example.org": [
        "reader@example.org",
        "Reader@Example.org",
        "reader@EXAMPLE.org",
        "READER@example.org",
        "  rEaDeR@eXaMpLe.OrG\t",
    ],
    "reader@xn--xample-9ua.org": [
        "reader@éxample.org",
        "reader@xn--xample-9ua.org",
        "Reader@ÉXAMPLE.org",
        "READER@XN--XAMPLE-9UA.ORG",
    ],
    "üser@xn--bcher-kva.example": ["ÜSER@Bücher.Example", "üser@xn--bcher-kva.example"],
}


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [(raw, canonical) for canonical, spellings in SPELLINGS.items() for raw in spellings],
)
def test_every_spelling_of_an_address_has_one_canonical_form(raw: str, canonical: str) -> None:
    assert canonical_email(raw) == canonical
    assert address_key(normalize_email(raw)) == canonical
    assert address_digest(normalize_email(raw)) == address_digest(canonical)


def test_different_addresses_keep_different_canonical_forms() -> None:
    keys = {canonical_email(raw) for raw in ["a@example.org", "b@example.org", "a@example.com"]}
    assert len(keys) == 3


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("x" * 65 + "@example.com", "before the @-sign"),
        ("Ü" * 33 + "@example.com", "before the @-sign"),  # 66 octets in UTF-8
        ("ü" * 40 + "@example.com", "before the @-sign"),
        ("reader@" + "a" * 64 + ".com", "too many"),
        ("reader@" + ".".join(["a" * 63] * 4) + ".com", "too long"),
        ("x" * 64 + "@" + ".".join(["a" * 62] * 3) + ".com", "too long"),  # 257
        ("ü" * 32 + "@" + ".".join(["a" * 62] * 3) + ".com", "too long"),  # 225 characters
        ("reader@" + "ü" * 60 + ".com", "after the @-sign"),
    ],
)
def test_rfc_5321_length_limits_are_enforced_in_octets(raw: str, problem: str) -> None:
    with pytest.raises(Invalid, match=f"(?i){problem}") as refused:
        normalize_email(raw)
    assert refused.value.field == "email"


@pytest.mark.parametrize(
    "raw",
    [
        "x" * 64 + "@example.com",
        "Ü" * 32 + "@example.com",
        "reader@" + "a" * 63 + ".com",
        "x" * 64 + "@" + ".".join(["a" * 60] * 3) + ".de",
    ],
)
def test_addresses_at_the_limits_are_accepted(raw: str) -> None:
    assert normalize_email(raw) == raw


@pytest.mark.parametrize(
    "raw",
    ["x" * 65 + "@example.com", "Ü" * 33 + "@example.com", "reader@" + "a" * 64 + ".com"],
)
def test_a_signup_past_the_length_limits_gets_422_with_the_reason_and_writes_nothing(
    client: TestClient, services: Services, raw: str
) -> None:
    answer = client.post("/subscribe", json={"email": raw})
    assert answer.status_code == 422
    assert answer.json()["field"] == "email"
    assert re.search("too (long|many)", answer.json()["detail"]), answer.text
    assert count_rows(services, Subscriber) == 0


def test_every_spelling_of_an_address_is_one_subscriber_with_one_confirmation_mail(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    spellings = SPELLINGS["reader@example.org"]
    for raw in spellings:
        assert editor.post("/subscribe", json={"email": raw}).status_code == 202
    outbox_idle(services)

    assert count_rows(services, Subscriber) == 1
    assert len(smtp.messages) == 1
    assert smtp.messages[0].rcpt_tos == ["reader@example.org"], "mail goes to the first spelling"
    for raw in spellings:
        [found] = editor.get("/api/v1/subscribers", params={"email": raw}).json()
        assert found["email"] == "reader@example.org"
        assert [item["status"] for item in found["lists"]] == ["pending"]


def test_a_reader_is_found_by_any_spelling_of_an_international_domain(
    editor: TestClient, services: Services
) -> None:
    assert editor.post("/subscribe", json={"email": "Reader@Éxample.org"}).status_code == 202
    for raw in ["reader@xn--xample-9ua.org", "READER@éxample.org", "reader@ÉXAMPLE.ORG"]:
        assert editor.post("/subscribe", json={"email": raw}).status_code == 202
        [found] = editor.get("/api/v1/subscribers", params={"email": raw}).json()
        assert found["email"] == "Reader@éxample.org"
    assert count_rows(services, Subscriber) == 1


@pytest.mark.parametrize("name", ["=?utf-8?b?a?=", "=?x-no-such-charset?q?Eve?="])
def test_a_signup_with_a_malformed_encoded_word_gets_422_not_500(
    client: TestClient, services: Services, name: str
) -> None:
    answer = client.post("/subscribe", json={"email": "reader@example.com", "name": name})
    assert answer.status_code == 422
    assert answer.json()["field"] == "name"
    assert count_rows(services, Subscriber) == 0
