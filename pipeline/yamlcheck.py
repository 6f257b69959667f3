"""Checking a composed YAML tree node by node, so one pass reports every problem at its line with a fix.

Generic: what a mapping, a fixed-shape mapping, a list or a text value must look like, and the messages for
when they don't. Which fields a file has and how to fix a missing one are the caller's rules (see
`pipeline.inventory_loader`). Problems are `InventoryProblem`s; no message quotes a value that was refused
for its type or its syntax, so a password written in the wrong place is never echoed.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType

import yaml
from yaml.constructor import SafeConstructor

from pipeline.errors import InventoryProblem

__all__ = [
    "INT_TAG",
    "NULL_TAG",
    "STR_TAG",
    "Checker",
    "Entry",
    "did_you_mean",
    "integer",
    "kind",
    "line",
    "syntax_problem",
]

STR_TAG = "tag:yaml.org,2002:str"
INT_TAG = "tag:yaml.org,2002:int"
NULL_TAG = "tag:yaml.org,2002:null"
_KINDS = {
    "null": "an empty value",
    "bool": "true/false",
    "int": "a number",
    "float": "a number",
    "str": "text",
}
_CONSTRUCTOR = SafeConstructor()

Entry = tuple[yaml.Node, yaml.Node]
"""A mapping entry: the key's node (for its line) and the value's node."""


def syntax_problem(source: str, exc: yaml.YAMLError) -> InventoryProblem:
    """The problem for text that is not YAML: only the problem and its position, never the offending line
    (str(exc) would quote it verbatim)."""
    if isinstance(exc, yaml.MarkedYAMLError) and (mark := exc.problem_mark or exc.context_mark):
        problem = exc.problem or exc.context or "syntax error"
        if exc.context and exc.context_mark and exc.problem:
            problem = f"{exc.context} (line {exc.context_mark.line + 1}), {exc.problem}"
        message = f"not valid YAML: {problem}, column {mark.column + 1}; fix the syntax there"
        return InventoryProblem(source, mark.line + 1, "(yaml)", message)
    return InventoryProblem(source, None, "(yaml)", "not valid YAML text; save the file as UTF-8 YAML")


def did_you_mean(word: str, candidates: Collection[str]) -> str:
    """` (did you mean 'x'?)` for the closest candidate, or "" when none is close."""
    close = difflib.get_close_matches(word, sorted(candidates), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def kind(node: yaml.Node) -> str:
    """What a node is, in the words of a message (`a mapping`, `a list`, `a number`, ...)."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return _KINDS.get(node.tag.rsplit(":", 1)[-1], "a scalar")


def line(node: yaml.Node) -> int:
    """The 1-based line where the node starts."""
    return int(node.start_mark.line) + 1


def integer(node: yaml.Node) -> int | None:
    """The value of a YAML integer node (any YAML 1.1 notation); None for any other node."""
    if isinstance(node, yaml.ScalarNode) and node.tag == INT_TAG:
        return _CONSTRUCTOR.construct_yaml_int(node)
    return None


class Checker:
    """Collects problems, each at the line of the YAML node it is about.

    Methods take `None` for an absent node (the parent reported it if it was required) and return a
    placeholder ("" or an empty container) for absent or invalid values, so callers never stop early.
    `missing_fix` gives, by field name, the fix for a missing required field.
    """

    def __init__(self, source: str, *, missing_fix: Mapping[str, str] = MappingProxyType({})) -> None:
        self.source = source
        self.problems: list[InventoryProblem] = []
        self._missing_fix = missing_fix
        self._owners: dict[tuple[str, str], str] = {}

    def add(self, node: yaml.Node, path: str, message: str) -> None:
        self.problems.append(InventoryProblem(self.source, line(node), path or "(top level)", message))

    def mapping(self, node: yaml.Node | None, path: str, *, nonempty: bool = False) -> dict[str, Entry]:
        """Entries by key (with the key's node, for its line); duplicate and non-text keys are reported."""
        entries: dict[str, Entry] = {}
        if node is None:
            return entries
        if node.tag == NULL_TAG:
            self.add(node, path, "empty; add entries under it (as 'key: value' lines) or remove it")
            return entries
        if not isinstance(node, yaml.MappingNode):
            self.add(node, path, f"expected a mapping ('key: value' lines), got {kind(node)}; fix the value")
            return entries
        for key, value in node.value:
            if not (isinstance(key, yaml.ScalarNode) and key.tag == STR_TAG):
                self.add(key, path, f"keys must be text, got {kind(key)}; quote the key")
            elif key.value in entries:
                first = line(entries[key.value][0])
                self.add(key, f"{path}.{key.value}", f"duplicate key (first at line {first}); remove one")
            else:
                entries[str(key.value)] = (key, value)
        if nonempty and not entries:
            self.add(node, path, "empty; add at least one entry")
        return entries

    def fields(
        self, node: yaml.Node | None, path: str, *, required: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, yaml.Node]:
        """The fields of a fixed-shape mapping; unknown keys and missing required ones are reported."""
        entries = self.mapping(node, path)
        if node is None or not isinstance(node, yaml.MappingNode):
            return {}
        allowed = (*required, *optional)
        prefix = f"{path}." if path else ""
        for name, (key, _) in entries.items():
            if name not in allowed:
                fix = f"remove it or fix the spelling (allowed here: {', '.join(allowed)})"
                self.add(key, prefix + name, f"unknown field{did_you_mean(name, allowed)}; {fix}")
        for name in required:
            if name not in entries:
                fix = self._missing_fix.get(name, f"add {name}: <value>")
                self.add(node, prefix + name, f"missing; {fix}")
        return {name: value for name, (_, value) in entries.items() if name in allowed}

    def sequence(self, node: yaml.Node | None, path: str) -> list[yaml.Node]:
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.add(node, path, f"expected a list ('- ...' lines or []), got {kind(node)}")
            return []
        return list(node.value)

    def text(
        self, node: yaml.Node | None, path: str, check: Callable[[str], str | None] | None = None
    ) -> str:
        """A text value passing `check` (which returns a problem or None); "" when absent or invalid."""
        if node is None:
            return ""
        if not (isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG):
            if isinstance(node, yaml.ScalarNode):
                fix = "give a value" if node.tag == NULL_TAG else "quote it"
            else:
                fix = "give a single value"
            self.add(node, path, f"expected text, got {kind(node)}; {fix}")
            return ""
        value = str(node.value)
        problem = "empty; give a value" if not value.strip() else check and check(value)
        if problem:
            self.add(node, path, problem)
            return ""
        return value

    def reference(
        self, node: yaml.Node | None, path: str, noun: str, known: Collection[str], *, fix: str
    ) -> str:
        """A text value naming one of `known` (a `noun`); an unknown name is reported with `fix`."""
        value = self.text(node, path)
        if node is not None and value and value not in known:
            self.add(node, path, f"unknown {noun} '{value}'{did_you_mean(value, known)}; {fix}")
        return value

    def unique(self, noun: str, value: str, node: yaml.Node, path: str, *, scope: str) -> None:
        """Report `value` when another node already used it as a `noun` (unique across `scope`)."""
        owner = f"{path} (line {line(node)})"
        first = self._owners.setdefault((noun, value), owner)
        if first != owner:
            fix = f"each {noun} must be unique across {scope}"
            self.add(node, path, f"duplicate {noun} '{value}', also used by {first}; {fix}")
