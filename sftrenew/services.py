"""The long-running commands: the lab, a worker, Flower, the reconciler, and the database schema."""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any, Final

import redis
from celery.utils.nodenames import host_format
from kombu.exceptions import OperationalError as KombuOperationalError
from pydantic import SecretStr

from pipeline import store
from pipeline.devices.known_hosts import check_known_hosts
from pipeline.errors import ConfigError
from pipeline.secrets import read_inventory
from pipeline.settings import FILE_SUFFIX, MASK, Settings, redact_url
from pipeline.store.checks import ServiceUnreachableError, check_database
from pipeline.store.crypto import artifact_key
from sftlab import cli as lab_cli
from tasks.context import Context
from tasks.queues import CONTROL_QUEUE, PUSH_QUEUE, push_queue, queue_name
from tasks.reconcile import reconcile_stalled
from workers.app import make_celery
from workers.embedded import redis_server_binary
from workers.flower_guard import TASK_COLUMNS, guard_flower
from workers.flower_state import keep_task_names

Sub = Any  # argparse's private _SubParsersAction


def add_commands(sub: Sub) -> None:
    lab = sub.add_parser("lab", help="the simulated fleet used by the tests and the demo")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    serve = lab_sub.add_parser("serve", help="run a simulated FMC pair, FTDs and a jump server until Ctrl-C")

    lab_cli.add_arguments(serve)
    serve.set_defaults(run=_lab)

    worker = sub.add_parser("worker", help="run a Celery worker (threads pool) for the renewal tasks")
    worker.add_argument(
        "-Q",
        "--queues",
        help="queues to serve (default: control, push and every site's), within SFTRENEW_QUEUE_PREFIX",
    )
    worker.add_argument("--concurrency", type=int, help="threads (default: SFTRENEW_WORKER_CONCURRENCY)")
    worker.add_argument("--beat", action="store_true", help="also run the reconciler's schedule (one worker)")
    worker.add_argument("--hostname", help="worker name (default: sftrenew@<host>)")
    worker.add_argument(
        "--no-supervise",
        dest="supervise",
        action="store_false",
        help="run the Celery worker in this process, without restarting it when it dies",
    )
    worker.add_argument(
        "--ping",
        action="store_true",
        help="only ask the worker named by --hostname (default: this host's) whether it answers; exit 0 if "
        "it does, 1 if not (a container's healthcheck)",
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


#: How long a check waits for Redis to answer (a command must answer in seconds, not minutes).
BROKER_PROBE_SECONDS: Final = 3.0
_PASSWORD_IN_URL = re.compile(r"(//[^/@:]*:)[^/@]*@")


def _redact_in_text(text: str) -> str:
    """A library's message about a URL, with any password in a URL it quotes masked (`redact_url` masks a
    whole URL; this masks URLs inside free text)."""
    return _PASSWORD_IN_URL.sub(rf"\1{MASK}@", text)


def _plain(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _redis_urls(settings: Settings, *, result_backend: bool) -> list[tuple[str, str]]:
    urls = [("SFTRENEW_BROKER_URL", _plain(settings.celery.broker_url))]
    if result_backend:
        urls.append(("SFTRENEW_RESULT_BACKEND", _plain(settings.celery.result_backend)))
    return urls


def check_broker(settings: Settings, *, result_backend: bool = True) -> None:
    """Refuse a broker (and result backend) that is not a Redis URL, refuses the password or does not
    answer; bounded by BROKER_PROBE_SECONDS. Messages name the variable, never the password."""
    for variable, url in _redis_urls(settings, result_backend=result_backend):
        _ping(variable, url)


def _ping(variable: str, url: str) -> None:
    shown = redact_url(url)
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=BROKER_PROBE_SECONDS, socket_timeout=BROKER_PROBE_SECONDS
        )
    except ValueError as exc:
        raise ConfigError(
            f"{variable} is not a Redis URL ({_redact_in_text(str(exc))}); write "
            "redis://[:PASSWORD@]HOST:6379/0"
        ) from None
    try:
        client.ping()
    except redis.AuthenticationError:
        raise ConfigError(f"Redis at {shown} refused the password of {variable}; fix the password") from None
    except redis.ResponseError as exc:
        raise ConfigError(f"Redis at {shown} ({variable}) refused us: {str(exc)[:120]}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise ServiceUnreachableError(
            f"Redis at {shown} ({variable}) does not answer ({str(exc)[:160]}); start it or fix {variable}"
        ) from None
    finally:
        client.close()


def broker_failure(settings: Settings, exc: Exception) -> str | None:
    """What an exception from sending a task says about the broker (None: it is not about the broker)."""
    if isinstance(exc, KombuOperationalError | redis.RedisError | OSError):
        broker = redact_url(_plain(settings.celery.broker_url))
        return f"the broker at {broker} did not take the work ({exc})"
    if isinstance(exc, RuntimeError) and "result store" in str(exc):  # Celery gave up on the result backend
        backend = redact_url(_plain(settings.celery.result_backend))
        return f"the result backend at {backend} does not answer"
    return None


def _given(name: str) -> bool:
    """Whether this process's environment sets `name`, directly or by a file (`<name>_FILE`)."""
    return name in os.environ or name + FILE_SUFFIX in os.environ


def demo_preflight(settings: Settings) -> None:
    """The demo uses a database or a broker of the operator's only when told to: check those first."""
    if _given("SFTRENEW_DATABASE_URL"):
        check_database(settings, create=True)
    if "SFTRENEW_BROKER_URL" in os.environ or "SFTRENEW_BROKER_URL_FILE" in os.environ:
        check_broker(
            settings,
            result_backend="SFTRENEW_RESULT_BACKEND" in os.environ
            or "SFTRENEW_RESULT_BACKEND_FILE" in os.environ,
        )
    else:
        redis_server_binary()  # the embedded Redis's (demo extra or PATH): said before anything starts


def _lab(args: argparse.Namespace, settings: Settings) -> int:

    return lab_cli.run(args)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    check_database(settings, create=True)
    engine = store.make_engine(settings)
    store.migrate(engine)
    print(f"database at revision {store.current_revision(engine)}")
    return 0


def default_queues(settings: Settings) -> str:
    """The queues a worker serves without `-Q`: control, push and every site's push queue."""
    queues = [CONTROL_QUEUE, PUSH_QUEUE]
    if settings.inventory is not None:
        inventory = read_inventory(settings.inventory)
        sites = sorted({f.site for p in inventory.pairs.values() for f in p.ftds if f.site})
        queues += [push_queue(s) for s in sites]
    return ",".join(queues)


def worker_queues(given: str | None, settings: Settings) -> str:
    """The queues a worker consumes: those given (`-Q`), else the default ones; within the queue prefix."""
    names = [q.strip() for q in (given or default_queues(settings)).split(",") if q.strip()]
    return ",".join(queue_name(q, settings.celery.queue_prefix) for q in names)


def worker_name(hostname: str | None) -> str:
    return hostname or "sftrenew@" + socket.gethostname()


#: How long `worker --ping` waits for the worker's answer.
PING_SECONDS: Final = 5.0


def _ping_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Whether the worker named `--hostname` (default: this host's) answers a Celery ping, through the
    broker: what a container's healthcheck asks. A worker busy with tasks still answers (its consumer
    thread does, not its pool)."""
    name = host_format(worker_name(args.hostname))  # `%h` as the worker expands it
    app = make_celery(settings)
    try:
        replies = app.control.ping(destination=[name], timeout=PING_SECONDS) or []
    except (KombuOperationalError, redis.RedisError, OSError) as exc:
        problem = _redact_in_text(str(exc))[:160]
        print(f"sftrenew: worker {name}: the broker does not answer ({problem})", file=sys.stderr)
        return 1
    finally:
        app.close()
    if any(name in reply for reply in replies):
        print(f"worker {name}: pong")
        return 0
    print(f"sftrenew: worker {name} did not answer within {PING_SECONDS:g} s", file=sys.stderr)
    return 1


def _check_worker(settings: Settings) -> None:
    """What every task needs, checked before the worker starts (and says it is ready): the artifact key,
    the inventory and its known_hosts file, the database and the broker."""
    artifact_key(settings.artifact_key)
    if settings.inventory is None:
        raise ConfigError("no inventory: set SFTRENEW_INVENTORY to the inventory file (docs/inventory.md)")
    inventory = read_inventory(settings.inventory)
    check_known_hosts(
        settings.ssh.known_hosts or Path(inventory.known_hosts), tofu=settings.ssh.trust_on_first_use
    )
    check_database(settings, create=True)
    check_broker(settings)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    if args.ping:
        return _ping_worker(args, settings)
    _check_worker(settings)
    store.migrate(store.make_engine(settings))
    if args.supervise:
        # Replace this process (same pid, so a service manager's signals still reach the supervisor) with one
        # that imports only the standard library: see workers.supervise.
        child = _child_argv(args)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "workers.supervise", *child])  # noqa: S606 (argv, no shell)
    app = make_celery(settings)
    app.set_default()
    argv = [
        "worker",
        "--pool=threads",
        f"--concurrency={args.concurrency or settings.celery.concurrency}",
        f"--queues={worker_queues(args.queues, settings)}",
        f"--hostname={worker_name(args.hostname)}",
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
    app = make_celery(settings)
    check_broker(settings, result_backend=False)
    os.environ["FLOWER_BASIC_AUTH"] = f"{settings.flower.user}:{password.get_secret_value()}"
    app.set_default()
    keep_task_names()
    guard_flower()
    app.start(
        [
            "flower",
            f"--address={args.address or settings.flower.address}",
            f"--port={args.port or settings.flower.port}",
            "--persistent=False",
            "--purge_offline_workers=60",
            f"--tasks_columns={TASK_COLUMNS}",
        ]
    )
    return 0


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    if settings.inventory is None:
        raise ConfigError("no inventory: set SFTRENEW_INVENTORY to the inventory file (docs/inventory.md)")
    read_inventory(settings.inventory)
    check_database(settings)
    make_celery(settings).set_default()
    check_broker(settings)
    for renewal_id, work in reconcile_stalled(Context(settings)).items():
        print(f"{renewal_id}: {work}" if work.startswith("skipped") else f"{renewal_id}: sent {work} again")
    return 0
