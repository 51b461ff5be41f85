"""Settings: the TOML file, MAILER_<SECTION>__<KEY> overrides, secrets in production."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from mailer import config
from mailer.tokens import Purpose, Signer

REPO = Path(__file__).resolve().parent.parent
LONG_SECRET = "a-production-secret-that-is-long-enough-0123456789"


@pytest.fixture(autouse=True)
def operator_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test starts as an operator would: no MAILER_* variable, in an empty directory."""
    for name in [n for n in os.environ if n.startswith("MAILER_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


FILE = """\
public_url = "https://news.example.com/"
data_dir = "/srv/mailer"
log_level = "WARNING"

[database]
url = "postgresql://mailer@db.internal/mailer"
pool_size = 20

[smtp]
transport = "smtp"
host = "relay.example.com"
port = 587
security = "starttls"
username = "newsletter"
password = "relay-password"

[mail]
from_address = "news@example.com"
from_name = "Die Zeitung für Zürich"

[signup]
trusted_proxies = ["10.0.0.0/8", "127.0.0.1/32"]

[sender]
concurrency = 16
retry_base_seconds = 5.5
"""


def test_values_in_the_toml_file_are_read(tmp_path: Path) -> None:
    settings = config.load(write(tmp_path / "mailer.toml", FILE))
    assert settings.public_url == "https://news.example.com"
    assert settings.data_dir == Path("/srv/mailer")
    assert settings.log_level == "WARNING"
    assert settings.database_url == "postgresql://mailer@db.internal/mailer"
    assert settings.database.pool_size == 20
    assert (settings.smtp.transport, settings.smtp.host, settings.smtp.port) == (
        "smtp",
        "relay.example.com",
        587,
    )
    assert settings.smtp.security == "starttls"
    assert settings.smtp.password.get_secret_value() == "relay-password"
    assert "relay-password" not in repr(settings), "secrets stay out of logs and tracebacks"
    assert settings.mail.from_name == "Die Zeitung für Zürich"
    assert settings.signup.trusted_proxies == ["10.0.0.0/8", "127.0.0.1/32"]
    assert settings.sender.concurrency == 16 and settings.sender.retry_base_seconds == 5.5
    assert settings.sender.batch_size == config.SenderSettings().batch_size, "the rest: defaults"


def test_environment_variables_override_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "mailer.toml", FILE)
    monkeypatch.setenv("MAILER_DATABASE__URL", "sqlite:///override.db")
    monkeypatch.setenv("MAILER_SMTP__PORT", "2525")
    monkeypatch.setenv("MAILER_SMTP__PASSWORD", "from-the-environment")
    monkeypatch.setenv("MAILER_PUBLIC_URL", "https://elsewhere.example.org")
    monkeypatch.setenv("MAILER_SECRET_KEY", LONG_SECRET)
    monkeypatch.setenv("MAILER_PRODUCTION", "true")
    settings = config.load(path)
    assert settings.database_url == "sqlite:///override.db"
    assert settings.smtp.port == 2525
    assert settings.smtp.password.get_secret_value() == "from-the-environment"
    assert settings.public_url == "https://elsewhere.example.org"
    assert settings.secret_key.get_secret_value() == LONG_SECRET
    assert settings.production is True
    assert settings.smtp.host == "relay.example.com", "keys not overridden keep the file's value"
    assert settings.database.pool_size == 20


def test_mailer_config_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_CONFIG", str(write(tmp_path / "site.toml", FILE)))
    assert config.load().smtp.host == "relay.example.com"


def test_with_no_configuration_at_all_everything_stays_under_var() -> None:
    settings = config.load()
    assert settings.production is False
    assert settings.database_url == "sqlite:///var/mailer.db"
    assert settings.smtp.transport == "maildir", "a fresh machine has no SMTP server"
    assert settings.maildir_path == Path("var/outbox")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('pubilc_url = "https://news.example.com"\n', "pubilc_url"),
        ('[smtp]\nhots = "relay.example.com"\n', "smtp.hots"),
        ('[smtp]\nport = "many"\n', "smtp.port"),
        ('[smtp]\nsecurity = "ssl"\n', "smtp.security"),
        ("[sender]\nconcurrency = [4]\n", "sender.concurrency"),
    ],
)
def test_a_misspelt_key_or_a_wrong_value_is_refused_naming_it(
    tmp_path: Path, text: str, named: str
) -> None:
    with pytest.raises(config.ConfigError, match=named.replace(".", r"\.")):
        config.load(write(tmp_path / "mailer.toml", text))


def test_a_wrong_value_from_the_environment_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILER_SMTP__PORT", "twenty-five")
    with pytest.raises(config.ConfigError, match=r"smtp\.port"):
        config.load()


def test_a_broken_or_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="invalid configuration"):
        config.load(write(tmp_path / "mailer.toml", "[smtp\nhost = 1\n"))
    with pytest.raises(config.ConfigError, match="config file not found"):
        config.load(tmp_path / "nowhere.toml")


# ---- secrets --------------------------------------------------------------------------


def production(tmp_path: Path, **overrides: object) -> config.Settings:
    values: dict[str, object] = {
        "production": True,
        "public_url": "https://news.example.com",
        "data_dir": str(tmp_path / "var"),
        "secret_key": LONG_SECRET,
        "mail": {"postal_address": "1 Press Street, 10115 Berlin, Germany"},
        **overrides,
    }
    return config.load(**values)


def test_production_starts_with_a_long_secret_and_an_https_address(tmp_path: Path) -> None:
    config.check_production(production(tmp_path))
    assert config.signing_key(production(tmp_path)) == LONG_SECRET.encode()


@pytest.mark.parametrize(
    ("secret", "message"),
    [("", "MAILER_SECRET_KEY"), ("short-but-not-empty", "at least 32 characters")],
)
def test_production_refuses_a_missing_or_short_secret(
    tmp_path: Path, secret: str, message: str
) -> None:
    settings = production(tmp_path, secret_key=secret)
    with pytest.raises(config.ConfigError, match=message):
        config.check_production(settings)
    assert not (tmp_path / "var" / "secret.key").exists(), "no key is made up in production"


def test_production_refuses_the_secret_from_the_environment_when_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_PRODUCTION", "1")
    monkeypatch.setenv("MAILER_MAIL__POSTAL_ADDRESS", "1 Press Street, Berlin")
    monkeypatch.setenv("MAILER_SECRET_KEY", "x" * (config.MIN_SECRET_LENGTH - 1))
    monkeypatch.setenv("MAILER_PUBLIC_URL", "https://news.example.com")
    with pytest.raises(config.ConfigError, match="secret_key"):
        config.check_production(config.load())
    monkeypatch.setenv("MAILER_SECRET_KEY", "x" * config.MIN_SECRET_LENGTH)
    config.check_production(config.load())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"public_url": "http://news.example.com"}, "MAILER_PUBLIC_URL"),
        ({"smtp": {"transport": "smtp", "username": "newsletter"}}, "MAILER_SMTP__PASSWORD"),
    ],
)
def test_production_refuses_other_unsafe_settings(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.check_production(production(tmp_path, **overrides))


def test_production_refuses_to_start_without_the_senders_postal_address(tmp_path: Path) -> None:
    for blank in ("", "   "):
        with pytest.raises(
            config.ConfigError, match="mail.postal_address is required in production"
        ):
            config.check_production(production(tmp_path, mail={"postal_address": blank}))
    config.check_production(config.load(data_dir=str(tmp_path / "var")))  # development: fine


def test_the_development_key_is_generated_once_under_data_dir_and_reused(tmp_path: Path) -> None:
    settings = config.load(data_dir=str(tmp_path / "var"))
    config.check_production(settings)  # development mode: no secret needed
    key_file = tmp_path / "var" / "secret.key"
    assert key_file.exists()
    assert key_file.stat().st_mode & 0o077 == 0, "only its owner may read it"
    first = config.signing_key(settings)
    assert len(first) >= config.MIN_SECRET_LENGTH

    restarted = config.load(data_dir=str(tmp_path / "var"))
    assert config.signing_key(restarted) == first
    token = Signer(first).sign(Purpose.confirm, {"c": 7})
    assert Signer(config.signing_key(restarted)).verify(Purpose.confirm, token) == {"c": 7}, (
        "confirm links mailed before a restart still work after it"
    )

    elsewhere = config.load(data_dir=str(tmp_path / "other"))
    assert config.signing_key(elsewhere) != first, "each installation has its own key"


# ---- the documented example -----------------------------------------------------------


def sections() -> dict[str, type[BaseModel]]:
    found = {}
    for name, field in config.Settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found[name] = field.annotation
    return found


def test_config_example_documents_every_key_with_its_default() -> None:
    example_path = REPO / "config.example.toml"
    example = tomllib.loads(example_path.read_text(encoding="utf-8"))
    top_level = set(config.Settings.model_fields) - set(sections())
    assert top_level <= set(example), f"undocumented: {sorted(top_level - set(example))}"
    for name, model in sections().items():
        assert name in example, f"[{name}] is not documented"
        documented = set(example[name])
        assert documented == set(model.model_fields), (
            f"[{name}] undocumented: {sorted(set(model.model_fields) - documented)}, "
            f"unknown: {sorted(documented - set(model.model_fields))}"
        )

    shown = config.load(example_path)
    defaults = config.load()
    for name in config.Settings.model_fields:
        assert getattr(shown, name) == getattr(defaults, name), (
            f"config.example.toml shows {name} = {getattr(shown, name)!r}, "
            f"but the default is {getattr(defaults, name)!r}"
        )


def test_a_lease_shorter_than_two_heartbeats_is_refused() -> None:
    with pytest.raises(config.ConfigError, match="lease_seconds must be at least twice"):
        config.load(sender={"lease_seconds": 6, "heartbeat_seconds": 5})
    assert config.load(sender={"lease_seconds": 10, "heartbeat_seconds": 5}).sender.lease_seconds
