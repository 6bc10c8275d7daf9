"""Artifact directories: atomic writes, manifests, resume state, and the embeddings store.

Every output directory of a step holds a ``manifest.json`` written last, so a
directory with a manifest is complete. While a step runs, ``.clusterclip-job.json``
records what it is doing (step, settings, inputs); a rerun of the same command finds
it and resumes, a different command is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import __version__
from .errors import InputError, MismatchError

MANIFEST = "manifest.json"
_UMASK = os.umask(0)
os.umask(_UMASK)
JOB_FILE = ".clusterclip-job.json"


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place.

    On any error the temporary file is removed and ``path`` is left as it was, so an
    interrupted write never leaves a file that looks complete.
    """
    path = Path(path)
    fd, tmp_path = temp_file_beside(path)
    os.close(fd)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
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
            np.save(f, array, allow_pickle=False)


def write_parquet_atomic(path: str | os.PathLike, table, **kwargs) -> None:
    """Write a pyarrow table to Parquet atomically, deterministically (no timestamps)."""
    import pyarrow.parquet as pq

    kwargs.setdefault("compression", "zstd")
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


# --------------------------------------------------------------------------- fingerprints
def sha256_file(path: str | os.PathLike, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def file_fingerprint(path: str | os.PathLike) -> dict:
    """Identify an input file cheaply: resolved path, size and modification time."""
    p = Path(path)
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def check_fingerprints(fingerprints: list[dict], what: str) -> None:
    """Raise if any input file changed (or vanished) since the step that recorded it."""
    for fp in fingerprints:
        p = Path(fp["path"])
        if not p.exists():
            raise InputError(f"{p}: this input of `{what}` no longer exists; restore it or rerun `{what}`")
        st = p.stat()
        if st.st_size != fp["size"] or st.st_mtime_ns != fp["mtime_ns"]:
            raise InputError(
                f"{p}: this input changed since `{what}` ran (size or modification time differs); "
                f"rerun `clusterclip {what} ... --overwrite` so that every step sees the same data"
            )


# --------------------------------------------------------------------------- manifests
def manifest_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / MANIFEST


def read_manifest(directory: str | os.PathLike, step: str) -> dict:
    """Read the manifest of a finished ``step`` directory, or raise a message that says what to do."""
    d = Path(directory)
    if not d.exists():
        raise InputError(f"{d}: no such directory; run `clusterclip {step}` first to create it")
    if not d.is_dir():
        raise InputError(f"{d}: is a file, not a `clusterclip {step}` output directory")
    mp = d / MANIFEST
    if not mp.exists():
        hint = "it was interrupted: rerun the same command to finish it" if (d / JOB_FILE).exists() else (
            f"it is not a `clusterclip {step}` output directory"
        )
        raise InputError(f"{mp}: missing; {hint}")
    try:
        manifest = json.loads(mp.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{mp}: not valid JSON ({e}); rerun `clusterclip {step} ... --overwrite`") from None
    if manifest.get("step") != step:
        raise InputError(
            f"{mp}: made by `clusterclip {manifest.get('step')}`, but a `clusterclip {step}` directory is needed here"
        )
    return manifest


def manifest_digest(directory: str | os.PathLike) -> str:
    return sha256_file(manifest_path(directory))


def upstream_record(directory: str | os.PathLike, step: str) -> dict:
    """How a downstream manifest refers to an upstream directory: path and manifest digest."""
    return {"step": step, "path": str(Path(directory).resolve()), "manifest_sha256": manifest_digest(directory)}


def outputs_record(directory: str | os.PathLike, names: list[str]) -> list[dict]:
    d = Path(directory)
    return [{"path": n, "size": (d / n).stat().st_size, "sha256": sha256_file(d / n)} for n in sorted(names)]


def build_manifest(step: str, settings: dict, inputs: dict, outputs: list[dict], statistics: dict) -> dict:
    return {
        "tool": "clusterclip",
        "version": __version__,
        "step": step,
        "settings": settings,
        "inputs": inputs,
        "outputs": outputs,
        "statistics": statistics,
    }


# --------------------------------------------------------------------------- output directories
def prepare_output_dir(out_dir: str | os.PathLike, job: dict, overwrite: bool = False) -> str:
    """Get ``out_dir`` ready for ``job`` (``{"step", "settings", "inputs"}``).

    Returns ``"done"`` when a finished run of the very same job is there (the caller
    does nothing), ``"resume"`` when an interrupted run of the same job is there, and
    ``"fresh"`` otherwise. A directory holding a different job is refused unless
    ``overwrite``; a directory holding anything that is not ours is always refused.
    """
    d = Path(out_dir)
    step = job["step"]
    if d.exists() and not d.is_dir():
        raise InputError(f"{d}: is a file; give `--out` a directory path")
    if d.exists():
        manifest_file, job_file = d / MANIFEST, d / JOB_FILE
        if manifest_file.exists() or job_file.exists():
            previous = _load_json_or_none(job_file if job_file.exists() else manifest_file)
            same = previous is not None and _job_key(previous) == _job_key(job)
            if same and manifest_file.exists():
                return "done"
            if same:
                return "resume"
            if not overwrite:
                what = "a finished" if manifest_file.exists() else "an unfinished"
                raise MismatchError(
                    f"{d}: holds {what} `clusterclip {previous.get('step') if previous else step}` run with "
                    f"other inputs or settings; pass --overwrite to replace it, or choose another --out"
                )
            _clear_directory(d)
        elif any(d.iterdir()):
            raise MismatchError(
                f"{d}: exists, is not empty and is not a clusterclip output directory; choose another --out"
            )
    try:
        d.mkdir(parents=True, exist_ok=True)
        write_json_atomic(d / JOB_FILE, job)
    except PermissionError:
        raise InputError(f"{d}: not writable; choose a --out you can write to") from None
    except NotADirectoryError:
        raise InputError(f"{d}: a parent of it is a file; give `--out` a directory path") from None
    return "fresh"


def finish_output_dir(out_dir: str | os.PathLike, manifest: dict) -> None:
    """Write the manifest (last, atomically) and drop the job file: the directory is complete."""
    d = Path(out_dir)
    remove_stale_temporaries(d)
    write_json_atomic(d / MANIFEST, manifest)
    with contextlib.suppress(FileNotFoundError):
        (d / JOB_FILE).unlink()


def remove_stale_temporaries(directory: str | os.PathLike) -> None:
    """Delete temporary files (``.NAME.*.tmp``) that a killed run left behind under ``directory``."""
    for p in Path(directory).rglob(".*.tmp*"):
        if p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _job_key(record: dict) -> str:
    return dumps_json({k: record.get(k) for k in ("step", "settings", "inputs")})


def _load_json_or_none(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _clear_directory(d: Path) -> None:
    for child in d.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


# --------------------------------------------------------------------------- embeddings
class EmbeddingStore:
    """Read-only view of an ``embed`` directory's ``embeddings-*.npy`` parts as one ``[N, D]`` matrix.

    Parts are memory-mapped and concatenated in file-name order, so ``N`` may exceed RAM;
    read it in chunks with :meth:`iter_chunks`.
    """

    def __init__(self, emb_dir: str | os.PathLike):
        self.directory = Path(emb_dir)
        self.files = sorted(Path(p) for p in glob.glob(str(self.directory / "embeddings-*.npy")))
        if not self.files:
            raise InputError(f"{self.directory}: no embeddings-*.npy files; run `clusterclip embed` into it first")
        self.parts = []
        for f in self.files:
            try:
                arr = np.load(f, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as e:
                raise InputError(f"{f}: unreadable embeddings part ({e}); rerun `clusterclip embed`") from None
            if arr.ndim != 2:
                raise InputError(f"{f}: expected a 2-D [n, dim] array, got shape {arr.shape}")
            self.parts.append(arr)
        dims = {a.shape[1] for a in self.parts}
        if len(dims) != 1:
            raise InputError(f"{self.directory}: embeddings parts disagree on the dimension ({sorted(dims)})")
        self.dim = dims.pop()
        self.offsets = np.cumsum([0] + [a.shape[0] for a in self.parts])
        self.n = int(self.offsets[-1])

    def __len__(self) -> int:
        return self.n

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    def iter_chunks(self, chunk_rows: int = 65536) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start_row, float32 array)`` blocks of at most ``chunk_rows`` rows, in order."""
        for start in range(0, self.n, chunk_rows):
            yield start, self.read(start, min(self.n, start + chunk_rows))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a float32 array (copied from the memory maps)."""
        out = np.empty((max(0, stop - start), self.dim), dtype=np.float32)
        first = int(np.searchsorted(self.offsets, start, side="right") - 1)
        pos = start
        for i in range(max(first, 0), len(self.parts)):
            lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
            if lo >= stop:
                break
            a, b = max(pos, lo), min(stop, hi)
            if a < b:
                out[a - start : b - start] = self.parts[i][a - lo : b - lo]
                pos = b
        return out

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows at the given (any order) indices as float32."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        for i in np.unique(part):
            sel = np.nonzero(part == i)[0]
            out[sel] = self.parts[i][rows[sel] - self.offsets[i]]
        return out
