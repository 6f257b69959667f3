"""The lab's terminal line discipline (`sftlab.shell.tty`): what a kernel pty does to typed bytes.

`feed` takes runs of ordinary characters in one slice; these tests hold it to the byte-at-a-time reading
(`_feed_byte` for each byte), which is the kernel's, for any mix of specials, in every mode.
"""

from __future__ import annotations

import random

import pytest

from sftlab.shell.tty import EndOfInput, Input, Interrupt, Line, LineDiscipline


def _byte_at_a_time(ld: LineDiscipline, data: bytes) -> tuple[bytes, list[Input]]:
    """The per-byte rule itself (`_feed_byte`), which `feed` must match whatever slices it takes."""
    echoed, inputs = bytearray(), list[Input]()
    for byte in data:
        ld._feed_byte(byte, echoed, inputs)
    return bytes(echoed), inputs


@pytest.mark.parametrize(("pty", "echo"), [(True, True), (True, False), (False, True)])
def test_feeding_a_whole_chunk_is_feeding_it_byte_by_byte(pty: bool, echo: bool) -> None:
    rng = random.Random(1234)  # noqa: S311 - a repeatable test input, not a secret
    alphabet = b"ab =/'\"\\\xc3\xa9\r\n\x03\x04\x08\x7f"
    for _ in range(300):
        chunks = [bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3)]
        whole, single = LineDiscipline(pty=pty, echo=echo), LineDiscipline(pty=pty, echo=echo)
        echoed, inputs = b"", list[Input]()
        for chunk in chunks:  # chunk borders fall anywhere, a \r\n pair across two included
            echo_part, got = whole.feed(chunk)
            echoed += echo_part
            inputs += got
        assert (echoed, inputs) == _byte_at_a_time(single, b"".join(chunks))


def test_a_typed_line_with_a_correction_an_interrupt_and_an_end() -> None:
    ld = LineDiscipline(pty=True)
    echoed, inputs = ld.feed(b"lss\x7f -l\r\nsleep 9\x03\x04")
    assert inputs == [Line("ls -l"), Interrupt(), EndOfInput()]
    assert echoed == b"lss\b \b -l\r\nsleep 9^C\r\n"


def test_a_crlf_split_across_two_reads_completes_one_line() -> None:
    ld = LineDiscipline(pty=True)
    assert ld.feed(b"id\r") == (b"id\r\n", [Line("id")])
    assert ld.feed(b"\nwhoami\n") == (b"whoami\r\n", [Line("whoami")])
