"""What each peer held when this renewal's latest successful push to it ended (`PeerHeld`).

A push reads the peer's three files before it decides, and reads back by SHA-256 what it wrote; recording
that here lets verify join the FMC's tunnel status with it instead of logging in to every peer again (at 300
FTDs, one session each). Only a successful push records; a later one replaces the row.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from pipeline.store.restarts import upsert
from pipeline.store.tables import PeerHeld, require_utc


def record_held(  # noqa: PLR0913 - keyword-only, one per column
    *,
    session: Session,
    renewal_id: str,
    fmc: str,
    device: str,
    ca_sha256: str | None,
    cert_sha256: str | None,
    key_matches_cert: bool,
    route: str,
    now: datetime,
) -> None:
    """Record (or replace) what the device held for `fmc` when a push to it ended at `now`."""
    now = require_utc(now)
    row = PeerHeld(
        renewal_id=renewal_id,
        fmc=fmc,
        device=device,
        ca_sha256=ca_sha256,
        cert_sha256=cert_sha256,
        key_matches_cert=key_matches_cert,
        route=route,
        checked_at_utc=now,
    )
    upsert(session, row, row.model_dump(exclude={"renewal_id", "fmc", "device"}))


def held_by_device(*, session: Session, renewal_id: str, fmc: str) -> dict[str, PeerHeld]:
    """Every row recorded for the FMC's peers in this renewal, by device."""
    rows = session.exec(
        select(PeerHeld).where(col(PeerHeld.renewal_id) == renewal_id, col(PeerHeld.fmc) == fmc)
    ).all()
    return {row.device: row for row in rows}
