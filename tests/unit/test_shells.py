"""The shell ladder's decisions, fed verbatim transcripts (device-facts 1, 12)."""

from __future__ import annotations

import pytest

from pipeline.devices import shells
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
