"""The lab FMC's REST API: a real FMC's shapes and limits, over HTTPS with the lab's self-signed certificate.

The token, refresh and rate-limit rules are driven with an explicit clock (`FmcRestApi.handle(req, now)`);
the wire (TLS, keep-alive, paging) with a running lab and `http.client`.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from typing import Any

import pytest

from sftlab.fleet.spec import Knobs
from sftlab.rest.api import GLOBAL_DOMAIN, RECORDS_PATH, REFRESH_PATH, TOKEN_PATH, FmcRestApi, Request
from tests.lab.fixtures import MakeLab, RunningLab

pytestmark = pytest.mark.lab

PASSWORD = "Rest-Pw-42"
DEVICES = [
    {"id": f"0000000{i}-0000-1000-8000-000000000000", "name": f"ftd-{i}", "hostName": f"10.0.0.{i}",
     "model": "FTDv", "sw_version": "7.2.5"}
    for i in range(1, 4)
]  # fmt: skip


def _basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _api(knobs: Knobs | None = None, devices: list[dict[str, str]] | None = None) -> FmcRestApi:
    return FmcRestApi(
        host="fmc:443",
        password_of=lambda user: PASSWORD if user == "admin" else None,
        devices=lambda: DEVICES if devices is None else devices,
        knobs=lambda: knobs or Knobs(),
    )


def _call(api: FmcRestApi, method: str, target: str, headers: dict[str, str], now: float) -> Any:
    return api.handle(Request(method, target, headers, "127.0.0.1"), now)


def _token(api: FmcRestApi, now: float = 0.0) -> dict[str, str]:
    answer = _call(api, "POST", TOKEN_PATH, _basic("admin", PASSWORD), now)
    assert answer.status == 204
    return dict(answer.headers)


def test_generatetoken_answers_204_with_the_fmcs_headers() -> None:
    headers = _token(_api())
    assert headers["DOMAIN_UUID"] == headers["global"] == GLOBAL_DOMAIN
    assert json.loads(headers["DOMAINS"]) == [{"name": "Global", "uuid": GLOBAL_DOMAIN}]
    assert headers["X-auth-access-token"] != headers["X-auth-refresh-token"]


def test_a_wrong_password_or_no_auth_answers_401() -> None:
    api = _api()
    assert _call(api, "POST", TOKEN_PATH, _basic("admin", "nope"), 0).status == 401
    assert _call(api, "POST", TOKEN_PATH, {}, 0).status == 401
    assert _call(api, "GET", TOKEN_PATH, _basic("admin", PASSWORD), 0).status == 405
    assert _call(api, "GET", "/api/nothing", {}, 0).status == 404


def test_a_token_expires_is_refreshed_three_times_then_must_be_generated() -> None:
    api = _api(Knobs(rest_token_ttl_s=10))
    headers = _token(api)
    records = f"{RECORDS_PATH}?expanded=true"
    auth = {"x-auth-access-token": headers["X-auth-access-token"]}
    assert _call(api, "GET", records, auth, 9.9).status == 200
    assert _call(api, "GET", records, auth, 10.0).status == 401
    for n in range(3):
        answer = _call(
            api,
            "POST",
            REFRESH_PATH,
            {
                "x-auth-access-token": auth["x-auth-access-token"],
                "x-auth-refresh-token": headers["X-auth-refresh-token"],
            },
            20.0 + n,
        )
        assert answer.status == 204, n
        old, headers = auth, dict(answer.headers)
        auth = {"x-auth-access-token": headers["X-auth-access-token"]}
        assert _call(api, "GET", records, old, 20.0 + n).status == 401  # the old token is gone
        assert _call(api, "GET", records, auth, 20.0 + n).status == 200
    fourth = _call(
        api,
        "POST",
        REFRESH_PATH,
        {
            "x-auth-access-token": auth["x-auth-access-token"],
            "x-auth-refresh-token": headers["X-auth-refresh-token"],
        },
        30.0,
    )
    assert fourth.status == 401
    assert b"refreshed 3 times" in fourth.body


def test_the_rate_limit_answers_429_per_user_and_says_when_if_asked() -> None:
    api = _api(Knobs(rest_rate_limit=3, rest_rate_window_s=60))
    headers = _token(api, 0.0)
    auth = {"x-auth-access-token": headers["X-auth-access-token"]}
    assert [_call(api, "GET", RECORDS_PATH, auth, t).status for t in (1.0, 2.0, 3.0)] == [200, 200, 429]
    limited = _call(api, "GET", RECORDS_PATH, auth, 4.0)
    assert (limited.status, dict(limited.headers).get("Retry-After")) == (429, None)
    assert json.loads(limited.body)["error"]["messages"] == [{"description": "Too Many Requests"}]
    assert _call(api, "GET", RECORDS_PATH, auth, 60.5).status == 200  # the first call left the window
    told = _api(Knobs(rest_rate_limit=1, rest_rate_window_s=60, rest_retry_after=True))
    _token(told, 10.0)
    assert (
        dict(_call(told, "POST", TOKEN_PATH, _basic("admin", PASSWORD), 25.0).headers)["Retry-After"] == "45"
    )
    assert api.statuses[429] == 2


def test_pages_default_to_25_are_capped_at_1000_and_an_empty_fmc_has_no_items() -> None:
    many = [dict(DEVICES[0], id=f"{i:08d}-0000-1000-8000-000000000000", name=f"ftd-{i}") for i in range(1030)]
    api = _api(devices=many)
    auth = {"x-auth-access-token": _token(api)["X-auth-access-token"]}
    default = json.loads(_call(api, "GET", f"{RECORDS_PATH}?expanded=true", auth, 1).body)
    assert (len(default["items"]), default["paging"]["limit"], default["paging"]["pages"]) == (25, 25, 42)
    assert default["paging"]["next"][0].endswith("offset=25&limit=25&expanded=true")
    capped = json.loads(
        _call(api, "GET", f"{RECORDS_PATH}?expanded=true&limit=5000&offset=1000", auth, 2).body
    )
    assert (len(capped["items"]), capped["paging"]["limit"], "next" in capped["paging"]) == (30, 1000, False)
    assert capped["links"]["self"].endswith("offset=1000&limit=1000&expanded=true")
    brief = json.loads(_call(api, "GET", RECORDS_PATH, auth, 3).body)["items"][0]
    assert set(brief) == {"id", "type", "links", "name"}

    empty = _api(devices=[])
    auth = {"x-auth-access-token": _token(empty)["X-auth-access-token"]}
    page = json.loads(_call(empty, "GET", f"{RECORDS_PATH}?expanded=true", auth, 1).body)
    assert "items" not in page
    assert page["paging"] == {"offset": 0, "limit": 0, "count": 0, "pages": 0}


# ------------------------------------------------------------------------------------------ over HTTPS


def _https(lab: RunningLab, name: str, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    entry = lab.device(name)
    return http.client.HTTPSConnection(entry["host"], entry["rest_port"], context=context, timeout=10)


def _request(conn: http.client.HTTPSConnection, method: str, path: str, headers: dict[str, str]) -> Any:
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    return response, response.read()


def test_each_fmc_serves_the_listing_over_verified_https_with_keep_alive(shared_lab: RunningLab) -> None:
    context = ssl.create_default_context(cafile=shared_lab.info["rest_ca_file"])
    ftds = {d["uuid"]: d for d in shared_lab.info["devices"] if d["role"] == "ftd"}
    for fmc in ("fmc-primary", "fmc-secondary"):
        conn = _https(shared_lab, fmc, context)
        auth = {"Authorization": _basic("admin", shared_lab.secrets["fleet-admin"])["authorization"]}
        response, _ = _request(conn, "POST", TOKEN_PATH, auth)
        assert response.status == 204
        token = response.getheader("X-auth-access-token")
        domain = response.getheader("DOMAIN_UUID")
        path = f"/api/fmc_config/v1/domain/{domain}/devices/devicerecords?expanded=true"
        response, body = _request(conn, "GET", path, {"X-auth-access-token": token})  # same connection
        items = json.loads(body)["items"]
        assert {i["id"]: (i["name"], i["hostName"]) for i in items} == {
            uuid: (d["name"], d["host"]) for uuid, d in ftds.items()
        }
        assert {i["type"] for i in items} == {"Device"}
        conn.close()


def test_the_certificate_is_self_signed_so_an_unpinned_client_refuses_it(shared_lab: RunningLab) -> None:
    conn = _https(shared_lab, "fmc-primary", ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError, match=r"self.signed"):
        conn.connect()


def test_knobs_change_the_limits_while_the_lab_runs(make_lab: MakeLab) -> None:
    lab = make_lab(ftds=1, devices={"fmc-primary": {"rest_rate_limit": 1}})
    context = ssl.create_default_context(cafile=lab.info["rest_ca_file"])
    auth = {"Authorization": _basic("admin", lab.secrets["fleet-admin"])["authorization"]}
    conn = _https(lab, "fmc-primary", context)
    assert _request(conn, "POST", TOKEN_PATH, auth)[0].status == 204
    assert _request(conn, "POST", TOKEN_PATH, auth)[0].status == 429
    lab.set_knobs("fmc-primary", rest_rate_limit=120)
    assert _request(conn, "POST", TOKEN_PATH, auth)[0].status == 204
    assert lab.runner.call(_statuses(lab)) == {204: 2, 429: 1}


async def _statuses(lab: RunningLab) -> dict[int, int]:
    return lab.fleet.rest_statuses("fmc-primary")
