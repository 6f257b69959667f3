"""People are told (SFTRENEW_NOTIFY, apprise): a renewal that awaits approval, a renewal that ended (with the
devices not verified), a CA that is due (`check --notify`); a notifier that fails fails nothing.

The receiver is a real HTTP server on loopback that apprise's `json://` service posts to (what a webhook
endpoint, a chat bridge or an alerting gateway would be).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.conftest import MakeEnv
from tests.e2e.services import wait_until
from workers.embedded import free_port

pytestmark = pytest.mark.e2e

LAB = {"ftds": 4, "scenarios": "mixed,expired"}  # ftd-004: tunnel down and no SSH route
#: A token in the receiver's URL, as a real webhook's would be: it must never reach a log or a message.
TOKEN = "hook-token-5d1e"


class Receiver:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append({"path": self.path, **json.loads(self.rfile.read(length))})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_port}/{TOKEN}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def titled(self, words: str) -> list[dict[str, Any]]:
        return [p for p in self.posts if words in p["title"]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()
    yield got
    got.server.shutdown()


def test_awaiting_approval_and_the_end_are_told_and_a_broken_notifier_fails_nothing(
    make_sqlite_env: MakeEnv, receiver: Receiver
) -> None:
    broken = f"json://127.0.0.1:{free_port()}/{TOKEN}"  # nothing listens there
    env = make_sqlite_env(LAB, SFTRENEW_NOTIFY=f"{broken} {receiver.url}")
    worker = env.start_worker()
    renewal_id = env.enqueue("--hold", "--accept-stranded", "ftd-004", force=False)
    wait_until(lambda: bool(receiver.titled("awaits approval")), timeout=120, what="the approval notice")
    (held,) = receiver.titled("awaits approval")
    assert held["type"] == "info" and held["path"] == f"/{TOKEN}"
    assert f"sftrenew approve {renewal_id} --by NAME" in held["message"]

    assert env.sftrenew("approve", renewal_id, "--by", "bob").returncode == 0
    assert env.wait_finished(renewal_id).state == "partial"
    wait_until(lambda: bool(receiver.titled("ended partial")), timeout=30, what="the end notice")
    (ended,) = receiver.titled("ended partial")
    assert ended["type"] == "warning"
    assert "2 device(s) not verified" in ended["message"]
    assert "fmc-primary -> ftd-004" in ended["message"] and "fmc-secondary -> ftd-004" in ended["message"]
    assert f"sftrenew retry {renewal_id}" in ended["message"]

    # The dead notifier was logged, by entry, never by URL; the renewal did its job regardless.
    log = worker.log.read_text()
    assert "not delivered to every SFTRENEW_NOTIFY entry" in log
    assert TOKEN not in log
    for post in receiver.posts:
        assert not any(secret in json.dumps(post) for secret in env.lab.secrets.values())

    # After the renewal both CAs are new: `check --notify` has nothing to tell.
    before = len(receiver.posts)
    checked = env.sftrenew("check", "--notify")
    assert checked.returncode == 0 and len(receiver.posts) == before


def test_check_notify_tells_of_an_expired_ca(make_sqlite_env: MakeEnv, receiver: Receiver) -> None:
    env = make_sqlite_env({"ftds": 1, "scenarios": "expired"}, SFTRENEW_NOTIFY=receiver.url)
    checked = env.sftrenew("check", "--notify")
    assert checked.returncode == 2, checked.stderr
    (told,) = receiver.titled("InternalCA check CRITICAL")
    assert told["type"] == "failure"
    assert "CRITICAL lab/fmc-primary: InternalCA expires" in told["message"]
    assert TOKEN not in checked.stdout + checked.stderr

    unset = make_sqlite_env({"ftds": 1})
    refused = unset.sftrenew("check", "--notify")
    assert refused.returncode == 3 and "SFTRENEW_NOTIFY is not set" in refused.stderr
