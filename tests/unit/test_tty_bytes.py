"""How the lab types a line into bash's pty (`sftlab.shell.bash_tty.tty_bytes`): canonical mode drops what a
line holds beyond 4095 bytes, so a long line goes in chunks of 1024 bytes separated by VEOF, and the control
characters the tty would act on are quoted with VLNEXT, never cut from the byte they quote."""

from __future__ import annotations

import pytest

from sftlab.shell.bash_tty import VEOF, tty_bytes

VLNEXT = b"\x16"


@pytest.mark.parametrize(
    ("size", "chunks"), [(0, [0]), (1, [1]), (1024, [1024]), (1025, [1024, 1]), (3000, [1024, 1024, 952])]
)
def test_a_plain_line_is_cut_into_chunks_of_1024_bytes(size: int, chunks: list[int]) -> None:
    typed = tty_bytes("a" * size)
    assert typed.endswith(b"\n")
    assert [len(c) for c in typed[:-1].split(VEOF)] == chunks


def test_control_characters_are_quoted_and_a_quote_is_never_cut_from_its_byte() -> None:
    line = "a" * 1023 + "\x03" + "b" * 10 + "\x04"
    typed = tty_bytes(line)
    first, cut, second = typed[:-1].partition(VEOF)
    assert cut == VEOF
    assert first == b"a" * 1023  # VLNEXT + ^C would make 1025 bytes: they go together into the next chunk
    assert second == VLNEXT + b"\x03" + b"b" * 10 + VLNEXT + b"\x04"
