"""`sftrenew inventory import` and `sftrenew inventory check`, run as an operator runs them.

The CSV import: passwords land only in the secrets file, mode 0600; the inventory holds none and loads with
the product's loader. The REST import: against the lab FMC's HTTPS API, with a rate limit and a token
lifetime small enough that the run meets a 429 and an expired token, and still lists every FTD.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.inventory import SecretRef
from pipeline.secrets import SecretResolver, read_inventory
from tests.lab.fixtures import MakeLab, RunningLab

pytestmark = pytest.mark.e2e

SFTRENEW = str(Path(sys.executable).parent / "sftrenew")
PASSWORDS = ["Csv-Pw-One-1", "Csv-Pw, Two: 'x'", "Csv-Pw-One-1", "Csv-Pw-Three", "Csv-Pw-One-1"]
CSV = "".join(
    f'{name},{host},admin,"{password}"\n'
    for name, host, password in zip(
        ["FMCpri", "FTDv", "BSNS-1120-1", "FTD-3", "FMCsec"],
        ["10.48.79.232", "10.48.79.23", "10.48.67.54", "10.48.67.55", "10.48.79.233"],
        PASSWORDS,
        strict=True,
    )
)


def _run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SFTRENEW_")}
    return subprocess.run(
        [SFTRENEW, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=base | (env or {}),
        cwd=cwd,
        check=False,
    )


def _no_secret_in(result: subprocess.CompletedProcess[str], secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in result.stdout + result.stderr


def test_csv_import_puts_every_password_in_the_0600_secrets_file_only(tmp_path: Path) -> None:
    (tmp_path / "devices.csv").write_text(CSV)
    result = _run("inventory", "import", "--csv", "devices.csv", "--pair", "dc1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _no_secret_in(result, PASSWORDS)
    inventory_file, secrets_file = tmp_path / "inventory.yaml", tmp_path / "secrets.yaml"
    assert f"wrote {secrets_file.name} (mode 0600): 3 password(s)" in result.stdout
    assert "the inventory holds none" in result.stdout
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    text = inventory_file.read_text()
    for password in PASSWORDS:
        assert password not in text
        assert password.split(",")[0] not in text

    inventory = read_inventory(inventory_file)
    pair = inventory.pair("dc1")
    assert (pair.primary.name, pair.secondary.name) == ("FMCpri", "FMCsec")
    assert [(f.name, f.host, f.port) for f in pair.ftds] == [
        ("FTDv", "10.48.79.23", 22),
        ("BSNS-1120-1", "10.48.67.54", 22),
        ("FTD-3", "10.48.67.55", 22),
    ]
    assert pair.ftds[0].credential == "dc1-admin-2"
    assert inventory.credentials["dc1-admin-2"].password == SecretRef("secret", "dc1-admin-2")
    resolver = SecretResolver(inventory, {})
    credentials = [d.credential for d in pair.fmcs] + [d.credential for d in pair.ftds]
    assert [resolver.password(c).get_secret_value() for c in credentials] == [
        PASSWORDS[0], PASSWORDS[4], PASSWORDS[1], PASSWORDS[2], PASSWORDS[3],
    ]  # fmt: skip

    # Nothing is replaced without --force; with it, both files are.
    again = _run("inventory", "import", "--csv", "devices.csv", "--pair", "dc1", cwd=tmp_path)
    assert again.returncode == 2
    assert (
        again.stderr
        == "sftrenew: inventory.yaml exists; pass --force to replace it, or choose another --inventory\n"
    )
    forced = _run("inventory", "import", "--csv", "devices.csv", "--pair", "dc2", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert read_inventory(inventory_file).pairs.keys() == {"dc2"}
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600


def test_a_bad_csv_is_refused_naming_the_line_and_writing_nothing(tmp_path: Path) -> None:
    (tmp_path / "devices.csv").write_text(CSV + "FTDv,10.9.9.9,admin,Csv-Pw-Dup\nFTD-4,10.1.1.300,admin,x\n")
    result = _run("inventory", "import", "--csv", "devices.csv", "--pair", "dc1", cwd=tmp_path)
    assert result.returncode == 2
    assert "devices.csv:6: device name: 'FTDv' is already on line 2" in result.stderr
    assert "devices.csv:7: IP address: '10.1.1.300' is not an IP address" in result.stderr
    _no_secret_in(result, [*PASSWORDS, "Csv-Pw-Dup"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["devices.csv"]


def _rest_args(lab: RunningLab, out: Path, *extra: str) -> list[str]:
    fmc = lab.device("fmc-primary")
    return [
        "inventory", "import", "--fmc", fmc["host"], "--fmc-port", str(fmc["rest_port"]),
        "--secondary", lab.device("fmc-secondary")["host"], "--pair", "lab",
        "--inventory", str(out / "inventory.yaml"), *extra,
    ]  # fmt: skip


def _rest_env(lab: RunningLab) -> dict[str, str]:
    return {"SFTRENEW_FMC_PASSWORD": lab.secrets["fleet-admin"]}


def _statuses(lab: RunningLab) -> dict[int, int]:
    async def read() -> dict[int, int]:
        return lab.fleet.rest_statuses("fmc-primary")

    return lab.runner.call(read())


def test_rest_import_lists_every_ftd_through_a_429_and_an_expired_token(
    make_lab: MakeLab, tmp_path: Path
) -> None:
    # 3 requests per 2 s and a 1 s token: the token and the first two pages use up the window, the third page
    # is refused (429, Retry-After), and by the time it may be asked again the token has expired (401).
    knobs = {"rest_rate_limit": 3, "rest_rate_window_s": 2, "rest_token_ttl_s": 1, "rest_retry_after": True}
    lab = make_lab(ftds=5, devices={"fmc-primary": knobs})
    out = tmp_path / "site"
    out.mkdir()
    args = _rest_args(lab, out, "--ca-file", lab.info["rest_ca_file"], "--page-size", "2")
    result = _run(*args, env=_rest_env(lab))
    assert result.returncode == 0, result.stderr
    _no_secret_in(result, [lab.secrets["fleet-admin"], lab.secrets["jump"]])
    statuses = _statuses(lab)
    assert statuses.get(429, 0) >= 1 and statuses.get(401, 0) >= 1, statuses
    assert "5 device(s) listed" in result.stdout
    assert "refreshed 0 time(s)" not in result.stdout

    inventory = read_inventory(out / "inventory.yaml")
    pair = inventory.pair("lab")
    ftds = [d for d in lab.info["devices"] if d["role"] == "ftd"]
    assert [(f.name, f.host, f.uuid, f.port) for f in pair.ftds] == [
        (d["name"], d["host"], d["uuid"], 22) for d in ftds
    ]
    assert (pair.primary.host, pair.secondary.host) == (
        lab.device("fmc-primary")["host"],
        lab.device("fmc-secondary")["host"],
    )
    assert inventory.credentials["lab-admin"].password == SecretRef("secret", "lab-admin")
    secrets_file = out / "secrets.yaml"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert lab.secrets["fleet-admin"] not in secrets_file.read_text()
    assert "add the line 'lab-admin: \"<password>\"'" in result.stdout

    # check: the password is not there yet, and known_hosts neither: exit 2, naming both.
    check = _run("inventory", "check", "--inventory", str(out / "inventory.yaml"))
    assert check.returncode == 2
    assert "lab-admin (user admin): secret 'lab-admin'" in check.stdout and "MISSING" in check.stdout
    assert "2 problem(s)" in check.stdout


def test_rest_import_verifies_the_fmc_before_sending_the_password(make_lab: MakeLab, tmp_path: Path) -> None:
    lab = make_lab(ftds=1)
    unverified = _run(*_rest_args(lab, tmp_path), env=_rest_env(lab))
    assert unverified.returncode == 2
    assert "did not verify" in unverified.stderr and "--ca-file" in unverified.stderr
    pinned_wrong = _run(*_rest_args(lab, tmp_path, "--fingerprint", "ab" * 32), env=_rest_env(lab))
    assert pinned_wrong.returncode == 2
    assert "nothing was sent" in pinned_wrong.stderr
    assert _statuses(lab) == {}  # no request reached the API

    fmc = lab.device("fmc-primary")
    der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((fmc["host"], fmc["rest_port"])))
    pin = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    pinned = _run(*_rest_args(lab, tmp_path, "--fingerprint", pin), env=_rest_env(lab))
    assert pinned.returncode == 0, pinned.stderr
    insecure = _run(*_rest_args(lab, tmp_path, "--insecure", "--force"), env=_rest_env(lab))
    assert insecure.returncode == 0, insecure.stderr
    assert "WARNING: --insecure" in insecure.stderr

    wrong = _run(*_rest_args(lab, tmp_path, "--insecure", "--force"), env={"SFTRENEW_FMC_PASSWORD": "not-it"})
    assert wrong.returncode == 3
    assert "authentication failed for user 'admin'" in wrong.stderr
    assert "not-it" not in wrong.stdout + wrong.stderr


def test_check_prints_the_labs_inventory_and_finds_every_secret(shared_lab: RunningLab) -> None:
    result = _run("inventory", "check", "--inventory", str(shared_lab.directory / "inventory.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pair lab: 4 FTD(s)" in result.stdout
    assert "FTD ftd-001" in result.stdout and "routes: direct, then via jump-1" in result.stdout
    assert "fleet-admin (user admin): secret 'fleet-admin'" in result.stdout and ": found" in result.stdout
    _no_secret_in(result, list(shared_lab.secrets.values()))
    missing = _run("inventory", "check", "--inventory", str(shared_lab.directory / "nope.yaml"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("sftrenew: cannot read the inventory")
