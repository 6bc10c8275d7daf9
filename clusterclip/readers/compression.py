"""Streaming decompression (gzip, zstd) of corpus files, noticing truncated data."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

#: file-name suffix -> compression name
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}


def split_compression(name: str) -> tuple[str, str]:
    """``("data.jsonl", "zstd")`` for ``"data.jsonl.zst"``; ``(name, "")`` when not compressed."""
    lower = name.lower()
    for suffix, kind in COMPRESSIONS.items():
        if lower.endswith(suffix):
            return name[: -len(suffix)], kind
    return name, ""


def open_binary(path: Path, compression: str):
    """``(buffered reader of the decompressed bytes, the raw file)``; close both when done."""
    raw = open(path, "rb")
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    if compression == "zstd":
        return io.BufferedReader(_ZstdRaw(raw), buffer_size=1 << 20), raw
    return io.BufferedReader(raw, buffer_size=1 << 20), raw


def decompression_errors() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [OSError, EOFError, zlib.error]
    try:
        import zstandard

        errs.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover - zstandard is a dependency
        pass
    return tuple(errs)


class _ZstdRaw(io.RawIOBase):
    """Streaming zstd decompression over any number of frames that notices truncation
    (``zstandard``'s stream reader silently stops at a cut-off frame)."""

    def __init__(self, raw, chunk: int = 1 << 20):
        import zstandard

        self._zstd = zstandard
        self.raw, self.chunk = raw, chunk
        self.dobj = zstandard.ZstdDecompressor().decompressobj()
        self.pending = b""
        self.pos = 0
        self.in_frame = False
        self.finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while self.pos >= len(self.pending) and not self.finished:
            self.pending, self.pos = b"", 0
            data = self.raw.read(self.chunk)
            if not data:
                self.finished = True
                if self.in_frame:
                    raise self._zstd.ZstdError("the file ends in the middle of a zstd frame")
                break
            while data:
                self.in_frame = True
                out = self.dobj.decompress(data)
                self.pending += out
                if self.dobj.eof:
                    data = self.dobj.unused_data
                    self.dobj = self._zstd.ZstdDecompressor().decompressobj()
                    self.in_frame = False
                else:
                    data = b""
        n = min(len(b), len(self.pending) - self.pos)
        b[:n] = self.pending[self.pos : self.pos + n]
        self.pos += n
        return n
