"""Showing a renewal (`status`, `status --watch`, the demo): rich tables on a terminal, plain text elsewhere.

On a terminal, rich redraws one view in place: a progress bar (its total from the plan at enqueue, so it
never goes backwards) and the status table, in colour unless `NO_COLOR` is set (rich honours it). Piped or
redirected (a log file, CI, `tee`), there is no terminal to redraw: one plain line is printed per change of
progress or state, no escape code, and the whole table once at the end.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

#: A device's push and verdict words, coloured by how they stand (the word says it without colour too).
WORD_STYLES = {
    "succeeded": "green",
    "skipped": "green",
    "verified": "green",
    "restored": "yellow",
    "retrying": "yellow",
    "started": "cyan",
    "failed": "red",
    "refused": "red",
}

#: The state words' colours on a terminal (the words themselves carry the meaning without colour).
STATE_STYLES = {
    "succeeded": "green",
    "partial": "yellow",
    "failed": "red",
    "running": "cyan",
    "queued": "cyan",
}


class Watch:
    """One renewal's live view; `show` it each time the record is read, `close` at the end (or use `with`)."""

    def __init__(self, header: str = "", console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)
        self.header = header
        self._last: tuple[int, int, str] | None = None
        self._text = ""
        self._live: Live | None = None
        if self.console.is_terminal:
            self._live = Live(console=self.console, auto_refresh=False, transient=False)
            self._live.start()

    def show(
        self, done: int, total: int, state: str, text: str, tables: RenderableType | None = None
    ) -> None:
        """`text`: the plain status (piped); `tables`: the same drawn for a terminal (`status_tables`; the
        plain text there when None)."""
        self._text = text
        if self._live is not None:
            body: RenderableType = tables if tables is not None else Text(text.rstrip("\n"))
            self._live.update(self._view(done, total, state, body), refresh=True)
        elif (done, total, state) != self._last:
            self.console.print(f"{done}/{total} {state}", markup=False, highlight=False)
        self._last = (done, total, state)

    def close(self) -> None:
        """End the view: on a terminal it stays as last drawn; elsewhere the table is printed once."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        elif self._text:
            self.console.print(self._text, end="", markup=False, highlight=False)

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _view(self, done: int, total: int, state: str, body: RenderableType) -> Group:
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=max(total, 1), completed=done, width=40),
            Text(f"{done}/{total}"),
            Text(state, style=STATE_STYLES.get(state, "")),
        )
        parts: list[RenderableType] = [bar, body]
        if self.header:
            parts.insert(0, Text(self.header))
        return Group(*parts)


def status_tables(document: dict[str, Any], extra: str = "") -> Group:
    """`report.status_document` as rich tables: the renewal's line, a table per FMC, the events, then
    `extra` (what a held or paused renewal waits for)."""
    renewal = document["renewal"]
    state = renewal["state"]
    head = Text.assemble(
        f"renewal {renewal['id']}  pair {renewal['pair']}  state ",
        (state, STATE_STYLES.get(state, "")),
        f"  requested by {renewal['requested_by']} at {renewal['requested_at']}",
    )
    parts: list[RenderableType] = [head]
    for fmc in document["fmcs"]:
        steps = "  ".join(f"{name}:{ran or '-'}" for name, ran in fmc["steps"].items())
        before, after = (fmc["ca_before_sha256"] or "-")[:12], (fmc["ca_after_sha256"] or "-")[:12]
        table = Table(
            # Text, not a string: a string title is rich markup, and `[running]` would be taken for a tag.
            title=Text(f"{fmc['role']} {fmc['fmc']} [{fmc['state']}]  CA {before} -> {after}  {steps}"),
            title_justify="left",
            show_edge=False,
        )
        for column in ("device", "push", "route", "tries", "verdict", "error or note"):
            table.add_column(column, justify="right" if column == "tries" else "left")
        for device in fmc["devices"]:
            table.add_row(  # Text throughout: recorded words are never read as rich markup
                Text(device["device"]),
                Text(device["push"], style=WORD_STYLES.get(device["push"], "")),
                Text(device["route"]),
                Text(str(device["attempts"])),
                Text(device["verdict"], style=WORD_STYLES.get(device["verdict"], "red")),
                Text(device["error"] or device["note"] or ""),
            )
        parts.append(table)
    if document["events"]:
        parts.append(Text("events:"))
        parts.extend(Text(f"  {e['line']}") for e in document["events"])
    if extra.strip():
        parts.append(Text(extra.strip("\n"), style="bold"))
    return Group(*parts)
