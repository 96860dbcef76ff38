"""The declaration helper shared by every config dataclass (see :mod:`gatekeeper.config`), and
the checks of a value that more than one place reads: a camera's URL (:func:`check_url`)."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from dataclasses import field
from typing import Any

from .redact import source_name

__all__ = ["check_bounds", "check_url", "opt"]


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


def check_bounds(obj: Any) -> None:
    """Raise ValueError naming the first numeric field outside its declared bounds (or NaN).

    The config loader checks bounds as it reads a file; this catches the same mistakes in
    objects built in code (``GateConfig(cooldown_s=-1)``).
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        meta = f.metadata
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        bad = math.isnan(value) or ("ge" in meta and value < meta["ge"]) or ("gt" in meta and value <= meta["gt"]) or ("le" in meta and value > meta["le"])
        if bad:
            raise ValueError(f"{f.name}: expected a value {bounds_text(meta)}, got {value!r}")



# -- URLs ----------------------------------------------------------------------------------------

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
