"""Flower in a real browser: headless Chromium (Debian's package, driven by Playwright) during a renewal.

It logs in with the basic-auth credentials, finds the renewal's tasks by their names (which say step and
device), sees the unreachable device's push as FAILURE, and finds no password or key in any page. The
screenshot of the tasks page goes to the test's folder, or to docs/flower-tasks.png with
SFTRENEW_UPDATE_SCREENSHOT=1 (how the README's picture is made).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page
from playwright.sync_api import Error as PlaywrightError

from tests.e2e.conftest import MakeEnv

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _tasks_page(page: Page, url: str, search: str | None, expect: str) -> str:
    """The tasks page (filtered by `search` if given), once the table shows `expect`."""
    page.goto(url + "/tasks")
    page.wait_for_selector("table#tasks-table")
    page.select_option("div.dataTables_length select", "100")
    if search is not None:
        page.fill("div.dataTables_filter input", search)
    try:
        page.wait_for_function(
            "s => document.querySelector('table#tasks-table').innerText.includes(s)",
            arg=expect,
            timeout=30_000,
        )
    except PlaywrightError:
        raise AssertionError(
            f"{expect!r} not on the tasks page; it shows:\n{page.inner_text('body')}"
        ) from None
    return page.inner_text("body")


def test_flower_shows_the_renewal_and_its_failed_device(
    make_sqlite_env: MakeEnv, browser: Browser, tmp_path: Path
) -> None:
    env = make_sqlite_env({"ftds": 4, "scenarios": "mixed,expired"})
    url, auth = env.start_flower()
    env.start_worker()
    env.wait_flower_sees_workers(url, auth)
    renewal_id = env.enqueue("--accept-stranded", "ftd-004", force=False)
    assert env.wait_finished(renewal_id).state == "partial"

    anonymous = browser.new_page()
    with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
        anonymous.goto(url + "/tasks")  # no way in without the password
    anonymous.close()

    context = browser.new_context(
        http_credentials={"username": auth[0], "password": auth[1]}, viewport={"width": 1600, "height": 900}
    )
    page = context.new_page()
    short = renewal_id[:8]  # every task's name carries the renewal's short id (tasks.flow.shadow)
    everything = _tasks_page(page, url, None, f"sftrenew.regenerate[{short} fmc-primary]")
    # Every step of both FMCs is there by name. (Pushes that were retried are found through the search
    # below: Flower sometimes shows a retried task under the bare task name.)
    for step in ("backup", "validate", "regenerate", "verify"):
        assert (
            f"sftrenew.{step}[{short} fmc-primary]" in everything
            and f"sftrenew.{step}[{short} fmc-secondary]" in everything
        )
    assert f"sftrenew.push[{short} fmc-secondary->ftd-001]" in everything and "FAILURE" in everything
    shot = tmp_path / "flower-tasks.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("SFTRENEW_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, DOCS / "flower-tasks.png")
    failed = _tasks_page(page, url, "ftd-004", f"sftrenew.push[{short} fmc-primary->ftd-004]")
    rows = [line for line in failed.splitlines() if "->ftd-004]" in line]
    assert rows and all("FAILURE" in row for row in rows), rows
    page.goto(url + "/workers")
    pages = everything + failed + page.inner_text("body") + page.content()
    context.close()

    for secret in [*env.lab.secrets.values(), env.artifact_key, env.flower_password]:
        assert secret not in pages
    assert "PRIVATE KEY" not in pages
