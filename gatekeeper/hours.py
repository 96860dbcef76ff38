"""Opening hours (``service.hours``): when the gate is in service by itself, as pure functions of time.

A weekly pattern in a time zone, with exceptions by date::

    service:
      hours:
        timezone: Europe/Paris
        week:
          mon-fri: "09:00-18:00"
          sat: ["10:00-12:00", "13:00-17:00"]
          fri: "20:00-02:00"            # overnight: Friday 20:00 to Saturday 02:00
        exceptions:
          2026-12-25: closed
          2026-12-24: "09:00-13:00"     # that date's own ranges instead of its weekday's

Every range belongs to the day it starts on: ``20:00-02:00`` runs into the next day, and an
exception replaces only the ranges that start on its date. A range is the stretch of real time
from its start to its end on that day's local clock; a start or end that the clock skips (spring
forward) is the moment of the jump, one the clock shows twice (fall back) is its first showing. So
``09:00-18:00`` lasts nine hours every day, and ``00:00-24:00`` on a fall-back day lasts 25.

Time is an argument (Unix seconds): :meth:`Hours.is_open` and :meth:`Hours.next_boundary` never
read a clock. :class:`HoursClock` keeps the answer until the next boundary, so a frame loop asks
once per frame at the cost of one comparison.

>>> hours = Hours.from_config({"timezone": "Europe/Paris", "week": {"mon-fri": "09:00-18:00"}})
>>> from datetime import datetime
>>> from zoneinfo import ZoneInfo
>>> monday_noon = datetime(2026, 12, 14, 12, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
>>> hours.is_open(monday_noon)
True
>>> hours.local_text(hours.next_boundary(monday_noon))
'Mon 2026-12-14 18:00 CET'
>>> hours.local_text(hours.next_boundary(monday_noon + 6 * 3600))
'Tue 2026-12-15 09:00 CET'
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .schema import opt

__all__ = ["DAYS", "SCHEDULE", "Hours", "HoursClock", "ServiceConfig", "parse_hours"]

#: The ``by`` and ``via`` of the service events the opening hours make.
SCHEDULE = "schedule"

#: The day names of ``week:``, Monday first (``datetime.weekday()`` order).
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MINUTES = 1440
#: How far :meth:`Hours.next_boundary` looks past the last exception's date before it says
#: there is none (a week whose every day is open all day has no boundary).
_SEARCH_DAYS = 8

_TIME = re.compile(r"(\d{2}):(\d{2})")
_EXAMPLE_RANGE = 'a range "HH:MM-HH:MM" such as "09:00-18:00", a list of them, or closed'

Range = tuple[int, int]  # minutes from the day's midnight; start < end <= start + 1440 (overnight past 1440)


def _describe(value: Any) -> str:
    text = repr(value)
    return (text if len(text) <= 60 else text[:57] + "...") + f" ({type(value).__name__})"


def _minutes(text: str, path: str, whole: str, *, end: bool) -> int:
    m = _TIME.fullmatch(text.strip())
    hour, minute = (int(m.group(1)), int(m.group(2))) if m else (-1, -1)
    if not m or minute > 59 or hour > 24 or (hour == 24 and (minute or not end)):
        raise ConfigError(f"{path}: {whole!r} has a malformed time {text.strip()!r}; expected HH:MM from 00:00 to 23:59 (24:00 as an end)")
    return hour * 60 + minute


def _range(value: Any, path: str) -> Range:
    if not isinstance(value, str) or value.count("-") != 1:
        raise ConfigError(f"{path}: expected {_EXAMPLE_RANGE}, got {_describe(value)}")
    first, second = value.split("-")
    start, stop = _minutes(first, path, value, end=False), _minutes(second, path, value, end=True)
    if start == stop:
        raise ConfigError(f"{path}: {value!r} is empty; expected two different times (00:00-24:00 for the whole day)")
    return (start, stop if stop > start else stop + DAY_MINUTES)  # an end before the start is on the next day


def _ranges(value: Any, path: str) -> tuple[Range, ...]:
    """``closed``, one range, or a list of ranges, sorted by start."""
    if value == "closed":
        return ()
    items = value if isinstance(value, list) else [value]
    return tuple(sorted(_range(v, f"{path}[{i}]" if isinstance(value, list) else path) for i, v in enumerate(items)))


def _day(name: str, path: str) -> int:
    try:
        return DAYS.index(name.strip().lower())
    except ValueError:
        raise ConfigError(f"{path}: unknown day {name.strip()!r}; expected {', '.join(DAYS)}, a span such as mon-fri, or a list such as mon,wed") from None


def _days(key: Any, path: str) -> list[int]:
    """The weekdays a key of ``week:`` names: ``mon``, ``mon-fri``, ``fri-mon`` (across Sunday), ``mon,wed``."""
    if not isinstance(key, str) or not key.strip():
        raise ConfigError(f"{path}: expected a day such as mon, a span such as mon-fri, or a list such as mon,wed; got {_describe(key)}")
    days: list[int] = []
    for part in key.split(","):
        first, sep, last = part.partition("-")
        a = _day(first, path)
        b = _day(last, path) if sep else a
        days += [(a + i) % 7 for i in range((b - a) % 7 + 1)]
    if len(set(days)) != len(days):
        raise ConfigError(f"{path}: names a day twice; expected each day once")
    return days


def _text(r: Range) -> str:
    return f"{r[0] // 60:02d}:{r[0] % 60:02d}-{r[1] % DAY_MINUTES // 60 if r[1] != DAY_MINUTES else 24:02d}:{r[1] % 60:02d}"


def _check_overlaps(items: list[tuple[int, int, str]], day: str) -> None:
    """``items``: (start, end, path) in minutes of one day (a spill from the day before starts
    below 0). Raise naming the later of the first two that overlap."""
    items = sorted(items)
    for (s1, e1, p1), (s2, e2, p2) in itertools.pairwise(items):
        if s2 < e1:
            other = "" if p1 == p2 else f" of {p1}"
            raise ConfigError(f"{p2}: {_text((s2 % DAY_MINUTES, s2 % DAY_MINUTES + e2 - s2))} overlaps {_text((s1 % DAY_MINUTES, s1 % DAY_MINUTES + e1 - s1))}{other} on {day}; expected ranges that do not overlap")


@dataclass(frozen=True)
class Hours:
    """A validated ``service.hours``: build it with :meth:`from_config` (or :func:`parse_hours`).

    ``week`` and ``exceptions`` keep the ranges as written (key, ranges), for ``--check-config``
    and equality; the rest is derived from them.
    """

    timezone: str
    week: tuple[tuple[str, tuple[str, ...]], ...]
    exceptions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    _tz: zoneinfo.ZoneInfo = field(init=False, compare=False, repr=False)
    _days: tuple[tuple[Range, ...], ...] = field(init=False, compare=False, repr=False)
    _dates: dict[dt.date, tuple[Range, ...]] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        base = "service.hours"
        try:
            tz = zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigError(f"{base}.timezone: unknown time zone {self.timezone!r}; expected an IANA name such as Europe/Paris or America/New_York") from None
        days: list[list[tuple[Range, str]]] = [[] for _ in DAYS]
        named: dict[int, str] = {}
        for key, texts in self.week:
            path = f"{base}.week.{key}"
            ranges = _ranges(list(texts), path)
            for d in _days(key, path):
                if d in named:
                    raise ConfigError(f"{path}: {DAYS[d]} is also named by {base}.week.{named[d]}; expected each day in one key")
                named[d] = key
                days[d] += [(r, path) for r in ranges]
        if not any(days):
            raise ConfigError(f"{base}.week: names no day with opening hours; expected at least one, such as mon-fri: \"09:00-18:00\" (without service.hours the gate is always in service)")
        for d in range(7):
            self._check_day(days[d], days[d - 1], DAYS[d])
        dates: dict[dt.date, list[tuple[Range, str]]] = {}
        for iso, texts in self.exceptions:
            path = f"{base}.exceptions.{iso}"
            if _date(iso, path) in dates:
                raise ConfigError(f"{path}: the date is given twice; expected each date once")
            dates[_date(iso, path)] = [(r, path) for r in _ranges(list(texts), path)]

        def effective(day: dt.date) -> list[tuple[Range, str]]:
            return dates[day] if day in dates else days[day.weekday()]

        for day in sorted({d + dt.timedelta(days=n) for d in dates for n in (0, 1)}):
            self._check_day(effective(day), effective(day - dt.timedelta(days=1)), day.isoformat())
        object.__setattr__(self, "_tz", tz)
        object.__setattr__(self, "_days", tuple(tuple(r for r, _ in day) for day in days))
        object.__setattr__(self, "_dates", {d: tuple(r for r, _ in rs) for d, rs in dates.items()})

    @staticmethod
    def _check_day(own: list[tuple[Range, str]], before: list[tuple[Range, str]], name: str) -> None:
        spill = [(s - DAY_MINUTES, e - DAY_MINUTES, p) for (s, e), p in before if e > DAY_MINUTES]
        _check_overlaps([(s, e, p) for (s, e), p in own] + spill, name)

    @classmethod
    def from_config(cls, value: Any, path: str = "service.hours") -> Hours:
        """Validate the plain data of ``service.hours``; raises :class:`ConfigError` naming the key."""
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping with timezone, week and exceptions, got {_describe(value)}")
        unknown = sorted(map(str, set(value) - {"timezone", "week", "exceptions"}))
        if unknown:
            raise ConfigError(f"{path}.{unknown[0]}: unknown key; expected one of exceptions, timezone, week")
        for key in ("timezone", "week"):
            if key not in value:
                raise ConfigError(f"{path}.{key}: required key is missing; expected " + ("an IANA time zone name such as Europe/Paris" if key == "timezone" else 'weekdays and their ranges, such as mon-fri: "09:00-18:00"'))
        if not isinstance(value["timezone"], str):
            raise ConfigError(f"{path}.timezone: expected an IANA time zone name such as Europe/Paris, got {_describe(value['timezone'])}")
        week, exceptions = value["week"], value.get("exceptions") or {}
        if not isinstance(week, dict):
            raise ConfigError(f"{path}.week: expected a mapping of days to ranges, such as mon-fri: \"09:00-18:00\", got {_describe(week)}")
        if not isinstance(exceptions, dict):
            raise ConfigError(f"{path}.exceptions: expected a mapping of dates to ranges, such as 2026-12-25: closed, got {_describe(exceptions)}")
        spec = tuple((k if isinstance(k, str) else _describe(k), _spec(v, f"{path}.week.{k}")) for k, v in week.items())
        dates = tuple((_date(k, f"{path}.exceptions.{k}").isoformat(), _spec(v, f"{path}.exceptions.{k}")) for k, v in exceptions.items())
        for key, _ in spec:
            _days(key, f"{path}.week.{key}")
        return cls(value["timezone"], spec, tuple(sorted(dates)))

    def to_config(self) -> dict[str, Any]:
        """The plain data it was read from (``--check-config`` prints it)."""
        plain = {"timezone": self.timezone, "week": {k: list(v) or "closed" for k, v in self.week}}
        return plain | ({"exceptions": {k: list(v) or "closed" for k, v in self.exceptions}} if self.exceptions else {})

    # -- questions about a time -----------------------------------------------------------------
    def is_open(self, t: float) -> bool:
        """Whether Unix time ``t`` lies inside the opening hours."""
        day = self._date(t)
        return any(a <= t < b for a, b in self._intervals(day - dt.timedelta(days=1), day))

    def next_boundary(self, t: float) -> float:
        """The first Unix time after ``t`` at which :meth:`is_open` changes (``math.inf``: never,
        as for a week whose every day is open 00:00-24:00)."""
        first = self._date(t) - dt.timedelta(days=1)
        # Past the last exception the week repeats: a week there without a boundary has none.
        horizon = max([first, *self._dates]) + dt.timedelta(days=2 * _SEARCH_DAYS)
        span = _SEARCH_DAYS
        while True:
            end = first + dt.timedelta(days=span)
            trusted = self._instant(end, 0)  # the ranges of later days start at or after this
            for a, b in self._intervals(first, end - dt.timedelta(days=1)):
                if b <= t:
                    continue
                edge = b if a <= t else a
                if edge < trusted:
                    return edge
                break  # a stretch that reaches the last day looked at may go on: look further
            if end > horizon:
                return math.inf
            span += _SEARCH_DAYS

    def local_text(self, t: float) -> str:
        """``t`` on the local clock: ``'Mon 2026-12-14 18:00 CET'``."""
        if math.isinf(t):
            return "never"
        return dt.datetime.fromtimestamp(t, self._tz).strftime("%a %Y-%m-%d %H:%M %Z")

    # -- helpers ----------------------------------------------------------------------------------
    def _date(self, t: float) -> dt.date:
        return dt.datetime.fromtimestamp(t, self._tz).date()

    def _ranges_of(self, day: dt.date) -> tuple[Range, ...]:
        return self._dates.get(day, self._days[day.weekday()])

    def _intervals(self, first: dt.date, last: dt.date) -> list[tuple[float, float]]:
        """The opening stretches of the ranges that start on ``first`` .. ``last``, in Unix time,
        sorted, those that touch joined."""
        out: list[tuple[float, float]] = []
        day = first
        while day <= last:
            for start, stop in self._ranges_of(day):
                a, b = self._instant(day, start), self._instant(day, stop)
                if out and a <= out[-1][1]:
                    out[-1] = (out[-1][0], max(out[-1][1], b))
                else:
                    out.append((a, b))
            day += dt.timedelta(days=1)
        return out

    def _instant(self, day: dt.date, minute: int) -> float:
        """The Unix time of ``minute`` after ``day``'s midnight on the local clock: a time the
        clock skips is the moment of the jump, a time it shows twice is the first showing."""
        day += dt.timedelta(days=minute // DAY_MINUTES)
        minute %= DAY_MINUTES
        naive = dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60)
        after = naive.replace(tzinfo=self._tz).timestamp()  # fold 0: the first showing, or past a jump
        if self._wall(after) == naive:
            return after
        before = naive.replace(tzinfo=self._tz, fold=1).timestamp()  # in a jump: a moment before it
        lo, hi = int(before), int(after)
        while hi - lo > 1:  # the first second whose local time is at or past ``naive``: the jump
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self._wall(mid) < naive else (lo, mid)
        return float(hi)

    def _wall(self, t: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(t, self._tz).replace(tzinfo=None)


def _spec(value: Any, path: str) -> tuple[str, ...]:
    """Ranges as written, checked for shape: () for closed."""
    if value == "closed" or value == []:
        return ()
    if not isinstance(value, (str, list)):
        raise ConfigError(f"{path}: expected {_EXAMPLE_RANGE}, got {_describe(value)}")
    _ranges(value, path)
    return tuple(v.strip() for v in (value if isinstance(value, list) else [value]))


def _date(key: Any, path: str) -> dt.date:
    """An exception's date: a YAML date, or text YYYY-MM-DD."""
    if isinstance(key, dt.date) and not isinstance(key, dt.datetime):
        return key
    if isinstance(key, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", key):
        try:
            return dt.date.fromisoformat(key)
        except ValueError:
            pass
    raise ConfigError(f"{path}: expected a date YYYY-MM-DD such as 2026-12-25, got {_describe(key)}")


def parse_hours(value: Any, path: str = "service.hours") -> Hours | None:
    """``service.hours`` from plain data: None for null (no opening hours: always in service)."""
    return None if value is None else Hours.from_config(value, path)


@dataclass(frozen=True)
class ServiceConfig:
    """When the gate is in service by itself (``service:`` in config.yaml)."""

    hours: Hours | None = opt(
        None,
        "opening hours: outside them the gate is out of service (via: schedule), staff may override until the next boundary; null: always in service",
    )


class HoursClock:
    """:meth:`Hours.is_open` kept until the next boundary: :meth:`at` recomputes only when ``t``
    leaves the stretch it last answered for (a boundary passed, or the clock stepped back).

    ``last``: the last answer, (open, next boundary, reason), as the service events and the page
    say it; None before the first."""

    def __init__(self, hours: Hours) -> None:
        self.hours = hours
        self.last: tuple[bool, float, str] | None = None
        self._since = math.inf
        self._until = -math.inf

    def at(self, t: float) -> tuple[bool, float, str]:
        """(open at ``t``, the next boundary after it, why: ``'opening hours: closed until ...'``)."""
        if not self._since <= t < self._until or self.last is None:
            open_, until = self.hours.is_open(t), self.hours.next_boundary(t)
            self._since, self._until = t, until
            self.last = (open_, until, f"opening hours: {'open' if open_ else 'closed'} until {self.hours.local_text(until)}")
        return self.last
