"""Settings: one TOML file plus MAILER_<SECTION>__<KEY> environment overrides.

Nothing here is global: `load()` returns a fresh `Settings`, and every other part of
mailer receives the settings it needs as an argument.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mailer import files

log = logging.getLogger(__name__)

BUILTIN_TEMPLATES = Path(__file__).resolve().parent / "delivery" / "templates"
"""The built-in email templates, shipped inside the package (templates/emails/ points here)."""
MIN_SECRET_LENGTH = 32
DATABASES = ("sqlite", "postgresql")
"""The database backends mailer runs on (SQLAlchemy's backend names)."""
MIN_BODY_BYTES = 1024
"""Below this, a limit on request bodies would refuse an ordinary signup."""
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAILBOX = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+")
"""One bare address, local@domain: nothing that could end a header or add a recipient."""

# How a setting is numbers, not 0 = "off": every count, size, window, interval, timeout and
# lifetime must be greater than 0, since 0 would make every request, send or poll fail.
# Only keys documented as "0: no limit" (in [sender]) or "0: not at all" accept 0.


def _cidr(value: str, strict: bool = False) -> str:
    """A network in CIDR form (an address alone is its own /32 or /128); `strict` also
    refuses host bits (10.0.0.1/8)."""
    try:
        return str(ipaddress.ip_network(value.strip(), strict=strict))
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is not a network in CIDR form ({exc}; e.g. 10.0.0.0/8)"
        ) from None


def _existing(path: str, kind: Literal["file", "directory"]) -> str:
    """`path` when it names an existing file or directory (as `kind` says), or empty."""
    if path and not (Path(path).is_dir() if kind == "directory" else Path(path).is_file()):
        raise ValueError(f"{path!r} is not an existing {kind}")
    return path


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to change."""


class Section(BaseModel):
    """A [section] of the file: a misspelt key is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(Section):
    url: str = ""
    """SQLAlchemy URL. Empty means SQLite at <data_dir>/mailer.db."""
    pool_size: int = Field(default=10, ge=1)

    @field_validator("url")
    @classmethod
    def _usable_url(cls, value: str) -> str:
        if not value.strip():
            return ""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value.strip())
        except ArgumentError:
            raise ValueError(
                "must be a URL such as sqlite:///var/mailer.db or "
                "postgresql://user:password@host:5432/mailer"
            ) from None
        if url.get_backend_name() not in DATABASES:
            raise ValueError(
                f"must be a sqlite:/// or postgresql:// URL, not {url.get_backend_name()}://"
            )
        if url.get_backend_name() == "postgresql" and not url.database:
            raise ValueError("names no database (postgresql://host:5432/<database>)")
        return value.strip()


class RelaySettings(Section):
    """One SMTP relay: where it is, how to log in, and its share of the traffic."""

    host: str = Field(default="localhost", min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str = ""
    password: SecretStr = SecretStr("")
    weight: int = Field(default=1, ge=1)
    """Relative share of the messages this relay gets while every relay is up."""


class SmtpSettings(RelaySettings):
    transport: Literal["maildir", "smtp"] = "maildir"
    timeout_seconds: float = Field(default=30.0, gt=0)
    connections: int = Field(default=4, ge=1)
    """Persistent connections kept open to each relay."""
    failover_seconds: float = Field(default=30.0, gt=0)
    """A relay that refuses connections is left alone this long; the others take its share."""
    relays: list[RelaySettings] = Field(default_factory=list)
    """Further relays beside the one above (host, port, ...), e.g. [[smtp.relays]] tables."""
    maildir_path: str = ""
    """Where the maildir transport writes .eml files. Empty means <data_dir>/outbox."""

    @property
    def all_relays(self) -> list[RelaySettings]:
        primary = RelaySettings(
            host=self.host,
            port=self.port,
            security=self.security,
            username=self.username,
            password=self.password,
            weight=self.weight,
        )
        return [primary, *self.relays]


class MailSettings(Section):
    from_address: str = "newsletter@localhost"
    from_name: str = "Newsletter"
    reply_to: str = ""
    postal_address: str = ""
    site_name: str = "Our newsroom"
    unsubscribe_mailbox: str = ""
    bounce_mailbox: str = ""
    """Envelope sender of every message, made per message as <local>+<signed tag>@<domain>
    (VERP) so a bounce names the message it is about. Empty: bounces@<from_address domain>."""
    """The mailto: address in List-Unsubscribe. Empty: unsubscribe@<from_address domain>."""
    templates_path: str = ""
    """A directory whose templates override the ones in templates/emails/."""

    @field_validator("from_address", "reply_to", "unsubscribe_mailbox", "bounce_mailbox")
    @classmethod
    def _mailbox(cls, value: str) -> str:
        if value and not MAILBOX.fullmatch(value.strip()):
            raise ValueError("must be one address such as news@example.com")
        return value.strip()

    @field_validator("from_name", "site_name")
    @classmethod
    def _single_line(cls, value: str) -> str:
        if any(ord(c) < 32 and c != "\t" for c in value):
            raise ValueError("must be one line of text (it goes into mail headers)")
        return value

    @field_validator("templates_path")
    @classmethod
    def _templates_directory(cls, value: str) -> str:
        return _existing(value, "directory")


class SignupSettings(Section):
    confirm_token_ttl_hours: float = Field(default=72.0, gt=0)
    confirmation_mail_window_minutes: float = Field(default=60.0, gt=0)
    """At most one confirmation mail per address in this window."""
    pending_purge_after_hours: float = Field(default=168.0, gt=0)
    """Unconfirmed signups older than this (and past their token's expiry) are purged."""
    rate_limit_per_ip: int = Field(default=120, ge=1)
    rate_limit_per_ip_window_seconds: float = Field(default=60.0, gt=0)
    rate_limit_per_address: int = Field(default=10, ge=1)
    rate_limit_per_address_window_seconds: float = Field(default=3600.0, gt=0)
    max_body_bytes: int = Field(default=16_384, ge=MIN_BODY_BYTES)
    trusted_proxies: list[str] = Field(default_factory=list)
    """CIDRs whose X-Forwarded-For is believed (e.g. ["127.0.0.1/32"])."""

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return [_cidr(item) for item in value]


class HttpSettings(Section):
    """Bounds on every request body, checked before a route reads it."""

    max_body_bytes: int = Field(default=262_144, gt=0)
    """Larger bodies are refused with 413 on readers' routes and provider webhooks."""
    max_editor_body_bytes: int = Field(default=4_194_304, gt=0)
    """The same for the editors' API (/api/v1/) and pages (/admin/): templates are long."""
    max_json_depth: int = Field(default=32, gt=0)
    """JSON bodies nested deeper than this (arrays and objects) are refused with 400."""


class SenderSettings(Section):
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=100, ge=1)
    concurrency: int = Field(default=4, ge=1)
    lease_seconds: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    retry_base_seconds: float = Field(default=30.0, gt=0)
    max_age_hours: float = Field(default=72.0, gt=0)
    """A message still not delivered this long after it was queued fails for good."""
    rate_per_second: float = Field(default=0.0, ge=0)
    """Messages per second from all senders together; 0: no limit."""
    window_limit: int = Field(default=0, ge=0)
    """At most this many messages per `window_seconds`, all senders together; 0: no limit."""
    window_seconds: float = Field(default=3600.0, gt=0)
    per_domain_concurrency: int = Field(default=0, ge=0)
    """Messages in flight at once to one recipient domain; 0: no limit."""
    slowdown_factor: float = Field(default=0.5, gt=0, lt=1)
    """When a relay answers 421 or 451, the rate is multiplied by this."""
    recover_seconds: float = Field(default=10.0, gt=0)
    """After this long without a 421/451 the rate doubles, up to where it was."""
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    """How often a sender says it is alive (and renews the lease on the rows it holds); the
    limits are shared among live senders."""

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> SenderSettings:
        if self.lease_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(
                "sender.lease_seconds must be at least twice sender.heartbeat_seconds, or a "
                "live sender's rows could be taken over between two heartbeats"
            )
        return self


class AdminSettings(Section):
    session_hours: float = Field(default=12.0, gt=0)
    """How long a sign-in to the editors' web interface lasts."""
    login_attempts: int = Field(default=10, ge=1)
    """Failed sign-ins allowed from one client IP on one account in `login_window_seconds`;
    then that client gets 429 for that account. An account with this many failures (from
    anywhere) is slowed down for everyone by `login_slowdown_seconds`, never locked."""
    login_attempts_per_ip: int = Field(default=50, ge=1)
    """Failed sign-ins allowed from one client IP (IPv6: one /64) on all accounts together."""
    login_window_seconds: float = Field(default=900.0, gt=0)
    login_slowdown_seconds: float = Field(default=3.0, ge=0, le=10)
    """How long each sign-in to an account that keeps failing is held (0: not at all)."""


HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
# Font names, generic families, commas, spaces and quotes: nothing that can end a CSS
# declaration or open a block, since the value is written into /theme.css.
FONT_FAMILY = re.compile(r"[A-Za-z0-9 ,'\"-]{1,200}")
LOGO_URL = re.compile(r"(https://[^\s\"'<>()\\]+|/(?!/)[^\s\"'<>()\\]*)")


class ThemeSettings(Section):
    """How the readers' pages look: logo, colours and font (served as /theme.css)."""

    language: Literal["en", "de"] = "en"
    """The language of the readers' pages (the message catalogues shipped)."""
    logo_url: str = ""
    """An https:// URL or a path on this server; shown above the heading. Empty: no logo."""
    accent_color: str = "#1d4ed8"
    text_color: str = "#1f2933"
    background_color: str = "#ffffff"
    font_family: str = '-apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif'

    @field_validator("accent_color", "text_color", "background_color")
    @classmethod
    def _hex_color(cls, value: str) -> str:
        if not HEX_COLOR.fullmatch(value):
            raise ValueError(f"{value!r} is not a colour: write it as #rgb or #rrggbb")
        return value.lower()

    @field_validator("font_family")
    @classmethod
    def _font_family(cls, value: str) -> str:
        if not FONT_FAMILY.fullmatch(value) or value.count('"') % 2 or value.count("'") % 2:
            raise ValueError(
                "must be font names separated by commas (letters, digits, spaces, dashes "
                "and balanced quotes only)"
            )
        return value

    @field_validator("logo_url")
    @classmethod
    def _logo_url(cls, value: str) -> str:
        if value and not LOGO_URL.fullmatch(value):
            raise ValueError("must be an https:// URL or a path starting with / (or empty)")
        return value


class DkimSettings(Section):
    """DKIM signing of every message; off while `domain` is empty."""

    domain: str = ""
    """The d= domain; normally the From address's domain."""
    selector: str = ""
    """The s= selector: the key is published at <selector>._domainkey.<domain>."""
    private_key_path: str = ""
    """PEM file of the RSA private key (2048 bits; `mailer dkim keygen` makes one)."""
    ed25519_selector: str = ""
    """A second, ed25519-sha256 signature beside the RSA one; empty: none."""
    ed25519_private_key_path: str = ""

    @model_validator(mode="after")
    def _complete(self) -> DkimSettings:
        rsa = (self.domain, self.selector, self.private_key_path)
        if any(rsa) and not all(rsa):
            raise ValueError("dkim needs domain, selector and private_key_path together")
        ed25519 = (self.ed25519_selector, self.ed25519_private_key_path)
        if any(ed25519) and not (all(ed25519) and self.domain):
            raise ValueError(
                "an ed25519 signature needs dkim.ed25519_selector, "
                "dkim.ed25519_private_key_path and the RSA key's domain"
            )
        return self


class BounceSettings(Section):
    """Bounces and complaints: the listener, the mailbox poller, the provider webhooks."""

    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=2525, ge=1, le=65535)
    """Where `mailer bounces serve` accepts DSNs and ARF reports by SMTP."""
    max_message_bytes: int = Field(default=10_000_000, gt=0)
    soft_limit: int = Field(default=3, ge=1)
    """Soft bounces (4.x.x, delayed, mailbox full) within `soft_window_days` that suppress."""
    soft_window_days: float = Field(default=14.0, gt=0)
    imap_host: str = ""
    """A mailbox to poll for DSNs and ARF reports; empty: no polling."""
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_security: Literal["tls", "starttls", "none"] = "tls"
    imap_username: str = ""
    imap_password: SecretStr = SecretStr("")
    imap_folder: str = Field(default="INBOX", min_length=1)
    imap_interval_seconds: float = Field(default=60.0, gt=0)
    ses_topic_arns: list[str] = Field(default_factory=list)
    """SNS topics whose SES notifications are accepted; empty: the SES webhook is off."""
    sns_certificate_hosts: str = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
    """Hosts (a regular expression) SNS signing certificates may be fetched from."""
    sns_certificate_ca_file: str = ""
    """A PEM file of certificates to trust when fetching SNS signing certificates, besides
    the public CAs (a test or a private endpoint); empty: public CAs only."""
    postmark_username: str = ""
    """Basic-auth credentials Postmark's webhook must send; empty: the webhook is off."""
    postmark_password: SecretStr = SecretStr("")
    mailgun_signing_key: SecretStr = SecretStr("")
    """Mailgun's HTTP webhook signing key; empty: the webhook is off."""

    @field_validator("sns_certificate_hosts")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a regular expression ({exc})") from None
        return value

    @field_validator("sns_certificate_ca_file")
    @classmethod
    def _ca_file(cls, value: str) -> str:
        return _existing(value, "file")


class WebhookSettings(Section):
    """Outgoing webhooks: how deliveries are made and retried."""

    timeout_seconds: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=10, ge=1)
    retry_base_seconds: float = Field(default=30.0, gt=0)
    """The first retry waits this long; each later one twice as long as the one before."""
    poll_interval_seconds: float = Field(default=2.0, gt=0)
    allow_http: bool = False
    """Accept http:// endpoint URLs (for a development machine); https:// otherwise. Where
    requests may go at all is [network] allowed_private_networks."""
    ca_file: str = ""
    """A PEM file of certificates to trust for endpoints besides the public CAs (a
    publisher's own CA); empty: public CAs only."""
    keep_days: float = Field(default=30.0, gt=0)
    """Deliveries made or given up on are deleted, with their tries, this long after they
    were queued (their payloads hold readers' addresses)."""

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: str) -> str:
        return _existing(value, "file")


class NetworkSettings(Section):
    """Where outbound requests (feeds, webhooks, provider certificates) may go."""

    allowed_private_networks: list[str] = Field(default_factory=list)
    """CIDRs of private addresses requests may still reach (a newsroom's own CMS, e.g.
    ["10.0.0.0/8"]); every other loopback, private, link-local, CGNAT, unique-local,
    multicast or unspecified address is refused."""

    @field_validator("allowed_private_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return [_cidr(item, strict=True) for item in value]


class DigestSettings(Section):
    first_lookback_hours: float = Field(default=24.0, gt=0)
    """A digest's first send carries the articles published this long before it."""
    check_interval_seconds: float = Field(default=30.0, gt=0)
    """How often the scheduler looks for due digests."""


class FeedSettings(Section):
    check_interval_seconds: float = Field(default=60.0, gt=0)
    """How often the scheduler looks for feeds due a poll (each feed has its own interval)."""


class TemplateSettings(Section):
    """Limits on rendering an editor's own templates (a digest's subject, HTML and text)."""

    render_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    """The longest one rendering of a digest's templates may take; past it the preview or
    test-send is refused (422) and a send is skipped, with the reason."""
    max_output_bytes: int = Field(default=2_000_000, ge=10_000)
    """The most text one rendering may write or build (with ~, +, filters, methods)."""


class Settings(BaseSettings):
    """Everything mailer can be told; see config.example.toml for each key."""

    model_config = SettingsConfigDict(
        env_prefix="MAILER_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    production: bool = False
    public_url: str = "http://127.0.0.1:8000"
    data_dir: Path = Path("var")
    secret_key: SecretStr = SecretStr("")
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    """"json": one JSON object per line (time, level, logger, message and fields)."""
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    signup: SignupSettings = Field(default_factory=SignupSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    sender: SenderSettings = Field(default_factory=SenderSettings)
    digests: DigestSettings = Field(default_factory=DigestSettings)
    feeds: FeedSettings = Field(default_factory=FeedSettings)
    templates: TemplateSettings = Field(default_factory=TemplateSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    theme: ThemeSettings = Field(default_factory=ThemeSettings)
    dkim: DkimSettings = Field(default_factory=DkimSettings)
    bounces: BounceSettings = Field(default_factory=BounceSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL such as https://news.example.com")
        if parts.query or parts.fragment:
            raise ValueError("must be a plain address, without ?query or #fragment")
        try:
            parts.port  # noqa: B018 (parsing it is the check)
        except ValueError:
            raise ValueError("has a port that is not a number from 1 to 65535") from None
        return value.strip().rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.strip().upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.strip().upper()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'mailer.db'}"

    @property
    def maildir_path(self) -> Path:
        return Path(self.smtp.maildir_path) if self.smtp.maildir_path else self.data_dir / "outbox"

    @property
    def email_template_dirs(self) -> list[Path]:
        dirs = [Path(self.mail.templates_path)] if self.mail.templates_path else []
        return [*dirs, BUILTIN_TEMPLATES]


def load(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read settings from `path` (or $MAILER_CONFIG), the environment and `overrides`."""
    toml_file = str(path or os.environ.get("MAILER_CONFIG") or "") or None
    if toml_file is not None and not Path(toml_file).is_file():
        raise ConfigError(f"config file not found: {toml_file}")

    class FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=toml_file)

    try:
        return FileSettings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_one_line(exc)}") from exc
    except ValueError as exc:  # tomllib's decode error
        raise ConfigError(f"invalid configuration: {exc}") from exc


def _one_line(exc: ValidationError) -> str:
    """Each problem as `section.key must be ... (got ...) [MAILER_SECTION__KEY]`, all on
    one line for a start-up error."""
    return "; ".join(_problem(error) for error in exc.errors())


SECRET_PARTS = ("password", "secret", "key", "url")
"""Keys whose values are not repeated in messages (a database URL may hold a password)."""


def _problem(error: Any) -> str:
    loc = error["loc"]
    keys = [str(part) for part in loc if not isinstance(part, int)]
    name = "".join(
        f"[{p}]" if isinstance(p, int) else f"{'.' if i else ''}{p}" for i, p in enumerate(loc)
    )
    # A list (smtp.relays) is set as a whole from the environment.
    listed = next((i for i, part in enumerate(loc) if isinstance(part, int)), len(loc))
    variable = "MAILER_" + "__".join(str(key).upper() for key in loc[:listed]) if keys else ""
    kind, message = error["type"], str(error["msg"])
    context = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return f"{name} is not a setting (misspelt?){f' [{variable}]' if variable else ''}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = next(iter(context.values()))
        bound = f"{bound:g}" if isinstance(bound, float) else bound
        word = {
            "greater_than": "greater than",
            "greater_than_equal": "at least",
            "less_than": "less than",
            "less_than_equal": "at most",
        }[kind]
        message = f"must be {word} {bound}"
    elif kind == "string_too_short":
        message = "must not be empty"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    elif message.startswith("Input should be"):
        message = "must be" + message.removeprefix("Input should be")
    if message.startswith((f"{name}.", f"{name} ")):  # a check on a whole section
        return message
    value = error.get("input")
    hidden = any(part in key for key in keys for part in SECRET_PARTS)
    quiet = hidden or isinstance(value, dict | list) or repr(value) in message
    shown = "" if quiet else f" (got {value!r})"
    joint = " " if message.split(" ", 1)[0] in ("must", "is", "has", "names") else ": "
    return f"{name}{joint}{message}{shown} [{variable}]"


def signing_key(settings: Settings) -> bytes:
    """The server's secret, or a development key kept under data_dir (refused in production)."""
    configured = settings.secret_key.get_secret_value()
    if configured:
        if settings.production and len(configured) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"secret_key must be at least {MIN_SECRET_LENGTH} characters in production"
            )
        return configured.encode()
    if settings.production:
        raise ConfigError(
            "production = true needs a secret_key: set MAILER_SECRET_KEY "
            "(e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
        )
    key_file = settings.data_dir / "secret.key"
    if not key_file.exists():
        files.private_directory(settings.data_dir)
        try:
            files.write_private(key_file, secrets.token_urlsafe(48).encode())
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            log.warning(
                "generated a development signing key in %s; set secret_key in production",
                key_file,
            )
    return key_file.read_text().strip().encode()


def check_production(settings: Settings) -> None:
    """Refuse to start in production mode with secrets missing."""
    signing_key(settings)
    if not settings.production:
        return
    smtp = settings.smtp
    if smtp.transport == "smtp" and smtp.username and not smtp.password.get_secret_value():
        raise ConfigError("smtp.username is set but smtp.password is empty (MAILER_SMTP__PASSWORD)")
    if not settings.public_url.startswith("https://"):
        raise ConfigError("public_url must be an https:// URL in production (MAILER_PUBLIC_URL)")
    if not settings.mail.postal_address.strip():
        raise ConfigError(
            "mail.postal_address is required in production: CAN-SPAM wants the sender's "
            "postal address in every message (MAILER_MAIL__POSTAL_ADDRESS)"
        )
