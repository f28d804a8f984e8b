"""Which notification URLs are refused (section 9.5): shapes, addresses, resolved names.

No network: literals are judged as they are, names go through a fake getaddrinfo.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import pytest

from automation_server.notifications.addresses import (
    UnsafeUrl,
    check_url,
    forbidden_reason,
    parse_url,
    resolve_safe,
)


def fake_getaddrinfo(table: dict[str, list[str]]) -> Callable[..., list[Any]]:
    """A getaddrinfo answering from `table`; unknown names do not resolve."""

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answers: list[Any] = []
        for ip in table[host]:
            if ":" in ip:
                answers.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0)))
            else:
                answers.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)))
        return answers

    return getaddrinfo


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo(table))
    return table


FORBIDDEN = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("[::1]", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("[::]", "unspecified"),
    ("169.254.169.254", "link-local"),
    ("[fe80::1]", "link-local"),
    ("[fe80::1%25eth0]", "link-local"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "shared"),
    ("100.127.255.254", "shared"),
    ("[fc00::1]", "private"),
    ("[fd12:3456::1]", "private"),
    ("[fec0::1]", "site-local"),
    ("224.0.0.1", "multicast"),
    ("[ff02::1]", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.1", "private"),  # documentation range (TEST-NET-1)
    ("198.18.0.1", "private"),  # benchmarking
    ("[::ffff:127.0.0.1]", "IPv4-mapped form of 127.0.0.1, a loopback"),
    ("[::ffff:169.254.169.254]", "IPv4-mapped form of 169.254.169.254, a link-local"),
    ("[::ffff:10.0.0.1]", "IPv4-mapped form of 10.0.0.1, a private"),
    ("[2002:7f00:1::1]", "6to4 form of 127.0.0.1, a loopback"),
    ("[2002:a9fe:a9fe::1]", "6to4 form of 169.254.169.254"),
    ("[64:ff9b::7f00:1]", "NAT64 form of 127.0.0.1, a loopback"),
    ("[64:ff9b::a00:1]", "NAT64 form of 10.0.0.1, a private"),
    ("[64:ff9b:1::1]", "local-use NAT64"),
    ("[::127.0.0.1]", "reserved"),  # deprecated IPv4-compatible form
    ("[2001:db8::1]", "private"),  # documentation
]


@pytest.mark.parametrize(("host", "reason"), FORBIDDEN)
def test_a_forbidden_literal_address_is_refused(host: str, reason: str) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        check_url(f"https://{host}/hook", allow_private=False)
    assert caught.value.code == "private_address"
    message = str(caught.value)
    assert reason in message
    assert "AUTOMATION_NOTIFY_ALLOW_PRIVATE=true" in message


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.215.14/hook",
        "http://8.8.8.8:8080/x?y=1",
        "https://[2606:4700::1]/hook",
        "https://[::ffff:93.184.215.14]/hook",  # mapped, but the IPv4 address is public
        "https://[2002:5db8:d70e::1]/hook",  # 6to4 of 93.184.215.14
        "https://[64:ff9b::5db8:d70e]/hook",  # NAT64 of 93.184.215.14
    ],
)
def test_a_public_literal_is_accepted_unchanged(url: str) -> None:
    assert check_url(url, allow_private=False) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://[::1]/x",
        "http://169.254.169.254/",
        "http://10.0.0.1/",
    ],
)
def test_the_operator_may_allow_private_addresses(url: str) -> None:
    assert check_url(url, allow_private=True) == url
    with pytest.raises(UnsafeUrl):
        check_url(url, allow_private=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", "224.0.0.1", "[::ffff:0.0.0.0]"])
def test_addresses_that_name_no_receiver_stay_refused_when_private_is_allowed(host: str) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        check_url(f"http://{host}/", allow_private=True)
    assert caught.value.code == "private_address"


def test_the_message_says_what_a_name_resolves_to(dns: dict[str, list[str]]) -> None:
    dns["internal.example"] = ["127.0.0.1"]
    with pytest.raises(UnsafeUrl) as caught:
        check_url("https://internal.example/hook", allow_private=False)
    assert str(caught.value) == (
        "internal.example resolves to 127.0.0.1, which is a loopback address; notification URLs"
        " must be public, or the operator sets AUTOMATION_NOTIFY_ALLOW_PRIVATE=true"
    )


def test_one_private_address_among_public_ones_refuses_the_name(
    dns: dict[str, list[str]],
) -> None:
    dns["mixed.example"] = ["93.184.215.14", "10.0.0.5"]
    with pytest.raises(UnsafeUrl) as caught:
        check_url("https://mixed.example/hook", allow_private=False)
    assert caught.value.code == "private_address"
    assert "10.0.0.5" in str(caught.value)


def test_a_private_ipv6_answer_refuses_the_name(dns: dict[str, list[str]]) -> None:
    dns["v6.example"] = ["93.184.215.14", "::ffff:127.0.0.1"]
    with pytest.raises(UnsafeUrl, match=r"IPv4-mapped form of 127\.0\.0\.1"):
        check_url("https://v6.example/hook", allow_private=False)


def test_a_public_name_is_accepted_and_resolve_safe_returns_every_address(
    dns: dict[str, list[str]],
) -> None:
    dns["hooks.example"] = ["93.184.215.14", "2606:4700::1", "93.184.215.14"]
    assert check_url("https://hooks.example/in", allow_private=False) == "https://hooks.example/in"
    assert resolve_safe("hooks.example", 443, allow_private=False) == [
        "93.184.215.14",
        "2606:4700::1",
    ]


def test_resolve_safe_vets_a_literal_without_resolving(dns: dict[str, list[str]]) -> None:
    assert resolve_safe("93.184.215.14", 80, allow_private=False) == ["93.184.215.14"]
    assert resolve_safe("[2606:4700::1]", 443, allow_private=False) == ["2606:4700::1"]
    assert resolve_safe("127.0.0.1", 80, allow_private=True) == ["127.0.0.1"]
    with pytest.raises(UnsafeUrl):
        resolve_safe("::1", 80, allow_private=False)


def test_a_name_that_does_not_resolve(dns: dict[str, list[str]]) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        check_url("https://nowhere.example/hook", allow_private=False)
    assert caught.value.code == "invalid_url"
    assert "nowhere.example does not resolve" in str(caught.value)
    url = "https://nowhere.example/hook"
    assert check_url(url, allow_private=False, require_resolvable=False) == url


def test_an_unresolvable_name_that_later_resolves_privately_is_still_refused(
    dns: dict[str, list[str]],
) -> None:
    # require_resolvable=False only waives the missing answer, never a bad one.
    dns["later.example"] = ["192.168.0.7"]
    with pytest.raises(UnsafeUrl):
        check_url("https://later.example/", allow_private=False, require_resolvable=False)


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0x7f.1"])
def test_numeric_spellings_of_loopback_are_refused(host: str) -> None:
    # The real resolver reads these as IPv4 numbers without any network.
    with pytest.raises(UnsafeUrl) as caught:
        check_url(f"http://{host}/", allow_private=False)
    assert caught.value.code == "private_address"
    assert "127.0.0.1" in str(caught.value)


def test_localhost_is_refused() -> None:
    with pytest.raises(UnsafeUrl, match="loopback"):
        check_url("http://localhost:8080/hook", allow_private=False)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ftp://93.184.215.14/x", "only http:// and https://"),
        ("file:///etc/passwd", "only http:// and https://"),
        ("gopher://93.184.215.14/", "only http:// and https://"),
        ("javascript:alert(1)", "only http:// and https://"),
        ("93.184.215.14/hook", "only http:// and https://"),
        ("https:///hook", "no host"),
        ("https://", "no host"),
        ("https://user:pw@93.184.215.14/hook", "user name and password"),
        ("https://token@93.184.215.14/hook", "user name and password"),
        ("https://@93.184.215.14/hook", "user name and password"),
        ("https://93.184.215.14:0/", "out of range"),
        ("https://93.184.215.14:70000/", "out of range"),
        ("https://93.184.215.14/a b", "spaces"),
        ("https://93.184.215.14/\nHost: x", "control characters"),
        ("https://93.184.215.14\\@127.0.0.1/", "backslashes"),
        ("", "empty"),
        ("https://93.184.215.14/" + "a" * 3000, "longer than"),
        ("https://[::1/", "cannot be parsed"),
        ("http://0177.0.0.1/", "cannot be parsed"),  # httpx refuses octal IPv4
    ],
)
def test_a_malformed_url_is_refused_with_a_hint(url: str, needle: str) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        check_url(url, allow_private=True)
    assert caught.value.code == "invalid_url"
    assert needle in str(caught.value)


def test_the_url_is_returned_unchanged() -> None:
    url = "HTTPS://93.184.215.14:8443/Hook/Path?Token=abc&x=%20#frag"
    assert check_url(url, allow_private=False) == url


def test_parse_url_gives_the_host_the_sender_connects_to() -> None:
    assert parse_url("https://Hooks.Example.com./in").host == "hooks.example.com."
    assert parse_url("https://bücher.example/").host == "xn--bcher-kva.example"
    assert parse_url("http://[2606:4700::1]:8080/").host == "2606:4700::1"
    assert parse_url("http://h.example/").port == 80
    assert parse_url("https://h.example/").port == 443
    assert parse_url("https://h.example:8443/").port == 8443


def test_every_ipv4_special_range_is_refused() -> None:
    # Belt and braces: a sample of every IANA special-purpose IPv4 block.
    for block in ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16"]:
        network = ipaddress.ip_network(block)
        for address in (network[1], network[-2]):
            assert forbidden_reason(address, allow_private=False) is not None, address
    assert forbidden_reason(ipaddress.ip_address("93.184.215.14"), allow_private=False) is None
