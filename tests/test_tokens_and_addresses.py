"""Pure helpers: signed tokens, address normalization, header-injection checks."""

from __future__ import annotations

import pytest

from mailer.subscriptions.addresses import check_header_safe, normalize_email
from mailer.subscriptions.errors import InvalidInput
from mailer.tokens import MAX_TOKEN_LENGTH, BadToken, Purpose, Signer

SIGNER = Signer(b"k" * 48)


def test_a_token_round_trips_for_its_purpose_only() -> None:
    token = SIGNER.sign(Purpose.confirm, {"c": 42})
    assert SIGNER.verify(Purpose.confirm, token) == {"c": 42}
    with pytest.raises(BadToken):
        SIGNER.verify(Purpose.unsubscribe, token)
    with pytest.raises(BadToken):
        Signer(b"other-key" * 6).verify(Purpose.confirm, token)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: "eyJjIjo0M30" + t[t.index(".") :],  # another payload, same signature
        lambda t: t.replace(".", ""),
        lambda t: t + ".x",
        lambda t: "",
        lambda t: "x" * (MAX_TOKEN_LENGTH + 1),
    ],
)
def test_altered_tokens_are_refused(mangle: object) -> None:
    token = SIGNER.sign(Purpose.confirm, {"c": 42})
    with pytest.raises(BadToken):
        SIGNER.verify(Purpose.confirm, mangle(token))  # type: ignore[operator]


def test_tokens_are_unguessable_in_length() -> None:
    token = SIGNER.sign(Purpose.unsubscribe, {"s": 1})
    assert len(token.split(".")[1]) >= 43  # a 256-bit MAC


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("  Reader@EXAMPLE.COM ", "Reader@example.com"),
        ("first.last+tag@Sub.Example.org", "first.last+tag@sub.example.org"),
        ("user@bücher.example", "user@bücher.example"),
    ],
)
def test_addresses_are_trimmed_and_their_domain_lower_cased(raw: str, normalized: str) -> None:
    assert normalize_email(raw) == normalized


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "no-at-sign",
        "two@@example.com",
        "a@b",
        "reader@example.com\r\nBcc: x@y.z",
        "reader@example.com\n",
        '"quoted local"@example.com',
        "x" * 250 + "@example.com",
    ],
)
def test_malformed_addresses_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_email(raw)


@pytest.mark.parametrize(
    "value",
    [
        "Eve\r\nBcc: victim@example.com",
        "Eve\n",
        "Eve\x00",
        "=?utf-8?q?Eve=0D=0ABcc=3A_v=40x=2Ey?=",
        "=?utf-8?b?RXZlDQpCY2M6IHZAeC55?=",
        "Eve\u2028Bcc",
    ],
)
def test_header_injection_is_refused_raw_or_encoded(value: str) -> None:
    with pytest.raises(InvalidInput):
        check_header_safe("name", value)


def test_ordinary_values_pass_the_header_check() -> None:
    for value in ("Ada Lovelace", "Zoë O'Brien", "=?utf-8?q?Zo=C3=AB?="):
        assert check_header_safe("name", value) == value
