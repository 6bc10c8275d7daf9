"""The embed step's own pipeline, in this process: a reader thread, the encoder, journaled parts.

It runs wherever the engine provides no runner of its own for ``"embed"`` (the local engine; Ray has
a Ray Data pipeline, :mod:`clusterclip.engines.ray_embed`). No torch import here.

The reader thread streams the documents of this partition in order, groups them into batching
windows (:func:`~clusterclip.readers.base.batch_window`: fixed by input row numbers, never by
partition or part) and runs the encoder's ``prepare`` (tokenization) on each, a few windows ahead
of the model. The main thread embeds each window and cuts the documents into parts of
``part_docs`` (a window may straddle parts), writing a part as soon as it is full or the stream
ends. So a document's embedding depends on its window only: a one-shot run, every partitioning of
the job (merged) and any ``--part-docs`` give the same bytes. A resumed run re-embeds the window
around its resume point whole and keeps only the documents of the parts it still has to write.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..progress import DocumentTotal, EncodeEta, FileSeen
from ..progress import bar as progress_bar
from ..readers import ReadStats, iter_numbered_documents
from ..readers.base import batch_window
from ..readers.counting import count_rows
from .encoder import check_cuda_device

_DONE = object()


@dataclass
class Piece:
    """The documents of one window that go to one part (``part`` None: a part kept by a resumed run)."""

    part: int | None
    sources: list
    rows: list
    n_chars: list
    user_ids: list
    prepared: object  # encoder.Prepared

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Window:
    pieces: list
    seen: list  #: a progress.FileSeen of every input file (the progress total)

    @property
    def prepared(self):
        return type(self.pieces[0].prepared).concat([p.prepared for p in self.pieces])  # encoder.Prepared


class _Producer(threading.Thread):
    """Reads documents and prepares them in batching windows, a few windows ahead of the model."""

    def __init__(self, docs, encoder, part_docs: int, window_of, skip_docs: int, limit: int | None,
                 readers: tuple = ()):
        super().__init__(name="clusterclip-embed-reader", daemon=True)
        self.docs, self.encoder = docs, encoder
        self.part_docs, self.window_of, self.skip_docs, self.limit = part_docs, window_of, skip_docs, limit
        self.readers = [(r, r.size) for r in readers]  #: every input file (its documents, bytes and sizes: the total)
        self.index_of = {str(r.path): i for i, r in enumerate(readers)}
        self.counts = [[0, 0.0, 0.0] for _ in readers]  #: documents, characters, characters squared per file
        self.current = -1  #: index of the file being read (the files before it are finished)
        self.queue: queue.Queue = queue.Queue(maxsize=3)
        self.stop_event = threading.Event()

    def _put(self, item) -> bool:
        while not self.stop_event.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _flush(self, buf: list) -> bool:
        """``buf``: ``(part, doc)`` of one window, cut into pieces by part, each prepared on its own."""
        pieces, lo = [], 0
        for hi in range(1, len(buf) + 1):
            if hi == len(buf) or buf[hi][0] != buf[lo][0]:
                docs = [d for _, d in buf[lo:hi]]
                pieces.append(Piece(buf[lo][0], [d[0] for d in docs], [d[1] for d in docs], [len(d[2]) for d in docs],
                                    [d[3] for d in docs], self.encoder.prepare([d[2] for d in docs])))
                lo = hi
        return self._put(Window(pieces, self._seen()))

    def _seen(self) -> list:
        return [FileSeen(int(c[0]), min(r.bytes_done, size), i < self.current, c[1], c[2])
                for i, ((r, size), c) in enumerate(zip(self.readers, self.counts))]

    def run(self):
        try:
            buf: list = []
            window, index = None, 0
            for row, doc in self.docs:
                if self.stop_event.is_set():
                    return
                if self.limit is not None and index >= self.limit:
                    break
                key = self.window_of(row)
                if buf and key != window:
                    if buf[-1][0] is not None and not self._flush(buf):
                        return
                    buf = []
                window = key
                part = index // self.part_docs
                index += 1
                i = self.index_of.get(doc[0])
                if i is not None:
                    count, chars = self.counts[i], len(doc[2])
                    count[0], count[1], count[2] = count[0] + 1, count[1] + chars, count[2] + chars * chars
                    self.current = max(self.current, i)
                buf.append((part if index > self.skip_docs else None, doc))  # None: in a kept part
            if buf and buf[-1][0] is not None and not self._flush(buf):
                return
            self._put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self._put(e)

    def windows(self):
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class InProcess:
    """The runner of the embed step where the engine has none (``engine.runner("embed")`` is None)."""

    def check(self, settings, given) -> None:
        """Before the inputs are read: a missing GPU is refused at once, not after loading torch."""
        if given is None:
            check_cuda_device(settings.device)

    def encoder(self, settings, *, make, given=None, log=None):
        """The encoder, loaded here (or the caller's)."""
        return given if given is not None else make(settings)

    def embed_parts(self, readers, settings, encoder, writer, partition, *, done_parts: int,
                    progress: bool) -> tuple[ReadStats, int]:
        return run_local(readers, settings, encoder, writer, partition, done_parts=done_parts, progress=progress)


IN_PROCESS = InProcess()


def run_local(readers, settings, encoder, writer, partition, *, done_parts: int, progress: bool) -> tuple[ReadStats, int]:
    """Embed the documents of ``partition`` after the first ``done_parts`` parts into ``writer``.

    Returns the read accounting and the number of documents embedded by this call.
    """
    stats = ReadStats()
    docs = iter_numbered_documents(readers, settings.text_column, settings.id_column, stats=stats, partition=partition)
    # the progress total: rows from Parquet metadata or counted, the other files extrapolated from what was read
    totals = DocumentTotal(count_rows(readers), [r.size for r in readers], partition=partition, limit=settings.limit)

    def window_of(row: int) -> tuple[int, int]:
        return batch_window(row, settings.partition_block, settings.window_docs)

    producer = _Producer(docs, encoder, settings.part_docs, window_of, done_parts * settings.part_docs,
                         settings.limit, tuple(readers))
    done_docs = done_parts * settings.part_docs
    eta = EncodeEta(time.perf_counter(), done_docs)
    first = totals.estimate([FileSeen() for _ in readers])
    known = [first]  # the latest estimate of the total (the bar redraws the ETA from it every second)
    bar = progress_bar(first.value, desc="embed", unit="doc", enabled=progress, initial=done_docs,
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} docs [{elapsed}, eta {eta}"
                                  "{postfix}]",
                       eta=lambda now: eta.seconds_left(known[0].value, now))
    parts = _Parts(writer, done_parts, settings.part_docs, encoder)

    def show(docs_done: float, total) -> None:
        known[0] = total
        if total.value is not None:
            value = max(total.value, done_docs + int(docs_done))
            if value != bar.total:
                bar.total = value
        shown = done_docs + int(docs_done)
        if shown > bar.n:
            bar.update(shown - bar.n)
        now = time.perf_counter()
        rate, tok = eta.docs_per_second(now), eta.tokens_per_second(now)
        estimated = total.describe()
        bar.set_postfix_str(f"{rate or 0:,.1f} docs/s, {tok or 0:,.0f} tok/s{', ' + estimated if estimated else ''}",
                            refresh=False)

    producer.start()
    try:
        for w in producer.windows():
            prepared = w.prepared
            n_docs = sum(len(piece) for piece in w.pieces if piece.part is not None)  # not a resume's kept ones
            n_tokens = int(sum(prepared.tokens))
            total = totals.estimate(w.seen)
            eta.tokenized(n_docs, n_tokens, time.perf_counter())  # the first window starts the encoding clock
            before = [0.0]

            def on_batch(fraction: float, n_docs=n_docs, n_tokens=n_tokens, before=before, total=total) -> None:
                # batches hold about equal padded tokens: the fraction of batches done is the fraction of tokens
                step = max(0.0, min(fraction, 1.0) - before[0])
                before[0] += step
                eta.encoded(step * n_docs, step * n_tokens, time.perf_counter())
                show(eta.encoded_docs, total)

            parts.add_window(w, encoder.embed(prepared, on_progress=on_batch))
            on_batch(1.0)
        parts.flush()
        bar.total = bar.n  # every document is read: the total is exact
        bar.refresh()
    except BaseException:
        producer.stop_event.set()
        raise
    finally:
        bar.close()
    producer.join()
    return stats, parts.embedded


class _Parts:
    """The documents of each window, cut into parts of ``part_docs`` and written as each part is full."""

    def __init__(self, writer, first_part: int, part_docs: int, encoder):
        self.writer, self.part_docs, self.encoder = writer, part_docs, encoder
        self.current = first_part
        self.buffers = _empty()
        self.embedded = 0

    def add_window(self, w: Window, emb: np.ndarray) -> None:
        at = 0
        for piece in w.pieces:
            n = len(piece)
            piece_emb, at = emb[at : at + n], at + n
            if piece.part is None:  # embedded only to batch its window as an uninterrupted run did
                continue
            self._check(piece, piece_emb)
            if piece.part != self.current:
                self.flush()
                self.current = piece.part
            buffers = self.buffers
            buffers["emb"].append(piece_emb)
            for key, values in (("sources", piece.sources), ("rows", piece.rows), ("n_chars", piece.n_chars),
                                ("user_ids", piece.user_ids), ("n_tokens", piece.prepared.tokens),
                                ("cut", truncation_flags(piece.prepared))):
                buffers[key].extend(values)
            buffers["truncated"] += piece.prepared.truncated
            if len(buffers["rows"]) == self.part_docs:  # full: written now
                self.flush()
                self.current += 1
            self.embedded += n

    def _check(self, piece: Piece, piece_emb: np.ndarray) -> None:
        bad = np.nonzero(~np.isfinite(piece_emb).all(axis=1))[0]
        if len(bad):
            j = int(bad[0])
            raise InputError(
                f"{piece.sources[j]}, row {piece.rows[j]}: its embedding is NaN or zero (an unembeddable "
                f"document, or overflow in {self.encoder.settings.get('dtype')}); check the text, or rerun with "
                f"--dtype float32")

    def flush(self) -> None:
        """Write the part being filled (if it holds any document)."""
        if self.buffers["emb"]:
            _flush(self.writer, self.current, self.buffers, self.encoder.dim)
        self.buffers = _empty()


def _empty() -> dict:
    return {"emb": [], "sources": [], "rows": [], "n_chars": [], "user_ids": [], "n_tokens": [], "cut": [],
            "truncated": 0}


def truncation_flags(prepared) -> list:
    """Per document of a window: was it cut at ``max_length`` (None where the encoder does not say)."""
    flags = getattr(prepared, "truncated_flags", None)
    if flags is not None:
        return list(flags)
    return [False if not prepared.truncated else None] * len(prepared.tokens)


def _flush(writer, k: int, buf: dict, dim: int) -> None:
    emb = np.concatenate(buf["emb"]) if buf["emb"] else np.zeros((0, dim), dtype=np.float32)
    writer.write_part(k, emb, buf["sources"], buf["rows"], buf["n_chars"], buf["n_tokens"], buf["user_ids"],
                      buf["truncated"], dim=dim, truncated_flags=buf["cut"])
