"""JSON lines (``.jsonl``, ``.json``, ``.ndjson``; optionally ``.gz``/``.zst``): one object per line.

Rows are line indices from 0; a blank line keeps its number, holds no document and is counted
as an empty skip. Errors name the line 1-based ("line N"), as editors show it.
"""

from __future__ import annotations

import json
from typing import Iterable, Iterator

from ..errors import InputError
from .base import CorpusReader, Partitioning, ReadStats
from .compression import decompression_errors, open_binary
from .counting import count_newlines


class JsonlReader(CorpusReader):
    format = "jsonl"
    display = "JSON lines"
    suffixes = (".jsonl", ".json", ".ndjson")

    # ------------------------------------------------------------------ raw lines
    def lines(self) -> Iterator[tuple[int, bytes]]:
        """``(line index, raw bytes without the newline)``; updates :attr:`bytes_done`."""
        errors = decompression_errors()
        path = self.path
        try:
            fh, raw = open_binary(path, self.compression)
        except OSError as e:
            raise InputError(f"{path}: cannot open ({e.strerror or e}); check the file") from None
        i = -1
        with raw, fh:
            while True:
                try:
                    line = fh.readline()
                except errors as e:
                    kind = {"gzip": "gzip", "zstd": "zstd"}.get(self.compression, "")
                    raise InputError(f"{path}, line {i + 2}: corrupt or truncated {kind} data ({e}); "
                                     f"re-create or re-download the file") from None
                if not line:
                    self.bytes_done = self.size
                    return
                i += 1
                if i % 1024 == 0:
                    self.bytes_done = raw.tell()
                if line.endswith(b"\n"):
                    line = line[:-1]
                    if line.endswith(b"\r"):
                        line = line[:-1]
                yield i, line

    def count_lines(self) -> int | None:
        """The lines of the file, numbered as :meth:`lines` numbers them (a last line without a newline
        counts), by a newline count; None when it cannot be read (the read itself then says why)."""
        try:
            fh, raw = open_binary(self.path, self.compression)
            with raw, fh:
                n, size, last = count_newlines(fh)
        except decompression_errors():
            return None
        return n + (1 if size and last != b"\n" else 0)

    def _object(self, i: int, line: bytes) -> dict | None:
        try:
            s = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{self.path}, line {i + 1}: invalid UTF-8 at byte {e.start}; "
                             f"re-encode the file as UTF-8") from None
        if i == 0 and s.startswith("\ufeff"):
            s = s[1:]
        if not s.strip():
            return None
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            if i == 0 and s.lstrip().startswith("["):
                raise InputError(f"{self.path}, line 1: a JSON array, not JSON lines (one object per line); "
                                 f"convert it, e.g. with `jq -c '.[]'`") from None
            raise InputError(f"{self.path}, line {i + 1}: malformed JSON ({e.msg} at column {e.colno}); "
                             f"fix or remove the line") from None
        except RecursionError:
            raise InputError(f"{self.path}, line {i + 1}: JSON nested too deeply; fix or remove the line") from None
        if not isinstance(obj, dict):
            raise InputError(f"{self.path}, line {i + 1}: a JSON {type(obj).__name__}, not an object; "
                             f"each line must be one JSON object")
        return obj

    def _text(self, i: int, obj: dict, text_column: str) -> str:
        if text_column not in obj:
            keys = ", ".join(sorted(map(str, obj))[:20]) or "none"
            raise InputError(f"{self.path}, line {i + 1}: no field {text_column!r} (fields: {keys}); "
                             f"pass --text-column with one of them")
        text = obj[text_column]
        if not isinstance(text, str):
            what = "null" if text is None else f"a {type(text).__name__}"
            raise InputError(f"{self.path}, line {i + 1}: field {text_column!r} is {what}, not a string; "
                             f"fix the row or drop it")
        return _check_surrogates(text, f"{self.path}, line {i + 1}")

    def _id(self, i: int, obj: dict, id_column: str):
        if id_column not in obj:
            keys = ", ".join(sorted(map(str, obj))[:20]) or "none"
            raise InputError(f"{self.path}, line {i + 1}: no field {id_column!r} (fields: {keys}); "
                             f"pass --id-column with one of them or leave it out")
        value = obj[id_column]
        if isinstance(value, (dict, list)):
            raise InputError(f"{self.path}, line {i + 1}: id field {id_column!r} is a JSON {type(value).__name__}; "
                             f"ids must be strings or numbers")
        if isinstance(value, str):
            value = _check_surrogates(value, f"{self.path}, line {i + 1}")
        return value

    # ------------------------------------------------------------------ interface
    def check(self, text_column: str, id_column: str | None) -> None:
        n = 0
        for i, line in self.lines():
            n += 1
            obj = self._object(i, line)
            if obj is None:
                continue
            self._text(i, obj, text_column)
            if id_column is not None:
                self._id(i, obj, id_column)
            break
        if n == 0:
            raise InputError(f"{self.path}: empty file (no lines); remove it or re-create it")

    def documents(self, text_column: str, id_column: str | None, *, base_row: int = 0,
                  partition: Partitioning | None = None, stats: ReadStats) -> Iterator[tuple[int, str, object]]:
        n = 0
        for i, line in self.lines():
            n = i + 1
            if partition is not None and not partition.owns(base_row + i):
                stats.other_partitions += 1
                continue
            obj = self._object(i, line)
            if obj is None:
                stats.skip_empty(self.path, i)
                continue
            text = self._text(i, obj, text_column)
            user_id = self._id(i, obj, id_column) if id_column is not None else None
            if not text.strip():
                stats.skip_empty(self.path, i)
                continue
            stats.documents += 1
            yield i, text, user_id
        if n == 0:
            raise InputError(f"{self.path}: empty file (no lines); remove it or re-create it")
        stats.rows += n
        stats.per_file_rows.append(n)

    def texts(self, rows: Iterable[int], text_column: str) -> Iterator[tuple[int, str]]:
        lines = self.lines()
        last = -1
        for row in rows:
            if row <= last:
                raise ValueError(f"rows must ascend (got {row} after {last})")
            for i, line in lines:
                if i == row:
                    obj = self._object(i, line)
                    if obj is None:
                        break
                    yield row, self._text(i, obj, text_column)
                    last = row
                    break
            else:
                raise InputError(f"{self.path}, line {row + 1}: no longer there; the file changed since `embed`, "
                                 f"rerun it")
            if last != row:
                raise InputError(f"{self.path}, line {row + 1}: no document there any more; the file changed since "
                                 f"`embed`, rerun it")


def _check_surrogates(text: str, where: str) -> str:
    """JSON may spell lone surrogates (``"\\ud800"``), which no UTF-8 tool can handle: refuse them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"{where}: holds a lone surrogate (\\u{ord(text[e.start]):04x}), not valid Unicode; "
                         f"fix the text") from None
    return text


READER = JsonlReader
