"""A real SMTP server on loopback for the delivery tests: aiosmtpd in a thread, recording what
arrived, with the faults a relay really has (4xx, 5xx, dropped connections, slowness)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_to: str
    data: bytes  # as the client sent it, after DATA's dot-unstuffing

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class Faults:
    """Per address, how many times to misbehave before behaving."""

    defer: dict[str, int] = field(default_factory=dict)  # 451 to RCPT
    reject: set[str] = field(default_factory=set)  # 550 to RCPT, always
    drop_at_rcpt: dict[str, int] = field(default_factory=dict)  # hang up instead of answering
    drop_after_data: dict[str, int] = field(default_factory=dict)  # take it all, hang up, drop it
    delay: float = 0.0  # seconds before answering each message's end of data
    stall: dict[str, float] = field(default_factory=dict)  # keep it, answer this much later


class Recorder:
    """The aiosmtpd handler: keeps every accepted message; faults as configured."""

    def __init__(self, faults: Faults | None = None, *, pipelining: bool = True) -> None:
        self.faults = faults or Faults()
        self.pipelining = pipelining
        self.received: list[Received] = []
        self.on_data: Callable[[str], None] | None = None  # called with the recipient
        self.connections = 0
        self.lock = threading.Lock()

    def _take(self, table: dict[str, int], address: str) -> bool:
        with self.lock:
            if table.get(address, 0) > 0:
                table[address] -= 1
                return True
            return False

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.connections += 1
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.faults.reject:
            return f"550 5.1.1 <{address}>: no such mailbox"
        if self._take(self.faults.defer, address):
            return "451 4.7.1 greylisted, try again later"
        if self._take(self.faults.drop_at_rcpt, address):
            server.transport.close()
            return "421 4.4.2 gone"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        (rcpt,) = envelope.rcpt_tos  # the sender puts one recipient per transaction
        if self.on_data is not None:
            self.on_data(rcpt)
        if self._take(self.faults.drop_after_data, rcpt):
            server.transport.close()
            return "451 4.3.0 never heard"
        if rcpt in self.faults.stall:
            with self.lock:
                self.received.append(Received(envelope.mail_from, rcpt, envelope.original_content))
            await asyncio.sleep(self.faults.stall.pop(rcpt))
            return "250 2.0.0 queued, but the sender stopped listening long ago"
        with self.lock:
            self.received.append(Received(envelope.mail_from, rcpt, envelope.original_content))
        return "250 2.0.0 queued"

    def reset(self) -> None:
        """Forget what arrived and the faults set, for the next test on a server shared by a
        module's tests one at a time (tests/test_workflow.py's `briefcast up` fleets)."""
        with self.lock:
            self.faults = Faults()
            self.received.clear()
            self.on_data = None
            self.connections = 0

    def count(self) -> Counter[str]:
        with self.lock:
            return Counter(r.rcpt_to for r in self.received)

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)


@contextmanager
def smtp_server(
    recorder: Recorder,
    *,
    tls_context: ssl.SSLContext | None = None,
    login: tuple[str, str] | None = None,
) -> Iterator[int]:
    """Serve on a free loopback port; yields the port."""
    kwargs: dict[str, Any] = {}
    if tls_context is not None:
        kwargs |= {"tls_context": tls_context, "require_starttls": True}
    if login is not None:

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any):
            ok = (
                isinstance(data, LoginPassword)
                and (
                    data.login.decode(),
                    data.password.decode(),
                )
                == login
            )
            return AuthResult(success=ok, handled=False)  # let aiosmtpd send the 535

        kwargs |= {"authenticator": authenticate, "auth_required": True}
    port = free_port()
    controller = Controller(recorder, hostname=HOST, port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
