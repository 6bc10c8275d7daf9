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

from ..artifacts.journal import Journal, files_intact

JOURNAL_FILE = ".shards-journal.jsonl"


def shard_key(fmt: str, layout: dict, plan, order_doc_ids) -> str:
    """What a shard's bytes depend on: the format and layout, its cut, and the documents in it."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": fmt, "layout": layout, "plan": plan.__dict__}, sort_keys=True,
                        default=str).encode("utf-8"))
    h.update(np.ascontiguousarray(order_doc_ids[plan.start:plan.stop], dtype="<i8").tobytes())
    return h.hexdigest()


class ShardJournal:
    """The shards committed so far, by (format, index), on an :class:`~clusterclip.artifacts.journal.Journal`."""

    def __init__(self, path: str | os.PathLike):
        self.log = Journal(path)
        self.path = self.log.path
        self.entries: dict[tuple[str, int], dict] = {}

    def load(self) -> ShardJournal:
        self.entries = {}
        for e in self.log.load():
            try:
                self.entries[(str(e["format"]), int(e["index"]))] = e
            except (KeyError, TypeError, ValueError):
                continue  # a damaged line: that shard is simply rewritten
        return self

    def reset(self) -> None:
        self.entries = {}
        self.log.reset()

    def append(self, entry: dict) -> None:
        self.log.append(entry)
        self.entries[(entry["format"], int(entry["index"]))] = entry

    def kept(self, out_dir: Path, fmt: str, index: int, key: str) -> dict | None:
        """The journal entry of shard ``index`` if its files on disk are exactly what was committed."""
        e = self.entries.get((fmt, index))
        if not e or e.get("key") != key or not files_intact(out_dir, e["files"]):
            return None
        return e
