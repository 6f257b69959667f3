"""Commands framed at root: the typed line, and the output read back between markers, whatever the chunks."""

from __future__ import annotations

import pytest

from pipeline.devices import framing
from pipeline.devices.session import Answer, CommandResult

NONCE = "0123456789abcdef"
PROMPT = "root@fmc:/Volume/home/admin# "


def device_output(command: str, output: str, code: int, *, residue: str = PROMPT) -> str:
    """What a pty shows for a framed command: leftover prompt, echo, markers, output, next prompt."""
    line = framing.frame(command, NONCE)
    return (
        f"{residue}{line}\r\nSFTRB{NONCE}\r\n{output.replace(chr(10), chr(13) + chr(10))}"
        f"SFTRE{NONCE}:{code}.\r\n{PROMPT}"
    )


def feed_in_chunks(
    text: str, size: int, answers: list[Answer] | None = None
) -> tuple[CommandResult, list[str]]:
    framed = framing.FramedOutput(NONCE, answers or [])
    replies: list[str] = []
    for start in range(0, len(text), size):
        replies += framed.feed(text[start : start + size])
        if framed.result is not None:
            return framed.result, replies
    raise AssertionError("no end marker")


def test_frame_types_markers_the_echo_cannot_match() -> None:
    line = framing.frame("id -u", NONCE)
    assert line == f'echo SFTRB""{NONCE}; id -u; echo SFTRE""{NONCE}:$?.'
    assert f"SFTRB{NONCE}" not in line and f"SFTRE{NONCE}:" not in line


def test_frame_refuses_newlines_and_long_lines() -> None:
    with pytest.raises(ValueError, match="one line"):
        framing.frame("echo a\necho b", NONCE)
    longest = "echo " + "x" * (framing.MAX_COMMAND - 5)
    assert framing.frame(longest, NONCE).endswith(f'{longest}; echo SFTRE""{NONCE}:$?.')
    with pytest.raises(ValueError, match="400 or fewer"):
        framing.frame(longest + "x", NONCE)


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
    framed = framing.FramedOutput(NONCE)
    framed.feed(f"{PROMPT}echo ...\r\nSFTRB{NONCE}\r\nhalf a li")
    assert framed.result is None
    assert framed.partial == "half a li"


def test_long_output_in_small_chunks() -> None:
    out = "".join(f"line {i} " + "x" * 60 + "\n" for i in range(3000))
    result, _ = feed_in_chunks(device_output("cat big", out, 0), 97)
    assert result.output == out


def test_a_long_command_is_typed_as_short_lines_joined_by_continuations() -> None:
    framed = framing.frame_lines(["printf '%s' ''", "'abc'", "'def' | base64 -d > /tmp/x"], "n1")
    assert framed == (
        "echo SFTRB\"\"n1; printf '%s' '' \\\n'abc' \\\n'def' | base64 -d > /tmp/x; echo SFTRE\"\"n1:$?."
    )
    with pytest.raises(ValueError, match="close every quote"):
        framing.frame_lines(["printf '%s' 'abc", "def'"], "n1")
    with pytest.raises(ValueError, match="must not end with a backslash"):
        framing.frame_lines(["echo a \\"], "n1")
    with pytest.raises(ValueError, match="keep it to"):
        framing.frame_lines(["x" * (framing.MAX_COMMAND + 1)], "n1")
