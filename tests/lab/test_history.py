"""The lab's bash keeps history as a device's bash does: typed lines reach `~/.bash_history` of the user
whose shell it is, when that shell exits or hangs up, unless history was turned off in it.

This is what makes the product's "no secret in shell history" rule testable: a lab that threw typed lines
away (as it once did, with `HISTFILE=""`) would pass any client that types a private key into bash.
Every test uses its own token in the lines it types, so the tests of this module can share one fleet.
"""

from __future__ import annotations

import re
import secrets
import socket
import stat
import time
from pathlib import Path

import pytest

from tests.lab.client import ADMIN_PROMPT, CLISH_PROMPT, ROOT_PROMPT, Shell, open_client
from tests.lab.fixtures import MakeLab, RunningLab

pytestmark = pytest.mark.lab

HOMES = {"ftd-001": "/home/admin", "fmc-primary": "/Volume/home/admin"}
GONE_S = 15.0


def token() -> str:
    return secrets.token_hex(6)


def wait_until_sessions_end(lab: RunningLab, name: str) -> None:
    """Until the device has no SSH session left: its shells have exited (or been hung up) and been reaped,
    so whatever they write on the way out is on disk."""
    deadline = time.monotonic() + GONE_S
    while lab.fleet.devices[name].endpoint.sessions:
        assert time.monotonic() < deadline, f"{name} still has a session after {GONE_S} s"
        time.sleep(0.05)


def history(lab: RunningLab, name: str, home: str) -> list[str]:
    """The lines of `<home>/.bash_history` on the device (none when the file does not exist)."""
    path = lab.file(name, f"{home}/.bash_history")
    return path.read_text().splitlines() if path.exists() else []


def climb_typing(lab: RunningLab, shell: Shell, admin_line: str, root_line: str) -> None:
    """CLISH -> expert, `admin_line` as admin, `sudo su`, `root_line` as root."""
    shell.expect(CLISH_PROMPT)
    shell.send("expert")
    shell.expect(ADMIN_PROMPT)
    shell.run(admin_line, ADMIN_PROMPT)
    shell.send("sudo su")
    shell.expect("Password:")
    shell.send(lab.secrets["fleet-admin"])
    shell.expect(ROOT_PROMPT)
    shell.run(root_line)


@pytest.mark.parametrize("device", HOMES)
def test_exit_writes_each_users_history(shared_lab: RunningLab, device: str) -> None:
    tag = token()
    admin_line, root_line = f"echo admin-{tag}", f"echo root-{tag} > /var/tmp/{tag}"
    with shared_lab.shell(device) as shell:
        climb_typing(shared_lab, shell, admin_line, root_line)
        shell.send("exit")
        shell.expect(ADMIN_PROMPT)
        shell.send("exit")
        shell.expect(CLISH_PROMPT)
        shell.send("exit")
    wait_until_sessions_end(shared_lab, device)

    root = history(shared_lab, device, "/root")
    admin = history(shared_lab, device, HOMES[device])
    # The root line is recorded as typed: device paths, not the lab's host paths.
    assert root[-2:] == [root_line, "exit"]
    assert shared_lab.file(device, f"/var/tmp/{tag}").read_text() == f"root-{tag}\n"
    # `sudo su` is typed at the admin's bash; the password is read by sudo, never by bash.
    assert admin[-3:] == [admin_line, "sudo su", "exit"]
    assert shared_lab.secrets["fleet-admin"] not in "\n".join(root + admin)
    assert admin_line not in root and root_line not in admin
    for home in ("/root", HOMES[device]):
        assert stat.S_IMODE(shared_lab.file(device, f"{home}/.bash_history").stat().st_mode) == 0o600


def drop(shell: Shell) -> None:
    """Cut the TCP connection under the SSH session, as a network failure would: no exit, no channel close."""
    transport = shell.client.get_transport()
    assert transport is not None
    transport.sock.shutdown(socket.SHUT_RDWR)
    shell.client.close()


def test_a_dropped_connection_still_writes_history(shared_lab: RunningLab) -> None:
    tag = token()
    admin_line, root_line = f"echo admin-{tag}", f"echo root-{tag}"
    shell = shared_lab.shell("ftd-002")
    climb_typing(shared_lab, shell, admin_line, root_line)
    drop(shell)
    wait_until_sessions_end(shared_lab, "ftd-002")

    # Bash saves its history when it is hung up; nothing typed `exit`.
    assert history(shared_lab, "ftd-002", "/root")[-1] == root_line
    assert history(shared_lab, "ftd-002", "/home/admin")[-2:] == [admin_line, "sudo su"]


def test_ctrl_d_leaves_one_level_and_is_not_recorded(shared_lab: RunningLab) -> None:
    tag = token()
    with shared_lab.shell("ftd-001") as shell:
        climb_typing(shared_lab, shell, f"echo admin-{tag}", f"echo root-{tag}")
        shell.channel.sendall(b"\x04")
        shell.expect(ADMIN_PROMPT)
        shell.run(f"echo back-{tag}", ADMIN_PROMPT)
    wait_until_sessions_end(shared_lab, "ftd-001")

    assert history(shared_lab, "ftd-001", "/root")[-1] == f"echo root-{tag}"
    # The channel was closed with the admin's bash still running: hung up, it saved its history too.
    assert history(shared_lab, "ftd-001", "/home/admin")[-3:] == [
        f"echo admin-{tag}",
        "sudo su",
        f"echo back-{tag}",
    ]


@pytest.mark.parametrize("turn_off", ["set +o history", "unset HISTFILE", "HISTFILE=/dev/null"])
def test_history_turned_off_keeps_later_lines_out(shared_lab: RunningLab, turn_off: str) -> None:
    tag = token()
    admin_line, secret_line = f"echo admin-{tag}", f"printf '%s' 'secret-{tag}' > /dev/null"
    with shared_lab.shell("ftd-003") as shell:
        climb_typing(shared_lab, shell, admin_line, turn_off)
        shell.run(secret_line)
        shell.send("exit")
        shell.expect(ADMIN_PROMPT)
        shell.send("exit")
        shell.expect(CLISH_PROMPT)
        shell.send("exit")
    wait_until_sessions_end(shared_lab, "ftd-003")

    assert admin_line in history(shared_lab, "ftd-003", "/home/admin")  # this session's history is kept...
    assert not any(tag in line for line in history(shared_lab, "ftd-003", "/root"))  # ...but not root's
    # `/dev/null` is the host's, not a file in the device folder.
    assert not shared_lab.file("ftd-003", "/dev").exists()
    assert stat.S_ISCHR(Path("/dev/null").stat().st_mode)


def test_a_dropped_connection_after_history_was_turned_off_writes_nothing(shared_lab: RunningLab) -> None:
    tag = token()
    shell = shared_lab.shell("ftd-004")
    climb_typing(shared_lab, shell, f"echo admin-{tag}", "set +o history; unset HISTFILE")
    shell.run(f"echo secret-{tag}")
    drop(shell)
    wait_until_sessions_end(shared_lab, "ftd-004")

    assert not any(tag in line for line in history(shared_lab, "ftd-004", "/root"))
    assert f"echo admin-{tag}" in history(shared_lab, "ftd-004", "/home/admin")


def test_sudo_su_is_recorded_as_typed_and_obeys_histcontrol(shared_lab: RunningLab) -> None:
    tag = token()
    with shared_lab.shell("fmc-secondary") as shell:
        shell.expect(CLISH_PROMPT)
        shell.send("expert")
        shell.expect(ADMIN_PROMPT)
        shell.run("HISTCONTROL=ignorespace", ADMIN_PROMPT)
        shell.send(" sudo su")  # a leading space: bash's ignorespace keeps the line out
        shell.expect("Password:")
        shell.send(shared_lab.secrets["fleet-admin"])
        shell.expect(ROOT_PROMPT)
        shell.send("exit")
        shell.expect(ADMIN_PROMPT)
        shell.run(f"echo {tag}", ADMIN_PROMPT)
        shell.send("exit")
        shell.expect(CLISH_PROMPT)
        shell.send("exit")
    wait_until_sessions_end(shared_lab, "fmc-secondary")

    admin = history(shared_lab, "fmc-secondary", "/Volume/home/admin")
    assert admin[-3:] == ["HISTCONTROL=ignorespace", f"echo {tag}", "exit"]


def test_an_exec_request_is_not_recorded(shared_lab: RunningLab) -> None:
    """`ssh host command` runs a non-interactive shell, which keeps no history."""
    tag = token()
    client = open_client(shared_lab.target("jump-1"), shared_lab.known_hosts)
    try:
        _, stdout, _ = client.exec_command(f"echo exec-{tag}")
        assert stdout.read().decode() == f"exec-{tag}\n"
    finally:
        client.close()
    with Shell(open_client(shared_lab.target("jump-1"), shared_lab.known_hosts)) as shell:
        shell.expect(re.compile(r"operator@[\w.-]+:[^\n]*\$ $"))
        shell.send(f"echo login-{tag}; exit")
        with pytest.raises(EOFError):
            shell.expect("never", timeout=10)
    wait_until_sessions_end(shared_lab, "jump-1")

    lines = history(shared_lab, "jump-1", "/home/operator")
    assert f"echo login-{tag}; exit" in lines
    assert not any(f"exec-{tag}" in line for line in lines)


def test_stopping_the_lab_leaves_no_process_of_an_open_shell(make_lab: MakeLab) -> None:
    """The lab's stop hangs up every open shell, as sshd's exit would, and waits for it: bash saves its
    history and leaves; a job that ignores SIGHUP is killed. Nothing of a device outlives the lab (a bash
    left running once surfaced, tests later, as an unraisable ResourceWarning)."""
    lab = make_lab(ftds=1)
    tag = token()
    shell = lab.shell("ftd-001")
    climb_typing(lab, shell, f"echo admin-{tag}", f"echo root-{tag}")
    shell.run("nohup sleep 600 >/dev/null 2>&1 &")  # bash prints the job's number and pid
    pids = shell.run("echo $$ $!").split()
    assert len(pids) == 2 and all(pid.isdigit() for pid in pids), pids
    assert all(Path(f"/proc/{pid}").exists() for pid in pids)

    lab.runner.stop()

    deadline = time.monotonic() + GONE_S
    while left := [pid for pid in pids if alive(int(pid))]:
        assert time.monotonic() < deadline, f"still running after the lab stopped: {left}"
        time.sleep(0.05)
    assert f"echo root-{tag}" in history(lab, "ftd-001", "/root")  # hung up, bash saved its history
    shell.client.close()


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
