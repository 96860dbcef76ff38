"""Failed credentials throttled (gatekeeper/throttle.py, gatekeeper/web/access.py): the limiter's
table with the time passed in, and a real gate's HTTP server refusing a flood of wrong secrets
with 429 and Retry-After without checking them, while a right credential from another address
still gets in.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Callable

import pytest
from running_gate import Running
from test_roles import basic, request, running, users_text  # noqa: F401 -- running, users_text: fixtures

from gatekeeper.throttle import FailureLimit

A, B = ("address", "10.0.0.1"), ("address", "10.0.0.2")
MARIA = ("user", "maria")

# (failures at these times for these keys, then asked at time t: keys -> retry_after)
TABLE = [
    ("below the limit: nothing refused", [(0, [A]), (1, [A])], 2, [A], None),
    ("the third within the window: refused for the window", [(0, [A]), (1, [A]), (2, [A])], 2, [A], 10.0),
    ("the window slides: old failures do not count", [(0, [A]), (1, [A]), (11, [A])], 11, [A], None),
    ("refused until the window has passed since the third", [(0, [A]), (1, [A]), (2, [A])], 11.5, [A], 0.5),
    ("over: taken again", [(0, [A]), (1, [A]), (2, [A])], 12, [A], None),
    ("another address is not refused", [(0, [A]), (1, [A]), (2, [A])], 3, [B], None),
    ("a user named from many addresses", [(0, [A, MARIA]), (1, [B, MARIA]), (2, [("address", "10.0.0.3"), MARIA])], 3, [MARIA], 9.0),
    ("... refuses that name, not the addresses", [(0, [A, MARIA]), (1, [B, MARIA]), (2, [("address", "10.0.0.3"), MARIA])], 3, [A], None),
    ("of several keys, the longest wait", [(0, [A]), (1, [A]), (2, [A]), (5, [MARIA]), (6, [MARIA]), (7, [MARIA])], 8, [A, MARIA], 9.0),
]


@pytest.mark.parametrize(("what", "failures", "t", "keys", "wait"), TABLE, ids=[row[0] for row in TABLE])
def test_the_limit_table(what: str, failures: list[tuple[float, list[tuple[str, str]]]], t: float, keys: list[tuple[str, str]], wait: float | None) -> None:
    limit = FailureLimit(failures=3, window_s=10)
    for at, ks in failures:
        limit.failed(ks, at)
    assert limit.retry_after(keys, t) == wait


def test_an_episode_starts_once() -> None:
    limit = FailureLimit(failures=2, window_s=10)
    assert [limit.failed([A], t) for t in (0, 1, 2, 3, 10.5, 11, 12)] == [[], [A], [], [], [], [], [A]]
    # failures while refused are part of the episode; after it, counting starts over (11, 12: a new one)


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="expected failures >= 1 and window_s > 0, got 0 and 10"):
        FailureLimit(failures=0, window_s=10)


def get_from(r: Running, source: str, path: str, headers: dict[str, str], body: list[str] | None = None) -> tuple[int, str | None]:
    """GET ``path`` with a connection from ``source`` (another loopback address than 127.0.0.1);
    the text of the answer appended to ``body`` if given."""
    host, port = r.server.url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode()
        if body is not None:
            body.append(text)
        return resp.status, resp.getheader("Retry-After")
    finally:
        conn.close()


@pytest.mark.slow
def test_a_flood_of_wrong_secrets_is_refused_at_once_and_others_still_get_in(running: Callable[..., Running], caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    r = running()
    users = r.server.auth.users
    assert users is not None
    checked: list[str] = []
    verify = users.verify
    users.verify = lambda name, secret, now=None: (checked.append(name), verify(name, secret, now))[1]  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="gatekeeper")
    limit = r.server.auth.limit.failures
    for _ in range(limit):
        assert request(r, "/status", basic("otto", "a-wrong-secret-0000"))[0] == 401
    assert len(checked) == limit
    # From now on 127.0.0.1, and the name otto, are refused before any secret is checked.
    for headers in (basic("otto", "a-wrong-secret-0000"), basic("otto"), basic("vera")):
        status, _, reply = request(r, "/status", headers)
        assert status == 429 and 1 <= int(reply["Retry-After"]) <= 60, (status, dict(reply))
    status, _, reply = request(r, "/actions/open", basic("vera"), {"by": "vera"})
    assert status == 429 and reply["Retry-After"], status
    assert len(checked) == limit, checked
    # Another address with another person's right credential gets in; otto's name stays refused.
    assert get_from(r, "127.0.0.2", "/status", basic("vera")) == (200, None)
    assert get_from(r, "127.0.0.2", "/status", basic("otto"))[0] == 429
    assert checked[limit:] == ["vera"]
    lines = [rec.getMessage() for rec in caplog.records if "throttled" in rec.getMessage() and rec.levelno >= logging.WARNING]
    assert sorted(lines) == sorted([
        f"access throttled: {limit} failed credentials within 60 s from address '127.0.0.1'; refused for 60 s without checking (counted as reason throttled)",
        f"access throttled: {limit} failed credentials within 60 s naming user 'otto'; refused for 60 s without checking (counted as reason throttled)",
    ]), lines
    text: list[str] = []
    assert get_from(r, "127.0.0.3", "/metrics", basic("ada"), text)[0] == 200
    assert 'gatekeeper_auth_refusals_total{reason="throttled",role="none"} 4.0' in text[0]  # from 127.0.0.1: three /status, one action
    assert 'gatekeeper_auth_refusals_total{reason="throttled",role="operator"} 1.0' in text[0]  # naming otto, from 127.0.0.2
