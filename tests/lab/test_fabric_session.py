"""The product's device session against the lab: every login variant device-facts 12 allows, host keys,
routes, timeouts, commands, answers, file transfer, a connection cut mid-write, and no secret in any log or
shell history."""

from __future__ import annotations

import base64
import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from pipeline.devices.fabric_session import FabricSession, Login
from pipeline.devices.factory import SessionFactory
from pipeline.devices.files import read_files, read_tree
from pipeline.devices.session import DIRECT, TEMP_GLOB, Answer, DeviceSession, Route
from pipeline.errors import (
    TOFU_SWITCH,
    AuthenticationFailedError,
    CommandFailedError,
    ConfigError,
    DeviceUnreachableError,
    HostKeyRejectedError,
    InventoryError,
    UnexpectedShellError,
)
from pipeline.secrets import SecretResolver, read_inventory
from pipeline.settings import Settings, SshSettings
from sftlab.fleet.keys import KeyPool
from sftlab.fleet.runner import LabRunner
from sftlab.fleet.spec import build_spec
from tests.lab.fixtures import MakeLab, RunningLab
from tests.lab.test_history import wait_until_sessions_end

pytestmark = pytest.mark.lab

JUMP = Route("jump", "jump-1")
# Every login variant of device-facts 12, one device each, plus a plain FTD (ftd-005).
VARIANTS: dict[str, dict[str, Any]] = {
    "ftd-001": {"sudo": "lecture"},
    "ftd-002": {"sudo": "cached"},
    "ftd-003": {"last_login": True},
    "ftd-004": {"home": "/Volume/home/admin"},
    "ftd-006": {"wrong_password": True},
    "ftd-007": {"host_key_changed": True},
    "fmc-secondary": {"lands_in": "bash"},
}


def ssh_settings(**changes: Any) -> SshSettings:
    base: dict[str, Any] = {
        "connect_timeout": 1.0,
        "banner_timeout": 5.0,
        "auth_timeout": 5.0,
        "command_timeout": 20.0,
    }
    return SshSettings(**(base | changes))


def factory(lab: RunningLab, **changes: Any) -> SessionFactory:
    inventory = read_inventory(lab.directory / "inventory.yaml")
    settings = Settings(ssh=ssh_settings(**changes))
    return SessionFactory(inventory, "lab", SecretResolver(inventory, {}), settings)


def login(lab: RunningLab, name: str) -> Login:
    target = lab.target(name)
    return Login(name, target.host, target.port, target.username, SecretStr(target.password))


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory, key_pool: KeyPool) -> Iterator[RunningLab]:
    """A fleet with one device per login variant; tests only look at it (or write scratch files)."""
    directory = tmp_path_factory.mktemp("variants-lab")
    runner = LabRunner(build_spec({"ftds": 7, "devices": VARIANTS}, source="test"), directory, keys=key_pool)
    fleet = runner.start()
    yield RunningLab(runner, fleet, directory)
    runner.stop()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, key_pool: KeyPool) -> Iterator[RunningLab]:
    """The `mixed` scenario: ftd-003 reachable only through jump-1, ftd-004 reachable by no route."""
    directory = tmp_path_factory.mktemp("mixed-lab")
    runner = LabRunner(
        build_spec({"ftds": 4, "scenarios": ["mixed"]}, source="test"), directory, keys=key_pool
    )
    fleet = runner.start()
    yield RunningLab(runner, fleet, directory)
    runner.stop()


@pytest.fixture(scope="module")
def ftd(variants: RunningLab) -> Iterator[DeviceSession]:
    """One root session on the plain FTD, shared by the command tests."""
    session = factory(variants).open("ftd-005", DIRECT)
    yield session
    session.close()


def root_check(session: DeviceSession) -> str:
    """`id -u` must be 0; returns the working directory the climb ended in."""
    assert session.run("id -u").output == "0\n"
    return session.run("pwd").output.strip()


# ---------------------------------------------------------------- the ladder, every variant


@pytest.mark.parametrize(
    ("device", "home"), [("ftd-005", "/home/admin"), ("fmc-primary", "/Volume/home/admin")]
)
def test_ftd_and_fmc_climb_to_root(variants: RunningLab, device: str, home: str) -> None:
    session = factory(variants).open(device, DIRECT)
    try:
        assert session.device == device and session.route == DIRECT
        assert root_check(session) == home
    finally:
        session.close()


@pytest.mark.parametrize(
    ("device", "home"),
    [
        ("fmc-secondary", "/Volume/home/admin"),  # lands in bash
        ("ftd-001", "/home/admin"),  # sudo lecture
        ("ftd-002", "/home/admin"),  # cached sudo: no Password:
        ("ftd-003", "/home/admin"),  # Last login: line
        ("ftd-004", "/Volume/home/admin"),  # FTD home as in T225502
    ],
)
def test_login_variants_reach_root(variants: RunningLab, device: str, home: str) -> None:
    session = factory(variants).open(device, DIRECT)
    try:
        assert root_check(session) == home
    finally:
        session.close()


def test_wrong_admin_password_is_an_authentication_failure(variants: RunningLab) -> None:
    with pytest.raises(AuthenticationFailedError) as caught:
        factory(variants).open("ftd-006", DIRECT)
    assert "'admin'" in str(caught.value)
    assert variants.secrets["fleet-admin"] not in str(caught.value)


def test_wrong_sudo_password_fails_after_one_try(variants: RunningLab) -> None:
    wrong = "not-the-admin-password"
    with pytest.raises(AuthenticationFailedError) as caught:
        FabricSession.open(
            login(variants, "ftd-005"),
            route=DIRECT,
            ssh=ssh_settings(),
            known_hosts=variants.known_hosts,
            sudo_password=SecretStr(wrong),
        )
    assert "sudo" in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in repr(caught.value.args)


# ---------------------------------------------------------------- host keys


def test_changed_host_key_is_refused_even_with_tofu(variants: RunningLab) -> None:
    for tofu in (False, True):
        with pytest.raises(HostKeyRejectedError) as caught:
            factory(variants, trust_on_first_use=tofu).open("ftd-007", DIRECT)
        assert str(variants.known_hosts) in str(caught.value)
        assert caught.value.changed and "differs" in str(caught.value)
        assert TOFU_SWITCH not in str(caught.value)  # TOFU would not help: don't suggest it


def test_unknown_host_refused_then_trusted_on_first_use_and_recorded(
    variants: RunningLab, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    other = (
        "[127.0.0.99]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    )
    known_hosts.write_text(other)  # someone else's entry, no final newline
    with pytest.raises(HostKeyRejectedError) as caught:
        factory(variants, known_hosts=known_hosts).open("ftd-005", DIRECT)
    assert str(known_hosts) in str(caught.value) and TOFU_SWITCH in str(caught.value)
    assert known_hosts.read_text() == other

    factory(variants, known_hosts=known_hosts, trust_on_first_use=True).open("ftd-005", DIRECT).close()
    target = variants.target("ftd-005")
    first, recorded = known_hosts.read_text().splitlines()
    assert first == other and recorded.startswith(f"[{target.host}]:{target.port} ssh-ed25519 ")
    assert recorded.split()[1:] == _lab_key_line(variants, target.host, target.port)

    # Now known: accepted without TOFU.
    factory(variants, known_hosts=known_hosts).open("ftd-005", DIRECT).close()


def _lab_key_line(lab: RunningLab, host: str, port: int) -> list[str]:
    for line in lab.known_hosts.read_text().splitlines():
        if line.startswith(f"[{host}]:{port} "):
            return line.split()[1:]
    raise AssertionError(f"[{host}]:{port} not in the lab's known_hosts")


def test_a_known_hosts_file_changed_between_sessions_is_read_again(
    variants: RunningLab, tmp_path: Path
) -> None:
    """The file is parsed once per version, not per session: an edit (a key replaced, as after a device was
    rebuilt, or a line removed) counts from the next session on."""
    target = variants.target("ftd-005")
    known_hosts = tmp_path / "known_hosts"
    line = f"[{target.host}]:{target.port} {' '.join(_lab_key_line(variants, target.host, target.port))}\n"
    known_hosts.write_text(line)
    factory(variants, known_hosts=known_hosts).open("ftd-005", DIRECT).close()

    other_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    known_hosts.write_text(f"[{target.host}]:{target.port} {other_key}\n")
    with pytest.raises(HostKeyRejectedError) as caught:
        factory(variants, known_hosts=known_hosts).open("ftd-005", DIRECT)
    assert caught.value.changed

    known_hosts.write_text("")
    with pytest.raises(HostKeyRejectedError) as caught:
        factory(variants, known_hosts=known_hosts).open("ftd-005", DIRECT)
    assert not caught.value.changed

    known_hosts.write_text("[127.0.0.1]:1 not-a-key-line\n")
    with pytest.raises(ConfigError, match="line 1"):
        factory(variants, known_hosts=known_hosts).open("ftd-005", DIRECT)


def test_unknown_jump_server_is_refused(mixed: RunningLab, tmp_path: Path) -> None:
    target = mixed.target("ftd-003")
    known_hosts = tmp_path / "known_hosts"
    # Only the device is known, not the jump server in front of it.
    known_hosts.write_text(
        f"[{target.host}]:{target.port} {' '.join(_lab_key_line(mixed, target.host, target.port))}\n"
    )
    with pytest.raises(HostKeyRejectedError, match="known_hosts") as caught:
        factory(mixed, known_hosts=known_hosts).open("ftd-003", JUMP)
    assert caught.value.device == "jump-1"  # the jump server's refusal, not ftd-003's


# ---------------------------------------------------------------- routes


def test_routes_for_direct_then_jump(mixed: RunningLab) -> None:
    sessions = factory(mixed)
    assert sessions.routes_for("ftd-003") == [DIRECT, JUMP]
    assert sessions.routes_for("fmc-primary") == [DIRECT]
    with pytest.raises(InventoryError, match="no jump server"):
        sessions.open("fmc-primary", JUMP)
    with pytest.raises(InventoryError, match="no FMC or FTD named 'jump-1'"):
        sessions.open("jump-1", DIRECT)


def test_refused_direct_route_is_unreachable(mixed: RunningLab) -> None:
    with pytest.raises(DeviceUnreachableError, match="refused") as caught:
        factory(mixed).open("ftd-003", DIRECT)
    assert caught.value.retryable and caught.value.route == "direct"


def test_dropped_direct_route_times_out_after_the_connect_timeout(mixed: RunningLab) -> None:
    with pytest.raises(DeviceUnreachableError, match="timed out"):
        factory(mixed, connect_timeout=1.0).open("ftd-004", DIRECT)


def test_jump_only_device_via_its_jump_server(mixed: RunningLab) -> None:
    sessions = factory(mixed)
    session = sessions.open("ftd-003", sessions.routes_for("ftd-003")[1])
    try:
        assert session.route == JUMP
        assert root_check(session) == "/home/admin"
    finally:
        session.close()


def test_device_with_no_route_fails_both_ways(mixed: RunningLab) -> None:
    sessions = factory(mixed)
    for route in sessions.routes_for("ftd-004"):
        with pytest.raises(DeviceUnreachableError) as caught:
            sessions.open("ftd-004", route)
        assert caught.value.route == str(route)
    assert "jump server could not open a connection" in str(caught.value)


# ---------------------------------------------------------------- OpenSSH config


def test_the_users_ssh_config_is_never_read(
    variants: RunningLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Were ~/.ssh/config read, every host would be redirected to an address where nothing listens.
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host *\n  HostName 127.0.0.9\n  ProxyJump nowhere\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    factory(variants).open("ftd-005", DIRECT).close()


def test_a_named_ssh_config_is_read(variants: RunningLab, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  HostName 127.0.0.9\n")
    with pytest.raises(DeviceUnreachableError, match=r"127\.0\.0\.9"):
        factory(variants, ssh_config=config).open("ftd-005", DIRECT)
    with pytest.raises(ConfigError, match="missing"):
        factory(variants, ssh_config=tmp_path / "missing").open("ftd-005", DIRECT)


# ---------------------------------------------------------------- commands


def test_exit_codes_and_output(ftd: DeviceSession) -> None:
    assert ftd.run("false", check=False).exit_code == 1
    with pytest.raises(CommandFailedError) as caught:
        ftd.run("echo complaint; exit_code() { return 3; }; exit_code")
    assert caught.value.exit_code == 3 and "complaint" in caught.value.output_tail
    assert ftd.run("echo hello").output == "hello\n"
    assert ftd.run("printf 'one\\ntwo\\n\\nfour\\n'").output == "one\ntwo\n\nfour\n"


def test_output_that_looks_like_prompts(ftd: DeviceSession) -> None:
    tricky = "> \n# \nroot@ftd-005:/home/admin# \nadmin@ftd-005:~$ \nPassword:"
    result = ftd.run("printf '" + tricky.replace("\n", "\\n") + "'")
    assert result.output == tricky
    assert ftd.run("echo after").output == "after\n"


def test_command_timeout_closes_the_session(variants: RunningLab) -> None:
    session = factory(variants).open("ftd-005", DIRECT)
    with pytest.raises(DeviceUnreachableError, match=r"no answer to 'sleep' within 0\.5 s"):
        session.run("sleep 5", timeout=0.5)
    with pytest.raises(DeviceUnreachableError, match="closed"):
        session.run("true")
    session.close()


def test_answers_to_generate_certs(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1)
    session = factory(lab).open("fmc-primary", DIRECT)
    try:
        yes = Answer(r"Do you want to continue\? \[yes/no\]:", "yes")
        result = session.run("generate_certs.pl", answers=[yes, yes], timeout=120)
        assert "Current ca_root expires in" in result.output
        assert result.output.count("[yes/no]:yes") == 2
    finally:
        session.close()


# ---------------------------------------------------------------- files


def test_read_file_round_trips_binary(variants: RunningLab, ftd: DeviceSession) -> None:
    data = os.urandom(5000) + bytes(range(256))
    host = variants.file("ftd-005", "/var/tmp/blob.bin")
    host.write_bytes(data)
    assert ftd.read_file("/var/tmp/blob.bin") == data
    with pytest.raises(CommandFailedError, match="No such file"):
        ftd.read_file("/var/tmp/missing.bin")


def test_write_file_atomic_exact_bytes_mode_and_no_temp_files(
    variants: RunningLab, ftd: DeviceSession
) -> None:
    uuid = variants.device("fmc-primary")["uuid"]
    path = f"/var/sf/peers/{uuid}/scratch-cert.pem"
    for data in (os.urandom(3000), b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", b""):
        ftd.write_files_atomic({path: data})
        host = variants.file("ftd-005", path)
        assert host.read_bytes() == data
        assert stat.S_IMODE(host.stat().st_mode) == 0o644
        assert list(host.parent.glob(TEMP_GLOB)) == []
    assert ftd.read_file(path) == b""


def test_a_failed_write_leaves_the_target_and_no_temp_files(variants: RunningLab, ftd: DeviceSession) -> None:
    folder = variants.file("ftd-005", "/var/tmp/failing")
    folder.mkdir()
    (folder / "target").write_bytes(b"before")
    (folder / "a-folder").mkdir()
    with pytest.raises(CommandFailedError, match="chmod and chown the temp files"):
        ftd.write_files_atomic({"/var/tmp/failing/target": b"after"}, owner="nosuchuser:nosuchgroup")
    with pytest.raises(CommandFailedError, match="rename into place"):
        ftd.write_files_atomic({"/var/tmp/failing/a-folder": b"after"})
    with pytest.raises(CommandFailedError, match="upload /var/tmp/no-such-folder/target"):
        ftd.write_files_atomic({"/var/tmp/no-such-folder/target": b"after"})
    assert (folder / "target").read_bytes() == b"before"
    assert sorted(p.name for p in folder.iterdir()) == ["a-folder", "target"]
    assert list((folder / "a-folder").iterdir()) == []
    with pytest.raises(ValueError, match="absolute, normal file paths"):
        ftd.write_files_atomic({"relative/path": b"x"})
    with pytest.raises(ValueError, match="owner must be user:group"):
        ftd.write_files_atomic({"/var/tmp/x": b"x"}, owner="root; reboot")
    assert ftd.run("echo still usable").output == "still usable\n"


def test_a_set_is_renamed_only_when_every_file_checked_out(variants: RunningLab, ftd: DeviceSession) -> None:
    """Three files in one write: a target that cannot be replaced (a folder) stops the renames of all."""
    folder = variants.file("ftd-005", "/var/tmp/set")
    folder.mkdir()
    for name in ("a", "b"):
        (folder / name).write_bytes(b"old " + name.encode())
    (folder / "c").mkdir()
    files = {f"/var/tmp/set/{n}": os.urandom(2000) for n in ("a", "b", "c")}
    with pytest.raises(CommandFailedError, match="rename into place"):
        ftd.write_files_atomic(files)
    assert [(folder / n).read_bytes() for n in ("a", "b")] == [b"old a", b"old b"]
    assert sorted(p.name for p in folder.iterdir()) == ["a", "b", "c"]
    del files["/var/tmp/set/c"]
    ftd.write_files_atomic(files, mode=0o600)
    for path, data in files.items():
        host = variants.file("ftd-005", path)
        assert host.read_bytes() == data
        assert stat.S_IMODE(host.stat().st_mode) == 0o600


def test_a_tree_of_thousands_of_files_is_read_in_one_command(
    variants: RunningLab, ftd: DeviceSession
) -> None:
    """More paths than one command line of `stat` takes (xargs runs it in several batches, in order): every
    file back byte for byte, the filters applied, and files that are not regular left out."""
    root = variants.file("ftd-005", "/var/tmp/tree")
    root.mkdir()
    wanted: dict[str, bytes] = {}
    for n in range(2500):
        folder = root / f"peer-{n // 10:04d}-{'x' * 40}"
        folder.mkdir(exist_ok=True)
        data = os.urandom(n % 7) if n % 5 else b""
        (folder / f"sftunnel-{n}.pem").write_bytes(data)
        (folder / f"other-{n}.txt").write_bytes(b"not wanted")
        wanted[f"/var/tmp/tree/{folder.name}/sftunnel-{n}.pem"] = data
    (root / "peer-0000-link.pem").symlink_to(root / "nowhere")
    assert read_tree(ftd, ("/var/tmp/tree", "/var/tmp/no-such-root"), names=("sftunnel-*.pem",)) == wanted
    assert read_files(ftd, [*list(wanted)[:3], "/var/tmp/tree", "/var/tmp/tree/missing"]) == dict(
        list(wanted.items())[:3]
    )


def test_a_long_command_brings_no_continuation_prompts_back(
    ftd: DeviceSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root's `PS2` is emptied with its history: a write is typed as about 40 backslash-continued lines, and
    bash's `> ` for each would be 40 more packets from sshd, and reads in the worker, in every push."""
    assert isinstance(ftd, FabricSession)
    received: list[str] = []
    read = ftd._read

    def recording(deadline: float, label: str, *, on_timeout: float | None) -> str | None:
        text = read(deadline, label, on_timeout=on_timeout)
        received.append(text or "")
        return text

    monkeypatch.setattr(ftd, "_read", recording)
    ftd.write_files_atomic({f"/var/tmp/ps2-{n}.pem": os.urandom(1700) for n in range(3)})
    text = "".join(received).replace("\r\n", "\n")
    assert text.count("\\\n") > 30  # the echo of the continued lines came back through `_read`
    assert "\n> " not in text


def lab_bytes(lab: RunningLab, name: str) -> int:
    """What the lab counted on the device's one open SSH session: the count `drop_after_bytes` cuts at."""
    (session,) = lab.fleet.devices[name].endpoint.sessions
    return session.bytes_counted


# Where the cut lands, relative to the bytes one write costs: at its first command, mid-upload, and in the
# rename's typed line or the markers around it (60 bytes before the end: the next prompt, which may or may
# not be counted when a count is read, is 26 bytes, so the cut stays before the end marker's last byte).
CUTS = {"first-command": lambda cost: 1, "upload": lambda cost: cost // 2, "rename": lambda cost: cost - 60}


@pytest.mark.parametrize("cut", CUTS.values(), ids=CUTS.keys())
def test_connection_cut_mid_write_leaves_old_or_new_never_partial(
    make_lab: MakeLab, cut: Callable[[int], int]
) -> None:
    lab = make_lab(ftds=1)
    path = "/var/tmp/target.bin"
    old, new = b"old contents\n" * 100, os.urandom(30_000)
    host = lab.file("ftd-001", path)
    session = factory(lab).open("ftd-001", DIRECT)
    # Calibrate: an identical write (same sizes, same name lengths) costs the same bytes.
    before = lab_bytes(lab, "ftd-001")
    session.write_files_atomic({path: os.urandom(len(new))})
    cost = lab_bytes(lab, "ftd-001") - before
    host.write_bytes(old)
    lab.set_knobs("ftd-001", drop_after_bytes=lab_bytes(lab, "ftd-001") + cut(cost))
    with pytest.raises(DeviceUnreachableError, match="connection lost"):
        session.write_files_atomic({path: new})
    session.close()
    assert host.read_bytes() in (old, new)
    for leftover in host.parent.glob(TEMP_GLOB):
        assert leftover.name.startswith(".target.bin.sftrenew-")


def test_slow_device_still_works(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1, devices={"ftd-001": {"latency_ms": 200}})
    session = factory(lab).open("ftd-001", DIRECT)
    try:
        assert root_check(session) == "/home/admin"
        session.write_files_atomic({"/var/tmp/slow.bin": b"x" * 700})
        assert session.read_file("/var/tmp/slow.bin") == b"x" * 700
    finally:
        session.close()


# ---------------------------------------------------------------- secrets stay secret


def test_no_password_or_file_content_in_logs_or_errors(
    variants: RunningLab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pipeline")
    caplog.set_level(logging.DEBUG, logger="paramiko")
    password = variants.secrets["fleet-admin"]
    key = b"-----BEGIN RSA PRIVATE KEY-----\n" + base64.b64encode(os.urandom(1200)) + b"\n-----END RSA"
    encoded = base64.b64encode(key).decode()
    # The password, every line of the key, and every 40-character piece of what travelled as base64.
    secrets = [password, *key.decode().splitlines()[1:-1], *(encoded[i : i + 40] for i in range(0, 2160, 40))]
    messages: list[str] = []

    session = factory(variants).open("ftd-001", DIRECT)
    session.write_files_atomic({"/var/tmp/key.pem": key})
    assert session.read_file("/var/tmp/key.pem") == key
    with pytest.raises(CommandFailedError) as failed:
        session.run(f"echo {password}; false")
    messages.append(str(failed.value))
    session.close()
    with pytest.raises(AuthenticationFailedError) as denied:
        FabricSession.open(
            login(variants, "ftd-005"),
            route=DIRECT,
            ssh=ssh_settings(),
            known_hosts=variants.known_hosts,
            sudo_password=SecretStr(password + "-wrong"),
        )
    messages.append(str(denied.value))

    assert "write /var/tmp/key.pem" in caplog.text  # the write was logged, as a summary
    for secret in secrets:
        assert secret not in caplog.text
        for message in messages:
            assert secret not in message
    assert "**********" in messages[0]


def history_files(lab: RunningLab, name: str) -> dict[str, str]:
    """Every `.bash_history` in the device's folder (any user's), by device path."""
    root = Path(lab.device(name)["root"])
    return {
        "/" + str(path.relative_to(root)): path.read_text() for path in sorted(root.rglob(".bash_history"))
    }


@pytest.mark.parametrize(
    ("device", "home"), [("ftd-003", "/home/admin"), ("fmc-primary", "/Volume/home/admin")]
)
def test_no_secret_reaches_a_shell_history(variants: RunningLab, device: str, home: str) -> None:
    password = variants.secrets["fleet-admin"]
    key = (
        b"-----BEGIN PRIVATE KEY-----\n"
        + base64.encodebytes(os.urandom(1200))
        + b"-----END PRIVATE KEY-----\n"
    )
    encoded = base64.b64encode(key).decode()
    session = factory(variants).open(device, DIRECT)
    try:
        session.write_files_atomic({"/var/tmp/history-probe.pem": key}, mode=0o600)
        assert session.read_file("/var/tmp/history-probe.pem") == key
    finally:
        session.close()
    wait_until_sessions_end(variants, device)

    files = history_files(variants, device)
    # The lab does record: the admin's bash kept `sudo su` (the climb's one line below root).
    assert "sudo su" in files[f"{home}/.bash_history"].splitlines()
    recorded = "\n".join(files.values())
    # Every 64 characters of the base64 that travelled (each typed chunk holds several), every key line.
    pieces = [encoded[i : i + 64] for i in range(0, len(encoded) - 64, 64)]
    for secret in [password, *key.decode().splitlines()[1:-1], *pieces]:
        assert secret not in recorded
    for trace in ("printf", ".b64", "sftrenew-", "history-probe"):
        assert trace not in recorded


def test_a_root_shell_that_keeps_history_is_refused_before_anything_is_typed(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1)
    endpoint = lab.fleet.devices["ftd-001"].endpoint
    # A bash where `set +o history` does nothing: history stays on, and the check says so.
    endpoint.extra_env = {**endpoint.extra_env, "BASH_FUNC_set%%": "() { :; }"}
    with pytest.raises(UnexpectedShellError, match=r"history off") as refused:
        factory(lab).open("ftd-001", DIRECT)
    assert lab.secrets["fleet-admin"] not in str(refused.value)
    wait_until_sessions_end(lab, "ftd-001")
    # Hung up, that bash saved what it had read: the check line at most, nothing after it.
    root = history_files(lab, "ftd-001").get("/root/.bash_history", "")
    assert all("set +o history" in line for line in root.splitlines())
