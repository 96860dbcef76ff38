"""Named operators over HTTP: a real Camera, journal and aiohttp server (tests/running_gate.py)
with a users file of three people, asked by a real HTTP client.

Who acted is the credential's owner; what the caller typed as ``by`` is only ``claimed_by``.
Every refusal is one log line without the secret, one action refusal where it was an action, and
one count in ``gatekeeper_auth_refusals_total{reason, role}``.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from running_gate import TOKEN, Running
from test_web import browser  # noqa: F401 -- a fixture: Debian's Chromium through its chromedriver
from test_web import wait_for as page_wait

from gatekeeper.users import hash_secret

SECRETS = {"vera": "vera-viewer-secret-1", "otto": "otto-operator-secret-2", "ada": "ada-admin-secret-3", "old": "old-operator-secret-4"}
ROLES = {"vera": "viewer", "otto": "operator", "ada": "admin", "old": "operator"}


@pytest.fixture(scope="module")
def users_text() -> str:
    lines = [f"{name}: {{role: {ROLES[name]}, hash: '{hash_secret(secret)}'}}" for name, secret in SECRETS.items() if name != "old"]
    lines.append(f"old: {{role: operator, hash: '{hash_secret(SECRETS['old'])}', expires: 2020-01-01}}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def running(tmp_path: Path, users_text: str) -> Iterator[Callable[..., Running]]:
    made: list[Running] = []
    path = tmp_path / "users.yaml"
    path.write_text(users_text)

    def start(**kw: Any) -> Running:
        r = Running(tmp_path, users=str(path), **kw)
        made.append(r)
        return r

    yield start
    for r in made:
        r.close()


def basic(name: str, secret: str | None = None) -> dict[str, str]:
    raw = f"{name}:{SECRETS[name] if secret is None else secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def request(r: Running, path: str, headers: dict[str, str], body: dict[str, Any] | None = None, json_body: bool = True) -> tuple[int, Any, Any]:
    data = None if body is None else json.dumps(body).encode()
    hdrs = dict(headers)
    if body is not None and json_body:
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(r.server.url.rstrip("/") + path, data=data, headers=hdrs, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read(2000) if path.endswith(("stream.mjpg", "events")) else resp.read()
            return resp.status, text, resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def metric(r: Running, reason: str, role: str) -> float:
    _, text, _ = request(r, "/metrics", basic("ada"))
    line = f'gatekeeper_auth_refusals_total{{reason="{reason}",role="{role}"}} '
    found = [x for x in text.decode().splitlines() if x.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


def test_a_viewer_sees_the_page_status_metrics_and_streams_but_cannot_act(running: Callable[..., Running], caplog: pytest.LogCaptureFixture) -> None:
    r = running()
    for path in ("/", "/status", "/metrics", "/events"):
        status, _, _ = request(r, path, basic("vera"))
        assert status == 200, path
    caplog.set_level(logging.INFO, logger="gatekeeper")
    status, answer, _ = request(r, "/actions/open", basic("vera"), {"by": "vera"})
    assert (status, json.loads(answer)["refused"]) == (403, "forbidden")
    lines = [rec.getMessage() for rec in caplog.records if rec.name.startswith("gatekeeper")]
    assert len(lines) == 1 and lines[0].startswith("action refused (http, forbidden): 'open' from 127.0.0.1: vera (viewer) may not"), lines
    assert r.controls.stats.snapshot()["refused"] == {"http/forbidden": 1}
    assert metric(r, "forbidden", "viewer") == 1
    time.sleep(0.1)
    assert r.journaled() == []


@pytest.mark.parametrize("how", ["basic", "bearer"])
def test_an_operators_action_is_journaled_as_theirs_and_a_typed_name_only_as_a_note(running: Callable[..., Running], how: str) -> None:
    r = running()
    headers = basic("otto") if how == "basic" else {"Authorization": f"Bearer otto:{SECRETS['otto']}"}
    status, answer, _ = request(r, "/actions/open", headers, {"by": "the front desk", "reason": "pram"})
    assert status == 200, answer
    (event,) = json.loads(answer)["events"]
    assert (event["by"], event["claimed_by"], event["note"], event["via"]) == ("otto", "the front desk", "pram", "http")
    (journaled,) = r.journaled()
    assert (journaled["by"], journaled["claimed_by"]) == ("otto", "the front desk")


def test_an_operator_need_not_type_a_name_and_an_admin_acts_too(running: Callable[..., Running]) -> None:
    r = running(score=None)
    status, answer, _ = request(r, "/actions/out_of_service", basic("otto"), {"reason": "cleaning"})
    assert status == 200, answer
    status, answer, _ = request(r, "/actions/in_service", basic("ada"), {"by": "ada"})
    assert status == 200, answer
    assert [(e["event"], e["by"], e["claimed_by"]) for e in r.journaled()] == [("OUT_OF_SERVICE", "otto", None), ("IN_SERVICE", "ada", None)]


def test_the_shared_token_stays_an_admin_credential_that_names_nobody(running: Callable[..., Running]) -> None:
    r = running()
    assert request(r, "/status", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    status, answer, _ = request(r, "/actions/open", {"Authorization": f"Bearer {TOKEN}"}, {"by": "maria"})
    assert status == 200, answer
    (event,) = json.loads(answer)["events"]
    assert (event["by"], event["claimed_by"]) == ("maria", None)


BAD = [
    # (what, headers, status, code, role counted)
    ("no credentials", {}, 401, "no_token", "none"),
    ("wrong secret", basic("otto", "not-the-secret-at-all"), 401, "bad_password", "operator"),
    ("unknown user", basic("mallory", "whatever-secret-1"), 401, "unknown_user", "none"),
    ("expired", basic("old"), 401, "expired", "operator"),
    ("not base64", {"Authorization": "Basic %%%"}, 401, "malformed_credentials", "none"),
    ("no colon", {"Authorization": "Basic " + base64.b64encode(b"otto").decode()}, 401, "malformed_credentials", "none"),
    ("wrong bearer", {"Authorization": "Bearer operator-token-9876543210"}, 401, "bad_token", "none"),
]


@pytest.mark.parametrize(("what", "headers", "status", "code", "role"), BAD, ids=[b[0] for b in BAD])
def test_bad_credentials_are_one_line_one_count_and_no_secret(
    running: Callable[..., Running], caplog: pytest.LogCaptureFixture, what: str, headers: dict[str, str], status: int, code: str, role: str
) -> None:
    r = running()
    caplog.set_level(logging.INFO, logger="gatekeeper")
    got, _, resp_headers = request(r, "/status", headers)
    assert got == status
    assert 'Basic realm="gatekeeper", charset="UTF-8"' in resp_headers.get_all("WWW-Authenticate")  # a browser asks for a name and secret
    got, answer, _ = request(r, "/actions/open", headers, {"by": "x"})
    assert (got, json.loads(answer)["refused"]) == (status, code)
    lines = [rec.getMessage() for rec in caplog.records if rec.name.startswith("gatekeeper")]
    assert len(lines) == 2, lines  # one for the GET, one for the action
    assert lines[0].startswith(f"access refused ({code}, role {role}): GET /status from 127.0.0.1") and lines[1].startswith(f"action refused (http, {code}): ")
    for secret in [*SECRETS.values(), "not-the-secret-at-all", "whatever-secret-1", "operator-token-9876543210"]:
        assert not any(secret in line for line in lines)
    assert r.controls.stats.snapshot()["refused"] == {f"http/{code}": 1}
    assert metric(r, code, role) == 2
    assert r.journaled() == []


def test_basic_credentials_act_only_on_a_json_request(running: Callable[..., Running]) -> None:
    """A browser sends Basic credentials by itself, also with a form another site posts; a form cannot say JSON."""
    r = running()
    status, answer, _ = request(r, "/actions/open", {**basic("otto"), "Content-Type": "text/plain"}, {"by": "x"}, json_body=False)
    assert (status, json.loads(answer)["refused"]) == (415, "not_json")
    assert r.journaled() == []


def test_an_unauthenticated_caller_learns_nothing_of_which_cameras_exist(running: Callable[..., Running]) -> None:
    """Issue 32: the credential is checked before the camera, so 401 alike; 404 only once authenticated."""
    r = running()
    here = request(r, "/cameras/gate/actions/open", {}, {"by": "x"})
    absent = request(r, "/cameras/lane9/actions/open", {}, {"by": "x"})
    assert (here[0], json.loads(here[1])) == (absent[0], json.loads(absent[1])) == (401, json.loads(here[1]))
    status, answer, _ = request(r, "/cameras/lane9/actions/open", basic("otto"), {"by": "x"})
    assert (status, json.loads(answer)["refused"]) == (404, "no_camera")
    viewer = request(r, "/cameras/lane9/actions/open", basic("vera"), {"by": "x"})
    assert (viewer[0], json.loads(viewer[1])["refused"]) == (403, "forbidden")  # the role before the camera, too
    assert r.journaled() == []


def test_with_the_token_alone_everything_answers_as_before(tmp_path: Path) -> None:
    """No users file: no Basic challenge, Basic credentials are no credential, ``by`` is the body's."""
    r = Running(tmp_path)
    try:
        status, text, headers = request(r, "/status", {})
        assert (status, text.decode(), headers.get_all("WWW-Authenticate")) == (401, "a token is required: Authorization: Bearer TOKEN or ?token=TOKEN\n", ["Bearer"])
        assert request(r, f"/status?token={TOKEN}", {})[0] == 200
        status, answer, _ = request(r, "/actions/open", {"Authorization": "Basic " + base64.b64encode(b"otto:x").decode()}, {"by": "maria"})
        assert (status, json.loads(answer)) == (401, {"refused": "no_token", "detail": "a token is required: Authorization: Bearer TOKEN"})
        status, answer, _ = request(r, "/actions/open", {"Authorization": f"Bearer {TOKEN}"}, {"by": "maria"})
        assert status == 200 and [(e["by"], e["claimed_by"]) for e in json.loads(answer)["events"]] == [("maria", None)]
        status, answer, _ = request(r, "/actions/open", {"Authorization": f"Bearer {TOKEN}"}, {})
        assert (status, json.loads(answer)["refused"]) == (400, "malformed")  # a name is required, as before
    finally:
        r.close()



@pytest.mark.slow
def test_a_person_signed_in_on_the_page_acts_as_themselves(running: Callable[..., Running], browser: Any) -> None:  # noqa: F811
    """Headless Chromium signs in by HTTP Basic; the page's state stream and its Open button then
    carry that credential by themselves, and the journal names the person, not a typed name."""
    from selenium.webdriver.common.by import By

    r = running(token=None)  # the users file alone
    # Signing in through the URL stands in for the browser's prompt; the page is then opened at its
    # own address (a page whose URL holds credentials cannot fetch relative URLs), and the browser
    # sends the cached credential with every request to it.
    browser.get(r.server.url.replace("http://", f"http://otto:{SECRETS['otto']}@") + "status")
    browser.get(r.server.url)
    page_wait("the controls (shown from the state the page reads over SSE)", lambda: browser.find_element(By.ID, "controls").is_displayed())
    browser.find_element(By.ID, "operator").send_keys("front desk")
    browser.find_element(By.ID, "open").click()
    opened = page_wait("the OPEN in the journal", lambda: [e for e in r.journaled() if e["event"] == "OPEN" and e["via"] == "page"])
    assert (opened[0]["by"], opened[0]["claimed_by"]) == ("otto", "front desk")
