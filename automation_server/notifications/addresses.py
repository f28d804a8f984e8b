"""Which notification URLs the server may POST to (section 9.5).

A channel URL is checked twice: when the channel is created (`check_url`) and
again at every delivery (`resolve_safe`), because a name's addresses can change
in between (DNS rebinding). The sender then connects only to the addresses the
second check returned, never re-resolving the name.

The URL is parsed with `httpx.URL`, the parser the sender uses, so the host
checked here is the host the sender connects to (no parser differential).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import httpx

ALLOW_PRIVATE_HINT = (
    "notification URLs must be public, or the operator sets AUTOMATION_NOTIFY_ALLOW_PRIVATE=true"
)
MAX_URL_LENGTH = 2048
_SCHEMES = {"http": 80, "https": 443}
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598, carrier-grade NAT
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: embeds an IPv4 address
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: operator-local translation

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(ValueError):
    """A notification URL the server refuses; `code` is "invalid_url" or "private_address"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    """Where a URL points: scheme, host (ASCII, IDNA-encoded, no brackets) and port."""

    scheme: str
    host: str
    port: int


def parse_url(url: str) -> Target:
    """Check a URL's shape and return its target; raises UnsafeUrl("invalid_url")."""
    _check_characters(url)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise _invalid(f"the URL cannot be parsed ({exc})") from exc
    scheme = parsed.scheme.lower()
    if scheme not in _SCHEMES:
        raise _invalid("only http:// and https:// URLs are accepted")
    if not parsed.raw_host:
        raise _invalid("the URL has no host; give a full URL such as https://example.com/hook")
    # "@" in the authority is userinfo even when httpx would drop an empty one.
    if parsed.userinfo or "@" in url.split("//", 1)[-1].split("/", 1)[0]:
        raise _invalid(
            "remove the user name and password from the URL; receivers authenticate "
            "deliveries by their X-Signature-256 header, so no secret belongs in the URL"
        )
    port = _SCHEMES[scheme] if parsed.port is None else parsed.port
    if not 1 <= port <= 65535:
        raise _invalid(f"port {port} is out of range (1-65535)")
    return Target(scheme, parsed.raw_host.decode("ascii"), port)


def _check_characters(url: str) -> None:
    if not url:
        raise _invalid("the URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"the URL is longer than {MAX_URL_LENGTH} characters")
    # Parsers disagree about backslashes, spaces and control characters (some
    # strip them, browsers turn "\" into "/"), so refuse rather than guess.
    if any(ch <= " " or ch == "\x7f" or ch == "\\" for ch in url):
        raise _invalid("the URL contains spaces, control characters or backslashes")


def check_url(url: str, *, allow_private: bool, require_resolvable: bool = True) -> str:
    """Vet a channel URL at creation and return it unchanged; raises UnsafeUrl.

    A literal IP is checked as is; a name is resolved and refused if any of its
    addresses is forbidden. With `require_resolvable=False` a name that does not
    resolve yet is accepted (delivery checks it again anyway).
    """
    target = parse_url(url)
    try:
        resolve_safe(target.host, target.port, allow_private=allow_private)
    except UnresolvableHost:
        if require_resolvable:
            raise
    return url


class UnresolvableHost(UnsafeUrl):
    """The host name has no address (code "invalid_url")."""


def resolve_safe(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Return the host's addresses, all vetted, for the sender to connect to.

    Raises UnresolvableHost when the name has no address and
    UnsafeUrl("private_address") when any address is forbidden: one bad
    address refuses the host, since the connection could go to any of them.
    """
    literal = _literal_ip(host)
    addresses = [literal] if literal is not None else _resolve(host, port)
    for address in addresses:
        reason = forbidden_reason(address, allow_private=allow_private)
        if reason is not None:
            shown = host if literal is not None else f"{host} resolves to {address}, which"
            raise UnsafeUrl("private_address", f"{shown} is {reason}; {ALLOW_PRIVATE_HINT}")
    return [str(address) for address in addresses]


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnresolvableHost(
            "invalid_url", f"{host} does not resolve ({exc}); check the host name"
        ) from exc
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnresolvableHost("invalid_url", f"{host} has no IPv4 or IPv6 address")
    return addresses


def forbidden_reason(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why the server must not connect to `address` ("a loopback address"...), or None.

    IPv6 forms that embed an IPv4 address (IPv4-mapped, 6to4, NAT64) are judged
    by the IPv4 address they reach. With `allow_private` only addresses that
    can never name a receiver (unspecified, multicast) are refused.
    """
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        kind, inner = embedded
        reason = forbidden_reason(inner, allow_private=allow_private)
        return None if reason is None else f"{kind} form of {inner}, {reason}"
    if address.is_unspecified:
        return "the unspecified address, which names no receiver"
    if address.is_multicast:
        return "a multicast address"
    if allow_private:
        return None
    return _private_reason(address)


def _private_reason(address: IPAddress) -> str | None:
    checks: list[tuple[bool, str]] = [
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address (cloud metadata services live here)"),
        (
            isinstance(address, ipaddress.IPv6Address) and address.is_site_local,
            "a site-local address",
        ),
        (address in _SHARED_ADDRESS_SPACE, "a shared (carrier-grade NAT) address"),
        (address in _NAT64_LOCAL_USE, "a local-use NAT64 address"),
        # Reserved before private: 240.0.0.0/4 is both, and "reserved" says more.
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        # The catch-all: ipaddress knows every special-purpose range (IANA registry).
        (not address.is_global, "not a public address"),
    ]
    return next((reason for hit, reason in checks if hit), None)


def _embedded_ipv4(address: IPAddress) -> tuple[str, ipaddress.IPv4Address] | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return "an IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "a 6to4", address.sixtofour
    if address in _NAT64_WELL_KNOWN:
        return "a NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _invalid(message: str) -> UnsafeUrl:
    return UnsafeUrl("invalid_url", message)
