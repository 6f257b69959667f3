"""The database of record: what every renewal, step, attempt and artifact was. Celery's own state may be lost;
this may not.

Functions take a keyword-only `session` and never make one; each writer commits before it returns. The
engine comes from `make_engine(settings)` and the schema only from `migrate(engine)` (alembic, in
`pipeline/migrations`). All datetimes are aware UTC, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

from pipeline.store.artifacts import add_artifact, add_device_file, artifact_data, artifacts_of
from pipeline.store.crypto import new_artifact_key
from pipeline.store.fmcs import (
    claim_regeneration,
    fmcs_of,
    record_ca_before,
    record_regeneration,
    renewal_fmc,
    set_fmc_state,
)
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
from pipeline.store.schema import current_revision, make_engine, migrate
from pipeline.store.steps import failed_pushes, step_finished, step_started, steps_of
from pipeline.store.tables import (
    Artifact,
    FmcState,
    Renewal,
    RenewalFmc,
    RenewalState,
    Role,
    StepName,
    StepRun,
    StepState,
)

__all__ = [
    "Artifact",
    "FmcState",
    "Renewal",
    "RenewalFmc",
    "RenewalState",
    "Role",
    "StepName",
    "StepRun",
    "StepState",
    "active_renewal",
    "add_artifact",
    "add_device_file",
    "artifact_data",
    "artifacts_of",
    "claim_regeneration",
    "current_revision",
    "failed_pushes",
    "finish_renewal",
    "fmcs_of",
    "history",
    "last_renewal",
    "make_engine",
    "mark_running",
    "migrate",
    "new_artifact_key",
    "record_ca_before",
    "record_regeneration",
    "renewal",
    "renewal_fmc",
    "resume_renewal",
    "set_fmc_state",
    "stalled",
    "start_renewal",
    "step_finished",
    "step_started",
    "steps_of",
    "touch",
]
