"""Record batches as stored in one SQLite row.

A batch row holds consecutive records of one partition: per record a 20-byte header
(timestamp, key length, value length, headers length; -1 means null) followed by the bytes.
Offsets are ``base + i`` unless compaction left gaps; then ``deltas`` holds each record's
offset minus the base. Storing many records per row is what makes SQLite keep up with
a log: one B-tree insert per batch instead of per record. Each row carries a CRC32 of its
``data`` and ``deltas`` (rows written before checksums were added carry NULL: not checked).
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections.abc import Sequence
from functools import partial
from typing import Any

from ferryman.records import Headers, PendingHeaders, Polled

_HEAD = struct.Struct("<qiii")
_HEAD_SIZE = _HEAD.size
_HEADER = struct.Struct("<HI")
MAX_HEADER_NAME = 0xFFFF
"""Longest header name in UTF-8 bytes: its length is stored in two bytes."""
pack_head = _HEAD.pack
_unpack_head = _HEAD.unpack_from


def encode_headers(headers: Headers) -> bytes:
    """Headers as bytes: per header a name length, a value length, the UTF-8 name, the value."""
    parts: list[bytes] = []
    for name, value in headers:
        if not isinstance(value, bytes | bytearray | memoryview):
            # bytes(5) would silently store five zero bytes
            raise TypeError(
                f"header {name!r} has a {type(value).__name__} value; header values must be "
                "bytes: encode it first"
            )
        if not isinstance(name, str):
            raise TypeError(
                f"header name {name!r} is a {type(name).__name__}; header names must be str"
            )
        raw = name.encode()
        if len(raw) > MAX_HEADER_NAME:
            raise ValueError(
                f"header name {name[:40]!r}... is {len(raw)} bytes long in UTF-8; the embedded "
                f"broker takes names of up to {MAX_HEADER_NAME} bytes: use a short name and "
                "put long data in the header's value"
            )
        data = bytes(value)
        parts.append(_HEADER.pack(len(raw), len(data)))
        parts.append(raw)
        parts.append(data)
    return b"".join(parts)


class DamagedBatch(Exception):
    """A batch row whose bytes fail their checksum or do not decode; says why."""


def checksum(deltas: bytes | None, data: bytes) -> int:
    """CRC32 of a batch row (zlib's, as no CRC32C ships with Python), over data then deltas."""
    crc = zlib.crc32(data)
    return crc if deltas is None else zlib.crc32(deltas, crc)


def verify(deltas: bytes | None, data: bytes, crc: int | None) -> None:
    """Raise DamagedBatch if a row does not match its checksum (None: a row from before them)."""
    if crc is not None and checksum(deltas, data) != crc:
        raise DamagedBatch("its checksum does not match its bytes")


def decode_headers(data: bytes) -> Headers:
    out: list[tuple[str, bytes]] = []
    pos = 0
    end = len(data)
    while pos < end:
        nlen, vlen = _HEADER.unpack_from(data, pos)
        pos += 6
        name = data[pos : pos + nlen].decode()
        pos += nlen
        out.append((name, data[pos : pos + vlen]))
        pos += vlen
    return tuple(out)


def decode_batch(
    topic: str,
    partition: int,
    base: int,
    deltas: bytes | None,
    data: bytes,
    start: int,
    crc: int | None = None,
    *,
    pending: bool = False,
) -> list[Polled]:
    """The records of one batch row whose offset is at least ``start``, as rows; with
    ``pending``, each record's headers are decoded only when called for (see Polled).

    Raises DamagedBatch when the row fails its checksum or its bytes do not parse. Headers are
    left pending only in a row whose checksum held (a row from before checksums is decoded
    whole, so that damage in its headers is found here, not by whoever reads them).
    """
    verify(deltas, data, crc)
    try:
        return _decode(topic, partition, base, deltas, data, start, pending and crc is not None)
    except (struct.error, ValueError, IndexError) as exc:
        raise DamagedBatch(f"its bytes do not parse ({exc})") from exc


def _decode(
    topic: str,
    partition: int,
    base: int,
    deltas: bytes | None,
    data: bytes,
    start: int,
    pending: bool,
) -> list[Polled]:
    out: list[Polled] = []
    append = out.append
    gaps = offsets_of(deltas) if deltas is not None else None
    pos = 0
    end = len(data)
    i = 0
    while pos < end:
        ts, klen, vlen, hlen = _unpack_head(data, pos)
        if hlen < 0 or klen < -1 or vlen < -1:
            raise ValueError(f"a negative length at byte {pos}")
        pos += _HEAD_SIZE
        offset = base + (gaps[i] if gaps is not None else i)
        i += 1
        if offset < start:
            pos += max(klen, 0) + max(vlen, 0) + hlen
            continue
        if klen >= 0:
            key: bytes | None = data[pos : pos + klen]
            pos += klen
        else:
            key = None
        if vlen >= 0:
            value: bytes | None = data[pos : pos + vlen]
            pos += vlen
        else:
            value = None
        headers: Headers | PendingHeaders = ()
        if hlen:
            block = data[pos : pos + hlen]
            headers = partial(decode_headers, block) if pending else decode_headers(block)
            pos += hlen
        append((topic, partition, offset, key, value, headers, ts))
    if pos != end:
        raise ValueError(f"the last record ends at byte {pos} of {end}")
    return out


class Raw:
    """One stored record, undecoded beyond what the cleaner needs."""

    __slots__ = ("encoded", "key", "offset", "size", "tombstone", "ts")

    def __init__(
        self, offset: int, ts: int, key: bytes | None, tombstone: bool, size: int, encoded: bytes
    ) -> None:
        self.offset = offset
        self.ts = ts
        self.key = key
        self.tombstone = tombstone
        self.size = size
        self.encoded = encoded


def split_batch(base: int, deltas: bytes | None, data: bytes, crc: int | None = None) -> list[Raw]:
    """Every record of a batch row, each with its own encoded bytes (for rewriting).

    Raises DamagedBatch when the row fails its checksum or its bytes do not parse.
    """
    verify(deltas, data, crc)
    try:
        if crc is None:
            # A row from before checksums: parsed whole, header blocks too, as its rewrite gets a
            # checksum, and a reader trusts a checksummed row's headers (decoded only if read).
            _decode("", 0, base, deltas, data, 0, False)
        return _split(base, deltas, data)
    except (struct.error, ValueError, IndexError) as exc:
        raise DamagedBatch(f"its bytes do not parse ({exc})") from exc


def _split(base: int, deltas: bytes | None, data: bytes) -> list[Raw]:
    out: list[Raw] = []
    gaps = offsets_of(deltas) if deltas is not None else None
    pos = 0
    end = len(data)
    i = 0
    while pos < end:
        ts, klen, vlen, hlen = _unpack_head(data, pos)
        if hlen < 0 or klen < -1 or vlen < -1:
            raise ValueError(f"a negative length at byte {pos}")
        body = pos + _HEAD_SIZE
        key = data[body : body + klen] if klen >= 0 else None
        size = max(klen, 0) + max(vlen, 0) + hlen
        nxt = body + size
        offset = base + (gaps[i] if gaps is not None else i)
        out.append(Raw(offset, ts, key, vlen < 0, size, data[pos:nxt]))
        pos = nxt
        i += 1
    if pos != end:
        raise ValueError(f"the last record ends at byte {pos} of {end}")
    return out


def join_batch(base: int, records: Sequence[Raw]) -> tuple[bytes | None, bytes]:
    """(deltas, data) of a rewritten batch; deltas is None when offsets have no gaps."""
    offsets = [r.offset - base for r in records]
    dense = offsets == list(range(len(offsets)))
    deltas = None if dense else array("q", offsets).tobytes()
    return deltas, b"".join(r.encoded for r in records)


def offsets_of(deltas: bytes) -> Any:
    gaps = array("q")
    gaps.frombytes(deltas)
    return gaps
