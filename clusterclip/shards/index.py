"""The owner of ``shards.json``: every shard of every format (files with size and sha256, cut, tokens,
samples). :func:`write_index` writes it (at the end of :func:`clusterclip.shards.write_shards`);
:func:`read_index` and :func:`load_index` read it (``ScheduleDir.shards_index`` after checking its
digest against the manifest); nothing else opens it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..artifacts import write_json_atomic
from ..errors import InputError

INDEX_FILE = "shards.json"
INDEX_VERSION = 2


def write_index(out_dir: str | os.PathLike, index: dict) -> None:
    write_json_atomic(Path(out_dir) / INDEX_FILE, index)


def load_index(out_dir: str | os.PathLike) -> dict:
    """``shards.json`` parsed as it is (OSError / ValueError when missing or unreadable)."""
    return json.loads((Path(out_dir) / INDEX_FILE).read_text("utf-8"))


def read_index(out_dir: str | os.PathLike) -> dict:
    """The ``shards.json`` of a schedule directory."""
    p = Path(out_dir) / INDEX_FILE
    if not p.is_file():
        raise InputError(f"{p}: missing; this schedule wrote no shards (run `clusterclip schedule` without --dry-run)")
    try:
        index = load_index(out_dir)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: unreadable ({type(e).__name__}); rerun `clusterclip schedule`") from None
    for recs in index.get("shards", {}).values():  # version 1: whole samples only
        for r in recs:
            r.setdefault("start", r["first_sample"])
            r.setdefault("stop", r["first_sample"] + r["samples"])
            r.setdefault("first_offset", 0)
    return index


def find_shards(index: dict, fmt: str, position: int) -> list[dict]:
    """The shard records of ``fmt`` that hold a piece of the sample at ``position`` (several when it spans)."""
    shards = index["shards"].get(fmt)
    if shards is None:
        raise InputError(f"--format {fmt}: not written here; this directory has {', '.join(index['shards'])}")
    if not 0 <= position < index["n_samples"]:
        raise InputError(f"--sample {position}: out of range (0..{index['n_samples'] - 1})")
    starts = [s["start"] for s in shards]
    k = int(np.searchsorted(starts, position, side="right")) - 1
    while k > 0 and shards[k - 1]["stop"] > position:
        k -= 1
    found = []
    while 0 <= k < len(shards) and shards[k]["start"] <= position:
        if position < shards[k]["stop"]:
            found.append(shards[k])
        k += 1
    return found
