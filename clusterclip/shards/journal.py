"""The digest journal of a shard write: one JSON line appended (and fsynced) per committed shard.

``write_shards(..., resume=True)`` keeps a shard only if the journal has a line for it with the
same key (format, layout, plan and the order's doc_ids in it) and every one of its files still
has the recorded size and sha256, re-hashed from the disk; anything else is rewritten. A torn
last line (a kill during the append) is ignored, so at worst that one shard is written again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..artifacts import sha256_file

JOURNAL_FILE = ".shards-journal.jsonl"


def shard_key(fmt: str, layout: dict, plan, order_doc_ids) -> str:
    """What a shard's bytes depend on: the format and layout, its cut, and the documents in it."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": fmt, "layout": layout, "plan": plan.__dict__}, sort_keys=True,
                        default=str).encode("utf-8"))
    h.update(np.ascontiguousarray(order_doc_ids[plan.start:plan.stop], dtype="<i8").tobytes())
    return h.hexdigest()


class ShardJournal:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.entries: dict[tuple[str, int], dict] = {}

    def load(self) -> ShardJournal:
        self.entries = {}
        if not self.path.is_file():
            return self
        for line in self.path.read_text("utf-8", errors="replace").splitlines():
            try:
                e = json.loads(line)
                self.entries[(str(e["format"]), int(e["index"]))] = e
            except (ValueError, KeyError, TypeError):
                continue  # a torn line: that shard is simply rewritten
        return self

    def reset(self) -> None:
        self.entries = {}
        self.path.unlink(missing_ok=True)

    def append(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries[(entry["format"], int(entry["index"]))] = entry

    def kept(self, out_dir: Path, fmt: str, index: int, key: str) -> dict | None:
        """The journal entry of shard ``index`` if its files on disk are exactly what was committed."""
        e = self.entries.get((fmt, index))
        if not e or e.get("key") != key:
            return None
        for f in e["files"]:
            p = Path(out_dir) / f["path"]
            if not p.is_file() or p.is_symlink() or p.stat().st_size != f["bytes"] or sha256_file(p) != f["sha256"]:
                return None
        return e
