"""What people are told (pure): the notices' words, and how SFTRENEW_NOTIFY is split."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline import notices
from pipeline.monitoring import CaCheck, CheckResult

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def test_notify_urls_split_on_spaces_commas_and_newlines() -> None:
    assert notices.notify_urls(" json://a/x, mailto://b\nntfy://c  ") == [
        "json://a/x",
        "mailto://b",
        "ntfy://c",
    ]
    assert notices.notify_urls("  ") == []


def test_a_partial_end_lists_each_device_and_the_next_command() -> None:
    missing = [("fmc-a", f"ftd-{n:03}") for n in range(1, 26)]
    told = notices.renewal_ended("r-1", "dc1", "partial", missing)
    assert (told.title, told.level) == ("sftrenew: renewal of dc1 ended partial", "warning")
    assert "25 device(s) not verified" in told.body and "fmc-a -> ftd-020" in told.body
    assert "ftd-021" not in told.body and "and 5 more" in told.body
    assert told.body.endswith("Push again: sftrenew retry r-1")


def test_a_failed_end_before_any_regeneration_says_nothing_changed() -> None:
    told = notices.renewal_ended("r-2", "dc1", "failed", [])
    assert told.level == "failure" and "every device is still on its old CA" in told.body
    assert "retry" not in told.body


def test_a_success_is_one_line() -> None:
    told = notices.renewal_ended("r-3", "dc1", "succeeded", [])
    assert told.level == "success" and told.body.count("\n") == 0


def test_a_ca_check_tells_only_what_is_not_ok() -> None:
    def check(*days: int) -> CheckResult:
        cas = tuple(CaCheck("dc1", f"fmc-{d}", NOW + timedelta(days=d), d) for d in days)
        return CheckResult(cas, 90, 30, NOW)

    assert notices.cas_due(check(400, 200)) is None
    warned = notices.cas_due(check(400, 60))
    assert warned is not None and warned.level == "warning"
    assert warned.body.splitlines()[0] == "WARNING dc1/fmc-60: InternalCA expires 2027-02-01 (60 days)"
    assert "fmc-400" not in warned.body
    critical = notices.cas_due(check(10, 60))
    assert critical is not None and critical.level == "failure" and critical.title.endswith("CRITICAL")


def test_an_abandon_says_who_why_and_what_it_leaves_behind() -> None:
    told = notices.renewal_abandoned("r-4", "dc1", "bob", "window closed", [("fmc-a", "ftd-007")])
    assert told.title == "sftrenew: renewal of dc1 abandoned by bob" and told.level == "failure"
    assert "abandoned by bob: window closed" in told.body and "fmc-a -> ftd-007" in told.body
    clean = notices.renewal_abandoned("r-5", "dc1", "bob", "not needed", [])
    assert clean.level == "warning" and "No device was left off a new CA." in clean.body
