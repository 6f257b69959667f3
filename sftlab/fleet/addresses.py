"""Which loopback address each lab device gets.

Every device has its own address inside the spec's 127.0.0.0/8 network, so that sources are meaningful (the
jump server's back door admits only the jump server's address; an FMC sees each FTD's tunnel come from that
FTD's address). Ports are always picked by the kernel, so two labs on one network never collide.
"""

from __future__ import annotations

import ipaddress

from sftlab.fleet.spec import JUMP, PRIMARY, SECONDARY, ftd_names


def allocate(network: str, ftds: int) -> dict[str, str]:
    """FMCs and the jump server at .0.1-.0.3 of the network, FTDs from .1.1 on, skipping .0 and .255."""
    net = ipaddress.IPv4Network(network)
    base = int(net.network_address)
    table = {PRIMARY: str(net[1]), SECONDARY: str(net[2]), JUMP: str(net[3])}
    offset = 256
    for name in ftd_names(ftds):
        offset += 1
        while offset % 256 in (0, 255):
            offset += 1
        if offset >= net.num_addresses:
            raise ValueError(f"network {network} is too small for {ftds} FTDs; use a larger one (a /16)")
        table[name] = str(ipaddress.IPv4Address(base + offset))
    return table
