"""What `sftrenew check` tells monitoring: the plugin line, the JSON, the Prometheus textfile (pure)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import monitoring
from pipeline.monitoring import CaCheck, CheckResult, LastRenewal

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
#: The Monitoring Plugins guidelines' first line: status, text, then optional perfdata after a `|`.
PLUGIN_LINE = re.compile(
    r"^SFTRENEW (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| ('[^']+'=-?\d+;\d+:;\d+: ?)+)?$"
)


def ca(fmc: str, days: int | None, pair: str = "dc1") -> CaCheck:
    if days is None:
        return CaCheck(pair, fmc, error=f"{fmc} unreachable: connection refused")
    return CaCheck(pair, fmc, NOW + timedelta(days=days), days)


def result(*cas: CaCheck) -> CheckResult:
    return CheckResult(tuple(cas), warn_days=90, crit_days=30, checked_at_utc=NOW)


def test_levels_and_exit_codes_follow_the_plugin_convention() -> None:
    assert result(ca("a", 400), ca("b", 365)).exit_code == monitoring.OK
    assert result(ca("a", 400), ca("b", 90)).exit_code == monitoring.WARNING
    assert result(ca("a", 30), ca("b", 365)).exit_code == monitoring.CRITICAL
    assert result(ca("a", -31)).exit_code == monitoring.CRITICAL
    assert result(ca("a", None), ca("b", 365)).exit_code == monitoring.UNKNOWN
    assert result().exit_code == monitoring.UNKNOWN


def test_a_critical_ca_is_not_hidden_by_an_fmc_that_did_not_answer() -> None:
    assert result(ca("a", None), ca("b", 10)).exit_code == monitoring.CRITICAL
    assert result(ca("a", None), ca("b", 60)).exit_code == monitoring.UNKNOWN


def test_the_first_line_is_a_plugin_line_with_perfdata_per_ca() -> None:
    line = monitoring.nagios_line(result(ca("fmc-a", -31), ca("fmc-b", 200)))
    assert PLUGIN_LINE.match(line), line
    assert line.startswith(
        "SFTRENEW CRITICAL - 2 InternalCA(s): 1 ok, 1 critical; dc1/fmc-a expired 2026-11-02"
    )
    assert line.endswith("| 'dc1/fmc-a'=-31;90:;30: 'dc1/fmc-b'=200;90:;30:")
    ok = monitoring.nagios_line(result(ca("fmc-a", 120), ca("fmc-b", 200)))
    assert PLUGIN_LINE.match(ok) and "soonest dc1/fmc-a in 120 days" in ok
    unknown = monitoring.nagios_line(result(ca("fmc-a", None)))
    assert unknown == "SFTRENEW UNKNOWN - 1 InternalCA(s): 1 unknown; dc1/fmc-a not read"
    assert monitoring.nagios_line(result()) == "SFTRENEW UNKNOWN - no FMC in the inventory"


def test_the_detail_lines_name_each_fmc() -> None:
    lines = result(ca("fmc-a", -31), ca("fmc-b", None)).detail_lines()
    assert lines == [
        "CRITICAL dc1/fmc-a: InternalCA expires 2026-11-02 (-31 days)",
        "UNKNOWN dc1/fmc-b: fmc-b unreachable: connection refused",
    ]


def test_the_json_document_has_a_stable_shape() -> None:
    last = LastRenewal("dc1", "r-1", "partial", NOW, 2)
    doc = json.loads(monitoring.check_json(result(ca("fmc-a", 60), ca("fmc-b", None)), [last]))
    assert doc["schema"] == "sftrenew.check/1"
    assert (doc["status"], doc["exit_code"], doc["warn_days"], doc["crit_days"]) == ("UNKNOWN", 3, 90, 30)
    assert doc["cas"][0] == {
        "pair": "dc1",
        "fmc": "fmc-a",
        "status": "WARNING",
        "not_after": (NOW + timedelta(days=60)).isoformat(),
        "days_left": 60,
        "error": None,
    }
    assert doc["cas"][1]["status"] == "UNKNOWN" and doc["cas"][1]["days_left"] is None
    assert doc["last_renewals"] == [
        {
            "pair": "dc1",
            "renewal": "r-1",
            "state": "partial",
            "finished_at": NOW.isoformat(),
            "devices_not_verified": 2,
        }
    ]
    assert json.loads(monitoring.check_json(result(), None))["last_renewals"] is None


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The textfile parsed by Prometheus's own parser: (name, labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_textfile_holds_the_cas_and_the_last_renewals() -> None:
    last = LastRenewal("dc1", "r-1", "partial", NOW, 2)
    text = generate_latest(
        monitoring.prometheus_registry(result(ca("fmc-a", -31), ca("fmc-b", None)), [last])
    )
    got = samples(text.decode())
    a, b = (("fmc", "fmc-a"), ("pair", "dc1")), (("fmc", "fmc-b"), ("pair", "dc1"))
    assert got[("sftrenew_ca_days_left", a)] == -31
    assert got[("sftrenew_ca_not_after_timestamp_seconds", a)] == (NOW - timedelta(days=31)).timestamp()
    assert got[("sftrenew_ca_read_ok", a)] == 1 and got[("sftrenew_ca_read_ok", b)] == 0
    assert ("sftrenew_ca_days_left", b) not in got  # not read: no made-up number
    assert got[("sftrenew_last_renewal_state", (("pair", "dc1"), ("state", "partial")))] == 1
    assert got[("sftrenew_last_renewal_state", (("pair", "dc1"), ("state", "succeeded")))] == 0
    assert got[("sftrenew_last_renewal_devices_not_verified", (("pair", "dc1"),))] == 2
    assert got[("sftrenew_last_renewal_finished_timestamp_seconds", (("pair", "dc1"),))] == NOW.timestamp()
    assert got[("sftrenew_record_read_ok", ())] == 1
    unread = samples(generate_latest(monitoring.prometheus_registry(result(ca("fmc-a", 5)), None)).decode())
    assert unread[("sftrenew_record_read_ok", ())] == 0
    assert not any(name.startswith("sftrenew_last_renewal") for name, _ in unread)
