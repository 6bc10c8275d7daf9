"""What every shard format shares: the shard plan, atomic hashed files, the writer interface."""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import sha256_file as sha256_of
from ..artifacts import temp_file_beside


@dataclass(frozen=True)
class ShardPlan:
    """One shard: samples at positions ``start:stop`` of the order, ``tokens`` tokens (EOS included)."""

    index: int
    start: int
    stop: int
    tokens: int

    @property
    def samples(self) -> int:
        return self.stop - self.start


def file_record(out_dir: Path, path: Path, size: int, sha256: str) -> dict:
    return {"path": path.relative_to(out_dir).as_posix(), "bytes": int(size), "sha256": sha256}


class HashedFile:
    """A file written to a temporary name beside ``path`` while hashing; :meth:`commit` renames it.

    Until the rename the final name does not exist (or keeps its old content), so an
    interrupted write never leaves a file that looks finished.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = temp_file_beside(self.path)
        self.f = os.fdopen(fd, "wb", buffering=1 << 20)
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data) -> None:
        mv = memoryview(data).cast("B")
        self.f.write(mv)
        self.h.update(mv)
        self.size += mv.nbytes

    def commit(self) -> tuple[int, str]:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)
        return self.size, self.h.hexdigest()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.f.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


class FormatWriter:
    """Interface of one format's writer. One shard is open at a time.

    ``begin(plan, sizes)`` opens shard ``plan.index`` (``sizes``: tokens of each of its samples,
    EOS included), ``write(...)`` receives consecutive pieces of it, ``commit()`` makes its files
    final and returns their records, ``finish(plans)`` writes any dataset-level file (after all
    shards) and returns its records.
    """

    name: str = "?"
    #: glob of this format's shard files inside its sub-directory (for cleaning stale ones)
    pattern: str = "*"

    def __init__(self, out_dir: Path, *, vocab_size: int, eos_id: int):
        self.out_dir = Path(out_dir)
        self.dir = self.out_dir / self.name
        self.vocab_size = vocab_size
        self.eos_id = eos_id

    # -- naming
    def files(self, k: int) -> list[Path]:
        raise NotImplementedError

    def expected_sizes(self, plan: ShardPlan, sizes: np.ndarray) -> list[int] | None:
        """Exact byte size of each file of the shard, when known in advance."""
        return None

    def is_done(self, plan: ShardPlan, sizes: np.ndarray) -> bool:
        files = self.files(plan.index)
        if not all(f.is_file() for f in files):
            return False
        expected = self.expected_sizes(plan, sizes)
        return expected is None or [f.stat().st_size for f in files] == expected

    def existing_records(self, plan: ShardPlan) -> list[dict]:
        return [file_record(self.out_dir, f, f.stat().st_size, sha256_of(f)) for f in self.files(plan.index)]

    # -- writing
    def begin(self, plan: ShardPlan, sizes: np.ndarray) -> None:
        raise NotImplementedError

    def write(self, tokens: np.ndarray, sizes: np.ndarray, doc_ids: np.ndarray, clusters: np.ndarray,
              repeats: np.ndarray) -> None:
        raise NotImplementedError

    def commit(self) -> list[dict]:
        raise NotImplementedError

    def abort(self) -> None:
        pass

    def finish(self, shard_records: list[dict]) -> list[dict]:
        """Write dataset-level files from the shards' records (``index``, ``samples``, ``files``...)."""
        return []

    def final_files(self) -> list[Path]:
        """Dataset-level files written by :meth:`finish` (kept by the stale-file cleaner)."""
        return []


class SingleFileWriter(FormatWriter):
    """A format whose shard is one file, streamed through a :class:`HashedFile`."""

    _file: HashedFile | None = None

    def commit(self) -> list[dict]:
        f, self._file = self._file, None
        size, digest = f.commit()
        return [file_record(self.out_dir, f.path, size, digest)]

    def abort(self) -> None:
        if self._file is not None:
            self._file.abort()
            self._file = None
