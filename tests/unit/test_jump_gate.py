"""`JumpGate`: a jump server that refused a login is not logged in to again through the same guarded factory;
the first login through each jump server goes alone. `connect` stands in for `FabricSession.open` (it returns
a marker object, never a session: the gate only passes it on)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest

from pipeline.devices.factory import JumpGate
from pipeline.devices.session import DeviceSession
from pipeline.errors import (
    AuthenticationFailedError,
    DeviceError,
    DeviceUnreachableError,
    HostKeyRejectedError,
)

SESSION = cast(DeviceSession, object())


class Connect:
    """Counts logins; each raises `error` (if set) after `delay` seconds; records how many ran at once."""

    def __init__(self, error: DeviceError | None = None, delay: float = 0.0) -> None:
        self.error, self.delay = error, delay
        self.calls = self.running = self.most = 0
        self._lock = threading.Lock()

    def __call__(self) -> DeviceSession:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.delay)
        with self._lock:
            self.running -= 1
        if self.error is not None:
            raise self.error
        return SESSION


@pytest.mark.parametrize(
    "refusal",
    [
        AuthenticationFailedError("jump-1", "via jump-1", "operator@jump-1"),
        HostKeyRejectedError("jump-1", "via jump-1", "/etc/known_hosts"),
    ],
)
def test_a_jump_servers_refusal_is_given_again_without_a_login(refusal: DeviceError) -> None:
    gate, connect = JumpGate(), Connect(refusal)
    for _ in range(3):
        with pytest.raises(type(refusal)) as caught:
            gate.through("jump-1", connect)
        assert caught.value.args == refusal.args
    assert connect.calls == 1
    assert gate.through("jump-2", Connect()) is SESSION  # another jump server is asked


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationFailedError(
            "ftd-001", "via jump-1", "admin@ftd-001"
        ),  # the device refused, not the jump
        DeviceUnreachableError("ftd-001", "via jump-1", "jump server jump-1: connection refused"),
    ],
)
def test_other_failures_are_not_remembered(error: DeviceError) -> None:
    gate, connect = JumpGate(), Connect(error)
    for _ in range(3):
        with pytest.raises(type(error)):
            gate.through("jump-1", connect)
    assert connect.calls == 3


def test_the_first_login_through_a_jump_server_goes_alone() -> None:
    refused = JumpGate(), Connect(AuthenticationFailedError("jump-1", "via jump-1", "operator"), delay=0.2)
    accepted = JumpGate(), Connect(delay=0.2)
    for gate, connect in (refused, accepted):

        def login(_: int, gate: JumpGate = gate, connect: Connect = connect) -> Any:
            try:
                return gate.through("jump-1", connect)
            except DeviceError as exc:
                return exc

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(login, range(6)))
    assert (refused[1].calls, refused[1].most) == (1, 1)  # one refused login, the others never tried
    assert accepted[1].calls == 6 and accepted[1].most > 1  # after the first, logins run in parallel
