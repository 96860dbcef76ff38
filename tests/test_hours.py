"""Opening hours (``service.hours``): the pure module (gatekeeper.hours), the config that holds
them, the gate's schedule input, and a real Camera with its journal, live view and metrics
following them on a clock the test moves."""

from __future__ import annotations

import doctest
import json
import math
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import yaml
from prometheus_client import generate_latest
from standin import StandInPipeline
from test_web import browser, metric_samples, wait_for  # noqa: F401 -- browser is a fixture (headless Chromium)

import gatekeeper.hours as hours_module
from gatekeeper import cli
from gatekeeper.actions import Controls
from gatekeeper.camera import Camera
from gatekeeper.capture import Frame
from gatekeeper.config import Config, JournalConfig
from gatekeeper.config_doc import HOURS_EXAMPLE, render
from gatekeeper.config_load import config_from_dict
from gatekeeper.errors import ConfigError
from gatekeeper.events import Action, EventType
from gatekeeper.gate import Gate
from gatekeeper.hooks import Dispatcher
from gatekeeper.hours import Hours, HoursClock, ServiceConfig
from gatekeeper.journal import Journal
from gatekeeper.web import LiveView, WebServer

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def at(*when: int, tz: ZoneInfo = PARIS, fold: int = 0) -> float:
    """Unix time of a local time (year, month, day, hour, minute) in ``tz``."""
    return datetime(*when, tzinfo=tz, fold=fold).timestamp()  # type: ignore[misc]


def local(t: float, tz: ZoneInfo = PARIS) -> str:
    return "never" if math.isinf(t) else datetime.fromtimestamp(t, tz).strftime("%a %Y-%m-%d %H:%M %Z")


#: The site of most tests: weekdays, a Friday night, a Saturday with a lunch break, two exceptions.
SITE = {
    "timezone": "Europe/Paris",
    "week": {"mon-thu": "09:00-18:00", "fri": ["09:00-18:00", "20:00-02:00"], "sat": ["10:00-12:00", "13:00-17:00"]},
    "exceptions": {"2026-12-24": "09:00-13:00", "2026-12-25": "closed", "2026-12-26": "01:00-03:00"},
}


def site(**changes: Any) -> Hours:
    return Hours.from_config({**SITE, **changes})


# -- the pure module ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "is_open", "next_boundary"),
    [
        ((2026, 12, 14, 8, 59), False, "Mon 2026-12-14 09:00 CET"),  # a Monday morning
        ((2026, 12, 14, 9, 0), True, "Mon 2026-12-14 18:00 CET"),  # the start belongs to the range
        ((2026, 12, 14, 17, 59), True, "Mon 2026-12-14 18:00 CET"),
        ((2026, 12, 14, 18, 0), False, "Tue 2026-12-15 09:00 CET"),  # the end does not
        ((2026, 12, 18, 19, 0), False, "Fri 2026-12-18 20:00 CET"),  # Friday's break
        ((2026, 12, 18, 23, 30), True, "Sat 2026-12-19 02:00 CET"),  # overnight, into Saturday
        ((2026, 12, 19, 1, 59), True, "Sat 2026-12-19 02:00 CET"),
        ((2026, 12, 19, 2, 0), False, "Sat 2026-12-19 10:00 CET"),
        ((2026, 12, 19, 12, 30), False, "Sat 2026-12-19 13:00 CET"),  # Saturday's lunch
        ((2026, 12, 19, 17, 0), False, "Mon 2026-12-21 09:00 CET"),  # Sunday is closed: not named
        ((2026, 12, 24, 12, 0), True, "Thu 2026-12-24 13:00 CET"),  # an exception's own range
        ((2026, 12, 24, 14, 0), False, "Sat 2026-12-26 01:00 CET"),  # Christmas closed, then the 26th's range
        ((2026, 12, 25, 10, 0), False, "Sat 2026-12-26 01:00 CET"),
        ((2026, 12, 26, 2, 0), True, "Sat 2026-12-26 03:00 CET"),
        ((2026, 12, 26, 11, 0), False, "Mon 2026-12-28 09:00 CET"),  # the 26th's own ranges replace Saturday's
    ],
)
def test_is_open_and_next_boundary(when: tuple[int, ...], is_open: bool, next_boundary: str) -> None:
    hours, t = site(), at(*when)
    assert hours.is_open(t) is is_open
    assert local(hours.next_boundary(t)) == next_boundary
    assert hours.is_open(hours.next_boundary(t)) is not is_open  # a boundary is where it changes
    assert hours.is_open(hours.next_boundary(t) - 1) is is_open


def test_an_overnight_range_runs_on_into_a_closed_exception() -> None:
    """Friday's 20:00-02:00 belongs to Friday: a closed Saturday does not cut it short."""
    hours = site(exceptions={"2026-12-19": "closed"})
    assert hours.is_open(at(2026, 12, 19, 1, 0))
    assert local(hours.next_boundary(at(2026, 12, 19, 1, 0))) == "Sat 2026-12-19 02:00 CET"
    assert local(hours.next_boundary(at(2026, 12, 19, 2, 0))) == "Mon 2026-12-21 09:00 CET"


def test_spring_forward() -> None:
    """Paris, 2026-03-29: 02:00 CET jumps to 03:00 CEST. 01:00-04:00 lasts two hours; a range
    that starts in the skipped hour starts at the jump; 09:00-18:00 lasts nine."""
    hours = Hours.from_config({"timezone": "Europe/Paris", "week": {"sun": "01:00-04:00", "mon": "09:00-18:00"}})
    start = at(2026, 3, 29, 1, 0)
    assert hours.is_open(start) and not hours.is_open(start - 1)
    assert hours.next_boundary(start) - start == 2 * 3600
    assert local(hours.next_boundary(start)) == "Sun 2026-03-29 04:00 CEST"
    assert hours.is_open(at(2026, 3, 29, 3, 0))  # the first minute after the jump
    monday = at(2026, 3, 30, 9, 0)
    assert hours.next_boundary(monday) - monday == 9 * 3600
    other = Hours.from_config({"timezone": "Europe/Paris", "week": {"sun": "02:30-05:00"}})
    jump = at(2026, 3, 29, 3, 0)  # 02:30 does not exist that day: the range starts at the jump
    assert other.next_boundary(at(2026, 3, 29, 1, 0)) == jump
    assert other.is_open(jump) and not other.is_open(jump - 1)
    assert local(other.next_boundary(jump)) == "Sun 2026-03-29 05:00 CEST"


def test_fall_back() -> None:
    """Paris, 2026-10-25: 03:00 CEST falls back to 02:00 CET. The whole day lasts 25 hours; a
    range that starts in the hour shown twice starts at its first showing."""
    hours = Hours.from_config({"timezone": "Europe/Paris", "week": {"sun": "00:00-24:00", "mon": "09:00-18:00"}})
    midnight = at(2026, 10, 25, 0, 0)
    assert hours.is_open(midnight) and not hours.is_open(midnight - 1)
    assert hours.next_boundary(midnight) - midnight == 25 * 3600
    assert hours.is_open(at(2026, 10, 25, 2, 30, fold=1))  # the second 02:30
    twice = Hours.from_config({"timezone": "Europe/Paris", "week": {"sun": "02:30-03:30"}})
    first = at(2026, 10, 25, 2, 30, fold=0)
    assert twice.next_boundary(at(2026, 10, 25, 1, 0)) == first
    assert twice.next_boundary(first) - first == 2 * 3600  # 02:30 CEST to 03:30 CET
    assert twice.is_open(at(2026, 10, 25, 2, 45, fold=1))


def test_an_american_time_zone_changes_on_its_own_dates() -> None:
    """New York springs forward on 2026-03-08, three weeks before Paris."""
    hours = Hours.from_config({"timezone": "America/New_York", "week": {"sun": "00:00-12:00"}})
    start = at(2026, 3, 8, 0, 0, tz=NEW_YORK)
    assert hours.next_boundary(start) - start == 11 * 3600
    assert local(hours.next_boundary(start), NEW_YORK) == "Sun 2026-03-08 12:00 EDT"


def test_open_all_the_time_has_no_boundary() -> None:
    hours = Hours.from_config({"timezone": "UTC", "week": {"mon-sun": "00:00-24:00"}})
    assert hours.is_open(0.0) and hours.next_boundary(0.0) == math.inf
    # One closed exception gives two boundaries, then none.
    hours = Hours.from_config({"timezone": "UTC", "week": {"mon-sun": "00:00-24:00"}, "exceptions": {"2026-12-25": "closed"}})
    t = at(2026, 12, 1, 12, 0, tz=ZoneInfo("UTC"))
    assert local(hours.next_boundary(t), ZoneInfo("UTC")) == "Fri 2026-12-25 00:00 UTC"
    after = hours.next_boundary(hours.next_boundary(t))
    assert local(after, ZoneInfo("UTC")) == "Sat 2026-12-26 00:00 UTC" and hours.next_boundary(after) == math.inf


def test_ranges_that_touch_are_one_stretch() -> None:
    hours = Hours.from_config({"timezone": "UTC", "week": {"mon": ["09:00-12:00", "12:00-14:00"], "sun": "22:00-24:00"}})
    monday = at(2026, 12, 14, 9, 0, tz=ZoneInfo("UTC"))
    assert hours.next_boundary(monday) - monday == 5 * 3600
    sunday = at(2026, 12, 13, 22, 0, tz=ZoneInfo("UTC"))  # Sunday 22:00-24:00 touches nothing on Monday 00:00
    assert hours.next_boundary(sunday) - sunday == 2 * 3600


def test_the_module_doctest() -> None:
    result = doctest.testmod(hours_module, verbose=False)
    assert result.attempted >= 5 and result.failed == 0


class Counting:
    """An Hours that counts the questions it is asked."""

    def __init__(self, hours: Hours) -> None:
        self.hours, self.asked = hours, 0

    def is_open(self, t: float) -> bool:
        self.asked += 1
        return self.hours.is_open(t)

    def next_boundary(self, t: float) -> float:
        return self.hours.next_boundary(t)

    def local_text(self, t: float) -> str:
        return self.hours.local_text(t)


def test_the_hours_clock_asks_once_per_stretch() -> None:
    counting = Counting(site())
    clock = HoursClock(counting)  # type: ignore[arg-type]
    monday = at(2026, 12, 14, 10, 0)
    for second in range(0, 7 * 3600, 60):  # 10:00 to 17:00, every minute
        assert clock.at(monday + second)[0] is True
    assert counting.asked == 1
    assert clock.at(at(2026, 12, 14, 18, 0)) == (False, at(2026, 12, 15, 9, 0), "opening hours: closed until Tue 2026-12-15 09:00 CET")
    assert counting.asked == 2
    assert clock.at(monday)[0] is True and counting.asked == 3  # the clock stepped back: asked again


# -- the config -----------------------------------------------------------------------------------


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], face_model_path: Path) -> Any:
    """``gatekeeper ARGS`` in-process, in an empty working directory: (status, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GATEKEEPER_FACE_MODEL", str(face_model_path))

    def run(argv: list[str]) -> tuple[int, str, str]:
        status = cli.main(argv)
        out, err = capsys.readouterr()
        return status, out, err

    return run



def test_without_service_hours_nothing_changes() -> None:
    assert Config().service == ServiceConfig(hours=None)
    assert config_from_dict({}).service.hours is None


def test_service_hours_from_a_config_file(tmp_path: Path, run_cli: Any) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("service:\n  hours:\n" + "".join(f"    {line}\n" for line in HOURS_EXAMPLE.splitlines()), encoding="utf-8")
    status, out, err = run_cli(["--check-config", "--config", str(path)])
    assert (status, err) == (0, ""), err
    printed = yaml.safe_load(out)["service"]["hours"]
    assert printed["timezone"] == "Europe/Paris"
    assert printed["week"]["fri"] == ["09:00-18:00", "20:00-02:00"]
    assert printed["exceptions"] == {"2026-12-24": ["09:00-13:00"], "2026-12-25": "closed"}
    assert Hours.from_config(printed) == Hours.from_config(yaml.safe_load(HOURS_EXAMPLE))  # what it prints reads back the same


def test_the_documented_example_is_in_config_yaml() -> None:
    lines = render().splitlines()
    start = lines.index(next(line for line in lines if line.strip().startswith("hours: null")))
    example = [line.strip().removeprefix("#  ") for line in lines[start + 1 : start + 1 + len(HOURS_EXAMPLE.splitlines())]]
    assert example == HOURS_EXAMPLE.splitlines()
    assert config_from_dict({"service": {"hours": yaml.safe_load(HOURS_EXAMPLE)}}).service.hours == Hours.from_config(yaml.safe_load(HOURS_EXAMPLE))


def hours_yaml(body: str) -> str:
    return "service:\n  hours:\n" + "".join(f"    {line}\n" for line in body.splitlines())


REFUSED = [
    pytest.param('timezone: Europe/Pariss\nweek: {mon: "09:00-18:00"}', "service.hours.timezone: unknown time zone 'Europe/Pariss'", id="unknown zone"),
    pytest.param('timezone: ../../etc/passwd\nweek: {mon: "09:00-18:00"}', "service.hours.timezone: unknown time zone", id="a path as the zone"),
    pytest.param('week: {mon: "09:00-18:00"}', "service.hours.timezone: required key is missing", id="no zone"),
    pytest.param("timezone: UTC", "service.hours.week: required key is missing", id="no week"),
    pytest.param("timezone: UTC\nweek: {}", "service.hours.week: names no day with opening hours", id="names no day"),
    pytest.param("timezone: UTC\nweek: {mon: closed}", "service.hours.week: names no day with opening hours", id="every day closed"),
    pytest.param('timezone: UTC\nweek: {mnday: "09:00-18:00"}', "service.hours.week.mnday: unknown day 'mnday'", id="unknown day"),
    pytest.param('timezone: UTC\nweek: {mon-fry: "09:00-18:00"}', "service.hours.week.mon-fry: unknown day 'fry'", id="unknown day in a span"),
    pytest.param('timezone: UTC\nweek: {"09:00-18:00": mon}', "service.hours.week.09:00-18:00", id="a range as the day"),
    pytest.param('timezone: UTC\nweek: {mon: "9:00-18:00"}', "service.hours.week.mon: '9:00-18:00' has a malformed time '9:00'", id="one-digit hour"),
    pytest.param('timezone: UTC\nweek: {mon: "09:60-18:00"}', "service.hours.week.mon: '09:60-18:00' has a malformed time '09:60'", id="minute 60"),
    pytest.param('timezone: UTC\nweek: {mon: "24:00-02:00"}', "service.hours.week.mon: '24:00-02:00' has a malformed time '24:00'", id="24:00 as a start"),
    pytest.param('timezone: UTC\nweek: {mon: "09:00"}', "service.hours.week.mon: expected a range", id="no end"),
    pytest.param('timezone: UTC\nweek: {mon: "09:00-09:00"}', "service.hours.week.mon: '09:00-09:00' is empty", id="empty range"),
    pytest.param("timezone: UTC\nweek: {mon: 9}", "service.hours.week.mon: expected a range", id="a number"),
    pytest.param('timezone: UTC\nweek: {mon: ["09:00-12:00", "11:00-13:00"]}', "service.hours.week.mon: 11:00-13:00 overlaps 09:00-12:00 on mon", id="overlap in a day"),
    pytest.param('timezone: UTC\nweek: {mon-fri: "09:00-18:00", fri: "10:00-11:00"}', "service.hours.week.fri: fri is also named by service.hours.week.mon-fri", id="a day named twice"),
    pytest.param(
        'timezone: UTC\nweek: {sun: "20:00-02:00", mon: "01:00-03:00"}',
        "service.hours.week.mon: 01:00-03:00 overlaps 20:00-02:00 of service.hours.week.sun on mon",
        id="overnight overlaps the next day, across the week's end",
    ),
    pytest.param(
        'timezone: UTC\nweek: {fri: "20:00-03:00"}\nexceptions: {2026-12-19: "01:00-05:00"}',
        "service.hours.exceptions.2026-12-19: 01:00-05:00 overlaps 20:00-03:00 of service.hours.week.fri on 2026-12-19",
        id="an exception overlaps the night before",
    ),
    pytest.param('timezone: UTC\nweek: {mon: "09:00-18:00"}\nexceptions: {2026-13-01: closed}', "service.hours.exceptions.2026-13-01: expected a date YYYY-MM-DD", id="no such date"),
    pytest.param('timezone: UTC\nweek: {mon: "09:00-18:00"}\nexceptions: {christmas: closed}', "service.hours.exceptions.christmas: expected a date YYYY-MM-DD", id="not a date"),
    pytest.param('timezone: UTC\nweek: {mon: "09:00-18:00"}\nexceptions: {"2026-12-01": closed, 2026-12-01: "10:00-11:00"}', "service.hours.exceptions.2026-12-01: the date is given twice", id="a date twice"),
    pytest.param('timezone: UTC\nweek: {mon: "09:00-18:00"}\nopen: always', "service.hours.open: unknown key", id="unknown key"),
    pytest.param("[09:00-18:00]", "service.hours: expected a mapping", id="not a mapping"),
]


@pytest.mark.parametrize(("body", "message"), REFUSED)
def test_hours_that_cannot_be_are_refused_by_check_config(tmp_path: Path, run_cli: Any, body: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(hours_yaml(body), encoding="utf-8")
    status, _, err = run_cli(["--check-config", "--config", str(path)])
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err


def test_hours_built_in_code_are_checked_as_a_file_is() -> None:
    with pytest.raises(ConfigError, match=r"^service.hours.week.mon: 11:00-13:00 overlaps 09:00-12:00 on mon"):
        config_from_dict({"service": {"hours": {"timezone": "UTC", "week": {"mon": ["09:00-12:00", "11:00-13:00"]}}}})
    with pytest.raises(ConfigError, match=r"^service.hours.timezone: unknown time zone 'Mars/Olympus'"):
        Hours("Mars/Olympus", (("mon", ("09:00-18:00",)),))


# -- the gate's schedule input --------------------------------------------------------------------


def manual(kind: str, by: str = "maria") -> Action:
    return Action(kind, by, "http")


def test_the_gate_follows_each_boundary_and_only_those() -> None:
    gate = Gate()
    (out,) = gate.schedule(False, 0, 0.0, "opening hours: closed until Mon 09:00")
    assert (out.event, out.by, out.via, out.reason, out.note) == (EventType.OUT_OF_SERVICE, "schedule", "schedule", "opening hours: closed until Mon 09:00", None)
    assert not gate.in_service and gate.out_of_service == out
    assert gate.schedule(False, 1, 1.0, "again") == []  # no boundary: nothing
    (back,) = gate.schedule(True, 2, 2.0, "opening hours: open until Mon 18:00")
    assert (back.event, back.by, back.via) == (EventType.IN_SERVICE, "schedule", "schedule") and gate.in_service
    assert gate.schedule(True, 3, 3.0, "again") == []


def test_an_override_lasts_until_the_next_boundary() -> None:
    gate = Gate()
    gate.schedule(False, 0, 0.0, "closed")
    (back,) = gate.act(manual("in_service"), 1, 1.0)  # staff open the gate outside hours
    assert back.via == "http" and gate.in_service
    assert gate.schedule(False, 2, 2.0, "closed") == []  # the same closed stretch: the override stands
    assert gate.schedule(True, 3, 3.0, "open") == []  # opening: already in service, nothing to say
    (out,) = gate.schedule(False, 4, 4.0, "closed")  # the next closing is the schedule's again
    assert out.via == "schedule"
    # Inside hours: staff take it out; closing hands it to the schedule, opening puts it back.
    gate.schedule(True, 5, 5.0, "open")
    (mine,) = gate.act(manual("out_of_service"), 6, 6.0)
    assert gate.schedule(True, 7, 7.0, "open") == [] and gate.out_of_service == mine
    (handed,) = gate.schedule(False, 8, 8.0, "closed")
    assert (handed.event, handed.via) == (EventType.OUT_OF_SERVICE, "schedule") and gate.out_of_service == handed
    (reopened,) = gate.schedule(True, 9, 9.0, "open")
    assert reopened.event is EventType.IN_SERVICE and gate.in_service


def test_staff_cannot_take_a_scheduled_closure_out_twice() -> None:
    gate = Gate()
    gate.schedule(False, 0, 0.0, "closed")
    assert gate.act(manual("out_of_service"), 1, 1.0) == []
    assert gate.refusal is not None and gate.refusal[0] == "no_change" and "by schedule via schedule" in gate.refusal[1]


def test_a_restored_state_is_not_announced_again() -> None:
    closed = Gate()
    (out,) = closed.schedule(False, 0, 0.0, "closed")
    restarted = Gate()
    restarted.restore_service(out)
    assert restarted.schedule(False, 0, 10.0, "closed") == [] and not restarted.in_service
    # An operator's in-service made in this stretch, restored with what the schedule said then.
    (back,) = closed.act(manual("in_service"), 1, 1.0)
    kept = Gate()
    kept.restore_service(back, scheduled=False)
    assert kept.schedule(False, 0, 10.0, "closed") == [] and kept.in_service
    # The same, from before the last boundary: the schedule takes over.
    stale = Gate()
    stale.restore_service(back)
    (again,) = stale.schedule(False, 0, 10.0, "closed")
    assert again.via == "schedule"


# -- a camera following the hours ------------------------------------------------------------------


class Site:
    """A real Camera (stand-in models, nobody in view) with its SQLite journal and live view, on a
    wall clock the test moves: ``turn`` is one frame, ``restart`` a new process on the same journal."""

    def __init__(self, tmp_path: Path, now: float, hours: Hours | None = None) -> None:
        self.now = now
        self.cfg = Config(journal=JournalConfig(path=str(tmp_path / "journal.sqlite3")), service=ServiceConfig(hours=hours))
        self.journal = Journal(self.cfg.journal.resolved_path(), clock=lambda: self.now)
        self.frame = 0
        self.camera = self._start()

    def _start(self) -> Camera:
        pipeline = StandInPipeline(Gate(self.cfg.gate))
        camera = Camera("gate", self.cfg, pipeline, dispatcher=Dispatcher(self.journal, [], camera="gate"), controls=Controls(), clock=lambda: self.now)  # type: ignore[arg-type]
        self.view = LiveView(camera)
        camera.sinks.append(self.view)
        return camera

    def turn(self, advance: float = 0.0) -> None:
        self.now += advance
        self.camera.step(Frame(np.zeros((48, 64, 3), np.uint8), self.frame, float(self.frame) / 10))
        self.frame += 1

    def act(self, kind: str) -> list[dict[str, Any]]:
        ticket = self.camera.controls.submit(manual(kind))
        self.turn()
        assert ticket.refused is None, ticket.refused
        return ticket.events

    def restart(self) -> None:
        self.camera.controls.stop()
        self.camera = self._start()

    def service_events(self) -> list[tuple[str, str | None]]:
        return [(e.event.event.value, e.event.via) for e in self.journal.entries() if e.event.event in (EventType.OUT_OF_SERVICE, EventType.IN_SERVICE)]

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return metric_samples(generate_latest(self.view.registry).decode())


def test_without_hours_the_camera_makes_no_service_event(tmp_path: Path) -> None:
    place = Site(tmp_path, at(2026, 12, 13, 23, 0))  # a Sunday night: closed, had there been hours
    for _ in range(5):
        place.turn(3600)
    assert place.camera.hours is None and place.journal.entries() == [] and place.camera.gate.in_service
    assert place.view.live_state()["hours"] is None and place.view.service()["in_service"] is True
    m = place.metrics()
    assert m[("gatekeeper_in_service", (("camera", "gate"), ("via", "")))] == 1
    assert m[("gatekeeper_schedule_open", (("camera", "gate"),))] == 1


def test_the_camera_closes_and_opens_at_the_boundaries(tmp_path: Path) -> None:
    place = Site(tmp_path, at(2026, 12, 14, 7, 0), site())  # Monday 07:00: closed
    assert place.camera.gate.in_service  # nothing happens before the loop turns
    place.turn()
    assert place.service_events() == [("OUT_OF_SERVICE", "schedule")]
    (entry,) = place.journal.entries()
    assert entry.event.by == "schedule" and entry.event.reason == "opening hours: closed until Mon 2026-12-14 09:00 CET"
    status = place.view.status()
    assert status["in_service"] is False and status["state"] == "out_of_service"
    assert status["service"] == {"in_service": False, "by": "schedule", "via": "schedule", "reason": "opening hours: closed until Mon 2026-12-14 09:00 CET", "event": entry.event.id}
    assert status["hours"] == {"open": False, "until": at(2026, 12, 14, 9, 0), "reason": "opening hours: closed until Mon 2026-12-14 09:00 CET"}
    m = place.metrics()
    assert m[("gatekeeper_in_service", (("camera", "gate"), ("via", "schedule")))] == 0
    assert m[("gatekeeper_schedule_open", (("camera", "gate"),))] == 0
    for _ in range(20):  # frames through the night: nothing more
        place.turn(60)
    assert len(place.service_events()) == 1
    place.now = at(2026, 12, 14, 9, 0)
    place.turn()
    assert place.service_events() == [("OUT_OF_SERVICE", "schedule"), ("IN_SERVICE", "schedule")]
    assert place.view.status()["in_service"] is True and place.view.status()["hours"]["open"] is True
    m = place.metrics()
    assert m[("gatekeeper_in_service", (("camera", "gate"), ("via", "")))] == 1 and m[("gatekeeper_schedule_open", (("camera", "gate"),))] == 1
    place.now = at(2026, 12, 14, 18, 0, 30)
    place.turn()
    assert [kind for kind, _ in place.service_events()] == ["OUT_OF_SERVICE", "IN_SERVICE", "OUT_OF_SERVICE"]


def test_a_restart_in_the_closed_stretch_stays_closed_without_a_new_event(tmp_path: Path) -> None:
    place = Site(tmp_path, at(2026, 12, 14, 19, 0), site())
    place.turn()
    place.restart()
    assert not place.camera.gate.in_service and place.camera.gate.out_of_service.via == "schedule"  # type: ignore[union-attr]
    for _ in range(3):
        place.turn(600)
    place.restart()
    place.turn(600)
    assert place.service_events() == [("OUT_OF_SERVICE", "schedule")]
    # Down over the opening: the first turn after it puts the gate back in service, once.
    place.camera.controls.stop()
    place.now = at(2026, 12, 15, 10, 0)
    place.restart()
    place.turn()
    place.turn(1)
    assert place.service_events() == [("OUT_OF_SERVICE", "schedule"), ("IN_SERVICE", "schedule")]


def test_staff_override_until_the_next_boundary_across_a_restart(tmp_path: Path) -> None:
    place = Site(tmp_path, at(2026, 12, 14, 19, 0), site())  # Monday evening, closed
    place.turn()
    (back,) = place.act("in_service")  # a late event: staff open the gate outside hours
    assert back["via"] == "http" and place.camera.gate.in_service
    place.turn(3600)
    place.restart()  # 20:00, still the same closed stretch: the override stands
    place.turn()
    assert place.camera.gate.in_service
    assert place.view.status()["hours"]["open"] is False  # the page still says the hours are closed
    place.now = at(2026, 12, 15, 9, 0)  # opening: in service already, nothing to say
    place.turn()
    place.now = at(2026, 12, 15, 18, 0)  # closing: the schedule's again
    place.turn()
    assert place.service_events() == [("OUT_OF_SERVICE", "schedule"), ("IN_SERVICE", "http"), ("OUT_OF_SERVICE", "schedule")]
    # An override from before the last boundary does not survive a restart.
    place.now = at(2026, 12, 16, 12, 0)
    place.turn()
    place.act("out_of_service")  # inside hours: staff take it out
    place.camera.controls.stop()
    place.now = at(2026, 12, 16, 19, 0)  # down over the closing
    place.restart()
    place.turn()
    assert place.service_events()[-2:] == [("OUT_OF_SERVICE", "http"), ("OUT_OF_SERVICE", "schedule")]
    m = place.metrics()
    assert m[("gatekeeper_in_service", (("camera", "gate"), ("via", "schedule")))] == 0


def test_the_schedule_comes_before_an_action_of_the_same_turn(tmp_path: Path) -> None:
    place = Site(tmp_path, at(2026, 12, 14, 17, 59), site())
    place.turn()
    place.now = at(2026, 12, 14, 18, 0)
    events = place.act("in_service")  # staff keep it open as it closes
    assert [e["event"] for e in events] == ["IN_SERVICE"]
    assert place.service_events() == [("OUT_OF_SERVICE", "schedule"), ("IN_SERVICE", "http")]


def test_schedule_events_are_stamped_with_the_camera_and_reach_the_sinks(tmp_path: Path) -> None:
    place = Site(tmp_path, at(2026, 12, 14, 7, 0), site())
    place.turn()
    (entry,) = place.journal.entries()
    assert (entry.event.camera, entry.event.event, entry.event.by, entry.event.via) == ("gate", EventType.OUT_OF_SERVICE, "schedule", "schedule")
    assert place.view.events_by_type["OUT_OF_SERVICE"] == 1  # the live view is a sink, after the journal
    assert place.camera.events == {"OUT_OF_SERVICE": 1}


# -- the whole product ------------------------------------------------------------------------------


def replay_single_face(shared_dir: Path, face_model_path: Path, cwd: Path, *args: str) -> list[dict[str, Any]]:
    """``gatekeeper --video single_face.mp4 --dry-run ARGS`` (real models) in ``cwd``: its events."""
    clip = str(shared_dir / "videos" / "single_face.mp4")
    env = {**os.environ, "GATEKEEPER_FACE_MODEL": str(face_model_path)}
    proc = subprocess.run([sys.executable, "-m", "gatekeeper.cli", "--video", clip, "--dry-run", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def events_without_hours(shared_dir: Path, face_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The replay of the clip by a gate without hours (the built-in defaults), once for both cases below."""
    return replay_single_face(shared_dir, face_model_path, tmp_path_factory.mktemp("no_hours"), "--config", os.devnull)


@pytest.mark.slow
@pytest.mark.parametrize("closed", [True, False], ids=["closed: out of service, no OPEN", "open all day: as without hours"])
def test_a_replay_follows_the_hours(tmp_path: Path, shared_dir: Path, face_model_path: Path, events_without_hours: list[dict[str, Any]], closed: bool) -> None:
    """``gatekeeper --video`` on a clip where a smile opens, with the real models: outside the
    hours the first event is the schedule's OUT_OF_SERVICE and the smile opens nothing; inside
    them the events are those of a gate without hours."""
    today = datetime.now(ZoneInfo("UTC")).date()
    days = {str(today.fromordinal(today.toordinal() + n)): "closed" for n in (-1, 0, 1)}  # a run across midnight stays closed
    hours = {"timezone": "UTC", "week": {"mon-sun": "00:00-24:00"}, **({"exceptions": days} if closed else {})}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"service": {"hours": hours}}), encoding="utf-8")

    events = replay_single_face(shared_dir, face_model_path, tmp_path, "--config", str(config))
    without = events_without_hours
    assert "OPEN" in [e["event"] for e in without]
    if closed:
        assert (events[0]["event"], events[0]["by"], events[0]["via"]) == ("OUT_OF_SERVICE", "schedule", "schedule")
        assert events[0]["reason"].startswith("opening hours: closed until ")
        assert [e["event"] for e in events if e["event"] in ("OPEN", "DENY", "IN_SERVICE")] == []
    else:
        assert [(e["event"], e["frame"], e["track"]) for e in events] == [(e["event"], e["frame"], e["track"]) for e in without]


@pytest.mark.slow
def test_the_page_says_closed_by_the_hours_and_staff_override_it(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    """Headless Chromium on a real Camera (stand-in models) closed by its hours: the switch says
    "Out of service (opening hours)" and a line says until when; staff put it in service from the
    page, and the line still says the hours are closed."""
    from selenium.webdriver.common.by import By

    token = "hours-page-token-0123456789"
    clock = [at(2026, 12, 14, 7, 0)]
    cfg = config_from_dict({"http": {"token": token}, "journal": {"path": str(tmp_path / "journal.sqlite3")}, "service": {"hours": SITE}})
    journal = Journal(cfg.journal.resolved_path(), clock=lambda: clock[0])
    camera = Camera(cfg.name, cfg, StandInPipeline(Gate(cfg.gate)), dispatcher=Dispatcher(journal, []), controls=Controls(cfg.actions), clock=lambda: clock[0])  # type: ignore[arg-type]
    view = LiveView(camera)
    camera.sinks.append(view)
    camera.on_frame = view.on_frame
    server = WebServer(view, "127.0.0.1", 0)
    server.start()

    def frames() -> Any:
        i = 0
        while not camera.stopping.is_set():
            yield Frame(np.zeros((48, 64, 3), np.uint8), i, i / 20)
            i += 1
            time.sleep(0.05)

    thread = threading.Thread(target=camera.run, args=(frames(),), daemon=True)
    thread.start()
    try:
        browser.get(f"{server.url}?token={token}")
        switch = wait_for("the switch to say the hours hold the gate", lambda: (s := browser.find_element(By.ID, "service")).text == "Out of service (opening hours)" and s)
        line = browser.find_element(By.ID, "hours")
        assert line.is_displayed() and line.text == "opening hours: closed until Mon 2026-12-14 09:00 CET"
        browser.find_element(By.ID, "operator").send_keys("maria")
        switch.click()
        wait_for("the switch to say in service", lambda: switch.text == "In service" and camera.gate.in_service)
        assert [(e.event.event.value, e.event.via) for e in journal.entries()] == [("OUT_OF_SERVICE", "schedule"), ("IN_SERVICE", "page")]
        time.sleep(0.5)  # a few more frames: the override stands
        assert camera.gate.in_service and line.text == "opening hours: closed until Mon 2026-12-14 09:00 CET"
    finally:
        camera.stopping.set()
        thread.join(5)
        camera.close()
        server.stop()
