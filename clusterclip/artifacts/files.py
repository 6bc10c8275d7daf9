"""Files: atomic writes, digests, canonical JSON, and paths that never go through a symlink.

Every file an artifact directory holds is written to a hidden temporary name beside its final
name, fsynced and renamed, so an interrupted write never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import InputError

_UMASK = os.umask(0)
os.umask(_UMASK)


# --------------------------------------------------------------------------- atomic writes
def temp_file_beside(path: str | os.PathLike) -> tuple[int, Path]:
    """Create a hidden temporary file (``.NAME.XXXX.tmp``) in ``path``'s directory.

    Returns ``(fd, tmp_path)``. The file gets the usual permissions (0666 minus the umask),
    not mkstemp's 0600, since it becomes an output once renamed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    return fd, Path(tmp)


def replace_durably(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """fsync ``src`` and rename it to ``dst``: the one way a finished file takes its final name."""
    with open(src, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(src, dst)


class PendingFile:
    """A file written under a hidden temporary name beside ``path`` (:attr:`tmp`, created empty);
    :meth:`commit` fsyncs it and renames it into place, :meth:`abort` removes it. Until the
    rename, ``path`` does not exist or keeps its old content: an interrupted write never leaves
    a file that looks complete. Every atomic write of clusterclip goes through this class."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        fd, self.tmp = temp_file_beside(self.path)
        os.close(fd)

    def commit(self) -> None:
        replace_durably(self.tmp, self.path)

    def abort(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    pending = PendingFile(path)
    try:
        yield pending.tmp
        pending.commit()
    except BaseException:
        pending.abort()
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def dumps_json(obj: Any) -> str:
    """Canonical JSON (sorted keys, 2-space indent, trailing newline): byte-stable."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=_json_default) + "\n"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(path, dumps_json(obj).encode("utf-8"))


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            try:
                np.save(f, array, allow_pickle=False)
            except OSError as e:  # numpy's tofile reports a short write without an errno
                if e.errno is None and "requested and" in str(e):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
                raise


def write_parquet_atomic(path: str | os.PathLike, table, **kwargs) -> None:
    """Write a pyarrow table to Parquet atomically, deterministically (no timestamps)."""
    import pyarrow.parquet as pq

    kwargs.setdefault("compression", "zstd")
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


def remove_stale_temporaries(directory: str | os.PathLike) -> None:
    """Delete temporary files (``.NAME.*.tmp``) that a killed run left below ``directory``."""
    for p in Path(directory).rglob(".*.tmp*"):
        if p.is_file() and not p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def fsync_dir(path: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- digests
def sha256_file(path: str | os.PathLike, on_bytes: Callable[[int], object] | None = None) -> str:
    """The sha256 of a file (``hashlib.file_digest``); ``on_bytes(n)`` after each block read (a progress bar)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f if on_bytes is None else _Counted(f, on_bytes), "sha256").hexdigest()


class _Counted:
    """A binary file whose reads are reported to ``on_bytes`` (what ``hashlib.file_digest`` needs of a file)."""

    def __init__(self, f, on_bytes: Callable[[int], object]):
        self.f, self.on_bytes = f, on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self.f.readinto(buf)
        if n:
            self.on_bytes(n)
        return n


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_record(directory: str | os.PathLike, path: str | os.PathLike, size: int | None = None,
                sha256: str | None = None) -> dict:
    """``{"path", "bytes", "sha256"}`` of a file of ``directory``: ``path`` relative to it (or below it);
    ``size`` and ``sha256`` when the writer already knows them (else read from the disk)."""
    directory, p = Path(directory), Path(path)
    try:
        rel = p.relative_to(directory)
    except ValueError:
        rel = p
    full = directory / rel
    return {"path": rel.as_posix(), "bytes": int(full.stat().st_size if size is None else size),
            "sha256": sha256_file(full) if sha256 is None else sha256}


# --------------------------------------------------------------------------- symlink safety
def check_inside(root: str | os.PathLike, rel: str | os.PathLike, *, allow_missing: bool = True) -> Path:
    """``root/rel``, after checking that no component below ``root`` is a symbolic link.

    A step writes and deletes only inside its ``--out``: a link there (say ``bin -> /data``)
    would make it write or delete elsewhere, so it is refused in one line.
    """
    root = Path(root)
    rel = Path(rel)
    if rel.is_absolute() or ".." in rel.parts:
        raise InputError(f"{rel}: not a path inside {root} (internal error)")
    current = root
    for part in rel.parts:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            if allow_missing:
                return root / rel
            raise
        if stat.S_ISLNK(st.st_mode):
            raise InputError(
                f"{current}: is a symbolic link inside the output directory; clusterclip writes only inside "
                f"--out and never through a link: remove the link (or give another --out)"
            )
    return root / rel


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
