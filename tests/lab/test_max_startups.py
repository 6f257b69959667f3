"""sshd's MaxStartups in the lab: past `start` unauthenticated connections a device closes new ones before
its banner, as OpenSSH does, and takes them again once the pending ones authenticate or go.

The knob is set so that the draw is certain (`2:100:3` drops every connection once 2 are pending), which
keeps these tests deterministic; the default's random band (10 to 100 pending) is checked as arithmetic.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import paramiko
import pytest

from sftlab.fleet.spec import StartupLimits
from tests.lab.client import Target, open_client
from tests.lab.fixtures import MakeLab, RunningLab

GONE_S = 10.0


def raw(target: Target) -> socket.socket:
    """A TCP connection to the device's SSH port; it never says a word, so it stays unauthenticated."""
    return socket.create_connection((target.host, target.port), timeout=5)


def banner(sock: socket.socket) -> bytes:
    """The first line the server sends; b"" when it closed the connection before sending one."""
    seen = b""
    with contextlib.suppress(ConnectionResetError):
        while not seen.endswith(b"\n") and (data := sock.recv(256)):
            seen += data
    return seen


@contextlib.contextmanager
def pending(target: Target, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that read the banner and then wait, unauthenticated."""
    socks = [raw(target) for _ in range(count)]
    try:
        for sock in socks:
            assert banner(sock).startswith(b"SSH-2.0-")
        yield socks
    finally:
        for sock in socks:
            sock.close()


def wait_unauthenticated(lab: RunningLab, name: str, count: int) -> None:
    """Until the device counts `count` unauthenticated connections (a client's close reaches it later)."""
    deadline = time.monotonic() + GONE_S
    while lab.fleet.devices[name].endpoint.unauthenticated != count:
        assert time.monotonic() < deadline, f"{name} still counts unauthenticated connections"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("limits", "percents"),
    [
        # OpenSSH's default: nothing below 10, 30 % at 10, rising to 100 % at 100 (integer arithmetic).
        ("10:30:100", {0: 0, 9: 0, 10: 30, 11: 30, 55: 65, 99: 99, 100: 100, 500: 100}),
        ("2:100:3", {1: 0, 2: 100, 3: 100}),
        ("4:50:4", {3: 0, 4: 100}),
    ],
)
def test_drop_chance_is_sshds(limits: str, percents: dict[int, int]) -> None:
    parsed = StartupLimits.parse(limits)
    assert {n: parsed.drop_percent(n) for n in percents} == percents


@pytest.mark.lab
def test_past_max_startups_a_connection_is_closed_before_the_banner(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1, devices={"jump-1": {"max_startups": "2:100:3"}})
    target = lab.target("jump-1")
    with pending(target, 2):
        with raw(target) as third:
            assert banner(third) == b""
        # What a client library sees: the connection closed during the banner exchange.
        with pytest.raises(paramiko.SSHException, match="Error reading SSH protocol banner"):
            open_client(target, lab.known_hosts)
        assert lab.startups_dropped("jump-1") == 2
    wait_unauthenticated(lab, "jump-1", 0)
    open_client(target, lab.known_hosts).close()
    # The dropped ones were never counted: two pending are allowed again.
    with pending(target, 2), raw(target) as third:
        assert banner(third) == b""


@pytest.mark.lab
def test_authenticated_connections_free_their_place(make_lab: MakeLab) -> None:
    """Only connections still logging in count: once the pending ones authenticate (and stay open), new
    connections are taken again."""
    lab = make_lab(ftds=1, devices={"ftd-001": {"max_startups": "2:100:3"}})
    target = lab.target("ftd-001")
    transports = []
    for _ in range(2):
        transport = paramiko.Transport(raw(target))
        transport.start_client(timeout=5)  # key exchange done, not yet authenticated
        transports.append(transport)
    try:
        with raw(target) as third:
            assert banner(third) == b""
        for transport in transports:
            transport.auth_password(target.username, target.password)
        with pending(target, 2), raw(target) as fifth:
            assert banner(fifth) == b""  # the two logged-in ones do not count, the two new ones do
    finally:
        for transport in transports:
            transport.close()
    assert lab.startups_dropped("ftd-001") == 2


@pytest.mark.lab
def test_the_default_takes_ten_pending_connections(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1)
    assert lab.fleet.devices["jump-1"].knobs.max_startups == "10:30:100"
    with pending(lab.target("jump-1"), 10):
        wait_unauthenticated(lab, "jump-1", 10)
    assert lab.startups_dropped("jump-1") == 0


@pytest.mark.lab
def test_the_knob_changes_while_the_lab_runs(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1)
    target = lab.target("jump-1")
    lab.set_knobs("jump-1", max_startups="1:100:1")
    with pending(target, 1), raw(target) as second:
        assert banner(second) == b""
    with pytest.raises(ValueError, match="max_startups"):
        lab.set_knobs("jump-1", max_startups="1:100")
