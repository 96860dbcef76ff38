"""The park's paho client, reading the broker's bytes in large chunks.

paho-mqtt reads a packet with several ``recv`` calls (its first byte, each byte of its length,
then its body) and handles one packet per turn of its loop (a ``select`` each). The park takes
hundreds of small messages a second, so that was most of its CPU. :class:`BufferedClient` reads
up to 64 KiB at a time into a buffer and hands paho its bytes from there; the buffer answers
paho's ``pending()`` (as an SSL socket's does, which paho already asks), so a buffered packet is
read at once, and one turn of the loop handles every packet already buffered. The packets, their
order and what paho does with them (acknowledgements included) are unchanged.

>>> class Wire:  # a socket with 7 bytes to read
...     data = [b"abcdefg"]
...     def recv(self, n):
...         if not self.data:
...             raise BlockingIOError()
...         return self.data.pop(0)
>>> sock = ReadBuffer(Wire())
>>> sock.recv(1), sock.pending(), sock.recv(2), sock.recv(10), sock.pending()
(b'a', 6, b'bc', b'defg', 0)
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

__all__ = ["BufferedClient", "ReadBuffer"]

_CHUNK = 65536


class ReadBuffer:
    """A socket whose ``recv`` reads ahead; everything else is the socket's."""

    __slots__ = ("_buf", "_pos", "_sock", "reads")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        self.reads = 0  # reads from the socket

    def recv(self, n: int) -> bytes:
        pos, buf = self._pos, self._buf
        if pos < len(buf):
            part = buf[pos : pos + n]
            self._pos = pos + len(part)
            return part
        data = self._sock.recv(max(n, _CHUNK))  # BlockingIOError (nothing there) and b"" (closed) go to paho as they are
        self.reads += 1
        if len(data) <= n:
            return data
        self._buf, self._pos = data, n
        return data[:n]

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def pending(self) -> int:
        """Bytes readable without the socket: the buffer's (and an SSL socket's own)."""
        inner = getattr(self._sock, "pending", None)
        return self.buffered() + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferedClient(mqtt.Client):
    """paho's client with its socket behind a :class:`ReadBuffer`."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        return sock if self._transport == "websockets" else ReadBuffer(sock)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho reads one packet a turn; here the packets already buffered are handled too, up to
        one more read from the socket: the turn ends then (pending() brings paho back at once), so
        a broker sending without pause still leaves paho's loop its writes (the PUBACKs), pings
        and stop."""
        rc = super().loop_read(max_packets)
        sock = self._sock
        if not isinstance(sock, ReadBuffer):
            return rc
        reads = sock.reads
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is sock and sock.buffered() and sock.reads == reads:
            rc = super().loop_read(max_packets)
        return rc
