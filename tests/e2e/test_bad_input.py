"""Bad input gets a one-line answer: every `sftrenew` command, run as an operator runs it, with a broken
database URL, a broken broker URL and a broken inventory, answers with one line that starts with "sftrenew"
and names the thing, no traceback, and the exit code docs/cli.md gives; and it writes nothing first.

Then the cases of issue 11, one test each: a mistyped SQLite path, a missing SQLite folder, a wrong database
name, a Redis that refuses the password or a malformed broker URL, a missing, binary or malformed known_hosts
file, a negative `--interval`, an `enqueue` no worker could run (secrets, artifact key, broker), a `retry`
naming no device of the renewal, and a worker with a malformed artifact key.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, make_url

import sftrenew
from pipeline import store
from pipeline.settings import Settings
from sftrenew.web import auth
from tests.e2e.conftest import POSTGRES_URL, T0, new_renewal
from tests.e2e.services import RedisServer, wait_until
from workers.embedded import free_port, redis_server_binary

pytestmark = pytest.mark.e2e

SFTRENEW = str(Path(sys.executable).parent / "sftrenew")
#: A password no output may show.
PASSWORD = "Leak-Me-Not-7Q"
#: Each command must answer this fast (the reachability checks are bounded).
SECONDS = 20.0
DEVICE_PASSWORD_VARIABLE = "SFTRENEW_TEST_DEVICE_PASSWORD"
#: A real key line (any key will do: no connection is made).
KNOWN_HOSTS_LINE = (
    "127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
)

INVENTORY = """\
version: 1
known_hosts: known_hosts
credentials:
  admin:
    username: admin
    password: {{env: {variable}}}
pairs:
  lab:
    primary:   {{name: fmc-1, host: 127.0.0.1, port: 1, credential: admin}}
    secondary: {{name: fmc-2, host: 127.0.0.1, port: 2, credential: admin}}
    ftds:
      - {{name: ftd-1, host: {ftd_host}, port: 3, credential: admin}}
"""

WEB_HASH = auth.hash_password("a long enough password", n=2**12)

# Every command and the arguments it is run with here (a new command must be added: see the first test).
ARGS: dict[str, list[str]] = {
    "enqueue": ["enqueue", "--pair", "lab"],
    "status": ["status"],
    "retry": ["retry", "R1"],
    "approve": ["approve", "R1"],
    "pause": ["pause", "R1"],
    "resume": ["resume", "R1"],
    "abandon": ["abandon", "R1", "--reason", "test"],
    "restore": ["restore", "R1", "--device", "ftd-1", "--fmc", "fmc-1"],
    "history": ["history"],
    "report": ["report", "R1"],
    "plan": ["plan", "--pair", "lab"],
    "check": ["check"],
    "inventory": ["inventory", "check"],
    "lab": ["lab", "serve"],
    "worker": ["worker"],
    "flower": ["flower"],
    "web": ["web", "--port", "{port}"],
    "reconcile": ["reconcile"],
    "migrate": ["migrate"],
    "demo": ["demo", "--exit", "--dir", "{tmp}/demo"],
}

# What a broken thing does not concern, and why (every other pair of command and thing is run).
IRRELEVANT: dict[tuple[str, str], str] = {
    ("plan", "database"): "read-only against the devices: no database",
    ("check", "database"): "read-only against the devices: no database",
    ("flower", "database"): "Flower reads only the broker",
    ("inventory", "database"): "`inventory check` reads the inventory, its secrets and known_hosts only",
    ("inventory", "broker"): "`inventory check` reads the inventory, its secrets and known_hosts only",
    ("lab", "database"): "the lab is the simulated fleet: it reads no sftrenew settings",
    ("status", "broker"): "reads the database only",
    ("pause", "broker"): "records an event in the database only",
    ("abandon", "broker"): "records the end in the database only",
    ("restore", "broker"): "talks to the device and records in the database: sends no task",
    ("pause", "inventory"): "records an event in the database only",
    ("abandon", "inventory"): "records the end in the database only",
    ("history", "broker"): "reads the database only",
    ("report", "broker"): "reads the database only",
    ("report", "inventory"): "reads the database only",
    ("plan", "broker"): "read-only against the devices: sends no task",
    ("check", "broker"): "read-only against the devices: sends no task",
    ("migrate", "broker"): "touches the database only",
    ("lab", "broker"): "the lab is the simulated fleet: it reads no sftrenew settings",
    ("status", "inventory"): "reads the database only",
    ("history", "inventory"): "reads the database only",
    ("migrate", "inventory"): "touches the database only",
    ("flower", "inventory"): "Flower reads only the broker",
    ("demo", "inventory"): "the demo writes and uses its own lab's inventory",
    ("lab", "inventory"): "the lab is the simulated fleet: it writes its own inventory",
}


@dataclass(frozen=True)
class Broken:
    """One broken thing: the settings that break it, the words its first line must hold, its exit code."""

    names: tuple[str, ...]
    exit_code: int
    check_exit_code: int  # `check` is a monitoring plugin: 3 (UNKNOWN) when it could not look


BROKEN = {
    # A PostgreSQL server that is not there (with a password in the URL, which must not show).
    "database": Broken(("database", "SFTRENEW_DATABASE_URL"), 4, 3),
    # A Redis that is not there (with a password in the URL, which must not show).
    "broker": Broken(("Redis", "SFTRENEW_BROKER_URL"), 4, 3),
    # An inventory whose FTD host would be an option to ssh.
    "inventory": Broken(("inventory.yaml",), 2, 3),
}


def _commands() -> list[str]:
    parser = sftrenew.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse has no API for its subcommands
    return sorted(sub.choices)  # type: ignore[arg-type]


@dataclass
class Place:
    """A working set-up (inventory, known_hosts, secrets, key, migrated SQLite, a running Redis)."""

    tmp: Path
    env: dict[str, str]
    engine: Engine

    def run(self, *args: str, **overrides: str) -> tuple[subprocess.CompletedProcess[str], float]:
        env = {**self.env, **overrides}
        started = time.monotonic()
        result = subprocess.run(
            [SFTRENEW, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=self.tmp,
        )
        return result, time.monotonic() - started

    def renewals(self) -> list[store.Renewal]:
        with store.open_session(self.engine) as db:
            return store.history(session=db, pair=None, limit=100)


def write_inventory(folder: Path, ftd_host: str = "127.0.0.1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "known_hosts").write_text(KNOWN_HOSTS_LINE)
    path = folder / "inventory.yaml"
    path.write_text(INVENTORY.format(variable=DEVICE_PASSWORD_VARIABLE, ftd_host=ftd_host))
    return path


@pytest.fixture
def place(tmp_path: Path, redis_server: RedisServer) -> Iterator[Place]:
    inventory = write_inventory(tmp_path / "fleet")
    database = f"sqlite:///{tmp_path / 'sftrenew.db'}"
    engine = store.make_engine(Settings(database_url=database))
    store.migrate(engine)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SFTRENEW_")},
        "SFTRENEW_INVENTORY": str(inventory),
        "SFTRENEW_DATABASE_URL": database,
        "SFTRENEW_BROKER_URL": f"{redis_server.url}/0",
        "SFTRENEW_RESULT_BACKEND": f"{redis_server.url}/1",
        "SFTRENEW_ARTIFACT_KEY": store.new_artifact_key(),
        "SFTRENEW_FLOWER_PASSWORD": PASSWORD,
        # The renewal page's one user, so that `web` gets past its users to what each case breaks.
        "SFTRENEW_WEB_USERS": f"ops operator {WEB_HASH}",
        "SFTRENEW_SSH_CONNECT_TIMEOUT": "1",
        DEVICE_PASSWORD_VARIABLE: PASSWORD,
    }
    yield Place(tmp_path, env, engine)
    engine.dispose()


def _broken_settings(place: Place, thing: str) -> dict[str, str]:
    if thing == "database":
        return {"SFTRENEW_DATABASE_URL": f"postgresql://sftrenew:{PASSWORD}@127.0.0.1:{free_port()}/sftrenew"}
    if thing == "broker":
        url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}"
        return {"SFTRENEW_BROKER_URL": f"{url}/0", "SFTRENEW_RESULT_BACKEND": f"{url}/1"}
    return {"SFTRENEW_INVENTORY": str(write_inventory(place.tmp / "bad", ftd_host="-oProxyCommand=id"))}


def assert_one_line(result: subprocess.CompletedProcess[str], names: tuple[str, ...], code: int) -> str:
    """The answer to bad input: exit `code`, one line on stderr starting with "sftrenew" and naming one of
    `names`, no traceback, no password."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert PASSWORD not in output, output
    lines = result.stderr.splitlines()
    assert lines, f"nothing on stderr (exit {result.returncode}); stdout: {result.stdout}"
    assert lines[0].startswith("sftrenew"), result.stderr
    assert any(name in lines[0] for name in names), result.stderr
    assert result.returncode == code, result.stderr
    return lines[0]


def test_every_command_is_in_the_table() -> None:
    assert sorted(ARGS) == _commands()
    assert {command for command, _ in IRRELEVANT} <= set(ARGS)


CASES = [
    pytest.param(command, thing, id=f"{command}-{thing}")
    for command in ARGS
    for thing in BROKEN
    if (command, thing) not in IRRELEVANT
]


@pytest.mark.parametrize(("command", "thing"), CASES)
def test_a_broken_thing_is_one_line_with_its_exit_code(place: Place, command: str, thing: str) -> None:
    broken = BROKEN[thing]
    args = [a.format(tmp=place.tmp, port=free_port()) for a in ARGS[command]]

    result, seconds = place.run(*args, **_broken_settings(place, thing))

    code = broken.check_exit_code if command == "check" else broken.exit_code
    assert_one_line(result, broken.names, code)
    assert seconds < SECONDS
    assert place.renewals() == []  # nothing written
    assert not (place.tmp / "demo").exists()


# ------------------------------------------------------------------------------------- the database


def test_a_mistyped_sqlite_path_is_refused_not_created(place: Place) -> None:
    mistyped = place.tmp / "sftrenw.db"
    for command in ("status", "history", "enqueue", "reconcile"):
        result, _ = place.run(*ARGS[command], SFTRENEW_DATABASE_URL=f"sqlite:///{mistyped}")

        line = assert_one_line(result, ("no sftrenew tables",), 2)
        assert line == f"sftrenew: no sftrenew tables in sqlite:///{mistyped}: run `sftrenew migrate` first"
        assert not mistyped.exists()

    result, _ = place.run("migrate", SFTRENEW_DATABASE_URL=f"sqlite:///{mistyped}")
    assert result.returncode == 0, result.stderr
    assert mistyped.exists()


def test_a_sqlite_folder_that_does_not_exist(place: Place) -> None:
    missing = place.tmp / "no-such-folder" / "sftrenew.db"
    for command in ("status", "migrate"):
        result, _ = place.run(*ARGS[command], SFTRENEW_DATABASE_URL=f"sqlite:///{missing}")

        line = assert_one_line(result, ("no-such-folder",), 2)
        assert "does not exist; create it or fix the path" in line


def test_a_wrong_postgresql_database_name(place: Place) -> None:
    url = make_url(POSTGRES_URL).set(database="sftrenew_no_such_database")

    result, _ = place.run("status", SFTRENEW_DATABASE_URL=url.render_as_string(hide_password=False))

    line = assert_one_line(result, ("sftrenew_no_such_database",), 2)
    assert "create it" in line


# ------------------------------------------------------------------------------------------ the broker


def test_a_redis_that_refuses_the_password(place: Place, tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--requirepass", "the-right-one", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"redis://:{PASSWORD}@127.0.0.1:{port}"
        wait_until(lambda: _answers(port), timeout=20, what="redis-server answering")
        result, _ = place.run(
            *ARGS["enqueue"], SFTRENEW_BROKER_URL=f"{url}/0", SFTRENEW_RESULT_BACKEND=f"{url}/1"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)

    line = assert_one_line(result, ("SFTRENEW_BROKER_URL",), 2)
    assert "refused the password" in line
    assert place.renewals() == []


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("url", ["redis://127.0.0.1:notaport/0", "amqp//nothing", "http://127.0.0.1/0"])
def test_a_malformed_broker_url(place: Place, url: str) -> None:
    for command in ("enqueue", "worker", "flower"):
        result, _ = place.run(*ARGS[command], SFTRENEW_BROKER_URL=url)

        line = assert_one_line(result, ("SFTRENEW_BROKER_URL",), 2)
        assert "is not a Redis URL" in line


def test_enqueue_with_the_broker_down_starts_no_renewal(place: Place) -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    for _ in range(2):  # and the second one is not told "already running"
        result, _ = place.run(
            *ARGS["enqueue"], SFTRENEW_BROKER_URL=f"{url}/0", SFTRENEW_RESULT_BACKEND=f"{url}/1"
        )

        assert_one_line(result, ("does not answer",), 4)
    assert place.renewals() == []


#: `sftrenew enqueue` with the broker check skipped: as if the broker went away just after it answered.
# `enqueue` with its broker check and its plan gate stood in for (this place's devices do not exist; the plan
# gate is tested against the lab in test_renewal.py): the renewal row is written, then the send fails.
UNCHECKED_ENQUEUE = """
import sys
import sftrenew, sftrenew.renewals
from pipeline.plan import RenewalPlan

class NothingToPlan:
    facts = ()
    plan = RenewalPlan("lab", ())

    def lines(self):
        return []

sftrenew.renewals.check_broker = lambda settings: None
sftrenew.renewals.plan_pair = lambda factory, pair, settings: NothingToPlan()
sys.exit(sftrenew.main(["enqueue", "--pair", "lab"]))
"""


def test_a_renewal_whose_first_task_cannot_be_sent_ends_failed(place: Place) -> None:
    """The renewal row exists when sending its first task fails: it is ended as failed, so it does not
    block its pair (a later enqueue starts a new one, it is not told "already running")."""
    url = f"redis://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-c", UNCHECKED_ENQUEUE],
        env={**place.env, "SFTRENEW_BROKER_URL": f"{url}/0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("sftrenew")]
    assert result.returncode == 4, result.stderr
    assert "was ended as failed" in line
    (renewal,) = place.renewals()
    assert renewal.state == "failed"
    assert renewal.active_pair is None


# ------------------------------------------------------------------------------------ known_hosts


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist; make it with `ssh-keyscan"),
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary", "line 1: not text"),
        (KNOWN_HOSTS_LINE.encode() + b"just-one-field\n", "line 2: not 'host key-type base64-key'"),
        (b"# comment\n127.0.0.1 ssh-ed25519 not*base64\n", "line 2: the key is not base64"),
    ],
)
def test_a_missing_binary_or_malformed_known_hosts_file(
    place: Place, content: bytes | None, expected: str
) -> None:
    known_hosts = place.tmp / "fleet" / "known_hosts"
    if content is None:
        known_hosts.unlink()
    else:
        known_hosts.write_bytes(content)
    for command in ("plan", "enqueue", "worker"):
        result, _ = place.run(*ARGS[command])

        line = assert_one_line(result, (str(known_hosts),), 2)
        assert expected in line
    assert place.renewals() == []


# -------------------------------------------------------------------------------- arguments, enqueue


def test_a_negative_watch_interval_is_refused(place: Place) -> None:
    result, _ = place.run("status", "--watch", "--interval", "-1")

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "argument --interval: expected a number of seconds above 0, got '-1'" in result.stderr


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({DEVICE_PASSWORD_VARIABLE: ""}, (DEVICE_PASSWORD_VARIABLE,)),
        ({"SFTRENEW_ARTIFACT_KEY": ""}, ("SFTRENEW_ARTIFACT_KEY",)),
        ({"SFTRENEW_ARTIFACT_KEY": "not-a-key"}, ("SFTRENEW_ARTIFACT_KEY",)),
    ],
    ids=["password-unset", "key-unset", "key-malformed"],
)
def test_enqueue_refuses_a_renewal_no_worker_could_run(
    place: Place, settings: dict[str, str], names: tuple[str, ...]
) -> None:
    env = dict(settings)
    if env.get("SFTRENEW_ARTIFACT_KEY") == "":
        env.pop("SFTRENEW_ARTIFACT_KEY")
        place.env.pop("SFTRENEW_ARTIFACT_KEY")
    result, _ = place.run(*ARGS["enqueue"], **env)

    assert_one_line(result, names, 2)
    assert place.renewals() == []


def test_enqueue_refuses_a_secrets_file_others_may_read(place: Place) -> None:
    folder = place.tmp / "fleet"
    secrets = folder / "secrets.yaml"
    secrets.write_text("admin: a-password\n")
    secrets.chmod(0o644)
    text = INVENTORY.format(variable="X", ftd_host="127.0.0.1")
    text = text.replace("password: {env: X}", "password: {secret: admin}")
    (folder / "inventory.yaml").write_text("secrets_file: secrets.yaml\n" + text)

    result, _ = place.run(*ARGS["enqueue"])

    line = assert_one_line(result, (str(secrets),), 2)
    assert f"chmod 600 {secrets}" in line
    assert place.renewals() == []


@pytest.mark.parametrize("host", ["999.999.1.1", "not_a_host!!", "-oProxyCommand=id"])
def test_enqueue_refuses_a_host_that_is_no_host(place: Place, host: str) -> None:
    inventory = write_inventory(place.tmp / "fleet", ftd_host=f"'{host}'")

    result, _ = place.run(*ARGS["enqueue"])

    line = assert_one_line(result, (f"{inventory}:12: pairs.lab.ftds[0].host",), 2)
    assert host in line
    assert place.renewals() == []


# -------------------------------------------------------------------------------------- retry, worker


def test_retry_naming_no_device_of_the_renewal(place: Place) -> None:
    with store.open_session(place.engine) as db:
        renewal = new_renewal(db, pair="lab")

    result, _ = place.run("retry", renewal.id, "--device", "ftd-nope")

    line = assert_one_line(result, ("ftd-nope",), 2)
    assert "never pushed to ftd-nope" in line


def test_retry_of_a_pair_gone_from_the_inventory_leaves_the_renewal_as_it_was(place: Place) -> None:
    with store.open_session(place.engine) as db:
        renewal = new_renewal(db, pair="gone")
        store.finish_renewal(session=db, renewal_id=renewal.id, state="failed", now=T0)

    result, _ = place.run("retry", renewal.id)

    line = assert_one_line(result, ("no FMC pair named 'gone'",), 2)
    assert "known: lab" in line
    (row,) = place.renewals()
    assert (row.state, row.active_pair) == ("failed", None)


def test_retry_with_another_artifact_key_leaves_the_renewal_as_it_was(place: Place) -> None:
    with store.open_session(place.engine) as db:
        renewal = new_renewal(db, pair="lab")
        store.add_artifact(
            session=db, renewal_id=renewal.id, fmc="fmc-a", device="ftd-1", kind="peer_material",
            path="/var/sf/peers/u1/certs_pushed/sftunnel-key.pem", data=b"a sealed key", secret=True,
            key=SecretStr(store.new_artifact_key()), now=T0,
        )  # fmt: skip
        store.finish_renewal(session=db, renewal_id=renewal.id, state="failed", now=T0)

    result, _ = place.run("retry", renewal.id)

    line = assert_one_line(result, ("SFTRENEW_ARTIFACT_KEY",), 2)
    assert "sealed with a different SFTRENEW_ARTIFACT_KEY" in line
    (row,) = place.renewals()
    assert (row.state, row.active_pair) == ("failed", None)


def test_a_worker_with_a_malformed_artifact_key_does_not_start(place: Place) -> None:
    result, seconds = place.run("worker", SFTRENEW_ARTIFACT_KEY="too-short")

    assert_one_line(result, ("SFTRENEW_ARTIFACT_KEY",), 2)
    assert seconds < SECONDS
