"""Device shells run real bash on a pty: device paths land in the device folder, output shows device paths.

Every test starts a real bash in a temporary device root; the async parts run under ``asyncio.run`` inside
plain tests (no pytest-asyncio), each event wait bounded so a broken shell fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sftlab.shell.bash import BashShell, Event, Exited, Output, Prompt
from sftlab.shell.pathmap import PathMap

T = TypeVar("T")
PREFIXES = ("/etc/sf", "/var/sf", "/var/tmp", "/var/log", "/home/admin", "/usr/local/sf/bin", "/root")
WAIT_S = 20.0
PROJECT = Path(__file__).resolve().parents[2]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


def make_root(base: Path) -> Path:
    root = base.resolve() / "dev"
    for sub in ("etc/sf", "var/sf/peers", "var/tmp/certs", "var/log", "home/admin", "root"):
        (root / sub).mkdir(parents=True)
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path)


def env_for(root: Path) -> dict[str, str]:
    return {
        "HOME": str(root / "home/admin"),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "USER": "admin",
        "LOGNAME": "admin",
        "TERM": "dumb",
        "LANG": "C.UTF-8",
    }


@asynccontextmanager
async def opened(root: Path, *, user_ns_root: bool = False) -> AsyncIterator[BashShell]:
    """A started shell whose first Prompt has been seen; closed on the way out."""
    shell = await BashShell.start(
        pathmap=PathMap(str(root), PREFIXES),
        cwd_host=root / "home/admin",
        env=env_for(root),
        user_ns_root=user_ns_root,
    )
    try:
        first = await next_event(shell)
        assert first == Prompt(0, "/home/admin")
        yield shell
    finally:
        await shell.close()


async def next_event(shell: BashShell) -> Event:
    return await asyncio.wait_for(shell.next_event(), WAIT_S)


async def until_prompt(shell: BashShell) -> tuple[str, Prompt]:
    out: list[str] = []
    while True:
        event = await next_event(shell)
        if isinstance(event, Prompt):
            return "".join(out), event
        assert isinstance(event, Output), f"bash ended early: {event}, output {''.join(out)!r}"
        out.append(event.text)


async def until_exit(shell: BashShell) -> tuple[str, Exited]:
    out: list[str] = []
    while True:
        event = await next_event(shell)
        if isinstance(event, Exited):
            return "".join(out), event
        if isinstance(event, Output):
            out.append(event.text)


async def sh(shell: BashShell, line: str) -> tuple[str, Prompt]:
    await shell.send_line(line)
    return await until_prompt(shell)


async def out_of(shell: BashShell, line: str) -> str:
    return (await sh(shell, line))[0]


def test_first_prompt_carries_the_device_cwd(root: Path) -> None:
    async def scenario() -> None:
        async with opened(root) as shell:
            assert shell.idle
            assert shell.cwd == "/home/admin"
            assert await out_of(shell, "pwd; echo $HOME") == "/home/admin\n/home/admin\n"

    run(scenario())


def test_heredoc_lands_in_the_device_folder_with_exact_bytes_and_raw_body(root: Path) -> None:
    body = [
        "-----BEGIN CERTIFICATE-----",
        "MIIDdzCCAl+gAwIBAgIUe1 /etc/sf/keys/sftunnel-cert.pem $HOME `x`",
        "  indented line with trailing spaces  ",
        "-----END CERTIFICATE-----",
    ]

    async def scenario() -> str:
        async with opened(root) as shell:
            await shell.send_line("cat > /var/tmp/certs/x.pem <<'EOF'")
            for line in body:
                await shell.send_line(line)
            await shell.send_line("EOF")
            out, prompt = await until_prompt(shell)
            assert prompt.status == 0
            return out

    out = run(scenario())
    assert out == "> " * (len(body) + 1)
    assert (root / "var/tmp/certs/x.pem").read_bytes() == ("\n".join(body) + "\n").encode()


def test_unquoted_dash_heredoc_strips_tabs_and_expands(root: Path) -> None:
    async def scenario() -> str:
        async with opened(root) as shell:
            for line in ("X=1; cat <<-END > /etc/sf/conf", "\tvalue=$X", "\tEND"):
                await shell.send_line(line)
            await until_prompt(shell)
            return await out_of(shell, "cat /etc/sf/conf")

    assert run(scenario()) == "value=1\n"
    assert (root / "etc/sf/conf").read_text() == "value=1\n"


def test_mv_chmod_stat(root: Path) -> None:
    async def scenario() -> str:
        async with opened(root) as shell:
            line = "umask 077; printf 'a\\n' > /var/tmp/f && mv /var/tmp/f /etc/sf/g && chmod 644 /etc/sf/g"
            return await out_of(shell, f"{line} && stat -c %a /etc/sf/g")

    assert run(scenario()) == "644\n"
    assert not (root / "var/tmp/f").exists()
    assert stat.S_IMODE((root / "etc/sf/g").stat().st_mode) == 0o644


def test_exit_status_reaches_prompt_and_dollar_question(root: Path) -> None:
    async def scenario() -> list[tuple[str, int]]:
        async with opened(root) as shell:
            results = []
            for line in ("false", "echo $?", "false; echo $?", "(exit 7)", "cat /etc/sf/nope"):
                out, prompt = await sh(shell, line)
                results.append((out, prompt.status))
            return results

    assert run(scenario()) == [
        ("", 1),
        ("1\n", 0),
        ("1\n", 0),
        ("", 7),
        ("cat: /etc/sf/nope: No such file or directory\n", 1),
    ]


def test_cd_changes_the_prompt_cwd(root: Path) -> None:
    async def scenario() -> None:
        async with opened(root) as shell:
            out, prompt = await sh(shell, "cd /var/sf/peers && pwd")
            assert out == "/var/sf/peers\n"
            assert prompt.cwd == shell.cwd == "/var/sf/peers"
            _, prompt = await sh(shell, "cd ~")
            assert prompt.cwd == "/home/admin"

    run(scenario())


def test_pipes_and_base64(root: Path) -> None:
    async def scenario() -> str:
        async with opened(root) as shell:
            return await out_of(shell, "echo hi | base64 | base64 -d")

    assert run(scenario()) == "hi\n"


def test_sha256sum_prints_the_device_path(root: Path) -> None:
    data = b"sftunnel\n"
    (root / "etc/sf/x").write_bytes(data)

    async def scenario() -> str:
        async with opened(root) as shell:
            return await out_of(shell, "sha256sum /etc/sf/x")

    assert run(scenario()) == f"{hashlib.sha256(data).hexdigest()}  /etc/sf/x\n"


def test_host_paths_in_output_are_shown_as_device_paths(root: Path) -> None:
    async def scenario() -> str:
        async with opened(root) as shell:
            return await out_of(shell, "readlink -f /etc/sf; cd /var/log && pwd -P; readlink -f /; ls -d ~/")

    assert run(scenario()) == "/etc/sf\n/var/log\n/\n/home/admin/\n"


def test_exit_yields_exited_and_stays_exited(root: Path) -> None:
    async def scenario() -> None:
        async with opened(root) as shell:
            await shell.send_line("exit 3")
            out, exited = await until_exit(shell)
            assert (out, exited) == ("exit\n", Exited(3))
            assert await next_event(shell) == Exited(3)
            assert not shell.idle
            await shell.send_line("echo dropped")
            assert [event async for event in shell.events()] == [Exited(3)]

    run(scenario())


def test_interrupt_stops_the_foreground_job(root: Path) -> None:
    async def scenario() -> None:
        async with opened(root) as shell:
            # The job itself says it started, so ^C cannot reach bash before the job is in the foreground.
            await shell.send_line("sh -c 'echo started; exec sleep 30'; echo not-reached")
            assert await next_event(shell) == Output("started\n")
            shell.send_interrupt()
            out, prompt = await until_prompt(shell)
            assert "not-reached" not in out
            assert prompt.status == 130
            assert await out_of(shell, "echo alive") == "alive\n"

    run(scenario())


def test_interrupt_inside_a_heredoc_maps_the_next_command(root: Path) -> None:
    (root / "etc/sf/x").write_text("mapped\n")

    async def scenario() -> None:
        async with opened(root) as shell:
            await shell.send_line("cat > /var/tmp/y <<EOF")
            assert await next_event(shell) == Output("> ")
            shell.send_interrupt()
            _, prompt = await until_prompt(shell)
            assert prompt.status == 130
            assert await out_of(shell, "cat /etc/sf/x") == "mapped\n"

    run(scenario())
    assert not (root / "var/tmp/y").exists()


def test_idle_is_true_only_at_the_prompt(root: Path) -> None:
    async def scenario() -> list[bool]:
        async with opened(root) as shell:
            seen = [shell.idle]
            await shell.send_line("cat <<EOF")
            seen.append(shell.idle)
            assert await next_event(shell) == Output("> ")
            seen.append(shell.idle)
            await shell.send_line("EOF")
            seen.append(shell.idle)
            await until_prompt(shell)
            seen.append(shell.idle)
            return seen

    assert run(scenario()) == [True, False, False, False, True]


def test_long_lines_reach_bash_and_type_ahead_reaches_the_program(root: Path) -> None:
    payload = base64.b64encode(os.urandom(6000)).decode()

    async def scenario() -> list[str]:
        async with opened(root) as shell:
            outs = [await out_of(shell, f"echo {payload} | base64 -d | sha256sum")]
            await shell.send_line("base64 -d > /var/tmp/blob <<'EOF'")
            await shell.send_line(payload)
            await shell.send_line("EOF")
            await until_prompt(shell)
            outs.append(await out_of(shell, "sha256sum < /var/tmp/blob"))
            await shell.send_line("head -1 | wc -c")
            await shell.send_line("y" * 9000)
            outs.append((await until_prompt(shell))[0])
            return outs

    digest = hashlib.sha256(base64.b64decode(payload)).hexdigest()
    assert run(scenario()) == [f"{digest}  -\n", f"{digest}  -\n", "9001\n"]


def test_control_characters_reach_bash_literally(root: Path) -> None:
    async def scenario() -> str:
        async with opened(root) as shell:
            return await out_of(shell, "printf %s 'a\x03b\x04c\x16d\x1ae\x1cf\x7f' | od -An -tx1")

    assert run(scenario()).split() == ["61", "03", "62", "04", "63", "16", "64", "1a", "65", "1c", "66", "7f"]


def test_output_cannot_fake_a_prompt(root: Path) -> None:
    async def scenario() -> tuple[str, Prompt]:
        async with opened(root) as shell:
            fake = "printf '\\036SFTLAB0000:5:/x\\037\\n'"
            return await sh(shell, f'{fake}; echo "$PS1" | grep -c SFTLAB')

    out, prompt = run(scenario())
    assert out == "\x1eSFTLAB0000:5:/x\x1f\n1\n"
    assert prompt == Prompt(0, "/home/admin")


def test_utf8_and_terminal_size(root: Path) -> None:
    async def scenario() -> list[str]:
        async with opened(root) as shell:
            outs = [await out_of(shell, "echo héllo ✓; stty size")]
            shell.resize(100, 40)
            outs.append(await out_of(shell, "stty size"))
            return outs

    assert run(scenario()) == ["héllo ✓\n24 80\n", "40 100\n"]


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[3] == str(sid) and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_close_leaves_no_process_behind(root: Path) -> None:
    async def scenario() -> tuple[int, list[int]]:
        async with opened(root) as shell:
            line = "sleep 300 & echo pid=$!; nohup sleep 301 >/dev/null 2>&1 & echo pid=$!"
            out = await out_of(shell, line)
            jobs = [int(word[4:]) for word in out.split() if word.startswith("pid=")]
            assert len(jobs) == 2, out
            await shell.send_line("trap '' HUP; sleep 302")
            assert set(jobs) <= set(session_members(shell.pid))
            await shell.close()
            await shell.close()
            assert isinstance(await next_event(shell), Exited)
            return shell.pid, jobs

    sid, jobs = run(scenario())
    assert session_members(sid) == []
    for pid in jobs:
        assert pid not in session_members(sid)


def test_close_after_exit(root: Path) -> None:
    async def scenario() -> None:
        async with opened(root) as shell:
            await shell.send_line("exit")
            assert (await until_exit(shell))[1] == Exited(0)
            await shell.close()
            assert session_members(shell.pid) == []

    run(scenario())


def test_send_line_rejects_newlines(root: Path) -> None:
    async def scenario() -> None:
        async with opened(root) as shell:
            with pytest.raises(ValueError, match="single line"):
                await shell.send_line("echo a\necho b")

    run(scenario())


@pytest.mark.skipif(os.geteuid() != 0, reason="checks that a root lab ignores the flag")
def test_user_ns_root_flag_is_ignored_when_already_root(root: Path) -> None:
    async def scenario() -> str:
        async with opened(root, user_ns_root=True) as shell:
            return await out_of(shell, "id -u; cat /proc/self/uid_map")

    own_map = Path("/proc/self/uid_map").read_text()
    assert run(scenario()) == "0\n" + own_map


async def userns_probe(root: Path) -> str:
    """Run as a non-root user: id, and chown root on a file that user owns, inside the root shell."""
    async with opened(root, user_ns_root=True) as shell:
        (root / "etc/sf/f").write_text("x")
        return await out_of(shell, "id -u; chown root:root /etc/sf/f && stat -c %u:%U /etc/sf/f")


NOBODY = 65534


def test_user_ns_root_gives_uid_0_to_a_non_root_user() -> None:
    """A non-root lab gets uid 0 (and a working ``chown root``) in the root shell.

    Runs in-process when the tests run as a non-root user. When they run as root (as in CI containers),
    it runs :func:`userns_probe` in a child Python started through ``setpriv`` as uid/gid 65534 (nobody),
    in a folder that user owns. Skipped when the system refuses unprivileged user namespaces.
    """
    with tempfile.TemporaryDirectory() as tmp:
        if os.geteuid() != 0:
            if subprocess.run(["unshare", "--user", "--map-root-user", "true"], check=False).returncode:
                pytest.skip("unprivileged user namespaces are disabled here")
            base = Path(tmp)
            out = run(userns_probe(make_root(base)))
            owner = os.geteuid()
        else:
            out, base = _probe_as_nobody(Path(tmp))
            owner = NOBODY
        assert out == "0\n0:root\n"
        assert (base.resolve() / "dev/etc/sf/f").stat().st_uid == owner


def _probe_as_nobody(tmp: Path) -> tuple[str, Path]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is not installed")
    drop = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    if subprocess.run([*drop, "unshare", "--user", "--map-root-user", "true"], check=False).returncode:
        pytest.skip("unprivileged user namespaces are disabled here")
    os.chown(tmp, NOBODY, NOBODY)
    code = (
        "import asyncio, sys; from pathlib import Path; "
        "from tests.lab.test_bash import make_root, userns_probe; "
        "print(asyncio.run(userns_probe(make_root(Path(sys.argv[1])))), end='')"
    )
    child = subprocess.run(
        [*drop, sys.executable, "-c", code, str(tmp)],
        cwd=PROJECT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    return child.stdout, tmp


# ---------------------------------------------------------------- history, as a device's bash keeps it


def history_of(root: Path) -> list[str] | None:
    """The lines of the admin's ``~/.bash_history`` (``env_for`` makes that HOME), None if there is none."""
    path = root / "home/admin/.bash_history"
    return path.read_text().splitlines() if path.exists() else None


def test_history_is_written_on_exit_with_device_paths_and_mode_0600(root: Path) -> None:
    async def scenario() -> None:
        async with opened(root) as shell:
            await sh(shell, "echo one > /var/tmp/one")
            await shell.send_line("exit")
            await until_exit(shell)

    run(scenario())
    assert history_of(root) == ["echo one > /var/tmp/one", "exit"]
    assert (root / "var/tmp/one").read_text() == "one\n"
    assert stat.S_IMODE((root / "home/admin/.bash_history").stat().st_mode) == 0o600


def test_history_is_written_on_hang_up(root: Path) -> None:
    async def scenario() -> Exited:
        async with opened(root) as shell:
            await sh(shell, "echo typed before the connection dropped")
            await shell.close()
            return (await until_exit(shell))[1]

    assert run(scenario()) == Exited(128 + 1)  # SIGHUP ended it, after it saved its history
    assert history_of(root) == ["echo typed before the connection dropped"]


@pytest.mark.parametrize("turn_off", ["set +o history", "unset HISTFILE", "HISTFILE=/dev/null"])
@pytest.mark.parametrize("ending", ["exit", "hang-up"])
def test_history_turned_off_records_nothing(root: Path, turn_off: str, ending: str) -> None:
    async def scenario() -> None:
        async with opened(root) as shell:
            assert await out_of(shell, "echo $HISTFILE; shopt -o history") == (
                "/home/admin/.bash_history\nhistory        \ton\n"
            )
            await sh(shell, turn_off)
            await sh(shell, "printf '%s' 'c2VjcmV0' > /var/tmp/b64")
            if ending == "exit":
                await shell.send_line("exit")
            else:
                await shell.close()
            await until_exit(shell)

    run(scenario())
    assert history_of(root) is None
    assert not (root / "dev").exists()  # /dev/null is the host's, not mapped into the device folder


def test_a_shell_started_without_history_records_nothing(root: Path) -> None:
    async def scenario() -> str:
        shell = await BashShell.start(
            pathmap=PathMap(str(root), PREFIXES),
            cwd_host=root / "home/admin",
            env=env_for(root),
            history=False,
        )
        try:
            await until_prompt(shell)
            out = await out_of(shell, "echo run; [[ -o history ]] && echo on || echo off")
            await shell.send_line("exit")
            await until_exit(shell)
            return out
        finally:
            await shell.close()

    assert run(scenario()) == "run\noff\n"
    assert history_of(root) is None


def test_record_history_adds_the_line_without_running_it_and_keeps_the_status(root: Path) -> None:
    async def scenario() -> list[str]:
        async with opened(root) as shell:
            await sh(shell, "false")
            await shell.record_history("sudo su")
            outs = [await out_of(shell, "echo $?")]  # no Prompt came for the recorded line
            await shell.record_history("it's not run")
            outs.append(await out_of(shell, "echo $?; history 3 | cut -c8-"))
            await sh(shell, "set +o history")
            await shell.record_history("sudo su -")  # history is off: not recorded
            await sh(shell, "set -o history")
            await shell.send_line("exit")
            await until_exit(shell)
            return outs

    assert run(scenario()) == ["1\n", "0\necho $?\nit's not run\necho $?; history 3 | cut -c8-\n"]
    assert history_of(root) == [
        "false",
        "sudo su",
        "echo $?",
        "it's not run",
        "echo $?; history 3 | cut -c8-",
        "set +o history",  # then nothing (`set -o history` was read with history off), until:
        "exit",
    ]


def test_eof_ends_bash_without_recording_exit(root: Path) -> None:
    async def scenario() -> tuple[str, Exited]:
        async with opened(root) as shell:
            await sh(shell, "echo last")
            await shell.send_eof()
            return await until_exit(shell)

    assert run(scenario()) == ("exit\n", Exited(0))
    assert history_of(root) == ["echo last"]
