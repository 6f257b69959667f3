"""The FMC/FTD shell ladder as data, and the pure decisions a session makes on it.

Like scrapli's PRIVS and unicon's FTD states: three levels, each known by its prompt (device-facts 1 and 12).
`decide` looks at what the device printed since our last action and says what to do next; the driver
(`root_shell`) only carries the action out. Once at root, prompts are never interpreted again: commands are
framed by markers (`framing`), so bash's heredoc prompt `> ` can't be taken for CLISH, and a prompt change
(or a shortened prompt like T225502's `device$`) doesn't break command parsing. `normalize` and `last_lines`
(terminal text as plain lines) serve both.

Nothing here touches a socket, a clock or the secrets: the password is an action (`SendPassword`), never text.
It is decided only right after `sudo su`, at sudo's own `Password:` question (`_MOVES`: a password prompt in
any other phase is a failure), and never twice: sudo reads it from the terminal with echo off, so it never
becomes a line bash reads, records in its history (`~/.bash_history` outlives the session) or runs.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from typing import Literal

LevelName = Literal["clish", "expert", "root"]


@dataclass(frozen=True)
class Level:
    """One rung: its prompt (matched against the last, unterminated line of output), how to enter it from
    the rung below, and how to leave it."""

    name: LevelName
    prompt: re.Pattern[str]
    enter: str | None
    leave: str = "exit"


CLISH = Level("clish", re.compile(r"^\s*>\s?$"), None)
# `admin@fmc:~$ `, `admin@BSNS-1120-1:~$ `, and T225502's shortened `device$ `.
EXPERT = Level("expert", re.compile(r"^[\w.-]+(?:@[\w.-]+)?(?::[^\n]*)?\$\s?$"), "expert")
# `root@fmc:/Volume/home/admin# `, `root@BSNS-1120-1:/home/admin# `; a shortened `device# ` too (checked by
# `id -u` once there).
ROOT = Level("root", re.compile(r"^(?:root@)?[\w.-]+(?::[^\n]*)?#\s?$"), "sudo su")
LADDER: tuple[Level, ...] = (CLISH, EXPERT, ROOT)


def level(name: LevelName) -> Level:
    return next(rung for rung in LADDER if rung.name == name)


# sudo's questions and complaints (device-facts 1.1, 12): `Password:` may follow the lecture on the same
# line, and may be spelled `[sudo] password for admin: ` elsewhere.
PASSWORD_PROMPT = re.compile(r"(?i)password[^\n]*:\s*$")
SUDO_RETRY = re.compile(r"Sorry, try again\.")
SUDO_GAVE_UP = re.compile(r"incorrect password attempts?")

#: Sends a climb may make: `expert`, `sudo su`, the password. One more is a loop, and the guard stops it.
MAX_ACTIONS = 3

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]")


def normalize(text: str) -> str:
    """Terminal output as plain lines: escape sequences (colours, bracketed paste, titles) dropped,
    `\\r\\n` made `\\n`, stray `\\r` removed."""
    return _ESCAPES.sub("", text).replace("\r\n", "\n").replace("\r", "")


def last_lines(text: str, count: int = 2, width: int = 160) -> str:
    """The last `count` non-empty lines of `text`, joined by ` | `, for an error message (redact it first)."""
    lines = [line.strip() for line in normalize(text).split("\n") if line.strip()]
    shown = " | ".join(lines[-count:])
    return shown if len(shown) <= width else "..." + shown[-width:]


# ---------------------------------------------------------------- the climb


class Phase(enum.Enum):
    """Where the climb is: what we last typed, or root reached."""

    LOGGED_IN = "logged in, nothing typed yet"
    SENT_EXPERT = "typed 'expert'"
    SENT_SUDO = "typed 'sudo su'"
    SENT_PASSWORD = "typed the sudo password"  # noqa: S105 - a phase, not a password
    AT_ROOT = "at the root prompt"


FailKind = Literal["authentication", "unexpected_prompt", "no_prompt"]


@dataclass(frozen=True)
class Send:
    line: str


@dataclass(frozen=True)
class SendPassword:
    """Type the sudo password (the executor sends it without logging it)."""


@dataclass(frozen=True)
class Wait:
    """Read more output, then decide again."""


@dataclass(frozen=True)
class Done:
    """Root reached."""


@dataclass(frozen=True)
class Fail:
    """Stop: `shown` is the end of what the device printed (unredacted: the executor redacts it)."""

    kind: FailKind
    expected: str
    shown: str


Action = Send | SendPassword | Wait | Done | Fail


@dataclass(frozen=True)
class Climb:
    """The climb's state: the phase, the levels stood on so far (lowest first) and the sends made."""

    phase: Phase = Phase.LOGGED_IN
    levels: tuple[LevelName, ...] = ()
    actions: int = 0

    @property
    def level(self) -> LevelName | None:
        """Where the session is now (None before the first prompt)."""
        return self.levels[-1] if self.levels else None


@dataclass(frozen=True)
class Decision:
    action: Action
    climb: Climb


_EXPECTED = {
    Phase.LOGGED_IN: "CLISH (>) or expert ($)",
    Phase.SENT_EXPERT: "expert ($)",
    Phase.SENT_SUDO: "sudo Password: or root (#)",
    Phase.SENT_PASSWORD: "root (#)",
    Phase.AT_ROOT: "root (#)",
}

PromptKind = Literal["root", "password", "expert", "clish"]
_Reaction = Literal["done", "enter_expert", "enter_root", "send_password", "unexpected", "authentication"]

# The ladder's moves as data: what each prompt means in each phase. A prompt missing from a phase's row
# cannot be reached from there (AT_ROOT interprets nothing: a `> ` there is bash's heredoc prompt).
_MOVES: dict[Phase, dict[PromptKind, _Reaction]] = {
    Phase.LOGGED_IN: {
        "root": "done",
        "expert": "enter_root",  # landed straight in bash (older FMCs)
        "clish": "enter_expert",
        "password": "unexpected",
    },
    Phase.SENT_EXPERT: {
        "root": "done",
        "expert": "enter_root",
        "clish": "unexpected",  # CLISH refused `expert`
        "password": "unexpected",
    },
    Phase.SENT_SUDO: {
        "root": "done",  # cached sudo credentials: no question asked
        "password": "send_password",
        "expert": "unexpected",  # sudo refused without asking (not in sudoers, no tty, ...)
        "clish": "unexpected",
    },
    Phase.SENT_PASSWORD: {
        "root": "done",
        "password": "authentication",  # asked again: our one try was wrong, and we never send it twice
        "expert": "unexpected",
        "clish": "unexpected",
    },
}


def decide(climb: Climb, seen: str) -> Decision:
    """The next step of the climb, given everything printed since our last action (raw or normalized).

    A prompt is the last line of output, not yet ended by a newline, so banners, `Last login:` lines and the
    sudo lecture just mean Wait. Our password is sent at most once: `Sorry, try again.` or a second
    `Password:` is an authentication failure, never a retry.
    """
    if climb.phase is Phase.AT_ROOT:
        return Decision(Done(), climb)
    text = normalize(seen)
    refused = SUDO_RETRY.search(text) if climb.phase is Phase.SENT_PASSWORD else None
    if refused or SUDO_GAVE_UP.search(text):
        return Decision(_fail(climb, "authentication", text), climb)
    prompt = waiting_prompt(text)
    if prompt is None:
        return Decision(Wait(), climb)
    return _react(climb, _MOVES[climb.phase][prompt], text)


def waiting_prompt(seen: str) -> PromptKind | None:
    """The prompt the device waits at after printing `seen` (its last, unterminated line), if any."""
    return prompt_kind(normalize(seen).rsplit("\n", 1)[-1])


def prompt_kind(tail: str) -> PromptKind | None:
    """Which prompt the last, unterminated line of output is, if any."""
    if ROOT.prompt.search(tail):
        return "root"
    if PASSWORD_PROMPT.search(tail):
        return "password"
    if EXPERT.prompt.search(tail):
        return "expert"
    return "clish" if CLISH.prompt.search(tail) else None


def _react(climb: Climb, reaction: _Reaction, text: str) -> Decision:
    if reaction == "done":
        return Decision(Done(), _at(climb, Phase.AT_ROOT, "root", sent=False))
    if reaction in ("unexpected", "authentication"):
        kind: FailKind = "authentication" if reaction == "authentication" else "unexpected_prompt"
        return Decision(_fail(climb, kind, text), climb)
    if climb.actions >= MAX_ACTIONS:
        return Decision(Fail("unexpected_prompt", _EXPECTED[climb.phase], "(loop guard)"), climb)
    if reaction == "enter_expert":
        return Decision(Send(EXPERT.enter or ""), _at(climb, Phase.SENT_EXPERT, "clish", sent=True))
    if reaction == "enter_root":
        return Decision(Send(ROOT.enter or ""), _at(climb, Phase.SENT_SUDO, "expert", sent=True))
    return Decision(SendPassword(), _at(climb, Phase.SENT_PASSWORD, None, sent=True))


def stalled(climb: Climb, seen: str) -> Fail:
    """What it means that the device stopped printing before root: an unknown prompt if a line is waiting,
    else no prompt at all."""
    text = normalize(seen)
    kind: FailKind = "unexpected_prompt" if text.rsplit("\n", 1)[-1].strip() else "no_prompt"
    return _fail(climb, kind, text)


def _at(climb: Climb, phase: Phase, level: LevelName | None, *, sent: bool) -> Climb:
    levels = climb.levels if level is None or climb.level == level else (*climb.levels, level)
    return replace(climb, phase=phase, levels=levels, actions=climb.actions + int(sent))


def _fail(climb: Climb, kind: FailKind, text: str) -> Fail:
    return Fail(kind, _EXPECTED[climb.phase], last_lines(text))
