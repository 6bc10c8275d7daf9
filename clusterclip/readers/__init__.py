"""Corpus readers (in the spirit of datatrove's readers): one class per input format.

Inputs are files, directories (searched recursively; names starting with ``.`` or ``_`` are
skipped, as Spark and datatrove do) or glob patterns, in the order given, each directory or
glob in sorted path order. Formats: Parquet (``.parquet``) and JSON lines
(``.jsonl``/``.json``/``.ndjson``), the latter optionally ``.gz`` or ``.zst`` compressed.

A new input format is one module here with a :class:`~.base.CorpusReader` subclass, added to
:data:`READERS`. Every problem with the input is raised as an :class:`~clusterclip.errors.InputError`
naming the file, the row and the fix.
"""

from __future__ import annotations

import glob as _glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..errors import InputError
from ..registry import Registry
from ..remote import refuse_remote
from .base import RESERVED_COLUMNS, CorpusReader, Partitioning, ReadStats
from .compression import split_compression

#: input format -> the module that defines its reader (ending with ``READER = YourReader``): one line each
READERS: Registry = Registry("input format", "READER", {
    "parquet": "clusterclip.readers.parquet",
    "jsonl": "clusterclip.readers.jsonl",
})
SUPPORTED_TEXT = "Parquet (.parquet) or JSON lines (.jsonl/.json/.ndjson), optionally .gz or .zst"

__all__ = ["READERS", "RESERVED_COLUMNS", "CorpusReader", "Inputs", "Partitioning", "ReadStats", "expand_inputs",
           "iter_documents", "iter_numbered_documents", "reader_for"]


def reader_class(path: str | os.PathLike) -> tuple[type[CorpusReader], str] | None:
    """``(reader class, compression)`` for a supported file name, else None."""
    base, compression = split_compression(Path(path).name)
    lower = base.lower()
    for cls in READERS.values():
        if lower.endswith(cls.suffixes):
            return cls, compression
    return None


def reader_for(path: str | os.PathLike) -> CorpusReader:
    """The reader of one corpus file (refusing an unsupported or wrongly compressed name)."""
    found = reader_class(path)
    if found is None:
        raise InputError(f"{path}: unsupported file type; give {SUPPORTED_TEXT} files")
    cls, compression = found
    if compression and not cls.compressible:
        raise InputError(f"{path}: compressed {cls.display} files are not supported ({cls.display} compresses "
                         f"internally); decompress it")
    return cls(Path(path), compression)


@dataclass
class Inputs:
    """The corpus files of a run, in order, and what the directories held that is not corpus."""

    files: list[Path]
    unsupported: list[Path] = field(default_factory=list)  #: files in input directories of other types
    named: list[Path] = field(default_factory=list)  #: the files named literally (not found in a directory or glob)


def expand_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> Inputs:
    """Expand files, directories and glob patterns into the corpus files (resolved, each once).

    A file named explicitly (or matched by a glob) must have a supported name; directories
    contribute their supported files and list the others in :attr:`Inputs.unsupported`.
    Remote URLs (``s3://``, ``hf://``, ``https://``...) are refused: copy the data locally.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise InputError("no input given; name one or more corpus files, directories or glob patterns")
    out: list[Path] = []
    unsupported: list[Path] = []
    named: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        p = p.resolve()
        if p not in seen:
            seen.add(p)
            out.append(p)

    for item in inputs:
        text = os.fspath(item)
        refuse_remote(text, "input")
        p = Path(text).expanduser()
        if p.is_dir():
            found: list[Path] = []  # files of a supported format, and the others
            other: list[Path] = []
            for q in sorted(p.rglob("*")):
                if not q.is_file() or _is_hidden(q, p):
                    continue
                (found if reader_class(q) is not None else other).append(q)
            if not found:
                raise InputError(f"{p}: directory holds no {SUPPORTED_TEXT} files; check the path")
            for q in found:
                reader_for(q)  # refuses e.g. a compressed Parquet file
                add(q)
            unsupported.extend(other)
        elif p.is_file():
            reader_for(p)
            add(p)
            named.append(p.resolve())
        elif _glob.has_magic(text):
            for m in _glob_files(text):
                add(m)
        else:
            raise InputError(f"{p}: no such file or directory; check the path")
    return Inputs(out, unsupported, named)


def _glob_files(pattern: str) -> list[Path]:
    """The files a glob pattern matches (sorted), each of a supported format; none is one line."""
    files = [m for m in sorted(Path(m) for m in _glob.glob(os.path.expanduser(pattern), recursive=True))
             if m.is_file()]
    if not files:
        raise InputError(f"{pattern}: the pattern matches no files; check the pattern (quote it in the shell)")
    for m in files:
        reader_for(m)
    return files


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def iter_documents(
    readers: Sequence[CorpusReader],
    text_column: str = "text",
    id_column: str | None = None,
    *,
    stats: ReadStats | None = None,
    partition: Partitioning | None = None,
) -> Iterator[tuple[str, int, str, object]]:
    """Stream ``(source, row, text, user_id)`` of every document of ``readers``, in order.

    ``source`` is the file's path as a string, ``row`` its 0-based row or line, ``user_id``
    the value of ``id_column`` (None without one). Whitespace-only documents are skipped and
    counted; rows of other partitions are counted and not parsed. ``stats`` (a
    :class:`ReadStats`) holds the accounting; ``stats.complete`` is set when every file was read.
    """
    for _, doc in iter_numbered_documents(readers, text_column, id_column, stats=stats, partition=partition):
        yield doc


def iter_numbered_documents(
    readers: Sequence[CorpusReader],
    text_column: str = "text",
    id_column: str | None = None,
    *,
    stats: ReadStats | None = None,
    partition: Partitioning | None = None,
) -> Iterator[tuple[int, tuple[str, int, str, object]]]:
    """:func:`iter_documents` with each document's input row number over all files (as :class:`Partitioning`
    numbers them): ``(global_row, (source, row, text, user_id))``."""
    stats = stats if stats is not None else ReadStats()
    if partition is not None and partition.whole:
        partition = None
    base = 0
    for reader in readers:
        source = str(reader.path)
        for row, text, user_id in reader.documents(text_column, id_column, base_row=base, partition=partition,
                                                   stats=stats):
            yield base + row, (source, row, text, user_id)
        base += stats.per_file_rows[-1]
    stats.complete = True
