"""Where the live view listens: ``--http HOST:PORT``, and whether that is reachable from outside."""

from __future__ import annotations

import ipaddress
import socket

from ..errors import ConfigError

__all__ = ["check_exposure", "is_loopback", "listen_socket", "parse_listen"]


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT`` -> (host, port); host defaults to loopback.

    >>> parse_listen("8080"), parse_listen("0.0.0.0:80"), parse_listen("[::1]:8080")
    (('127.0.0.1', 8080), ('0.0.0.0', 80), ('::1', 8080))
    """
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"--http {text!r}: expected HOST:PORT, with an IPv6 address in brackets ([::1]:8080)")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"--http {text!r}: expected HOST:PORT with a port number, e.g. 127.0.0.1:8080") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"--http {text!r}: expected a port from 0 to 65535, got {port}")
    # An empty host would make the server listen on every interface: loopback unless told otherwise.
    return host or "127.0.0.1", port


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; any other name counts as reachable from outside."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so it is treated as public


def check_exposure(host: str, port: int, token: str | None) -> None:
    """Refuse (:class:`ConfigError`) to listen beyond loopback without a credential: ``token`` is
    ``http.token`` or, failing it, ``http.users`` (what the caller has; None: neither).

    >>> check_exposure("127.0.0.1", 8080, None)
    >>> check_exposure("0.0.0.0", 8080, None)
    Traceback (most recent call last):
    ...
    gatekeeper.errors.ConfigError: --http 0.0.0.0:8080: listening beyond loopback needs http.token (16+ characters) or http.users in the config; expected a loopback address such as 127.0.0.1:8080, or a credential
    """
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"--http {host}:{port}: listening beyond loopback needs http.token (16+ characters) or http.users "
            "in the config; expected a loopback address such as 127.0.0.1:8080, or a credential"
        )


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening (port 0: one the system picks), for a
    server to serve on later; until then connections wait in its backlog. Raises
    :class:`ConfigError` when the address cannot be listened on (in use, not of this machine)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        return socket.create_server(address, family=family, backlog=128)
    except OSError as exc:  # socket.gaierror included: a name that does not resolve
        raise ConfigError(f"--http {host}:{port}: cannot listen there: {exc}") from None
