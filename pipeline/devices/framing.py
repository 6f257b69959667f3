"""Commands at root, framed by markers: the line to type, and the output read back between the markers.

Once the climb (`shells`) has reached root, prompts are never interpreted again: each command is typed
between a begin and an end marker that carry a fresh nonce and the exit status, so bash's heredoc prompt
`> `, a prompt change or a shortened prompt cannot break command parsing, and the terminal's echo of the
line never looks like the markers bash prints. `FramedOutput` also types the answers a command's questions
need, each once, in order. Pure: no socket, no clock; the driver (`root_shell`) does the I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipeline.devices.session import Answer, CommandResult
from pipeline.devices.shells import normalize

#: Longest command a caller may run. Framing adds under 70 characters, and with a 1024-column terminal the
#: typed line never wraps, whatever the prompt (the markers would survive a wrapped echo anyway).
MAX_COMMAND = 400
#: A quoted string: what a line of a long command may hold, as long as it closes every quote it opens.
_QUOTED = re.compile(r"'[^']*'|\"(?:[^\"\\]|\\.)*\"")
_BEGIN = "SFTRB"
_END = "SFTRE"
#: The exit status after the end marker and its nonce: digits and a full stop.
_STATUS = re.compile(r"(\d+)\.")
#: The unfinished forms of the escape sequences `shells.normalize` drops: a chunk may end inside one.
_UNFINISHED = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*|\][^\x07\x1b\n]*|[()])?\Z")


def frame(command: str, nonce: str) -> str:
    """`command` between a begin and an end marker that carry `nonce` and the exit status.

    The markers are typed as `SFTRB""<nonce>` and `SFTRE""<nonce>:$?.`, so the terminal's echo of the line
    never looks like the markers bash prints. `command` must be one complete line (no newline, no trailing
    `;` or `&`) of at most MAX_COMMAND characters: a ValueError otherwise, before anything is sent.
    """
    if "\n" in command or "\r" in command:
        raise ValueError("a command is one line; split it or use a script file")
    if len(command) > MAX_COMMAND:
        raise ValueError(f"command of {len(command)} characters; keep it to {MAX_COMMAND} or fewer")
    return f'echo {_BEGIN}""{nonce}; {command}; echo {_END}""{nonce}:$?.'


def frame_lines(lines: Sequence[str], nonce: str) -> str:
    """One command typed as several physical lines joined by backslash-newline, between the markers.

    Bash reads the lines as one command line and runs it once the last arrives, so a long command (a file
    upload) costs one round trip and the terminal still never wraps a line. Each line is checked as `frame`
    checks a command, and must not end inside a quoted string (a continuation there would be data).
    """
    if not lines:
        raise ValueError("no command")
    for line in lines:
        frame(line, nonce)  # ValueError for a newline or a line too long
        if line.endswith("\\"):
            raise ValueError("a line of a long command must not end with a backslash; the framing adds it")
        unquoted = _QUOTED.sub("", line)
        if "'" in unquoted or '"' in unquoted:
            raise ValueError("a line of a long command must close every quote it opens")
    body = " \\\n".join(lines)
    return f'echo {_BEGIN}""{nonce}; {body}; echo {_END}""{nonce}:$?.'


class FramedOutput:
    """Collects one framed command's output as it arrives, and says which answers to type when.

    `feed` takes raw terminal text and returns the replies to send now; `result` is set once the end marker
    arrived. Answers are matched in order, each once, against output not yet answered. Text is normalized as
    it comes (an escape sequence or `\r\n` cut by a chunk boundary is held back), so a long output costs
    linear time.
    """

    def __init__(self, nonce: str, answers: Sequence[Answer] = ()) -> None:
        # Found with str.find, not a pattern per nonce: compiling two patterns per command was a tenth of a
        # push's CPU in the worker (every nonce is new, so re's cache never hits).
        self._begin = f"{_BEGIN}{nonce}\n"
        self._end = f"{_END}{nonce}:"
        self._marker_len = len(_END) + len(nonce) + 24
        self._answers = [(re.compile(answer.prompt), answer.reply) for answer in answers]
        self._text = ""
        self._held = ""
        self._scanned = 0
        self._start: int | None = None
        self._answered = 0
        self.result: CommandResult | None = None

    def feed(self, raw: str) -> list[str]:
        complete, self._held = _split_held(self._held + raw)
        self._text += normalize(complete)
        if self._start is None:
            begin = self._text.find(self._begin, max(0, self._scanned - self._marker_len))
            self._scanned = len(self._text)
            if begin < 0:
                return []
            self._start = self._answered = self._scanned = begin + len(self._begin)
        end = self._text.find(self._end, max(self._start, self._scanned - self._marker_len))
        self._scanned = len(self._text)
        while end >= 0:
            status = _STATUS.match(self._text, end + len(self._end))
            if status is not None:
                self.result = CommandResult(int(status.group(1)), self._text[self._start : end])
                return []
            end = self._text.find(self._end, end + 1)
        return self._due_replies()

    def _due_replies(self) -> list[str]:
        replies: list[str] = []
        while self._answers:
            prompt, reply = self._answers[0]
            match = prompt.search(self._text, self._answered)
            if match is None:
                break
            self._answered = match.end()
            self._answers.pop(0)
            replies.append(reply)
        return replies

    @property
    def partial(self) -> str:
        """The output after the begin marker so far (for an error message after a timeout; redact it)."""
        return self._text[self._start :] if self._start is not None else ""


def _split_held(raw: str) -> tuple[str, str]:
    """`raw` cut before a trailing `\r` or an unfinished escape sequence, which the next chunk completes."""
    cut = len(raw) - 1 if raw.endswith("\r") else len(raw)
    esc = raw.rfind("\x1b", max(0, cut - 64), cut)
    if esc != -1 and _UNFINISHED.match(raw[:cut], esc):
        cut = esc
    return raw[:cut], raw[cut:]
