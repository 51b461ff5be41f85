"""The project as a user installs it without a checkout: a wheel in a fresh virtualenv."""

from __future__ import annotations

import os
import re
import site
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_wheel_installed_in_a_fresh_virtualenv_delivers_a_confirmation(tmp_path: Path) -> None:
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path, ROOT, cwd=tmp_path)
    [wheel] = tmp_path.glob("mailer-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    target = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path
        ).strip()
    )
    # The wheel's own files go into the new environment; its dependencies are taken from
    # the test environment's site-packages, whose .pth files (the editable checkout) are
    # not read from a plain path entry.
    run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--target",
        target,
        wheel,
        cwd=tmp_path,
    )
    (target / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    (venv / "bin" / "mailer").write_text(
        f"#!{python}\nimport sys\nfrom mailer.cli import app\nsys.exit(app())\n"
    )
    (venv / "bin" / "mailer").chmod(0o755)
    where = run(python, "-c", "import mailer; print(mailer.__file__)", cwd=tmp_path)
    assert where.startswith(str(target)), "the wheel's copy is the one imported"

    workdir = tmp_path / "site"
    workdir.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [venv / "bin" / "mailer", "serve", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        answer = httpx.post(f"{base}/subscribe", json={"email": "reader@example.com"})
        assert answer.status_code == 202, answer.text
        outbox = workdir / "var" / "outbox" / "new"
        while not list(outbox.glob("*.eml")):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        [mail] = outbox.glob("*.eml")
        assert re.search(rf"{base}/confirm/\S+", mail.read_text()), mail.read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "Traceback" not in log.read_text()
