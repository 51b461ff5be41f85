"""DKIM signing cost: digest messages composed per second by the sender's composer, not
signed, signed with RSA 2048, and signed with RSA 2048 plus ed25519.

    .venv/bin/python bench/dkim_sign.py [--count 2000]

A SQLite database gets `count` confirmed subscribers and a started digest send (eight
articles), as in bench/send.py; then each outbox row is composed (per-recipient values,
headers, encoding: what a worker does in its composer thread) by three composers in turn,
one CPU thread each. Prints messages per second, microseconds per message, the signing
overhead per message, and the signed message's size; then, for scale, the cost of the RSA
private-key operation alone in dkimpy (pure Python) and in OpenSSL (cryptography).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sqlmodel import col, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from send import bench_settings, start_digest_send  # noqa: E402


def write_key(path: Path, kind: str) -> Path:
    from mailer.delivery import dkim

    path.write_bytes(dkim.generate(kind).private_pem)
    return path


def compose_rate(settings: object, send_id: int) -> tuple[float, int]:
    """Messages per second composing every row of the send once, and one message's size."""
    from mailer.clock import SystemClock
    from mailer.db import session_scope
    from mailer.models import OutboxMessage
    from mailer.services import build

    services = build(settings)  # type: ignore[arg-type]
    composer = services.sender.composer
    now = SystemClock().now()
    try:
        with session_scope(services.engine) as session:
            rows = list(
                session.exec(select(OutboxMessage).where(col(OutboxMessage.send_id) == send_id))
            )
            composer.prefetch(session, rows)
            composer.compose(session, rows[0], now)  # warm the caches: the body, the send
            started = time.perf_counter()
            size = 0
            for row in rows:
                size = len(composer.compose(session, row, now).data)
            seconds = time.perf_counter() - started
    finally:
        services.engine.dispose()
    return len(rows) / seconds, size


def rsa_operation_us(key_path: Path, rounds: int = 50) -> tuple[float, float]:
    """Microseconds per RSA 2048 PKCS#1 v1.5 signature: dkimpy's, then OpenSSL's."""
    import hashlib

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from dkim import crypto

    from mailer.delivery.dkim import load_rsa_key

    parsed = crypto.parse_pem_private_key(load_rsa_key(key_path, "bench"))
    started = time.perf_counter()
    for n in range(rounds):
        crypto.RSASSA_PKCS1_v1_5_sign(hashlib.sha256(b"%d" % n), parsed)
    in_python = (time.perf_counter() - started) / rounds * 1e6
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    started = time.perf_counter()
    for n in range(rounds):
        key.sign(b"%d" % n, padding.PKCS1v15(), hashes.SHA256())
    in_openssl = (time.perf_counter() - started) / rounds * 1e6
    return in_python, in_openssl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="mailer-bench-dkim-"))
    try:
        base = bench_settings(f"sqlite:///{workdir / 'mailer.db'}", workdir, 25, 1, 100)
        started = start_digest_send(base, args.count, "sqlite")
        rsa_key = write_key(workdir / "rsa.pem", "rsa")
        ed_key = write_key(workdir / "ed25519.pem", "ed25519")
        variants = {
            "not signed": {},
            "rsa 2048": {"domain": "example.org", "selector": "s1", "private_key_path": rsa_key},
            "rsa + ed25519": {
                "domain": "example.org",
                "selector": "s1",
                "private_key_path": rsa_key,
                "ed25519_selector": "s2",
                "ed25519_private_key_path": ed_key,
            },
        }
        print(f"DKIM signing: {args.count} digest messages composed by one thread")
        unsigned = 0.0
        for label, dkim_settings in variants.items():
            settings = base.model_copy(
                update={
                    "dkim": base.dkim.model_validate({k: str(v) for k, v in dkim_settings.items()})
                }
            )
            rate, size = compose_rate(settings, started.send_id)
            unsigned = unsigned or rate
            overhead = (1 / rate - 1 / unsigned) * 1e6
            print(
                f"  {label + ':':<15}{rate:8.0f} msg/s  {1e6 / rate:7.0f} us/msg  "
                f"signing +{overhead:5.0f} us/msg  ({size} bytes)"
            )
        in_python, in_openssl = rsa_operation_us(rsa_key)
        print(
            f"  the RSA operation alone: dkimpy {in_python:.0f} us, OpenSSL {in_openssl:.0f} us "
            f"({in_python / in_openssl:.0f}x)"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
