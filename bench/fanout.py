"""The comparison runs: the product's push device operations without the product around them.

Each push is `pipeline.steps.push.push_once` (open a root session, read what the peer holds, back up, write
the three files atomically, read back, restart sftunnel, close) with a `SessionFactory` built as
`tasks.context` builds it, from the same `SFTRENEW_*` settings the worker gets. The material is made here, a
fresh InternalCA per FMC and a certificate and key per peer, so that every peer needs a WRITE. Pushes run
(a) in a bare `concurrent.futures` thread pool of the worker's size, one FMC after the other as the product
does, and (b) one after another on a sample of the peers, extrapolated to all of them.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bench.lab_process import cpu_seconds
from pipeline.certs import CertFacts
from pipeline.devices.factory import SessionFactory
from pipeline.devices.session import DIRECT
from pipeline.material import PeerMaterial
from pipeline.secrets import SecretResolver, read_inventory
from pipeline.settings import Settings, load_settings
from pipeline.steps.push import PushAction, RestartFacts, push_once
from sftlab.fleet.keys import KeyPool, default_cache_dir
from sftlab.fleet.pki import cert_pem, key_pem, make_ca, make_sftunnel_cert
from sftlab.fleet.spec import PRIMARY, SECONDARY


@dataclass(frozen=True)
class Push:
    """One push_once: which peer for which FMC, when it ran (epoch seconds) and what it did."""

    fmc: str
    device: str
    started_at: float
    ended_at: float
    action: str

    @property
    def seconds(self) -> float:
        return self.ended_at - self.started_at


@dataclass(frozen=True)
class FanOut:
    """The pushes of one FMC's peers, the wall time from the first start to the last end, and the CPU time
    the pushing process (the bench) and the lab used meanwhile."""

    fmc: str
    pushes: tuple[Push, ...]
    client_cpu_s: float
    lab_cpu_s: float

    @property
    def wall_s(self) -> float:
        return max(p.ended_at for p in self.pushes) - min(p.started_at for p in self.pushes)

    @property
    def started_at(self) -> float:
        return min(p.started_at for p in self.pushes)

    @property
    def ended_at(self) -> float:
        return max(p.ended_at for p in self.pushes)


def peers_of(fmc: str, ftds: Sequence[str]) -> list[str]:
    """The peers an FMC's push round covers: every FTD, and the other FMC (the HA peer)."""
    return [*ftds, SECONDARY if fmc == PRIMARY else PRIMARY]


def make_material(
    fmc_uuid: str, peers: Sequence[str], uuids: dict[str, str], keys: KeyPool
) -> dict[str, PeerMaterial]:
    """A new InternalCA for the FMC and, per peer, a certificate and key it issued: what a regeneration
    makes, so that no peer holds it yet."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca_key, *peer_keys = keys.take(len(peers) + 1)
    ca = make_ca(ca_key, fmc_uuid=fmc_uuid, not_before_utc=now)
    ca_pem = cert_pem(ca)
    ca_sha = CertFacts.from_pem(ca_pem).sha256
    material = {}
    for serial, (peer, key) in enumerate(zip(peers, peer_keys, strict=True), start=2):
        cert = cert_pem(
            make_sftunnel_cert(
                ca_cert=ca, ca_key=ca_key, key=key, owner_uuid=uuids[peer], serial=serial, not_before_utc=now
            )
        )
        material[peer] = PeerMaterial(
            uuids[peer], ca_pem, cert, key_pem(key), ca_sha, CertFacts.from_pem(cert).sha256
        )
    return material


class Pusher:
    """push_once to the lab's peers, from the settings and inventory the worker uses."""

    def __init__(self, environ: dict[str, str], uuids: dict[str, str], lab: int) -> None:
        self.settings: Settings = load_settings(environ)
        assert self.settings.inventory is not None
        inventory = read_inventory(self.settings.inventory)
        self.factory = SessionFactory(inventory, "lab", SecretResolver(inventory, os.environ), self.settings)
        self.uuids = uuids
        self.keys = KeyPool(default_cache_dir())
        self.stamp = datetime.now(UTC)
        self.lab = lab

    def one(self, fmc: str, device: str, material: PeerMaterial) -> Push:
        started = time.time()
        outcome = push_once(
            self.factory,
            device,
            DIRECT,
            fmc_uuid=self.uuids[fmc],
            material=material,
            backup_stamp_utc=self.stamp,
            recorded=RestartFacts(),
            on_write_started=lambda _before: None,
            on_restarted=lambda: None,
        )
        return Push(fmc, device, started, time.time(), outcome.action.value)

    def pool(self, fmc: str, peers: Sequence[str], threads: int) -> FanOut:
        """Every peer's push in a bare thread pool of `threads`."""
        material = make_material(self.uuids[fmc], peers, self.uuids, self.keys)
        cpu = self._cpu()
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench-push") as pool:
            pushes = list(pool.map(lambda peer: self.one(fmc, peer, material[peer]), peers))
        return self._fan_out(fmc, pushes, cpu)

    def serial(self, fmc: str, peers: Sequence[str]) -> FanOut:
        """The peers' pushes one after another."""
        material = make_material(self.uuids[fmc], peers, self.uuids, self.keys)
        cpu = self._cpu()
        pushes = [self.one(fmc, peer, material[peer]) for peer in peers]
        return self._fan_out(fmc, pushes, cpu)

    def _cpu(self) -> tuple[float, float]:
        """CPU seconds so far of this process (every thread) and of the lab."""
        own = resource.getrusage(resource.RUSAGE_SELF)
        return own.ru_utime + own.ru_stime, cpu_seconds(self.lab, with_reaped_children=True)

    def _fan_out(self, fmc: str, pushes: Sequence[Push], cpu_before: tuple[float, float]) -> FanOut:
        client, lab = (after - before for after, before in zip(self._cpu(), cpu_before, strict=True))
        _check_written(pushes)
        return FanOut(fmc, tuple(pushes), client, lab)


def _check_written(pushes: Sequence[Push]) -> None:
    skipped = [p.device for p in pushes if p.action != PushAction.WRITE.value]
    if skipped:
        raise RuntimeError(f"comparison pushes that did not write (the figures would flatter): {skipped}")


def sample(peers: Sequence[str], size: int) -> list[str]:
    """`size` peers spread evenly over `peers` (all of them when there are no more than `size`)."""
    if len(peers) <= size:
        return list(peers)
    step = len(peers) / size
    return [peers[int(i * step)] for i in range(size)]
