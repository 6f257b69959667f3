"""The tables of record: what a renewal is, which steps ran on which device, and what they left behind.

Only `table=True` classes and their column types live here; the functions that write and read them take a
session (`pipeline.store.renewals`, `.steps`, `.artifacts`). The schema in a database is made and moved only
by the migrations in `pipeline/migrations`; a test checks that they and these classes agree.

Rules the database itself keeps, so no code path can break them:
- one active renewal per FMC pair: `Renewal.active_pair` is UNIQUE and holds the pair's name exactly while
  the renewal is queued or running (a CHECK ties the two);
- a step or artifact belongs to an FMC of its renewal (composite foreign key to `renewal_fmc`);
- attempts of one step on one device are numbered without gaps or twins (a unique index);
- a push slot is settled with an outcome or not at all (a CHECK ties `settled_at_utc` and `outcome`);
- a peer's push facts (the write begun, the restart after it) exist once per renewal, FMC and device.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal

from sqlalchemy import (
    CheckConstraint,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    text,
)
from sqlalchemy.orm import registry
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field, SQLModel

RenewalState = Literal["queued", "running", "succeeded", "failed", "partial"]
FmcState = Literal["pending", "running", "succeeded", "failed", "partial"]
Role = Literal["primary", "secondary"]
StepName = Literal["backup", "validate", "regenerate", "push", "verify"]
StepState = Literal[
    "started", "succeeded", "failed", "skipped", "retrying", "refused", "ignored", "interrupted"
]
SlotOutcome = Literal["succeeded", "skipped", "failed"]

ACTIVE_STATES: Final = ("queued", "running")
FINISHED_STATES: Final = ("succeeded", "failed", "partial")
FMC_STATES: Final = ("pending", "running", "succeeded", "failed", "partial")
ROLES: Final = ("primary", "secondary")
STEPS: Final = ("backup", "validate", "regenerate", "push", "verify")
#: `refused`: a push whose session never opened (nothing was written) and that will not be retried.
#: `ignored`: a duplicate that stood aside (another live task holds the step); `interrupted`: an attempt whose
#: worker died, closed when a later attempt or the reconciler took the step over.
STEP_STATES: Final = (
    "started",
    "succeeded",
    "failed",
    "skipped",
    "retrying",
    "refused",
    "ignored",
    "interrupted",
)
#: The states of a step attempt that ended and will not be retried by Celery: `sftrenew retry` picks these.
GAVE_UP_STATES: Final = ("failed", "refused")
SLOT_OUTCOMES: Final = ("succeeded", "skipped", "failed")
#: How much of a step's (already redacted) message is kept: enough for the operator's next move.
MESSAGE_CHARS: Final = 500

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def require_utc(value: datetime, name: str = "now") -> datetime:
    """`value` as UTC; a naive datetime is a programming error (ValueError), caught before any write."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} is a naive datetime ({value.isoformat()}); pass an aware UTC datetime")
    return value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python on every database: naive values are refused on the way in, and SQLite's
    naive text comes back marked UTC (PostgreSQL's `timestamptz` keeps the zone itself)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = require_utc(value, "a stored datetime")
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StoreBase(SQLModel, registry=registry(metadata=MetaData(naming_convention=NAMING))):
    """Our own metadata, with constraint names the migrations rely on, apart from SQLModel's global one."""


metadata = StoreBase.metadata


class Renewal(StoreBase, table=True):
    """One renewal of one FMC pair's CA, from `sftrenew enqueue` to its end."""

    __tablename__ = "renewal"
    __table_args__ = (
        CheckConstraint(_in("state", ACTIVE_STATES + FINISHED_STATES), name="state"),
        CheckConstraint(
            f"({_in('state', ACTIVE_STATES)} AND active_pair = pair) "
            f"OR ({_in('state', FINISHED_STATES)} AND active_pair IS NULL)",
            name="active_pair",
        ),
        Index(None, "pair", "requested_at_utc"),
    )

    id: str = Field(primary_key=True, sa_type=String(36))
    pair: str = Field(sa_type=String(100))
    requested_by: str = Field(sa_type=String(200))
    requested_at_utc: datetime = Field(sa_type=UtcDateTime)
    state: str = Field(sa_type=String(16))
    finished_at_utc: datetime | None = Field(default=None, sa_type=UtcDateTime)
    #: The pair's name while the renewal is active, NULL once it ended: UNIQUE, so only one can be active.
    active_pair: str | None = Field(default=None, sa_type=String(100), unique=True)
    #: Moved by every recorded event; a reconciler looks for active renewals where it stopped moving.
    last_progress_utc: datetime = Field(sa_type=UtcDateTime)


class RenewalFmc(StoreBase, table=True):
    """One FMC of a renewal (each has its own InternalCA) and the facts of its regeneration."""

    __tablename__ = "renewal_fmc"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role"),
        CheckConstraint(_in("state", FMC_STATES), name="state"),
        ForeignKeyConstraint(["renewal_id"], ["renewal.id"], ondelete="CASCADE"),
    )

    renewal_id: str = Field(primary_key=True, sa_type=String(36))
    fmc: str = Field(primary_key=True, sa_type=String(100))
    role: str = Field(sa_type=String(16))
    state: str = Field(default="pending", sa_type=String(16))
    fmc_uuid: str | None = Field(default=None, sa_type=String(64))
    ca_before_sha256: str | None = Field(default=None, sa_type=String(64))
    ca_after_sha256: str | None = Field(default=None, sa_type=String(64))
    #: Set once, by the first task that claims the regeneration; the claim is what makes it run once.
    regen_token: str | None = Field(default=None, sa_type=String(200))
    #: When the first claim was made; a takeover keeps it. For the record only: no decision reads it.
    regen_claimed_at_utc: datetime | None = Field(default=None, sa_type=UtcDateTime)
    regen_done_at_utc: datetime | None = Field(default=None, sa_type=UtcDateTime)
    #: When the current holder took the claim (its first claim, or a takeover): what "stale" is measured from.
    regen_taken_at_utc: datetime | None = Field(default=None, sa_type=UtcDateTime)
    #: Set by the claim's holder (committed) after it found the backed-up CA and before it runs
    #: generate_certs.pl: only a CA found after this can be this renewal's without being recorded. Whether it
    #: is set is what counts, never its value (no clock decides whose CA it is).
    regen_intent_at_utc: datetime | None = Field(default=None, sa_type=UtcDateTime)
    #: The newest push round opened (0: none yet) and the newest round whose verify was claimed.
    push_round: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    verify_round: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})


class StepRun(StoreBase, table=True):
    """One attempt of one step on one device (`device` None: the FMC itself), with its route and outcome."""

    __tablename__ = "step_run"
    __table_args__ = (
        CheckConstraint(_in("step", STEPS), name="step"),
        CheckConstraint(_in("state", STEP_STATES), name="state"),
        CheckConstraint("attempt >= 1", name="attempt"),
        ForeignKeyConstraint(
            ["renewal_id", "fmc"], ["renewal_fmc.renewal_id", "renewal_fmc.fmc"], ondelete="CASCADE"
        ),
        Index(None, "renewal_id", "device", "step"),
        # FMC-level steps have no device: COALESCE makes their attempts unique too (NULLs are distinct).
        Index(
            "uq_step_run_attempt",
            "renewal_id",
            "fmc",
            text("coalesce(device, '')"),
            "step",
            "attempt",
            unique=True,
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    renewal_id: str = Field(sa_type=String(36))
    fmc: str = Field(sa_type=String(100))
    device: str | None = Field(default=None, sa_type=String(100))
    step: str = Field(sa_type=String(16))
    attempt: int
    route: str | None = Field(default=None, sa_type=String(100))
    state: str = Field(default="started", sa_type=String(16))
    task_id: str | None = Field(default=None, sa_type=String(200))
    started_at_utc: datetime = Field(sa_type=UtcDateTime)
    finished_at_utc: datetime | None = Field(default=None, sa_type=UtcDateTime)
    error_kind: str | None = Field(default=None, sa_type=String(100))
    message: str | None = Field(default=None, sa_type=String(MESSAGE_CHARS))
    #: For a step re-run on request (`sftrenew retry`): who asked.
    who: str | None = Field(default=None, sa_type=String(200))


class Artifact(StoreBase, table=True):
    """A file a step kept (backup, new CA, a peer's new cert and key, FAILED_PUSH...): secrets sealed."""

    __tablename__ = "artifact"
    __table_args__ = (
        ForeignKeyConstraint(
            ["renewal_id", "fmc"], ["renewal_fmc.renewal_id", "renewal_fmc.fmc"], ondelete="CASCADE"
        ),
        Index(None, "renewal_id", "fmc", "kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    renewal_id: str = Field(sa_type=String(36))
    fmc: str = Field(sa_type=String(100))
    #: None: the FMC itself.
    device: str | None = Field(default=None, sa_type=String(100))
    kind: str = Field(sa_type=String(40))
    path: str = Field(sa_type=String(1024))
    #: SHA-256 of the plain content (what the device holds), so it can be compared without decrypting.
    sha256: str = Field(sa_type=String(64))
    secret: bool
    #: Plain for certificates and configuration; AES-GCM sealed (`pipeline.store.crypto`) when `secret`.
    data: bytes = Field(sa_type=LargeBinary, repr=False)
    created_at_utc: datetime = Field(sa_type=UtcDateTime)


class PushSlot(StoreBase, table=True):
    """One device's push in one push round of an FMC: settled once, whatever the outcome. The round is
    complete (and its verify may be claimed) when every slot is settled (`pipeline.store.rounds`)."""

    __tablename__ = "push_slot"
    __table_args__ = (
        CheckConstraint(_in("outcome", SLOT_OUTCOMES), name="outcome"),
        CheckConstraint(
            "(settled_at_utc IS NULL AND outcome IS NULL) "
            "OR (settled_at_utc IS NOT NULL AND outcome IS NOT NULL)",
            name="settled",
        ),
        CheckConstraint("round >= 1", name="round"),
        ForeignKeyConstraint(
            ["renewal_id", "fmc"], ["renewal_fmc.renewal_id", "renewal_fmc.fmc"], ondelete="CASCADE"
        ),
    )

    renewal_id: str = Field(primary_key=True, sa_type=String(36))
    fmc: str = Field(primary_key=True, sa_type=String(100))
    round: int = Field(primary_key=True, sa_type=Integer)
    device: str = Field(primary_key=True, sa_type=String(100))
    settled_at_utc: datetime | None = Field(default=None, sa_type=UtcDateTime)
    outcome: str | None = Field(default=None, sa_type=String(16))


class PushRestart(StoreBase, table=True):
    """What one renewal did to one peer's files for one FMC, over all its push attempts and rounds: when it
    began writing them (recorded before the first file changes) and when sftunnel restarted after that write
    (NULL until then; a new write clears it). A later attempt that finds the files new decides from this row
    whether to restart only (a write with no restart after it: the connection or the worker died in between)
    or to skip (no row: generate_certs.pl pushed them; or restarted already).

    The `before_*` columns say what the peer held before the renewal's first write, set by that write only
    (a later attempt never changes them): the folder, the suffix of the copies the push kept there, and each
    file's SHA-256 (NULL: the file was not there). `sftrenew restore` puts the copies back only when they
    still match. All NULL on rows written before they existed."""

    __tablename__ = "push_restart"
    __table_args__ = (
        ForeignKeyConstraint(
            ["renewal_id", "fmc"], ["renewal_fmc.renewal_id", "renewal_fmc.fmc"], ondelete="CASCADE"
        ),
    )

    renewal_id: str = Field(primary_key=True, sa_type=String(36))
    fmc: str = Field(primary_key=True, sa_type=String(100))
    device: str = Field(primary_key=True, sa_type=String(100))
    write_started_at_utc: datetime = Field(sa_type=UtcDateTime)
    restarted_at_utc: datetime | None = Field(default=None, sa_type=UtcDateTime)
    before_folder: str | None = Field(default=None, sa_type=String(200))
    before_suffix: str | None = Field(default=None, sa_type=String(64))
    before_ca_sha256: str | None = Field(default=None, sa_type=String(64))
    before_cert_sha256: str | None = Field(default=None, sa_type=String(64))
    before_key_sha256: str | None = Field(default=None, sa_type=String(64))


class PeerHeld(StoreBase, table=True):
    """What one peer held for one FMC when this renewal's latest successful push to it ended, as that push
    read it (or wrote it and read it back by SHA-256) in its own session: what verify checks without
    logging in again. Certificate fingerprints (SHA-256 of the DER), and whether the key is the
    certificate's. One row per renewal, FMC and device, replaced by each successful push."""

    __tablename__ = "peer_held"
    __table_args__ = (
        ForeignKeyConstraint(
            ["renewal_id", "fmc"], ["renewal_fmc.renewal_id", "renewal_fmc.fmc"], ondelete="CASCADE"
        ),
    )

    renewal_id: str = Field(primary_key=True, sa_type=String(36))
    fmc: str = Field(primary_key=True, sa_type=String(100))
    device: str = Field(primary_key=True, sa_type=String(100))
    ca_sha256: str | None = Field(default=None, sa_type=String(64))
    cert_sha256: str | None = Field(default=None, sa_type=String(64))
    key_matches_cert: bool
    route: str = Field(sa_type=String(100))
    checked_at_utc: datetime = Field(sa_type=UtcDateTime)


#: What a renewal event records (`RenewalEvent.action`).
EventAction = Literal[
    "enqueue",
    "accept-stranded",
    "force",
    "hold",
    "approve",
    "pause",
    "resume",
    "abandon",
    "retry",
    "reconcile-skipped",
    "restore",
    "restore-refused",
    "restore-failed",
]


class RenewalEvent(StoreBase, table=True):
    """Something that happened to a renewal outside its steps: what a person did to it (who, and why), or
    what the reconciler could not do with it (the reason). Never changed once written."""

    __tablename__ = "renewal_event"
    __table_args__ = (
        ForeignKeyConstraint(["renewal_id"], ["renewal.id"], ondelete="CASCADE"),
        Index(None, "renewal_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    renewal_id: str = Field(sa_type=String(36))
    at_utc: datetime = Field(sa_type=UtcDateTime)
    action: str = Field(sa_type=String(32))
    who: str | None = Field(default=None, sa_type=String(200))
    fmc: str | None = Field(default=None, sa_type=String(100))
    device: str | None = Field(default=None, sa_type=String(100))
    detail: str | None = Field(default=None, sa_type=String(MESSAGE_CHARS))
