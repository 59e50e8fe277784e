"""A throwaway Dovecot IMAP server for the bounce tests: a configuration of its own in a
temporary folder, listening on free loopback ports only (IMAPS, and IMAP with STARTTLS),
TLS required with a self-signed certificate made here, any user name logging in with one
password, each user's mail in a Maildir under the folder; stopped and deleted at the end.
Nothing of the machine's own Dovecot (if any runs) is touched.

Dovecot's master runs as root (it drops privileges for its login and mail processes, to
Debian's ``dovecot``, ``dovenull`` and here ``nobody``): the tests skip without root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from smtp_servers import HOST, free_port, self_signed

PASSWORD = "imap-test-password"
MAIL_USER = "nobody"  # Dovecot refuses root for mail access; nobody owns the Maildirs


def find_dovecot() -> str | None:
    found = shutil.which("dovecot")
    if found:
        return found
    return "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None


@dataclass(frozen=True)
class Server:
    folder: Path
    imaps_port: int
    imap_port: int  # plain IMAP: STARTTLS before anything else (ssl = required)
    cert: Path  # trust it (SSL_CERT_FILE) to connect

    def maildir(self, user: str) -> Path:
        return self.folder / "mail" / user


CONFIG = """\
# briefcast tests: a throwaway Dovecot (tests/dovecot_server.py)
instance_name = briefcast-test-{imaps_port}
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = {host}
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
mail_location = maildir:{folder}/mail/%u
first_valid_uid = 1
mail_uid = {uid}
mail_gid = {gid}
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={folder}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {imaps_port}
    ssl = yes
  }}
}}
service stats {{
  inet_listener http {{
    port = 0
  }}
}}
"""


@contextmanager
def dovecot_server(binary: str) -> Iterator[Server]:
    # Not pytest's tmp_path: its parents are private to us, and Dovecot's unprivileged
    # processes must reach their sockets here.
    folder = Path(tempfile.mkdtemp(prefix="briefcast-dovecot-"))
    folder.chmod(0o755)
    user = pwd.getpwnam(MAIL_USER)
    for sub in ("run", "state", "mail"):
        (folder / sub).mkdir()
    os.chown(folder / "mail", user.pw_uid, user.pw_gid)
    cert, key = self_signed(folder)
    key.chmod(0o600)
    imaps_port, imap_port = free_port(), free_port()
    config = folder / "dovecot.conf"
    config.write_text(
        CONFIG.format(
            folder=folder,
            host=HOST,
            cert=cert,
            key=key,
            uid=user.pw_uid,
            gid=user.pw_gid,
            password=PASSWORD,
            imaps_port=imaps_port,
            imap_port=imap_port,
        )
    )
    log = folder / "dovecot.log"
    proc = subprocess.Popen(
        [binary, "-F", "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: stopped with its children
    )
    try:
        _wait_until_listening(proc, (imaps_port, imap_port), log)
        yield Server(folder, imaps_port, imap_port, cert)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_until_listening(proc: subprocess.Popen[bytes], ports: tuple[int, ...], log: Path) -> None:
    deadline = time.monotonic() + 30
    waiting = list(ports)
    while waiting:
        if proc.poll() is not None:
            output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            detail = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"Dovecot did not start (exit {proc.returncode}): {output}{detail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Dovecot is not listening on {waiting} after 30 s")
        try:
            with socket.create_connection((HOST, waiting[0]), timeout=1):
                waiting.pop(0)
        except OSError:
            time.sleep(0.05)
