"""The steps' pure decisions, tested exhaustively: exactly-once regeneration, push, restart or skip, routes,
plan."""

from __future__ import annotations

import inspect
import itertools
import pickle
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.devices.session import DIRECT, Route
from pipeline.errors import (
    AuthenticationFailedError,
    DeviceError,
    DeviceUnreachableError,
    HostKeyRejectedError,
    PushRefusedError,
    StrandedDevicesError,
    can_retry,
)
from pipeline.flow import next_route
from pipeline.material import PeerMaterial
from pipeline.plan import FmcPlan, PeerAction, PeerPlan, RenewalPlan, gate, plan_renewal
from pipeline.steps.push import (
    HeldFiles,
    PushAction,
    RestartFacts,
    decide_push,
)
from pipeline.steps.regenerate import RegenDecision, decide_regeneration
from pipeline.steps.validate import PeerFacts, RouteProbe, Tunnel, ValidateOutcome

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
JUMP = Route("jump", "jump-1")


@pytest.mark.parametrize(
    ("current", "created", "intent", "expected"),
    [
        ("old", None, False, RegenDecision.RUN),
        ("old", None, True, RegenDecision.RUN),  # the intent was recorded, the run never changed the CA
        ("old", "new", True, RegenDecision.RUN),
        ("new", "new", True, RegenDecision.ALREADY_DONE),
        ("other", "new", True, RegenDecision.FOREIGN_CA),
        ("new", None, True, RegenDecision.ALREADY_DONE),  # killed during or after generate_certs.pl
        ("new", None, False, RegenDecision.FOREIGN_CA),  # made by hand after the backup, however young
    ],
)
def test_decide_regeneration(
    current: str, created: str | None, intent: bool, expected: RegenDecision
) -> None:
    decision = decide_regeneration(
        current_sha256=current, started_from_sha256="old", created_sha256=created, intent_recorded=intent
    )
    assert decision is expected


def test_regeneration_runs_only_from_the_starting_ca() -> None:
    """Over every combination, RUN happens exactly when the FMC still holds the CA the renewal began with."""
    for current, created, intent in itertools.product(("old", "new", "x"), ("new", None), (True, False)):
        decision = decide_regeneration(
            current_sha256=current, started_from_sha256="old", created_sha256=created, intent_recorded=intent
        )
        assert (decision is RegenDecision.RUN) == (current == "old")


def test_the_foreign_ca_fence_reads_no_clock() -> None:
    """Whose CA it is depends on fingerprints and the recorded intent only: no time is an input, so no clock
    skew can open the fence; a CA this renewal neither made nor saw at backup is foreign unless the renewal
    recorded, before reading it, that it was about to run generate_certs.pl."""
    assert set(inspect.signature(decide_regeneration).parameters) == {
        "current_sha256",
        "started_from_sha256",
        "created_sha256",
        "intent_recorded",
    }
    for current, created in itertools.product(("new", "x"), ("new", None)):
        decision = decide_regeneration(
            current_sha256=current, started_from_sha256="old", created_sha256=created, intent_recorded=False
        )
        assert (decision is RegenDecision.ALREADY_DONE) == (created == current)


WANTED = PeerMaterial("u", b"ca", b"cert", b"key", ca_sha256="ca1", cert_sha256="cert1")
NEW = HeldFiles("ca1", "cert1", key_matches_cert=True)
NEVER_WRITTEN = RestartFacts()
WRITTEN = RestartFacts(write_started_at_utc=NOW)
RESTARTED = RestartFacts(write_started_at_utc=NOW, restarted_at_utc=NOW + timedelta(seconds=5))


@pytest.mark.parametrize(
    ("held", "recorded", "action"),
    [
        # Files new, never written by this renewal: generate_certs.pl pushed them over a live tunnel.
        (NEW, NEVER_WRITTEN, PushAction.SKIP),
        # Files new, written by an earlier attempt that also restarted: done.
        (NEW, RESTARTED, PushAction.SKIP),
        # Files new, written by an earlier attempt that died before its restart: restart only.
        (NEW, WRITTEN, PushAction.RESTART),
        # Files not new: write (then restart), whatever the record says.
        (HeldFiles("ca1", "cert1", key_matches_cert=False), NEVER_WRITTEN, PushAction.WRITE),
        (HeldFiles("ca0", "cert1", key_matches_cert=True), NEVER_WRITTEN, PushAction.WRITE),
        (HeldFiles("ca1", "cert0", key_matches_cert=True), WRITTEN, PushAction.WRITE),
        (HeldFiles(None, None, key_matches_cert=False), RESTARTED, PushAction.WRITE),
    ],
)
def test_decide_push(held: HeldFiles, recorded: RestartFacts, action: PushAction) -> None:
    assert decide_push(held, WANTED, recorded) is action


def test_a_restart_is_owed_exactly_when_a_write_began_and_no_restart_followed() -> None:
    for started, restarted in itertools.product((None, NOW), (None, NOW)):
        facts = RestartFacts(started, restarted)
        assert facts.restart_owed == (started is not None and restarted is None)
        assert decide_push(NEW, WANTED, facts) is (
            PushAction.RESTART if facts.restart_owed else PushAction.SKIP
        )


def test_decide_push_never_refuses() -> None:
    """REFUSED is an outcome (the session never opened), never a decision over what a device holds."""
    for ca, cert, key, started, restarted in itertools.product(
        ("ca1", None), ("cert1", None), (True, False), (None, NOW), (None, NOW)
    ):
        action = decide_push(HeldFiles(ca, cert, key), WANTED, RestartFacts(started, restarted))
        assert action is not PushAction.REFUSED


@pytest.mark.parametrize(
    "cause",
    [
        AuthenticationFailedError("ftd-001", "direct", "admin"),
        HostKeyRejectedError("ftd-002", "via jump-1", "/etc/sftrenew/known_hosts"),
        DeviceUnreachableError("ftd-003", "direct", "connection timed out after 2 s"),
    ],
)
def test_a_refused_push_says_so_and_survives_celery(cause: DeviceError) -> None:
    refused = PushRefusedError.of(cause)
    assert str(refused).startswith(f"refused before any write: {cause.device} (route {cause.route}): ")
    assert cause.describe() in str(refused)
    assert repr(refused) == f"PushRefusedError({str(refused)!r})"  # what Flower shows of a failed task
    assert refused.cause_kind == type(cause).__name__
    assert can_retry(refused) is cause.retryable and not refused.retryable
    for rebuilt in (type(refused)(*refused.args), pickle.loads(pickle.dumps(refused))):  # noqa: S301
        assert isinstance(rebuilt, PushRefusedError)
        assert str(rebuilt) == str(refused) and rebuilt.cause_retryable == refused.cause_retryable


def test_next_route_direct_first_then_jump() -> None:
    routes = [DIRECT, JUMP]
    assert [next_route(routes, n, direct_attempts=2) for n in range(1, 5)] == [DIRECT, DIRECT, JUMP, None]
    assert [next_route([DIRECT], n, direct_attempts=1) for n in (1, 2)] == [DIRECT, None]
    assert next_route([], 1, direct_attempts=2) is None
    assert next_route(routes, 0, direct_attempts=2) is None


def _peer(name: str, tunnel: Tunnel, ok: tuple[Route, ...]) -> PeerFacts:
    probes = tuple(
        RouteProbe(r, ok=r in ok, error_kind=None if r in ok else "DeviceUnreachableError")
        for r in (DIRECT, JUMP)
    )
    return PeerFacts(name, "127.0.0.1", None, tunnel, probes)


def test_plan_names_live_pushes_ssh_pushes_and_stranded_devices() -> None:
    facts = ValidateOutcome(
        "fmc-primary",
        "uuid",
        "sha",
        NOW,
        10,
        (
            _peer("live", "up", ()),
            _peer("direct", "down", (DIRECT, JUMP)),
            _peer("jump-only", "down", (JUMP,)),
            _peer("gone", "down", ()),
            _peer("unknown", "unknown", ()),
        ),
    )
    plan = plan_renewal("dc1", [facts])
    actions = {p.name: (p.action, p.routes) for p in plan.fmcs[0].peers}
    assert actions == {
        "live": (PeerAction.LIVE_PUSH, ()),
        "direct": (PeerAction.PUSH, (DIRECT, JUMP)),
        "jump-only": (PeerAction.PUSH, (JUMP,)),
        "gone": (PeerAction.STRANDED, ()),
        "unknown": (PeerAction.STRANDED, ()),
    }
    assert plan.stranded == ("gone", "unknown")
    with pytest.raises(StrandedDevicesError, match="gone"):
        plan.raise_for_stranded()


# ------------------------------------------------------------------ the plan gate


def _gate_plan(days: tuple[int, int], stranded: dict[str, PeerAction]) -> RenewalPlan:
    def fmc(name: str, days_left: int) -> FmcPlan:
        peers = [PeerPlan("ftd-001", PeerAction.PUSH, (DIRECT,), "down")]
        peers += [
            PeerPlan(n, a, (), "down", "refused" if a is PeerAction.REFUSED else None)
            for n, a in stranded.items()
        ]
        return FmcPlan(name, days_left, tuple(peers))

    return RenewalPlan("lab", (fmc("fmc-primary", days[0]), fmc("fmc-secondary", days[1])))


def test_the_gate_refuses_each_unaccepted_stranded_device_and_a_ca_not_due() -> None:
    plan = _gate_plan((3650, 20), {"ftd-004": PeerAction.STRANDED, "ftd-005": PeerAction.REFUSED})
    refusal = gate(plan, accepted={"ftd-004"}, forced=False, renew_within_days=90)
    assert refusal is not None
    assert [p.name for p in refusal.stranded] == ["ftd-005"]
    assert [f.fmc for f in refusal.not_due] == ["fmc-primary"]
    lines = refusal.lines()
    assert "--accept-stranded ftd-005" in lines[0] and "ftd-004" not in " ".join(lines)
    assert "fmc-primary: its CA has 3650 days left" in lines[1] and "--force --reason" in lines[1]
    assert gate(plan, accepted={"ftd-004", "ftd-005"}, forced=True, renew_within_days=90) is None


def test_the_gate_lets_a_due_pair_with_nothing_stranded_through() -> None:
    assert gate(_gate_plan((90, -30), {}), accepted=(), forced=False, renew_within_days=90) is None
    assert gate(_gate_plan((91, -30), {}), accepted=(), forced=False, renew_within_days=90) is not None
