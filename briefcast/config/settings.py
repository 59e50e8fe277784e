"""The settings as a whole (one field per section) and how they are loaded: one TOML
file, each key overridable by ``BRIEFCAST_<SECTION>__<KEY>``, every problem one line."""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, cast, get_origin

from pydantic import BaseModel, ValidationError, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from briefcast.config.bounces import BouncesSettings
from briefcast.config.database import DatabaseSettings
from briefcast.config.delivery import DeliverySettings
from briefcast.config.email import EmailSettings
from briefcast.config.feeds import FeedSettings
from briefcast.config.fields import esc
from briefcast.config.input import InputSettings
from briefcast.config.serve import ServeSettings
from briefcast.config.site import SiteSettings
from briefcast.config.smtp import SmtpSettings
from briefcast.config.social import SocialSettings
from briefcast.config.workflow import WorkflowSettings
from briefcast.errors import ConfigError
from briefcast.resources import default_config
from briefcast.safe_io import UnsafeFile, read_regular

# The package's own config/briefcast.toml (see briefcast.resources); None: the defaults below.
DEFAULT_CONFIG: Path | None = default_config()


CONFIG_ENV = "BRIEFCAST_CONFIG"


CONFIG_MAX_BYTES = 1_000_000  # a settings file is a few KB; more is a wrong file


def config_path() -> Path | None:
    """The settings file: the one BRIEFCAST_CONFIG names, else ours, if there is one."""
    named = os.environ.get(CONFIG_ENV)
    return Path(named) if named is not None else DEFAULT_CONFIG


class Settings(BaseSettings):
    """The settings. ``Settings()`` raises ``ValueError`` on a bad file or value (a missing
    file gives the defaults, for tests); the commands use ``load_settings()``."""

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
    serve: ServeSettings = ServeSettings()
    bounces: BouncesSettings = BouncesSettings()
    social: SocialSettings = SocialSettings()
    workflow: WorkflowSettings = WorkflowSettings()

    @model_validator(mode="after")
    def _unsubscribe_default(self) -> Settings:
        # Unless set, the unsubscribe link is the site's own page (briefcast serve's /u/).
        if "unsubscribe_url" not in self.email.model_fields_set:
            base = self.site.base_url.rstrip("/").replace("{", "{{").replace("}", "}}")
            url = base + "/u/{token}"
            self.email = self.email.model_copy(update={"unsubscribe_url": url})
        return self

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
        toml = _TomlFile(settings_cls, config_path())
        _check_environment()
        return (init_settings, env_settings, toml)


SECTIONS: dict[str, type[BaseModel]] = {
    name: cast(type[BaseModel], field.annotation) for name, field in Settings.model_fields.items()
}


# Settings that only the environment may carry: a file can end up in a repository or a backup.
SECRET_KEYS = (("smtp", "password"), ("delivery", "unsubscribe_secret"), ("bounces", "password"))


class _SettingsError(ConfigError, ValueError):
    """Raised while ``Settings()`` gathers its sources: a ``ConfigError`` for the commands,
    and a ``ValueError`` like pydantic's own errors for code that calls ``Settings()``."""


def _hint(name: str, known: Iterable[str], show: Callable[[str], str]) -> str:
    """`` (did you mean "host"?)`` for a near miss, else the names there are."""
    known = list(known)
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {show(close[0])}?)"
    return f" (known: {', '.join(known)})"


class _TomlFile(InitSettingsSource):
    """The settings file, read as untrusted input: a regular file of bounded size, UTF-8
    TOML, known sections and keys only, no secrets."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls, _read_config(path) if path is not None else {})


def _read_config(path: Path) -> dict[str, Any]:
    try:
        raw = read_regular(path, CONFIG_MAX_BYTES)
    except UnsafeFile as exc:
        if _missing(path):  # defaults; load_settings() insists on a file that was named
            return {}
        raise _SettingsError(f"{path}: {exc}") from None
    try:
        # utf-8-sig: a byte-order mark from a Windows editor is harmless.
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        bad = exc.object  # without the byte-order mark, which exc.start does not count
        line = bad[: exc.start].count(b"\n") + 1
        raise _SettingsError(
            f"{path}: is not UTF-8 text (byte 0x{bad[exc.start]:02x} on line {line})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise _SettingsError(f"{path}: is not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib parses arrays and inline tables recursively: a few hundred levels exhaust
        # the stack. No settings file nests more than three.
        raise _SettingsError(f"{path}: is not valid TOML: nested too deeply") from None
    return _check_names(data, path)


def _missing(path: Path) -> bool:
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:  # cannot be looked at, which the read will say
        pass
    return False


def _check_names(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """The file's sections under their lower-case names. Section names match whatever their
    case, as they always have; key names must be exact, as pydantic matches them."""
    sections: dict[str, Any] = {}
    written: dict[str, str] = {}
    for name, table in data.items():
        section = name.lower()
        if section not in SECTIONS:
            if isinstance(table, dict):
                hint = _hint(name, SECTIONS, "[{}]".format)
                raise _SettingsError(f"{path}: unknown section [{esc(name)}]{hint}")
            raise _SettingsError(f'{path}: "{esc(name)}" is outside any section{_home(name)}')
        if section in sections:
            raise _SettingsError(
                f"{path}: [{written[section]}] and [{esc(name)}] are one section; merge them"
            )
        sections[section], written[section] = table, esc(name)
        if not isinstance(table, dict):
            continue  # validation says what it should be
        fields = SECTIONS[section].model_fields
        for key in table:
            # Any case: pydantic would ignore "PASSWORD", but the secret is in the file all
            # the same, and a later fix of the case would start using it.
            if (section, key.lower()) in SECRET_KEYS:
                raise _SettingsError(
                    f"{path}: [{section}] {key.lower()} must not be in a file; set "
                    f"{_env_name(section, key)} in the environment instead"
                )
            if key not in fields:
                hint = _home(key) or _hint(key, fields, '"{}"'.format)
                raise _SettingsError(f'{path}: unknown key "{esc(key)}" in [{section}]{hint}')
    return sections


def _home(key: str) -> str:
    """`` (it belongs in [smtp])`` for a key of another section."""
    homes = [
        f"[{name}]"
        for name, model in SECTIONS.items()
        if key in model.model_fields and (name, key) not in SECRET_KEYS  # no hint to put it here
    ]
    return f" (it belongs in {' or '.join(homes)})" if homes else ""


def _env_name(section: str, key: str) -> str:
    return f"BRIEFCAST_{section}__{key}".upper()


def _check_environment() -> None:
    """``BRIEFCAST_<SECTION>__<KEY>`` with a known (or nearly known) section must name a known
    key. Variables without ``__`` (BRIEFCAST_CONFIG, BRIEFCAST_DEBUG, ...) are not settings,
    nor are ones whose section is nothing like ours: they may belong to something else."""
    for name, value in os.environ.items():
        lower = name.lower()  # pydantic-settings reads these names in any case
        if not lower.startswith("briefcast_"):
            continue
        section, sep, rest = lower.removeprefix("briefcast_").partition("__")
        key, _, deeper = rest.partition("__")
        if not sep:
            continue
        if section not in SECTIONS:
            close = difflib.get_close_matches(section, SECTIONS, n=1, cutoff=0.75)
            if close:
                guess = _env_name(close[0], key)
                raise _SettingsError(f"{name}: unknown section [{section}] (did you mean {guess}?)")
            continue
        fields = SECTIONS[section].model_fields
        if key not in fields:
            hint = _hint(key, fields, partial(_env_name, section))
            raise _SettingsError(f'{name}: unknown key "{key}" in [{section}]{hint}')
        # A list is read as JSON; pydantic-settings' own complaint names neither the variable
        # nor the key.
        if not deeper and get_origin(fields[key].annotation) is list:
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if not isinstance(parsed, list):
                raise _SettingsError(f'{name}: is not a JSON list (write it like ["a", "b"])')


def load_settings() -> Settings:
    """The settings the commands use: a file named by BRIEFCAST_CONFIG must exist, and every
    problem is a ``ConfigError`` of one line, without a "configuration:" prefix (the CLI adds
    one)."""
    named = os.environ.get(CONFIG_ENV)
    if named == "":
        raise ConfigError(f"{CONFIG_ENV} is set but empty")
    if named is not None and _missing(Path(named)):
        raise ConfigError(f"{named}: no such file (named by {CONFIG_ENV})")
    try:
        return Settings()
    except ConfigError:
        raise
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0])) from exc
    except SettingsError as exc:  # a value pydantic-settings could not parse at all
        raise ConfigError(str(exc).splitlines()[0]) from exc


def _describe(error: ErrorDetails) -> str:
    """``config/x.toml: [smtp] port: Input should be ...``, or the variable's name in front
    when the value came from the environment."""
    loc = error["loc"]
    section = str(loc[0])
    where = f"[{section}]"
    if len(loc) > 1:
        where += f" {esc(str(loc[1]))}" + "".join(
            f"[{part}]" if isinstance(part, int) else f".{esc(str(part))}" for part in loc[2:]
        )
    env = {name.lower(): name for name in os.environ}
    candidates = [f"briefcast_{section}__{loc[1]}".lower()] if len(loc) > 1 else []
    source = next(
        (env[c] for c in [*candidates, f"briefcast_{section}"] if c in env),
        str(config_path() or "settings"),
    )
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{source}: {where}: {message}"
