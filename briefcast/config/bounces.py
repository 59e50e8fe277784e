"""``[bounces]``: where late bounces and complaints are read (IMAP or Maildir)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BeforeValidator, Field, SecretStr

from briefcast.config.fields import Section, esc, not_blank, seconds_field

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
        raise ValueError(f'"{esc(template)}" does not make an email address: {exc}') from None
    if "{token}" in template.rpartition("@")[2]:
        raise ValueError("{token} belongs in the local part (before the @)")
    return template


def _folder(name: str) -> str:
    # IMAP names beyond ASCII travel in modified UTF-7, which nothing here speaks.
    if not name.strip() or not all(32 <= ord(ch) < 127 for ch in name):
        raise ValueError("must be a folder name: printable ASCII, not empty")
    return name


Folder = Annotated[str, AfterValidator(_folder)]


class BouncesSettings(Section):
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
    maildir: Annotated[Path, BeforeValidator(not_blank)] | None = None
    max_messages: int = Field(500, ge=1, le=100_000)  # per run; the rest wait for the next
    max_message_bytes: int = Field(1_000_000, ge=10_000, le=100_000_000)  # read of each
    imap_timeout_seconds: float = seconds_field(60, gt=0)  # per IMAP read or write
