"""One outbound notification POST, safe against slow, hostile or moved receivers.

How a send connects (httpx 0.28 / httpcore 1.0): the URL's host is resolved
and vetted by `addresses.resolve_safe` at send time, and the connection goes
only to those vetted addresses. httpx's `HTTPTransport` cannot be told where to
connect nor given a total deadline, so the request goes through an httpcore
`ConnectionPool` (the engine under `HTTPTransport`) with a custom network
backend: its `connect_tcp` ignores name resolution and dials the vetted IPs, and
every socket operation's timeout is clamped to what is left of the total
deadline. The URL keeps its host name, so httpcore sends the original Host
header, uses the name for TLS SNI, and the certificate is verified against
the name - exactly as if it had resolved the name itself.

(The other mechanism, an IP in the URL plus a `Host` header and the
`sni_hostname` request extension, pins the address too but cannot enforce a
total deadline: a receiver trickling one byte per read timeout holds it.)
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import random
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpcore
import httpx

from automation_server.notifications.addresses import UnsafeUrl, parse_url, resolve_safe

MAX_RESPONSE_BYTES = 64 * 1024
MAX_ERROR_CHARS = 300
GIVE_UP_AFTER = timedelta(hours=24)
FIRST_DELAY_S = 10.0
MAX_DELAY_S = 3600.0
_JITTER = random.Random()  # noqa: S311 - spreads retries, guards no secret


@dataclass(frozen=True)
class SendResult:
    """What one delivery attempt did; `ok` is a 2xx answer (an error text otherwise)."""

    status_code: int | None
    error: str | None
    elapsed_ms: int
    response_body: bytes = b""  # at most MAX_RESPONSE_BYTES, for diagnostics only
    ok: bool = field(init=False)

    def __post_init__(self) -> None:
        code = self.status_code
        object.__setattr__(self, "ok", self.error is None and code is not None and code // 100 == 2)


def sign(body: bytes, secret: str) -> str:
    """The X-Signature-256 value: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_seconds(
    attempt: int, *, jitter: bool = False, rng: random.Random | None = None
) -> float:
    """Seconds to wait after the `attempt`-th failed attempt (1 = the first) before the next.

    Exponential from 10 s, doubling, capped at 1 h: 10, 20, 40, 80, 160, 320,
    640, 1280, 2560, then 3600 s. The first nine waits add up to 5110 s (about
    1 h 25 min); 22 hourly waits follow inside GIVE_UP_AFTER (24 h = 86400 s),
    so a delivery that always fails starts 32 attempts in its first 24 h (the
    first and 31 retries, the last 84310 s = 23 h 25 min after the first). A
    caller that gives up when the next attempt would start after
    GIVE_UP_AFTER makes exactly those 32; one that only asks "have 24 h
    passed?" after a failure makes a 33rd at 87910 s.

    With `jitter` each wait is drawn uniformly from [half, all] of that value
    (never above the cap), so receivers recovering from an outage are not hit
    by every sender at once; that fits at most 56 attempts in 24 h.
    """
    if attempt < 1:
        raise ValueError("attempt counts failed attempts and starts at 1")
    # Clamp the exponent: past 2**9 the cap applies anyway, and a huge
    # attempt number must not build a huge integer.
    delay = min(MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** min(attempt - 1, 16))
    if jitter:
        delay *= (rng or _JITTER).uniform(0.5, 1.0)
    return delay


def post_json(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    allow_private: bool,
    connect_timeout: float = 5.0,
    read_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
) -> SendResult:
    """POST `body` to `url` once; never raises for network errors, never follows redirects.

    The whole attempt (connect, TLS, send, answer) ends by connect_timeout +
    read_timeout. Name resolution counts against it but cannot be cut short:
    the system resolver's own timeouts bound it. `ssl_context` replaces the
    default trust store (certifi, as httpx uses) for receivers with a private CA.
    """
    started = time.monotonic()
    deadline = started + connect_timeout + read_timeout
    try:
        status, content = _send(
            url, body, headers, allow_private, deadline, connect_timeout, read_timeout, ssl_context
        )
    except UnsafeUrl as exc:
        return _result(started, None, str(exc))
    except httpcore.TimeoutException as exc:
        return _result(started, None, _timeout_text(exc, deadline, connect_timeout, read_timeout))
    except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
        return _result(started, None, _error_text(exc))
    return _result(started, status, _status_error(status), content)


def _send(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    allow_private: bool,
    deadline: float,
    connect_timeout: float,
    read_timeout: float,
    ssl_context: ssl.SSLContext | None,
) -> tuple[int, bytes]:
    target = parse_url(url)
    addresses = resolve_safe(target.host, target.port, allow_private=allow_private)
    parsed = httpx.URL(url)
    backend = _PinnedBackend(target.host, addresses, deadline)
    request_url = httpcore.URL(
        scheme=target.scheme.encode(),
        host=parsed.raw_host,
        port=target.port,
        target=parsed.raw_path,
    )
    timeouts = {
        "connect": connect_timeout,
        "read": read_timeout,
        "write": read_timeout,
        "pool": connect_timeout,
    }
    with (
        httpcore.ConnectionPool(
            ssl_context=ssl_context or _default_ssl_context(),
            max_connections=1,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        ) as pool,
        pool.stream(
            "POST",
            request_url,
            headers=_request_headers(parsed, headers),
            content=body,
            extensions={"timeout": timeouts},
        ) as response,
    ):
        return response.status, _read_capped(response.iter_stream(), deadline)


def _request_headers(parsed: httpx.URL, headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    # httpx's netloc brackets an IPv6 literal and omits a default port, as a
    # Host header must; httpcore's own default does neither for IPv6.
    merged = {"Host": parsed.netloc.decode("ascii"), "Content-Type": "application/json"}
    lowered = {name.lower(): name for name in merged}
    for name, value in headers.items():
        merged.pop(lowered.get(name.lower(), name), None)
        merged[name] = value
    return [(name.encode("ascii"), value.encode("latin-1")) for name, value in merged.items()]


def _read_capped(chunks: Iterable[bytes], deadline: float) -> bytes:
    """Read up to MAX_RESPONSE_BYTES of the answer; stop early at the cap or the deadline.

    The status line has arrived by now, so it decides the outcome: an answer
    whose body is long or slow is still the receiver's answer.
    """
    content = bytearray()
    try:
        for chunk in chunks:
            content += chunk
            if len(content) >= MAX_RESPONSE_BYTES or time.monotonic() >= deadline:
                break
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError):
        pass  # a body cut short or too slow does not change the status received
    return bytes(content[:MAX_RESPONSE_BYTES])


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    # Built once: loading the CA bundle costs milliseconds per send otherwise.
    return httpx.create_ssl_context()


class _PinnedBackend(httpcore.NetworkBackend):
    """Dials only the vetted addresses, and never past the deadline."""

    def __init__(self, host: str, addresses: list[str], deadline: float) -> None:
        self._host = host
        self._addresses = addresses
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if host.lower() != self._host.lower():  # only the vetted host, never another
            raise httpcore.ConnectError(f"refusing to connect to unvetted host {host}")
        last: Exception = httpcore.ConnectError("no address to connect to")
        for address in self._addresses:  # in resolver order, like a normal connect
            budget = _clamp(timeout, self._deadline, httpcore.ConnectTimeout)
            try:
                stream = self._inner.connect_tcp(
                    address, port, budget, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise last

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("notifications never use unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    """Clamps every read, write and TLS handshake to the time left before the deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, self._deadline, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, self._deadline, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        budget = _clamp(timeout, self._deadline, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, budget), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _clamp(timeout: float | None, deadline: float, expired: type[Exception]) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("total deadline exceeded")
    return left if timeout is None else min(timeout, left)


def _status_error(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return "redirect not followed"
    return f"receiver answered HTTP {status}"


def _timeout_text(
    exc: Exception, deadline: float, connect_timeout: float, read_timeout: float
) -> str:
    total = connect_timeout + read_timeout
    if time.monotonic() >= deadline - 0.01:
        return f"no complete answer within the total deadline of {total:g} s"
    if isinstance(exc, httpcore.ConnectTimeout):
        return f"connect timed out after {connect_timeout:g} s"
    return f"receiver did not answer within the read timeout of {read_timeout:g} s"


def _error_text(exc: Exception) -> str:
    # Exception texts name the host or the OS error, never the URL's path or
    # query (where some receivers keep a token), nor the signing secret.
    text = str(exc) or type(exc).__name__
    kind = "connect failed" if isinstance(exc, httpcore.ConnectError) else type(exc).__name__
    return f"{kind}: {text}"[:MAX_ERROR_CHARS]


def _result(
    started: float, status: int | None, error: str | None, content: bytes = b""
) -> SendResult:
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return SendResult(status, error, elapsed_ms, content)
