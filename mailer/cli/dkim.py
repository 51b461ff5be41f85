"""`mailer dkim`: DKIM keys for signing mail, and the DNS records that publish them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.common import fail
from mailer.config import ConfigError

dkim_app = typer.Typer(help="DKIM keys for signing mail.", no_args_is_help=True)


@dkim_app.command("keygen")
def keygen(
    selector: Annotated[str, typer.Option(help="The selector (s=), e.g. mail2026.")],
    domain: Annotated[str, typer.Option(help="The signing domain (d=), e.g. example.com.")],
    out: Annotated[
        Path, typer.Option(help="Where to write the private key (PEM); must not exist yet.")
    ],
    ed25519: Annotated[
        bool, typer.Option("--ed25519", help="An ed25519 key for a second signature.")
    ] = False,
) -> None:
    """Write a new private key (RSA 2048 bits, or ed25519) and print the DNS TXT record
    to publish and the settings to set."""
    from mailer.delivery import dkim

    try:
        dkim.check_dns_name(selector, "--selector")
        dkim.check_dns_name(domain, "--domain")
    except ConfigError as exc:
        raise fail(str(exc)) from exc
    kind = "ed25519" if ed25519 else "rsa"
    new_key = dkim.generate(kind)
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise fail(f"{out} exists already; not overwriting it (choose another --out)") from exc
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror or exc}") from exc
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(new_key.private_pem)
    os.chmod(out, 0o600)  # whatever the umask did to the mode os.open asked for

    name = dkim.record_name(selector.rstrip("."), domain.rstrip("."))
    strings = dkim.quoted_strings(new_key.txt_value)
    path = out.resolve()
    typer.echo(f"Private key ({kind}) written to {path} (mode 0600).", err=True)
    typer.echo("")
    typer.echo("Publish this DNS TXT record:")
    typer.echo(f"  name:  {name}")
    typer.echo(f"  value: {strings}")
    typer.echo("As a zone-file line:")
    typer.echo(f"{name}. 3600 IN TXT ( {strings} )")
    typer.echo("")
    typer.echo("Then set (config file, or the MAILER_DKIM__* variables):")
    typer.echo("[dkim]")
    typer.echo(f"domain = {json.dumps(domain.rstrip('.'))}")
    if ed25519:
        typer.echo(f"ed25519_selector = {json.dumps(selector)}")
        typer.echo(f"ed25519_private_key_path = {json.dumps(str(path))}")
        typer.echo("# beside the RSA key's selector and private_key_path: ed25519 is only a second")
        typer.echo("# signature, since many receivers do not check it yet")
    else:
        typer.echo(f"selector = {json.dumps(selector)}")
        typer.echo(f"private_key_path = {json.dumps(str(path))}")
