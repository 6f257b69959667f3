"""The live view of a renewal: redrawn in colour on a terminal (none with NO_COLOR), a plain line per change
when piped. rich writes to an in-memory file here, told whether it is a terminal, as it would find out."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from pipeline import report
from pipeline.store import Renewal, RenewalEvent, RenewalFmc
from sftrenew.watching import Watch, status_tables
from tests.unit.test_report import STEPS, T0

ESCAPE = re.compile(r"\x1b\[")
COLOUR = re.compile(r"\x1b\[[0-9;]*3[0-7][0-9;]*m")
TABLE = "renewal r1  pair dc1  state running\n  ftd-001  succeeded\n"


def shown(*, terminal: bool) -> tuple[Watch, io.StringIO]:
    out = io.StringIO()
    console = Console(
        file=out, force_terminal=terminal, width=100, color_system="standard" if terminal else None
    )
    return Watch(header="Flower: http://127.0.0.1:5555/tasks", console=console), out


def test_piped_one_plain_line_per_change_then_the_table_once() -> None:
    watch, out = shown(terminal=False)
    with watch:
        for done, state in ((2, "running"), (2, "running"), (5, "running"), (9, "succeeded")):
            watch.show(done, 9, state, TABLE)
    text = out.getvalue()
    assert not ESCAPE.search(text)
    assert text.splitlines()[:3] == ["2/9 running", "5/9 running", "9/9 succeeded"]
    assert text.endswith(TABLE) and text.count("ftd-001") == 1


def test_a_terminal_gets_the_bar_and_the_table_in_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    watch, out = shown(terminal=True)
    with watch:
        watch.show(5, 9, "partial", TABLE)
    text = out.getvalue()
    assert "5/9" in text and "ftd-001  succeeded" in text and "Flower: http://127.0.0.1:5555/tasks" in text
    assert COLOUR.search(text)


def test_no_color_keeps_the_terminal_view_without_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    watch, out = shown(terminal=True)
    with watch:
        watch.show(5, 9, "partial", TABLE)
    text = out.getvalue()
    assert "5/9" in text and "partial" in text
    assert not COLOUR.search(text)


def test_the_terminal_tables_hold_what_the_plain_status_holds() -> None:
    renewal = Renewal(
        id="r1", pair="dc1", requested_by="ops", requested_at_utc=T0, state="running", last_progress_utc=T0
    )
    fmc = RenewalFmc(renewal_id="r1", fmc="fmc-a", role="primary", state="running")
    event = RenewalEvent(renewal_id="r1", at_utc=T0, action="pause", who="alice", detail="change freeze")
    document = report.status_document(renewal, [fmc], STEPS, [event], held=False, paused=True)
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=160).print(
        status_tables(document, "\nPAUSED: until resume\n")
    )
    text = out.getvalue()
    plain = report.render(renewal, [fmc], STEPS, [event])
    for line in report.device_lines(STEPS):
        assert line.device in text and line.device in plain and line.verdict in text
    assert "primary fmc-a [running]" in text and "by alice: change freeze" in text and "PAUSED" in text
