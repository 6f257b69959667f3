"""`sftrenew web` and `sftrenew web hash-password`."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import sys
from typing import Any

from pipeline.errors import ConfigError
from pipeline.settings import Settings
from sftrenew.web import auth

Sub = Any


def add_commands(sub: Sub) -> None:
    web = sub.add_parser(
        "web", help="the renewal page: renewals, live device grids and the operator's buttons"
    )
    web.add_argument("--address", help="listen address (default: SFTRENEW_WEB_ADDRESS or 127.0.0.1)")
    web.add_argument("--port", type=int, help="port (default: SFTRENEW_WEB_PORT or 8080)")
    web.set_defaults(run=_serve)
    web_sub = web.add_subparsers(dest="web_command")
    hashing = web_sub.add_parser(
        "hash-password", help="print the hash of a password for the users file (read without echo, or stdin)"
    )
    hashing.set_defaults(run=_hash_password)


def _hash_password(args: argparse.Namespace, settings: Settings) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ; nothing was printed")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < auth.MIN_PASSWORD:
        raise ConfigError(f"a password of at least {auth.MIN_PASSWORD} characters, please")
    print(auth.hash_password(password))
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    # Users and the session key first: the page never starts open, nor with a default password.
    users = auth.load_users(settings)
    key = auth.session_key(settings)
    import uvicorn  # noqa: PLC0415 - the page's server, loaded only by the command that serves it

    from sftrenew.actions import Desk  # noqa: PLC0415
    from sftrenew.checks import inventory_of  # noqa: PLC0415
    from sftrenew.services import check_broker  # noqa: PLC0415
    from sftrenew.web.app import make_app  # noqa: PLC0415

    desk = Desk(settings)
    # Before the page says it is up, what its buttons will need: the inventory (retry and approve read
    # it), the database, the broker (they send tasks).
    inventory_of(settings)
    _ = desk.engine
    desk.celery()
    check_broker(settings)
    address = args.address or settings.web.address
    port = args.port or settings.web.port
    app = make_app(settings, users, desk, session_key=key)
    print(f"sftrenew web: http://{_host(address)}:{port}/ ({len(users)} users)", flush=True)
    if not _loopback(address):
        print(
            "sftrenew web: listening beyond this machine; the session cookie is Secure, so browsers keep it "
            "only over HTTPS (put a TLS proxy in front) or on a loopback address",
            flush=True,
        )
    uvicorn.run(app, host=address, port=port, log_level="info", server_header=False, proxy_headers=False)
    return 0


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
