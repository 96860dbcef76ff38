"""TLS for the two links that cross a network: the live view's HTTPS (``http.tls``) and the MQTT
hook's connection to its broker (``hooks[].tls``).

Both are declared here and turned into :class:`ssl.SSLContext` objects here, so that the config
check and start-up read the files the same way and refuse a bad one in one line naming the key
(``http.tls.cert: cannot load ...``). Verification is on wherever there is something to verify:
the MQTT hook checks the broker's certificate and host name against ``ca`` (or the system's
CAs); there is no option to turn that off.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .schema import opt

__all__ = ["HttpTlsConfig", "MqttTlsConfig", "client_context", "server_context"]


@dataclass(frozen=True)
class HttpTlsConfig:
    """HTTPS for the live view, its streams, the API, /status and /metrics (``http.tls``)."""

    cert: str | None = opt(None, "PEM certificate (chain) file the server presents; null: plain HTTP")
    key: str | None = opt(None, "PEM private key file of cert (null: the key is in the cert file)")

    def __post_init__(self) -> None:
        if self.key is not None and self.cert is None:
            raise ValueError("key is set but cert is not; expected cert (and key, unless cert holds it), or neither")


@dataclass(frozen=True)
class MqttTlsConfig:
    """TLS to the broker (``hooks[].tls`` of an MQTT hook): the broker's certificate is always verified."""

    enabled: bool = opt(False, "connect over TLS (the broker's TLS port is usually 8883); the broker's certificate and host name are verified")
    ca: str | None = opt(None, "PEM file of the CA(s) that signed the broker's certificate; null: the system's CAs")
    cert: str | None = opt(None, "PEM client certificate, for a broker that requires one (require_certificate true)")
    key: str | None = opt(None, "PEM private key of cert (null: the key is in the cert file)")

    def __post_init__(self) -> None:
        if not self.enabled and (self.ca or self.cert or self.key):
            raise ValueError("ca, cert or key is set but enabled is false; expected enabled: true to use them")
        if self.key is not None and self.cert is None:
            raise ValueError("key is set but cert is not; expected cert (and key, unless cert holds it), or neither")


def _readable(path: str, key: str) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{key}: {path}: {'is not a file' if p.exists() else 'no such file'}; expected a PEM file")
    try:
        p.open("rb").close()
    except OSError as exc:
        raise ConfigError(f"{key}: {path}: cannot read it: {exc.strerror or exc}") from None
    return str(p)


def _load_chain(context: ssl.SSLContext, cert: str, key: str | None, where: str) -> None:
    cert_path = _readable(cert, f"{where}.cert")
    key_path = None if key is None else _readable(key, f"{where}.key")
    try:
        context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        what = exc.reason or str(exc)
        raise ConfigError(f"{where}.cert: cannot load {cert}{'' if key is None else ' with ' + key}: {what}; expected a PEM certificate and its private key") from None


def server_context(config: HttpTlsConfig, where: str = "http.tls") -> ssl.SSLContext | None:
    """The server's context for ``config`` (None without a certificate: plain HTTP)."""
    if config.cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, config.cert, config.key, where)
    return context


def client_context(config: MqttTlsConfig, where: str) -> ssl.SSLContext | None:
    """A client's context for ``config`` (None when TLS is off): the server's certificate
    verified against ``ca`` (else the system's CAs) and its host name checked."""
    if not config.enabled:
        return None
    ca = None if config.ca is None else _readable(config.ca, f"{where}.ca")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)  # ca: only those CAs are trusted
    except ssl.SSLError as exc:
        raise ConfigError(f"{where}.ca: cannot load {config.ca}: {exc.reason or exc}; expected PEM CA certificates") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.cert is not None:
        _load_chain(context, config.cert, config.key, where)
    return context
