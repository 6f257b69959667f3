"""Who may use the renewal page, and the checks of a sign-in and a form: password hashes, the users table,
CSRF tokens and the session cookie's key. Pure, apart from reading the users file; the standard library's
scrypt, no framework.

Password hash format (what `sftrenew web hash-password` prints), six fields separated by `:`:

    scrypt:N:r:p:SALT:KEY

scrypt with cost N (a power of two), block size r and parallelism p; SALT (16 bytes) and KEY (32 bytes) in
URL-safe base64 without padding. No `$`, so a hash can stand in a compose or `.env` file as it is.

Users: one `NAME ROLE HASH` line each, in the file `SFTRENEW_WEB_USERS_FILE` (mode 0600 or 0400, like the
inventory's secrets file) or inline in `SFTRENEW_WEB_USERS` (lines separated by newlines or `;`); `#`
starts a comment. ROLE is `operator` (sees and acts) or `viewer` (sees only). There is no default user and
no default password: with none configured the page refuses to start.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pipeline.errors import ConfigError
from pipeline.secrets import read_private_file
from pipeline.settings import Settings

Role = Literal["operator", "viewer"]
ROLES: Final[tuple[Role, ...]] = ("operator", "viewer")

#: scrypt's cost for new hashes: 2**15 x 8 x 128 bytes = 32 MiB and about 0.1 s per sign-in.
SCRYPT_N: Final = 2**15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
#: What a stored hash may ask for: enough for any sane cost, bounded so a bad line cannot exhaust memory.
MAX_N: Final = 2**20
MAX_MEMORY: Final = 256 * 1024 * 1024
SALT_BYTES: Final = 16
KEY_BYTES: Final = 32
#: The shortest password `hash-password` accepts.
MIN_PASSWORD: Final = 12

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A new hash of `password` in the format above, with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES, maxmem=MAX_MEMORY)
    return f"scrypt:{n}:{r}:{p}:{_b64(salt)}:{_b64(key)}"


@dataclass(frozen=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """A stored hash, checked; ValueError naming what is wrong (never the hash itself)."""
        parts = text.split(":")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError("not a hash of the form scrypt:N:r:p:SALT:KEY (`sftrenew web hash-password`)")
        try:
            n, r, p = (int(x) for x in parts[1:4])
            salt, key = _unb64(parts[4]), _unb64(parts[5])
        except (ValueError, binascii.Error):
            raise ValueError("its N, r, p are not numbers or its salt or key is not base64") from None
        if not (1 < n <= MAX_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
            raise ValueError(f"scrypt cost N={n} r={r} p={p} is out of bounds (N a power of 2 up to 2**20)")
        if 128 * n * r * p > MAX_MEMORY or len(salt) < 8 or len(key) < 16:
            raise ValueError("its cost needs too much memory, or its salt or key is too short")
        return cls(n, r, p, salt, key)

    def verify(self, password: str) -> bool:
        """Whether `password` is the one hashed (in constant time over the key)."""
        key = hashlib.scrypt(
            password.encode(),
            salt=self.salt,
            n=self.n,
            r=self.r,
            p=self.p,
            dklen=len(self.key),
            maxmem=MAX_MEMORY,
        )
        return hmac.compare_digest(key, self.key)


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password: PasswordHash

    @property
    def can_act(self) -> bool:
        return self.role == "operator"

    def __repr__(self) -> str:
        return f"User({self.name!r}, {self.role!r})"


@functools.cache
def _nobody() -> PasswordHash:
    """What an unknown name is checked against, so a sign-in takes as long whether the user exists or not."""
    return PasswordHash.parse(hash_password(secrets.token_urlsafe(16)))


def check_sign_in(users: dict[str, User], name: str, password: str) -> User | None:
    """The user `name` if `password` is theirs; None otherwise (unknown name or wrong password alike)."""
    user = users.get(name)
    ok = (user.password if user else _nobody()).verify(password)
    return user if ok and user is not None else None


def parse_users(text: str, *, source: str) -> dict[str, User]:
    """Users from `NAME ROLE HASH` lines; ConfigError naming `source`, the line and the fix."""
    users: dict[str, User] = {}
    for number, raw in enumerate(re.split(r"[\n;]", text), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        where = f"{source}, entry {number}"
        if len(fields) != 3:
            raise ConfigError(f"{where}: write NAME ROLE HASH (ROLE: operator or viewer)")
        name, role, hashed = fields
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{where}: {name!r} is not a user name (letters, digits, . _ @ -)")
        if role not in ROLES:
            raise ConfigError(f"{where}: role {role!r} is neither operator nor viewer")
        if name in users:
            raise ConfigError(f"{where}: user {name} is listed twice")
        try:
            password = PasswordHash.parse(hashed)
        except ValueError as exc:
            raise ConfigError(f"{where}: the hash of {name}: {exc}") from None
        users[name] = User(name, "operator" if role == "operator" else "viewer", password)
    return users


def load_users(settings: Settings) -> dict[str, User]:
    """The page's users from the settings (the file, or the inline lines); ConfigError when there are none:
    the page never starts with a default user or password."""
    web = settings.web
    inline = web.users.get_secret_value() if web.users is not None else ""
    if web.users_file is not None and inline:
        raise ConfigError("set SFTRENEW_WEB_USERS_FILE or SFTRENEW_WEB_USERS, not both")
    if web.users_file is not None:
        users = parse_users(_read_private(web.users_file), source=str(web.users_file))
    elif inline:
        users = parse_users(inline, source="SFTRENEW_WEB_USERS")
    else:
        users = {}
    if not users:
        raise ConfigError(
            "the renewal page has no users: set SFTRENEW_WEB_USERS_FILE to a file of 'NAME ROLE HASH' lines "
            "(ROLE operator or viewer; HASH from `sftrenew web hash-password`), or SFTRENEW_WEB_USERS to "
            "the same lines; there is no default user"
        )
    return users


def _read_private(path: Path) -> str:
    raw = read_private_file(path, what="users file", named_by="SFTRENEW_WEB_USERS_FILE")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"users file {path} is not UTF-8 text") from None


# ----------------------------------------------------------------------------------------- CSRF, session


def new_csrf_token() -> str:
    """A fresh per-session token for the forms and the script's requests."""
    return secrets.token_urlsafe(32)


def csrf_ok(expected: object, given: str | None) -> bool:
    """Whether the token a POST carries is the session's (both present, equal in constant time)."""
    if not isinstance(expected, str) or not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


#: What the session key derived from the artifact key is for: a different purpose gives a different key.
_SESSION_INFO: Final = b"sftrenew web session cookie v1"


def session_key(settings: Settings) -> str:
    """The key that signs the session cookie: SFTRENEW_WEB_SECRET when set (at least 32 characters), else
    HKDF-SHA256 of the artifact key (the page needs that key anyway to retry); ConfigError with neither."""
    secret = settings.web.secret.get_secret_value() if settings.web.secret is not None else ""
    if secret:
        if len(secret) < 32:
            raise ConfigError(
                "SFTRENEW_WEB_SECRET is shorter than 32 characters; make one: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return secret
    if settings.artifact_key is None or not settings.artifact_key.get_secret_value():
        raise ConfigError(
            "the renewal page signs its sessions with SFTRENEW_WEB_SECRET or, when unset, a "
            "key derived from SFTRENEW_ARTIFACT_KEY: set one of them"
        )
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SESSION_INFO).derive(
        settings.artifact_key.get_secret_value().encode()
    )
    return _b64(derived)
