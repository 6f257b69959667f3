"""The page's buttons: each a POST that runs the command line's own act (`sftrenew.actions`) with the
signed-in user as who, and the JSON the page's API answers with.

The routes' guards (the CSRF token, then the operator role) are added where the router is included
(`sftrenew.web.app`). A POST from the page's script (header `Accept: application/json`) gets `{"ok",
"message"}` with a status (200 done, 409 refused or not possible now, 503 a service does not answer); a
plain form POST gets the message in the session's flash and a redirect back to the renewal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from pipeline.errors import SftrenewError
from pipeline.store.checks import ServiceUnreachableError
from sftrenew import actions
from sftrenew.actions import ActionRefusedError, Desk
from sftrenew.web.auth import User
from sftrenew.web.view import Cell, RenewalView

log = logging.getLogger(__name__)


router = APIRouter()


def _desk(request: Request) -> Desk:
    desk: Desk = request.app.state.site.desk
    return desk


@router.post("/renewals/{renewal_id}/retry")
def retry(request: Request, renewal_id: str, device: Annotated[str, Form()] = "") -> Response:
    def act(who: str) -> str:
        done = actions.retry(_desk(request), renewal_id, devices=[device] if device else [], by=who)
        if not done.rounds:
            return "nothing to retry: no failed push" + (f" for {device}" if device else "")
        return "; ".join(
            f"{p.fmc}: pushing again to {', '.join(p.devices)} (round {p.round}, asked by {who})"
            for p in done.rounds
        )

    return _run(request, renewal_id, act)


@router.post("/renewals/{renewal_id}/approve")
def approve(request: Request, renewal_id: str) -> Response:
    def act(who: str) -> str:
        done = actions.approve(_desk(request), renewal_id, by=who)
        return f"approved by {done.who}: {done.summary}; sent {done.sent}"

    return _run(request, renewal_id, act)


@router.post("/renewals/{renewal_id}/pause")
def pause(request: Request, renewal_id: str, reason: Annotated[str, Form()] = "") -> Response:
    def act(who: str) -> str:
        done = actions.pause(_desk(request), renewal_id, reason=reason.strip() or None, by=who)
        return "paused: no new push starts, verify waits" if done.paused else "paused already"

    return _run(request, renewal_id, act)


@router.post("/renewals/{renewal_id}/resume")
def resume(request: Request, renewal_id: str) -> Response:
    def act(who: str) -> str:
        return f"resumed: sent {actions.resume(_desk(request), renewal_id, by=who).sent}"

    return _run(request, renewal_id, act)


@router.post("/renewals/{renewal_id}/abandon")
def abandon(
    request: Request,
    renewal_id: str,
    reason: Annotated[str, Form()] = "",
    force: Annotated[str, Form()] = "",
) -> Response:
    def act(who: str) -> str:
        done = actions.abandon(_desk(request), renewal_id, reason=reason, force=force == "yes", by=who)
        behind = "".join(f"; not on the new CA: {line}" for line in done.not_on_new_ca)
        return f"abandoned; pair {done.pair} is free{behind}"

    return _run(request, renewal_id, act)


def _run(request: Request, renewal_id: str, act: Callable[[str], str]) -> Response:
    user: User = request.state.user
    try:
        message, status = act(user.name), 200
    except ActionRefusedError as exc:
        message, status = f"refused: {exc}", 409
    except ServiceUnreachableError as exc:
        message, status = str(exc), 503
    except SftrenewError as exc:
        message, status = str(exc), 409
    except Exception:
        log.exception("an act on renewal %s failed", renewal_id)
        message, status = "unexpected error (a bug): the server's log has the traceback", 500
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"ok": status == 200, "message": message}, status_code=status)
    request.session["flash"] = message
    return RedirectResponse(f"/renewals/{renewal_id}", status_code=303)


def summary_json(view: RenewalView) -> dict[str, Any]:
    return {
        "id": view.id,
        "pair": view.pair,
        "state": view.state,
        "label": view.label,
        "requested_by": view.requested_by,
        "requested_utc": view.requested_utc.isoformat(),
        "finished_utc": view.finished_utc.isoformat() if view.finished_utc else None,
        "verified": view.verified,
        "devices": view.devices,
    }


def view_json(view: RenewalView) -> dict[str, Any]:
    return {
        **summary_json(view),
        "held": view.held,
        "paused": view.paused,
        "fmcs": [
            {
                "fmc": f.fmc,
                "role": f.role,
                "state": f.state,
                "ca_before_sha256": f.ca_before,
                "ca_after_sha256": f.ca_after,
                "steps": dict(f.steps),
                "devices": [_cell_json(c) for c in f.cells],
            }
            for f in view.fmcs
        ],
        "events": [
            {
                "at_utc": e.at_utc.isoformat(),
                "action": e.action,
                "who": e.who,
                "fmc": e.fmc,
                "device": e.device,
            }
            for e in view.events
        ],
    }


def _cell_json(cell: Cell) -> dict[str, Any]:
    return {
        "device": cell.device,
        "state": cell.state.value,
        "push": cell.push,
        "route": cell.route,
        "attempts": cell.attempts,
        "verdict": cell.verdict,
        "error": cell.error,
        "tries": [
            {"attempt": t.number, "state": t.state, "route": t.route, "flower": t.flower} for t in cell.tries
        ],
    }
