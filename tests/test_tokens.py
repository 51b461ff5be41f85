"""Signed link tokens: they round-trip, are bound to one purpose and one key, and any
change to them is refused."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from mailer.tokens import MAX_TOKEN_LENGTH, BadToken, Purpose, Signer

SIGNER = Signer(b"a server secret that is long enough for tests" * 2)


def test_a_token_gives_back_the_data_it_was_signed_with() -> None:
    cases: list[tuple[Purpose, dict[str, Any]]] = [
        (Purpose.confirm, {"c": 42}),
        (Purpose.unsubscribe, {"s": 7}),
        (Purpose.unsubscribe, {"s": 7, "l": 3}),
        (Purpose.bounce, {"o": 123456789, "note": "zoë"}),
    ]
    for purpose, data in cases:
        assert SIGNER.verify(purpose, SIGNER.sign(purpose, data)) == data


def test_tokens_fit_in_a_url_without_escaping() -> None:
    token = SIGNER.sign(Purpose.unsubscribe, {"s": 1, "l": 2, "note": "zoë / ? & ="})
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)


def test_a_token_is_bound_to_its_purpose() -> None:
    confirm = SIGNER.sign(Purpose.confirm, {"c": 1})
    for other in (Purpose.unsubscribe, Purpose.bounce):
        with pytest.raises(BadToken):
            SIGNER.verify(other, confirm)
    unsubscribe = SIGNER.sign(Purpose.unsubscribe, {"s": 1})
    with pytest.raises(BadToken):
        SIGNER.verify(Purpose.confirm, unsubscribe)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    foreign = Signer(b"some other server's secret, just as long" * 2)
    with pytest.raises(BadToken):
        SIGNER.verify(Purpose.confirm, foreign.sign(Purpose.confirm, {"c": 1}))


def _swap_last_character(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def _another_payload(token: str) -> str:
    other_payload = SIGNER.sign(Purpose.confirm, {"c": 43}).split(".")[0]
    return other_payload + "." + token.split(".")[1]


TAMPERINGS: dict[str, Callable[[str], str]] = {
    "signature changed": _swap_last_character,
    "payload swapped": _another_payload,
    "payload only": lambda token: token.split(".")[0],
    "signature only": lambda token: token.split(".")[1],
    "dot removed": lambda token: token.replace(".", ""),
    "extra part": lambda token: token + ".x",
    "signature truncated": lambda token: token[:-2],
    "empty": lambda token: "",
    "just a dot": lambda token: ".",
    "non-ASCII": lambda token: token[:-1] + "é",
}


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_a_tampered_token_is_refused(tamper: Callable[[str], str]) -> None:
    token = SIGNER.sign(Purpose.confirm, {"c": 42})
    with pytest.raises(BadToken):
        SIGNER.verify(Purpose.confirm, tamper(token))


def test_an_overlong_token_is_refused_before_any_work() -> None:
    with pytest.raises(BadToken, match="malformed"):
        SIGNER.verify(Purpose.confirm, "a" * MAX_TOKEN_LENGTH + ".b")
    padded = SIGNER.sign(Purpose.confirm, {"c": 1, "pad": "x" * MAX_TOKEN_LENGTH})
    with pytest.raises(BadToken):
        SIGNER.verify(Purpose.confirm, padded)


def test_a_signed_payload_that_is_not_an_object_is_refused() -> None:
    token = SIGNER.sign(Purpose.confirm, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(BadToken, match="payload"):
        SIGNER.verify(Purpose.confirm, token)


def test_the_signature_is_long_enough_not_to_be_guessed() -> None:
    signature = SIGNER.sign(Purpose.unsubscribe, {"s": 1}).split(".")[1]
    assert len(signature) >= 43  # 256 bits in base64url


def test_a_bounce_tag_names_its_message_and_cannot_be_forged_or_reused() -> None:
    signer = Signer(b"k" * 40)
    tag = signer.return_path_tag(123_456_789)
    assert len(f"bounces+{tag}") <= 64, "fits the local part of an address"
    assert tag == tag.lower() and tag.replace("-", "").isalnum()
    assert signer.read_return_path_tag(tag) == 123_456_789
    assert signer.read_return_path_tag(tag.upper()) == 123_456_789, "case may change in transit"
    number, _, mac = tag.partition("-")
    forged = f"{int(number, 36) + 1:x}-{mac}"
    for bad in (forged, f"{number}-{mac[:-1]}", number, "", "-" + mac, "zz-zz-zz"):
        with pytest.raises(BadToken):
            signer.read_return_path_tag(bad)
    with pytest.raises(BadToken):
        Signer(b"other-key" * 5).read_return_path_tag(tag)
