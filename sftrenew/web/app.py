"""The renewal page's application: FastAPI on Starlette, Jinja2 templates, a small script of our own.

Every route but the sign-in page and the static files needs a signed-in user (`_guard`, one place, so no
route can forget it): a page without one redirects to the sign-in, an API call or a POST gets 401. Every
POST carries the session's CSRF token (a form field, or the `X-CSRF-Token` header from the script) or is
refused with 403 before it reads anything else; an act needs a user of role operator (403 otherwise). The
session is Starlette's signed cookie (HttpOnly, SameSite=Strict, Secure); it holds the user's name and the
CSRF token, nothing secret. The acts call `sftrenew.actions`, the code behind the command line, with the
signed-in user as who. Pages are read with `sftrenew.reading`, what `sftrenew status` reads.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from pipeline import store
from pipeline.errors import SftrenewError
from pipeline.settings import Settings
from sftrenew import reading, reporting
from sftrenew.actions import Desk
from sftrenew.renewals import flower_url
from sftrenew.web import acts, auth
from sftrenew.web.view import RenewalView, renewal_view

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "sftrenew_session"
#: What a page may load and where it may send: only from itself (the script and styles are package data).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
LIST_LIMIT = 50
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Site:
    """What the routes share, kept in `app.state.site`."""

    users: dict[str, auth.User]
    desk: Desk
    templates: Jinja2Templates
    flower: str


def make_app(settings: Settings, users: dict[str, auth.User], desk: Desk, *, session_key: str) -> FastAPI:
    """The application; `users` from `auth.load_users`, `session_key` from `auth.session_key`."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, title="sftrenew")
    templates = Jinja2Templates(directory=HERE / "templates")
    app.state.site = Site(users, desk, templates, flower_url(settings))
    app.middleware("http")(_guard)
    # Added last, so outermost: the guard reads the session it decodes.
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_key,
        session_cookie=SESSION_COOKIE,
        max_age=int(settings.web.session_hours * 3600),
        same_site="strict",
        https_only=True,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages)
    app.include_router(acts.router, dependencies=[Depends(_check_csrf), Depends(_operator)])
    return app


def _site(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


async def _guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Every route but the sign-in page and the static files needs a signed-in user; security headers."""
    path = request.url.path
    if path != "/login" and not path.startswith("/static/"):
        user = _site(request).users.get(str(request.session.get("user", "")))
        if user is None:
            if path.startswith("/api/") or request.method != "GET":
                return PlainTextResponse("sign in first", status_code=401)
            return RedirectResponse(f"/login?next={quote(path)}", status_code=303)
        request.state.user = user
    response = await call_next(request)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if not path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    context = {"user": getattr(request.state, "user", None), "csrf": _csrf(request), **context}
    context["flash"] = request.session.pop("flash", None)
    return _site(request).templates.TemplateResponse(request, name, context, status_code=status_code)


def _read(request: Request, renewal_id: str) -> RenewalView:
    site = _site(request)
    with store.open_session(site.desk.engine) as db:
        try:
            seen = reading.read_renewal(db, renewal_id, with_plans=True)
        except SftrenewError:
            raise HTTPException(404, f"no renewal {renewal_id}") from None
    return renewal_view(seen, reading.plans_of(seen.renewal.id, seen.plans), site.flower)


def _csrf(request: Request) -> str:
    """The session's CSRF token, made on first use (the sign-in page makes it for an anonymous session)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or not token:
        token = auth.new_csrf_token()
        request.session["csrf"] = token
    return token


async def _check_csrf(request: Request) -> None:
    """403 for a POST whose token (header or form field) is not the session's: nothing else runs."""
    given = request.headers.get("x-csrf-token")
    if given is None:
        field = (await request.form()).get("csrf_token")
        given = field if isinstance(field, str) else None
    if not auth.csrf_ok(request.session.get("csrf"), given):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


def _operator(request: Request) -> auth.User:
    user: auth.User = request.state.user
    if not user.can_act:
        raise HTTPException(403, f"{user.name} is a viewer: the page is read-only for them")
    return user


def _local(target: str) -> str:
    """Where to go after signing in: a path of this site only (never `//host` or a URL)."""
    ok = target.startswith("/") and not target.startswith(("//", "/\\"))
    return target if ok else "/"


pages = APIRouter()


@pages.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return _page(request, "login.html", {"next": _local(next), "error": None})


@pages.post("/login", response_class=HTMLResponse, dependencies=[Depends(_check_csrf)])
def login(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    user = auth.check_sign_in(_site(request).users, username, password)
    if user is None:
        log.warning("sign-in refused for %r", username[:64])
        error = "Wrong user name or password."
        return _page(request, "login.html", {"next": _local(next), "error": error}, status_code=401)
    request.session.clear()
    request.session.update({"user": user.name, "csrf": auth.new_csrf_token()})
    return RedirectResponse(_local(next), status_code=303)


@pages.post("/logout", dependencies=[Depends(_check_csrf)])
def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@pages.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    return _page(request, "index.html", {"renewals": _list(_site(request))})


@pages.get("/api/renewals")
def api_list(request: Request) -> JSONResponse:
    return JSONResponse([acts.summary_json(v) for v in _list(_site(request))])


@pages.get("/renewals/{renewal_id}", response_class=HTMLResponse)
def renewal(request: Request, renewal_id: str, only: str = "") -> HTMLResponse:
    view = _read(request, renewal_id)
    return _page(request, "renewal.html", {"r": view, "only_failed": only == "failed"})


@pages.get("/renewals/{renewal_id}/live", response_class=HTMLResponse)
def renewal_live(request: Request, renewal_id: str) -> HTMLResponse:
    return _page(request, "live.html", {"r": _read(request, renewal_id)})


@pages.get("/api/renewals/{renewal_id}")
def api_renewal(request: Request, renewal_id: str) -> JSONResponse:
    return JSONResponse(acts.view_json(_read(request, renewal_id)))


#: What each evidence pack format is served as.
PACK_TYPES = {
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
}


@pages.get("/renewals/{renewal_id}/evidence")
def evidence(request: Request, renewal_id: str, format: str = "html") -> Response:
    """The evidence pack `sftrenew report` makes, downloaded (the same code, `reporting.make_pack`)."""
    if format not in PACK_TYPES:
        raise HTTPException(400, "format: json, html or md")
    site = _site(request)
    _read(request, renewal_id)  # 404 for an unknown renewal, as every page
    made = reporting.make_pack(site.desk.engine, site.desk.settings, renewal_id, format)
    return Response(
        made.data,
        media_type=PACK_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{made.filename}"'},
    )


def _list(site: Site) -> list[RenewalView]:
    views = []
    with store.open_session(site.desk.engine) as db:
        for row in store.history(session=db, limit=LIST_LIMIT):
            seen = reading.read_renewal(db, row.id, with_plans=True)
            try:
                plans = reading.plans_of(row.id, seen.plans)
            except SftrenewError:
                plans = []
            views.append(renewal_view(seen, plans, site.flower))
    return views
