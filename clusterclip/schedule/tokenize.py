"""Tokenizing the used documents once, as engine tasks: the schedule step's token store.

With one slot (the local engine) the store is one task: :func:`tokenize_documents` reads the texts
back through ``EmbedDir.texts`` and runs :func:`~clusterclip.tokens.build.build_token_store` with
``--workers`` (resumable, the fast tokenizer checked). With more slots (Ray), the used documents are
cut into *ranges* of about equal text, consecutive doc_ids of one corpus file each
(:func:`doc_ranges`); each :func:`tokenize_range` task builds a store of its range under
``tokens.parts/`` (journaled, resumable), and the store's owner merges them in doc_id order
(:func:`~clusterclip.tokens.store.merge_token_stores`; the copies into ``tokens.bin`` are tasks
too). The merged store holds exactly the bytes of the one-task store. Workers elsewhere read the
corpus by path and load ``--tokenizer`` themselves, checking that its digest is the driver's.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MismatchError
from ..faults import checkpoint
from ..progress import bar as progress_bar
from ..readers import reader_for

PARTS_DIR = "tokens.parts"
#: the fewest characters in a range
MIN_RANGE_CHARS = 1 << 20
#: ranges cut from one JSON lines file at most (each task reads the file from its start)
MAX_JSONL_RANGES = 64
MAX_COMPRESSED_RANGES = 8


def build_tokens(engine, settings, emb, doc_ids: np.ndarray, n_docs: int, tok, path: Path, *, progress: bool):
    """The token store at ``path`` of ``doc_ids`` (ascending) of ``emb``, tokenized by ``engine``'s tasks."""
    from ..tokens.build import build_token_store
    from ..tokens.store import META, TokenStore

    emb.check_corpus(rehash=settings.rehash_inputs, progress=progress)  # before the tokenizer's bar starts
    slots = engine.slots(settings)
    if slots == 1:  # one task: the whole store at `path`, nothing to cut or merge
        task = (emb, np.asarray(doc_ids, dtype=np.int64), n_docs, str(path), settings.workers, progress)
        for _ in engine.map(settings, tokenize_documents, [task], shared=(tok,)):
            pass
        return TokenStore.open(path)
    if (path / META).is_file():  # merged by an interrupted run of the same job: reused (or refused) as it is
        return build_token_store(iter(()), n_docs, tok, path, progress=False)
    ranges = doc_ranges(emb, np.asarray(doc_ids, dtype=np.int64), slots)
    if not ranges:
        return build_token_store(iter(()), n_docs, tok, path, progress=False)
    parts = path.parent / PARTS_DIR
    parts.mkdir(parents=True, exist_ok=True)
    expected = tokenizer_identity(tok)
    task_settings = settings.replace(tokenizer=_portable_spec(settings.tokenizer))
    largest_first = sorted(range(len(ranges)), key=lambda i: -ranges[i].chars)  # a shorter tail
    args: list[tuple] = [(task_settings, expected, emb.text_column, r.source, r.rows, r.ids - r.start, r.stop - r.start,
             str(parts / r.name())) for r in (ranges[i] for i in largest_first)]
    n_tokens = [0] * len(ranges)
    with progress_bar(int(sum(len(r.ids) for r in ranges)), desc="tokenize", unit="doc", unit_scale=True,
                      enabled=progress) as bar:
        sizes = [len(ranges[i].ids) for i in largest_first]
        for j, got in engine.map(settings, tokenize_range, args, sizes=sizes, bar=bar):
            n_tokens[largest_first[j]] = got
            checkpoint("schedule.tokens")  # a range is durable (a rerun reuses its finished store)
    _merge(engine, settings, ranges, [parts / r.name() for r in ranges], n_tokens, n_docs, tok, path)
    store = TokenStore.open(path)
    shutil.rmtree(parts, ignore_errors=True)
    return store


def tokenize_documents(tok, emb, doc_ids: np.ndarray, n_docs: int, path: str, workers: int | None, show: bool, *,
                       progress) -> int:
    """An engine task: every document of ``doc_ids`` into one store at ``path`` (texts read back through the
    embed directory's owner; a callable, so a fast tokenizer found wrong late starts over on ``tokenizers``)."""
    from ..tokens.build import build_token_store

    chars = emb.docs_table(["n_chars"]).column("n_chars").to_numpy()[doc_ids] if show else None  # the ETA's work
    store = build_token_store(lambda: emb.texts(doc_ids), n_docs, tok, path, progress=show and progress is not None,
                              total=len(doc_ids), workers=workers, chars=chars)
    return store.n_tokens


@dataclass
class DocRange:
    """Used documents ``ids`` (ascending, within ``[start, stop)``) of one corpus file, at ``rows``."""

    start: int
    stop: int
    source: str
    ids: np.ndarray
    rows: np.ndarray
    chars: int = 0

    def name(self) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(self.ids, dtype="<i8").tobytes()).hexdigest()[:12]
        return f"{self.start:012d}-{self.stop:012d}-{digest}"


def doc_ranges(emb, ids: np.ndarray, tasks: int) -> list[DocRange]:
    """The used documents cut into ranges of one corpus file each, of about equal text.

    A range holds about ``1 / tasks`` of the characters to tokenize (``n_chars`` of ``docs.parquet``),
    at least MIN_RANGE_CHARS. A task reads its file from the start up to its rows (a JSON lines file
    has no index), so a JSON lines file is cut into at most MAX_JSONL_RANGES ranges
    (MAX_COMPRESSED_RANGES when compressed: decompressing the skipped part costs more).
    """
    groups = _by_source(emb, ids)
    total = int(sum(int(c.sum()) for g in groups for c in g[3]))
    target = max(MIN_RANGE_CHARS, -(-total // max(1, tasks)))
    out = []
    for source, id_chunks, row_chunks, char_chunks in groups:
        gids, grows, gchars = np.concatenate(id_chunks), np.concatenate(row_chunks), np.concatenate(char_chunks)
        reader = reader_for(source)
        cap = None if reader.format == "parquet" else (MAX_COMPRESSED_RANGES if reader.compression else MAX_JSONL_RANGES)
        size = max(target, -(-int(gchars.sum()) // cap)) if cap else target
        cum = np.cumsum(gchars)
        # cut after the document where each multiple of `size` characters is reached
        ends = np.unique(np.minimum(np.searchsorted(cum, np.arange(size, int(cum[-1]) + size, size)) + 1, len(gids)))
        a = 0
        for b in ends:
            if b > a:
                out.append(DocRange(int(gids[a]), int(gids[b - 1]) + 1, source, gids[a:b], grows[a:b],
                                    int(gchars[a:b].sum())))
                a = int(b)
    return out


def _by_source(emb, ids: np.ndarray) -> list[list]:
    """``[source, [ids...], [rows...], [chars...]]`` of the used documents, per run of one corpus file."""
    groups: list[list] = []
    base = 0
    for batch in emb.iter_docs(["source", "row", "n_chars"]):
        stop = base + batch.num_rows
        lo, hi = int(np.searchsorted(ids, base)), int(np.searchsorted(ids, stop))
        if hi > lo:
            sel: np.ndarray = ids[lo:hi] - base
            enc = batch.column(0).take(sel).dictionary_encode()
            codes = enc.indices.to_numpy(zero_copy_only=False)
            names = enc.dictionary.to_pylist()
            rows, chars = batch.column(1).to_numpy()[sel], batch.column(2).to_numpy()[sel]
            cuts: np.ndarray = np.flatnonzero(np.diff(codes)) + 1
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(sel)]):
                source = names[codes[a]]
                if not groups or groups[-1][0] != source:
                    groups.append([source, [], [], []])
                groups[-1][1].append(ids[lo + a: lo + b])
                groups[-1][2].append(rows[a:b])
                groups[-1][3].append(chars[a:b])
        base = stop
    return groups


def _portable_spec(spec: str) -> str:
    """``--tokenizer`` as workers should load it: a local path made absolute (their directory may differ)."""
    p = Path(spec).expanduser()
    return str(p.resolve()) if p.exists() else spec


def tokenizer_identity(tok) -> dict:
    d = tok.describe()
    return {k: d.get(k) for k in ("sha256", "vocab_size", "eos_id", "bos_id")}


def tokenize_range(settings, expected: dict, text_column: str, source: str, rows, local_ids, n_local: int,
                   part: str, *, progress) -> int:
    """An engine task: the documents of one range (one corpus file) into a store of their own at ``part``."""
    import socket

    from ..tokens.build import build_token_store
    from ..tokens.tokenizer import load_with_delimiters

    tok = load_with_delimiters(settings)
    if tokenizer_identity(tok) != expected:
        raise MismatchError(f"--tokenizer {settings.tokenizer}: on {socket.gethostname()} it is not the tokenizer the "
                            f"driver loaded (sha256 {expected['sha256'][:12]}...); give every node the same file")
    texts = ((int(i), text) for i, (_, text) in zip(local_ids, reader_for(source).texts(rows, text_column)))
    return build_token_store(texts, n_local, tok, part, progress=False, workers=1).n_tokens  # the engine spreads


def _merge(engine, settings, ranges: list[DocRange], parts: list[Path], n_tokens: list[int], n_docs: int, tok,
           path: Path) -> None:
    """The range stores -> one store at ``path`` in doc_id order, by the store's owner; the copies are tasks."""
    from ..tokens.store import merge_token_stores

    def copy_all(jobs: list[tuple[str, str, int]]) -> None:
        for _ in engine.map(settings, copy_task, jobs):
            pass

    store = merge_token_stores([(p, r.start, r.stop) for r, p in zip(ranges, parts)], n_docs, tok, path,
                               copy_all=copy_all)
    if store.n_tokens != sum(n_tokens):
        raise RuntimeError("internal error: a token range changed while it was merged")


def copy_task(src: str, dst: str, offset: int, *, progress) -> int:
    """An engine task: the tokens of one range copied to their offset in the merged ``tokens.bin``."""
    from ..tokens.store import copy_into

    return copy_into(src, dst, offset)
