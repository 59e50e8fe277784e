"""Late bounces and complaints, end to end: briefcast sends through a real SMTP server
(aiosmtpd) with each message's own return path (VERP), real-looking DSN and ARF reports about
those very messages land in a real IMAP server (a throwaway Dovecot, TLS required) or a
Maildir, and ``briefcast bounces fetch`` records each once on its delivery and subscriber,
ignores forged tokens, and moves what it read."""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from bounce_reports import arf_report, forge, out_of_office, postfix_dsn
from delivery_helpers import (
    SECRET,
    add_subscribers,
    cli_env,
    ledger_rows,
    make_settings,
    subscriber_rows,
)
from dovecot_server import PASSWORD, Server, dovecot_server, find_dovecot
from pydantic import SecretStr, ValidationError
from smtp_servers import HOST, Received, Recorder, smtp_server
from sqlalchemy import func, select
from test_cli import briefcast

from briefcast import bounces
from briefcast.bounces import reports
from briefcast.bounces.mailboxes import ImapMailbox
from briefcast.config import BouncesSettings, Settings
from briefcast.delivery import deliver, tokens
from briefcast.delivery.verp import ReturnPath
from briefcast.store import Store, bounce_reports, subscribers

REQUIRE_DOVECOT = "BRIEFCAST_REQUIRE_DOVECOT"
BRIEF = "brief-one"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Server]:
    """One throwaway Dovecot for the module (each test logs in as a user of its own)."""
    binary = find_dovecot()
    why = (
        "Dovecot not found (apt-get install dovecot-imapd)"
        if binary is None
        else "Dovecot's master must start as root"
        if os.geteuid() != 0
        else None
    )
    if why:
        if os.environ.get(REQUIRE_DOVECOT) == "1":
            pytest.fail(f"{why} and {REQUIRE_DOVECOT}=1")
        pytest.skip(f"{why}; set {REQUIRE_DOVECOT}=1 to fail")
    assert binary is not None
    started = time.perf_counter()
    with dovecot_server(binary) as server:
        print(f"\nDovecot up in {time.perf_counter() - started:.2f} s")
        yield server


@pytest.fixture
def imap_user() -> str:
    return f"u{uuid.uuid4().hex[:10]}"  # a mailbox of its own: Dovecot logs anyone in


def imap_settings(server: Server, user: str, **delivery: object) -> Settings:
    settings = make_settings(**delivery)  # type: ignore[arg-type]
    settings.bounces = BouncesSettings(
        imap_host=HOST,
        imap_port=server.imaps_port,
        imap_user=user,
        password=SecretStr(PASSWORD),
        imap_timeout_seconds=10,
    )
    return settings


class Imap:
    """The test's own look into the mailbox."""

    def __init__(self, server: Server, user: str) -> None:
        context = ssl.create_default_context(cafile=str(server.cert))
        self.conn = imaplib.IMAP4_SSL(HOST, server.imaps_port, ssl_context=context, timeout=10)
        self.conn.login(user, PASSWORD)

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        for message in messages:
            typ, data = self.conn.append(folder, None, None, message)
            assert typ == "OK", data

    def message_ids(self, folder: str) -> list[str]:
        """Message-IDs in the folder (its server name: Dovecot's separator here is ".")."""
        typ, _ = self.conn.select(f'"{folder}"', readonly=True)
        if typ != "OK":
            return []
        typ, data = self.conn.uid("SEARCH", "ALL")
        uids = data[0].split() if data and data[0] else []
        found = []
        for uid in uids:
            typ, parts = self.conn.uid(
                "FETCH", uid.decode(), "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
            )
            header = next(p[1] for p in parts if isinstance(p, tuple))
            found.append(header.decode().split(":", 1)[1].strip())
        return sorted(found)

    def close(self) -> None:
        self.conn.logout()


def report_id(report: bytes) -> str:
    return reports.parse(report).key


def send(store: Store, brief_id: str, mails, count: int = 0, **delivery: object) -> dict:
    """Send a brief through aiosmtpd; what arrived, by recipient."""
    if count:
        add_subscribers(store, count)
    recorder = Recorder()
    with smtp_server(recorder) as port:
        summary = deliver(store, brief_id, mails, make_settings(port, **delivery))
    assert summary.error is None
    return {got.rcpt_to: got for got in recorder.messages()}


def hard_bounces(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(subscribers.c.email, subscribers.c.hard_bounces)).all()
    return {email: n for email, n in rows}


# --- IMAP (Dovecot) -------------------------------------------------------------------------


def test_late_bounces_and_complaints_are_recorded_once_from_imap(
    store: Store, brief_and_mails, dovecot: Server, imap_user: str, monkeypatch
) -> None:
    _, mails = brief_and_mails
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.cert))  # trust the test's certificate
    sent = send(store, BRIEF, mails, count=6)
    r = {n: sent[f"reader{n}@example.org"] for n in range(1, 7)}

    hard = postfix_dsn(r[1])
    soft = postfix_dsn(r[2], action="delayed", status="4.2.2", diagnostic="452 4.2.2 Mailbox full")
    complaint = arf_report(r[3])
    forged = forge(postfix_dsn(r[4]), r[4])
    chatter = out_of_office(r[5])
    imap = Imap(dovecot, imap_user)
    imap.append(hard, soft, complaint, forged, chatter)
    settings = imap_settings(dovecot, imap_user, hard_bounce_threshold=2)

    summary = bounces.fetch(store, settings)

    counts = (summary.hard, summary.soft, summary.complaints, summary.unknown)
    assert counts == (1, 1, 1, 2) and summary.duplicates == 0
    assert (summary.moved, summary.not_moved, summary.left) == (5, 0, 0)
    rows = ledger_rows(store, BRIEF)
    assert rows["reader1@example.org"]["status"] == "bounced"
    assert "5.1.1" in rows["reader1@example.org"]["last_reply"]
    assert "mx.example.net" in rows["reader1@example.org"]["last_reply"]
    assert rows["reader2@example.org"]["status"] == "sent"  # soft: noted, still sent
    assert "4.2.2" in rows["reader2@example.org"]["last_reply"]
    assert "abuse" in rows["reader3@example.org"]["last_reply"]
    assert rows["reader4@example.org"]["last_reply"].startswith("250")  # forged: untouched
    people = subscriber_rows(store)
    assert people["reader1@example.org"][2] == "active"  # 1 hard bounce of 2
    assert people["reader3@example.org"][2] == "complained"
    assert {e for e, (_, _, s) in people.items() if s == "active"} == {
        f"reader{n}@example.org" for n in (1, 2, 4, 5, 6)
    }
    assert hard_bounces(store) == {f"reader{n}@example.org": int(n == 1) for n in range(1, 7)}
    assert any("wrong signature" in why for why in summary.unknown_details)

    # Moved: the inbox is empty, the folders were made (Dovecot's separator is ".").
    assert imap.message_ids("INBOX") == []
    processed = sorted(report_id(m) for m in (hard, soft, complaint))
    assert imap.message_ids("briefcast.processed") == processed
    assert imap.message_ids("briefcast.unknown") == sorted(map(report_id, (forged, chatter)))

    # Nothing new: nothing changes. The same report again: a duplicate, not counted.
    again = bounces.fetch(store, settings)
    assert again.read == 0
    imap.append(hard)
    twice = bounces.fetch(store, settings)
    assert (twice.hard, twice.duplicates, twice.moved) == (0, 1, 1)
    assert hard_bounces(store)["reader1@example.org"] == 1
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(bounce_reports)).scalar() == 3

    # The next brief bounces for reader1 too: the threshold is reached.
    second = send(store, "brief-two", mails)
    assert "reader3@example.org" not in second  # complained: never mailed again
    imap.append(postfix_dsn(second["reader1@example.org"]))
    third = bounces.fetch(store, settings)
    assert (third.hard, third.subscribers_bounced) == (1, 1)
    assert subscriber_rows(store)["reader1@example.org"][2] == "bounced"
    later = send(store, "brief-three", mails)
    assert set(later) == {f"reader{n}@example.org" for n in (2, 4, 5, 6)}
    imap.close()


def test_a_report_whose_move_failed_is_a_duplicate_next_time(
    store: Store, brief_and_mails, dovecot: Server, imap_user: str, monkeypatch
) -> None:
    _, mails = brief_and_mails
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.cert))
    sent = send(store, BRIEF, mails, count=2)
    imap = Imap(dovecot, imap_user)
    imap.append(postfix_dsn(sent["reader1@example.org"]))
    settings = imap_settings(dovecot, imap_user)
    with monkeypatch.context() as patch:
        patch.setattr(ImapMailbox, "move", lambda self, refs, where: 0)
        first = bounces.fetch(store, settings)
    assert (first.hard, first.moved, first.not_moved) == (1, 0, 1)
    assert len(imap.message_ids("INBOX")) == 1  # still there

    second = bounces.fetch(store, settings)
    assert (second.hard, second.duplicates, second.moved) == (0, 1, 1)
    assert hard_bounces(store)["reader1@example.org"] == 1
    assert imap.message_ids("INBOX") == []
    imap.close()


def test_starttls_a_bounded_run_and_a_report_read_in_part(
    store: Store, brief_and_mails, dovecot: Server, imap_user: str, monkeypatch
) -> None:
    """STARTTLS on the plain port; at most max_messages a run (the rest wait); a report
    larger than max_message_bytes is read in part, and its report comes first."""
    _, mails = brief_and_mails
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.cert))
    sent = send(store, BRIEF, mails, count=4)
    imap = Imap(dovecot, imap_user)
    big = arf_report(sent["reader1@example.org"])
    assert len(big) > 15_000  # the whole original is attached
    imap.append(big, *(postfix_dsn(sent[f"reader{n}@example.org"]) for n in (2, 3, 4)))
    settings = imap_settings(dovecot, imap_user)
    settings.bounces.imap_port, settings.bounces.imap_starttls = dovecot.imap_port, True
    settings.bounces.max_messages, settings.bounces.max_message_bytes = 3, 10_000

    first = bounces.fetch(store, settings)
    assert (first.complaints, first.hard, first.left, first.truncated) == (1, 2, 1, 1)
    second = bounces.fetch(store, settings)
    assert (second.hard, second.left, second.read) == (1, 0, 1)
    assert subscriber_rows(store)["reader1@example.org"][2] == "complained"
    logins = [
        line
        for line in (dovecot.folder / "dovecot.log").read_text().splitlines()
        if f"Login: user=<{imap_user}>" in line
    ]
    assert len(logins) == 3 and all(", TLS," in line for line in logins)  # never in clear
    imap.close()


def test_the_command_prints_a_summary_and_fails_in_one_line(
    tmp_path: Path, brief_and_mails, dovecot: Server, imap_user: str
) -> None:
    _, mails = brief_and_mails
    env = cli_env(tmp_path) | {
        "BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET": SECRET,
        "BRIEFCAST_EMAIL__FROM_ADDRESS": "briefs@example.org",
        "BRIEFCAST_BOUNCES__IMAP_HOST": HOST,
        "BRIEFCAST_BOUNCES__IMAP_PORT": str(dovecot.imaps_port),
        "BRIEFCAST_BOUNCES__IMAP_USER": imap_user,
        "BRIEFCAST_BOUNCES__PASSWORD": PASSWORD,
        "SSL_CERT_FILE": str(dovecot.cert),
    }
    with Store(env["BRIEFCAST_DATABASE__URL"]) as store:
        sent = send(store, BRIEF, mails, count=2)
    imap = Imap(dovecot, imap_user)
    imap.append(postfix_dsn(sent["reader1@example.org"]), arf_report(sent["reader2@example.org"]))

    done = briefcast("bounces", "fetch", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    for line in ("hard bounces", "complaints", "unknown", "duplicates"):
        assert line in done.stdout
    assert "2 read, 2 moved" in done.stdout and "complained: 1" in done.stdout

    cases = [
        ({"BRIEFCAST_BOUNCES__PASSWORD": "wrong"}, 1, "AUTHENTICATIONFAILED"),
        ({"SSL_CERT_FILE": str(tmp_path / "none.pem")}, 1, "certificate"),
        ({"BRIEFCAST_BOUNCES__IMAP_PORT": str(dovecot.imap_port)}, 1, "cannot connect"),
        ({"BRIEFCAST_BOUNCES__PASSWORD": ""}, 2, "BRIEFCAST_BOUNCES__PASSWORD is not set"),
        ({"BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET": ""}, 2, "UNSUBSCRIBE_SECRET"),
        ({"BRIEFCAST_BOUNCES__IMAP_HOST": ""}, 2, "no bounce mailbox"),
    ]
    for change, code, message in cases:
        failed = briefcast("bounces", "fetch", cwd=tmp_path, env=env | change)
        assert failed.returncode == code, (change, failed.stderr)
        assert message in failed.stderr and len(failed.stderr.strip().splitlines()) == 1
        assert "Traceback" not in failed.stderr
    imap.close()


# --- Maildir, no server -----------------------------------------------------------------------


def maildir(folder: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return folder


def deposit(box: Path, *messages: bytes) -> None:
    for message in messages:
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.test"
        (box / "tmp" / name).write_bytes(message)
        (box / "tmp" / name).rename(box / "new" / name)


def test_a_maildir_is_read_the_same_way(store: Store, brief_and_mails, tmp_path: Path) -> None:
    _, mails = brief_and_mails
    sent = send(store, BRIEF, mails, count=4)
    box = maildir(tmp_path / "Maildir")
    # 8-bit text as real servers write it: UTF-8, a stray Latin-1 byte, a NUL.
    diagnostic = "550 5.1.1 casella inesistente (caffè) \x00 ÿ"
    hard = postfix_dsn(sent["reader1@example.org"], diagnostic=diagnostic)
    hard = hard.replace("ÿ".encode(), b"\xff")
    # A feedback loop that kept only the original's Message-ID: found by its token.
    complaint = arf_report(sent["reader2@example.org"], name_the_sender=False)
    assert b"bounces+" not in complaint
    deposit(box, hard, complaint, out_of_office(sent["reader3@example.org"]))
    settings = make_settings(hard_bounce_threshold=1)
    settings.bounces = BouncesSettings(maildir=box)

    summary = bounces.fetch(store, settings)
    assert (summary.hard, summary.complaints, summary.unknown) == (1, 1, 1)
    assert summary.subscribers_bounced == 1  # threshold 1
    people = subscriber_rows(store)
    assert people["reader1@example.org"][2] == "bounced"
    assert people["reader2@example.org"][2] == "complained"
    reply = ledger_rows(store, BRIEF)["reader1@example.org"]["last_reply"]
    assert "casella inesistente (caffè) \ufffd" in reply and "\x00" not in reply
    assert not list((box / "new").iterdir()) and not list((box / "cur").iterdir())
    assert len(list((box / ".processed" / "cur").iterdir())) == 2
    assert len(list((box / ".unknown" / "cur").iterdir())) == 1
    assert (box / ".processed" / "maildirfolder").exists()

    # The same report delivered twice: a duplicate, counted once.
    deposit(box, hard)
    shutil.copy(next((box / ".processed" / "cur").iterdir()), box / "cur" / "copy:2,S")
    again = bounces.fetch(store, settings)
    assert (again.hard, again.complaints, again.duplicates) == (0, 0, 2)
    assert hard_bounces(store)["reader1@example.org"] == 1


def test_a_forged_or_foreign_token_names_nobody(store: Store, brief_and_mails, tmp_path) -> None:
    _, mails = brief_and_mails
    sent = send(store, BRIEF, mails, count=2)
    got = sent["reader1@example.org"]
    box = maildir(tmp_path / "Maildir")
    # Signed with another secret: as good as forged.
    other = ReturnPath("bounces+{token}@example.org", "another-secret").address(1)
    foreign = Received(other, got.rcpt_to, got.data.replace(b"Message-ID:", b"X-Old-ID:"))
    deposit(box, forge(postfix_dsn(got), got), postfix_dsn(foreign))
    settings = make_settings()
    settings.bounces = BouncesSettings(maildir=box)
    summary = bounces.fetch(store, settings)
    assert (summary.hard, summary.unknown) == (0, 2)
    assert ledger_rows(store, BRIEF)["reader1@example.org"]["status"] == "sent"
    assert hard_bounces(store)["reader1@example.org"] == 0


def test_reports_are_classified(brief_and_mails) -> None:
    got = Received(
        "bounces+7.0123456789abcdef0123@example.org",
        "reader@example.org",
        b"Message-ID: <b.en.1.xxxxxxxxxxxxxxxxxxxxxx@example.org>\r\nSubject: x\r\n\r\nhi\r\n",
    )
    dsn = reports.parse(postfix_dsn(got))
    assert (dsn.kind, dsn.envelope[0]) == ("hard", got.mail_from)
    assert dsn.message_ids == ("<b.en.1.xxxxxxxxxxxxxxxxxxxxxx@example.org>",)
    assert "User unknown" in dsn.detail
    delayed = postfix_dsn(got, action="delayed", status="4.4.1", diagnostic="connect timed out")
    assert reports.parse(delayed).kind == "soft"
    # "delayed" is never hard, whatever the code; "failed" with a 4.x.x status is soft.
    assert reports.parse(postfix_dsn(got, action="delayed", status="5.0.0")).kind == "soft"
    assert reports.parse(postfix_dsn(got, action="failed", status="4.4.7")).kind == "soft"
    relayed = postfix_dsn(got, action="relayed", status="2.0.0", diagnostic="250 ok")
    assert reports.parse(relayed).kind == "unknown"
    arf = reports.parse(arf_report(got))
    assert arf.kind == "complaint" and f"<{got.mail_from}>" in arf.return_paths
    assert reports.parse(arf_report(got, feedback_type="not-spam")).kind == "unknown"
    assert reports.parse(out_of_office(got)).kind == "unknown"
    for hostile in (b"", b"\x00\xff" * 100, b"Content-Type: multipart/report\r\n\r\n--"):
        assert reports.parse(hostile).kind == "unknown"


def test_return_path_tokens_are_signed_and_found_in_any_case() -> None:
    made = ReturnPath("bounces+{token}@example.org", SECRET)
    address = made.address(123)
    assert address.startswith("bounces+123.") and address.endswith("@example.org")
    assert len(address.partition("@")[0]) <= 64
    # Found whatever the case, inside a header, and with a template changed since.
    later = ReturnPath("vb-{token}@bounces.example.org", SECRET)
    header = f"rfc822; <{address.upper()}>, other@example.org"
    assert list(later.deliveries(header)) == [(address[8:-12].upper(), 123)]
    tampered = address.replace("bounces+123.", "bounces+124.")
    assert [d for _, d in made.deliveries(tampered)] == [None]
    assert list(made.deliveries("bounces+123@example.org 123.abc")) == []


def test_the_return_path_setting_is_checked() -> None:
    assert BouncesSettings(return_path="b-{token}@bounce.example.org").return_path
    for bad in (
        "bounces@example.org",
        "bounces+{token}+{token}@example.org",
        "bounces+{token}@{x}.org",
        "bounces+{token}",
        "{token}@example.org@x",
        "x@{token}.example.org",
    ):
        with pytest.raises(ValidationError):
            BouncesSettings(return_path=bad)


def test_the_bounce_password_is_never_read_from_a_file(tmp_path: Path, monkeypatch) -> None:
    from briefcast.config import load_settings
    from briefcast.errors import ConfigError

    config = tmp_path / "b.toml"
    config.write_text('[bounces]\nimap_host = "imap.example.org"\npassword = "x"\n')
    monkeypatch.setenv("BRIEFCAST_CONFIG", str(config))
    with pytest.raises(ConfigError, match="BRIEFCAST_BOUNCES__PASSWORD"):
        load_settings()


def test_the_message_id_carries_no_unsubscribe_token(
    store: Store, brief_and_mails, tmp_path: Path
) -> None:
    """A Message-ID is quoted in replies, forwards, archives and spam reports: it held the
    subscriber's permanent unsubscribe token (which worked on /u/). Now an opaque id, that a
    report naming only it still ties to its delivery, through the ledger."""
    _, mails = brief_and_mails
    sent = send(store, BRIEF, mails, count=2)
    people = subscriber_rows(store)
    for email, got in sent.items():
        message_id = got.message["Message-ID"]
        token = tokens.sign(SECRET, people[email][0])
        assert token not in message_id and token.split(".")[1] not in message_id
        assert not [
            m
            for m in re.findall(r"[0-9]+\.[A-Za-z0-9_-]{22}", message_id)
            if tokens.verify(SECRET, m) is not None
        ], message_id
        assert ledger_rows(store, BRIEF)[email]["message_id"] == message_id
    # Unique per recipient, as before.
    assert len({got.message["Message-ID"] for got in sent.values()}) == len(sent)
    # A complaint that quotes nothing but the original's Message-ID.
    got = sent["reader2@example.org"]
    headers_only = Received(
        "", got.rcpt_to, f"Message-ID: {got.message['Message-ID']}\r\nSubject: x\r\n\r\n".encode()
    )
    complaint = arf_report(headers_only, name_the_sender=False)
    assert b"bounces+" not in complaint and b"/u/" not in complaint
    box = maildir(tmp_path / "Maildir")
    deposit(box, complaint)
    settings = make_settings()
    settings.bounces = BouncesSettings(maildir=box)
    summary = bounces.fetch(store, settings)
    assert (summary.complaints, summary.unknown) == (1, 0)
    assert subscriber_rows(store)["reader2@example.org"][2] == "complained"
    assert subscriber_rows(store)["reader1@example.org"][2] == "active"
