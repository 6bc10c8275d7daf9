"""Writing an ``embed`` directory (in an :class:`~clusterclip.artifacts.OutputDir` build): parts of
``part_docs`` documents, each journaled with its digests so a resumed run re-checks what it keeps
(:class:`~clusterclip.artifacts.journal.Journal`), then ``docs.parquet`` from the parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts import atomic_path, file_record, save_npy_atomic, sha256_file, write_parquet_atomic
from ..artifacts.journal import Journal, files_intact
from ..errors import IntegrityError
from ..faults import checkpoint
from .directory import DOCS_FILE, JOURNAL, PARTS_DIR, docs_part_name, part_files, part_name
from .store import npy_shape


class EmbedWriter:
    """Writes an embed directory into a build directory: journaled parts, then ``docs.parquet``."""

    def __init__(self, build: Path, *, id_column: str | None, save_dtype: str):
        self.build = Path(build)
        self.parts_dir = self.build / PARTS_DIR
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self.id_column = id_column
        self.save_dtype = save_dtype
        self.journal: list[dict] = []  # the entries of the parts written (or kept) so far
        self._log = Journal(self.parts_dir / JOURNAL)

    # ------------------------------------------------------------------ resume
    def resume(self) -> list[dict]:
        """Keep the parts a killed run finished whose files still match their journaled digests.

        Everything after the first missing or mismatching part is deleted. Returns the kept entries.
        """
        kept: list[dict] = []
        for k, e in enumerate(self._log.load()):
            if e.get("part") != k or not files_intact(self.build, [
                    {"path": part_name(k), "bytes": _size(self.build / part_name(k)), "sha256": e["embeddings_sha256"]},
                    {"path": f"{PARTS_DIR}/{docs_part_name(k)}", "bytes": _size(self.parts_dir / docs_part_name(k)),
                     "sha256": e["docs_sha256"]}]):
                break
            kept.append(e)
        self.journal = kept
        keep = {part_name(k) for k in range(len(kept))} | {docs_part_name(k) for k in range(len(kept))}
        for p in part_files(self.build) + list(self.parts_dir.glob("docs-*.parquet")):
            if p.name not in keep:
                p.unlink()
        for p in list(self.build.glob(".*.tmp")) + list(self.parts_dir.glob(".*.tmp")):
            p.unlink(missing_ok=True)
        (self.build / DOCS_FILE).unlink(missing_ok=True)
        self._log.rewrite(self.journal)
        return kept

    def resume_point(self) -> tuple[str, int] | None:
        """``(source, row)`` of the last document in the kept parts (None: nothing kept)."""
        import pyarrow.parquet as pq

        for k in range(len(self.journal) - 1, -1, -1):
            t = pq.read_table(self.parts_dir / docs_part_name(k), columns=["source", "row"])
            if t.num_rows:
                return t.column("source")[-1].as_py(), int(t.column("row")[-1].as_py())
        return None

    # ------------------------------------------------------------------ parts
    def write_part(self, k: int, embeddings: np.ndarray | None, sources, rows, n_chars, n_tokens, user_ids,
                   truncated: int = 0, dim: int | None = None, truncated_flags=None) -> dict:
        """Write part ``k`` (embeddings + its docs rows) and journal it; returns the journal entry.

        ``truncated_flags``: per document, whether it was cut at ``max_length`` (None: unknown), so
        that each corpus file's tallies can be recorded (what an incremental run reuses).
        """
        if k != len(self.journal):
            raise RuntimeError(f"internal error: part {k} written after {len(self.journal)} parts")
        if embeddings is None or len(embeddings) == 0:
            embeddings = np.zeros((0, dim or 0), dtype=np.float32)
        save_npy_atomic(self.build / part_name(k), np.ascontiguousarray(embeddings.astype(self.save_dtype)))
        if truncated_flags is None:
            truncated_flags = [False if not truncated else None] * len(embeddings)
        _write_docs_part(self.parts_dir / docs_part_name(k), sources, rows, n_chars, n_tokens, user_ids,
                         self.id_column, truncated_flags)
        entry = {"part": k, "docs": int(len(embeddings)), "tokens": int(np.sum(n_tokens)) if len(n_tokens) else 0,
                 "truncated": int(truncated), "embeddings_sha256": sha256_file(self.build / part_name(k)),
                 "docs_sha256": sha256_file(self.parts_dir / docs_part_name(k))}
        self.journal.append(entry)
        self._log.append(entry)
        checkpoint("embed.part")
        return entry

    def finish(self) -> tuple[list[dict], dict]:
        """Assemble ``docs.parquet``; return (file records of every output, totals)."""
        import pyarrow.parquet as pq

        n_parts = len(self.journal)
        paths = [self.parts_dir / docs_part_name(k) for k in range(n_parts)]
        id_type = None
        if self.id_column is not None:
            id_type = common_id_type([pq.read_schema(p).field(self.id_column).type for p in paths])
        writer = DocsWriter(self.build / DOCS_FILE, docs_schema(self.id_column, id_type))
        dim = 0
        ok = False
        per_source: dict[str, dict] = {}
        try:
            for k, p in enumerate(paths):
                t = pq.read_table(p)
                _tally_sources(per_source, t)
                shape = npy_shape(self.build / part_name(k))
                if shape[0] != t.num_rows:
                    raise IntegrityError(f"{self.build / part_name(k)}: holds {shape[0]} rows but its docs part "
                                         f"{t.num_rows}; rerun with --overwrite")
                dim = max(dim, shape[1])
                writer.write(t.column("source").combine_chunks(), t.column("row").to_numpy(),
                             t.column("n_chars").to_numpy(),
                             t.column(self.id_column).combine_chunks() if self.id_column is not None else None)
            ok = True
        finally:
            writer.close(ok)
        records = [{"path": part_name(k), "bytes": (self.build / part_name(k)).stat().st_size,
                    "sha256": e["embeddings_sha256"]} for k, e in enumerate(self.journal)]
        records.append(file_record(self.build, DOCS_FILE))
        totals = {"n_docs": writer.doc_id, "dim": dim, "tokens": sum(e["tokens"] for e in self.journal),
                  "truncated": sum(e["truncated"] for e in self.journal), "parts": n_parts,
                  "part_rows": [e["docs"] for e in self.journal], "per_source": per_source}
        return records, totals


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else -1


def _tally_sources(per_source: dict, t) -> None:
    """Add one docs part's documents, tokens and truncated documents to the tallies of each source file."""
    import pyarrow.compute as pc

    if t.num_rows == 0:
        return
    has_flags = "truncated" in t.column_names
    if has_flags:
        t = t.set_column(t.column_names.index("truncated"), "truncated", pc.cast(t.column("truncated"), "int64"))
    aggs = [("row", "count"), ("n_tokens", "sum")] + ([("truncated", "sum"), ("truncated", "count")] if has_flags else [])
    table = t.group_by("source", use_threads=False).aggregate(aggs).to_pylist()
    first = {s: i for i, s in reversed(list(enumerate(t.column("source").to_pylist())))}
    for r in sorted(table, key=lambda r: first[r["source"]]):
        e = per_source.setdefault(r["source"], {"documents": 0, "tokens": 0, "truncated_docs": 0})
        e["documents"] += int(r["row_count"])
        e["tokens"] += int(r["n_tokens_sum"] or 0)
        known = has_flags and r["truncated_count"] == r["row_count"]
        if e["truncated_docs"] is not None and known:
            e["truncated_docs"] += int(r["truncated_sum"] or 0)
        else:
            e["truncated_docs"] = None


def _user_id_array(values: list):
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _write_docs_part(path: Path, sources, rows, n_chars, n_tokens, user_ids, id_column,
                     truncated_flags=None) -> None:
    import pyarrow as pa

    cols = {
        "source": sources if isinstance(sources, pa.Array) else pa.array(sources, type=pa.string()),
        "row": pa.array(rows, type=pa.int64()),
        "n_chars": pa.array(n_chars, type=pa.int64()),
        "n_tokens": pa.array(n_tokens, type=pa.int64()),
    }
    if truncated_flags is not None:
        cols["truncated"] = pa.array(list(truncated_flags), type=pa.bool_())
    if id_column is not None:
        cols[id_column] = user_ids if isinstance(user_ids, pa.Array) else _user_id_array(list(user_ids))
    write_parquet_atomic(path, pa.table(cols))


def common_id_type(types: list):
    """One Arrow type for the user's id column across parts: the shared one, else string."""
    import pyarrow as pa

    real = [t for t in types if not pa.types.is_null(t)]
    if not real:
        return pa.null() if types else pa.string()
    first = real[0]
    if all(t == first for t in real):
        return first
    return pa.string()


def docs_schema(id_column: str | None, id_type=None):
    import pyarrow as pa

    fields = [("doc_id", pa.int64()), ("source", pa.string()), ("row", pa.int64()), ("n_chars", pa.int64())]
    if id_column is not None:
        fields.append((id_column, id_type if id_type is not None else pa.string()))
    return pa.schema(fields)


class DocsWriter:
    """Write ``docs.parquet`` in slices (one row group per slice), atomically; byte-stable."""

    def __init__(self, path: Path, schema):
        import pyarrow.parquet as pq

        self.schema = schema
        self._ctx = atomic_path(path)
        tmp = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(tmp, schema, compression="zstd")
        self.doc_id = 0

    def write(self, sources, rows, n_chars, user_ids=None) -> None:
        import pyarrow as pa

        n = len(rows)
        cols = [
            pa.array(np.arange(self.doc_id, self.doc_id + n, dtype=np.int64)),
            pa.array(sources, type=pa.string()) if not isinstance(sources, pa.Array) else sources.cast(pa.string()),
            pa.array(rows, type=pa.int64()),
            pa.array(n_chars, type=pa.int64()),
        ]
        if len(self.schema) == 5:
            cols.append(user_ids.cast(self.schema.field(4).type))
        self._writer.write_table(pa.Table.from_arrays(cols, schema=self.schema), row_group_size=max(n, 1))
        self.doc_id += n

    def close(self, ok: bool = True) -> None:
        self._writer.close()
        if ok:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
