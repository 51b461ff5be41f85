"""The `mailer` console script run as a real process, the way an operator runs it: the
command line, an environment without the test's own MAILER_* settings, and the check that
a refusal is one clear message (no traceback); and `mailer dkim keygen` run in-process
for a signing key and the DNS record it asks to publish."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from mailer.cli import app

_SCRIPT = Path(sys.executable).with_name("mailer")


MAILER = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "mailer.cli"]


def operator_env(**variables: str) -> dict[str, str]:
    """The test's environment without any MAILER_* setting, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(variables)
    return env


def mailer(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`mailer *args` in `cwd`, its output captured (the operator's environment unless
    `env` is given)."""
    return subprocess.run(
        [*MAILER, *args],
        cwd=cwd,
        env=env if env is not None else operator_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_clear_refusal(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    """The command failed with a message naming each phrase, not a traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


DOMAIN = "example.org"
"""The domain DKIM keys are made for."""


@dataclass
class PublishedKey:
    """A key `mailer dkim keygen` wrote, and the TXT record it asks to publish."""

    path: Path
    selector: str
    record_name: str
    txt_value: str
    output: str


def keygen(directory: Path, selector: str, *extra: str) -> PublishedKey:
    """Run `mailer dkim keygen` and read the record it asks to publish from its output."""
    path = directory / f"{selector}.pem"
    result = CliRunner().invoke(
        app,
        ["dkim", "keygen", "--selector", selector, "--domain", DOMAIN, "--out", str(path), *extra],
    )
    assert result.exit_code == 0, result.output
    name = re.search(r"^  name:\s+(\S+)$", result.stdout, re.MULTILINE)
    value = re.search(r"^  value:\s+(.+)$", result.stdout, re.MULTILINE)
    assert name and value, result.stdout
    strings = re.findall(r'"([^"]*)"', value.group(1))
    assert all(len(string) <= 255 for string in strings)
    return PublishedKey(path, selector, name.group(1), "".join(strings), result.stdout)
