"""The one resume primitive: a journal of JSON lines, each appended and fsynced when a piece is durable.

Every step that resumes after a kill keeps a journal in its build directory (the embedding
parts, the shards, the token store's progress, the centroids a cluster run trained): one line
per finished piece, appended only after the piece's files were committed
(:class:`~clusterclip.artifacts.files.PendingFile`), each line naming the files with their
size and sha256. A resumed run loads the lines (a torn last line, from a kill during the
append, is skipped), keeps a piece only when :func:`files_intact` says its files still
re-hash to what was journaled, and redoes the rest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .files import sha256_file, write_bytes_atomic


def _line(entry: dict) -> str:
    return json.dumps(entry, sort_keys=True) + "\n"


class Journal:
    """``path``: JSON lines, one entry each; appended with an fsync, rewritten atomically."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> list[dict]:
        """The entries in order, without any line that does not parse (a torn append); [] when absent."""
        if not self.path.is_file():
            return []
        entries = []
        for line in self.path.read_text("utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def last(self) -> dict | None:
        """The latest entry (a journal used as a durable state), or None."""
        entries = self.load()
        return entries[-1] if entries else None

    def append(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab+") as f:
            size = os.fstat(f.fileno()).st_size
            torn = size > 0 and os.pread(f.fileno(), 1, size - 1) != b"\n"
            f.write((("\n" if torn else "") + _line(entry)).encode("utf-8"))  # a torn line stays on its own
            f.flush()
            os.fsync(f.fileno())

    def rewrite(self, entries: list[dict]) -> None:
        """Replace the whole journal by ``entries`` (atomically)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.path, "".join(_line(e) for e in entries).encode("utf-8"))

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)


def files_intact(root: str | os.PathLike, files: list[dict]) -> bool:
    """Whether every ``{"path", "bytes", "sha256"}`` below ``root`` is a plain file with exactly that content."""
    for f in files:
        p = Path(root) / f["path"]
        if not p.is_file() or p.is_symlink() or p.stat().st_size != f["bytes"] or sha256_file(p) != f["sha256"]:
            return False
    return True
