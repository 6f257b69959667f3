"""The control ops the devices' tools call (`sftunnel_status.pl`, `generate_certs.pl`, `pmtool`), served from
the fleet's state: the tunnels' real state, the CA on disk, a regeneration, a restart.

The tools reach the fleet over the control socket (`sftlab.tools.control`); each request names the device it
comes from and an op, and gets the tool's stdout, stderr and exit code back.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sftlab.fleet.layout import DeviceTree
from sftlab.fleet.running import Fleet
from sftlab.tools import client, regen
from sftlab.tools.status_text import render_status


async def handle(fleet: Fleet, request: client.Request) -> client.Reply:
    """Serve one request of a device's tools (see `sftlab.tools.programs`)."""
    name = str(request["device"])
    op = request["op"]
    tree = fleet.tree(name)
    now = datetime.now(UTC)
    if op == "status":
        peer = request.get("peer")
        out, err, code = render_status(
            device_ip=fleet.devices[name].ip,
            start_time_utc=fleet.hub.started_utc(name),
            states=fleet.hub.peer_states(name),
            peer_filter=str(peer) if peer else None,
            script_path=f"{tree.bin_dir}/sftunnel_status.pl",
        )
        return {"stdout": out, "stderr": err, "code": code}
    if op == "restart":
        return await _pmtool_restart(fleet, name)
    if op == "pmtool_status":
        return {"stdout": _pmtool_status(tree), "stderr": "", "code": 0}
    if op == "ca_expiry":
        return {"stdout": regen.ca_expiry_line(tree, now) + "\n", "stderr": "", "code": 0}
    if op == "regenerate":
        report = await regen.regenerate(fleet.hub, fleet.tunnel_device(name), keys=fleet.keys, now_utc=now)
        return {"stdout": report.stdout, "stderr": "", "code": 0}
    return {"stdout": "", "stderr": f"lab: unknown control op {op!r}\n", "code": 64}


async def _pmtool_restart(fleet: Fleet, name: str) -> client.Reply:
    """`pmtool restartbyid sftunnel`. With `restart: drop_once`, the device's first one cuts every SSH
    connection to the device before anything restarts (the pmtool process dies with its session's bash, as
    it would with a network that fails between a push's write and its restart); later ones restart."""
    device = fleet.devices[name]
    if device.knobs.restart == "drop_once" and name not in fleet.restart_dropped:
        fleet.restart_dropped.add(name)
        for session in list(device.endpoint.sessions):
            session.abort()
        return {"stdout": "", "stderr": "Connection to the device lost\n", "code": 255}
    await fleet.hub.restart(name)
    fleet.restart_counts[name] = fleet.restart_counts.get(name, 0) + 1
    return {"stdout": "", "stderr": "", "code": 0}


def _pmtool_status(tree: DeviceTree) -> str:
    # ASSUMED format (device-facts 7.1).
    return (
        "sftunnel (system) - Running 4171\n"
        f"Command: {tree.bin_dir.replace('/bin', '')}/bin/sftunnel -d -f {tree.SFTUNNEL_CONF}\n"
        "PID File: /var/sf/run/sftunnel.pid\n"
        f"Enable File: {tree.SFTUNNEL_CONF}\n"
    )
