"""The long-running commands: the lab, a worker, Flower, the reconciler, and the database schema."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from pipeline import store
from pipeline.errors import ConfigError
from pipeline.secrets import read_inventory
from pipeline.settings import Settings
from sftlab import cli as lab_cli
from tasks.context import Context
from tasks.queues import CONTROL_QUEUE, PUSH_QUEUE, push_queue
from tasks.reconcile import reconcile_stalled
from workers.app import make_celery
from workers.supervise import supervise

Sub = Any  # argparse's private _SubParsersAction


def add_commands(sub: Sub) -> None:
    lab = sub.add_parser("lab", help="the simulated fleet used by the tests and the demo")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    serve = lab_sub.add_parser("serve", help="run a simulated FMC pair, FTDs and a jump server until Ctrl-C")

    lab_cli.add_arguments(serve)
    serve.set_defaults(run=_lab)

    worker = sub.add_parser("worker", help="run a Celery worker (threads pool) for the renewal tasks")
    worker.add_argument("-Q", "--queues", help="queues to serve (default: control, push and every site's)")
    worker.add_argument("--concurrency", type=int, help="threads (default: SFTRENEW_WORKER_CONCURRENCY)")
    worker.add_argument("--beat", action="store_true", help="also run the reconciler's schedule (one worker)")
    worker.add_argument("--hostname", help="worker name (default: sftrenew@<host>)")
    worker.add_argument(
        "--no-supervise",
        dest="supervise",
        action="store_false",
        help="run the Celery worker in this process, without restarting it when it dies",
    )
    worker.set_defaults(run=_worker)

    flower = sub.add_parser("flower", help="run Flower, authenticated, bound to 127.0.0.1 by default")
    flower.add_argument("--address", help="listen address (default: SFTRENEW_FLOWER_ADDRESS or 127.0.0.1)")
    flower.add_argument("--port", type=int, help="port (default: SFTRENEW_FLOWER_PORT or 5555)")
    flower.set_defaults(run=_flower)

    reconcile = sub.add_parser("reconcile", help="send again the work of renewals whose messages were lost")
    reconcile.set_defaults(run=_reconcile)

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate.set_defaults(run=_migrate)


def _lab(args: argparse.Namespace, settings: Settings) -> int:

    return lab_cli.run(args)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    engine = store.make_engine(settings)
    store.migrate(engine)
    print(f"database at revision {store.current_revision(engine)}")
    return 0


def default_queues(settings: Settings) -> str:

    queues = [CONTROL_QUEUE, PUSH_QUEUE]
    if settings.inventory is not None:
        inventory = read_inventory(settings.inventory)
        sites = sorted({f.site for p in inventory.pairs.values() for f in p.ftds if f.site})
        queues += [push_queue(s) for s in sites]
    return ",".join(queues)


def _worker(args: argparse.Namespace, settings: Settings) -> int:

    store.migrate(store.make_engine(settings))
    if args.supervise:
        return supervise(_child_argv(args))
    app = make_celery(settings)
    app.set_default()
    argv = [
        "worker",
        "--pool=threads",
        f"--concurrency={args.concurrency or settings.celery.concurrency}",
        f"--queues={args.queues or default_queues(settings)}",
        f"--hostname={args.hostname or 'sftrenew@' + socket.gethostname()}",
        "--loglevel=INFO",
        "--task-events",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.beat:
        argv.append("--beat")
    app.worker_main(argv)
    return 0


def _child_argv(args: argparse.Namespace) -> list[str]:
    argv = [sys.executable, "-m", "sftrenew", "worker", "--no-supervise"]
    for flag, value in (
        ("--queues", args.queues),
        ("--concurrency", args.concurrency),
        ("--hostname", args.hostname),
    ):
        if value is not None:
            argv.append(f"{flag}={value}")
    if args.beat:
        argv.append("--beat")
    return argv


def _flower(args: argparse.Namespace, settings: Settings) -> int:

    password = settings.flower.password
    if password is None or not password.get_secret_value():
        raise ConfigError(
            "Flower needs a password: set SFTRENEW_FLOWER_PASSWORD (the user is SFTRENEW_FLOWER_USER)"
        )
    # Through the environment, not the command line, where any local user could read it.
    os.environ["FLOWER_BASIC_AUTH"] = f"{settings.flower.user}:{password.get_secret_value()}"
    app = make_celery(settings)
    app.set_default()
    app.start(
        [
            "flower",
            f"--address={args.address or settings.flower.address}",
            f"--port={args.port or settings.flower.port}",
            "--persistent=False",
            "--purge_offline_workers=60",
        ]
    )
    return 0


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:

    make_celery(settings).set_default()
    for renewal_id, work in reconcile_stalled(Context(settings)).items():
        print(f"{renewal_id}: sent {work} again")
    return 0
