"""The database of record: what every renewal, step, attempt and artifact was. Celery's own state may be lost;
this may not. So the fan-in of a renewal's pushes is counted here too (`rounds`), not in a chord.

Functions take a keyword-only `session` and never make one; each writer commits before it returns, unless
the caller runs several writers as one transaction (`atomically`, in `transactions`). The
engine comes from `make_engine(settings)` and the schema only from `migrate(engine)` (alembic, in
`pipeline/migrations`). All datetimes are aware UTC, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

from pipeline.store.artifacts import add_artifact, add_device_file, artifact_data, artifacts_of
from pipeline.store.crypto import new_artifact_key
from pipeline.store.events import add_event, awaiting_approval, events_of, paused, paused_by
from pipeline.store.fmcs import (
    begin_fmc,
    claim_regeneration,
    fmcs_of,
    record_ca_before,
    record_regeneration,
    record_regeneration_intent,
    renewal_fmc,
    set_fmc_state,
    take_over_regeneration,
)
from pipeline.store.held import held_by_device, record_held
from pipeline.store.renewals import (
    active_renewal,
    finish_renewal,
    history,
    last_renewal,
    mark_running,
    renewal,
    resume_renewal,
    stalled,
    start_renewal,
    touch,
)
from pipeline.store.restarts import (
    files_before,
    push_restart,
    record_restarted,
    record_write_started,
    restarts_of,
)
from pipeline.store.rounds import (
    claim_verify,
    open_push_round,
    push_round,
    round_complete,
    settle_push,
    slot,
    slots,
    unsettled,
)
from pipeline.store.schema import current_revision, make_engine, migrate, open_session
from pipeline.store.steps import failed_pushes, interrupt_started, step_finished, step_started, steps_of
from pipeline.store.tables import (
    Artifact,
    EventAction,
    FmcState,
    PeerHeld,
    PushRestart,
    PushSlot,
    Renewal,
    RenewalEvent,
    RenewalFmc,
    RenewalState,
    Role,
    SlotOutcome,
    StepName,
    StepRun,
    StepState,
)
from pipeline.store.transactions import atomically

__all__ = [
    "Artifact",
    "EventAction",
    "FmcState",
    "PeerHeld",
    "PushRestart",
    "PushSlot",
    "Renewal",
    "RenewalEvent",
    "RenewalFmc",
    "RenewalState",
    "Role",
    "SlotOutcome",
    "StepName",
    "StepRun",
    "StepState",
    "active_renewal",
    "add_artifact",
    "add_device_file",
    "add_event",
    "artifact_data",
    "artifacts_of",
    "atomically",
    "awaiting_approval",
    "begin_fmc",
    "claim_regeneration",
    "claim_verify",
    "current_revision",
    "events_of",
    "failed_pushes",
    "files_before",
    "finish_renewal",
    "fmcs_of",
    "held_by_device",
    "history",
    "interrupt_started",
    "last_renewal",
    "make_engine",
    "mark_running",
    "migrate",
    "new_artifact_key",
    "open_push_round",
    "open_session",
    "paused",
    "paused_by",
    "push_restart",
    "push_round",
    "record_ca_before",
    "record_held",
    "record_regeneration",
    "record_regeneration_intent",
    "record_restarted",
    "record_write_started",
    "renewal",
    "renewal_fmc",
    "restarts_of",
    "resume_renewal",
    "round_complete",
    "set_fmc_state",
    "settle_push",
    "slot",
    "slots",
    "stalled",
    "start_renewal",
    "step_finished",
    "step_started",
    "steps_of",
    "take_over_regeneration",
    "touch",
    "unsettled",
]
