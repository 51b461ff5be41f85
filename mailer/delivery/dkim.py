"""DKIM signatures on outgoing mail (dkimpy): the keys, read and checked once at start-up,
the signing of a message's final bytes, and the DNS record that publishes a key."""

from __future__ import annotations

import base64
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
import dkim.crypto
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from mailer.config import ConfigError, DkimSettings

MIN_RSA_BITS = 2048
CANONICALIZATION = (b"relaxed", b"relaxed")
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"feedback-id",
)
OVERSIGNED = frozenset((b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post"))
"""Named once more than they occur: a copy added in transit breaks the signature."""

RSA_SHA256 = b"rsa-sha256"
ED25519_SHA256 = b"ed25519-sha256"
HEADER_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:", re.MULTILINE)
DNS_NAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?:\.(?!-)[A-Za-z0-9_-]{1,63})*\.?")
TXT_STRING_LENGTH = 255
_PROBE = (
    b"From: probe@example.invalid\r\nTo: probe@example.invalid\r\nSubject: probe\r\n\r\nprobe\r\n"
)


@dataclass(frozen=True)
class DkimKey:
    """One signing key as dkimpy takes it."""

    selector: bytes
    algorithm: bytes
    private_key: bytes
    """PEM (PKCS#1) for RSA; the base64 seed for ed25519."""


# dkimpy canonicalizes, hashes and writes the header; its RSA private-key step is pure
# Python (about 7 ms a message for 2048 bits, ~25 times OpenSSL's cost) and it parses the
# PEM key again for every message. Both steps are handed to OpenSSL (cryptography) with
# the same inputs and outputs: the signature bytes are identical (RSASSA-PKCS1-v1_5 is
# deterministic), which the tests check against dkimpy's own verification.


@functools.lru_cache(maxsize=8)
def _openssl_key(numbers: tuple[int, ...]) -> rsa.RSAPrivateKey:
    n, e, d, p, q, dmp1, dmq1, iqmp = numbers
    return rsa.RSAPrivateNumbers(
        p, q, d, dmp1, dmq1, iqmp, rsa.RSAPublicNumbers(e, n)
    ).private_key()


def _rsa_sign_with_openssl(digest: Any, private_key: dict[str, int]) -> bytes:
    """dkimpy's `RSASSA_PKCS1_v1_5_sign(hash, private_key)`, done by OpenSSL."""
    key = _openssl_key(
        tuple(
            private_key[name]
            for name in (
                "modulus",
                "publicExponent",
                "privateExponent",
                "prime1",
                "prime2",
                "exponent1",
                "exponent2",
                "coefficient",
            )
        )
    )
    value = digest.digest()
    if len(value) != hashes.SHA256.digest_size:  # mailer signs rsa-sha256 only
        raise dkim.ParameterError("only rsa-sha256 is signed")
    return key.sign(value, padding.PKCS1v15(), Prehashed(hashes.SHA256()))


_parse_pem_once = functools.lru_cache(maxsize=8)(dkim.crypto.parse_pem_private_key)


def _use_openssl_for_rsa() -> None:
    dkim.RSASSA_PKCS1_v1_5_sign = _rsa_sign_with_openssl
    dkim.parse_pem_private_key = _parse_pem_once


class DkimSigner:
    """Signs messages for one domain with an RSA key and, optionally, an ed25519 key."""

    def __init__(self, domain: str, keys: list[DkimKey]) -> None:
        self.domain = domain.encode("ascii")
        self.keys = keys
        _use_openssl_for_rsa()

    @classmethod
    def from_settings(cls, settings: DkimSettings) -> DkimSigner | None:
        """The signer for the [dkim] settings, or None when signing is off. ConfigError
        when a key file is missing, unreadable, or not a key of the right kind."""
        if not settings.domain:
            return None
        check_dns_name(settings.domain, "dkim.domain")
        check_dns_name(settings.selector, "dkim.selector")
        if settings.ed25519_selector:
            check_dns_name(settings.ed25519_selector, "dkim.ed25519_selector")
        keys = [
            DkimKey(
                settings.selector.encode("ascii"),
                RSA_SHA256,
                load_rsa_key(Path(settings.private_key_path), "dkim.private_key_path"),
            )
        ]
        if settings.ed25519_selector:
            keys.append(
                DkimKey(
                    settings.ed25519_selector.encode("ascii"),
                    ED25519_SHA256,
                    load_ed25519_key(
                        Path(settings.ed25519_private_key_path), "dkim.ed25519_private_key_path"
                    ),
                )
            )
        signer = cls(settings.domain, keys)
        try:
            signer.sign(_PROBE)
        except dkim.DKIMException as exc:
            raise ConfigError(f"dkim: the key cannot sign: {exc}") from exc
        return signer

    def sign(self, data: bytes) -> bytes:
        """The message with its DKIM-Signature header(s) first: RSA, then ed25519."""
        headers = signed_header_list(data)
        signatures = [
            dkim.sign(
                data,
                key.selector,
                self.domain,
                key.private_key,
                canonicalize=CANONICALIZATION,
                signature_algorithm=key.algorithm,
                include_headers=headers,
                length=False,
            )
            for key in self.keys
        ]
        return b"".join(signatures) + data


def check_dns_name(value: str, setting: str) -> None:
    """ConfigError unless `value` can be part of a DNS name (ASCII labels, dots)."""
    if not DNS_NAME.fullmatch(value):
        raise ConfigError(
            f"{setting}: {value!r} is not a DNS name (letters, digits, dashes and dots; "
            "write international names as xn--...)"
        )


def signed_header_list(data: bytes) -> list[bytes]:
    """The h= names for this message: each signed header as often as it occurs, the
    over-signed ones once more; headers the message lacks are left out."""
    head = data.split(b"\r\n\r\n", 1)[0]
    present: dict[bytes, int] = {}
    for match in HEADER_NAME.finditer(head):
        name = match.group(1).lower()
        present[name] = present.get(name, 0) + 1
    names: list[bytes] = []
    for name in SIGNED_HEADERS:
        count = present.get(name, 0)
        if count:
            names += [name] * (count + (name in OVERSIGNED))
    return names


def _read_pem(path: Path, setting: str) -> object:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{setting}: {path} is not an unencrypted PEM private key "
            "(`mailer dkim keygen` writes one)"
        ) from exc


def load_rsa_key(path: Path, setting: str) -> bytes:
    """The RSA key at `path` as dkimpy reads it; ConfigError unless RSA of 2048 bits or more."""
    key = _read_pem(path, setting)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(
            f"{setting}: {path} is not an RSA key; DKIM's main signature needs RSA "
            f"of at least {MIN_RSA_BITS} bits"
        )
    if key.key_size < MIN_RSA_BITS:
        raise ConfigError(
            f"{setting}: {path} is a {key.key_size}-bit RSA key; at least {MIN_RSA_BITS} "
            "bits are needed (`mailer dkim keygen` makes one)"
        )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def load_ed25519_key(path: Path, setting: str) -> bytes:
    """The ed25519 key at `path` as dkimpy reads it (its 32-byte seed in base64)."""
    key = _read_pem(path, setting)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{setting}: {path} is not an Ed25519 key")
    seed = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(seed)


# ---- new keys and their DNS records ---------------------------------------------------


@dataclass(frozen=True)
class NewKey:
    private_pem: bytes
    txt_value: str
    """The DNS TXT record's value: v=DKIM1; k=...; p=..."""


def generate(kind: str) -> NewKey:
    """A new private key ("rsa": 2048 bits, or "ed25519") and the record publishing it."""
    private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if kind == "rsa":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
        public = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        private_key = ed25519.Ed25519PrivateKey.generate()
        public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    value = f"v=DKIM1; k={kind}; p={base64.b64encode(public).decode('ascii')}"
    return NewKey(pem, value)


def record_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}"


def quoted_strings(value: str) -> str:
    """The value as a zone file writes it: quoted strings of at most 255 characters."""
    chunks = [
        value[start : start + TXT_STRING_LENGTH]
        for start in range(0, len(value), TXT_STRING_LENGTH)
    ]
    return " ".join(f'"{chunk}"' for chunk in chunks)
