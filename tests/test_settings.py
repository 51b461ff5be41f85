"""Configuration: the TOML file, environment overrides, production refusals."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from mailer import config

REPO = Path(__file__).resolve().parent.parent


def test_file_values_are_read_and_environment_overrides_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mailer.toml"
    path.write_text(
        'public_url = "https://file.example"\n'
        '[database]\nurl = "sqlite:///file.db"\n'
        '[smtp]\nhost = "relay.file"\nport = 2525\n'
    )
    for name in ("MAILER_CONFIG", "MAILER_SMTP__PORT", "MAILER_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    loaded = config.load(path)
    assert loaded.public_url == "https://file.example"
    assert loaded.smtp.host == "relay.file" and loaded.smtp.port == 2525

    monkeypatch.setenv("MAILER_SMTP__PORT", "587")
    monkeypatch.setenv("MAILER_PUBLIC_URL", "https://env.example/")
    monkeypatch.setenv("MAILER_DATABASE__URL", "postgresql://db/mailer")
    loaded = config.load(path)
    assert loaded.smtp.port == 587
    assert loaded.smtp.host == "relay.file"
    assert loaded.public_url == "https://env.example"
    assert loaded.database_url == "postgresql://db/mailer"

    monkeypatch.setenv("MAILER_CONFIG", str(path))
    assert config.load().smtp.host == "relay.file"


def test_bad_values_are_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "mailer.toml"
    path.write_text('[smtp]\nport = "not a number"\n')
    with pytest.raises(config.ConfigError, match="smtp.port"):
        config.load(path)
    path.write_text("[smtp\n")
    with pytest.raises(config.ConfigError):
        config.load(path)
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(tmp_path / "missing.toml")


def test_the_development_key_is_generated_once(tmp_path: Path) -> None:
    settings = config.load(data_dir=str(tmp_path))
    first = config.signing_key(settings)
    assert len(first) >= config.MIN_SECRET_LENGTH
    assert config.signing_key(settings) == first
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("secret", ["", "too-short"])
def test_production_refuses_a_missing_or_short_secret(tmp_path: Path, secret: str) -> None:
    settings = config.load(
        data_dir=str(tmp_path), production=True, public_url="https://n.example", secret_key=secret
    )
    with pytest.raises(config.ConfigError, match="secret"):
        config.check_production(settings)
    assert not (tmp_path / "secret.key").exists()


def test_production_refuses_smtp_auth_without_a_password(tmp_path: Path) -> None:
    settings = config.load(
        data_dir=str(tmp_path),
        production=True,
        public_url="https://n.example",
        secret_key="s" * 40,
        smtp={"transport": "smtp", "username": "newsletter"},
    )
    with pytest.raises(config.ConfigError, match="MAILER_SMTP__PASSWORD"):
        config.check_production(settings)


def _keys(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def test_config_example_documents_every_key() -> None:
    example = tomllib.loads((REPO / "config.example.toml").read_text())
    for name, field in config.Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            assert set(example[name]) == _keys(annotation), f"[{name}] is incomplete"
        else:
            assert name in example, f"{name} is not documented"
    assert config.load(REPO / "config.example.toml").database_url.startswith("sqlite:///")
