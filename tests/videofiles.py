"""Damaged copies of a real video file, for the tests of what the file source survives.

The shared clips keep their MP4 index (the ``moov`` box) at the end, after the media data, as
most cameras write it. Cut such a file short and the index is gone: no demuxer can find a single
frame in what is left. A file downloaded or copied for streaming has the index first
("faststart"); cut *that* short and the frames before the cut still play. :func:`faststart`
moves the index to the front (what ``qt-faststart`` and ``ffmpeg -movflags +faststart`` do, in
pure Python, because no ffmpeg binary is installed here) so both kinds of truncation can be
tested.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

# Boxes that only contain other boxes, on the way from moov down to the chunk offset tables.
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta"}


def _boxes(data: bytes | bytearray, start: int, end: int) -> list[tuple[bytes, int, int, int]]:
    """(type, offset, header size, total size) of the boxes in ``data[start:end]``."""
    out = []
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
            header = 16
        elif size == 0:
            size = end - i
        if size < header or i + size > end:
            raise ValueError(f"malformed box {kind!r} at {i}: size {size}")
        out.append((kind, i, header, size))
        i += size
    return out


def _shift_chunk_offsets(moov: bytearray, start: int, end: int, delta: int) -> int:
    """Add ``delta`` to every stco/co64 entry inside ``moov[start:end]``; returns how many tables."""
    tables = 0
    for kind, off, header, size in _boxes(moov, start, end):
        body = off + header
        if kind in _CONTAINERS:
            tables += _shift_chunk_offsets(moov, body, off + size, delta)
        elif kind in (b"stco", b"co64"):
            (count,) = struct.unpack(">I", moov[body + 4 : body + 8])  # after version and flags
            width, fmt = (4, ">I") if kind == b"stco" else (8, ">Q")
            for k in range(count):
                p = body + 8 + k * width
                (value,) = struct.unpack(fmt, moov[p : p + width])
                moov[p : p + width] = struct.pack(fmt, value + delta)
            tables += 1
    return tables


def faststart(src: Path, dest: Path) -> Path:
    """Write a copy of the MP4/MOV ``src`` with its ``moov`` box moved before ``mdat``."""
    data = src.read_bytes()
    top = _boxes(data, 0, len(data))
    kinds = [k for k, *_ in top]
    if b"moov" not in kinds or b"mdat" not in kinds:
        raise ValueError(f"{src} has no moov or no mdat box: {kinds}")
    if kinds.index(b"moov") < kinds.index(b"mdat"):
        dest.write_bytes(data)
        return dest
    _, moov_off, _, moov_size = top[kinds.index(b"moov")]
    moov = bytearray(data[moov_off : moov_off + moov_size])
    # Everything from mdat on moves back by the size of the moov inserted before it.
    if not _shift_chunk_offsets(moov, 8, len(moov), moov_size):
        raise ValueError(f"{src}: no chunk offset table found in moov")
    mdat_off = top[kinds.index(b"mdat")][1]
    rest = data[mdat_off:moov_off] + data[moov_off + moov_size :]
    dest.write_bytes(data[:mdat_off] + bytes(moov) + rest)
    return dest


def truncated(src: Path, dest: Path, fraction: float) -> Path:
    """A copy of ``src`` cut after ``fraction`` of its bytes (a download or copy that stopped)."""
    data = src.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


def garbled(src: Path, dest: Path, start: float, stop: float, seed: int = 1) -> Path:
    """A copy of ``src`` whose bytes between the fractions ``start`` and ``stop`` are random."""
    data = bytearray(src.read_bytes())
    a, b = int(len(data) * start), int(len(data) * stop)
    data[a:b] = random.Random(seed).randbytes(b - a)
    dest.write_bytes(bytes(data))
    return dest
