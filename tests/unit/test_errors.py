"""The error tree: retry classes, messages that name the fix, and round trips through pickle and Celery."""

from __future__ import annotations

import pickle

import pytest

from pipeline import errors
from pipeline.errors import (
    OUTPUT_TAIL_CHARS,
    AuthenticationFailedError,
    CommandFailedError,
    ConfigError,
    DeviceError,
    DeviceUnreachableError,
    ForeignCAError,
    HostKeyRejectedError,
    InventoryError,
    InventoryProblem,
    RenewalError,
    SftrenewError,
    StrandedDevicesError,
    UnexpectedShellError,
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
]


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
        "ftd-007): no SSH route; make them reachable (directly or through their jump server) or take them "
        "out of the inventory, then run validate again"
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
