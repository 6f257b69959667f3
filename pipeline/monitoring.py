"""What `sftrenew check` tells a monitoring system, in the three forms monitoring systems read (pure).

A monitoring system does not read prose: Nagios and Icinga read a plugin's exit code and its first line
(`SERVICE STATUS: text | perfdata`, the Monitoring Plugins guidelines), scripts read JSON, Prometheus reads
a node-exporter textfile. Each is built here from the same facts: per FMC, its InternalCA's end or why it
could not be read; per pair, how its last renewal ended and how many devices it left not verified.

The thresholds follow the plugins' convention for "alert below": `--warn-days 90` is the range `90:` (OK
from 90 days up), so the perfdata carries `;90:;30:`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from prometheus_client import CollectorRegistry, Gauge

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
LEVELS: Final = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
#: The `--json` document's shape; a change that breaks a reader gets a new number (docs/cli.md).
JSON_SCHEMA: Final = "sftrenew.check/1"


@dataclass(frozen=True)
class CaCheck:
    """One FMC's InternalCA, as read from the FMC (`not_after_utc`), or why it could not be (`error`)."""

    pair: str
    fmc: str
    not_after_utc: datetime | None = None
    days_left: int | None = None
    error: str | None = None

    def level(self, warn_days: int, crit_days: int) -> int:
        if self.days_left is None:
            return UNKNOWN
        return CRITICAL if self.days_left <= crit_days else WARNING if self.days_left <= warn_days else OK

    @property
    def name(self) -> str:
        return f"{self.pair}/{self.fmc}"


@dataclass(frozen=True)
class LastRenewal:
    """A pair's newest renewal, from the record: its id, state and end (None while it runs), and how many
    devices (per FMC it regenerated) its verify has not verified."""

    pair: str
    renewal_id: str
    state: str
    finished_at_utc: datetime | None
    not_verified: int


@dataclass(frozen=True)
class CheckResult:
    cas: tuple[CaCheck, ...]
    warn_days: int
    crit_days: int
    checked_at_utc: datetime

    @property
    def exit_code(self) -> int:
        """The worst level: UNKNOWN (3) outranks CRITICAL here only when nothing was read at all, as Nagios
        plugins do; a critical CA must not hide behind another FMC that did not answer."""
        levels = [ca.level(self.warn_days, self.crit_days) for ca in self.cas]
        known = [lv for lv in levels if lv != UNKNOWN]
        if not levels:
            return UNKNOWN
        if UNKNOWN in levels and (not known or max(known) < CRITICAL):
            return UNKNOWN
        return max(known)

    def detail_lines(self) -> list[str]:
        """One line per FMC, for people (after the first line)."""
        lines = []
        for ca in self.cas:
            word = LEVELS[ca.level(self.warn_days, self.crit_days)]
            if ca.error is not None or ca.not_after_utc is None:
                lines.append(f"{word} {ca.name}: {ca.error}")
            else:
                lines.append(
                    f"{word} {ca.name}: InternalCA expires {ca.not_after_utc:%Y-%m-%d} ({ca.days_left} days)"
                )
        return lines


def nagios_line(result: CheckResult) -> str:
    """The plugin's first line: `SFTRENEW <STATUS> - <what> | <perfdata>`; each CA's days left is one
    perfdata label (quoted: names hold a slash)."""
    status = LEVELS[result.exit_code]
    counts = dict.fromkeys(LEVELS, 0)
    for ca in result.cas:
        counts[LEVELS[ca.level(result.warn_days, result.crit_days)]] += 1
    if not result.cas:
        text = "no FMC in the inventory"
    else:
        worst = [ca for ca in result.cas if LEVELS[ca.level(result.warn_days, result.crit_days)] == status]
        named = ", ".join(_short(ca) for ca in worst) if status != "OK" else _soonest(result.cas)
        summary = ", ".join(f"{n} {word.lower()}" for word, n in counts.items() if n)
        text = f"{len(result.cas)} InternalCA(s): {summary}; {named}"
    perf = " ".join(
        f"'{ca.name}'={ca.days_left};{result.warn_days}:;{result.crit_days}:"
        for ca in result.cas
        if ca.days_left is not None
    )
    return f"SFTRENEW {status} - {text}" + (f" | {perf}" if perf else "")


def _short(ca: CaCheck) -> str:
    if ca.days_left is None:
        return f"{ca.name} not read"
    return f"{ca.name} {'expired' if ca.days_left < 0 else 'ends'} {ca.not_after_utc:%Y-%m-%d}"


def _soonest(cas: Sequence[CaCheck]) -> str:
    read = [ca for ca in cas if ca.days_left is not None]
    first = min(read, key=lambda ca: ca.days_left or 0)
    return f"soonest {first.name} in {first.days_left} days"


def check_json(result: CheckResult, renewals: Sequence[LastRenewal] | None) -> str:
    """The `--json` document (stable: `schema` names its shape). `renewals` None: the record was not read."""
    doc = {
        "schema": JSON_SCHEMA,
        "checked_at": result.checked_at_utc.isoformat(),
        "status": LEVELS[result.exit_code],
        "exit_code": result.exit_code,
        "warn_days": result.warn_days,
        "crit_days": result.crit_days,
        "cas": [
            {
                "pair": ca.pair,
                "fmc": ca.fmc,
                "status": LEVELS[ca.level(result.warn_days, result.crit_days)],
                "not_after": ca.not_after_utc.isoformat() if ca.not_after_utc else None,
                "days_left": ca.days_left,
                "error": ca.error,
            }
            for ca in result.cas
        ],
        "last_renewals": None if renewals is None else [_renewal_doc(r) for r in renewals],
    }
    return json.dumps(doc, indent=2, sort_keys=False)


def _renewal_doc(last: LastRenewal) -> dict[str, object]:
    return {
        "pair": last.pair,
        "renewal": last.renewal_id,
        "state": last.state,
        "finished_at": last.finished_at_utc.isoformat() if last.finished_at_utc else None,
        "devices_not_verified": last.not_verified,
    }


def prometheus_registry(result: CheckResult, renewals: Sequence[LastRenewal] | None) -> CollectorRegistry:
    """The node-exporter textfile's metrics. Per FMC: days left and notAfter (absent when the CA could not
    be read: `sftrenew_ca_read_ok` says so, an alert can fire on it). Per pair: the last renewal's state (one
    series per state, 1 for the current one, as Prometheus models an enum), its end time and the devices it
    left not verified. `sftrenew_record_read_ok` is 0 when the database was not read."""
    registry = CollectorRegistry()
    read = Gauge(
        "sftrenew_ca_read_ok", "1 when the FMC's InternalCA was read", ["pair", "fmc"], registry=registry
    )
    days = Gauge(
        "sftrenew_ca_days_left", "Days until the FMC's InternalCA ends", ["pair", "fmc"], registry=registry
    )
    end = Gauge(
        "sftrenew_ca_not_after_timestamp_seconds",
        "The FMC's InternalCA notAfter, as a Unix time",
        ["pair", "fmc"],
        registry=registry,
    )
    for ca in result.cas:
        read.labels(ca.pair, ca.fmc).set(0 if ca.not_after_utc is None else 1)
        if ca.not_after_utc is not None and ca.days_left is not None:
            days.labels(ca.pair, ca.fmc).set(ca.days_left)
            end.labels(ca.pair, ca.fmc).set(ca.not_after_utc.timestamp())
    Gauge("sftrenew_check_timestamp_seconds", "When this check ran, as a Unix time", registry=registry).set(
        result.checked_at_utc.timestamp()
    )
    record = Gauge("sftrenew_record_read_ok", "1 when the renewal record was read", registry=registry)
    record.set(0 if renewals is None else 1)
    if renewals:
        _renewal_metrics(registry, renewals)
    return registry


RENEWAL_STATES: Final = ("queued", "running", "succeeded", "failed", "partial")


def _renewal_metrics(registry: CollectorRegistry, renewals: Sequence[LastRenewal]) -> None:
    state = Gauge(
        "sftrenew_last_renewal_state",
        "1 for the state the pair's last renewal is in, 0 for the others",
        ["pair", "state"],
        registry=registry,
    )
    finished = Gauge(
        "sftrenew_last_renewal_finished_timestamp_seconds",
        "When the pair's last renewal ended, as a Unix time (absent while it runs)",
        ["pair"],
        registry=registry,
    )
    missing = Gauge(
        "sftrenew_last_renewal_devices_not_verified",
        "Devices the pair's last renewal has not verified on a regenerated CA",
        ["pair"],
        registry=registry,
    )
    for last in renewals:
        for name in RENEWAL_STATES:
            state.labels(last.pair, name).set(1 if last.state == name else 0)
        if last.finished_at_utc is not None:
            finished.labels(last.pair).set(last.finished_at_utc.timestamp())
        missing.labels(last.pair).set(last.not_verified)
