"""The renewal page's locks, tried over plain HTTP against a running `sftrenew web` (real worker, Redis,
SQLite and the lab; a renewal held for approval, so it stays active while the page is tried).

- without signing in, every page and API route redirects to the sign-in or answers 401, and every POST 401;
- a wrong password does not sign in; a POST without the session's CSRF token (or with another) is refused
  with 403 and changes nothing (a pause without it leaves the renewal unpaused);
- a viewer sees the page without its buttons, and their POST is refused with 403;
- an operator's pause and resume are recorded under their name;
- the session cookie is HttpOnly, SameSite=Strict and Secure; the page listens on 127.0.0.1 only;
- no secret (a device password, the artifact key, a private key, a user's password or hash) is on any page;
- with no users configured, or a users file others can read, it refuses to start and names the fix.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from pipeline import store
from pipeline.settings import Settings
from sftrenew.web import acts, app, auth
from tests.e2e.conftest import MakeEnv
from tests.e2e.renewal_env import SFTRENEW, RenewalEnv
from tests.e2e.services import wait_until
from tests.e2e.web_client import Reply, WebClient

pytestmark = pytest.mark.e2e

LAB = {"ftds": 2, "scenarios": "expired"}
OPERATOR, VIEWER = ("olga", "olga's long password"), ("vic", "vic's long password!")


def hash_with_the_command(env: RenewalEnv, password: str) -> str:
    """`sftrenew web hash-password`, the password on its standard input (no terminal: no prompt)."""
    done = subprocess.run(
        [SFTRENEW, "web", "hash-password"],
        input=password + "\n",
        env=env.env_for("web"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    hashed = done.stdout.strip()
    assert auth.PasswordHash.parse(hashed).verify(password) and password not in done.stdout + done.stderr
    return hashed


def routes(renewal_id: str) -> tuple[list[str], list[str]]:
    """Every route of the page (GET, POST), with the renewal's id filled in; checked against the app's own
    routers, so a route added without a test fails here."""
    gets = ["/", "/api/renewals", "/renewals/{id}", "/renewals/{id}/live", "/renewals/{id}/evidence"]
    gets.append("/api/renewals/{id}")
    posts = [
        "/logout",
        *(f"/renewals/{{id}}/{act}" for act in ("retry", "approve", "pause", "resume", "abandon")),
    ]
    declared = {
        (method, route.path.replace("{renewal_id}", "{id}"))
        for route in [*app.pages.routes, *acts.router.routes]
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    ours = {("GET", p) for p in gets} | {("POST", p) for p in posts} | {("GET", "/login"), ("POST", "/login")}
    assert declared == ours, declared ^ ours
    return [p.format(id=renewal_id) for p in gets], [p.format(id=renewal_id) for p in posts]


def refused_anonymously(reply: Reply) -> bool:
    return reply.status == 401 or (reply.status == 303 and reply.headers["location"].startswith("/login"))


def unpaused(env: RenewalEnv, renewal_id: str) -> bool:
    with store.open_session(env.engine) as db:
        return not store.paused(session=db, renewal_id=renewal_id)


def events(env: RenewalEnv, renewal_id: str) -> list[tuple[str, str | None]]:
    with store.open_session(env.engine) as db:
        return [(e.action, e.who) for e in store.events_of(session=db, renewal_id=renewal_id)]


def test_the_page_lets_in_only_its_users_and_only_operators_act(make_sqlite_env: MakeEnv) -> None:
    env = make_sqlite_env(LAB)
    env.start_worker()
    renewal_id = env.enqueue("--hold", "--by", "alice", force=False)
    wait_until(
        lambda: "AWAITING APPROVAL" in env.sftrenew("status", renewal_id).stdout,
        timeout=120,
        what="the renewal awaiting approval",
    )
    hashes = {name: hash_with_the_command(env, password) for name, password in (OPERATOR, VIEWER)}
    url = env.start_web(f"olga operator {hashes['olga']}\nvic viewer {hashes['vic']}")
    gets, posts = routes(renewal_id)
    pages: list[str] = []

    anonymous = WebClient(url)
    for path in [*gets, "/no-such-page"]:
        reply = anonymous.get(path)
        assert refused_anonymously(reply), (path, reply.status)
        pages.append(reply.body)
    for path in posts:
        assert anonymous.post(path, {"csrf_token": "x", "reason": "r"}).status == 401, path
    login = anonymous.get("/login")
    pages.append(login.body)
    cookie = next(c for c in login.set_cookies if c.startswith("sftrenew_session="))
    assert {"httponly", "samesite=strict", "secure"} <= {f.strip().lower() for f in cookie.split(";")}
    # Bound to 127.0.0.1 unless told otherwise: another loopback address of this machine gets no answer.
    with pytest.raises(ConnectionRefusedError):
        anonymous.request("GET", "/login", host="127.0.0.2")

    wrong = WebClient(url)
    assert wrong.sign_in("olga", "not olga's password").status == 401
    assert wrong.sign_in("mallory", OPERATOR[1]).status == 401
    assert refused_anonymously(wrong.get("/"))
    no_token = WebClient(url)
    no_token.get("/login")
    assert no_token.post("/login", {"username": OPERATOR[0], "password": OPERATOR[1]}).status == 403
    assert refused_anonymously(no_token.get("/"))

    olga = WebClient(url)
    assert olga.sign_in(*OPERATOR).status == 303
    page = olga.get(f"/renewals/{renewal_id}")
    assert page.status == 200 and 'id="pause"' in page.body and 'id="approve"' in page.body
    assert "Awaiting approval" in page.body  # the plan, shown while it waits
    before = events(env, renewal_id)
    assert olga.post(f"/renewals/{renewal_id}/pause", {"reason": "no token"}).status == 403
    assert (
        olga.post(f"/renewals/{renewal_id}/pause", {"csrf_token": anonymous.get("/login").csrf}).status == 403
    )
    forged = olga.request(
        "POST", f"/renewals/{renewal_id}/pause", {}, {"X-CSRF-Token": "forged", "Accept": "application/json"}
    )
    assert forged.status == 403
    assert unpaused(env, renewal_id) and events(env, renewal_id) == before

    vic = WebClient(url)
    assert vic.sign_in(*VIEWER).status == 303
    seen = vic.get(f"/renewals/{renewal_id}")
    assert seen.status == 200 and "read-only" in seen.body
    assert "<form" not in seen.body.split("</header>", 1)[1]  # no button at all
    for path in posts[1:]:
        assert vic.post(path, {"csrf_token": seen.csrf, "reason": "viewer"}).status == 403, path
    assert unpaused(env, renewal_id) and events(env, renewal_id) == before

    token = olga.get(f"/renewals/{renewal_id}").csrf
    paused = olga.post(
        f"/renewals/{renewal_id}/pause", {"csrf_token": token, "reason": "look first"}, as_script=True
    )
    assert paused.status == 200 and paused.json()["ok"], paused.body
    assert not unpaused(env, renewal_id)
    resumed = olga.post(f"/renewals/{renewal_id}/resume", {"csrf_token": token}, as_script=True)
    assert resumed.status == 200, resumed.body
    assert events(env, renewal_id)[-2:] == [("pause", "olga"), ("resume", "olga")]
    abandon = olga.post(f"/renewals/{renewal_id}/abandon", {"csrf_token": token}, as_script=True)
    assert abandon.status == 409 and "--reason" in abandon.json()["message"]  # the act's own check

    for client in (olga, vic):
        pages += [client.get(path).body for path in gets]
    assert any(renewal_id in p for p in pages) and any("ftd-002" in p for p in pages)
    assert olga.post("/logout", {"csrf_token": token}).status == 303
    assert refused_anonymously(olga.get("/"))

    text = "\n".join(pages)
    session_key = auth.session_key(Settings.model_validate({"artifact_key": env.artifact_key}))
    secrets = [*env.lab.secrets.values(), env.artifact_key, session_key, OPERATOR[1], VIEWER[1]]
    for secret in [*secrets, *hashes.values()]:
        assert secret not in text
    assert "PRIVATE KEY" not in text


def test_no_users_no_page(make_sqlite_env: MakeEnv, tmp_path: Path) -> None:
    env = make_sqlite_env(LAB)

    def web(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SFTRENEW, "web", "--port=1"],  # never reached: it refuses first
            env={**env.env_for("web"), **extra},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    none = web()
    assert none.returncode == 2, none.stderr
    assert "has no users: set SFTRENEW_WEB_USERS_FILE" in none.stderr and "hash-password" in none.stderr
    users = tmp_path / "users"
    users.write_text(f"olga operator {auth.hash_password(OPERATOR[1], n=2**10)}\n")
    users.chmod(0o644)
    shared = web(SFTRENEW_WEB_USERS_FILE=str(users))
    assert shared.returncode == 2 and "chmod 600" in shared.stderr, shared.stderr
