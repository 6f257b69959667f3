"""Logins through a jump server: which failures are a connection the jump server dropped before its banner
(tried again), and the bound and the retries of `jump_logins.log_in`. The errors are the ones paramiko raises,
built as paramiko builds them; `attempt` stands in for the login (the lab tests do the real ones)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import paramiko
import pytest

from pipeline.devices import jump_logins
from pipeline.devices.fabric_session import closed_before_banner
from pipeline.errors import ConfigError
from pipeline.settings import load_settings


def banner_error(cause: BaseException) -> paramiko.SSHException:
    """What paramiko's `Transport._check_banner` raises when reading the banner failed with `cause`."""
    error = paramiko.SSHException("Error reading SSH protocol banner" + str(cause))
    error.__context__ = cause  # as raising it in the `except` clause that caught `cause` does
    return error


KEY, OTHER_KEY = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
REFUSED = paramiko.ssh_exception.NoValidConnectionsError({("127.0.0.1", 22): ConnectionRefusedError()})


@pytest.mark.parametrize(
    ("error", "dropped"),
    [
        (banner_error(EOFError()), True),  # closed before the banner: sshd past MaxStartups
        (banner_error(ConnectionResetError(104, "Connection reset by peer")), True),
        (EOFError(), True),  # closed while paramiko still wrote its own version
        (BrokenPipeError(32, "Broken pipe"), True),
        (banner_error(TimeoutError()), False),  # no banner in time: that wait was spent already
        (paramiko.AuthenticationException("Authentication failed."), False),
        (paramiko.BadHostKeyException("jump", KEY, OTHER_KEY), False),
        (REFUSED, False),
        (TimeoutError(), False),
        (paramiko.SSHException("No existing session"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_which_failures_are_a_drop_before_the_banner(error: BaseException, dropped: bool) -> None:
    assert closed_before_banner(error, banner_seen=False) is dropped
    assert (
        closed_before_banner(error, banner_seen=True) is False
    )  # once the banner came, it is something else


class Login:
    """Counts attempts and how many ran at once; raises `errors` in turn, then succeeds."""

    def __init__(self, *errors: Exception, delay: float = 0.0) -> None:
        self.errors = list(errors)
        self.delay = delay
        self.attempts: list[int] = []
        self.running = self.most = 0
        self._lock = threading.Lock()

    def __call__(self, attempt: int) -> None:
        with self._lock:
            self.attempts.append(attempt)
            self.running += 1
            self.most = max(self.most, self.running)
            error = self.errors.pop(0) if self.errors else None
        time.sleep(self.delay)
        with self._lock:
            self.running -= 1
        if error is not None:
            raise error


def is_eof(exc: BaseException) -> bool:
    return isinstance(exc, EOFError)


def test_a_drop_is_tried_again_after_a_pause() -> None:
    login, pauses = Login(EOFError(), EOFError()), list[float]()
    jump_logins.log_in("127.0.0.9", 22, 8, login, is_eof, sleep=pauses.append)
    assert login.attempts == [1, 2, 3]
    assert len(pauses) == 2 and all(jump_logins.PAUSE_S[0] <= p <= jump_logins.PAUSE_S[1] for p in pauses)


def test_the_last_drop_is_raised() -> None:
    login = Login(*(EOFError() for _ in range(jump_logins.LOGIN_ATTEMPTS)))
    with pytest.raises(EOFError):
        jump_logins.log_in("127.0.0.9", 22, 8, login, is_eof, sleep=lambda _: None)
    assert len(login.attempts) == jump_logins.LOGIN_ATTEMPTS


def test_anything_else_is_raised_at_once() -> None:
    login = Login(ValueError("refused"))
    with pytest.raises(ValueError, match="refused"):
        jump_logins.log_in("127.0.0.9", 22, 8, login, is_eof, sleep=lambda _: None)
    assert login.attempts == [1]


def test_logins_to_one_address_are_bounded_process_wide() -> None:
    login = Login(delay=0.02)
    with ThreadPoolExecutor(max_workers=16) as pool:
        for _ in range(32):
            pool.submit(jump_logins.log_in, "127.0.0.10", 2222, 3, login, is_eof)
    assert len(login.attempts) == 32 and login.most == 3


def test_the_bound_is_a_setting() -> None:
    assert load_settings({}).ssh.jump_logins == 8
    assert load_settings({"SFTRENEW_SSH_JUMP_LOGINS": "4"}).ssh.jump_logins == 4
    with pytest.raises(ConfigError, match="SFTRENEW_SSH_JUMP_LOGINS"):
        load_settings({"SFTRENEW_SSH_JUMP_LOGINS": "0"})
