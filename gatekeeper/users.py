"""Named operators: one credential per person, stored as a hash, and a role.

The users file (``http.users`` in config.yaml) is YAML, one entry per person::

    maria: {role: operator, hash: "scrypt$16384$8$1$<salt>$<key>"}
    ali: {role: viewer, hash: "scrypt$...", expires: 2027-03-31}

``gatekeeper users add NAME --role ROLE`` prints such a line (the secret read from the terminal
or stdin, never from the command line). The hash is scrypt with a salt of its own per entry;
the secret itself is never stored. ``expires`` (a date, or a date and time; UTC unless it says
otherwise) refuses the credential from then on.

Roles, each allowing what the one before it does: ``viewer`` (the page, its streams, ``/status``,
``/metrics``), ``operator`` (and the actions: open, out of service, in service), ``admin``
(everything). The shared ``http.token`` is an admin credential that names nobody.

:func:`load_users` checks the whole file and raises one :class:`~gatekeeper.errors.ConfigError`
naming the entry and key; :meth:`Users.verify` decides on a name and a secret in constant time
(a name that does not exist costs the same scrypt as one that does). Every refusal goes through
:class:`AuthRefusals`: one log line without the secret, one count by reason and role.
"""

from __future__ import annotations

import base64
import binascii
import collections
import datetime as dt
import hashlib
import hmac
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["ROLES", "AuthRefusals", "Principal", "User", "Users", "allows", "check_http_access", "entry_line", "hash_secret", "load_users", "shared_users"]

log = logging.getLogger(__name__)

ROLES = ("viewer", "operator", "admin")
MIN_SECRET = 12  # characters of a person's secret
MAX_USERS_FILE = 1 << 20  # bytes
_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")  # also an MQTT topic level: no '/', '+', '#'
_SCRYPT = {"n": 1 << 14, "r": 8, "p": 1}
_KEY_BYTES, _SALT_BYTES = 32, 16
#: Bounds on the scrypt cost a users file may ask for: enough to be a real hash, not so much that a
#: bad file can make every request take seconds or gigabytes.
_N_RANGE, _R_RANGE, _P_RANGE = (1 << 10, 1 << 20), (1, 32), (1, 16)
_KEYS = {"role", "hash", "expires"}


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may (``admin`` > ``operator`` > ``viewer``).

    >>> allows("admin", "operator"), allows("viewer", "operator")
    (True, False)
    """
    return ROLES.index(role) >= ROLES.index(needed)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """The line a users file stores for ``secret``: ``scrypt$N$r$p$<salt>$<key>`` (base64).

    >>> hash_secret("correct horse battery", salt=b"0" * 16).startswith("scrypt$16384$8$1$MDAw")
    True
    """
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    key = hashlib.scrypt(secret.encode("utf-8"), salt=salt, dklen=_KEY_BYTES, maxmem=64 << 20, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(key)}"


@dataclass(frozen=True)
class _Hash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def matches(self, secret: str) -> bool:
        got = hashlib.scrypt(secret.encode("utf-8"), salt=self.salt, n=self.n, r=self.r, p=self.p, dklen=len(self.key), maxmem=1 << 30)
        return hmac.compare_digest(got, self.key)


def _parse_hash(text: Any) -> _Hash:
    """A stored hash, or ValueError saying what is wrong with it (never repeating it)."""
    expected = "expected scrypt$N$r$p$SALT$KEY as printed by `gatekeeper users add`"
    if not isinstance(text, str):
        raise ValueError(f"{expected}, got a {type(text).__name__}")
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError(f"{expected}, got {len(parts)} '$'-separated fields starting {parts[0][:10]!r}")
    try:
        n, r, p = (int(v) for v in parts[1:4])
        salt, key = (base64.b64decode(v, validate=True) for v in parts[4:6])
    except (ValueError, binascii.Error):
        raise ValueError(f"{expected}; N, r, p are integers and SALT, KEY base64") from None
    for name, value, (lo, hi) in (("N", n, _N_RANGE), ("r", r, _R_RANGE), ("p", p, _P_RANGE)):
        if not lo <= value <= hi:
            raise ValueError(f"{expected}; scrypt {name} from {lo} to {hi}, got {value}")
    if n & (n - 1):
        raise ValueError(f"{expected}; scrypt N a power of 2, got {n}")
    if len(salt) < 8 or len(key) < 16:
        raise ValueError(f"{expected}; a salt of 8+ bytes and a key of 16+ bytes, got {len(salt)} and {len(key)}")
    return _Hash(n, r, p, salt, key)


def _parse_expires(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expected a date such as 2027-03-31 or a time such as 2027-03-31T18:00:00+01:00, got {value[:40]!r}") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise ValueError(f"expected a date such as 2027-03-31, got a {type(value).__name__}")
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class User:
    """One person: their name, role, stored hash and when their credential expires (None: never)."""

    name: str
    role: str
    hash: _Hash
    expires: dt.datetime | None = None


@dataclass(frozen=True)
class Principal:
    """Who a request or command is from: the credential's owner (``name`` None for the shared
    ``http.token``, which names nobody) and the role it has."""

    name: str | None
    role: str

    def __str__(self) -> str:
        return f"{self.name} ({self.role})" if self.name is not None else f"http.token ({self.role})"


class Users:
    """The people of a users file, by name. :meth:`verify` remembers the secrets it has accepted
    (as a keyed digest, never the secret) so that a page's requests do not each cost an scrypt."""

    def __init__(self, users: Mapping[str, User], source: str = "") -> None:
        self.users = dict(users)
        self.source = source
        self._key = os.urandom(32)  # this process's own: a digest kept here is worthless elsewhere
        self._accepted: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._dummy = _parse_hash(hash_secret("not a secret", salt=b"\0" * _SALT_BYTES))
        self.refusals = AuthRefusals()  # every refusal of these users' credentials, HTTP and MQTT

    def __len__(self) -> int:
        return len(self.users)

    def role_of(self, name: str) -> str | None:
        user = self.users.get(name)
        return None if user is None else user.role

    def standing(self, name: str, now: dt.datetime | None = None) -> tuple[str | None, str | None]:
        """``(role, None)`` for a person whose entry is in force (an MQTT user the broker has
        authenticated), else ``(role or None, "unknown_user" or "expired")``."""
        user = self.users.get(name)
        if user is None:
            return None, "unknown_user"
        if user.expires is not None and (now or dt.datetime.now(dt.timezone.utc)) >= user.expires:
            return user.role, "expired"
        return user.role, None

    def verify(self, name: str, secret: str, now: dt.datetime | None = None) -> tuple[User | None, str | None]:
        """``(user, None)`` when ``secret`` is ``name``'s and has not expired, else ``(user or
        None, reason)`` with reason ``unknown_user``, ``bad_password`` or ``expired``."""
        user = self.users.get(name)
        digest = hmac.new(self._key, f"{name}\0{secret}".encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        with self._lock:
            seen = self._accepted.get(name)
        if seen is not None and hmac.compare_digest(seen, digest):
            ok = True
        else:
            # An unknown name costs the same scrypt as a known one: the time says nothing about who exists.
            ok = (user.hash if user is not None else self._dummy).matches(secret) and user is not None
            if ok:
                with self._lock:
                    self._accepted[name] = digest
        if user is None:
            return None, "unknown_user"
        if not ok:
            return user, "bad_password"
        if user.expires is not None and (now or dt.datetime.now(dt.timezone.utc)) >= user.expires:
            return user, "expired"
        return user, None


_shared: dict[tuple[str, int, int], Users] = {}
_shared_lock = threading.Lock()


def shared_users(path: str | None, key: str = "http.users") -> Users | None:
    """The users of ``path`` (None: no users file), loaded once per process and file version, so
    that the web server and every camera's controls share one object and one refusal count."""
    if path is None:
        return None
    try:
        st = Path(path).expanduser().stat()
        version = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        return load_users(path, key)  # raises, naming what is wrong
    with _shared_lock:
        if version not in _shared:
            _shared[version] = load_users(path, key)
        return _shared[version]


def entry_line(name: str, role: str, secret: str, expires: str | None = None) -> str:
    """The line of the users file for one person (``NAME: {role: ..., hash: ...}``); ValueError
    saying what is wrong with the name, role, secret or expiry date (never repeating the secret)."""
    if not _NAME_RE.match(name):
        raise ValueError(f"NAME: expected 1 to 64 of A-Z a-z 0-9 _ . @ -, got {name[:40]!r}")
    if role not in ROLES:
        raise ValueError(f"--role: expected one of {', '.join(ROLES)}, got {role[:40]!r}")
    if len(secret) < MIN_SECRET:
        raise ValueError(f"the secret: expected at least {MIN_SECRET} characters, got {len(secret)}")
    if "\n" in secret or "\r" in secret:
        raise ValueError("the secret: expected one line")
    fields = f"role: {role}, hash: '{hash_secret(secret)}'"
    if expires is not None:
        when = _parse_expires(expires)  # ValueError naming what was expected
        assert when is not None
        fields += f", expires: '{when.isoformat()}'"
    return f"{name}: {{{fields}}}"


def check_http_access(http: Any) -> None:
    """Load what ``http`` (the config's ``http:``) names as start-up does, the users file and the
    TLS certificate and key; :class:`ConfigError` naming the key for the first that cannot be used."""
    from .tls import server_context

    shared_users(http.users)
    server_context(http.tls)


def load_users(path: str, key: str = "http.users") -> Users:
    """The users of the YAML file at ``path``; :class:`ConfigError` naming ``key``, the entry and
    what was wrong, for a file that cannot be read or any entry that is not right."""
    import yaml

    where = f"{key}: {path}"
    try:
        with Path(path).expanduser().open("rb") as f:
            raw = f.read(MAX_USERS_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the users file: {exc.strerror or exc}") from None
    if len(raw) > MAX_USERS_FILE:
        raise ConfigError(f"{where}: expected a users file of at most {MAX_USERS_FILE} bytes")
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{where}: expected a mapping of user name to {{role, hash}}, one per person, got {type(data).__name__}")
    users: dict[str, User] = {}
    for name, entry in data.items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(f"{where}: {str(name)[:40]!r}: expected a user name of 1 to 64 of A-Z a-z 0-9 _ . @ -")
        users[name] = _user(name, entry, f"{where}: {name}")
    return Users(users, path)


def _user(name: str, entry: Any, where: str) -> User:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with role and hash, got {type(entry).__name__}")
    unknown = sorted(map(str, set(entry) - _KEYS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; expected one of {', '.join(sorted(_KEYS))}")
    for required in ("role", "hash"):
        if required not in entry:
            raise ConfigError(f"{where}.{required}: required key is missing")
    if entry["role"] not in ROLES:
        raise ConfigError(f"{where}.role: expected one of {', '.join(ROLES)}, got {str(entry['role'])[:40]!r}")
    try:
        stored = _parse_hash(entry["hash"])
    except ValueError as exc:
        raise ConfigError(f"{where}.hash: {exc}") from None
    try:
        expires = _parse_expires(entry.get("expires"))
    except ValueError as exc:
        raise ConfigError(f"{where}.expires: {exc}") from None
    return User(name, entry["role"], stored, expires)


class AuthRefusals:
    """Credentials refused, counted by (reason, role) for ``gatekeeper_auth_refusals_total``;
    ``role`` is the role of the user the credential named, ``none`` where there was none."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def refuse(self, reason: str, role: str | None, message: str | None, *, level: int = logging.WARNING) -> None:
        """Count one refusal; log ``message`` (one line, no secret in it) unless it is None
        (the caller logs it in its own line)."""
        if message is not None:
            log.log(level, "access refused (%s, role %s): %s", reason, role or "none", message)
        with self._lock:
            self.counts[(reason, role or "none")] += 1

    def items(self) -> list[tuple[tuple[str, str], int]]:
        """((reason, role), count) pairs, sorted."""
        with self._lock:
            return sorted(self.counts.items())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {f"{reason}/{role}": n for (reason, role), n in sorted(self.counts.items())}
