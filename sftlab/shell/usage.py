"""What clients did to a device over SSH, counted by the lab so a benchmark can see it without asking the
client: logins accepted, sessions opened (interactive and exec) and, per session, command round trips.

A round trip is counted each time the client sends input after the device has written output (a change of
direction from the device to the client and back), and once for an exec request's command. The echo of typed
characters is the terminal's reflex, not the device's answer, so it does not count as output; a client that
types a burst of lines in one write, or ahead of the output, pays one round trip for it, as it pays one
network delay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SessionKind = Literal["interactive", "exec"]


@dataclass
class SessionUsage:
    """One SSH session on a device: its kind, when it opened (seconds since the epoch, the wall clock other
    processes' records can be compared with) and the round trips so far."""

    kind: SessionKind
    opened_at: float
    round_trips: int = 0


@dataclass
class DeviceUsage:
    """Everything counted on one device since the lab started."""

    logins: int = 0
    sessions: list[SessionUsage] = field(default_factory=list)

    @property
    def sessions_opened(self) -> int:
        return len(self.sessions)

    @property
    def round_trips(self) -> int:
        return sum(s.round_trips for s in self.sessions)

    def as_json(self) -> dict[str, Any]:
        return {
            "logins": self.logins,
            "sessions_opened": self.sessions_opened,
            "round_trips": self.round_trips,
            "sessions": [
                {"kind": s.kind, "opened_at": round(s.opened_at, 6), "round_trips": s.round_trips}
                for s in self.sessions
            ],
        }
