"""What every reader of tool output shares: `ParseError`, and lines split the way a pty sends them."""

from __future__ import annotations

from collections.abc import Iterable


class ParseError(ValueError):
    """Tool output that cannot be what the caller asked us to read."""


def lines(text: str) -> list[str]:
    """Lines without their ending; a pty's CRLF counts as one ending."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def stripped_lines(text: str) -> Iterable[str]:
    return (line.strip() for line in lines(text))
