"""The login and the CLISH -> expert -> root ladder, over real SSH, on FTD and FMC, in every variant."""

from __future__ import annotations

import re

import paramiko
import pytest

from tests.lab.client import ADMIN_PROMPT, CLISH_PROMPT, ROOT_PROMPT, Shell, open_client
from tests.lab.fixtures import MakeLab, RunningLab

pytestmark = pytest.mark.lab

BANNER_FTD = "Cisco Firepower Threat Defense for VMware v7.2.5 (build 208)"
BANNER_FMC = "Cisco Secure Firewall Management Center for VMware v7.2.9 (build 78)"


@pytest.mark.parametrize(
    ("device", "banner", "root_prompt"),
    [
        ("ftd-001", BANNER_FTD, "root@ftd-001:/home/admin# "),
        ("fmc-primary", BANNER_FMC, "root@fmc-primary:/Volume/home/admin# "),
    ],
)
def test_ladder_clish_expert_root(shared_lab: RunningLab, device: str, banner: str, root_prompt: str) -> None:
    with shared_lab.shell(device) as shell:
        login = shell.expect(CLISH_PROMPT)
        assert "Copyright 2004-" in login and banner in login
        assert "Last login" not in login
        shell.send("expert")
        assert shell.expect(ADMIN_PROMPT).endswith(f"admin@{device}:~$ ")
        shell.send("sudo su")
        shell.expect("Password:")
        shell.send(shared_lab.secrets["fleet-admin"])
        assert shell.expect(ROOT_PROMPT).endswith(root_prompt)
        assert shell.run("id -un; echo $HOME").split() == ["root", "/root"]
        shell.send("exit")
        shell.expect(ADMIN_PROMPT)
        shell.send("exit")
        shell.expect(CLISH_PROMPT)
        shell.send("exit")
        with pytest.raises(EOFError):
            shell.expect("never", timeout=5)


def test_password_is_not_echoed(shared_lab: RunningLab) -> None:
    password = shared_lab.secrets["fleet-admin"]
    with shared_lab.root_shell("ftd-002") as shell:
        assert password not in shell.transcript


def test_show_version_gives_the_uuid(shared_lab: RunningLab) -> None:
    uuid = shared_lab.device("ftd-003")["uuid"]
    with shared_lab.shell("ftd-003") as shell:
        shell.expect(CLISH_PROMPT)
        shell.send("show version")
        out = shell.expect(CLISH_PROMPT)
        assert re.search(rf"UUID\s+: {uuid}\n", out)
        shell.send("no such command")
        assert "Syntax error" in shell.expect(CLISH_PROMPT)


def test_wrong_sudo_password_three_tries(shared_lab: RunningLab) -> None:
    with shared_lab.shell("ftd-001") as shell:
        shell.expect(CLISH_PROMPT)
        shell.send("expert")
        shell.expect(ADMIN_PROMPT)
        shell.send("sudo su")
        for _ in range(2):
            shell.expect("Password:")
            shell.send("wrong")
            shell.expect("Sorry, try again.\n")
        shell.expect("Password:")
        shell.send("wrong")
        shell.expect("sudo: 3 incorrect password attempts\n")
        shell.expect(ADMIN_PROMPT)
        assert shell.run("id -un >/dev/null; echo still-admin", ADMIN_PROMPT) == "still-admin\n"


def test_tools_refuse_a_non_root_user(shared_lab: RunningLab) -> None:
    with shared_lab.shell("fmc-primary") as shell:
        shell.expect(CLISH_PROMPT)
        shell.send("expert")
        shell.expect(ADMIN_PROMPT)
        out = shell.run("sftunnel_status.pl; echo rc=$?", ADMIN_PROMPT)
        assert "must be run as root" in out and "rc=1" in out


def test_login_variants(make_lab: MakeLab) -> None:
    lab = make_lab(
        ftds=1,
        devices={
            "fmc-primary": {"lands_in": "bash", "sudo": "lecture"},
            "fmc-secondary": {"sudo": "cached", "last_login": True},
            "ftd-001": {"home": "/Volume/home/admin", "last_login": True},
        },
    )
    with lab.shell("fmc-primary") as shell:
        login = shell.expect(ADMIN_PROMPT)
        assert "> " not in login.splitlines()[-1] and login.endswith("admin@fmc-primary:~$ ")
        shell.send("sudo su")
        lecture = shell.expect("Password:")
        assert "We trust you have received the usual lecture" in lecture
        shell.send(lab.secrets["fleet-admin"])
        shell.expect(ROOT_PROMPT)
    with lab.shell("fmc-secondary") as shell:
        assert re.match(
            r"Last login: \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} from 127\.", shell.expect(CLISH_PROMPT)
        )
        shell.send("expert")
        shell.expect(ADMIN_PROMPT)
        shell.send("sudo su")
        assert "Password" not in shell.expect(ROOT_PROMPT)
    with lab.root_shell("ftd-001") as shell:
        assert shell.transcript.endswith("root@ftd-001:/Volume/home/admin# ")
        assert shell.run("pwd") == "/Volume/home/admin\n"


def test_wrong_admin_password_is_an_auth_failure(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1, devices={"ftd-001": {"wrong_password": True}})
    with pytest.raises(paramiko.AuthenticationException):
        open_client(lab.target("ftd-001"), lab.known_hosts)


def test_changed_host_key_is_refused(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=2, devices={"ftd-001": {"host_key_changed": True}})
    with pytest.raises(paramiko.SSHException, match=r"not found in known_hosts|does not match"):
        open_client(lab.target("ftd-001"), lab.known_hosts)
    open_client(lab.target("ftd-002"), lab.known_hosts).close()
    lab.set_knobs("ftd-002", host_key_changed=True)
    with pytest.raises(paramiko.SSHException):
        open_client(lab.target("ftd-002"), lab.known_hosts)


def test_connection_dropped_after_n_bytes(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1)
    with lab.root_shell("ftd-001") as shell:
        lab.set_knobs("ftd-001", drop_after_bytes=1)
        shell.send("head -c 100000 /dev/zero | base64")
        with pytest.raises(EOFError):
            shell.expect("never", timeout=10)


def test_latency_knob_delays_each_command(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1, devices={"ftd-001": {"latency_ms": 300}})
    with lab.root_shell("ftd-001") as shell:
        shell.send("echo slow")
        # The reply cannot come before the latency has passed; with 300 ms it is not there after 100 ms.
        with pytest.raises(TimeoutError):
            shell.expect("^slow\n", timeout=0.1)
        shell.expect(re.compile(r"^slow\n", re.M), timeout=5)


def test_a_shell_without_pty_gets_no_echo(shared_lab: RunningLab) -> None:
    with Shell(open_client(shared_lab.target("ftd-004"), shared_lab.known_hosts), pty=False) as shell:
        shell.expect(CLISH_PROMPT)
        shell.send("show version")
        out = shell.expect(CLISH_PROMPT)
        assert not out.startswith("show version")
        assert out.startswith("-----------------[ ftd-004 ]")
