"""Incremental ``embed`` (``--incremental``): re-embed only the corpus files that are new or changed.

The unit of reuse is one input file, identified by its content (sha256, size and format): a file
of the new corpus whose content an earlier output of ``--out`` embedded with the same settings
keeps its vectors; every other file is embedded (into ``build/.delta``, journaled like any run,
so an interrupted incremental run resumes). Then the new output is assembled in the order of
the new corpus, in parts of ``part_docs`` documents, exactly as a run from scratch lays it out:
reused rows are copied from the old output after checking the sha256 of every file they come
from, new rows from the delta. The old output stays complete until the new one is committed.

What a file's reuse needs is recorded by every whole run in the manifest's ``per_file`` (rows,
documents, tokens, truncated documents per corpus file); the new manifest's ``incremental``
names what was reused, what was embedded and what was dropped.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts import manifest_digest, sha256_file
from ..errors import IntegrityError
from ..readers import Partitioning, reader_class
from ..readers.base import EMPTY_ROWS_LISTED
from ..settings import differences
from .directory import DOCS_FILE, PARTS_DIR, EmbedDir, part_files, part_name
from .store import EmbeddingStore
from .writer import EmbedWriter

DELTA_DIR = ".delta"


def settings_differences(previous: dict, resolved: dict) -> list[str]:
    return differences(previous.get("settings") or {}, resolved)


def per_file_record(records: list[dict], per_file_rows: list[int], per_source: dict,
                    empty_by_file: dict | None = None) -> list[dict]:
    """What a whole run records per corpus file (in input order): the tallies a later run may reuse."""
    out = []
    for rec, rows in zip(records, per_file_rows):
        tally = per_source.get(rec["path"], {"documents": 0, "tokens": 0, "truncated_docs": 0})
        out.append({"path": rec["path"], "sha256": rec["sha256"], "bytes": rec["bytes"], "rows": int(rows),
                    "documents": tally["documents"], "skipped_empty": int(rows) - tally["documents"],
                    "tokens": tally["tokens"], "truncated_docs": tally["truncated_docs"],
                    "empty_rows": list((empty_by_file or {}).get(rec["path"], []))})
    return out


def first_empty_rows(per_file: list[dict]) -> list:
    """``[file, row]`` of the first empty rows over the files (as ``ReadStats.empty_rows``)."""
    rows = [[f["path"], r] for f in per_file for r in f.get("empty_rows", [])]
    return rows[:EMPTY_ROWS_LISTED]


def _content_key(path: str, sha256: str, size: int) -> tuple:
    found = reader_class(path)
    return (sha256, size, found[0].__name__ if found else None, found[1] if found else None)


@dataclass
class Plan:
    """Per file of the new corpus: reused (the old per_file entry and its first doc_id) or embedded."""

    reuse: dict = field(default_factory=dict)  #: new index -> (old per_file entry, first old doc_id)
    embed: list = field(default_factory=list)  #: new indices to embed, in order
    removed: list = field(default_factory=list)  #: old paths whose content is in no new file

    @property
    def reused_docs(self) -> int:
        return sum(entry["documents"] for entry, _ in self.reuse.values())


def plan(previous: dict, records: list[dict]) -> Plan:
    """Which files of ``records`` (the new corpus) the ``previous`` manifest's output already holds."""
    old = previous.get("per_file")
    p = Plan()
    if not old:
        p.embed = list(range(len(records)))
        return p
    by_content: dict[tuple, list[tuple[dict, int]]] = {}
    first = 0
    for entry in old:
        key = _content_key(entry["path"], entry["sha256"], entry["bytes"])
        if entry.get("truncated_docs") is not None:  # tallies complete: reusable
            by_content.setdefault(key, []).append((entry, first))
        first += entry["documents"]
    used = set()
    for i, rec in enumerate(records):
        cands = by_content.get(_content_key(rec["path"], rec["sha256"], rec["bytes"]))
        if not cands:
            p.embed.append(i)
            continue
        same_path = [c for c in cands if c[0]["path"] == rec["path"]]
        entry, start = (same_path or cands)[0]
        p.reuse[i] = (entry, start)
        used.add(entry["path"])
    p.removed = [e["path"] for e in old if e["path"] not in used]
    return p


class _DocsRows:
    """Rows ``start:stop`` of a ``docs.parquet`` (one row group per part), reading each row group once."""

    def __init__(self, path: Path):
        import pyarrow.parquet as pq

        self.pf = pq.ParquetFile(path)
        sizes = [self.pf.metadata.row_group(g).num_rows for g in range(self.pf.num_row_groups)]
        self.offsets = np.cumsum([0] + sizes)
        self._cached: tuple[int, object] | None = None

    def _group(self, g: int):
        if self._cached is None or self._cached[0] != g:
            self._cached = (g, self.pf.read_row_group(g))
        return self._cached[1]

    def read(self, start: int, stop: int):
        import pyarrow as pa

        pieces = []
        g = int(np.searchsorted(self.offsets, start, side="right") - 1)
        pos = start
        while pos < stop:
            lo, hi = int(self.offsets[g]), int(self.offsets[g + 1])
            b = min(stop, hi)
            pieces.append(self._group(g).slice(pos - lo, b - pos))
            pos, g = b, g + 1
        return pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]


class _Packer:
    """Collects rows in corpus order and writes them as parts of ``part_docs`` rows."""

    def __init__(self, writer: EmbedWriter, part_docs: int, dim: int, id_column: str | None):
        self.writer, self.part_docs, self.dim, self.id_column = writer, part_docs, dim, id_column
        self.buf: dict = {"emb": [], "sources": [], "rows": [], "n_chars": [], "n_tokens": [], "ids": []}
        self.held = 0
        self.k = 0

    def add(self, emb: np.ndarray, source: str, table, n_tokens) -> None:
        n = len(emb)
        pos = 0
        while pos < n:
            take = min(n - pos, self.part_docs - self.held)
            sl = table.slice(pos, take)
            self.buf["emb"].append(emb[pos : pos + take])
            self.buf["sources"].extend([source] * take)
            self.buf["rows"].append(sl.column("row").to_numpy())
            self.buf["n_chars"].append(sl.column("n_chars").to_numpy())
            self.buf["n_tokens"].append(np.asarray(n_tokens[pos : pos + take], dtype=np.int64))
            if self.id_column is not None:
                self.buf["ids"].extend(sl.column(self.id_column).to_pylist())
            self.held += take
            pos += take
            if self.held == self.part_docs:
                self.flush()

    def flush(self) -> None:
        if not self.held:
            return
        b = self.buf
        self.writer.write_part(self.k, np.concatenate(b["emb"]), b["sources"], np.concatenate(b["rows"]),
                               np.concatenate(b["n_chars"]), np.concatenate(b["n_tokens"]),
                               b["ids"] if self.id_column is not None else [None] * self.held, 0, dim=self.dim,
                               truncated_flags=[None] * self.held)
        self.k += 1
        self.buf = {key: [] for key in b}
        self.held = 0


def run_incremental(out: Path, build: Path, previous: dict, p: Plan, records: list[dict], readers: list, s,
                    encoder, run_engine, *, resume: bool, progress: bool, log) -> dict:
    """Embed the files of ``p.embed`` into ``build/.delta``, then assemble the complete output in ``build``.

    Returns ``outputs``, ``totals`` (as :meth:`EmbedWriter.finish`), ``per_file``, ``embedded`` (documents
    encoded by this call) and the manifest's ``incremental`` record.
    """
    old = _previous_output(out, previous, p)
    # 1. the new and changed files, journaled in build/.delta (resumable)
    delta = _embed_delta(build / DELTA_DIR, [readers[i] for i in p.embed], s, encoder, run_engine, resume=resume,
                         progress=progress)
    # 2. the complete output, in the new corpus order, laid out as a run from scratch
    for stale in [build / PARTS_DIR, build / DOCS_FILE, *part_files(build)]:
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink(missing_ok=True)
    writer = EmbedWriter(build, id_column=s.id_column, save_dtype=s.save_dtype)
    dim = old.dim if old.n_docs else encoder.dim
    per_file = _assemble(old, delta, p, records, writer, s, dim, progress)
    if not writer.journal:
        writer.write_part(0, None, [], [], [], [], [], 0, dim=dim)
    outputs, totals = writer.finish()
    share_unchanged(out, build, previous, outputs)
    totals["tokens"] = sum(f["tokens"] for f in per_file)
    totals["truncated"] = sum(f["truncated_docs"] or 0 for f in per_file)
    shutil.rmtree(delta.dir, ignore_errors=True)
    record = {
        "previous": {"manifest_sha256": manifest_digest(out), "n_docs": old.n_docs},
        "lineage": list((previous.get("incremental") or {}).get("lineage") or []) + [manifest_digest(out)],
        "reused": [{"path": records[i]["path"], "from": p.reuse[i][0]["path"], "documents": p.reuse[i][0]["documents"]}
                   for i in sorted(p.reuse)],
        "embedded": [records[i]["path"] for i in p.embed],
        "dropped": p.removed,
        "reused_docs": p.reused_docs,
        "embedded_docs": int(totals["n_docs"]) - p.reused_docs,
    }
    if not previous.get("per_file"):
        log(f"embed: note: {out} records no per-file tallies (written by an older clusterclip or by merge); "
            f"every file was embedded again")
    return {"outputs": outputs, "totals": totals, "per_file": per_file, "embedded": delta.embedded, "record": record}


def share_unchanged(out: Path, build: Path, previous: dict, outputs: list[dict]) -> int:
    """Each new file whose bytes the file of the same name in ``out`` still has (size and sha256 recorded alike
    in both manifests, and the old file re-hashed now) becomes a hard link of it, so the output being replaced,
    which the commit keeps readable as a generation, costs no space for the parts both share. Returns how many."""
    old = {r["path"]: (r["bytes"], r["sha256"]) for r in previous.get("outputs") or []}
    shared = 0
    for rec in outputs:
        if old.get(rec["path"]) != (rec["bytes"], rec["sha256"]):
            continue
        src, dest = out / rec["path"], build / rec["path"]
        if src.is_symlink() or not src.is_file() or sha256_file(src) != rec["sha256"]:
            continue
        tmp = dest.with_name(f".{dest.name}.link.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp, follow_symlinks=False)
        except OSError:
            return shared  # no hard links here: the files stay copies
        os.replace(tmp, dest)
        shared += 1
    return shared


def _previous_output(out: Path, previous: dict, p: Plan) -> EmbedDir:
    """The output being replaced, checked: its manifest, sizes, docs.parquet rows, and the sha256 of every file
    a reused row comes from."""
    old = EmbedDir(out)
    if old.manifest.get("checksum") != previous.get("checksum"):
        raise IntegrityError(f"{out}: its manifest changed during this run; rerun")
    if p.reuse:
        store = old.store() if old.n_docs else None
        needed = {DOCS_FILE}
        for entry, start in p.reuse.values():
            if entry["documents"] and store is not None:
                a = int(np.searchsorted(store.offsets, start, side="right") - 1)
                b = int(np.searchsorted(store.offsets, start + entry["documents"] - 1, side="right") - 1)
                needed.update(Path(store.files[i]).name for i in range(a, b + 1))
        old.verify(needed)
    return old


@dataclass
class _Delta:
    """What the new and changed files gave (in ``dir``): per file rows, documents and tallies, and their rows."""

    dir: Path
    embedded: int = 0
    per_source: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    empty: dict = field(default_factory=dict)
    store: EmbeddingStore | None = None
    docs: _DocsRows | None = None


def _embed_delta(delta_dir: Path, todo: list, s, encoder, run_engine, *, resume: bool, progress: bool) -> _Delta:
    """Embed the files ``todo`` into ``delta_dir`` (journaled: a resumed run keeps its finished parts)."""
    delta = _Delta(delta_dir)
    if not todo:
        return delta
    writer = EmbedWriter(delta_dir, id_column=s.id_column, save_dtype=s.save_dtype)
    kept = writer.resume() if resume else []
    stats, delta.embedded = run_engine(todo, s, encoder, writer, Partitioning(1, 0, s.partition_block),
                                       done_parts=len(kept), progress=progress)
    stats.check(f"{len(todo)} changed input files")
    delta.rows = list(stats.per_file_rows)
    delta.empty = stats.empty_by_file
    if writer.journal:
        _, totals = writer.finish()
        delta.per_source = totals["per_source"]
        if totals["n_docs"]:
            delta.store = EmbeddingStore([delta_dir / part_name(k) for k in range(totals["parts"])], totals["part_rows"])
            delta.docs = _DocsRows(delta_dir / DOCS_FILE)
    return delta


def _assemble(old: EmbedDir, delta: _Delta, p: Plan, records: list[dict], writer: EmbedWriter, s, dim: int,
              progress: bool) -> list[dict]:
    """Every file's rows, reused or new, in the new corpus order, through ``writer``; the new ``per_file``."""
    from ..progress import bar as progress_bar

    packer = _Packer(writer, s.part_docs, dim, s.id_column)
    store = old.store() if old.n_docs else None
    old_docs = _DocsRows(old.docs_file()) if p.reuse else None
    per_file: list[dict] = []
    delta_first, delta_index = 0, 0
    total = p.reused_docs + sum(v["documents"] for v in delta.per_source.values())
    with progress_bar(total, desc="assemble", unit="doc", unit_scale=True, enabled=progress, leave=False) as bar:
        for i, rec in enumerate(records):
            if i in p.reuse:
                entry, start = p.reuse[i]
                src_store, src_docs, n = store, old_docs, entry["documents"]
                tally = {k: entry[k] for k in ("rows", "documents", "skipped_empty", "tokens", "truncated_docs")}
                tally["empty_rows"] = list(entry.get("empty_rows", []))
                expect_source, where = entry["path"], old.docs_file()
            else:
                start, tally = delta_first, _delta_tally(delta, rec["path"], int(delta.rows[delta_index]))
                n = tally["documents"]
                delta_index, delta_first = delta_index + 1, delta_first + n
                src_store, src_docs = delta.store, delta.docs
                expect_source, where = rec["path"], delta.dir / DOCS_FILE
            per_file.append({"path": rec["path"], "sha256": rec["sha256"], "bytes": rec["bytes"], **tally})
            for a in range(start, start + n, s.part_docs):
                assert src_store is not None and src_docs is not None  # documents reused: OLD holds some
                b = min(start + n, a + s.part_docs)
                table = src_docs.read(a, b)
                sources = set(table.column("source").to_pylist())
                if sources != {expect_source}:
                    raise IntegrityError(f"{where}: rows {a}..{b - 1} belong to {sorted(sources)}, not to "
                                         f"{expect_source}; rerun with --overwrite")
                packer.add(src_store.read(a, b), rec["path"], table, np.zeros(b - a, dtype=np.int64))
                bar.update(b - a)
    packer.flush()
    return per_file


def _delta_tally(delta: _Delta, path: str, rows: int) -> dict:
    """The per-file tally of a newly embedded file (as a whole run records it)."""
    got = delta.per_source.get(path, {"documents": 0, "tokens": 0, "truncated_docs": 0})
    n = got["documents"]
    return {"rows": rows, "documents": n, "skipped_empty": rows - n, "tokens": got["tokens"],
            "truncated_docs": got["truncated_docs"], "empty_rows": list(delta.empty.get(path, []))}
