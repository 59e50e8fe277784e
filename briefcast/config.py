"""Settings: one TOML file, each key overridable by ``BRIEFCAST_<SECTION>__<KEY>``.

Every problem with them, in the file, a variable or a value, is one line naming the file or
variable and the key: a setting silently ignored (a typo, a missing file) would otherwise send
a newsletter built on defaults, and a bad value would surface later as a traceback.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, cast, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import localedata
from email_validator import EmailNotValidError, validate_email
from lingua import IsoCode639_1
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

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


# --- values ---------------------------------------------------------------------------------
# pydantic reports a ValueError raised here as "Value error, <message>" at the key's location.


def _esc(text: str) -> str:
    """``text`` with control characters escaped: an error must stay one line."""
    return repr(text)[1:-1]


def _language(code: str) -> str:
    # Codes become folder and file names (out/<id>/feed/<lang>/), and babel writes each
    # edition's dates: anything else would escape the folder or fail mid-publish. Two
    # letters: the readers and the language detector speak ISO 639-1.
    if not re.fullmatch(r"[a-z]{2}", code):
        raise ValueError(
            f'"{_esc(code)}" is not a lower-case ISO 639-1 language code (two letters a-z)'
        )
    if not localedata.exists(code):
        raise ValueError(f'"{code}" is not a language code babel knows (it writes the dates)')
    return code


def _languages(codes: list[str]) -> list[str]:
    if not codes:
        raise ValueError("must name at least one language")
    for i, code in enumerate(codes):
        _language(code)
        if code in codes[:i]:
            raise ValueError(f'"{code}" is listed twice')
    return codes


def _detectable(codes: list[str]) -> list[str]:
    # The detector is built from these names; an unknown one would fail on the first brief.
    for code in codes:
        if not re.fullmatch(r"[a-z]{2}", code) or not hasattr(IsoCode639_1, code.upper()):
            raise ValueError(f'"{_esc(code)}" is not the two-letter code of a detectable language')
    return codes


def _timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, like "Europe"
        raise ValueError(f'"{_esc(name)}" is not an IANA time zone (like "Europe/Rome")') from None
    return name


def _is_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not re.search(r"\s", url)


def _base_url(url: str) -> str:
    # Page and feed URLs are built by appending "/<lang>/...": a query or fragment breaks them.
    parts = urlsplit(url)
    if not _is_http(url) or parts.query or parts.fragment:
        raise ValueError(f'"{_esc(url)}" is not an absolute http(s) URL without query or fragment')
    return url


def _filled(url: str, name: str, value: str) -> str:
    """``url`` with its one placeholder ``{name}`` filled in; a stray "{x}" is one line."""
    try:
        return url.format(**{name: value})
    except KeyError as exc:
        raise ValueError(
            f"{{{_esc(str(exc.args[0]))}}}: only {{{name}}} may be in braces"
        ) from None
    except (IndexError, AttributeError, ValueError) as exc:
        raise ValueError(
            f"only {{{name}}} may be in braces; write {{{{ or }}}} for a literal brace ({exc})"
        ) from None


def _unsubscribe_url(url: str) -> str:
    if "{token}" not in url:
        raise ValueError("must contain {token}, where each subscriber's token goes")
    filled = _filled(url, "token", "TOKEN")  # as the email builder will: fails now, not mid-send
    if not _is_http(filled):
        raise ValueError(f'"{_esc(url)}" is not an absolute http(s) URL')
    return url


def _subscribe_url(url: str) -> str:
    # "" is allowed: the site's subscriptions are handled nowhere we can link to.
    if not url:
        return url
    filled = _filled(url, "lang", "en")  # as the pages will: fails now, not mid-publish
    if not _is_http(filled):
        raise ValueError(f'"{_esc(url)}" is not an absolute http(s) URL (or "" for no link)')
    return url


def _not_blank(value: Any) -> Any:
    # Before pydantic makes it a Path: Path("") is ".", the folder briefcast runs in.
    if isinstance(value, str) and not value.strip():
        raise ValueError("is empty; leave it out to use briefcast's own templates")
    return value


def _public_dir(value: Any) -> Any:
    # Before pydantic makes it a Path: Path("") is ".", the folder briefcast runs in, which
    # `briefcast serve` would then publish whole (settings, database and all).
    if isinstance(value, str) and not value.strip():
        raise ValueError('is empty; leave it out to use the folder "public"')
    return value


def _templates_dir(path: Path) -> Path:
    # A typo here would publish with our templates, unnoticed: the folder must be there and
    # hold at least one of ours (the rest still come from ours, file by file).
    shown = _esc(str(path))
    path = path.expanduser()
    if not path.exists():
        relative = "" if path.is_absolute() else f" (relative to {_esc(str(Path.cwd()))})"
        raise ValueError(f'"{shown}" does not exist{relative}')
    if not path.is_dir():
        raise ValueError(f'"{shown}" is not a folder')
    if not any((path / sub).is_dir() for sub in TEMPLATE_FOLDERS):
        raise ValueError(
            f'"{shown}" has none of the folders {", ".join(f"{s}/" for s in TEMPLATE_FOLDERS)}'
        )
    return path.resolve()


def _hub_url(url: str) -> str:
    # Feeds carry it in <link rel="hub">, and each publish POSTs to it.
    if not _is_http(url) or urlsplit(url).fragment:
        raise ValueError(f'"{_esc(url)}" is not an absolute http(s) URL without a fragment')
    return url


def _address(address: str) -> str:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f'"{_esc(address)}" is not an email address: {exc}') from None
    return address


Languages = Annotated[list[str], AfterValidator(_languages)]
Detectable = Annotated[list[str], AfterValidator(_detectable)]
Address = Annotated[str, AfterValidator(_address)]
DAY = 86_400.0
# What a site's templates_dir may hold; the preview (templates/preview) is always ours.
TEMPLATE_FOLDERS = ("email", "web", "i18n")


class _Section(BaseModel):
    # A misspelt key (in code, or in a whole section given as JSON) is an error, not ignored.
    model_config = ConfigDict(extra="forbid")


class SiteSettings(_Section):
    name: str = "Europolitiche Brief"
    base_url: Annotated[str, AfterValidator(_base_url)] = "https://briefs.example.org"
    languages: Languages = ["en", "it"]
    timezone: Annotated[str, AfterValidator(_timezone)] = "Europe/Rome"
    publisher: str = "Europolitiche"
    author: str = "Europolitiche"
    # The site's own templates, tried before ours file by file (email/edition.mjml,
    # web/page.html.j2, ...), and its i18n/<lang>.toml words key by key over ours. A relative
    # path is from the folder briefcast runs in; it is made absolute when read.
    templates_dir: (
        Annotated[Path, BeforeValidator(_not_blank), AfterValidator(_templates_dir)] | None
    ) = None
    # The public site (feeds, pages, archive indexes) that `briefcast serve` serves. A
    # relative path is from the folder briefcast runs in.
    public_dir: Annotated[Path, BeforeValidator(_public_dir)] = Path("public")
    # Where every public page's "Subscribe" link leads. Not set: `briefcast serve` handles
    # subscriptions, at <base_url>/subscribe?lang=<the page's language>. A site hosted
    # elsewhere gives its list's page (``{lang}`` is filled with the page's language), or ""
    # for no link at all.
    subscribe_url: Annotated[str, AfterValidator(_subscribe_url)] | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def brief_url(self, brief_id: str, lang: str) -> str:
        """The brief's web page: the "view in browser" link and every feed item's link."""
        return f"{self.base_url.rstrip('/')}/{lang}/{brief_id}/"

    def subscribe_link(self, lang: str) -> str:
        """The public pages' subscribe link in ``lang``; "" when there is none."""
        if self.subscribe_url is None:
            return f"{self.base_url.rstrip('/')}/subscribe?lang={lang}"
        return self.subscribe_url.format(lang=lang)

    def feed_url(self, lang: str, kind: str) -> str:
        name = {"rss": "rss.xml", "atom": "atom.xml", "json": "feed.json"}[kind]
        return f"{self.base_url.rstrip('/')}/{lang}/{name}"


class InputSettings(_Section):
    max_bytes: int = Field(2_000_000, gt=0, le=100_000_000)  # a brief file
    max_csv_bytes: int = Field(200_000_000, gt=0, le=10_000_000_000)  # a subscriber CSV
    # Besides the site's languages, what unmarked text may be recognised as.
    detect_languages: Detectable = ["en", "it", "fr", "de", "es"]


class DatabaseSettings(_Section):
    url: str = "sqlite:///briefcast.db"


class EmailSettings(_Section):
    from_address: Address = "briefs@example.org"
    from_name: str = "Europolitiche Brief"
    reply_to: str | None = None  # a header as written: may be "Desk <desk@example.org>"
    # Not set: "<[site] base_url>/u/{token}", the page `briefcast serve` answers (Settings
    # fills it in; this default is only what an EmailSettings on its own carries).
    unsubscribe_url: Annotated[str, AfterValidator(_unsubscribe_url)] = (
        "https://briefs.example.org/u/{token}"
    )
    unsubscribe_mailto: Address = "unsubscribe@example.org"


class SmtpSettings(_Section):
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65_535)
    starttls: bool = True
    tls: bool = False
    user: str | None = None
    password: SecretStr | None = None  # from BRIEFCAST_SMTP__PASSWORD only


# Durations and rates must be finite: "inf" or "nan" parse as floats and would wait forever.
def _seconds(default: float, *, gt: float | None = None, ge: float | None = None) -> Any:
    return Field(default, gt=gt, ge=ge, le=DAY, allow_inf_nan=False)


class DeliverySettings(_Section):
    """Live sending (``publish --send``): pool, pace, retries, bounces, DKIM."""

    pool_size: int = Field(4, ge=1, le=100)  # SMTP connections kept open and reused
    rate_per_second: float = Field(0, ge=0, le=100_000, allow_inf_nan=False)  # 0: no pacing
    hourly_cap: int = Field(0, ge=0)  # 0: no cap; counts every brief's sends
    batch_size: int = Field(1000, ge=1, le=100_000)  # subscribers read, ledger rows written
    max_attempts: int = Field(5, ge=1, le=100)  # per message, over all runs; then given up
    backoff_seconds: list[Annotated[float, Field(ge=0, le=DAY, allow_inf_nan=False)]] = Field(
        default=[60, 300, 900, 3600], min_length=1
    )
    # A run waits for deferred retries due this soon; later ones are left to a re-run.
    retry_window_seconds: float = _seconds(900, ge=0)
    timeout_seconds: float = _seconds(60, gt=0)  # per SMTP read or write
    hard_bounce_threshold: int = Field(3, ge=1, le=1000)  # then the subscriber is bounced
    # Another run sending the same brief: wait this long for it to finish, then refuse.
    lock_wait_seconds: float = _seconds(10, ge=0)
    dkim_selector: str | None = None
    dkim_domain: str | None = None  # default: the From address's domain
    dkim_key_path: str | None = None  # PEM private key; DKIM signing only when set
    # From BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET only: signs the unsubscribe tokens.
    unsubscribe_secret: SecretStr | None = None


class FeedSettings(_Section):
    max_items: int = Field(50, gt=0, le=10_000)
    # A WebSub hub (https://www.w3.org/TR/websub/): the published feeds name it, and every
    # publish that changes a feed tells it so. None: no hub.
    websub_hub: Annotated[str, AfterValidator(_hub_url)] | None = None


class ServeSettings(_Section):
    """`briefcast serve`: the public site, the subscribe and unsubscribe pages."""

    access_log: bool = True  # one line per request on stderr
    # Behind a reverse proxy: believe its X-Forwarded-For / X-Forwarded-Proto, from these
    # addresses only (comma-separated; "*" for any). Otherwise the headers are ignored.
    trust_proxy: bool = False
    forwarded_allow_ips: str = "127.0.0.1"
    confirm_hours: float = Field(48, gt=0, le=24 * 30, allow_inf_nan=False)  # confirm links
    # Subscribe form rate limits, token buckets kept in each worker's memory: a burst, then
    # so many per hour; per client address and per email address asked for.
    ip_burst: int = Field(10, ge=1, le=100_000)
    ip_per_hour: float = Field(60, gt=0, le=3_600_000, allow_inf_nan=False)
    address_burst: int = Field(3, ge=1, le=1000)
    address_per_hour: float = Field(6, gt=0, le=3_600_000, allow_inf_nan=False)
    rate_limit_keys: int = Field(10_000, ge=100, le=10_000_000)  # buckets kept, each kind
    # Cache-Control max-age: feeds and HTML (with must-revalidate), and other files.
    page_max_age_seconds: int = Field(300, ge=0, le=31_536_000)
    asset_max_age_seconds: int = Field(86_400, ge=0, le=31_536_000)
    # Files kept in memory (bytes, gzip copy, validators), at most this much in all; larger
    # files are read from disk for each request.
    cache_max_bytes: int = Field(64_000_000, ge=0, le=100_000_000_000)
    cache_file_max_bytes: int = Field(4_000_000, ge=0, le=1_000_000_000)
    # What one client may cost (briefcast.serve.limits), nginx's defaults, the most
    # trusted server in front of apps like this one: a request's head must be complete
    # within client_header_timeout (60 s) and within large_client_header_buffers (4 x 8k);
    # a body is at most client_max_body_size (1m; the forms take far less).
    header_timeout_seconds: float = Field(60, gt=0, le=3600, allow_inf_nan=False)
    # A body's bytes may pause this long at most (client_body_timeout, 60 s).
    body_timeout_seconds: float = Field(60, gt=0, le=3600, allow_inf_nan=False)
    max_header_bytes: int = Field(32_768, ge=1024, le=1_048_576)
    max_body_bytes: int = Field(1_048_576, ge=1024, le=1_073_741_824)
    # An idle kept-alive connection is closed after this (Apache's KeepAliveTimeout, and
    # uvicorn's default: every idle connection holds one of max_connections).
    keep_alive_seconds: int = Field(5, ge=1, le=3600)
    # Connections at once per worker (nginx's worker_connections, 512): past it uvicorn
    # answers 503; and per client address (nginx's limit_conn), so that one address cannot
    # take them all (not applied with trust_proxy: every connection is then the proxy's).
    max_connections: int = Field(512, ge=2, le=100_000)
    max_connections_per_client: int = Field(64, ge=1, le=100_000)
    # Editor logins: argon2 takes 64 MiB a hash, so only so many run at once (per worker);
    # the next ones wait up to login_wait_seconds, then get 503 with Retry-After.
    login_hashes_at_once: int = Field(2, ge=1, le=64)
    login_wait_seconds: float = Field(5, gt=0, le=60, allow_inf_nan=False)
    # Login attempts, token buckets (a burst, then so many an hour): per client address; per
    # name and address (five wrong passwords lock that name from that address only); per
    # name from everywhere, higher, so that guessing one editor's password from many
    # addresses stays slow while the editor can still log in from their own.
    login_ip_burst: int = Field(20, ge=1, le=100_000)
    login_ip_per_hour: float = Field(60, gt=0, le=3_600_000, allow_inf_nan=False)
    login_name_address_burst: int = Field(5, ge=1, le=100_000)
    login_name_address_per_hour: float = Field(12, gt=0, le=3_600_000, allow_inf_nan=False)
    login_name_burst: int = Field(50, ge=1, le=100_000)
    login_name_per_hour: float = Field(60, gt=0, le=3_600_000, allow_inf_nan=False)


# The longest return-path token there can be (a 19-digit delivery id): the address must
# stay valid (a local part is at most 64 characters) for every delivery.
_LONGEST_RETURN_TOKEN = "9" * 19 + "." + "a" * 20


def _return_path(template: str) -> str:
    if template.count("{token}") != 1:
        raise ValueError("must contain {token} once, where each message's own token goes")
    if "{" in template.replace("{token}", "") or "}" in template.replace("{token}", ""):
        raise ValueError("only {token} may be in braces")
    address = template.replace("{token}", _LONGEST_RETURN_TOKEN)
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f'"{_esc(template)}" does not make an email address: {exc}') from None
    if "{token}" in template.rpartition("@")[2]:
        raise ValueError("{token} belongs in the local part (before the @)")
    return template


def _folder(name: str) -> str:
    # IMAP names beyond ASCII travel in modified UTF-7, which nothing here speaks.
    if not name.strip() or not all(32 <= ord(ch) < 127 for ch in name):
        raise ValueError("must be a folder name: printable ASCII, not empty")
    return name


Folder = Annotated[str, AfterValidator(_folder)]


class BouncesSettings(_Section):
    """Late bounces and complaints: the return path they come back to, and the mailbox
    `briefcast bounces fetch` reads them from (IMAP over TLS, or a local Maildir)."""

    # Each message's envelope sender (VERP); {token} names its row of the delivery ledger.
    # None: "bounces+{token}@<the domain of [email] from_address>".
    return_path: Annotated[str, AfterValidator(_return_path)] | None = None
    imap_host: str | None = None  # the IMAP server; TLS always
    imap_port: int = Field(993, ge=1, le=65_535)
    imap_starttls: bool = False  # False: TLS from the start (IMAPS, 993); True: STARTTLS (143)
    imap_user: str | None = None
    password: SecretStr | None = None  # the IMAP password: BRIEFCAST_BOUNCES__PASSWORD only
    folder: Folder = "INBOX"  # where the reports arrive
    processed_folder: Folder = "briefcast/processed"  # made when missing
    unknown_folder: Folder = "briefcast/unknown"  # what is not a report we understand
    # A local Maildir instead of IMAP (its cur/ and new/; subfolders .processed, .unknown).
    maildir: Annotated[Path, BeforeValidator(_not_blank)] | None = None
    max_messages: int = Field(500, ge=1, le=100_000)  # per run; the rest wait for the next
    max_message_bytes: int = Field(1_000_000, ge=10_000, le=100_000_000)  # read of each
    imap_timeout_seconds: float = _seconds(60, gt=0)  # per IMAP read or write


def _account_name(name: str) -> str:
    # The name picks the account's credentials from the environment
    # (BRIEFCAST_SOCIAL_<NAME>_<KEY>, dashes as underscores) and keys its ledger rows.
    if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", name) or len(name) > 40:
        raise ValueError(
            f'"{_esc(name)}" is not an account name: lower-case letters, digits and dashes'
        )
    return name


def _api_url(url: str) -> str:
    if not _is_http(url):
        raise ValueError(f'"{_esc(url)}" is not an absolute http(s) URL')
    return url.rstrip("/")


SOCIAL_NETWORKS = ("x", "mastodon", "bluesky")
# Where each network's API is when an account does not say (tests point at local fakes).
DEFAULT_API = {
    "x": "https://api.x.com",
    "mastodon": "https://mastodon.social",
    "bluesky": "https://bsky.social",
}


class AccountSettings(_Section):
    """One account the desk posts from. Its credentials come only from the environment:
    BRIEFCAST_SOCIAL_<NAME>_<KEY> (see README, "Posting to social networks")."""

    name: Annotated[str, AfterValidator(_account_name)]
    network: Literal["x", "mastodon", "bluesky"]
    languages: Languages  # the briefs' languages this account posts
    api_url: Annotated[str, AfterValidator(_api_url)] | None = None  # None: DEFAULT_API
    handle: str | None = None  # Bluesky: the handle to log in with (e.g. desk.bsky.social)

    @property
    def base_url(self) -> str:
        return self.api_url or DEFAULT_API[self.network]

    def env_name(self, key: str) -> str:
        """The environment variable holding this account's ``key`` (e.g. ACCESS_TOKEN)."""
        return f"BRIEFCAST_SOCIAL_{self.name.upper().replace('-', '_')}_{key.upper()}"


def _unique_accounts(accounts: list[AccountSettings]) -> list[AccountSettings]:
    names = [a.name for a in accounts]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f'account "{twice[0]}" is named twice')
    return accounts


class SocialSettings(_Section):
    """Live posting (``publish --send``): the accounts, and how long to wait when a network
    says "too many requests" before leaving that account's rest for the next run."""

    accounts: Annotated[list[AccountSettings], AfterValidator(_unique_accounts)] = Field(
        default_factory=list, max_length=50
    )
    max_wait_seconds: float = _seconds(900, ge=0)  # longest single rate-limit wait
    timeout_seconds: float = _seconds(30, gt=0)  # per API request


class WorkflowSettings(_Section):
    """The editor's workflow on a Prefect server (`briefcast up`): inbox, approvals, workers."""

    # A brief saved into this folder is previewed and waits for approval (None: no inbox).
    # A relative path is from the folder `briefcast up` runs in.
    inbox: Annotated[Path, BeforeValidator(_not_blank)] | None = None
    out: Annotated[Path, BeforeValidator(_not_blank)] = Path("out")  # reviewed briefs' previews
    # `briefcast up`'s own files: pids, logs and, unless PREFECT_API_URL names a server of
    # your own, the Prefect server's SQLite database.
    state_dir: Annotated[Path, BeforeValidator(_not_blank)] = Path(".briefcast")
    port: int = Field(4200, ge=1, le=65535)  # the Prefect server `briefcast up` starts
    workers: int = Field(1, ge=0, le=32)  # process workers `briefcast up` starts here
    # Flow runs one worker runs at once, each a process. A send holds one slot while its
    # batches run: keep it >= 2.
    runs_per_worker: int = Field(2, ge=2, le=64)
    # Sends under way at once, fleet-wide (the concurrency limit of the work pool's `sends`
    # queue). A send waits for its batches in a worker slot: were every slot a send's, no
    # batch could run, so there must be more slots than this.
    sends_at_once: int = Field(1, ge=1, le=64)
    work_pool: str = Field("briefcast", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    # Subscribers per email batch: one flow run (own process, any worker) per batch. Prefect
    # costs ~10 ms per task or flow run here: thousands per batch, never one per subscriber.
    send_batch: int = Field(5000, ge=100, le=1_000_000)
    approval_hours: float = Field(72, gt=0, le=24 * 90, allow_inf_nan=False)  # then it expires
    # A flow run with no heartbeat for this long (its worker or machine died) is marked
    # crashed, and its batch sent again; runs beat every 30 s (Prefect's minimum).
    zombie_seconds: int = Field(90, ge=40, le=3600)
    # Prefect's own database, for the server `briefcast up` starts (flows/supervisor/prefect_db.py):
    # "auto" is a PostgreSQL in state_dir when this machine has one installed, else SQLite
    # (which loses events under load: then no run is crashed on missing heartbeats).
    prefect_database: Literal["auto", "postgresql", "sqlite"] = "auto"
    # Fleet-wide limits (Prefect global concurrency limits, shared by every worker): SMTP
    # connections per relay, and posts per minute per social network.
    relay_connections: int = Field(8, ge=1, le=1000)
    posts_per_minute: float = Field(30, gt=0, le=10_000, allow_inf_nan=False)

    @model_validator(mode="after")
    def _room_for_batches(self) -> WorkflowSettings:
        # Workers elsewhere (`briefcast worker`) add slots; the ones started here must
        # already leave one for the batches.
        slots = self.workers * self.runs_per_worker
        if self.workers and slots <= self.sends_at_once:
            raise ValueError(
                f"sends_at_once ({self.sends_at_once}) must be less than workers x "
                f"runs_per_worker ({slots}): sends wait for batches, which need a slot"
            )
        return self


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
SECRET_KEYS = (
    ("smtp", "password"),
    ("delivery", "unsubscribe_secret"),
    ("bounces", "password"),
)


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


# --- the file -------------------------------------------------------------------------------


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
                raise _SettingsError(f"{path}: unknown section [{_esc(name)}]{hint}")
            raise _SettingsError(f'{path}: "{_esc(name)}" is outside any section{_home(name)}')
        if section in sections:
            raise _SettingsError(
                f"{path}: [{written[section]}] and [{_esc(name)}] are one section; merge them"
            )
        sections[section], written[section] = table, _esc(name)
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
                raise _SettingsError(f'{path}: unknown key "{_esc(key)}" in [{section}]{hint}')
    return sections


def _home(key: str) -> str:
    """`` (it belongs in [smtp])`` for a key of another section."""
    homes = [
        f"[{name}]"
        for name, model in SECTIONS.items()
        if key in model.model_fields and (name, key) not in SECRET_KEYS  # no hint to put it here
    ]
    return f" (it belongs in {' or '.join(homes)})" if homes else ""


# --- the environment ------------------------------------------------------------------------


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


# --- loading --------------------------------------------------------------------------------


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
        where += f" {_esc(str(loc[1]))}" + "".join(
            f"[{part}]" if isinstance(part, int) else f".{_esc(str(part))}" for part in loc[2:]
        )
    env = {name.lower(): name for name in os.environ}
    candidates = [f"briefcast_{section}__{loc[1]}".lower()] if len(loc) > 1 else []
    source = next(
        (env[c] for c in [*candidates, f"briefcast_{section}"] if c in env),
        str(config_path() or "settings"),
    )
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{source}: {where}: {message}"
