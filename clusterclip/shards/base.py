"""What every shard format shares: the shard plan, the stream layout, atomic hashed files, and
:class:`ShardFormat`, the one class a format implements (naming, token dtype, writer, reader).

A new format is one module in this package that defines a :class:`ShardFormat` subclass and
names it ``FORMAT = MyFormat``; the registry (:data:`clusterclip.shards.FORMATS`) finds it, and
``inspect``, ``verify``, ``--format``'s help and choices and the generic tests
(``tests/test_shards_registry.py``) pick it up. Its own test reads it back with its owner's reader.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..artifacts import file_record  # noqa: F401 - re-exported for the format modules
from ..artifacts import sha256_file as sha256_of  # noqa: F401 - re-exported for the format modules
from ..artifacts.files import PendingFile

#: order position of the segments that are not sample tokens (look-ahead copy, padding)
NOT_A_SAMPLE = -1


@dataclass(frozen=True)
class ShardPlan:
    """One shard: the tokens ``[start_token, start_token + tokens)`` of the ordered stream.

    The stream is the samples of the order (delimiters included) concatenated. Without
    ``--align-tokens``/``--pack`` a shard holds whole samples ``start:stop``; with them it
    holds a fixed number of tokens and may begin inside sample ``start`` (``first_offset``
    tokens of it are in the previous shard) and end inside sample ``stop - 1`` (``tail``
    tokens of it are in the next shard). The file(s) then also hold ``overlap`` look-ahead
    tokens (the next shard's first token, repeated) and ``pad`` pad tokens (last shard only).
    """

    index: int
    start: int
    stop: int
    tokens: int
    first_offset: int = 0
    tail: int = 0
    overlap: int = 0
    pad: int = 0
    start_token: int = 0

    @property
    def samples(self) -> int:
        """Samples that begin in this shard (their sum over the shards is the order's length)."""
        return self.stop - self.start - (1 if self.first_offset else 0)

    @property
    def file_tokens(self) -> int:
        """Tokens the shard's files hold: its own, the look-ahead copy and the padding."""
        return self.tokens + self.overlap + self.pad


@dataclass(frozen=True)
class StreamLayout:
    """How samples become tokens, fixed for one ``write_shards`` call (recorded in ``shards.json``)."""

    vocab_size: int
    eos_id: int | None
    bos_id: int | None = None
    pad_id: int | None = None
    align_tokens: int | None = None
    pack: int | None = None

    @property
    def delimiters(self) -> int:
        return (self.bos_id is not None) + (self.eos_id is not None)


@dataclass
class Segments:
    """Metadata of consecutive pieces of the token stream handed to a writer, one entry per piece.

    A piece is a sample, or the part of one that lies in this shard, or (``position`` -1) the
    look-ahead copy / padding at the end of a shard. ``piece_end``: this block ends a group of
    about ``PIECE_TOKENS`` (see :func:`clusterclip.shards.plan.shard_pieces`).
    """

    sizes: np.ndarray  # int64 tokens of each piece
    positions: np.ndarray  # int64 order position, -1 for look-ahead / padding
    doc_ids: np.ndarray  # int64, -1 for look-ahead / padding
    clusters: np.ndarray  # int32
    repeats: np.ndarray  # int32
    begins: np.ndarray  # bool: the piece begins its sample (False for a continuation and for fillers)
    piece_end: bool = True

    @classmethod
    def concat(cls, parts: list[Segments]) -> Segments:
        """Consecutive blocks' segments as one (``piece_end`` of the last)."""
        if len(parts) == 1:
            return parts[0]
        def joined(field: str) -> np.ndarray:
            return np.concatenate([getattr(p, field) for p in parts])

        return cls(joined("sizes"), joined("positions"), joined("doc_ids"), joined("clusters"), joined("repeats"),
                   joined("begins"), parts[-1].piece_end)

    @classmethod
    def filler(cls, n_tokens: int) -> Segments:
        m = np.array([NOT_A_SAMPLE], dtype=np.int64)
        return cls(np.array([n_tokens], dtype=np.int64), m, m.copy(), m.astype(np.int32), m.astype(np.int32),
                   np.zeros(1, dtype=bool))


@dataclass
class ShardContent:
    """A shard read back: its own stream tokens (no look-ahead copy, no padding) and where each
    piece begins in them (the first piece is sample ``record["start"]``, possibly its continuation)."""

    tokens: np.ndarray
    starts: np.ndarray


#: :class:`HashedFile` writes and hashes in a thread of its own (False: in the caller, one buffer at a
#: time, the reference path the tests compare it with)
BACKGROUND = True
#: buffers handed to a file's thread that may wait at once (a block each: bounds the memory)
QUEUE_DEPTH = 32
#: a file's thread flushes what it wrote to the disk (fdatasync) once this many bytes are unflushed and
#: no buffer waits, and always at 8x this, so the disk works while the caller gathers the next block
#: and the fsync of :meth:`HashedFile.commit` (the rename waits for it) has little left
SYNC_BYTES = 1 << 20
_datasync = getattr(os, "fdatasync", os.fsync)


class HashedFile:
    """A file written to a temporary name beside ``path`` while hashing; :meth:`commit` renames it.

    Until the rename the final name does not exist (or keeps its old content), so an
    interrupted write never leaves a file that looks finished.

    With ``background`` (default :data:`BACKGROUND`) a thread of this file writes and hashes the
    buffers, in the order given, while the caller prepares the next one (both release the GIL):
    :meth:`write` hands a buffer over, which the caller must not change afterwards; an error in
    the thread is raised by the next :meth:`write` or by :meth:`commit`, which waits for the
    thread before the fsync and the rename. The bytes and the digest are the same either way.
    """

    def __init__(self, path: Path, background: bool | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.pending = PendingFile(self.path)
        self.tmp = self.pending.tmp
        self.f = open(self.tmp, "wb", buffering=0)  # noqa: SIM115 - closed by commit/abort
        self.h = hashlib.sha256()
        self.size = 0
        self._error: BaseException | None = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if BACKGROUND if background is None else background:
            self._queue = queue.Queue(QUEUE_DEPTH)
            self._thread = threading.Thread(target=self._drain, name=f"write {self.path.name}", daemon=True)
            self._thread.start()

    def write(self, data) -> None:
        mv = memoryview(data).cast("B")
        self.size += mv.nbytes
        if self._queue is None:
            self._put(mv)
            return
        if self._error is not None:
            raise self._error
        self._queue.put(mv)

    def _put(self, mv: memoryview) -> None:
        rest = mv
        while rest.nbytes:  # a raw write may be short
            rest = rest[self.f.write(rest):]
        self.h.update(mv)

    def _drain(self) -> None:
        assert self._queue is not None
        unsynced = 0
        while (mv := self._queue.get()) is not None:
            if self._error is None:  # after an error, only drain (the caller sees it and aborts)
                try:
                    self._put(mv)
                    unsynced += mv.nbytes
                    if unsynced >= SYNC_BYTES and (self._queue.empty() or unsynced >= 8 * SYNC_BYTES):
                        _datasync(self.f.fileno())
                        unsynced = 0
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    self._error = e

    def _join(self) -> None:
        if self._thread is not None:
            assert self._queue is not None
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def commit(self) -> tuple[int, str]:
        self._join()
        if self._error is not None:
            raise self._error
        self.f.close()
        self.pending.commit()
        return self.size, self.h.hexdigest()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._join()
        with contextlib.suppress(Exception):
            self.f.close()
        self.pending.abort()


def uint16_or(vocab_size: int, wide: str) -> np.dtype:
    """Little-endian uint16 when every id fits (``vocab_size <= 65536``), else ``wide``."""
    from ..tokens.store import fits_uint16

    return np.dtype("<u2") if fits_uint16(vocab_size) else np.dtype(wide)


class ShardFormat:
    """One shard format: its files, its token dtype rule, its writer and its reader.

    Writing (one shard open at a time): ``begin(plan)`` opens shard ``plan.index``;
    ``write(tokens, segments)`` receives consecutive blocks of its ``plan.file_tokens`` tokens
    (whole samples but for the shard's first and last; the look-ahead copy and padding come last,
    as pieces with position -1; ``segments.piece_end`` marks the end of each group of about
    ``PIECE_TOKENS``, for a layout that follows them like Parquet's row groups); ``commit()`` makes
    its files final and returns their records; ``finish(records)`` writes dataset-level files
    (after all shards) and returns theirs. Each writer counts what it wrote in ``self.written``
    (``tokens``: tokens put into the files; ``samples``: pieces that begin a sample), which
    ``write_shards`` checks against the order.

    Reading: ``read_shard(out_dir, record, index)`` returns the shard's own tokens and piece
    boundaries as stored in the files (no cache), for ``read_sample``, ``inspect`` and the tests.
    """

    name: ClassVar[str] = "?"
    #: position in listings and help (the documented order)
    rank: ClassVar[int] = 100
    #: glob of this format's shard files inside its sub-directory (for cleaning stale ones)
    pattern: ClassVar[str] = "*"
    #: one line for ``--format``'s help: who reads it
    read_by: ClassVar[str] = ""
    #: a flat token stream whose loaders read fixed windows: ``--align-tokens`` applies
    supports_align: ClassVar[bool] = False
    #: ``--pack L`` applies (rows of L tokens, or a stream cut at whole rows)
    supports_pack: ClassVar[bool] = False
    #: ``read_shard`` needs a delimiter to find sample boundaries (a bare token stream)
    needs_delimiter_to_read: ClassVar[bool] = False

    @classmethod
    def token_dtype(cls, vocab_size: int) -> np.dtype:
        """The dtype of the stored token ids for a vocabulary (the one place this rule lives)."""
        raise NotImplementedError

    @classmethod
    def max_file_tokens(cls, vocab_size: int) -> int | None:
        """The most tokens one shard file may hold for its reader (None: no limit); ``write_shards``
        lowers ``shard_tokens`` to it, look-ahead and padding included."""
        return None

    def __init__(self, out_dir: Path, layout: StreamLayout):
        self.out_dir = Path(out_dir)
        self.dir = self.out_dir / self.name
        self.layout = layout
        self.vocab_size = layout.vocab_size
        self.dtype = self.token_dtype(layout.vocab_size)
        self.written = {"tokens": 0, "samples": 0}
        self.last_rows: int | None = None  # rows of the shard last committed (formats whose rows are not samples)

    # -- naming
    def files(self, k: int) -> list[Path]:
        raise NotImplementedError

    def final_files(self) -> list[Path]:
        """Dataset-level files written by :meth:`finish` (kept by the stale-file cleaner)."""
        return []

    # -- writing
    def begin(self, plan: ShardPlan) -> None:
        raise NotImplementedError

    def write(self, tokens: np.ndarray, segments: Segments) -> None:
        raise NotImplementedError

    def commit(self) -> list[dict]:
        raise NotImplementedError

    def abort(self) -> None:
        pass

    def finish(self, shard_records: list[dict]) -> list[dict]:
        """Write dataset-level files from the shards' records (``index``, ``samples``, ``files``...)."""
        return []

    def stored_tokens(self, plan: ShardPlan) -> int:
        """Tokens this format stores for ``plan`` (its own, plus the look-ahead copy and padding)."""
        return plan.file_tokens

    def _account(self, n_tokens: int, segments: Segments) -> None:
        """Count ``n_tokens`` put into the files and the samples that begin in ``segments``."""
        self.written["tokens"] += int(n_tokens)
        self.written["samples"] += int(np.count_nonzero(segments.begins))

    # -- reading
    @classmethod
    def read_shard(cls, out_dir: Path, record: dict, index: dict) -> ShardContent:
        raise NotImplementedError

    @classmethod
    def read_piece(cls, out_dir: Path, record: dict, index: dict, position: int) -> np.ndarray:
        """The tokens of the sample at ``position`` that shard ``record`` holds (int64). By default the
        shard is read whole; a format that can read less (one Parquet row group) overrides this."""
        content = cls.read_shard(out_dir, record, index)
        j = position - record["start"]
        ends: np.ndarray = np.append(content.starts[1:], len(content.tokens))
        return np.asarray(content.tokens[content.starts[j]: ends[j]], dtype=np.int64)

    def describe(self) -> dict:
        """Format-specific facts for ``shards.json`` (dtype, magic...)."""
        return {"token_dtype": self.dtype.name}


class SingleFileFormat(ShardFormat):
    """A format whose shard's data streams through one :class:`HashedFile` (its first file; a format with an
    index file beside it writes that in its own ``commit``)."""

    _file: HashedFile | None = None

    def _open(self, plan: ShardPlan) -> HashedFile:
        self._plan = plan
        self._file = HashedFile(self.files(plan.index)[0])
        return self._file

    @property
    def file(self) -> HashedFile:
        """The shard's file being written (between ``begin`` and ``commit``)."""
        if self._file is None:
            raise RuntimeError(f"{type(self).__name__}: no shard is open (write before begin)")
        return self._file

    def commit(self) -> list[dict]:
        f, self._file = self.file, None
        size, digest = f.commit()
        return [file_record(self.out_dir, f.path, size, digest)]

    def abort(self) -> None:
        if self._file is not None:
            self._file.abort()
            self._file = None


# --------------------------------------------------------------------------- reading helpers
def delimiter_starts(tokens: np.ndarray, index: dict, record: dict, where: str) -> np.ndarray:
    """Piece starts of a bare token stream, found at its delimiters (BOS before / EOS after each sample).

    The first piece is sample ``record["start"]`` (or its continuation when the shard begins
    inside it). Raises ``ValueError`` when the stream has no delimiter or the count disagrees
    with ``shards.json`` (an ordinary word used as a delimiter also occurs inside documents).
    """
    bos, eos = index.get("bos_id"), index.get("eos_id")
    n = len(tokens)
    if bos is not None:
        starts = np.flatnonzero(np.asarray(tokens) == bos)
        if record.get("first_offset", 0) or not len(starts) or starts[0] != 0:
            starts = np.concatenate([[0], starts]) if n else starts
    elif eos is not None:
        ends: np.ndarray = np.flatnonzero(np.asarray(tokens) == eos) + 1
        starts = np.concatenate([[0], ends[ends < n]]) if n else np.zeros(0, np.int64)
    else:
        raise ValueError(f"{where}: a token stream without BOS or EOS has no sample boundaries; "
                         f"read the sample from a format with an index (megatron, datatrove, parquet, mds)")
    expected = record["stop"] - record["start"]
    if len(starts) != expected:
        raise ValueError(f"{where}: {len(starts)} delimited pieces but shards.json says {expected} "
                         f"(a delimiter id also occurs inside documents?)")
    return starts.astype(np.int64)
