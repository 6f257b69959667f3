"""The renewal page's pure checks: password hashes (format, verify, bounds), the users table, CSRF tokens and
the session cookie's key."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from pipeline.errors import ConfigError
from pipeline.settings import Settings, WebSettings
from sftrenew.web import auth

FAST = {"n": 2**10, "r": 8, "p": 1}  # the tests' cost; the format carries it, so verify follows


def test_a_hash_has_the_documented_format_and_verifies_only_its_password() -> None:
    hashed = auth.hash_password("correct horse battery", **FAST)
    assert re.fullmatch(r"scrypt:1024:8:1:[A-Za-z0-9_-]{22}:[A-Za-z0-9_-]{43}", hashed), hashed
    parsed = auth.PasswordHash.parse(hashed)
    assert parsed.verify("correct horse battery")
    assert not parsed.verify("correct horse batterY") and not parsed.verify("")
    # The documented format is plain scrypt: anyone can check a hash with hashlib alone.
    _, n, r, p, salt, key = hashed.split(":")
    unb64 = base64.urlsafe_b64decode
    again = hashlib.scrypt(b"correct horse battery", salt=unb64(salt + "=="), n=int(n), r=int(r), p=int(p))
    assert again[:32] == unb64(key + "=")


def test_the_default_cost_and_a_fresh_salt_every_time() -> None:
    first, second = auth.hash_password("same password here"), auth.hash_password("same password here")
    assert first.startswith(f"scrypt:{auth.SCRYPT_N}:{auth.SCRYPT_R}:{auth.SCRYPT_P}:") and first != second


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "pbkdf2:1:2:3:4:5",
        "scrypt:1024:8:1:c2FsdHNhbHQ",  # a field missing
        "scrypt:1000:8:1:c2FsdHNhbHRzYWx0:a2V5a2V5a2V5a2V5a2V5a2V5",  # N not a power of two
        "scrypt:2097152:8:1:c2FsdHNhbHRzYWx0:a2V5a2V5a2V5a2V5a2V5a2V5",  # N beyond the bound
        "scrypt:1024:64:1:c2FsdHNhbHRzYWx0:a2V5a2V5a2V5a2V5a2V5a2V5",  # r beyond the bound
        "scrypt:x:8:1:c2FsdHNhbHRzYWx0:a2V5a2V5a2V5a2V5a2V5a2V5",
        "scrypt:1024:8:1:!!!:a2V5a2V5a2V5a2V5a2V5a2V5",
        "scrypt:1024:8:1:c2FsdA:a2V5",  # salt and key too short
    ],
)
def test_a_bad_hash_is_refused_without_quoting_it(bad: str) -> None:
    with pytest.raises(ValueError, match=r"scrypt|N=|base64|short|memory|numbers") as caught:
        auth.PasswordHash.parse(bad)
    assert "c2FsdHNhbHRzYWx0" not in str(caught.value)


def test_users_lines_file_and_inline_and_sign_in() -> None:
    alice, bob = auth.hash_password("alice's password", **FAST), auth.hash_password("bob's password", **FAST)
    users = auth.parse_users(
        f"# who may sign in\nalice operator {alice}\n\nbob viewer {bob}  # audit", source="t"
    )
    assert {n: (u.role, u.can_act) for n, u in users.items()} == {
        "alice": ("operator", True),
        "bob": ("viewer", False),
    }
    assert auth.parse_users(f"alice operator {alice};bob viewer {bob}", source="t").keys() == users.keys()
    assert auth.check_sign_in(users, "alice", "alice's password") is users["alice"]
    assert auth.check_sign_in(users, "alice", "bob's password") is None
    assert auth.check_sign_in(users, "mallory", "alice's password") is None
    assert alice not in repr(users["alice"]) and "password" not in repr(users["alice"]).lower()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("alice operator", "write NAME ROLE HASH"),
        ("alice admin {h}", "neither operator nor viewer"),
        ("al ice operator {h}", "write NAME ROLE HASH"),
        ("-x operator {h}", "is not a user name"),
        ("alice operator {h}\nalice viewer {h}", "listed twice"),
        ("alice operator hunter2", "the hash of alice"),
    ],
)
def test_a_bad_users_line_names_the_entry_and_the_fix(text: str, problem: str) -> None:
    hashed = auth.hash_password("x" * 12, **FAST)
    with pytest.raises(ConfigError, match=problem) as caught:
        auth.parse_users(text.format(h=hashed), source="users.txt")
    assert "users.txt, entry" in str(caught.value) and "hunter2" not in str(caught.value)


def test_no_users_is_refused_with_the_setting_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"SFTRENEW_WEB_USERS_FILE.*hash-password.*no default user"):
        auth.load_users(Settings())
    empty = tmp_path / "users"
    empty.write_text("# nobody yet\n")
    empty.chmod(0o600)
    with pytest.raises(ConfigError, match="has no users"):
        auth.load_users(Settings(web=WebSettings(users_file=empty)))


def test_the_users_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text(f"alice operator {auth.hash_password('x' * 12, **FAST)}\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"mode 0644.*chmod 600"):
        auth.load_users(Settings(web=WebSettings(users_file=path)))
    path.chmod(0o600)
    assert list(auth.load_users(Settings(web=WebSettings(users_file=path)))) == ["alice"]


def test_csrf_tokens() -> None:
    token = auth.new_csrf_token()
    assert len(token) >= 40 and token != auth.new_csrf_token()
    assert auth.csrf_ok(token, token)
    assert not auth.csrf_ok(token, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not auth.csrf_ok(token, None) and not auth.csrf_ok(token, "")
    assert not auth.csrf_ok(None, token) and not auth.csrf_ok("", "") and not auth.csrf_ok(12, "12")


def test_the_session_key_is_the_web_secret_or_derived_from_the_artifact_key() -> None:
    artifact = "k" * 43
    derived = auth.session_key(Settings(artifact_key=SecretStr(artifact)))
    assert derived == auth.session_key(Settings(artifact_key=SecretStr(artifact)))  # stable across restarts
    assert artifact not in derived and derived != auth.session_key(Settings(artifact_key=SecretStr("j" * 43)))
    secret = "s" * 40
    assert (
        auth.session_key(Settings(artifact_key=SecretStr(artifact), web=WebSettings(secret=secret))) == secret
    )
    with pytest.raises(ConfigError, match="shorter than 32"):
        auth.session_key(Settings(web=WebSettings(secret=SecretStr("short"))))
    with pytest.raises(ConfigError, match=r"SFTRENEW_WEB_SECRET.*SFTRENEW_ARTIFACT_KEY"):
        auth.session_key(Settings())
    shown = repr(Settings(web=WebSettings(secret=SecretStr(secret), users=SecretStr("alice operator x"))))
    assert secret not in shown and "alice operator" not in shown
