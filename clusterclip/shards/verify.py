"""``verify_shards(out_dir)``: every file ``shards.json`` lists is there with its size and sha256,
no stray file sits where a trainer's glob would read it, and the counts add up (``clusterclip verify``
adds the order's row count through ``ScheduleDir``)."""

from __future__ import annotations

import os
from pathlib import Path

from ..artifacts import sha256_file
from .index import INDEX_FILE, load_index

FIX = "rerun `clusterclip schedule` into a new --out (or with --overwrite)"


def verify_shards(out_dir: str | os.PathLike) -> list[str]:
    """One line per problem, each naming the file; an empty list when the shards are intact."""
    from . import FORMATS

    out = Path(out_dir)
    index_path = out / INDEX_FILE
    if not index_path.is_file():
        return [f"{index_path}: missing; {FIX}"]
    try:
        index = load_index(out)
        shards = index["shards"]
        n_samples, n_tokens = int(index["n_samples"]), int(index["n_tokens"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        return [f"{index_path}: unreadable ({type(e).__name__}); {FIX}"]
    problems: list[str] = []
    for fmt, records in shards.items():
        listed = []
        for rec in records:
            listed += rec.get("files", [])
        listed += index.get("dataset_files", {}).get(fmt, [])
        for f in listed:
            problems += _check_file(out, f)
        samples = sum(int(r.get("samples", 0)) for r in records)
        tokens = sum(int(r.get("tokens", 0)) for r in records)
        if samples != n_samples or tokens != n_tokens:
            problems.append(f"{index_path}: format {fmt} holds {samples} samples / {tokens} tokens but the order "
                            f"has {n_samples} / {n_tokens}; {FIX}")
        cls = FORMATS.get(fmt)
        if cls is not None and (out / fmt).is_dir():
            names = {f["path"] for f in listed}
            for p in sorted((out / fmt).glob(cls.pattern)):
                rel = p.relative_to(out).as_posix()
                if rel not in names:
                    problems.append(f"{p}: not listed in {INDEX_FILE} (a trainer reading {fmt}/{cls.pattern} "
                                    f"would read it); delete it")
    return problems


def _check_file(out: Path, f: dict) -> list[str]:
    p = out / f["path"]
    if p.is_symlink():
        return [f"{p}: is a symbolic link, not the file that was written; {FIX}"]
    if not p.is_file():
        return [f"{p}: missing; {FIX}"]
    size = p.stat().st_size
    if size != f["bytes"]:
        return [f"{p}: {size} bytes but {INDEX_FILE} records {f['bytes']}; {FIX}"]
    if sha256_file(p) != f["sha256"]:
        return [f"{p}: sha256 differs from {INDEX_FILE} (changed after it was written); {FIX}"]
    return []
