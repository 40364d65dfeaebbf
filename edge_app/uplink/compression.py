"""Compression of events batches (``uplink.compression``) and its MQTT 5 content types.

An events batch is ~517 bytes of JSON per event, and JSON of similar events compresses well;
AWS IoT Core caps a connection at 512 KB/s and bills messages in 5 KB units, so compressed
batches carry several times more events per second and per billed unit within the same caps.
The codec is named by the publish's MQTT 5 ``content_type`` (docs/events.md): ``application/json``
for a plain batch, ``application/json+gzip`` (``+zlib``, ``+zstd``) for a compressed one.

``decode_payload`` is the consumers' side (the simulator's cloud, tests). It bounds the
decompressed size, so a small payload that inflates to gigabytes (a "zip bomb") is refused
instead of exhausting memory. The Lambda (``deploy/lambda``) has its own copy of the decoder,
since it is deployed without edge_app; a test checks that the two agree.
"""

from __future__ import annotations

__all__ = [
    "CODEC_NAMES",
    "CONTENT_TYPE_JSON",
    "MAX_DECODED_BYTES",
    "Codec",
    "codec",
    "decode_payload",
]

import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_app.errors import UplinkError

CONTENT_TYPE_JSON = "application/json"
CODEC_NAMES = ("none", "gzip", "zlib", "zstd")
# A decompressed batch larger than this is refused: IoT Core's 128 KB payload of JSON events
# compresses at most ~20:1 in practice, so 8 MiB leaves room without trusting the sender.
MAX_DECODED_BYTES = 8 * 1024 * 1024
# Levels: gzip/zlib 6 (the zlib default; 9 costs twice the CPU for ~2 % fewer bytes on event
# JSON), zstd 3 (its default).
_DEFLATE_LEVEL = 6
_ZSTD_LEVEL = 3


@dataclass(frozen=True, slots=True)
class Codec:
    """One codec: its config ``name``, the MQTT 5 ``content_type`` it is announced with and
    ``compress`` (bytes -> bytes; the identity for ``none``)."""

    name: str
    content_type: str
    compress: Callable[[bytes], bytes]

    @property
    def identity(self) -> bool:
        """True for ``none``: the payload goes out as it is."""
        return self.name == "none"


def _gzip(data: bytes) -> bytes:
    # mtime=0: the same batch compresses to the same bytes (a retried publish is identical).
    return gzip.compress(data, compresslevel=_DEFLATE_LEVEL, mtime=0)


def _zlib(data: bytes) -> bytes:
    return zlib.compress(data, _DEFLATE_LEVEL)


def _zstd_module() -> Any:
    try:
        import zstandard  # noqa: PLC0415  # optional: only for uplink.compression: zstd
    except ImportError as exc:
        raise UplinkError(
            "uplink.compression 'zstd' needs the zstandard package: pip install "
            "'edge-app[zstd]', or set uplink.compression: gzip (in the standard library)"
        ) from exc
    return zstandard


def codec(name: str) -> Codec:
    """The codec called ``name`` (one of ``CODEC_NAMES``); ``UplinkError`` for an unknown
    name or for ``zstd`` without the zstandard package."""
    if name == "none":
        return Codec("none", CONTENT_TYPE_JSON, bytes)
    if name == "gzip":
        return Codec("gzip", f"{CONTENT_TYPE_JSON}+gzip", _gzip)
    if name == "zlib":
        return Codec("zlib", f"{CONTENT_TYPE_JSON}+zlib", _zlib)
    if name == "zstd":
        compressor = _zstd_module().ZstdCompressor(level=_ZSTD_LEVEL)
        return Codec("zstd", f"{CONTENT_TYPE_JSON}+zstd", compressor.compress)
    raise UplinkError(f"unknown compression {name!r}: use one of {', '.join(CODEC_NAMES)}")


def _inflate(payload: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(payload, limit + 1)
    except zlib.error as exc:
        raise UplinkError(f"compressed batch does not decompress: {exc}") from exc
    if len(out) > limit:
        raise UplinkError(f"compressed batch inflates to more than {limit} bytes: refused")
    if not inflater.eof:
        raise UplinkError("compressed batch is truncated")
    return out


def _unzstd(payload: bytes, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    try:
        with _zstd_module().ZstdDecompressor().stream_reader(payload) as reader:
            while size <= limit:
                chunk: bytes = reader.read(limit + 1 - size)
                if not chunk:
                    break
                parts.append(chunk)
                size += len(chunk)
    except UplinkError:
        raise
    except Exception as exc:  # zstandard.ZstdError: no stable import path across versions
        raise UplinkError(f"compressed batch does not decompress: {exc}") from exc
    if size > limit:
        raise UplinkError(f"compressed batch inflates to more than {limit} bytes: refused")
    return b"".join(parts)


def decode_payload(
    payload: bytes, content_type: str | None, *, max_bytes: int = MAX_DECODED_BYTES
) -> bytes:
    """The JSON bytes of an events batch published with ``content_type``.

    ``None`` (an MQTT 3 publisher, or no property) and ``application/json`` mean plain JSON.
    Raises ``UplinkError`` for an unknown content type, a payload that does not decompress,
    or one that inflates beyond ``max_bytes``.
    """
    if content_type in (None, "", CONTENT_TYPE_JSON):
        return payload
    if content_type == f"{CONTENT_TYPE_JSON}+gzip":
        return _inflate(payload, 16 + zlib.MAX_WBITS, max_bytes)
    if content_type == f"{CONTENT_TYPE_JSON}+zlib":
        return _inflate(payload, zlib.MAX_WBITS, max_bytes)
    if content_type == f"{CONTENT_TYPE_JSON}+zstd":
        return _unzstd(payload, max_bytes)
    raise UplinkError(
        f"unknown content type {content_type!r}: expected {CONTENT_TYPE_JSON} or "
        f"{CONTENT_TYPE_JSON}+gzip|zlib|zstd"
    )
