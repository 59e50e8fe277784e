"""``[serve]``: ``briefcast serve``: its address, limits and the editor's pages."""

from __future__ import annotations

from pydantic import Field

from briefcast.config.fields import Section


class ServeSettings(Section):
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
