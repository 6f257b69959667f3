"""One typed settings object, built once at the edge and passed down; never built at import.

Every field has an environment variable (`SFTRENEW_<FIELD>`) and a default that works for the demo. Device
timeouts follow what the vendor's own copy script shows (device-facts 4.4: about 20 s to give up on a device)
and what `generate_certs.pl` needs (tens of seconds, more on large estates). Secrets are `SecretStr`, and
URLs that may carry a password (database, broker, result backend) `SecretUrl`, shown with it masked, so they
never show in a repr, a log line or Flower; whoever connects calls `get_secret_value()`.

A secret may come from a file instead (Docker secrets, a 0600 file): `SFTRENEW_<NAME>_FILE` names it for every
secret variable, and the database's and Redis's passwords have files of their own
(`SFTRENEW_DATABASE_PASSWORD_FILE`, `SFTRENEW_REDIS_PASSWORD_FILE`) that are put, percent-encoded, into the
password-less URLs, so any password works and none is typed into a URL or an environment by hand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from pipeline.errors import ConfigError

ENV_PREFIX = "SFTRENEW_"
MASK = "**********"
#: Query parameters of a URL that may carry a credential (SQLAlchemy's `?password=`, tokens, keys).
_SECRET_QUERY = re.compile("pass|secret|token|key|auth", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`url` with its credentials masked: the password (or a user-only userinfo) and secret query values.

    Several URLs joined by `;` (Redis Sentinel) are masked one by one; text that is not a URL is masked whole.
    """
    return ";".join(_redact_one(part) for part in url.split(";"))


def _redact_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return MASK if url else ""
    query_at = min((i for i in (rest.find("?"), rest.find("#")) if i != -1), default=len(rest))
    head, tail = rest[:query_at], rest[query_at:]
    if "@" in head:
        # The last `@` ends the userinfo: a password may hold `@` or `/` unescaped.
        userinfo, host = head.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        head = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    if tail.startswith("?"):
        query, hash_, fragment = tail[1:].partition("#")
        pairs = parse_qsl(query, keep_blank_values=True)
        tail = (
            "?"
            + "&".join(f"{k}={MASK if _SECRET_QUERY.search(k) else v}" for k, v in pairs)
            + hash_
            + fragment
        )
    return f"{scheme}://{head}{tail}"


class SecretUrl(SecretStr):
    """A URL that may carry credentials: `repr` and `str` mask them, `get_secret_value()` gives it whole."""

    def _display(self) -> str:
        return redact_url(self.get_secret_value())


Seconds = Annotated[float, Field(gt=0, le=86_400)]


class SshSettings(BaseModel):
    """How the product talks SSH to FMCs, FTDs and jump servers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect_timeout: Seconds = 20.0
    banner_timeout: Seconds = 20.0
    auth_timeout: Seconds = 20.0
    #: Default time limit of one shell command; long tools pass their own.
    command_timeout: Seconds = 60.0
    #: generate_certs.pl regenerates and pushes to every live peer: minutes on a large estate.
    regenerate_timeout: Seconds = 900.0
    #: Accept and remember unknown host keys (trust on first use). Off: unknown keys are refused.
    trust_on_first_use: bool = False
    #: Override the inventory's known_hosts file.
    known_hosts: Path | None = None
    #: An OpenSSH client config to read; None means none is read (not even ~/.ssh/config).
    ssh_config: Path | None = None
    #: Logins (connect, key exchange, authentication) this process runs at once through one jump server,
    #: by the address dialled. OpenSSH's sshd drops new connections at random once 10 are unauthenticated
    #: (`MaxStartups 10:30:100`); 8 keeps one process below that (docs/scaling.md).
    jump_logins: Annotated[int, Field(ge=1, le=256)] = 8


class CelerySettings(BaseModel):
    """The engine: broker, result backend, worker pool, time limits and retries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker_url: SecretUrl = SecretUrl("redis://127.0.0.1:6379/0")
    result_backend: SecretUrl = SecretUrl("redis://127.0.0.1:6379/1")
    #: Threads per worker: device work is network-bound. 16 from the benchmark (docs/scaling.md, "Why 16").
    concurrency: Annotated[int, Field(ge=1, le=512)] = 16
    #: The longest one task may take. Celery enforces time limits only on prefork/gevent pools, not on the
    #: threads pool used here, so each task is bounded by sftrenew's own timeouts (SSH, command,
    #: regeneration, verify deadline); this is the budget they are checked against, and the age after which a
    #: regeneration claim's holder is taken for dead.
    task_time_limit: Seconds = 1800.0
    #: Redis redelivers a message not acknowledged within this; a task or retry delay longer than this would
    #: run twice (Celery's Redis caveat), which start-up refuses.
    visibility_timeout: Seconds = 3600.0
    retry_backoff: Seconds = 2.0
    retry_backoff_max: Seconds = 120.0
    #: The reconciler's period, and how long a renewal may show no progress before its next piece is sent
    #: again; longer than the regeneration timeout, so a running generate_certs.pl is not sent twice.
    reconcile_interval: Seconds = 30.0
    stall_after: Seconds = 1200.0
    #: Put before every queue's name (`lab` makes `lab.control`, `lab.push`, `lab.push.<site>`), so two
    #: deployments sharing a Redis database (the lab beside production) never take each other's tasks.
    queue_prefix: Annotated[str, Field(pattern=r"^([A-Za-z0-9][A-Za-z0-9_-]{0,39})?$")] = ""


class FlowerSettings(BaseModel):
    """Flower, the operators' window on the tasks: local and authenticated unless told otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 5555
    user: str = "sftrenew"
    password: SecretStr | None = None
    url: str | None = None


class WebSettings(BaseModel):
    """The renewal page (`sftrenew web`): local unless told otherwise, and nobody in without a user."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    #: A file of users, one `NAME ROLE HASH` line each (mode 0600 or 0400; docs/user-guide.md).
    users_file: Path | None = None
    #: The same lines inline (separated by newlines or `;`), when no file is used.
    users: SecretStr | None = None
    #: Signs the session cookie; when unset, a key derived from the artifact key (HKDF) signs it.
    secret: SecretStr | None = None
    #: How long a sign-in lasts.
    session_hours: Annotated[float, Field(gt=0, le=168)] = 8.0


class Settings(BaseModel):
    """Everything configurable, in one frozen object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The inventory the workers and commands read (docs/inventory.md).
    inventory: Path | None = None
    ssh: SshSettings = SshSettings()
    celery: CelerySettings = CelerySettings()
    flower: FlowerSettings = FlowerSettings()
    web: WebSettings = WebSettings()
    #: Direct-route attempts for a push before the jump server is tried.
    push_direct_attempts: Annotated[int, Field(ge=1, le=20)] = 2
    #: How long verify polls sftunnel_status.pl for every peer to come back, and how often.
    verify_deadline: Seconds = 180.0
    verify_interval: Seconds = 5.0
    #: Every renewal waits for `sftrenew approve` after its validate, before any regeneration (as
    #: `enqueue --hold` does for one).
    require_approval: bool = False
    #: A CA is due for renewal within this many days of its end (or past it): `enqueue` refuses a pair whose
    #: CAs are not due unless forced with a reason (the warning window of `sftrenew check`).
    renew_within_days: Annotated[int, Field(ge=0, le=3650)] = 90
    #: Device sessions one FMC step opens at once (validate's probes, verify's reads of peers its pushes did
    #: not answer for): network-bound, each a thread in the task (docs/scaling.md).
    step_sessions: Annotated[int, Field(ge=1, le=256)] = 32
    #: How long a working route found by the plan gate at enqueue stands for the renewal's own validate, which
    #: then does not log in to that device again (0: validate probes every device itself). A failed or
    #: refused probe is never taken as working; the FMC's tunnels are always read afresh (docs/scaling.md).
    plan_fresh_for: Annotated[float, Field(ge=0, le=86_400)] = 900.0
    #: The database of record (SQLAlchemy URL): SQLite for the demo, PostgreSQL in production.
    database_url: SecretUrl = SecretUrl("sqlite:///sftrenew.db")
    #: Seals private keys in the artifact store (URL-safe base64 of 32 bytes; `store.new_artifact_key()`).
    artifact_key: SecretStr | None = None
    #: Apprise URLs (separated by spaces or commas) told when a renewal awaits approval or ends, or `check
    #: --notify` finds a CA due: secret, as such URLs carry tokens and passwords.
    notify: SecretStr | None = None
    #: Who an operator's command records as having asked (enqueue, approve, retry...) when `--by` is not
    #: given; else the login name (`sftrenew.operators`). In a container, the login name is the image's user.
    operator: Annotated[str, Field(min_length=1, max_length=200)] | None = None


_ENV_FIELDS: Mapping[str, tuple[str, ...]] = {
    "SSH_CONNECT_TIMEOUT": ("ssh", "connect_timeout"),
    "SSH_BANNER_TIMEOUT": ("ssh", "banner_timeout"),
    "SSH_AUTH_TIMEOUT": ("ssh", "auth_timeout"),
    "SSH_COMMAND_TIMEOUT": ("ssh", "command_timeout"),
    "SSH_REGENERATE_TIMEOUT": ("ssh", "regenerate_timeout"),
    "TRUST_ON_FIRST_USE": ("ssh", "trust_on_first_use"),
    "KNOWN_HOSTS": ("ssh", "known_hosts"),
    "SSH_CONFIG": ("ssh", "ssh_config"),
    "SSH_JUMP_LOGINS": ("ssh", "jump_logins"),
    "PUSH_DIRECT_ATTEMPTS": ("push_direct_attempts",),
    "VERIFY_DEADLINE": ("verify_deadline",),
    "VERIFY_INTERVAL": ("verify_interval",),
    "STEP_SESSIONS": ("step_sessions",),
    "PLAN_FRESH_FOR": ("plan_fresh_for",),
    "RENEW_WITHIN_DAYS": ("renew_within_days",),
    "REQUIRE_APPROVAL": ("require_approval",),
    "DATABASE_URL": ("database_url",),
    "ARTIFACT_KEY": ("artifact_key",),
    "NOTIFY": ("notify",),
    "INVENTORY": ("inventory",),
    "BROKER_URL": ("celery", "broker_url"),
    "RESULT_BACKEND": ("celery", "result_backend"),
    "WORKER_CONCURRENCY": ("celery", "concurrency"),
    "TASK_TIME_LIMIT": ("celery", "task_time_limit"),
    "VISIBILITY_TIMEOUT": ("celery", "visibility_timeout"),
    "RETRY_BACKOFF": ("celery", "retry_backoff"),
    "RETRY_BACKOFF_MAX": ("celery", "retry_backoff_max"),
    "RECONCILE_INTERVAL": ("celery", "reconcile_interval"),
    "STALL_AFTER": ("celery", "stall_after"),
    "QUEUE_PREFIX": ("celery", "queue_prefix"),
    "OPERATOR": ("operator",),
    "FLOWER_ADDRESS": ("flower", "address"),
    "FLOWER_PORT": ("flower", "port"),
    "FLOWER_USER": ("flower", "user"),
    "FLOWER_PASSWORD": ("flower", "password"),
    "FLOWER_URL": ("flower", "url"),
    "WEB_ADDRESS": ("web", "address"),
    "WEB_PORT": ("web", "port"),
    "WEB_USERS_FILE": ("web", "users_file"),
    "WEB_USERS": ("web", "users"),
    "WEB_SECRET": ("web", "secret"),
    "WEB_SESSION_HOURS": ("web", "session_hours"),
}
#: The variables whose values are secret (`SecretStr`, `SecretUrl`): a process gets only those it uses
#: (`sftrenew.environments`).
SECRET_VARIABLES = frozenset(
    ENV_PREFIX + suffix
    for suffix in (
        "DATABASE_URL",
        "BROKER_URL",
        "RESULT_BACKEND",
        "ARTIFACT_KEY",
        "FLOWER_PASSWORD",
        "NOTIFY",
        "WEB_USERS",
        "WEB_SECRET",
    )
)
FILE_SUFFIX = "_FILE"
#: The files whose content is a password put into the URLs of these variables.
PASSWORD_FILES: Mapping[str, tuple[str, ...]] = {
    ENV_PREFIX + "DATABASE_PASSWORD_FILE": (ENV_PREFIX + "DATABASE_URL",),
    ENV_PREFIX + "REDIS_PASSWORD_FILE": (ENV_PREFIX + "BROKER_URL", ENV_PREFIX + "RESULT_BACKEND"),
}
#: Each variable naming a file that holds a secret, and the secret variables it fills: `<NAME>_FILE` its
#: whole value, a password file the password of its URLs. Such a variable holds a path, not a secret, yet it
#: goes only where the secrets it fills go (`sftrenew.environments`).
#: Secrets whose `<NAME>_FILE` is a setting of its own: the page's users file, read (and its mode checked)
#: by `sftrenew web` itself.
OWN_FILE_SETTING = frozenset({ENV_PREFIX + "WEB_USERS"})
SECRET_FILE_VARIABLES: Mapping[str, frozenset[str]] = {
    **{name + FILE_SUFFIX: frozenset({name}) for name in SECRET_VARIABLES - OWN_FILE_SETTING},
    **{name: frozenset(urls) for name, urls in PASSWORD_FILES.items()},
}
#: Every variable a setting is read from.
SETTINGS_VARIABLES = frozenset(ENV_PREFIX + suffix for suffix in _ENV_FIELDS) | frozenset(
    SECRET_FILE_VARIABLES
)


def read_secret_file(variable: str, path: str) -> str:
    """The content of the file `variable` names, less one trailing newline (what `echo` or an editor adds).
    A file that cannot be read is a ConfigError naming the variable and the file, never what it holds."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{variable}: {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path} ({exc.strerror or type(exc).__name__})") from None
    return text.removesuffix("\n").removesuffix("\r")


def with_password(url: str, password: str) -> str:
    """`url` (several joined by `;`, as for Redis Sentinel) with `password` percent-encoded into each one's
    userinfo, after its user if it names one. ValueError (saying what is wrong, not which URL) when a URL has
    no host or already has a password."""
    return ";".join(_with_password(part, password) for part in url.split(";"))


def _with_password(url: str, password: str) -> str:
    scheme, sep, rest = url.partition("://")
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i != -1), default=len(rest))
    head, tail = rest[:end], rest[end:]
    user, _, host = head.rpartition("@")
    if not sep or not host:
        raise ValueError("names no host to log in to")
    if ":" in user:
        raise ValueError("has a password already: remove it from the URL")
    return f"{scheme}://{user}:{quote(password, safe='')}@{host}{tail}"


def resolve_secret_files(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` with every secret a `*_FILE` variable names read into the variable it fills: `<NAME>_FILE`
    gives `<NAME>`, a password file the password of its URLs (ConfigError when both a variable and its file,
    or a password in the URL and a password file, are given, or a file cannot be read)."""
    values = dict(environ)
    for name in sorted(SECRET_VARIABLES - OWN_FILE_SETTING):
        file_variable = name + FILE_SUFFIX
        if file_variable not in environ:
            continue
        if name in environ:
            raise ConfigError(f"both {name} and {file_variable} are set: set one of them")
        values[name] = read_secret_file(file_variable, environ[file_variable])
    for file_variable, urls in PASSWORD_FILES.items():
        if file_variable not in environ:
            continue
        given = [url for url in urls if url in values]
        if not given:
            raise ConfigError(f"{file_variable} is set, but not {' or '.join(urls)}, the URL it is for")
        password = read_secret_file(file_variable, environ[file_variable])
        if not password:
            raise ConfigError(f"{file_variable}: {environ[file_variable]} is empty")
        for url in given:
            try:
                values[url] = with_password(values[url], password)
            except ValueError as exc:
                raise ConfigError(
                    f"{file_variable} is set, but {url} ({redact_url(values[url])}) {exc}"
                ) from None
    return values


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build settings from `SFTRENEW_*` variables (secrets from the files `*_FILE` variables name); a bad
    value is a ConfigError naming the variable."""
    environ = resolve_secret_files(environ)
    data: dict[str, dict[str, str] | str] = {}
    for suffix, path in _ENV_FIELDS.items():
        value = environ.get(ENV_PREFIX + suffix)
        if value is None:
            continue
        if len(path) == 2:
            section = data.setdefault(path[0], {})
            assert isinstance(section, dict)  # noqa: S101 - built just above
            section[path[1]] = value
        else:
            data[path[0]] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        names = {path: ENV_PREFIX + suffix for suffix, path in _ENV_FIELDS.items()}
        problems = "; ".join(
            f"{names.get(tuple(str(p) for p in err['loc']), '.'.join(map(str, err['loc'])))}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"settings from the environment are not usable: {problems}") from None
