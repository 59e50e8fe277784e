"""Settings: one TOML file, each key overridable by ``BRIEFCAST_<SECTION>__<KEY>``."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "briefcast.toml"


def config_path() -> Path:
    return Path(os.environ.get("BRIEFCAST_CONFIG", DEFAULT_CONFIG))


class SiteSettings(BaseModel):
    name: str = "Europolitiche Brief"
    base_url: str = "https://briefs.example.org"
    languages: list[str] = ["en", "it"]
    timezone: str = "Europe/Rome"
    publisher: str = "Europolitiche"
    author: str = "Europolitiche"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def brief_url(self, brief_id: str, lang: str) -> str:
        """The brief's web page: the "view in browser" link and every feed item's link."""
        return f"{self.base_url.rstrip('/')}/{lang}/{brief_id}/"

    def feed_url(self, lang: str, kind: str) -> str:
        name = {"rss": "rss.xml", "atom": "atom.xml", "json": "feed.json"}[kind]
        return f"{self.base_url.rstrip('/')}/{lang}/{name}"


class InputSettings(BaseModel):
    max_bytes: int = Field(2_000_000, gt=0)  # a brief file
    max_csv_bytes: int = Field(200_000_000, gt=0)  # a subscriber CSV to import
    # Besides the site's languages, what unmarked text may be recognised as.
    detect_languages: list[str] = ["en", "it", "fr", "de", "es"]


class DatabaseSettings(BaseModel):
    url: str = "sqlite:///briefcast.db"


class EmailSettings(BaseModel):
    from_address: str = "briefs@example.org"
    from_name: str = "Europolitiche Brief"
    reply_to: str | None = None
    unsubscribe_url: str = "https://briefs.example.org/unsubscribe/{token}"
    unsubscribe_mailto: str = "unsubscribe@example.org"


class SmtpSettings(BaseModel):
    host: str = "localhost"
    port: int = 587
    starttls: bool = True
    tls: bool = False
    user: str | None = None
    password: SecretStr | None = None  # from BRIEFCAST_SMTP__PASSWORD only


class DeliverySettings(BaseModel):
    """Live sending (``publish --send``): pool, pace, retries, bounces, DKIM."""

    pool_size: int = Field(4, ge=1, le=100)  # SMTP connections kept open and reused
    rate_per_second: float = Field(0, ge=0)  # 0: as fast as the relay takes them
    hourly_cap: int = Field(0, ge=0)  # 0: no cap; counts every brief's sends
    batch_size: int = Field(1000, ge=1)  # subscribers read and ledger rows written at once
    max_attempts: int = Field(5, ge=1)  # per message, over all runs; then given up
    backoff_seconds: list[float] = Field(default=[60, 300, 900, 3600], min_length=1)
    # A run waits for deferred retries due this soon; later ones are left to a re-run.
    retry_window_seconds: float = Field(900, ge=0)
    timeout_seconds: float = Field(60, gt=0)  # per SMTP read or write
    hard_bounce_threshold: int = Field(3, ge=1)  # then the subscriber is marked bounced
    # Another run sending the same brief: wait this long for it to finish, then refuse.
    lock_wait_seconds: float = Field(10, ge=0)
    dkim_selector: str | None = None
    dkim_domain: str | None = None  # default: the From address's domain
    dkim_key_path: str | None = None  # PEM private key; DKIM signing only when set
    # From BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET only: signs the unsubscribe tokens.
    unsubscribe_secret: SecretStr | None = None


class FeedSettings(BaseModel):
    max_items: int = Field(50, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BRIEFCAST_", env_nested_delimiter="__", extra="ignore"
    )

    site: SiteSettings = SiteSettings()
    input: InputSettings = InputSettings()
    database: DatabaseSettings = DatabaseSettings()
    email: EmailSettings = EmailSettings()
    smtp: SmtpSettings = SmtpSettings()
    delivery: DeliverySettings = DeliverySettings()
    feeds: FeedSettings = FeedSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file; the file beats the defaults above.
        toml = _TomlWithoutSecrets(settings_cls, toml_file=config_path())
        return (init_settings, env_settings, toml)


# Settings that only the environment may carry: a file can end up in a repository or a backup.
SECRET_KEYS = (("smtp", "password"), ("delivery", "unsubscribe_secret"))


class _TomlWithoutSecrets(TomlConfigSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], toml_file: Path) -> None:
        super().__init__(settings_cls, toml_file=toml_file)
        for section, key in SECRET_KEYS:
            if key in self.toml_data.get(section, {}):
                raise ValueError(
                    f"{toml_file}: [{section}] {key} must not be in a file; set "
                    f"BRIEFCAST_{section.upper()}__{key.upper()} in the environment instead"
                )


def load_settings() -> Settings:
    return Settings()
