"""Secrets kept out of what gatekeeper prints: one masking function for every surface.

``--check-config`` masks with it, and so does everything that names a video source (a camera
URL often carries ``user:password@`` or a ``?token=``): the capture's error and log lines, the
FAULT and RECOVERED ``reason`` (and with it the journal, the live page and ``/status``), the
report's title and the lines native libraries write to stderr. Only the secret goes: the
scheme, host, port, path and the other parameters stay, so the operator still sees which camera
it was.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["REDACTED", "redact_text", "source_name"]

REDACTED = "<redacted>"

#: Query parameters (and ``#fragment`` parameters) whose values ``redact_text`` masks in URLs.
_SECRET_PARAM = re.compile(r"key|token|secret|pass|pwd|sig|auth|credential|session|jwt", re.IGNORECASE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_AUTH_SCHEME = re.compile(r"\b(bearer|basic|token)(\s+)[^\s\"']+", re.IGNORECASE)


def _redact_params(text: str) -> str:
    pairs = []
    for pair in text.split("&"):
        key, eq, value = pair.partition("=")
        if eq and value and _SECRET_PARAM.search(urllib.parse.unquote_plus(key)):
            pair = f"{key}={REDACTED}"
        pairs.append(pair)
    return "&".join(pairs)


def _split_url(url: str) -> urllib.parse.SplitResult:
    """``urlsplit``, and for a URL it refuses (an unclosed ``[``) the same parts split by hand:
    a malformed URL is named in an error message, and must keep its secrets there too."""
    try:
        return urllib.parse.urlsplit(url)
    except ValueError:
        scheme, _, rest = url.partition("://")
        netloc = re.match(r"[^/?#]*", rest).group(0)  # type: ignore[union-attr]  # always matches
        rest, _, fragment = rest[len(netloc) :].partition("#")
        path, _, query = rest.partition("?")
        return urllib.parse.SplitResult(scheme, netloc, path, query, fragment)


def _redact_url(url: str) -> str:
    parts = _split_url(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        # user:password keeps the user; a lone user part is usually a token (https://TOKEN@host).
        netloc = f"{user}:{REDACTED}@{host}" if colon else f"{REDACTED}@{host}"
    fragment = _redact_params(parts.fragment) if "=" in parts.fragment else parts.fragment
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, _redact_params(parts.query), fragment))


def redact_text(text: str) -> str:
    """``text`` with the secrets it may carry masked: the credentials of every URL in it
    (``https://user:<redacted>@host``), URL parameters with secret-looking names (``key``,
    ``token``, ``secret``, ``password``, ``sig``, ``auth``...) and ``Bearer``/``Basic``/``Token``
    credentials (a command hook's ``-H 'Authorization: Bearer ...'``).

    >>> redact_text("https://user:pass@host/x?key=abc&page=2")
    'https://user:<redacted>@host/x?key=<redacted>&page=2'
    """
    text = _URL.sub(lambda m: _redact_url(m.group(0)), text)
    return _AUTH_SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def source_name(target: int | str) -> str:
    """How messages name a video source: a camera index as is, a URL or path quoted with its
    secrets masked (see :func:`redact_text`).

    >>> source_name("rtsp://admin:hunter2@10.0.0.7:554/stream1?token=abc&channel=1")
    "'rtsp://admin:<redacted>@10.0.0.7:554/stream1?token=<redacted>&channel=1'"
    >>> source_name(0)
    '0'
    """
    return repr(redact_text(target)) if isinstance(target, str) else repr(target)
