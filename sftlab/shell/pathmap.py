"""Device paths in command lines, host paths in the files: the prefix mapping behind each device's bash.

A simulated device keeps its files under one host folder (its root). Its bash is real, so every absolute
device path a client types (``/etc/sf/...``) must become ``<root>/etc/sf/...`` before bash sees it, and every
``<root>`` bash prints must read as ``/`` again. Everything here is pure text work, so the SSH bridge and
the tests can reason about it without a process.

The mapping is textual, not a shell parser: a prefix is mapped where it starts a word (after whitespace or
shell punctuation) and ends at a path boundary; heredoc bodies are passed through untouched because they
are file content, not commands.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

# Characters after which a device path may start, and characters that may end one (besides end of text).
_START_CHARS = "'\"=:;|&()<>`,{"
_END_CHARS = "/'\"`;:,|&<>(){}*?[]"
# Characters that continue a file name: the root followed by one of them is another name, not the root.
_NAME_CHARS = r"\w.\-+@%~#"
# Shell metacharacters that end a heredoc word.
_WORD_END = " \t;|&<>()"


def overlap_len(text: str, pattern: str) -> int:
    """Length of the longest suffix of ``text`` that is a prefix of ``pattern`` (the whole pattern included).

    Streaming parsers hold that many characters back: the next chunk may complete a match.
    """
    if not pattern:
        return 0
    start = max(0, len(text) - len(pattern))
    i = text.find(pattern[0], start)
    while i != -1:
        if pattern.startswith(text[i:]):
            return len(text) - i
        i = text.find(pattern[0], i + 1)
    return 0


class PathMap:
    """Maps device path prefixes to ``root + prefix`` in command lines, and ``root`` back to ``/`` in output.

    ``root`` must be an absolute host path without symlinks (resolve it first), or tools that print
    resolved paths (``readlink -f``, ``pwd -P``) would show host paths the unmapping does not recognise.
    """

    def __init__(self, root: str, prefixes: Sequence[str]) -> None:
        root = root.rstrip("/")
        if not root.startswith("/"):
            raise ValueError(f"root must be an absolute path other than '/': {root!r}")
        bad = [p for p in prefixes if not p.startswith("/") or p.endswith("/") or len(p) < 2]
        if bad:
            raise ValueError(f"device prefixes must be absolute without a trailing '/': {bad!r}")
        self.root = root
        self.prefixes: tuple[str, ...] = tuple(sorted(set(prefixes), key=len, reverse=True))
        alternatives = "|".join(re.escape(p) for p in self.prefixes) or r"(?!)"
        self._to_host = re.compile(
            rf"(?:^|(?<=[\s{re.escape(_START_CHARS)}]))(?:{alternatives})(?=$|[\s{re.escape(_END_CHARS)}])",
            re.MULTILINE,
        )
        self._to_device = re.compile(rf"{re.escape(root)}(?:(?=/)|(?![{_NAME_CHARS}]))")

    def to_host(self, line: str) -> str:
        """Prefix each device path in a command line with the root; longest prefix wins; ``~`` is kept."""
        return self._to_host.sub(lambda m: self.root + m.group(0), line)

    def to_device(self, text: str) -> str:
        """Host paths under the root back to device paths: ``<root>/x`` -> ``/x``, ``<root>`` -> ``/``."""
        return unmap_upto(self, text, len(text))[0]

    def device_pattern(self) -> re.Pattern[str]:
        """The compiled pattern of the root as it appears in output (used by :class:`StreamUnmapper`)."""
        return self._to_device


def unmap_upto(pm: PathMap, text: str, cut: int) -> tuple[str, int]:
    """Unmap matches that start before ``cut``; return the output and how much of ``text`` it covers.

    A match that starts before ``cut`` but extends past it is taken whole, so the covered length may
    exceed ``cut``; the rest of ``text`` is left for the caller to carry over.
    """
    out: list[str] = []
    pos = 0
    for m in pm.device_pattern().finditer(text):
        if m.start() >= cut:
            break
        out.append(text[pos : m.start()])
        out.append("" if text.startswith("/", m.end()) else "/")
        pos = m.end()
    end = max(cut, pos)
    out.append(text[pos:end])
    return "".join(out), end


class StreamUnmapper:
    """:meth:`PathMap.to_device` over a stream whose chunks may split the root string anywhere."""

    def __init__(self, pm: PathMap) -> None:
        self._pm = pm
        self._held = ""

    def feed(self, chunk: str) -> str:
        """Return the unmapped text that is final now; a possible partial root at the end is held back."""
        text = self._held + chunk
        # A full root at the very end is held too: the next character decides "/" or "".
        out, end = unmap_upto(self._pm, text, len(text) - overlap_len(text, self._pm.root))
        self._held = text[end:]
        return out

    def flush(self) -> str:
        """Return whatever is held, unmapped as if the stream ended here."""
        text, self._held = self._held, ""
        return self._pm.to_device(text)


@dataclass(frozen=True)
class Heredoc:
    """One pending heredoc: the terminator word (quotes removed) and whether ``<<-`` strips leading tabs."""

    word: str
    strip_tabs: bool


def find_heredocs(line: str) -> list[Heredoc]:
    """The heredocs a command line opens, in order; skips quotes, ``<<<``, arithmetic and comments."""
    docs: list[Heredoc] = []
    i = 0
    while i < len(line):
        c = line[i]
        if c == "#" and (i == 0 or line[i - 1] in " \t;&|()"):
            break
        if line.startswith("<<", i) and not line.startswith("<<<", i):
            doc, i = _read_heredoc_word(line, i + 2)
            if doc is not None:
                docs.append(doc)
        elif line.startswith("<<<", i):
            i += 3
        else:
            i = _skip_token(line, i)
    return docs


def _skip_token(line: str, i: int) -> int:
    """Index after the unit at ``i``: an escaped char, a quoted string, ``((...))`` or one char."""
    c = line[i]
    if c == "\\":
        return i + 2
    if c in "'\"`":
        return _skip_quoted(line, i)
    if line.startswith("$((", i) or line.startswith("((", i):
        return _skip_arithmetic(line, line.index("((", i) + 2)
    return i + 1


def _skip_quoted(line: str, i: int) -> int:
    quote = line[i]
    j = i + 1
    while j < len(line) and line[j] != quote:
        j += 2 if line[j] == "\\" and quote != "'" else 1
    return j + 1


def _skip_arithmetic(line: str, j: int) -> int:
    depth = 2
    while j < len(line) and depth:
        depth += {"(": 1, ")": -1}.get(line[j], 0)
        j += 1
    return j


def _read_heredoc_word(line: str, j: int) -> tuple[Heredoc | None, int]:
    """Parse ``[-] WORD`` after ``<<``; quotes and backslashes in WORD are removed, as bash does."""
    strip_tabs = line.startswith("-", j)
    j += 1 if strip_tabs else 0
    while j < len(line) and line[j] in " \t":
        j += 1
    word: list[str] = []
    while j < len(line) and line[j] not in _WORD_END:
        if line[j] in "'\"":
            end = line.find(line[j], j + 1)
            end = len(line) if end == -1 else end
            word.append(line[j + 1 : end])
            j = end + 1
        elif line[j] == "\\":
            word.append(line[j + 1 : j + 2])
            j += 2
        else:
            word.append(line[j])
            j += 1
    text = "".join(word)
    return (Heredoc(text, strip_tabs) if text else None), j


class HeredocTracker:
    """Follows heredocs across the lines sent to bash, so body lines (file content) go through unmapped.

    Feed every line, in order, before mapping it. :meth:`reset` when bash is back at its primary prompt
    or was interrupted: bash has then dropped any heredoc it was reading.
    """

    def __init__(self) -> None:
        self._pending: deque[Heredoc] = deque()

    @property
    def in_body(self) -> bool:
        """True while the next line belongs to a heredoc body (its terminator included)."""
        return bool(self._pending)

    def feed(self, line: str) -> bool:
        """Account for one line; True if it is a heredoc body or terminator line (to be sent raw)."""
        if self._pending:
            doc = self._pending[0]
            if (line.lstrip("\t") if doc.strip_tabs else line) == doc.word:
                self._pending.popleft()
            return True
        self._pending.extend(find_heredocs(line))
        return False

    def reset(self) -> None:
        self._pending.clear()

    def map_line(self, pm: PathMap, line: str) -> str:
        """The line as bash should get it: raw inside a heredoc body, else with device paths mapped."""
        return line if self.feed(line) else pm.to_host(line)
