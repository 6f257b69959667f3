"""The renewal page's grid: each device's state from its last push and last verdict (pure)."""

from __future__ import annotations

import pytest

from sftrenew.web.view import CellState, classify

W, P, D, V, F, R = (
    CellState.WAITING,
    CellState.PUSHING,
    CellState.PUSHED,
    CellState.VERIFIED,
    CellState.FAILED,
    CellState.RESTORED,
)


@pytest.mark.parametrize(
    ("push", "verdict", "since", "state"),
    [
        ("-", "-", False, W),  # planned, no push yet
        ("started", "-", True, P),
        ("retrying", "-", True, P),
        ("interrupted", "-", True, P),  # its worker died: the reconciler sends it again
        ("started", "Unreachable", True, P),  # a retry under way: the old verdict no longer tells
        ("succeeded", "-", True, D),  # pushed, its verify not yet run
        ("skipped", "-", True, D),
        ("succeeded", "Unreachable", True, D),  # retried and pushed; the new verify will say
        ("succeeded", "verified", False, V),
        ("skipped", "verified", False, V),
        ("failed", "verified", False, V),  # the push failed, but generate_certs.pl's live push landed
        ("refused", "-", True, F),
        ("failed", "-", True, F),
        ("refused", "Unreachable", False, F),
        ("succeeded", "NotConnected", False, F),
        ("succeeded", "WrongCa", False, F),
        ("succeeded", "restored", False, R),
        ("failed", "restored", True, R),
    ],
)
def test_classify(push: str, verdict: str, since: bool, state: CellState) -> None:
    assert classify(push, verdict, pushed_since_verify=since) is state


def test_every_state_reads_without_colour() -> None:
    words = [s.value for s in CellState]
    symbols = [s.symbol for s in CellState]
    assert len(set(words)) == len(words) and len(set(symbols)) == len(symbols)
    assert all(s.css.isidentifier() for s in CellState)
