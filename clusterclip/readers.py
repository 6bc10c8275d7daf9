"""Small streaming corpus readers (in the spirit of datatrove's readers).

Supported inputs: Parquet (``.parquet``) and JSON lines (``.jsonl``, ``.json``, ``.ndjson``),
each optionally compressed as ``.gz`` or ``.zst``. Inputs may be files, directories (searched
recursively for supported files, hidden entries skipped) or glob patterns.

Rows are numbered from 0 within each file: for Parquet the row index, for JSON lines the
line index (blank lines keep their number but hold no document). ``(source, row)`` is how
``docs.parquet`` points back at a document, and how :func:`read_texts` finds it again.

Every problem with the input is raised as :class:`~clusterclip.errors.InputError` with one line
naming the file, the row and the fix.
"""

from __future__ import annotations

import glob as _glob
import gzip
import io
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .errors import InputError

BASE_EXTENSIONS = (".parquet", ".jsonl", ".json", ".ndjson")
COMPRESSIONS = ("", ".gz", ".zst")
SUPPORTED = tuple(b + c for b in BASE_EXTENSIONS for c in COMPRESSIONS)
_SUPPORTED_TEXT = "Parquet (.parquet) or JSON lines (.jsonl/.json/.ndjson), optionally .gz or .zst"
_RESERVED_COLUMNS = ("doc_id", "source", "row", "n_chars")


# --------------------------------------------------------------------------- file discovery
def file_format(path: str | os.PathLike) -> tuple[str, str] | None:
    """``("parquet"|"jsonl", ""|"gz"|"zst")`` for a supported file name, else ``None``."""
    name = Path(path).name.lower()
    comp = ""
    for c in (".gz", ".zst"):
        if name.endswith(c):
            comp, name = c[1:], name[: -len(c)]
            break
    if name.endswith(".parquet"):
        return ("parquet", comp)
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return ("jsonl", comp)
    return None


def _unsupported(path) -> InputError:
    return InputError(f"{path}: unsupported file type; give {_SUPPORTED_TEXT} files")


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def expand_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files, directories and glob patterns into a list of corpus files.

    The order is deterministic: the arguments in the order given, each directory or glob
    expanded in sorted path order; a file named twice is kept once (first place). A file
    named explicitly (or matched by a glob) must have a supported extension; directories
    contribute only their supported files (recursively; names starting with ``.`` or ``_``
    are skipped, like Spark/datatrove do). Paths are returned resolved (absolute).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise InputError("no input given; name one or more corpus files, directories or glob patterns")
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        p = p.resolve()
        if p not in seen:
            seen.add(p)
            out.append(p)

    for item in inputs:
        text = os.fspath(item)
        p = Path(text)
        if p.is_dir():
            found = sorted(
                q for q in p.rglob("*")
                if q.is_file() and file_format(q) is not None and not _is_hidden(q, p)
            )
            if not found:
                raise InputError(f"{p}: directory holds no {_SUPPORTED_TEXT} files; check the path")
            for q in found:
                add(q)
        elif p.is_file():
            if file_format(p) is None:
                raise _unsupported(p)
            add(p)
        elif _glob.has_magic(text):
            matches = sorted(Path(m) for m in _glob.glob(text, recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                raise InputError(f"{text}: the pattern matches no files; check the pattern (quote it in the shell)")
            for m in files:
                if file_format(m) is None:
                    raise _unsupported(m)
                add(m)
        else:
            raise InputError(f"{p}: no such file or directory; check the path")
    return out


# --------------------------------------------------------------------------- low-level readers
def _open_binary(path: Path, comp: str):
    raw = open(path, "rb")
    if comp == "gz":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    if comp == "zst":
        return io.BufferedReader(_ZstdRaw(raw), buffer_size=1 << 20), raw
    return io.BufferedReader(raw, buffer_size=1 << 20), raw


class _ZstdRaw(io.RawIOBase):
    """Streaming zstd decompression over any number of frames that notices truncation
    (``zstandard``'s stream reader silently stops at a cut-off frame)."""

    def __init__(self, raw, chunk: int = 1 << 20):
        import zstandard

        self._zstd = zstandard
        self.raw, self.chunk = raw, chunk
        self.dobj = zstandard.ZstdDecompressor().decompressobj()
        self.pending = b""
        self.pos = 0
        self.in_frame = False
        self.finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while self.pos >= len(self.pending) and not self.finished:
            self.pending, self.pos = b"", 0
            data = self.raw.read(self.chunk)
            if not data:
                self.finished = True
                if self.in_frame:
                    raise self._zstd.ZstdError("the file ends in the middle of a zstd frame")
                break
            while data:
                self.in_frame = True
                out = self.dobj.decompress(data)
                self.pending += out
                if self.dobj.eof:
                    data = self.dobj.unused_data
                    self.dobj = self._zstd.ZstdDecompressor().decompressobj()
                    self.in_frame = False
                else:
                    data = b""
        n = min(len(b), len(self.pending) - self.pos)
        b[:n] = self.pending[self.pos : self.pos + n]
        self.pos += n
        return n


def _compression_errors():
    errs: list[type[BaseException]] = [OSError, EOFError, zlib.error]
    try:
        import zstandard

        errs.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)


def _iter_lines(path: Path, comp: str) -> Iterator[tuple[int, bytes]]:
    """(line index, raw bytes without the newline) of a possibly compressed text file."""
    errors = _compression_errors()
    try:
        fh, raw = _open_binary(path, comp)
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror or e}); check the file") from None
    i = -1
    with raw, fh:
        while True:
            try:
                line = fh.readline()
            except errors as e:
                kind = {"gz": "gzip", "zst": "zstd"}.get(comp, "")
                raise InputError(
                    f"{path}, line {i + 2}: corrupt or truncated {kind} data ({e}); re-create or re-download the file"
                ) from None
            if not line:
                return
            i += 1
            if line.endswith(b"\n"):
                line = line[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
            yield i, line


def _decode_line(path: Path, i: int, line: bytes) -> str:
    try:
        s = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}, line {i + 1}: invalid UTF-8 at byte {e.start}; re-encode the file as UTF-8"
        ) from None
    if i == 0 and s.startswith("\ufeff"):
        s = s[1:]
    return s


def _parse_json_line(path: Path, i: int, line: bytes) -> dict | None:
    s = _decode_line(path, i, line)
    if not s.strip():
        return None
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        if i == 0 and s.lstrip().startswith("["):
            raise InputError(
                f"{path}, line 1: a JSON array, not JSON lines (one object per line); "
                f"convert it, e.g. with `jq -c '.[]'`"
            ) from None
        raise InputError(f"{path}, line {i + 1}: malformed JSON ({e.msg} at column {e.colno}); fix or remove the line") from None
    if not isinstance(obj, dict):
        raise InputError(
            f"{path}, line {i + 1}: a JSON {type(obj).__name__}, not an object; each line must be one JSON object"
        )
    return obj


def _jsonl_text(path: Path, i: int, obj: dict, text_column: str) -> str:
    if text_column not in obj:
        keys = ", ".join(sorted(map(str, obj))) or "none"
        raise InputError(
            f"{path}, line {i + 1}: no field {text_column!r} (fields: {keys}); pass --text-column with one of them"
        )
    text = obj[text_column]
    if not isinstance(text, str):
        what = "null" if text is None else f"a {type(text).__name__}"
        raise InputError(
            f"{path}, line {i + 1}: field {text_column!r} is {what}, not a string; fix the row or drop it"
        )
    return text


def _jsonl_id(path: Path, i: int, obj: dict, id_column: str):
    if id_column not in obj:
        keys = ", ".join(sorted(map(str, obj))) or "none"
        raise InputError(
            f"{path}, line {i + 1}: no field {id_column!r} (fields: {keys}); pass --id-column with one of them or leave it out"
        )
    value = obj[id_column]
    if isinstance(value, (dict, list)):
        raise InputError(f"{path}, line {i + 1}: id field {id_column!r} is a JSON {type(value).__name__}; ids must be strings or numbers")
    return value


def _open_parquet(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file; remove it or re-create it")
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        if isinstance(e, InputError):
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: not a valid Parquet file ({msg}); re-create or re-download it") from None


def _parquet_check_columns(path: Path, pf, text_column: str, id_column: str | None) -> None:
    import pyarrow as pa

    schema = pf.schema_arrow
    names = schema.names
    if text_column not in names:
        raise InputError(
            f"{path}: no column {text_column!r} (columns: {', '.join(names) or 'none'}); pass --text-column with one of them"
        )
    t = schema.field(text_column).type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view"):
        raise InputError(
            f"{path}: column {text_column!r} has type {t}, not string; pass --text-column naming a text column"
        )
    if id_column is not None and id_column not in names:
        raise InputError(
            f"{path}: no column {id_column!r} (columns: {', '.join(names)}); pass --id-column with one of them or leave it out"
        )


def _parquet_texts(path: Path, column, start_row: int, text_column: str) -> list:
    """Convert an arrow string column to Python, reporting invalid UTF-8 / nulls by row."""
    try:
        values = column.to_pylist()
    except (UnicodeDecodeError, Exception) as e:  # noqa: BLE001 - pyarrow raises various types
        for j in range(len(column)):
            try:
                column[j].as_py()
            except Exception:  # noqa: BLE001
                raise InputError(
                    f"{path}, row {start_row + j}: column {text_column!r} holds invalid UTF-8; re-encode the text as UTF-8"
                ) from None
        raise InputError(f"{path}, row {start_row}: cannot read column {text_column!r} ({e}); re-create the file") from None
    return values


def _iter_parquet_batches(path: Path, pf, columns: list[str], row_groups: list[int], batch_size: int = 8192):
    """(first row, record batch) of the given row groups, reporting corrupt data as one line."""
    import pyarrow as pa

    offsets = [0]
    for i in range(pf.num_row_groups):
        offsets.append(offsets[-1] + pf.metadata.row_group(i).num_rows)
    for rg in row_groups:
        row = offsets[rg]
        try:
            for batch in pf.iter_batches(batch_size=batch_size, row_groups=[rg], columns=columns):
                yield row, batch
                row += batch.num_rows
        except (pa.ArrowException, OSError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(
                f"{path}, row {row}: corrupt or truncated Parquet data ({msg}); re-create or re-download the file"
            ) from None


# --------------------------------------------------------------------------- sharding
@dataclass(frozen=True)
class Sharding:
    """Which rows one of ``num_shards`` workers reads: blocks of ``block`` rows, round-robin.

    Rows are numbered over all input files together (in :func:`expand_inputs` order), counting
    every row or line, empty or not. Block ``b`` (rows ``b*block .. (b+1)*block-1``) belongs to
    shard ``b % num_shards``. A shard skips the rows of other shards without parsing them.
    """

    num_shards: int = 1
    shard_index: int = 0
    block: int = 1024

    def owns(self, row: int) -> bool:
        return (row // self.block) % self.num_shards == self.shard_index

    def owns_range(self, start: int, stop: int) -> bool:
        """Whether any row in ``[start, stop)`` is ours."""
        if stop <= start:
            return False
        first, last = start // self.block, (stop - 1) // self.block
        if last - first + 1 >= self.num_shards:
            return True
        return any(b % self.num_shards == self.shard_index for b in range(first, last + 1))


# --------------------------------------------------------------------------- documents
@dataclass
class ReadStats:
    """Counters filled while :func:`iter_documents` runs."""

    documents: int = 0  #: documents yielded
    skipped_empty: int = 0  #: whitespace-only documents skipped
    rows: int = 0  #: rows seen in total (all shards)
    per_file_rows: list = field(default_factory=list)


def iter_documents(
    paths: Sequence[str | os.PathLike],
    text_column: str = "text",
    id_column: str | None = None,
    *,
    stats: ReadStats | None = None,
    shard: Sharding | None = None,
    skip_empty: bool = True,
) -> Iterator[tuple[str, int, str, object]]:
    """Stream ``(source, row, text, user_id)`` for every document of ``paths``, in order.

    ``source`` is the file's path as a string (as given; :func:`expand_inputs` gives resolved
    paths), ``row`` its 0-based row (Parquet) or line (JSON lines) index, ``user_id`` the value
    of ``id_column`` (``None`` without one). Whitespace-only documents are skipped and counted in
    ``stats.skipped_empty``. ``shard`` (a :class:`Sharding`, optional) selects rows by their
    index over all files together (``--num-shards``); rows of other shards are not parsed.

    Raises :class:`InputError` for a missing or unknown text column, a null or non-string text,
    invalid UTF-8, a malformed JSON line, a corrupt Parquet file, or an empty file.
    """
    stats = stats if stats is not None else ReadStats()
    if id_column is not None and id_column in _RESERVED_COLUMNS:
        raise InputError(
            f"--id-column {id_column!r}: this name is used by docs.parquet itself ({', '.join(_RESERVED_COLUMNS)}); "
            "rename the column in the corpus"
        )
    if shard is not None and shard.num_shards == 1:
        shard = None
    base = 0
    for path in paths:
        path = Path(path)
        fmt = file_format(path)
        if fmt is None:
            raise _unsupported(path)
        if not path.exists():
            raise InputError(f"{path}: no such file; check the path")
        kind, comp = fmt
        source = str(path)
        if kind == "parquet":
            if comp:
                raise InputError(
                    f"{path}: compressed Parquet files are not supported (Parquet compresses internally); decompress it"
                )
            n = yield from _parquet_documents(path, source, text_column, id_column, stats, shard, base, skip_empty)
        else:
            n = yield from _jsonl_documents(path, comp, source, text_column, id_column, stats, shard, base, skip_empty)
        stats.per_file_rows.append(n)
        base += n
        stats.rows = base


def _parquet_documents(path, source, text_column, id_column, stats, shard, base, skip_empty):
    pf = _open_parquet(path)
    _parquet_check_columns(path, pf, text_column, id_column)
    n_rows = pf.metadata.num_rows
    if n_rows == 0:
        raise InputError(f"{path}: empty file (no rows); remove it or re-create it")
    columns = [text_column] + ([id_column] if id_column is not None and id_column != text_column else [])
    groups = []
    start = 0
    for rg in range(pf.num_row_groups):
        rows = pf.metadata.row_group(rg).num_rows
        if shard is None or shard.owns_range(base + start, base + start + rows):
            groups.append(rg)
        start += rows
    for first, batch in _iter_parquet_batches(path, pf, columns, groups):
        texts = _parquet_texts(path, batch.column(0), first, text_column)
        ids = batch.column(columns.index(id_column)).to_pylist() if id_column is not None else None
        for j, text in enumerate(texts):
            row = first + j
            if shard is not None and not shard.owns(base + row):
                continue
            if text is None:
                raise InputError(f"{path}, row {row}: column {text_column!r} is null; fill it or drop the row")
            if skip_empty and not text.strip():
                stats.skipped_empty += 1
                continue
            stats.documents += 1
            yield source, row, text, (ids[j] if ids is not None else None)
    return n_rows


def _jsonl_documents(path, comp, source, text_column, id_column, stats, shard, base, skip_empty):
    n = 0
    for i, line in _iter_lines(path, comp):
        n = i + 1
        if shard is not None and not shard.owns(base + i):
            continue
        obj = _parse_json_line(path, i, line)
        if obj is None:
            continue
        text = _jsonl_text(path, i, obj, text_column)
        user_id = _jsonl_id(path, i, obj, id_column) if id_column is not None else None
        if skip_empty and not text.strip():
            stats.skipped_empty += 1
            continue
        stats.documents += 1
        yield source, i, text, user_id
    if n == 0:
        raise InputError(f"{path}: empty file (no lines); remove it or re-create it")
    return n


def preflight(paths: Sequence[str | os.PathLike], text_column: str = "text", id_column: str | None = None) -> None:
    """Check every file cheaply before the slow work starts: it opens, it is not empty, and
    its schema (Parquet) or first record (JSON lines) has ``text_column`` (and ``id_column``).

    Problems deeper in a file are found while streaming by :func:`iter_documents`.
    """
    for path in paths:
        path = Path(path)
        fmt = file_format(path)
        if fmt is None:
            raise _unsupported(path)
        kind, comp = fmt
        if kind == "parquet":
            if comp:
                raise InputError(
                    f"{path}: compressed Parquet files are not supported (Parquet compresses internally); decompress it"
                )
            pf = _open_parquet(path)
            _parquet_check_columns(path, pf, text_column, id_column)
            if pf.metadata.num_rows == 0:
                raise InputError(f"{path}: empty file (no rows); remove it or re-create it")
            continue
        n = 0
        for i, line in _iter_lines(path, comp):
            n += 1
            obj = _parse_json_line(path, i, line)
            if obj is None:
                continue
            _jsonl_text(path, i, obj, text_column)
            if id_column is not None:
                _jsonl_id(path, i, obj, id_column)
            break
        if n == 0:
            raise InputError(f"{path}: empty file (no lines); remove it or re-create it")


# --------------------------------------------------------------------------- texts back
class _Cursor:
    """Forward-only random access to the texts of one file, by ascending row."""

    def __init__(self, path: Path, text_column: str):
        self.path = path
        fmt = file_format(path)
        if fmt is None:
            raise _unsupported(path)
        self.kind, self.comp = fmt
        self.text_column = text_column
        self.last = -1
        if self.kind == "parquet":
            self.pf = _open_parquet(path)
            _parquet_check_columns(path, self.pf, text_column, None)
            self.offsets = [0]
            for i in range(self.pf.num_row_groups):
                self.offsets.append(self.offsets[-1] + self.pf.metadata.row_group(i).num_rows)
            self.rg = -1
            self.batches = None
            self.batch_first = 0
            self.batch_texts: list = []
        else:
            self.lines = _iter_lines(path, self.comp)

    def get(self, row: int) -> str:
        if row == self.last:  # the same document asked for twice in a row
            return self.last_text
        if row < self.last:
            raise InputError(f"{self.path}, row {row}: rows must be read in ascending order (internal error)")
        self.last = row
        self.last_text = self._get(row)
        return self.last_text

    def _get(self, row: int) -> str:
        if self.kind == "parquet":
            return self._parquet(row)
        for i, line in self.lines:
            if i == row:
                obj = _parse_json_line(self.path, i, line)
                if obj is None:
                    break
                return _jsonl_text(self.path, i, obj, self.text_column)
            if i > row:  # pragma: no cover - rows ascend
                break
        raise InputError(
            f"{self.path}, line {row + 1}: no document there any more; the file changed since `embed`, rerun it"
        )

    def _parquet(self, row: int) -> str:
        import bisect

        while True:
            if self.batch_texts and self.batch_first <= row < self.batch_first + len(self.batch_texts):
                text = self.batch_texts[row - self.batch_first]
                if text is None:
                    raise InputError(f"{self.path}, row {row}: column {self.text_column!r} is null; rerun `embed`")
                return text
            rg = bisect.bisect_right(self.offsets, row) - 1
            if rg >= self.pf.num_row_groups or row < 0:
                raise InputError(f"{self.path}, row {row}: beyond the end of the file; the file changed, rerun `embed`")
            if rg != self.rg:
                self.rg = rg
                self.batches = _iter_parquet_batches(self.path, self.pf, [self.text_column], [rg])
            try:
                first, batch = next(self.batches)
            except StopIteration:  # pragma: no cover
                raise InputError(f"{self.path}, row {row}: missing; the file changed, rerun `embed`") from None
            self.batch_first = first
            self.batch_texts = _parquet_texts(self.path, batch.column(0), first, self.text_column)


def read_texts(emb_dir: str | os.PathLike, doc_ids) -> Iterator[tuple[int, str]]:
    """Stream ``(doc_id, text)`` for the given ascending ``doc_ids`` of an ``embed`` directory.

    Texts are read back from the original corpus files named in ``docs.parquet``
    (``source``, ``row``) with the manifest's ``text_column``, after checking that the
    corpus files did not change since ``embed`` ran. Memory stays bounded: ``docs.parquet``
    is read in batches and each corpus file is read forward once.
    """
    import numpy as np
    import pyarrow.parquet as pq

    from .artifacts import check_fingerprints, read_manifest

    emb_dir = Path(emb_dir)
    manifest = read_manifest(emb_dir, "embed")
    check_fingerprints(manifest["inputs"]["files"], "embed")
    text_column = manifest["settings"]["text_column"]
    ids = np.asarray(doc_ids, dtype=np.int64).ravel()
    if ids.size == 0:
        return
    if ids.size > 1 and np.any(np.diff(ids) < 0):
        raise InputError("read_texts: doc_ids must be sorted ascending (internal error)")
    n_docs = int(manifest["statistics"]["n_docs"])
    if ids[0] < 0 or ids[-1] >= n_docs:
        raise InputError(
            f"{emb_dir}: doc_id {int(ids[0] if ids[0] < 0 else ids[-1])} is out of range (0..{n_docs - 1}); "
            "the downstream step does not belong to this embed directory"
        )
    try:
        docs = pq.ParquetFile(emb_dir / "docs.parquet")
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{emb_dir / 'docs.parquet'}: unreadable ({e}); rerun `clusterclip embed --overwrite`") from None
    cursor: _Cursor | None = None
    current: str | None = None
    k = 0  # position in ids
    start = 0
    for batch in docs.iter_batches(batch_size=65536, columns=["source", "row"]):
        stop = start + batch.num_rows
        hi = int(np.searchsorted(ids, stop, side="left"))
        if hi > k:
            sources = batch.column(0)
            rows = batch.column(1).to_numpy()
            for doc_id in ids[k:hi]:
                j = int(doc_id) - start
                src = sources[j].as_py()
                if src != current:  # documents of one source are contiguous in doc order
                    cursor, current = _Cursor(Path(src), text_column), src
                yield int(doc_id), cursor.get(int(rows[j]))
            k = hi
        start = stop
        if k >= ids.size:
            return
