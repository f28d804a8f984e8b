"""Outbound notification POSTs (section 9.5) against real receivers on 127.0.0.1.

Each receiver is an http.server.ThreadingHTTPServer in a thread. Names are
served by a fake getaddrinfo (the machine has no external network), which is
also how the tests see that the sender connects to the address it vetted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from automation_server.notifications.addresses import check_url
from automation_server.notifications.sender import (
    GIVE_UP_AFTER,
    MAX_RESPONSE_BYTES,
    SendResult,
    backoff_seconds,
    post_json,
    sign,
)

SECRET = "whsec_test_secret_value"
BODY = b'{"event": "run.failed", "id": "n_1", "run": {"id": "r_1"}}'


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int
    received: list[Received] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/hook", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


Behaviour = Callable[[BaseHTTPRequestHandler, Receiver], None]


def _handler(behaviour: Behaviour, receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            receiver.received.append(Received(self.path, dict(self.headers.items()), body))
            # A broken pipe means the sender gave up, as it should.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                behaviour(self, receiver)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def receiver_running(behaviour: Behaviour, tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    receiver = Receiver(port=0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(behaviour, receiver))
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: receiver.sni.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()  # let stalling handlers finish, so server_close can join them
        server.shutdown()
        server.server_close()
        thread.join()


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler, _receiver: Receiver) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return behave


def never_answer(_handler: BaseHTTPRequestHandler, receiver: Receiver) -> None:
    receiver.release.wait(10)


def trickle(prefix: bytes) -> Behaviour:
    """Send `prefix`, then one byte every 0.1 s: every read succeeds, the answer never ends."""

    def behave(handler: BaseHTTPRequestHandler, receiver: Receiver) -> None:
        handler.wfile.write(prefix)
        while not receiver.release.wait(0.1):
            handler.wfile.write(b"a")

    return behave


@dataclass
class FakeDns:
    """Answers per name, one list per lookup (the last one repeats), and lookup counts."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    lookups: dict[str, int] = field(default_factory=dict)

    def answer(self, host: str, port: Any) -> list[Any]:
        count = self.lookups[host] = self.lookups.get(host, 0) + 1
        ips = self.answers[host][min(count, len(self.answers[host])) - 1]
        if not ips:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ips]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    fake = FakeDns()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host in fake.answers:
            return fake.answer(host, port)
        return real(host, port, *args, **kwargs)  # IP literals, as connect() looks them up

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return fake


def send(url: str, **kwargs: Any) -> SendResult:
    headers = {"X-Signature-256": sign(BODY, SECRET), "X-Delivery-Id": "d_1"}
    kwargs.setdefault("allow_private", True)
    return post_json(url, BODY, headers, **kwargs)


# -- answers ------------------------------------------------------------------


def test_a_2xx_receiver_gets_the_signed_body_and_headers() -> None:
    with receiver_running(answer(200, b"thanks")) as receiver:
        result = send(receiver.url("/hook?team=ops"))
    assert result.ok
    assert (result.status_code, result.error, result.response_body) == (200, None, b"thanks")
    assert result.elapsed_ms >= 0
    [got] = receiver.received
    assert got.path == "/hook?team=ops"
    assert got.body == BODY
    expected = "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert got.headers["X-Signature-256"] == expected
    assert got.headers["X-Delivery-Id"] == "d_1"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Host"] == f"127.0.0.1:{receiver.port}"


def test_a_204_is_a_delivery_too() -> None:
    with receiver_running(answer(204)) as receiver:
        assert send(receiver.url()).ok


def test_a_500_is_a_failed_delivery() -> None:
    with receiver_running(answer(500, b"boom")) as receiver:
        result = send(receiver.url())
    assert not result.ok
    assert result.status_code == 500
    assert result.error == "receiver answered HTTP 500"


def test_a_redirect_is_not_followed() -> None:
    with (
        receiver_running(answer(200)) as elsewhere,
        receiver_running(answer(302, headers={"Location": elsewhere.url("/other")})) as receiver,
    ):
        result = send(receiver.url())
    assert not result.ok
    assert result.status_code == 302
    assert result.error == "redirect not followed"
    assert len(receiver.received) == 1
    assert elsewhere.received == []


def test_the_response_body_read_is_capped() -> None:
    with receiver_running(answer(200, b"x" * (1024 * 1024))) as receiver:
        result = send(receiver.url())
    assert result.ok
    assert len(result.response_body) == MAX_RESPONSE_BYTES


# -- slow and dead receivers ------------------------------------------------------


def test_a_receiver_that_never_answers_times_out() -> None:
    with receiver_running(never_answer) as receiver:
        started = time.monotonic()
        result = send(receiver.url(), connect_timeout=0.5, read_timeout=0.5)
        took = time.monotonic() - started
    assert (result.ok, result.status_code) == (False, None)
    assert result.error == "receiver did not answer within the read timeout of 0.5 s"
    assert 0.4 <= took < 1.0 + 1.0  # read timeout, well inside connect + read, plus slack


def test_a_receiver_trickling_its_headers_hits_the_total_deadline() -> None:
    with receiver_running(trickle(b"HTTP/1.1 200 OK\r\nX-Pad: ")) as receiver:
        started = time.monotonic()
        result = send(receiver.url(), connect_timeout=0.5, read_timeout=0.5)
        took = time.monotonic() - started
    assert (result.ok, result.status_code) == (False, None)
    assert result.error == "no complete answer within the total deadline of 1 s"
    assert 0.9 <= took < 1.0 + 1.0


def test_a_receiver_trickling_its_body_is_cut_off_at_the_deadline() -> None:
    # The 200 arrived, so the delivery counts; the body is diagnostics only.
    prefix = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nok"
    with receiver_running(trickle(prefix)) as receiver:
        started = time.monotonic()
        result = send(receiver.url(), connect_timeout=0.5, read_timeout=0.5)
        took = time.monotonic() - started
    assert result.ok
    assert result.response_body.startswith(b"ok")
    assert took < 1.0 + 1.0


def test_a_closed_port_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = send(f"http://127.0.0.1:{port}/hook/s3cr3t-path-token")
    assert (result.ok, result.status_code) == (False, None)
    assert result.error is not None
    assert result.error.startswith("connect failed: ")
    assert "s3cr3t-path-token" not in result.error
    assert SECRET not in result.error


# -- addresses at send time -------------------------------------------------------


def test_a_private_address_is_refused_unless_allowed() -> None:
    with receiver_running(answer(200)) as receiver:
        refused = send(receiver.url(), allow_private=False)
        assert receiver.received == []
        allowed = send(receiver.url(), allow_private=True)
    assert (refused.ok, refused.status_code) == (False, None)
    assert refused.error is not None
    assert "127.0.0.1 is a loopback address" in refused.error
    assert "AUTOMATION_NOTIFY_ALLOW_PRIVATE=true" in refused.error
    assert allowed.ok
    assert len(receiver.received) == 1


def test_dns_rebinding_to_loopback_is_refused_at_send_time(
    dns: FakeDns,
) -> None:
    dns.answers["hooks.example"] = [["93.184.215.14"], ["127.0.0.1"]]
    with receiver_running(answer(200)) as receiver:
        url = receiver.url(host="hooks.example")
        assert check_url(url, allow_private=False) == url  # public when the channel was made
        result = send(url, allow_private=False)
    assert not result.ok
    assert result.error is not None
    assert "hooks.example resolves to 127.0.0.1, which is a loopback address" in result.error
    assert receiver.received == []


def test_the_connection_goes_to_the_vetted_address_with_the_original_host(
    dns: FakeDns,
) -> None:
    # The second answer would be used if anything resolved the name again.
    dns.answers["receiver.test"] = [["127.0.0.1"], ["192.0.2.1"]]
    with receiver_running(answer(200)) as receiver:
        result = send(receiver.url(host="receiver.test"))
    assert result.ok
    assert dns.lookups["receiver.test"] == 1
    [got] = receiver.received
    assert got.headers["Host"] == f"receiver.test:{receiver.port}"


def test_the_next_vetted_address_is_tried_when_one_refuses(
    dns: FakeDns,
) -> None:
    # 127.0.0.2 is loopback too, but nothing listens there on this port.
    dns.answers["receiver.test"] = [["127.0.0.2", "127.0.0.1"]]
    with receiver_running(answer(200)) as receiver:
        result = send(receiver.url(host="receiver.test"))
    assert result.ok
    assert len(receiver.received) == 1


def test_a_name_that_stopped_resolving_is_a_failed_delivery(
    dns: FakeDns,
) -> None:
    dns.answers["gone.example"] = [[]]
    result = send("https://gone.example/hook")
    assert (result.ok, result.status_code) == (False, None)
    assert result.error is not None
    assert "gone.example does not resolve" in result.error


def test_a_malformed_url_is_a_failed_delivery_not_an_exception() -> None:
    result = send("ftp://127.0.0.1/hook")
    assert not result.ok
    assert result.error is not None
    assert "only http:// and https://" in result.error


# -- TLS: SNI and certificate checked against the name, not the IP ------------------


@dataclass(frozen=True)
class Pki:
    client: ssl.SSLContext
    server: ssl.SSLContext


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A private CA and a certificate for receiver.test (and only that name)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "receiver.test")])
    leaf = (
        _builder(name, ca_name, key.public_key(), now)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("receiver.test")]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return Pki(client=client, server=server)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: Any, now: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(random.getrandbits(64))
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )


def test_https_sends_sni_and_verifies_the_certificate_for_the_name(dns: FakeDns, pki: Pki) -> None:
    dns.answers["receiver.test"] = [["127.0.0.1"]]
    with receiver_running(answer(200), tls=pki.server) as receiver:
        result = send(receiver.url(host="receiver.test", scheme="https"), ssl_context=pki.client)
    assert result.ok, result.error
    assert receiver.sni == ["receiver.test"]
    [got] = receiver.received
    assert got.headers["Host"] == f"receiver.test:{receiver.port}"
    assert got.body == BODY


def test_https_refuses_a_certificate_for_another_name(dns: FakeDns, pki: Pki) -> None:
    dns.answers["other.test"] = [["127.0.0.1"]]
    with receiver_running(answer(200), tls=pki.server) as receiver:
        result = send(receiver.url(host="other.test", scheme="https"), ssl_context=pki.client)
    assert not result.ok
    assert result.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert receiver.received == []


def test_https_to_an_ip_literal_checks_the_certificate_against_the_ip(pki: Pki) -> None:
    # The certificate names receiver.test, not 127.0.0.1: refused.
    with receiver_running(answer(200), tls=pki.server) as receiver:
        result = send(receiver.url(scheme="https"), ssl_context=pki.client)
    assert not result.ok
    assert receiver.received == []


# -- signing and backoff ---------------------------------------------------------


def test_sign_is_the_hex_hmac_sha256_of_the_body() -> None:
    signature = sign(b"{}", "k")
    assert signature == "sha256=" + hmac.new(b"k", b"{}", hashlib.sha256).hexdigest()
    assert len(signature) == len("sha256=") + 64


def test_backoff_doubles_from_10_s_up_to_an_hour() -> None:
    waits = [backoff_seconds(attempt) for attempt in range(1, 13)]
    assert waits == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]
    assert backoff_seconds(10**9) == 3600
    with pytest.raises(ValueError):
        backoff_seconds(0)


def _attempts_within(window_s: float, wait: Callable[[int], float]) -> int:
    started, attempts = 0.0, 1
    while started + wait(attempts) <= window_s:
        started += wait(attempts)
        attempts += 1
    return attempts


def test_32_attempts_start_within_the_24_hours() -> None:
    assert dt.timedelta(hours=24) == GIVE_UP_AFTER
    assert _attempts_within(GIVE_UP_AFTER.total_seconds(), backoff_seconds) == 32


def test_jitter_stays_between_half_and_all_of_the_wait() -> None:
    rng = random.Random(7)
    for attempt in range(1, 40):
        full = backoff_seconds(attempt)
        jittered = backoff_seconds(attempt, jitter=True, rng=rng)
        assert full / 2 <= jittered <= full <= 3600
    smallest = _attempts_within(86400, lambda attempt: backoff_seconds(attempt) / 2)
    assert smallest == 56


def test_send_result_ok_means_a_2xx_and_no_error() -> None:
    assert SendResult(200, None, 5).ok
    assert SendResult(299, None, 5).ok
    assert not SendResult(302, "redirect not followed", 5).ok
    assert not SendResult(None, "timed out", 5).ok
    assert not SendResult(500, None, 5).ok
