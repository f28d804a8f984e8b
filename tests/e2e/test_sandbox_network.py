"""Network modes: none (loopback only), egress (slirp4netns, no host loopback), host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.sandbox_support import (
    bwrap_executor,
    host_address,
    make_spec,
    run,
    tcp_listener,
    unavailable,
)

CONNECT = """
import json, socket

def connect(host, port):
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            return "connected: " + conn.recv(16).decode()
    except OSError as exc:
        return "refused: " + type(exc).__name__

interfaces = [line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]]
try:
    resolv = open("/etc/resolv.conf").read()
except OSError:
    resolv = None
results = {"interfaces": sorted(interfaces), "resolv": resolv}
"""


def _probe(tmp_path: Path, network: str, targets: dict[str, tuple[str, int]]) -> dict[str, object]:
    body = CONNECT + "".join(
        f"results[{name!r}] = connect({host!r}, {port})\n" for name, (host, port) in targets.items()
    )
    body += "print(json.dumps(results))\n"
    spec = make_spec(tmp_path, {"main.py": body}, network=network)
    outcome = run(bwrap_executor(), spec)
    assert outcome.status == "succeeded", outcome.log
    result: dict[str, object] = json.loads(outcome.log)
    return result


def test_network_none_has_only_loopback_and_cannot_reach_the_host(tmp_path: Path) -> None:
    with tcp_listener("127.0.0.1") as port:
        targets = {"host_loopback": ("127.0.0.1", port)}
        address = host_address()
        if address:
            targets["host_address"] = (address, 9)
        results = _probe(tmp_path, "none", targets)
    assert results["interfaces"] == ["lo"]
    assert str(results["host_loopback"]).startswith("refused")
    if address:
        assert str(results["host_address"]).startswith("refused")


def test_egress_reaches_out_but_not_the_host_loopback(tmp_path: Path) -> None:
    executor = bwrap_executor()
    if executor.slirp is None:
        unavailable("slirp4netns is not installed")
    address = host_address()
    with tcp_listener("127.0.0.1") as loop_port:
        targets = {
            "host_loopback": ("127.0.0.1", loop_port),
            "host_loopback_via_gateway": ("10.0.2.2", loop_port),
        }
        if address is None:
            results = _probe(tmp_path, "egress", targets)
        else:
            # A service on another address of the host stands in for "the internet".
            with tcp_listener(address) as out_port:
                targets["outside"] = (address, out_port)
                results = _probe(tmp_path, "egress", targets)
    assert results["interfaces"] == ["lo", "tap0"]
    assert results["resolv"] == "nameserver 10.0.2.3\n"
    assert str(results["host_loopback"]).startswith("refused")
    assert str(results["host_loopback_via_gateway"]).startswith("refused")
    if address is not None:
        assert results["outside"] == "connected: hello"


def test_egress_leaves_no_slirp4netns_behind(tmp_path: Path) -> None:
    executor = bwrap_executor()
    if executor.slirp is None:
        unavailable("slirp4netns is not installed")
    before = _slirps()
    spec = make_spec(tmp_path, {"main.py": "print('ok')\n"}, network="egress")
    assert run(executor, spec).status == "succeeded"
    assert _slirps() <= before


def _slirps() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "slirp4netns":
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("network", ["host"])
def test_host_network_reaches_the_host_loopback(tmp_path: Path, network: str) -> None:
    with tcp_listener("127.0.0.1") as port:
        results = _probe(tmp_path, network, {"host_loopback": ("127.0.0.1", port)})
    assert results["host_loopback"] == "connected: hello"
