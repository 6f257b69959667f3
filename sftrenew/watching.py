"""Showing a running renewal (`status --watch`, the demo): a live view on a terminal, plain lines elsewhere.

On a terminal, rich redraws one view in place: a progress bar (its total from the plan at enqueue, so it
never goes backwards) and the status table, in colour unless `NO_COLOR` is set (rich honours it). Piped or
redirected (a log file, CI, `tee`), there is no terminal to redraw: one plain line is printed per change of
progress or state, no escape code, and the whole table once at the end.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

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

    def show(self, done: int, total: int, state: str, text: str) -> None:
        self._text = text
        if self._live is not None:
            self._live.update(self._view(done, total, state, text), refresh=True)
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

    def _view(self, done: int, total: int, state: str, text: str) -> Group:
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=max(total, 1), completed=done, width=40),
            Text(f"{done}/{total}"),
            Text(state, style=STATE_STYLES.get(state, "")),
        )
        parts: list[Text | Table] = [bar, Text(text.rstrip("\n"))]
        if self.header:
            parts.insert(0, Text(self.header))
        return Group(*parts)
