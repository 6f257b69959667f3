"""Who a command records as having asked: `--by`, else SFTRENEW_OPERATOR, else the login name (one rule,
`sftrenew.operators`, for every command that records who)."""

from __future__ import annotations

import getpass
import os

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import Settings, load_settings
from sftrenew.operators import operator_name

ALICE = load_settings({"SFTRENEW_OPERATOR": "alice"})


def test_by_then_the_operator_setting_then_the_login_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "carol")  # getpass.getuser() reads it first
    assert operator_name("bob", ALICE) == "bob"
    assert operator_name(None, ALICE) == "alice"
    assert operator_name("  ", ALICE) == "alice"
    assert operator_name(None, Settings()) == "carol"


def test_a_user_the_system_cannot_name_is_recorded_by_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    def nameless() -> str:
        raise OSError("No username set in the environment")  # what Python 3.13 raises; 3.11 a KeyError

    monkeypatch.setattr(getpass, "getuser", nameless)
    assert operator_name(None, Settings()) == f"uid {os.getuid()}"


def test_an_empty_operator_is_refused() -> None:
    with pytest.raises(ConfigError, match="SFTRENEW_OPERATOR"):
        load_settings({"SFTRENEW_OPERATOR": ""})
