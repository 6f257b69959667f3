"""The Celery application, built from the typed settings at start-up (never at import).

Choices, each for a reason:
- JSON only: task arguments are ids and names, and nothing else may travel (Flower shows arguments).
- Late acknowledgement and reject-on-worker-lost: a worker killed mid-push leaves its message to be delivered
  again, which is safe because every task is idempotent (push decides from what the device holds; the
  regeneration is claimed once in the database).
- Prefetch 1: a worker holding messages it is not running would delay other sites' pushes.
- Task events on, so Flower sees every task as it runs.
- Time limits below the Redis visibility timeout, checked here: with Redis, a message not acknowledged within
  the visibility timeout is delivered again, so a longer task, or a retry delayed longer than that, would run
  twice (Celery's documented caveat). The threads pool does not enforce Celery's time limits, so the limit is
  a budget: sftrenew's own timeouts (SSH, commands, the regeneration, the verify deadline) bound each task,
  and the regeneration's is checked against it here.
- Queues: `control` for FMC steps, `push` for device pushes, and `push.<site>` for FTDs whose inventory entry
  names a site, so a worker near that site's jump server can serve it (`sftrenew worker -Q push.dc2`); all
  within `SFTRENEW_QUEUE_PREFIX` when set (`lab.control`: the lab beside production on one Redis).
"""

from __future__ import annotations

from celery import Celery

from pipeline.errors import ConfigError
from pipeline.settings import Settings
from tasks.context import register_settings
from tasks.queues import control_queue
from tasks.reconcile import RECONCILE_TASK
from tasks.routing import route

TASK_MODULES = ("tasks.steps", "tasks.reconcile")


def check_limits(settings: Settings) -> None:
    """Refuse a configuration that would deliver a message twice or cut the regeneration short."""
    c = settings.celery
    problems = []
    if c.task_time_limit >= c.visibility_timeout:
        problems.append(
            f"SFTRENEW_TASK_TIME_LIMIT ({c.task_time_limit:g} s) must be below "
            f"SFTRENEW_VISIBILITY_TIMEOUT ({c.visibility_timeout:g} s), or Redis redelivers a running task"
        )
    if c.retry_backoff_max >= c.visibility_timeout:
        problems.append(
            f"SFTRENEW_RETRY_BACKOFF_MAX ({c.retry_backoff_max:g} s) must be below "
            f"SFTRENEW_VISIBILITY_TIMEOUT ({c.visibility_timeout:g} s): a longer-delayed retry runs twice"
        )
    if settings.ssh.regenerate_timeout >= c.task_time_limit:
        problems.append(
            f"SFTRENEW_SSH_REGENERATE_TIMEOUT ({settings.ssh.regenerate_timeout:g} s) must be below "
            f"SFTRENEW_TASK_TIME_LIMIT ({c.task_time_limit:g} s), or generate_certs.pl is killed mid-run"
        )
    if problems:
        raise ConfigError("the Celery settings would duplicate or cut short tasks: " + "; ".join(problems))


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured from `settings`."""
    check_limits(settings)
    c = settings.celery
    app = Celery("sftrenew", include=list(TASK_MODULES))
    app.conf.update(
        # Celery needs the URLs whole; it masks their passwords wherever it shows its configuration
        # (`conf.table(censored=True)`, what a worker answers to `inspect conf`, so Flower's worker page).
        broker_url=c.broker_url.get_secret_value(),
        result_backend=c.result_backend.get_secret_value(),
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        result_extended=True,
        task_time_limit=c.task_time_limit,
        broker_transport_options={"visibility_timeout": c.visibility_timeout},
        result_backend_transport_options={"visibility_timeout": c.visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_pool="threads",
        worker_concurrency=c.concurrency,
        task_default_queue=control_queue(c.queue_prefix),
        # Queues are made on first use: `control`, `push`, `push.<site>` (the canvas names them per task).
        task_create_missing_queues=True,
        # A task sent without a queue (Flower's apply, `celery call`) goes where the renewal would send it.
        task_routes=(route,),
        beat_schedule={
            "reconcile": {"task": RECONCILE_TASK, "schedule": c.reconcile_interval},
        },
        # Runs the reconcile entry in the beat: a quiet round leaves no task in Flower (workers.beat).
        beat_scheduler="workers.beat:ReconcilingScheduler",
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
    )
    # Not in `app.conf`: a worker hands its configuration to anyone who asks (Flower shows it), and the
    # settings hold the database URL and the artifact key. The tasks find them by the app.
    register_settings(app, settings)
    return app
