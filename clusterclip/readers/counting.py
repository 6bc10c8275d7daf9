"""Row counts of corpus files before they are read, where that is cheap (for exact progress totals).

Parquet files say their row count in their metadata. A JSON lines file is counted by its newlines
(the reader numbers lines the same way: a last line without a newline is a line too): about a
second per GiB of plain text from the page cache, a few times more for compressed files, which
must be decompressed. So files are counted in input order while the bytes counted stay within
:data:`COUNT_PLAIN_BYTES` (plain) and :data:`COUNT_COMPRESSED_BYTES` (compressed, counted by
their size on disk); the others are estimated from the bytes read while they are read
(:class:`clusterclip.progress.DocumentTotal`).
"""

from __future__ import annotations

from typing import Sequence

from .base import CorpusReader

#: plain JSON lines files are counted while the plain bytes counted stay within this
COUNT_PLAIN_BYTES = 1 << 30
#: compressed JSON lines files are counted while their compressed bytes stay within this
COUNT_COMPRESSED_BYTES = 64 << 20
_CHUNK = 1 << 20


def count_rows(readers: Sequence[CorpusReader], *, plain_bytes: int = COUNT_PLAIN_BYTES,
               compressed_bytes: int = COUNT_COMPRESSED_BYTES) -> list[int | None]:
    """The rows of each file when known or cheap to count (see the module docstring), else None."""
    out: list[int | None] = []
    budget = {False: plain_bytes, True: compressed_bytes}
    for reader in readers:
        rows = reader.known_rows()
        if rows is None and hasattr(reader, "count_lines"):
            compressed = bool(reader.compression)
            size = reader.size
            if size <= budget[compressed]:
                rows = reader.count_lines()
                if rows is not None:
                    budget[compressed] -= size
        out.append(rows)
    return out


def count_newlines(stream) -> tuple[int, int, bytes]:
    """``(newlines, bytes, last byte)`` of a binary stream, read in 1 MiB chunks."""
    n, total, last = 0, 0, b""
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return n, total, last
        n += chunk.count(b"\n")
        total += len(chunk)
        last = chunk[-1:]
