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
    max_bytes: int = Field(2_000_000, gt=0)


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
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_path())
        return (init_settings, env_settings, toml)


def load_settings() -> Settings:
    return Settings()
