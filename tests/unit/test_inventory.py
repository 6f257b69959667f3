"""load_inventory against golden files: good ones give exact values, bad ones exact problems.

Each `bad_*.yaml` ends with `# expect: LINE: PATH: MESSAGE` comments, the problems it must produce, in order.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pipeline.errors import InventoryError
from pipeline.inventory import (
    Credential,
    Fmc,
    FmcPair,
    Ftd,
    Inventory,
    JumpServer,
    SecretRef,
    resolve_path,
)
from pipeline.inventory_loader import load_inventory

DATA = Path(__file__).parent / "data" / "inventory"
BAD_FILES = sorted(DATA.glob("bad_*.yaml"))
INLINE_SECRET = "Inline-Secret-9f3b"  # the throw-away "password" written inline in bad_inline_password.yaml


def _load(name: str) -> Inventory:
    path = DATA / name
    return load_inventory(path.read_text(encoding="utf-8"), source=str(path))


def _expected(path: Path) -> list[str]:
    marker = "# expect: "
    return [
        line[len(marker) :]
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith(marker)
    ]


def _problems(text: str, source: str = "inv.yaml") -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        load_inventory(text, source=source)
    return caught.value


def test_the_documented_example_loads_to_exact_values() -> None:
    inventory = _load("good_lab.yaml")

    assert inventory.source == str(DATA / "good_lab.yaml")
    assert inventory.known_hosts == "known_hosts"
    assert inventory.secrets_file == "secrets.yaml"
    assert dict(inventory.credentials) == {
        "fleet-admin": Credential("fleet-admin", "admin", SecretRef("secret", "fleet-admin")),
        "jump": Credential("jump", "operator", SecretRef("env", "SFTRENEW_JUMP_PASSWORD")),
    }
    assert dict(inventory.jump_servers) == {
        "jump-1": JumpServer(name="jump-1", host="127.77.0.3", port=40022, credential="jump")
    }
    pair = inventory.pair("lab")
    assert pair.primary == Fmc(
        name="fmc-primary",
        host="127.77.0.1",
        port=40001,
        credential="fleet-admin",
        uuid="6308d00c-54c3-11ee-a889-c4b0f35cec33",
        role="primary",
    )
    assert pair.secondary == Fmc(
        name="fmc-secondary", host="127.77.0.2", port=40002, credential="fleet-admin", role="secondary"
    )
    assert pair.ftds == (
        Ftd(
            name="ftd-001",
            host="127.77.1.1",
            port=40101,
            credential="fleet-admin",
            jump="jump-1",
            site="dc1",
            uuid="c8d5d5c6-87c9-11ef-a993-b9831565bc4e",
        ),
        Ftd(name="ftd-002", host="127.77.1.2", port=40102, credential="fleet-admin", site="dc1"),
        Ftd(name="ftd-003", host="127.77.1.3", port=22, credential="fleet-admin"),
    )


def test_minimal_inventory_uses_defaults() -> None:
    inventory = _load("good_minimal.yaml")

    assert inventory.secrets_file is None
    assert dict(inventory.jump_servers) == {}
    pair = inventory.pair("dc1")
    assert [fmc.port for fmc in pair.fmcs] == [22, 22]
    assert pair.secondary.host == "2001:db8::11"
    assert pair.ftds == ()
    assert inventory.credentials["admin"].password == SecretRef("env", "FMC_ADMIN_PASSWORD")


def test_order_of_pairs_and_ftds_is_the_file_order() -> None:
    inventory = _load("good_two_pairs.yaml")

    assert list(inventory.pairs) == ["west", "east"]
    assert [ftd.name for ftd in inventory.pair("east").ftds] == ["ftd-e-002", "ftd-e-001", "ftd-e-003"]
    assert inventory.pair("west").ftd("ftd-w-001").jump == "jump-west"
    assert inventory.jump_servers["jump-east"].port == 22


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.name)
def test_bad_file_reports_exactly_its_expected_problems(path: Path) -> None:
    expected = _expected(path)
    assert expected, f"{path.name} has no '# expect:' lines"

    error = _problems(path.read_text(encoding="utf-8"), source=str(path))

    assert [f"{p.line}: {p.path}: {p.message}" for p in error.problems] == expected
    assert {p.source for p in error.problems} == {str(path)}
    for problem in error.problems:
        assert f"{path}:{problem.line}: {problem.path}: {problem.message}" in str(error)


def test_several_problems_are_reported_in_one_error() -> None:
    error = _problems((DATA / "bad_values.yaml").read_text(encoding="utf-8"), source="fleet.yaml")

    assert str(error).startswith(f"{len(error.problems)} problems in fleet.yaml:\n  fleet.yaml:1: version: ")
    assert len(error.problems) > 10


def test_the_unknown_jump_message_names_line_path_and_fix() -> None:
    error = _problems((DATA / "bad_unknown_jump.yaml").read_text(encoding="utf-8"), source="inv.yaml")

    assert str(error.problems[0]) == (
        "inv.yaml:14: pairs.lab.ftds[2].jump: unknown jump server 'jump-9' (did you mean 'jump-1'?); "
        "define it under jump_servers or remove the field"
    )


def test_an_inline_password_is_refused_without_being_quoted() -> None:
    error = _problems((DATA / "bad_inline_password.yaml").read_text(encoding="utf-8"))

    assert "inline passwords are not allowed" in str(error)
    assert "{secret: NAME}" in str(error)
    assert "{env: VARIABLE}" in str(error)
    assert INLINE_SECRET not in str(error)
    assert INLINE_SECRET not in repr(error)
    assert all(INLINE_SECRET not in p.path and INLINE_SECRET not in p.message for p in error.problems)


def test_a_syntax_error_does_not_quote_the_line() -> None:
    text = "version: 1\ncredentials:\n  a: {username: admin, password: 'Half-Quoted-Secret\n"

    error = _problems(text)

    (problem,) = error.problems
    assert problem.line == 4
    assert problem.path == "(yaml)"
    assert "Half-Quoted-Secret" not in str(error)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "1: (top level): the file is empty; write an inventory (see docs/inventory.md)"),
        ("just text\n", "1: (top level): expected a mapping ('key: value' lines), got text; fix the value"),
        (
            "a: 1\n---\nb: 2\n",
            "2: (yaml): not valid YAML: expected a single document in the stream (line 1), but found another",
        ),
    ],
)
def test_whole_file_problems(text: str, expected: str) -> None:
    error = _problems(text)

    assert f"{error.problems[0].line}: {error.problems[0].path}: {error.problems[0].message}".startswith(
        expected
    )


def test_pair_lookup_lists_the_known_pairs() -> None:
    inventory = _load("good_two_pairs.yaml")

    with pytest.raises(InventoryError, match=r"no FMC pair named 'north'; known: east, west"):
        inventory.pair("north")


def test_ftd_lookup_lists_the_pairs_ftds() -> None:
    pair = _load("good_two_pairs.yaml").pair("west")

    with pytest.raises(
        InventoryError, match=r"pairs\.west\.ftds: no FTD named 'ftd-x' in this pair; known: ftd-w-001"
    ):
        pair.ftd("ftd-x")


def test_fmcs_are_primary_then_secondary() -> None:
    pair = _load("good_lab.yaml").pair("lab")

    assert [fmc.role for fmc in pair.fmcs] == ["primary", "secondary"]
    assert pair.fmcs == (pair.primary, pair.secondary)


def test_values_are_frozen() -> None:
    inventory = _load("good_lab.yaml")
    pair: FmcPair = inventory.pair("lab")

    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.primary.host = "10.0.0.1"  # type: ignore[misc]  # the point: mypy and the runtime both refuse
    with pytest.raises(TypeError):
        inventory.pairs["other"] = pair  # type: ignore[index]  # the point: the mapping is read-only


def test_resolve_joins_relative_paths_to_the_inventory_folder() -> None:
    base = Path("/srv/sftrenew")
    inventory = _load("good_lab.yaml").resolve(base)

    assert inventory.known_hosts == "/srv/sftrenew/known_hosts"
    assert inventory.secrets_file == "/srv/sftrenew/secrets.yaml"
    assert inventory.pairs == _load("good_lab.yaml").pairs


def test_resolve_keeps_absolute_paths_and_an_absent_secrets_file() -> None:
    inventory = _load("good_minimal.yaml").resolve(Path("/elsewhere"))

    assert inventory.known_hosts == "/etc/sftrenew/known_hosts"
    assert inventory.secrets_file is None
    assert resolve_path("../secrets/fleet.yaml", Path("/a/b")) == Path("/a/b/../secrets/fleet.yaml")


def _doc_blocks() -> list[tuple[str, str]]:
    """(language, text) of each fenced block of docs/inventory.md, in order."""
    text = (Path(__file__).parents[2] / "docs" / "inventory.md").read_text(encoding="utf-8")
    return re.findall(r"^ *```(\w*)\n(.*?)^ *```$", text, flags=re.MULTILINE | re.DOTALL)


def test_the_example_in_the_docs_loads() -> None:
    (language, example), *_ = _doc_blocks()

    assert language == "yaml"
    assert [ftd.name for ftd in load_inventory(example, source="inventory.yaml").pair("lab").ftds] == [
        "ftd-001",
        "ftd-002",
    ]


def test_the_error_shown_in_the_docs_is_what_the_code_says() -> None:
    blocks = _doc_blocks()
    index = next(i for i, (lang, text) in enumerate(blocks) if lang == "yaml" and "jump: jump-9" in text)

    error = _problems(blocks[index][1], source="inventory.yaml")

    assert blocks[index + 1] == ("", str(error) + "\n")


HOST_INVENTORY = """\
version: 1
known_hosts: known_hosts
credentials:
  admin: {{username: admin, password: {{env: PW}}}}
pairs:
  p:
    primary: {{name: fmc-1, host: 10.0.0.1, credential: admin}}
    secondary: {{name: fmc-2, host: fmc-2.example.net., credential: admin}}
    ftds:
      - {{name: ftd-1, host: '{host}', credential: admin}}
"""


@pytest.mark.parametrize(
    ("host", "message"),
    [
        (
            "999.999.1.1",
            "'999.999.1.1' is not an IP address; give a valid IPv4 or IPv6 address, or a hostname",
        ),
        ("10.1.2", "'10.1.2' is not an IP address"),
        ("not_a_host!!", "'not_a_host!!' is not a hostname or an IP address; a hostname is letters, digits"),
        ("-oProxyCommand=id", "'-oProxyCommand=id' is not a hostname or an IP address"),
        ("-fmc.example.net", "'-fmc.example.net' is not a hostname or an IP address"),
        ("fmc..example.net", "'fmc..example.net' is not a hostname"),
        ("a" * 64 + ".example.net", "is not a hostname"),
    ],
)
def test_a_host_is_an_ip_address_or_a_dns_name(host: str, message: str) -> None:
    error = _problems(HOST_INVENTORY.format(host=host))

    (problem,) = error.problems
    assert (problem.line, problem.path) == (10, "pairs.p.ftds[0].host")
    assert problem.message.startswith(message) or message in problem.message


@pytest.mark.parametrize(
    "host",
    ["10.1.0.1", "2001:db8::11", "fe80::1%eth0", "fmc-a.example.net", "fmc-a.example.net.", "ftd1", "x-1"],
)
def test_ip_addresses_and_dns_names_are_hosts(host: str) -> None:
    pair = load_inventory(HOST_INVENTORY.format(host=host), source="inv.yaml").pair("p")

    assert pair.ftds[0].host == host
