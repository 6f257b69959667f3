"""The shell ladder's decisions and the command framing, fed verbatim transcripts (device-facts 1, 12)."""

from __future__ import annotations

import pytest

from pipeline.devices import shells
from pipeline.devices.session import Answer, CommandResult
from pipeline.devices.shells import Climb, Done, Fail, Phase, Send, SendPassword, Wait

FTD_BANNER = (
    "Copyright 2004-2022, Cisco and/or its affiliates. All rights reserved.\r\n"
    "Cisco is a registered trademark of Cisco Systems, Inc.\r\n"
    "All other trademarks are property of their respective owners.\r\n"
    "\r\n"
    "Cisco Firepower Extensible Operating System (FX-OS) v2.10.1 (build 1400)\r\n"
    "Cisco Firepower Threat Defense for VMware v7.2.5 (build 208)\r\n"
    "\r\n"
)
LECTURE = (
    "\r\nWe trust you have received the usual lecture from the local System\r\n"
    "Administrator. It usually boils down to these three things:\r\n\r\n"
    "    #1) Respect the privacy of others.\r\n"
    "    #2) Think before you type.\r\n"
    "    #3) With great power comes great responsibility.\r\n\r\n"
)
LAST_LOGIN = "Last login: Tue Oct 14 14:21:03 2024 from 10.48.26.100\r\n"


def climb_through(transcript: list[str], climb: Climb | None = None) -> tuple[list[object], Climb]:
    """Feed each device output (what arrives after our previous action) and collect the actions."""
    climb = climb or Climb()
    actions: list[object] = []
    for output in transcript:
        decision = shells.decide(climb, output)
        actions.append(decision.action)
        climb = decision.climb
    return actions, climb


# ---------------------------------------------------------------- the ladder, verbatim


def test_ftd_from_clish_to_root_verbatim() -> None:
    actions, climb = climb_through(
        [
            FTD_BANNER + "> ",
            "expert\r\nadmin@BSNS-1120-1:~$ ",
            "sudo su\r\nPassword:",
            "\r\nroot@BSNS-1120-1:/home/admin# ",
        ]
    )
    assert actions == [Send("expert"), Send("sudo su"), SendPassword(), Done()]
    assert climb.levels == ("clish", "expert", "root")
    assert climb.phase is Phase.AT_ROOT


def test_t225502_shortened_prompts() -> None:
    actions, climb = climb_through(
        ["> ", "expert\r\ndevice$ ", "sudo su\r\nPassword:", "\r\nroot@device:/Volume/home/admin#"]
    )
    assert actions == [Send("expert"), Send("sudo su"), SendPassword(), Done()]
    assert climb.levels == ("clish", "expert", "root")


@pytest.mark.parametrize(
    "root_prompt",
    [
        "root@BSNS-1120-1:/home/admin#",
        "root@fmc:/Volume/home/admin#",
        "root@fmcv72-stejanss:/Volume/home/admin# ",
        "root@firepower:/Volume/home/admin# ",
        "root@ftd:/home/admin# ",
        "root@device:/Volume/home/admin#",
    ],
)
def test_every_verbatim_root_prompt_is_root(root_prompt: str) -> None:
    assert shells.prompt_kind(root_prompt) == "root"


@pytest.mark.parametrize(
    ("tail", "kind"),
    [
        ("> ", "clish"),
        (">", "clish"),
        ("admin@fmc:~$ ", "expert"),
        ("admin@BSNS-1120-1:~$ ", "expert"),
        ("device$ ", "expert"),
        ("Password:", "password"),
        ("[sudo] password for admin: ", "password"),
        ("Last login: Tue Oct 14", None),
        ("root@fmc:/Volume/home/ad", None),
        ("admin@fmc:~", None),
        ("", None),
    ],
)
def test_prompt_kinds(tail: str, kind: str | None) -> None:
    assert shells.prompt_kind(tail) == kind


def test_fmc_landing_straight_in_bash() -> None:
    actions, climb = climb_through(
        ["admin@fmc:~$ ", "sudo su\r\nPassword:", "\r\nroot@fmc:/Volume/home/admin# "]
    )
    assert actions == [Send("sudo su"), SendPassword(), Done()]
    assert climb.levels == ("expert", "root")


def test_last_login_line_and_banner_arriving_in_pieces_only_wait() -> None:
    pieces = [LAST_LOGIN[:12], LAST_LOGIN, LAST_LOGIN + FTD_BANNER, LAST_LOGIN + FTD_BANNER + ">"]
    actions, _ = climb_through(pieces[:3])
    assert actions == [Wait(), Wait(), Wait()]
    assert shells.decide(Climb(), pieces[3]).action == Send("expert")


def test_sudo_lecture_before_password_prompt() -> None:
    climb = Climb(Phase.SENT_SUDO, ("clish", "expert"), 2)
    assert shells.decide(climb, "sudo su\r\n" + LECTURE).action == Wait()
    assert shells.decide(climb, "sudo su\r\n" + LECTURE + "Password:").action == SendPassword()
    # The prompt need not start its line.
    assert shells.decide(climb, "sudo su\r\nresponsibility.Password:").action == SendPassword()


def test_cached_sudo_goes_straight_to_root() -> None:
    actions, climb = climb_through(
        ["> ", "expert\r\nadmin@fmc:~$ ", "sudo su\r\nroot@fmc:/Volume/home/admin# "]
    )
    assert actions == [Send("expert"), Send("sudo su"), Done()]
    assert climb.levels == ("clish", "expert", "root")


def test_wrong_sudo_password_fails_at_once_and_never_retries() -> None:
    climb = Climb(Phase.SENT_PASSWORD, ("clish", "expert"), 3)
    early = shells.decide(climb, "\r\nSorry, try again.\r\n")
    assert early.action == Fail("authentication", "root (#)", "Sorry, try again.")
    asked_again = shells.decide(climb, "\r\nSorry, try again.\r\nPassword:").action
    assert isinstance(asked_again, Fail) and asked_again.kind == "authentication"


def test_second_password_prompt_without_sorry_is_an_authentication_failure() -> None:
    climb = Climb(Phase.SENT_PASSWORD, ("clish", "expert"), 3)
    action = shells.decide(climb, "\r\nPassword:").action
    assert isinstance(action, Fail) and action.kind == "authentication"


def test_three_incorrect_attempts_is_an_authentication_failure() -> None:
    climb = Climb(Phase.SENT_PASSWORD, ("clish", "expert"), 3)
    action = shells.decide(climb, "sudo: 3 incorrect password attempts\r\nadmin@fmc:~$ ").action
    assert isinstance(action, Fail) and action.kind == "authentication"
    assert "3 incorrect password attempts" in action.shown


def test_sudo_refused_without_asking_names_the_line() -> None:
    climb = Climb(Phase.SENT_SUDO, ("clish", "expert"), 2)
    seen = "sudo su\r\nadmin is not in the sudoers file.  This incident will be reported.\r\nadmin@fmc:~$ "
    action = shells.decide(climb, seen).action
    assert isinstance(action, Fail) and action.kind == "unexpected_prompt"
    assert "not in the sudoers file" in action.shown and "admin@fmc:~$" in action.shown


def test_clish_refusing_expert_is_unexpected() -> None:
    climb = Climb(Phase.SENT_EXPERT, ("clish",), 1)
    action = shells.decide(climb, "expert\r\nSyntax error: Illegal command line\r\n> ").action
    assert action == Fail("unexpected_prompt", "expert ($)", "Syntax error: Illegal command line | >")


def test_password_prompt_at_login_is_unexpected() -> None:
    action = shells.decide(Climb(), "Password: ").action
    assert isinstance(action, Fail) and action.kind == "unexpected_prompt"


def test_an_unknown_prompt_waits_then_stalls_naming_the_last_line() -> None:
    seen = FTD_BANNER + "firepower login: "
    assert shells.decide(Climb(), seen).action == Wait()
    assert shells.stalled(Climb(), seen) == Fail(
        "unexpected_prompt",
        "CLISH (>) or expert ($)",
        "Cisco Firepower Threat Defense for VMware v7.2.5 (build 208) | firepower login:",
    )


def test_silence_stalls_as_no_prompt() -> None:
    assert shells.stalled(Climb(), "").kind == "no_prompt"
    assert shells.stalled(Climb(Phase.SENT_PASSWORD), "\r\n").kind == "no_prompt"


def test_at_root_a_heredoc_prompt_is_not_clish() -> None:
    climb = Climb(Phase.AT_ROOT, ("clish", "expert", "root"), 3)
    assert shells.decide(climb, "cat > /tmp/x <<'EOF'\r\n> ").action == Done()
    assert shells.decide(climb, "> ").climb == climb


def test_loop_guard_stops_a_fourth_send() -> None:
    action = shells.decide(Climb(Phase.LOGGED_IN, (), shells.MAX_ACTIONS), "> ").action
    assert isinstance(action, Fail) and action.shown == "(loop guard)"


def test_terminal_escapes_do_not_hide_prompts() -> None:
    bracketed = "expert\r\n\x1b[?2004hadmin@fmc:~$ "
    titled = "\x1b]0;admin@fmc: ~\x07admin@fmc:~$ "
    climb = Climb(Phase.SENT_EXPERT, ("clish",), 1)
    assert shells.decide(climb, bracketed).action == Send("sudo su")
    assert shells.decide(climb, titled).action == Send("sudo su")


def test_last_lines_is_short() -> None:
    assert shells.last_lines("a\r\n\r\nb\r\nc ") == "b | c"
    assert shells.last_lines("x" * 500).startswith("...")
    assert len(shells.last_lines("x" * 500)) == 163


# ---------------------------------------------------------------- framing commands at root

NONCE = "0123456789abcdef"
PROMPT = "root@fmc:/Volume/home/admin# "


def device_output(command: str, output: str, code: int, *, residue: str = PROMPT) -> str:
    """What a pty shows for a framed command: leftover prompt, echo, markers, output, next prompt."""
    line = shells.frame(command, NONCE)
    return (
        f"{residue}{line}\r\nSFTRB{NONCE}\r\n{output.replace(chr(10), chr(13) + chr(10))}"
        f"SFTRE{NONCE}:{code}.\r\n{PROMPT}"
    )


def feed_in_chunks(
    text: str, size: int, answers: list[Answer] | None = None
) -> tuple[CommandResult, list[str]]:
    framed = shells.FramedOutput(NONCE, answers or [])
    replies: list[str] = []
    for start in range(0, len(text), size):
        replies += framed.feed(text[start : start + size])
        if framed.result is not None:
            return framed.result, replies
    raise AssertionError("no end marker")


def test_frame_types_markers_the_echo_cannot_match() -> None:
    line = shells.frame("id -u", NONCE)
    assert line == f'echo SFTRB""{NONCE}; id -u; echo SFTRE""{NONCE}:$?.'
    assert f"SFTRB{NONCE}" not in line and f"SFTRE{NONCE}:" not in line


def test_frame_refuses_newlines_and_long_lines() -> None:
    with pytest.raises(ValueError, match="one line"):
        shells.frame("echo a\necho b", NONCE)
    longest = "echo " + "x" * (shells.MAX_COMMAND - 5)
    assert shells.frame(longest, NONCE).endswith(f'{longest}; echo SFTRE""{NONCE}:$?.')
    with pytest.raises(ValueError, match="400 or fewer"):
        shells.frame(longest + "x", NONCE)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 100_000])
def test_output_between_markers_whatever_the_chunks(size: int) -> None:
    out = "a> b\n# c\nroot@fmc:/Volume/home/admin# not a prompt\n"
    result, _ = feed_in_chunks(device_output("printf ...", out, 0), size)
    assert result == CommandResult(0, out)


def test_exit_code_and_output_without_final_newline() -> None:
    result, _ = feed_in_chunks(device_output("printf foo; false", "foo", 1), 5)
    assert result == CommandResult(1, "foo")


def test_empty_output() -> None:
    result, _ = feed_in_chunks(device_output("true", "", 0, residue=""), 4)
    assert result == CommandResult(0, "")


def test_escapes_and_crlf_split_across_chunks_are_removed() -> None:
    text = device_output("ls", "one\x1b[0m\ntwo\n", 0)
    for size in (1, 2, 5):
        result, _ = feed_in_chunks(text, size)
        assert result.output == "one\ntwo\n"


def test_answers_in_order_each_once_after_the_begin_marker() -> None:
    question = "Do you want to continue? [yes/no]:"
    out = f"banner\n{question}yes\n\nCurrent ca_root expires in 3646 days\n{question}yes\n\ndone\n"
    answers = [Answer(r"\[yes/no\]:", "yes"), Answer(r"\[yes/no\]:", "yes")]
    # The echoed command line holds the question text too: it must not be answered.
    result, replies = feed_in_chunks(device_output(f"echo '{question}'", out, 0), 9, answers)
    assert replies == ["yes", "yes"]
    assert "Current ca_root expires in" in result.output


def test_unmatched_answers_are_not_sent() -> None:
    result, replies = feed_in_chunks(device_output("true", "nothing asked\n", 0), 3, [Answer("never", "x")])
    assert replies == [] and result.exit_code == 0


def test_partial_output_before_the_end_marker() -> None:
    framed = shells.FramedOutput(NONCE)
    framed.feed(f"{PROMPT}echo ...\r\nSFTRB{NONCE}\r\nhalf a li")
    assert framed.result is None
    assert framed.partial == "half a li"


def test_long_output_in_small_chunks() -> None:
    out = "".join(f"line {i} " + "x" * 60 + "\n" for i in range(3000))
    result, _ = feed_in_chunks(device_output("cat big", out, 0), 97)
    assert result.output == out
