"""The corpus files a run read, identified by content.

``embed`` records every input file as ``{"path", "bytes", "sha256"}``; later steps that read
texts back (``schedule``, ``report``, ``verify``) check that each file still has that content.
Hashing a large corpus costs one sequential read, so a file whose status is unchanged since it
was hashed (same size, modification time, *change* time, inode and device) keeps its digest
without being read again. Tools that preserve the modification time (``cp -p``, rsync, tar) do
not preserve the change time, which the kernel sets on every write, so an edit is always seen;
``rehash=True`` (``--rehash-inputs``) re-reads every file regardless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import InputError, IntegrityError
from .files import sha256_file


def stat_key(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
            "ino": st.st_ino, "dev": st.st_dev}


def describe_files(paths: Sequence[Path], known: dict | None = None, *, rehash: bool = False,
                   progress: bool = False) -> tuple[list[dict], list[dict]]:
    """``(records, stat_cache)`` for ``paths``.

    ``records``: ``{"path", "bytes", "sha256"}`` per file (the identity of the input);
    ``stat_cache``: the file status each digest was computed at. ``known`` (from an earlier
    manifest: ``{"records": [...], "stat_cache": [...]}``) lets unchanged files skip hashing.
    """
    known_digest = {}
    if known and not rehash:
        by_path = {r["path"]: r for r in known.get("records") or []}
        for st in known.get("stat_cache") or []:
            rec = by_path.get(st.get("path"))
            if rec is not None:
                known_digest[_stat_tuple(st)] = rec["sha256"]
    stats = []
    for p in paths:
        try:
            stats.append(stat_key(Path(p)))
        except FileNotFoundError:
            raise InputError(f"{p}: no such file; check the path") from None
    todo = [s for s in stats if _stat_tuple(s) not in known_digest]
    digests = dict(known_digest)
    if todo:
        digests.update(_hash_files(todo, progress))
    records = [{"path": s["path"], "bytes": s["size"], "sha256": digests[_stat_tuple(s)]} for s in stats]
    return records, stats


def _stat_tuple(st: dict) -> tuple:
    return (st.get("path"), st.get("size"), st.get("mtime_ns"), st.get("ctime_ns"), st.get("ino"), st.get("dev"))


def _hash_files(stats: list[dict], progress: bool) -> dict:
    from ..progress import bar as progress_bar

    out = {}
    total = sum(s["size"] for s in stats)
    with progress_bar(total, desc="hash inputs", unit="B", unit_scale=True, enabled=progress, leave=False) as bar:
        for s in stats:
            try:
                out[_stat_tuple(s)] = sha256_file(s["path"], on_bytes=bar.update)
            except OSError as e:
                raise InputError(f"{s['path']}: cannot read ({e.strerror}); check the file") from None
    return out


def verify_files(records: list[dict], stat_cache: list[dict] | None, *, step: str, rehash: bool = False,
                 progress: bool = False) -> None:
    """Raise a one-line error naming the first corpus file that vanished or whose content changed."""
    paths = [Path(r["path"]) for r in records]
    for p in paths:
        if not p.is_file():
            raise InputError(f"{p}: this corpus file of `{step}` no longer exists; restore it, or rerun "
                             f"`clusterclip {step}` on the corpus as it is now")
    current, _ = describe_files(paths, {"records": records, "stat_cache": stat_cache}, rehash=rehash,
                                progress=progress)
    for old, new in zip(records, current):
        if old["sha256"] != new["sha256"] or old["bytes"] != new["bytes"]:
            raise IntegrityError(
                f"{old['path']}: its content changed since `clusterclip {step}` read it (sha256 differs); "
                f"restore the file, or rerun `clusterclip {step}` so that every step sees the same text")

