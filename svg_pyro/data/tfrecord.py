"""TFRecord files and the ``tf.train.Example`` protobuf, read without TensorFlow (for BAIR).

A record is: uint64 length, uint32 masked CRC32C of the length bytes, the data, uint32 masked
CRC32C of the data, all little-endian; a file may be gzip-compressed. An Example is
Example{features = 1: Features{feature = 1: map<string, Feature>}}.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np


class CorruptRecord(ValueError):
    """A TFRecord file or an Example in it cannot be read: truncated, a checksum or the wire format."""


def _crc32c(data) -> int:
    import google_crc32c  # Google's CRC32C (Castagnoli), C implementation with a Python fallback

    return google_crc32c.value(bytes(data))


def masked_crc32c(data) -> int:
    """TFRecord's checksum: CRC32C rotated right by 15 bits plus a constant, modulo 2^32."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_tfrecords(path: Path):
    """Yield the records of a TFRecord file (optionally gzip-compressed), checking every CRC.

    A record is: uint64 length, uint32 masked CRC of the length bytes, the data, uint32 masked CRC
    of the data, all little-endian.
    """
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
        number, offset = 0, 0
        while True:
            try:
                header = f.read(12)
                if not header:
                    return
                where = f"record {number} (byte {offset})"
                if len(header) < 12:
                    raise CorruptRecord(f"file ends inside the header of {where} (truncated)")
                length_bytes, (length_crc,) = header[:8], struct.unpack("<I", header[8:])
                if masked_crc32c(length_bytes) != length_crc:
                    raise CorruptRecord(f"length checksum mismatch in {where}")
                (length,) = struct.unpack("<Q", length_bytes)
                data = f.read(length)
                footer = f.read(4)
            except (OSError, EOFError, zlib.error) as err:  # a damaged gzip stream
                raise CorruptRecord(f"cannot read it ({err})") from err
            if len(data) < length or len(footer) < 4:
                raise CorruptRecord(f"file ends inside {where} (truncated)")
            if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise CorruptRecord(f"data checksum mismatch in {where}")
            yield data
            number, offset = number + 1, offset + 16 + length


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise CorruptRecord("malformed protobuf (varint runs past the end)")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview):
    """Yield (field number, wire type, value) of one protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1 or wire == 5:
            end = pos + (8 if wire == 1 else 4)
            value, pos = buf[pos:end], end
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise CorruptRecord(f"malformed protobuf (wire type {wire})")
        if pos > len(buf):
            raise CorruptRecord("malformed protobuf (field runs past the end)")
        yield number, wire, value


def _feature_values(buf: memoryview) -> list:
    """Feature{bytes_list = 1 | float_list = 2 | int64_list = 3}, each a message with field 1."""
    for kind, _, inner in _fields(buf):
        values = []
        for number, wire, value in _fields(inner):
            if number != 1:
                continue
            if kind == 1:
                values.append(value)
            elif kind == 2:  # floats: packed (wire 2) or one fixed32 each
                values.extend(np.frombuffer(value, "<f4").tolist())
            elif kind == 3 and wire == 0:
                values.append(value - (1 << 64) if value >> 63 else value)
            elif kind == 3:  # packed varints
                pos = 0
                while pos < len(value):
                    v, pos = _varint(value, pos)
                    values.append(v - (1 << 64) if v >> 63 else v)
        return values
    return []


def parse_example(data) -> dict[str, list]:
    """tf.train.Example -> {feature name: values}; bytes values stay memoryviews of ``data``.

    Example{features = 1: Features{feature = 1: map<string, Feature>}}; a map entry is a message
    with key = 1 and value = 2.
    """
    features = {}
    for number, _, value in _fields(memoryview(data)):
        if number != 1:
            continue
        for entry_number, _, entry in _fields(value):
            if entry_number != 1:
                continue
            name, feature = None, memoryview(b"")
            for item_number, _, item in _fields(entry):
                if item_number == 1:
                    name = bytes(item).decode("utf-8", errors="replace")
                elif item_number == 2:
                    feature = item
            features[name] = _feature_values(feature)
    return features
