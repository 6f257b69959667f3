"""The renewal page in a real browser: headless Chromium (Debian's package, driven by Playwright, as the
Flower test) during a lab renewal with a real worker, Redis and SQLite.

The operator signs in (the Secure session cookie is kept on http://127.0.0.1: Chromium takes loopback for a
secure context), opens the renewal as it starts and watches the grid fill in without the page reloading
(a marker set in the page survives, there is one navigation, and the script replaced the live part); sees
the unreachable FTD failed, in words as well as colour, with its attempts linked to Flower; filters the
grid to the failed devices; makes the FTD reachable in the lab, clicks its retry (confirming the dialog)
and sees it turn verified. The click is recorded as a `retry` under the signed-in user. The screenshot goes
to the test's folder, or to docs/renewal-page.png with SFTRENEW_UPDATE_SCREENSHOT=1.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page

from pipeline import store
from sftrenew.web import auth
from tests.e2e.conftest import MakeEnv
from tests.e2e.services import wait_until
from tests.e2e.test_flower_browser import DOCS

pytestmark = pytest.mark.e2e

USER, PASSWORD = "tess", "tess's long password"
FLOWER = "http://127.0.0.1:5555"
CELLS = "Array.from(document.querySelectorAll('#live li.cell'))"


def cells(page: Page) -> list[tuple[str, str, str]]:
    """(FMC section, device, state word) of every cell in the grid now."""
    found: list[list[str]] = page.evaluate(
        f"{CELLS}.map(c => [c.closest('section').id, c.dataset.device, c.dataset.state])"
    )
    return [(fmc.removeprefix("fmc-"), device, state) for fmc, device, state in found]


def wait_for(page: Page, script: str, what: str, timeout: float = 180) -> None:
    """Poll `script` in the page until true. Not `page.wait_for_function`: its predicate is compiled in the
    page, which the page's Content-Security-Policy forbids (no eval); `page.evaluate` runs outside it."""
    try:
        wait_until(lambda: bool(page.evaluate(script)), timeout=timeout, what=what, every=0.5)
    except TimeoutError:
        raise AssertionError(f"{what}; the page shows:\n{page.inner_text('body')}") from None


def test_the_page_follows_a_renewal_and_retries_one_device(
    make_sqlite_env: MakeEnv, browser: Browser, tmp_path: Path
) -> None:
    env = make_sqlite_env({"ftds": 4, "scenarios": "mixed,expired"})
    env.start_worker()
    hashed = auth.hash_password(PASSWORD, n=2**12)
    url = env.start_web(f"{USER} operator {hashed}", SFTRENEW_FLOWER_URL=FLOWER)

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url + "/")
    assert page.url.startswith(url + "/login")  # no way in without signing in
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("text=signed in as")  # the Secure cookie was kept on http://127.0.0.1
    cookie = next(c for c in context.cookies() if c["name"] == "sftrenew_session")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    renewal_id = env.enqueue("--accept-stranded", "ftd-004", force=False)
    page.goto(f"{url}/renewals/{renewal_id}")
    page.evaluate("window.stillTheSamePage = 'yes'")
    first = cells(page)
    assert not any(state == "verified" for _, _, state in first), first

    wait_for(page, "document.getElementById('renewal-state').innerText === 'partial'", "the renewal ending")
    assert page.evaluate("window.stillTheSamePage") == "yes"  # filled in without a reload
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert page.evaluate("window.sftrenewUpdates") >= 2
    grid = cells(page)
    assert ("fmc-primary", "ftd-002", "verified") in grid and ("fmc-secondary", "ftd-003", "verified") in grid
    assert {(f, s) for f, d, s in grid if d == "ftd-004"} == {
        ("fmc-primary", "failed"),
        ("fmc-secondary", "failed"),
    }
    failed = page.locator("#fmc-fmc-primary li.cell[data-device=ftd-004]")
    assert "✖ failed" in failed.inner_text() and "DeviceUnreachableError" in failed.inner_text()
    # Each attempt links to its task in Flower (Celery's retries of a push keep the task's id).
    attempts = sorted(
        (
            x
            for x in env.steps(renewal_id)
            if x.step == "push" and x.fmc == "fmc-primary" and x.device == "ftd-004"
        ),
        key=lambda x: x.attempt,
    )
    links = failed.locator("a").evaluate_all("links => links.map(a => a.href)")
    assert links == [f"{FLOWER}/task/{x.task_id}" for x in attempts] and len(links) >= 2, links

    page.check("#only-failed")
    shown = page.evaluate(f"{CELLS}.filter(c => c.offsetParent !== null).map(c => c.dataset.device)")
    assert shown == ["ftd-004", "ftd-004"]
    page.uncheck("#only-failed")
    shot = tmp_path / "renewal-page.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("SFTRENEW_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, DOCS / "renewal-page.png")

    env.lab.set_knobs("ftd-004", direct="open")  # the operator fixed the route
    asked: list[str] = []

    def confirm(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    page.click("#fmc-fmc-primary li.cell[data-device=ftd-004] button.retry-one")
    wait_for(page, "document.getElementById('flash').innerText.includes('pushing again')", "the retry taken")
    assert asked == ["Push again to ftd-004, then verify?"]
    wait_for(page, "document.getElementById('renewal-state').innerText === 'succeeded'", "ftd-004 verified")
    assert {(f, s) for f, d, s in cells(page) if d == "ftd-004"} == {
        ("fmc-primary", "verified"),
        ("fmc-secondary", "verified"),
    }
    assert page.evaluate("window.stillTheSamePage") == "yes"

    # The evidence pack downloads from the page, is intact, and holds the click under the test user.
    download = page.request.get(f"{url}/renewals/{renewal_id}/evidence?format=json")
    assert download.ok and "attachment" in download.headers["content-disposition"]
    pack_file = tmp_path / "pack.json"
    pack_file.write_bytes(download.body())
    checked = env.sftrenew("report", "--check", str(pack_file))
    assert checked.returncode == 0, checked.stderr
    pack = json.loads(download.body())
    clicks = [e for e in pack["content"]["events"] if e["action"] == "retry"]
    assert clicks and {e["who"] for e in clicks} == {USER}, clicks
    printed = env.sftrenew("report", renewal_id, "--format", "json")  # the command line's pack says the same
    assert printed.returncode == 0, printed.stderr
    assert [e for e in json.loads(printed.stdout)["content"]["events"] if e["action"] == "retry"] == clicks
    html = page.request.get(f"{url}/renewals/{renewal_id}/evidence?format=html")
    assert html.ok and "ftd-004" in html.text() and html.headers["content-type"].startswith("text/html")
    context.close()

    with store.open_session(env.engine) as db:
        retries = store.events_of(session=db, renewal_id=renewal_id, action="retry")
    assert {(e.action, e.who, e.fmc) for e in retries} == {
        ("retry", USER, "fmc-primary"),
        ("retry", USER, "fmc-secondary"),
    }
    assert all(e.detail and "ftd-004" in e.detail for e in retries)
