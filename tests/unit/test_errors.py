"""The error tree: retry classes, messages that name the fix, and round trips through pickle and Celery."""

from __future__ import annotations

import pickle

import pytest

from pipeline import errors
from pipeline.errors import (
    OUTPUT_TAIL_CHARS,
    AuthenticationFailedError,
    BackupMismatchError,
    BadRecordError,
    CommandFailedError,
    ConfigError,
    DeviceError,
    DeviceUnreachableError,
    ErrorKind,
    ForeignCAError,
    HostKeyRejectedError,
    InventoryError,
    InventoryProblem,
    LateDeliveryError,
    NoMaterialError,
    NoRouteError,
    PushRefusedError,
    RenewalError,
    SftrenewError,
    StrandedDevicesError,
    UnexpectedShellError,
    UnknownPeerError,
    WriteIntegrityError,
    can_retry,
    kind_of,
    recorded_kind,
)

SAMPLES: list[SftrenewError] = [
    ConfigError("settings.toml: broker_url is empty; set SFTRENEW_BROKER_URL"),
    InventoryError([InventoryProblem("inv.yaml", 3, "pairs.lab", "missing; add it")]),
    DeviceUnreachableError("ftd-001", "direct", "connection timed out after 10 s"),
    AuthenticationFailedError("ftd-001", "via jump-1", "admin"),
    HostKeyRejectedError("fmc-primary", "direct", "/etc/sftrenew/known_hosts"),
    CommandFailedError(
        "fmc-primary", "direct", "generate_certs.pl", 2, "Error: cannot write /etc/sf/ca_root"
    ),
    UnexpectedShellError("ftd-002", "direct", "firepower(config)# ", "expert"),
    ForeignCAError("fmc-primary", "ab" * 32, "cd" * 32),
    StrandedDevicesError(
        "fmc-primary", ["ftd-003", "ftd-007"], "no SSH route, directly or through a jump server"
    ),
    WriteIntegrityError("ftd-001", "direct", "/ngfw/var/sf/peers/8a1b"),
    NoRouteError("ftd-004", "none", "no route left to try"),
    UnknownPeerError("ftd-005", "none"),
    NoMaterialError("ftd-006", "none"),
    PushRefusedError.of(AuthenticationFailedError("ftd-001", "direct", "admin (sudo su)")),
    BadRecordError("r-1", "fmc-primary", "validate artifact validate.json", "ca_days_left: Field required"),
    LateDeliveryError("r-1", "fmc-primary", "ftd-001", "its renewal was abandoned"),
    BackupMismatchError(
        "ftd-001", "direct", "/var/sf/peers/8a1b", "cacert.pem.sftrenew-20261201T000000Z.bak is missing"
    ),
]
#: What each sample's failure is, as the record stores it (the strings records have always held).
KINDS = {
    ConfigError: ErrorKind.CONFIG,
    InventoryError: ErrorKind.INVENTORY,
    DeviceUnreachableError: ErrorKind.UNREACHABLE,
    AuthenticationFailedError: ErrorKind.REFUSED_AUTH,
    HostKeyRejectedError: ErrorKind.REFUSED_HOST_KEY,
    CommandFailedError: ErrorKind.TOOL_FAILED,
    UnexpectedShellError: ErrorKind.UNEXPECTED_SHELL,
    ForeignCAError: ErrorKind.FOREIGN_CA,
    StrandedDevicesError: ErrorKind.STRANDED,
    WriteIntegrityError: ErrorKind.INTEGRITY,
    NoRouteError: ErrorKind.NO_ROUTE,
    UnknownPeerError: ErrorKind.UNKNOWN_PEER,
    NoMaterialError: ErrorKind.NO_MATERIAL,
    PushRefusedError: ErrorKind.REFUSED,
    BadRecordError: ErrorKind.BAD_RECORD,
    LateDeliveryError: ErrorKind.LATE_DELIVERY,
    BackupMismatchError: ErrorKind.BACKUP_MISMATCH,
}
BASES = (SftrenewError, DeviceError, RenewalError)


@pytest.mark.parametrize(
    ("cls", "retryable"),
    [
        (SftrenewError, False),
        (ConfigError, False),
        (InventoryError, False),
        (DeviceError, False),
        (DeviceUnreachableError, True),
        (AuthenticationFailedError, False),
        (HostKeyRejectedError, False),
        (CommandFailedError, False),
        (UnexpectedShellError, False),
        (RenewalError, False),
        (ForeignCAError, False),
        (StrandedDevicesError, False),
        (WriteIntegrityError, True),
        (NoRouteError, False),
        (UnknownPeerError, False),
        (NoMaterialError, False),
        (PushRefusedError, False),
        (BadRecordError, False),
        (LateDeliveryError, False),
    ],
)
def test_retryable_flags(cls: type[SftrenewError], retryable: bool) -> None:
    assert cls.retryable is retryable


def test_every_public_error_is_in_the_tree_and_named_error() -> None:
    classes = [
        obj for obj in vars(errors).values() if isinstance(obj, type) and issubclass(obj, BaseException)
    ]

    assert {cls.__name__ for cls in classes} == {type(sample).__name__ for sample in SAMPLES} | {
        "SftrenewError",
        "DeviceError",
        "RenewalError",
    }
    assert all(cls.__name__.endswith("Error") and issubclass(cls, SftrenewError) for cls in classes)


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_pickle_round_trip_keeps_type_and_message(error: SftrenewError) -> None:
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301  # our own bytes, made a line above

    assert type(copy) is type(error)
    assert str(copy) == str(error)


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_rebuilt_from_args_as_celery_does(error: SftrenewError) -> None:
    # Celery's result backend stores exc.args and rebuilds the exception with cls(*args).
    assert str(type(error)(*error.args)) == str(error)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            DeviceUnreachableError("ftd-001", "direct", "connection refused"),
            "ftd-001 (route direct): unreachable: connection refused; a retry may work (by its jump server "
            "too, if it has one)",
        ),
        (
            AuthenticationFailedError("ftd-001", "via jump-1", "admin"),
            "ftd-001 (route via jump-1): authentication failed for user 'admin'; check the credential the "
            "inventory names for this device and the password in its secrets file or environment variable",
        ),
        (
            HostKeyRejectedError("fmc-primary", "direct", "/srv/known_hosts", "--trust-on-first-use"),
            "fmc-primary (route direct): host key not in /srv/known_hosts; add the "
            "device's key to that file (check it out of band first) or opt in to trust-on-first-use with "
            "--trust-on-first-use",
        ),
        (
            HostKeyRejectedError("fmc-primary", "direct", "/srv/known_hosts", changed=True),
            "fmc-primary (route direct): host key differs from the one in /srv/known_hosts: the device was "
            "reinstalled, or this is not the device; check the new key out of band, then replace its line "
            "in that file (trust-on-first-use never accepts a changed key)",
        ),
        (
            UnexpectedShellError("ftd-002", "direct", "firepower(config)# ", "expert"),
            "ftd-002 (route direct): expected the expert shell but saw the prompt 'firepower(config)# '; "
            "log in by hand to see where the device lands and report the prompt",
        ),
    ],
)
def test_device_messages_name_device_route_and_next_move(error: DeviceError, expected: str) -> None:
    assert str(error) == expected
    assert (error.device, error.route) == error.args[:2]


def test_host_key_rejection_names_the_default_tofu_switch() -> None:
    error = HostKeyRejectedError("fmc-primary", "direct", "/srv/known_hosts")

    assert "/srv/known_hosts" in str(error)
    assert errors.TOFU_SWITCH in str(error)


def test_command_failure_keeps_only_the_tail_of_the_output() -> None:
    output = "x" * 1000 + "THE-END"

    error = CommandFailedError("fmc-primary", "direct", "pmtool restartbyid sftunnel", 1, output)

    assert error.output_tail == output[-OUTPUT_TAIL_CHARS:]
    assert str(error).startswith(
        "fmc-primary (route direct): command 'pmtool restartbyid sftunnel' failed with exit code 1; "
    )
    assert str(error).endswith("THE-END")


def test_command_failure_without_output_says_so() -> None:
    assert str(CommandFailedError("f", "direct", "true", 1, "  \n")).endswith("(no output)")


def test_renewal_messages_say_what_stopped_and_what_to_do() -> None:
    stranded = StrandedDevicesError("fmc-primary", ("ftd-003", "ftd-007"), "no SSH route")
    foreign = ForeignCAError("fmc-primary", "ab" * 32, "cd" * 32)

    assert str(stranded) == (
        "fmc-primary: renewal refused, nothing was changed: 2 device(s) would be stranded (ftd-003, "
        "ftd-007): no SSH route; make them reachable (directly or through their jump server), or enqueue "
        "again accepting each (--accept-stranded NAME)"
    )
    assert stranded.devices == ("ftd-003", "ftd-007")
    assert "ab" * 32 in str(foreign)
    assert "did not create" in str(foreign)
    assert "stopped before pushing anything" in str(foreign)


def test_inventory_error_lists_every_problem() -> None:
    problems = [
        InventoryProblem("inv.yaml", 3, "version", "missing; add 'version: 1'"),
        InventoryProblem("inv.yaml", 9, "pairs.lab.secondary", "missing; add it"),
    ]

    assert str(InventoryError(problems[:1])) == "inv.yaml:3: version: missing; add 'version: 1'"
    assert str(InventoryError(problems)) == (
        "2 problems in inv.yaml:\n"
        "  inv.yaml:3: version: missing; add 'version: 1'\n"
        "  inv.yaml:9: pairs.lab.secondary: missing; add it"
    )


def test_a_problem_without_source_or_line_still_reads_well() -> None:
    assert (
        str(InventoryProblem("", None, "pairs.lab.ftds", "no FTD named 'x'"))
        == "pairs.lab.ftds: no FTD named 'x'"
    )
    assert str(InventoryProblem("inv.yaml", None, "pairs", "no pair")) == "inv.yaml: pairs: no pair"


def test_every_error_class_carries_its_own_kind_named_as_the_record_stores_it() -> None:
    classes = [
        obj for obj in vars(errors).values() if isinstance(obj, type) and issubclass(obj, SftrenewError)
    ]

    assert {cls: cls.kind for cls in classes if cls not in BASES} == KINDS
    for cls in classes:
        assert "kind" in vars(cls), f"{cls.__name__} inherits its kind"
        # The value is the class name records have always held, so old rows and the user guide still read.
        if cls in BASES:
            assert cls.kind is ErrorKind.INTERNAL
        else:
            assert cls.kind.value == cls.__name__
    assert sorted(KINDS.values()) == sorted(set(ErrorKind) - {ErrorKind.INTERNAL})


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_kind_of_every_sample_and_what_the_record_stores(error: SftrenewError) -> None:
    if isinstance(error, PushRefusedError):
        assert kind_of(error) is ErrorKind.REFUSED_AUTH  # the refusing error's kind, as stored today
        assert recorded_kind(error) == error.cause_kind == "AuthenticationFailedError"
    else:
        assert kind_of(error) is type(error).kind
        assert recorded_kind(error) == type(error).__name__


@pytest.mark.parametrize(
    "cause",
    [
        AuthenticationFailedError("ftd-001", "direct", "admin"),
        HostKeyRejectedError("ftd-002", "via jump-1", "/etc/sftrenew/known_hosts", changed=True),
        DeviceUnreachableError("ftd-003", "direct", "connection refused"),
        UnexpectedShellError("ftd-004", "direct", "> ", "expert"),
        CommandFailedError("ftd-005", "direct", "sudo su", 1, "sudo: a password is required"),
    ],
)
def test_a_refused_push_has_the_kind_of_what_refused_it(cause: DeviceError) -> None:
    refused = PushRefusedError.of(cause)

    assert kind_of(refused) is kind_of(cause)
    assert recorded_kind(refused) == recorded_kind(cause) == type(cause).__name__
    assert kind_of(type(refused)(*refused.args)) is kind_of(cause)  # rebuilt by Celery
    assert can_retry(refused) is cause.retryable


def test_a_refusal_whose_cause_is_unknown_is_refused() -> None:
    rebuilt = PushRefusedError("ftd-001", "direct", "SomethingOldError", "gone", False)

    assert kind_of(rebuilt) is ErrorKind.REFUSED
    assert recorded_kind(rebuilt) == "SomethingOldError"  # what the record held, as before


@pytest.mark.parametrize("error", [KeyError("x"), ValueError("bad"), SftrenewError("base raised")])
def test_anything_else_is_internal_and_recorded_by_its_class_name(error: Exception) -> None:
    assert kind_of(error) is ErrorKind.INTERNAL
    assert recorded_kind(error) == type(error).__name__


def test_an_integrity_failure_is_retryable_and_names_the_folder_and_the_fix() -> None:
    error = WriteIntegrityError("ftd-001", "via jump-1", "/ngfw/var/sf/peers/8a1b")

    assert str(error) == (
        "ftd-001 (route via jump-1): the files written to /ngfw/var/sf/peers/8a1b did not check out by "
        "SHA-256 on the device; a retry writes them again; if it keeps failing, check the device's free disk "
        "space and that folder's owner and mode"
    )
    assert can_retry(error)


def test_a_bad_record_names_the_renewal_the_fmc_and_the_artifact() -> None:
    error = BadRecordError("r-1", "fmc-primary", "validate artifact validate.json", "peers.0.uuid: wrong")

    assert str(error) == (
        "renewal r-1, fmc-primary: the stored validate artifact validate.json does not read back "
        "(peers.0.uuid: wrong); it was written by another version of sftrenew or edited by hand: start a new "
        "renewal of the pair"
    )


SECRET = "hunter2-not-for-logs"
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----"


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_no_message_holds_a_secret(error: SftrenewError) -> None:
    # Messages are made of the constructor's (redacted) arguments only: nothing read from the device or the
    # secrets is added on the way, so what the caller did not pass cannot show.
    for text in (str(error), repr(error), str(type(error)(*error.args))):
        assert SECRET not in text and PRIVATE_KEY not in text
    assert all(SECRET not in str(arg) and PRIVATE_KEY not in str(arg) for arg in error.args)
