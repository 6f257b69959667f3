"""How long the lab takes to start (every listener bound, files seeded, tunnels up) for fleets of N FTDs.

Warm runs use the persistent key cache; `--cold` uses an empty one, so the RSA key generation (in a process
pool) is part of the figure. Each size also reports one SSH login to the last FTD, to show the fleet serves.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import paramiko
import yaml

from sftlab.fleet.compose import start_fleet
from sftlab.fleet.keys import KeyPool, default_cache_dir
from sftlab.fleet.spec import LabSpec


async def _one(ftds: int, keys: KeyPool) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        fleet = await start_fleet(LabSpec(ftds=ftds), Path(tmp), keys=keys)
        ready = time.perf_counter() - started
        try:
            last = fleet.devices[f"ftd-{ftds:03d}"]
            secrets = yaml.safe_load((Path(tmp) / "secrets.yaml").read_text())
            login = await asyncio.to_thread(_login, last.ip, last.port, secrets["fleet-admin"], Path(tmp))
            up = sum(
                fleet.hub.is_connected(fmc, f"ftd-{i:03d}")
                for fmc in ("fmc-primary", "fmc-secondary")
                for i in range(1, ftds + 1)
            )
        finally:
            await fleet.stop()
    return ready, login, up


def _login(host: str, port: int, password: str, directory: Path) -> float:
    started = time.perf_counter()
    client = paramiko.SSHClient()
    client.load_host_keys(str(directory / "known_hosts"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host, port, username="admin", password=password, allow_agent=False, look_for_keys=False)
    client.close()
    return time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench lab_startup")
    parser.add_argument("--ftds", type=int, nargs="+", default=[4, 50, 300])
    parser.add_argument("--cold", action="store_true", help="start from an empty key cache")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        keys_dir = Path(cache) if args.cold else default_cache_dir()
        for ftds in args.ftds:
            keys = KeyPool(keys_dir)
            ready, login, up = asyncio.run(_one(ftds, keys))
            label = "cold" if args.cold else "warm"
            print(
                f"{ftds:4d} FTDs: ready in {ready:6.2f} s; {up}/{2 * ftds} FTD tunnels up; "
                f"SSH login to the last FTD {login * 1000:5.0f} ms ({label} key cache)"
            )
    return 0
