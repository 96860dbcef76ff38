"""The declaration helper shared by every config dataclass (see :mod:`gatekeeper.config`), and
the checks of a value that more than one place reads: every number (:func:`check_number`: finite,
in bounds, a duration or rate never negative nor beyond ten years) and a camera's URL
(:func:`check_url`)."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from .redact import source_name

__all__ = ["check_bounds", "check_number", "check_url", "opt"]


def opt(default: Any, doc: str, **bounds: float) -> Any:
    """A config field: its default, a one-line description, and numeric bounds (ge, gt, le)."""
    meta = {"doc": doc, **bounds}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def bounds_text(meta: dict[str, Any]) -> str:
    """'>= 0 and <= 1' for a field's bounds metadata."""
    parts = [f">= {meta['ge']}" if "ge" in meta else "", f"> {meta['gt']}" if "gt" in meta else "", f"<= {meta['le']}" if "le" in meta else ""]
    return " and ".join(p for p in parts if p)


#: Name endings of the keys that are durations, with the seconds in one of their unit, and its name.
DURATION_UNITS = {"_s": (1.0, "s"), "_seconds": (1.0, "s"), "_ms": (0.001, "ms"), "_days": (86400.0, "days")}
#: Name endings of the keys that are rates (per second).
RATE_ENDINGS = ("_fps",)
#: The longest duration any key takes, and the slowest rate's period: ten years. Longer is a
#: mistake, and beyond what a timer takes (``Event.wait`` refuses about 292 years).
MAX_DURATION_S = 10 * 365 * 86400.0


def check_number(name: str, value: float, meta: Mapping[str, Any]) -> str | None:
    """Why ``value`` cannot be the key ``name`` with bounds ``meta``; None when it can.

    One rule for every number of the schema, read from a file or set in code: it is finite
    (``.nan`` and ``.inf`` are no setting of anything) and within its declared bounds. A key whose
    name says it is a duration (``_s``, ``_seconds``, ``_ms``, ``_days``) or a rate (``_fps``) is
    never negative, even where no bound is declared, and lasts at most :data:`MAX_DURATION_S`
    (a rate: its period).
    """
    meta = dict(meta)
    unit = next((u for end, u in DURATION_UNITS.items() if name.endswith(end)), None)
    rate = name.endswith(RATE_ENDINGS)
    if (unit or rate) and "ge" not in meta and "gt" not in meta:
        meta["ge"] = 0
    bounds = bounds_text(meta)
    if math.isinf(value) or (math.isnan(value) and not bounds):
        return f"expected a finite number {bounds}".rstrip() + f", got {value!r}"
    if math.isnan(value) or ("ge" in meta and value < meta["ge"]) or ("gt" in meta and value <= meta["gt"]) or ("le" in meta and value > meta["le"]):
        return f"expected a value {bounds}, got {value!r}"
    if unit is not None and value * unit[0] > MAX_DURATION_S:
        return f"expected a duration of at most {MAX_DURATION_S / unit[0]:.0f} {unit[1]} (ten years), got {value!r}"
    if rate and 0 < value < 1 / MAX_DURATION_S:
        return f"expected a rate of at least once in ten years ({1 / MAX_DURATION_S:.3g} per second), got {value!r}"
    return None


def check_bounds(obj: Any) -> None:
    """Raise ValueError naming the first numeric field that :func:`check_number` refuses.

    The config loader checks numbers as it reads a file; this catches the same mistakes in
    objects built in code (``GateConfig(cooldown_s=-1)``).
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        problem = check_number(f.name, value, f.metadata)
        if problem is not None:
            raise ValueError(f"{f.name}: {problem}")



# -- URLs ----------------------------------------------------------------------------------------

#: The largest camera index taken (``--camera``, ``cameras.NAME.camera``; on Linux,
#: ``/dev/video<index>``). OpenCV reads a number from 100 up as a backend code plus an index (200
#: is camera 0 through V4L2, 2600 an Orbbec camera), a negative one asks some backends for "any
#: camera" and has crashed them, and one beyond 32 bits raises from inside cv2.
MAX_CAMERA_INDEX = 99

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: Schemes whose host may be left out: the stream is listened for (udp://@:5000, srt://:9000?mode=listener).
_LISTEN_SCHEMES = frozenset({"udp", "rtp", "srt", "tcp"})
STREAM_URL_EXAMPLE = "rtsp://HOST:554/PATH or http://HOST/video.mjpg"


def _url_problem(url: str) -> str | None:
    """What keeps ``url`` from being a network address, or None. Parsed by hand: ``urllib``
    raises on some mistakes (an unclosed ``[``) and leaves others (a port of ``abc``) for the
    first connection to trip over."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "it contains a space or a control character; expected one written without them (spaces as %20)"
    if not _SCHEME.match(url):
        return f"it has no scheme; expected a stream URL such as {STREAM_URL_EXAMPLE}"
    scheme, _, rest = url.partition("://")
    netloc = re.match(r"[^/?#]*", rest).group(0)  # type: ignore[union-attr]  # always matches
    hostport = netloc.rpartition("@")[2]  # the credentials, if any, never reach a message
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        if not bracket:
            return "its host's '[' has no closing ']'; expected an IPv6 address in brackets, such as [fe80::1]:554"
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"its host [{host}] is not an IPv6 address; expected one such as [fe80::1]"
        if after and not after.startswith(":"):
            return f"{after!r} follows its host [{host}]; expected a ':' and a port, or nothing"
        port = after[1:] if after else None
    else:
        host, colon, port_text = hostport.partition(":")
        port = port_text if colon else None
        if "[" in host or "]" in host:
            return f"its host {host!r} has a bracket; expected an IPv6 address wholly in brackets, such as [fe80::1]"
        if host:
            try:
                host.encode("idna")
            except UnicodeError:
                return f"its host {host!r} is not a host name; expected labels of 1 to 63 characters between dots"
    if port is not None:
        # The port text is not echoed: in 'user:password/path' (the host left out) it is the password.
        if not port.isascii() or not port.isdigit():
            return "its port is not a number; expected a port from 1 to 65535 after the host's ':'"
        if not 1 <= int(port) <= 65535:
            return f"its port {int(port)} is out of range; expected a port from 1 to 65535"
    if not host and scheme.lower() not in _LISTEN_SCHEMES:
        return f"it has no host; expected a stream URL such as {STREAM_URL_EXAMPLE}"
    return None


def check_url(url: str) -> str:
    """``url`` when it is a well-formed network address (a scheme, a host, a port from 1 to
    65535 if any); otherwise ValueError saying what is wrong, with the URL's secrets masked.

    One check for a camera's URL wherever it is given (``--url``, ``cameras.NAME.url``), so a
    URL the config check passes is one the capture can try to open: whether anything answers is
    the capture's business, at run time.

    >>> check_url("rtsp://10.0.0.7:554/stream1")
    'rtsp://10.0.0.7:554/stream1'
    >>> check_url("http://admin:hunter2@10.0.0.7:99999/x")
    Traceback (most recent call last):
    ...
    ValueError: 'http://admin:<redacted>@10.0.0.7:99999/x': its port 99999 is out of range; expected a port from 1 to 65535
    """
    problem = _url_problem(url)
    if problem is not None:
        raise ValueError(f"{source_name(url)}: {problem}")
    return url
