"""TLS for the live view (``http.tls``), with certificates made at test time (tests/certs.py):
a real HTTPS client (urllib with an ssl context) gets the page, /status, the SSE events and the
MJPEG stream with the right CA, and refuses the server under a wrong CA or none."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from certs import Certs, make_certs
from running_gate import TOKEN, Running

from gatekeeper.config import HttpConfig
from gatekeeper.errors import ConfigError
from gatekeeper.tls import HttpTlsConfig, server_context


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def https_gate(tmp_path: Path, certs: Certs) -> Iterator[Running]:
    r = Running(tmp_path, tls=HttpTlsConfig(cert=str(certs.server_cert), key=str(certs.server_key)))
    yield r
    r.close()


def get(url: str, context: ssl.SSLContext, n: int | None = None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10, context=context) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read(n) if n else resp.read()


def test_the_page_status_and_streams_are_served_over_https_to_a_client_trusting_the_ca(https_gate: Running, certs: Certs) -> None:
    url = https_gate.server.url
    assert url.startswith("https://127.0.0.1:")
    trusting = ssl.create_default_context(cafile=str(certs.ca))
    status, kind, page = get(url, trusting)
    assert status == 200 and kind.startswith("text/html") and b"<html" in page.lower()
    assert get(url + "status", trusting)[0] == 200
    status, kind, first = get(url + "events", trusting, 200)
    assert status == 200 and kind.startswith("text/event-stream") and first.startswith(b"retry: 2000")
    status, kind, first = get(url + "stream.mjpg", trusting, 400)
    assert status == 200 and kind.startswith("multipart/x-mixed-replace") and b"--frame" in first


@pytest.mark.parametrize("ca", ["wrong", "system"])
def test_a_client_with_another_ca_refuses_the_server(https_gate: Running, certs: Certs, ca: str) -> None:
    context = ssl.create_default_context(cafile=str(certs.wrong_ca)) if ca == "wrong" else ssl.create_default_context()
    with pytest.raises(urllib.error.URLError) as exc:
        get(https_gate.server.url + "status", context)
    assert isinstance(exc.value.reason, ssl.SSLCertVerificationError)


def test_plain_http_to_the_https_port_gets_no_page(https_gate: Running) -> None:
    plain = https_gate.server.url.replace("https://", "http://") + "status"
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(urllib.request.Request(plain, headers={"Authorization": f"Bearer {TOKEN}"}), timeout=5).read()


def test_a_certificate_that_cannot_be_used_is_one_line_naming_the_key(tmp_path: Path, certs: Certs) -> None:
    cases = [
        (HttpTlsConfig(cert=str(tmp_path / "nope.pem")), f"http.tls.cert: {tmp_path}/nope.pem: no such file; expected a PEM file"),
        (HttpTlsConfig(cert=str(certs.server_cert), key=str(certs.client_key)), "http.tls.cert: cannot load"),  # a key of another certificate
        (HttpTlsConfig(cert=str(certs.server_cert)), "http.tls.cert: cannot load"),  # no key anywhere
        (HttpTlsConfig(cert=str(tmp_path)), "http.tls.cert: " + str(tmp_path) + ": is not a file"),
    ]
    for config, message in cases:
        with pytest.raises(ConfigError) as exc:
            server_context(config)
        assert str(exc.value).startswith(message) and "\n" not in str(exc.value), str(exc.value)
    with pytest.raises(ValueError, match="key is set but cert is not"):
        HttpConfig(tls=HttpTlsConfig(key=str(certs.server_key)))
