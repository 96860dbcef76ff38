"""Operator actions (gatekeeper/actions.py, Gate.act): the gate's rules, the journal, the HTTP route.

The gate rules are table-driven on a real Gate with synthetic face scores. The HTTP tests run a
real aiohttp server (WebServer) and a real aiohttp client against a Camera whose frame loop runs in
a thread; its frames are synthetic (a stand-in for detect -> classify that gives one face a fixed
score: the models are not what these tests are about), everything after them is the real thing:
Gate, Controls, Dispatcher, an SQLite Journal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from polling import wait_for
from running_gate import FACE, GATE, TOKEN, Running

from gatekeeper.actions import Action, ActionError, ActionsConfig, Controls
from gatekeeper.events import Event, EventType
from gatekeeper.gate import Gate, GateState
from gatekeeper.journal import Journal
from gatekeeper.pipeline import TrackedGate
from gatekeeper.web import WebServer


def act(gate: Gate, kind: str, t: float, by: str = "maria", via: str = "http", reason: str | None = None) -> list[Event]:
    return gate.act(Action(kind, by, via, reason), frame=int(t * 30), t=t)


# -- the gate's rules ---------------------------------------------------------------------------


def test_a_manual_open_is_an_open_event_with_who_and_how() -> None:
    gate = Gate(GATE)
    (e,) = act(gate, "open", 1.0, by="maria", via="page", reason="wheelchair user")
    assert (e.event, e.reason, e.by, e.via, e.override, e.note, e.track) == (EventType.OPEN, "manual", "maria", "page", False, "wheelchair user", None)
    d = e.to_dict()
    assert {"by", "via", "override", "note"} <= set(d) and d["reason"] == "manual"


def test_smile_events_carry_the_new_keys_as_null() -> None:
    tracked = TrackedGate(Gate(GATE))
    events = [e for i in range(4) for e in tracked.step(i, i / 30, [FACE])]
    (opened,) = events
    assert {k: opened.to_dict()[k] for k in ("by", "via", "override", "note")} == {"by": None, "via": None, "override": None, "note": None}


def test_out_of_service_holds_the_gate_shut_until_in_service() -> None:
    gate = Gate(GATE)
    (out,) = act(gate, "out_of_service", 0.0, reason="cleaning")
    assert (out.event, out.by, out.via, out.reason, out.note) == (EventType.OUT_OF_SERVICE, "maria", "http", "cleaning", "cleaning")
    assert gate.state is GateState.OUT_OF_SERVICE and not gate.in_service
    # A held smile opens nothing, and no DENY either, however long.
    tracked = TrackedGate(gate)
    assert [e for i in range(1, 40) for e in tracked.step(i, i / 30, [FACE]) if e.event is not EventType.FACE_LOST] == []
    # Staff may still let someone through: it says it overrode the service state.
    (manual,) = act(gate, "open", 2.0)
    assert manual.override is True
    (back,) = act(gate, "in_service", 3.0, by="ali", via="mqtt")
    assert (back.event, back.by, back.via) == (EventType.IN_SERVICE, "ali", "mqtt")
    assert gate.in_service


def test_a_manual_open_during_a_fault_says_it_overrode() -> None:
    gate = Gate(GATE)
    gate.fault(0, 0.0, "camera lost")
    (e,) = act(gate, "open", 1.0)
    assert e.override is True


def test_the_person_let_through_by_hand_does_not_open_again_by_smiling() -> None:
    tracked = TrackedGate(Gate(GATE))
    tracked.step(0, 0.0, [FACE])
    assert [e.reason for e in act(tracked.gate, "open", 0.05)] == ["manual"]
    assert [e for i in range(1, 10) for e in tracked.step(i, 0.05 + i / 30, [FACE])] == []


@pytest.mark.parametrize(
    ("first", "second", "dt", "code"),
    [
        ("open", "open", 0.1, "rate_limited"),  # a stuck button, a script
        ("open", "open", 0.99, "rate_limited"),
        ("out_of_service", "out_of_service", 5.0, "no_change"),
        (None, "in_service", 5.0, "no_change"),
    ],
)
def test_refused_actions_make_no_event_and_say_why(first: str | None, second: str, dt: float, code: str) -> None:
    gate = Gate(GATE)
    if first is not None:
        assert act(gate, first, 10.0)
    assert act(gate, second, 10.0 + dt) == []
    assert gate.refusal is not None and gate.refusal[0] == code


def test_manual_opens_are_allowed_again_after_the_interval() -> None:
    gate = Gate(GATE)
    assert act(gate, "open", 10.0) and not act(gate, "open", 10.6) and act(gate, "open", 11.0)


def test_the_service_state_is_restored_from_an_earlier_runs_event() -> None:
    gate = Gate(GATE)
    (out,) = act(gate, "out_of_service", 0.0)
    fresh = Gate(GATE)
    fresh.restore_service(out)
    assert fresh.state is GateState.OUT_OF_SERVICE and fresh.out_of_service is out
    fresh.restore_service(act(gate, "in_service", 1.0)[0])
    assert fresh.in_service


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "close"}, "action 'close' is unknown; expected one of open, out_of_service, in_service"),
        ({"by": ""}, "by: expected a non-empty string, got '' (str)"),
        ({"by": None}, "by: expected a non-empty string, got None (NoneType)"),
        ({"by": "x" * 65}, "by: expected at most 64 characters, got 65"),
        ({"by": "ma\nria"}, "by: expected printable characters, got a control character at position 2"),
        ({"reason": 5}, "reason: expected a string, got 5 (int)"),
        ({"reason": "x" * 201}, "reason: expected at most 200 characters, got 201"),
        ({"via": "telnet"}, "via: expected one of http, mqtt, button, page, got 'telnet'"),
    ],
)
def test_malformed_actions_are_refused_with_one_clear_line(kwargs: dict[str, Any], message: str) -> None:
    args = {"kind": "open", "by": "maria", "via": "http", **kwargs}
    with pytest.raises(ActionError) as info:
        Action(**args)
    assert str(info.value) == message


def test_a_full_queue_refuses_at_once(caplog: pytest.LogCaptureFixture) -> None:
    controls = Controls(ActionsConfig(queue_size=2))
    tickets = [controls.submit(Action("open", "maria", "http")) for _ in range(3)]
    assert [t.done for t in tickets] == [False, False, True]
    assert tickets[2].refused is not None and tickets[2].refused[0] == "queue_full"
    assert dict(controls.stats.refused) == {("http", "queue_full"): 1}
    assert len([r for r in caplog.records if "action refused" in r.getMessage()]) == 1


# -- the journal ---------------------------------------------------------------------------------


def test_the_journal_keeps_who_and_how_and_the_last_service_event(tmp_path: Path) -> None:
    gate = Gate(GATE)
    with Journal(tmp_path / "j.sqlite3") as journal:
        events = act(gate, "out_of_service", 0.0, reason="cleaning") + act(gate, "open", 1.0, via="button") + act(gate, "in_service", 2.0) + act(gate, "out_of_service", 3.0, by="ali")
        for e in events:
            journal.append(e, [])
        assert [en.event for en in journal.entries()] == events  # every key read back as written
        assert journal.last_service_event() == events[-1]


def test_pruning_old_events_keeps_the_service_state(tmp_path: Path) -> None:
    now = [1000.0]
    gate = Gate(GATE)
    with Journal(tmp_path / "j.sqlite3", clock=lambda: now[0]) as journal:
        (out,) = act(gate, "out_of_service", 0.0)
        journal.append(out, [])
        now[0] += 100
        opened = act(gate, "open", 1.0)[0]
        journal.append(opened, [])
        assert journal.prune(older_than=now[0] + 1) == 1  # the OPEN goes, the OUT_OF_SERVICE stays
        assert journal.last_service_event() == out


# -- a running gate: a Camera + real aiohttp server and client -----------------------------------------


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    made: list[Running] = []

    def start(**kw: Any) -> Running:
        r = Running(tmp_path, **kw)
        made.append(r)
        return r

    yield start
    for r in made:
        r.close()


def post(server: WebServer, path: str, body: bytes | str | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async def go() -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            data = body.encode() if isinstance(body, str) else body
            async with session.post(server.url.rstrip("/") + path, data=data, headers=headers or {}) as r:
                return r.status, await r.json(content_type=None)

    return asyncio.run(go())


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def test_http_open_reaches_the_journal_and_the_answer_names_the_event(running: Callable[..., Running]) -> None:
    r = running()
    status, answer = post(r.server, "/actions/open", json.dumps({"by": "maria", "reason": "pram"}), bearer())
    assert status == 200, answer
    (event,) = answer["events"]
    assert (event["event"], event["reason"], event["by"], event["via"], event["override"], event["note"]) == ("OPEN", "manual", "maria", "http", False, "pram")
    assert [e["id"] for e in r.journaled()] == [event["id"]]  # journaled before the answer went out


def test_http_out_of_service_shows_in_status_metrics_and_holds_the_gate_shut(running: Callable[..., Running]) -> None:
    r = running(score=None)  # nobody in front of the camera yet
    status, answer = post(r.server, "/actions/out_of_service", json.dumps({"by": "ali", "reason": "cleaning"}), bearer())
    assert status == 200 and answer["events"][0]["event"] == "OUT_OF_SERVICE"
    st = wait_for(lambda: (s := get_json(r.server, "/status"))["state"] == "out_of_service" and s, 5, "/status to say out of service")
    assert st["in_service"] is False and st["service"] == {"in_service": False, "by": "ali", "via": "http", "reason": "cleaning", "event": answer["events"][0]["id"]}
    metrics = get_text(r.server, "/metrics")
    assert 'gatekeeper_in_service{camera="gate",via="http"} 0.0' in metrics and 'gatekeeper_gate_state{camera="gate",state="out_of_service"} 1.0' in metrics
    assert 'gatekeeper_actions_total{camera="gate",kind="out_of_service",via="http"} 1.0' in metrics
    r.app.pipeline.score = 0.95  # someone walks up smiling
    time.sleep(0.5)  # 25 frames of a held smile
    assert [e["event"] for e in r.journaled()] == ["OUT_OF_SERVICE"]
    assert post(r.server, "/actions/in_service", json.dumps({"by": "ali"}), bearer())[0] == 200
    wait_for(lambda: [e["event"] for e in r.journaled()] == ["OUT_OF_SERVICE", "IN_SERVICE", "OPEN"], 5, "the smile to open once back in service")
    assert get_json(r.server, "/status")["in_service"] is True


def get_json(server: WebServer, path: str) -> dict[str, Any]:
    return json.loads(get_text(server, path))


def get_text(server: WebServer, path: str) -> str:
    async def go() -> str:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url.rstrip("/") + path, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                return await r.text()

    return asyncio.run(go())


HOSTILE = [
    # (what, path, body, headers, status, via/reason counted)
    ("no token", "/actions/open", '{"by": "maria"}', {"Content-Type": "application/json"}, 401, "no_token"),
    ("wrong token", "/actions/open", '{"by": "maria"}', bearer("operator-token-9876543210"), 401, "bad_token"),
    ("token in the URL only", f"/actions/open?token={TOKEN}", '{"by": "maria"}', {"Content-Type": "application/json"}, 401, "no_token"),
    ("basic auth", "/actions/open", '{"by": "maria"}', {"Authorization": "Basic bWFyaWE6eA=="}, 401, "no_token"),
    ("malformed JSON", "/actions/open", '{"by": "maria"', bearer(), 400, "malformed"),
    ("not an object", "/actions/open", '["maria"]', bearer(), 400, "malformed"),
    ("no by", "/actions/open", '{"reason": "x"}', bearer(), 400, "malformed"),
    ("empty body", "/actions/open", "", bearer(), 400, "malformed"),
    ("unknown key", "/actions/open", '{"by": "maria", "pulse_ms": 60000}', bearer(), 400, "malformed"),
    ("via mqtt over http", "/actions/open", '{"by": "maria", "via": "mqtt"}', bearer(), 400, "malformed"),
    ("body too long", "/actions/open", json.dumps({"by": "maria", "reason": "x" * 5000}), bearer(), 400, "malformed"),
    ("not UTF-8", "/actions/open", b'{"by": "\xff"}', bearer(), 400, "malformed"),
    ("unknown action", "/actions/close", '{"by": "maria"}', bearer(), 404, "unknown_action"),
    ("unknown action, no token", "/actions/close", '{"by": "maria"}', {}, 401, "no_token"),
]


@pytest.mark.parametrize(("what", "path", "body", "headers", "status", "code"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_http_input_is_one_refusal_one_line_one_count_and_nothing_else(
    running: Callable[..., Running], caplog: pytest.LogCaptureFixture, what: str, path: str, body: Any, headers: dict[str, str], status: int, code: str
) -> None:
    r = running()
    caplog.set_level(logging.INFO, logger="gatekeeper")
    got, answer = post(r.server, path, body, headers)
    assert (got, answer["refused"]) == (status, code), answer
    assert TOKEN not in json.dumps(answer)
    lines = [rec.getMessage() for rec in caplog.records if rec.name.startswith("gatekeeper")]
    assert len(lines) == 1 and lines[0].startswith(f"action refused (http, {code}): "), lines
    assert TOKEN not in lines[0]
    assert r.controls.stats.snapshot() == {"taken": {}, "refused": {f"http/{code}": 1}}
    assert f'gatekeeper_action_refusals_total{{camera="gate",reason="{code}",via="http"}} 1.0' in get_text(r.server, "/metrics")
    time.sleep(0.1)  # a few frames: nothing reached the gate
    assert r.journaled() == []


def test_without_a_configured_token_actions_are_refused_even_on_loopback(running: Callable[..., Running]) -> None:
    r = running(token=None)
    assert post(r.server, "/actions/open", '{"by": "maria"}', {"Content-Type": "application/json"}) == (
        403,
        {"refused": "no_token_configured", "detail": "operator actions need http.token or http.users in the config"},
    )
    assert r.journaled() == []


def test_a_rate_limited_open_is_a_409_with_the_reason(running: Callable[..., Running]) -> None:
    r = running()
    assert post(r.server, "/actions/open", '{"by": "maria"}', bearer())[0] == 200
    status, answer = post(r.server, "/actions/open", '{"by": "maria"}', bearer())
    assert status == 409 and answer["refused"] == "rate_limited" and "manual_open_interval_s" in answer["detail"]
    assert [e["event"] for e in r.journaled()] == ["OPEN"]


def test_a_restart_with_the_same_journal_stays_out_of_service(running: Callable[..., Running], tmp_path: Path) -> None:
    first = running(score=None)
    assert post(first.server, "/actions/out_of_service", '{"by": "ali", "reason": "broken turnstile"}', bearer())[0] == 200
    first.close()
    second = running(score=0.95)
    st = get_json(second.server, "/status")
    assert st["in_service"] is False and st["service"]["reason"] == "broken turnstile"
    time.sleep(0.5)  # 25 frames of a held smile
    assert [e["event"] for e in second.journaled()] == ["OUT_OF_SERVICE"]
    assert post(second.server, "/actions/in_service", '{"by": "ali"}', bearer())[0] == 200
    wait_for(lambda: [e["event"] for e in second.journaled()][-1] == "OPEN", 5, "the smile to open once back in service")


def test_gatekeeper_events_shows_who_did_what(tmp_path: Path) -> None:
    import io

    from gatekeeper.commands import events as events_command

    gate = Gate(GATE)
    with Journal(tmp_path / "j.sqlite3") as journal:
        for e in act(gate, "out_of_service", 0.0, by="ali", reason="cleaning") + act(gate, "open", 1.0, by="maria", via="button"):
            journal.append(e, [])
    out, err = io.StringIO(), io.StringIO()
    assert events_command(["--journal", str(tmp_path / "j.sqlite3")], stdout=out, stderr=err) == 0, err.getvalue()
    text = out.getvalue()
    assert "OUT_OF_SERVICE" in text and "    reason: cleaning\n    by ali via http\n" in text
    assert "    reason: manual\n    by maria via button (override: the gate was held shut)\n" in text
    out = io.StringIO()
    assert events_command(["--journal", str(tmp_path / "j.sqlite3"), "--json"], stdout=out, stderr=err) == 0
    rows = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert [(r["event"], r["by"], r["via"], r["override"]) for r in rows] == [("OUT_OF_SERVICE", "ali", "http", None), ("OPEN", "maria", "button", True)]



# -- the real command, restarted ------------------------------------------------------------------


@pytest.mark.slow
def test_the_command_restarted_on_its_journal_stays_out_of_service(tmp_path: Path, shared_dir: Path, face_model_path: Path) -> None:
    """Two runs of ``gatekeeper`` on one journal: the first is taken out of service over HTTP; the
    second replays a man breaking into a broad smile and does not open, and says why at start."""
    config = tmp_path / "gate.yaml"
    config.write_text(f"detector: {{model_path: {json.dumps(str(face_model_path))}}}\nhttp: {{token: {TOKEN}}}\njournal: {{path: {json.dumps(str(tmp_path / 'journal.sqlite3'))}}}\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cli = [sys.executable, "-m", "gatekeeper.cli", "--config", str(config)]
    first = subprocess.Popen([*cli, "--video", str(shared_dir / "videos" / "no_face.mp4"), "--http", "127.0.0.1:0", "--hold-open", "60"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(first.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        url = wait_for(lambda: next((line.split("live view on ", 1)[1].strip() for line in list(log) if "live view on " in line), None), 60, "the live view's address")
        status, answer = post(SimpleNamespace(url=url), "/actions/out_of_service", '{"by": "ali", "reason": "turnstile jammed"}', bearer())  # type: ignore[arg-type]
        assert status == 200, answer
    finally:
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=30)
        reader.join(5)
    assert first.returncode == 0, "".join(log)[-2000:]
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["OUT_OF_SERVICE"]

    second = subprocess.run([*cli, "--video", str(shared_dir / "videos" / "single_face.mp4")], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout == ""  # the smile opened nothing (nor denied)
    assert "the gate is out of service since an earlier run (by ali via http (turnstile jammed))" in second.stderr
