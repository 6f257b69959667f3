"""The terminal line discipline a real device's pty gives an SSH client, as a pure object.

A real FMC or FTD runs its shells on a kernel pty: typed characters are echoed at once, Enter becomes
`\\r\\n`, output `\\n` becomes `\\r\\n` (ONLCR), backspace erases, Ctrl-C interrupts, and a password
prompt turns echo off.
asyncssh's own line editor does more than a kernel does (it inserts ` \\b` at the terminal width), which would
corrupt long output lines, so the lab does the kernel's part itself. Without a pty (an exec request or a shell
without `pty=True`) nothing is echoed or translated, as on a real host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CTRL_C = 0x03
CTRL_D = 0x04
BACKSPACES = (0x08, 0x7F)
#: The bytes that are more than one more character of the line: everything between two of them is taken
#: in one slice (a push types kilobytes of base64 per command; byte by byte that was 5 ms of the lab's CPU).
_SPECIAL = re.compile(rb"[\n\r\x03\x04\x08\x7f]")


@dataclass(frozen=True)
class Line:
    text: str


@dataclass(frozen=True)
class Interrupt:
    pass


@dataclass(frozen=True)
class EndOfInput:
    pass


Input = Line | Interrupt | EndOfInput


@dataclass
class LineDiscipline:
    """Cooked-mode input and output processing for one session."""

    pty: bool
    echo: bool = True
    _buffer: bytearray = field(default_factory=bytearray)
    _last_cr: bool = False

    def feed(self, data: bytes) -> tuple[bytes, list[Input]]:
        """Take bytes from the client; return what to echo back and the inputs completed by them."""
        echoed = bytearray()
        inputs: list[Input] = []
        pos = 0
        while pos < len(data):
            special = _SPECIAL.search(data, pos)
            end = len(data) if special is None else special.start()
            if end > pos:  # ordinary characters: what `_feed_byte` does to each, for all of them at once
                self._last_cr = False
                self._buffer += data[pos:end]
                if self._echoing:
                    echoed += data[pos:end]
            if special is None:
                break
            self._feed_byte(data[end], echoed, inputs)
            pos = end + 1
        return bytes(echoed), inputs

    def _feed_byte(self, byte: int, echoed: bytearray, inputs: list[Input]) -> None:
        if byte == 0x0A and self._last_cr:
            self._last_cr = False  # the \n of a \r\n pair: the line was already completed by \r
            return
        self._last_cr = byte == 0x0D
        if byte in (0x0D, 0x0A):
            inputs.append(Line(self._buffer.decode("utf-8", errors="replace")))
            self._buffer.clear()
            if self._echoing:
                echoed += b"\r\n"
        elif self.pty and byte in (CTRL_C, CTRL_D, *BACKSPACES):
            self._control(byte, echoed, inputs)
        else:
            self._buffer.append(byte)
            if self._echoing:
                echoed.append(byte)

    def _control(self, byte: int, echoed: bytearray, inputs: list[Input]) -> None:
        if byte == CTRL_C:
            self._buffer.clear()
            inputs.append(Interrupt())
            if self._echoing:
                echoed += b"^C\r\n"
        elif byte == CTRL_D:
            if not self._buffer:
                inputs.append(EndOfInput())
        elif self._buffer:
            self._buffer.pop()
            if self._echoing:
                echoed += b"\b \b"

    @property
    def _echoing(self) -> bool:
        return self.pty and self.echo

    def output(self, text: str) -> bytes:
        """Encode output for the client, translating newlines as ONLCR does on a pty."""
        data = text.encode("utf-8", errors="replace")
        return data.replace(b"\n", b"\r\n") if self.pty else data
