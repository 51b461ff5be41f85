"""Settings that would make every request, send or poll fail are refused before anything
starts, by every command, with one line naming the key and its environment variable; so
are database URLs that cannot work, with what is wrong in the operator's terms."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mailer import config
from tests.commands import mailer, operator_env
from tests.conftest import PG_ADMIN, SECRET, _pg_url

BAD_SETTINGS = [
    ("MAILER_SIGNUP__RATE_LIMIT_PER_IP", "0", "signup.rate_limit_per_ip"),
    ("MAILER_SIGNUP__RATE_LIMIT_PER_ADDRESS", "-3", "signup.rate_limit_per_address"),
    ("MAILER_SIGNUP__RATE_LIMIT_PER_IP_WINDOW_SECONDS", "0", "signup.rate_limit_per_ip_window"),
    ("MAILER_SIGNUP__TRUSTED_PROXIES", '["10.0.0.0/33"]', "signup.trusted_proxies"),
    ("MAILER_SIGNUP__TRUSTED_PROXIES", '["proxy.internal"]', "signup.trusted_proxies"),
    ("MAILER_SIGNUP__CONFIRM_TOKEN_TTL_HOURS", "0", "signup.confirm_token_ttl_hours"),
    ("MAILER_SIGNUP__CONFIRM_TOKEN_TTL_HOURS", "-1", "signup.confirm_token_ttl_hours"),
    ("MAILER_SIGNUP__MAX_BODY_BYTES", "10", "signup.max_body_bytes"),
    ("MAILER_DATABASE__POOL_SIZE", "0", "database.pool_size"),
    ("MAILER_SMTP__PORT", "0", "smtp.port"),
    ("MAILER_SMTP__PORT", "65536", "smtp.port"),
    ("MAILER_SMTP__TIMEOUT_SECONDS", "0", "smtp.timeout_seconds"),
    ("MAILER_SENDER__POLL_INTERVAL_SECONDS", "0", "sender.poll_interval_seconds"),
    ("MAILER_SENDER__RETRY_BASE_SECONDS", "-5", "sender.retry_base_seconds"),
    ("MAILER_DIGESTS__CHECK_INTERVAL_SECONDS", "0", "digests.check_interval_seconds"),
    ("MAILER_BOUNCES__LISTEN_PORT", "99999", "bounces.listen_port"),
    ("MAILER_BOUNCES__SNS_CERTIFICATE_HOSTS", "(sns", "bounces.sns_certificate_hosts"),
    ("MAILER_WEBHOOKS__CA_FILE", "/nonexistent/ca.pem", "webhooks.ca_file"),
    ("MAILER_MAIL__TEMPLATES_PATH", "/nonexistent/templates", "mail.templates_path"),
    ("MAILER_MAIL__FROM_ADDRESS", "news@example.com, spy@example.net", "mail.from_address"),
    ("MAILER_PUBLIC_URL", "news.example.com", "public_url"),
    ("MAILER_LOG_LEVEL", "LOUD", "log_level"),
]


def assert_one_line_refusal(result: object, *phrases: str) -> None:
    returncode, stderr = result.returncode, result.stderr  # type: ignore[attr-defined]
    assert returncode == 2, stderr
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    for phrase in phrases:
        assert phrase in stderr, stderr


@pytest.mark.parametrize(("variable", "value", "key"), BAD_SETTINGS)
def test_a_setting_that_would_make_everything_fail_is_refused_naming_it(
    variable: str, value: str, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in __import__("os").environ if n.startswith("MAILER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv(variable, value)
    with pytest.raises(config.ConfigError) as refused:
        config.load()
    message = str(refused.value)
    assert key in message and f"[{variable}]" in message and "\n" not in message


def test_the_rule_for_zero_is_the_same_in_every_section() -> None:
    """0 is refused for every count, size, window, interval, timeout and lifetime, except
    keys whose documentation says what 0 means ("0: no limit", "0: not at all")."""
    example = (Path(__file__).resolve().parent.parent / "config.example.toml").read_text()
    accepted_zero = []
    for section_name, section in config.Settings.model_fields.items():
        model = section.annotation
        if not isinstance(model, type) or not issubclass(model, config.Section):
            continue
        for key, field in model.model_fields.items():
            if field.annotation not in (int, float) or field.default in (True, False):
                continue
            try:
                model(**{key: 0})
            except ValueError:
                continue
            accepted_zero.append(f"{section_name}.{key}")
            block = example.split(f"[{section_name}]", 1)[1].split("\n[", 1)[0]
            documented = block.split(f"\n{key} =", 1)[0].rsplit("\n\n", 1)[-1]
            assert "0: no" in documented or "0: not" in documented, (
                f"{section_name}.{key} accepts 0 without saying what 0 means"
            )
    assert "signup.rate_limit_per_ip" not in accepted_zero


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["db", "upgrade"], ["digest", "list"]])
def test_every_command_refuses_bad_settings_in_one_line(tmp_path: Path, command: list[str]) -> None:
    env = operator_env(
        MAILER_SIGNUP__RATE_LIMIT_PER_IP="0", MAILER_SIGNUP__TRUSTED_PROXIES='["10.1.2.3/40"]'
    )
    result = mailer(*command, cwd=tmp_path, env=env)
    assert_one_line_refusal(
        result, "signup.rate_limit_per_ip", "MAILER_SIGNUP__RATE_LIMIT_PER_IP", "10.1.2.3/40"
    )
    assert not (tmp_path / "var").exists(), "nothing is created on the way out"


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("mysql://news:pw@127.0.0.1/news", "sqlite:/// or postgresql://"),
        ("postgresql://news:pw@127.0.0.1:notaport/news", "database.url"),
        ("sqlite:/", "database.url"),
        ("::not a url::", "database.url"),
    ],
)
def test_a_database_url_that_cannot_work_is_refused_in_one_line(
    tmp_path: Path, url: str, phrase: str
) -> None:
    result = mailer("db", "upgrade", cwd=tmp_path, env=operator_env(MAILER_DATABASE__URL=url))
    assert_one_line_refusal(result, phrase)
    assert "pw@" not in result.stderr, "a password in the URL is not repeated"


def test_an_sqlite_path_that_cannot_be_written_is_refused_in_one_line(tmp_path: Path) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    for url in [f"sqlite:///{in_the_way}/mailer.db", "sqlite:////proc/mailer/mailer.db"]:
        env = operator_env(MAILER_DATABASE__URL=url, MAILER_SECRET_KEY=SECRET)
        for command in (["db", "upgrade"], ["worker"]):
            assert_one_line_refusal(mailer(*command, cwd=tmp_path, env=env), "mailer.db")


def test_a_postgresql_database_that_does_not_exist_is_named(tmp_path: Path) -> None:
    name = f"mailer_missing_{uuid.uuid4().hex[:8]}"
    env = operator_env(MAILER_DATABASE__URL=_pg_url(name), MAILER_SECRET_KEY=SECRET)
    host = PG_ADMIN.split("@", 1)[1].split("/", 1)[0]
    result = mailer("db", "upgrade", cwd=tmp_path, env=env)
    assert_one_line_refusal(result, f'database "{name}" does not exist on {host}')
    assert "cannot reach" not in result.stderr
