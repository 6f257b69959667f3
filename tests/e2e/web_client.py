"""A plain HTTP client for `sftrenew web`, as a script or an attacker would use it: no browser, cookies
kept by hand (the session cookie is Secure, which Python's cookie jar sends only over HTTPS), redirects
not followed, so each answer is seen as it is."""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: str
    set_cookies: tuple[str, ...] = ()

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def csrf(self) -> str:
        """The CSRF token a page carries (the body's `data-csrf`)."""
        found = re.search(r'data-csrf="([^"]+)"', self.body)
        assert found, self.body[:500]
        return found.group(1)


@dataclass
class WebClient:
    url: str
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        host: str | None = None,
    ) -> Reply:
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(host or parts.hostname or "", parts.port, timeout=60)
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
            set_cookies = tuple(response.headers.get_all("set-cookie") or ())
            reply = Reply(
                response.status, {k.lower(): v for k, v in response.getheaders()}, text, set_cookies
            )
        finally:
            connection.close()
        for cookie in set_cookies:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if (
                value
                and "max-age=0" not in cookie.lower()
                and "expires=thu, 01 jan 1970" not in cookie.lower()
            ):
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str] | None = None, *, as_script: bool = False) -> Reply:
        return self.request("POST", path, form or {}, {"Accept": "application/json"} if as_script else None)

    def sign_in(self, user: str, password: str) -> Reply:
        token = self.get("/login").csrf
        return self.post("/login", {"username": user, "password": password, "csrf_token": token, "next": "/"})
