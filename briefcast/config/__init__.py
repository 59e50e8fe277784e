"""Settings: one TOML file, each key overridable by ``BRIEFCAST_<SECTION>__<KEY>``.

Every problem with them, in the file, a variable or a value, is one line naming the file or
variable and the key: a setting silently ignored (a typo, a missing file) would otherwise send
a newsletter built on defaults, and a bad value would surface later as a traceback.

One module per section (``site``, ``delivery``, ...); ``settings`` holds the whole and its
loading, ``fields`` what the sections share. Everything is importable from here."""

from __future__ import annotations

from briefcast.config.bounces import BouncesSettings, Folder
from briefcast.config.database import DatabaseSettings
from briefcast.config.delivery import DeliverySettings
from briefcast.config.email import EmailSettings
from briefcast.config.feeds import FeedSettings
from briefcast.config.fields import DAY, Address, Detectable, Languages
from briefcast.config.input import InputSettings
from briefcast.config.serve import ServeSettings
from briefcast.config.settings import (
    CONFIG_ENV,
    CONFIG_MAX_BYTES,
    DEFAULT_CONFIG,
    SECRET_KEYS,
    SECTIONS,
    Settings,
    config_path,
    load_settings,
)
from briefcast.config.site import TEMPLATE_FOLDERS, SiteSettings
from briefcast.config.smtp import SmtpSettings
from briefcast.config.social import DEFAULT_API, SOCIAL_NETWORKS, AccountSettings, SocialSettings
from briefcast.config.workflow import WorkflowSettings

__all__ = [
    "CONFIG_ENV",
    "CONFIG_MAX_BYTES",
    "DAY",
    "DEFAULT_API",
    "DEFAULT_CONFIG",
    "SECRET_KEYS",
    "SECTIONS",
    "SOCIAL_NETWORKS",
    "TEMPLATE_FOLDERS",
    "AccountSettings",
    "Address",
    "BouncesSettings",
    "DatabaseSettings",
    "DeliverySettings",
    "Detectable",
    "EmailSettings",
    "FeedSettings",
    "Folder",
    "InputSettings",
    "Languages",
    "ServeSettings",
    "Settings",
    "SiteSettings",
    "SmtpSettings",
    "SocialSettings",
    "WorkflowSettings",
    "config_path",
    "load_settings",
]
