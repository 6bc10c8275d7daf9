"""The local engine of ``embed``: a reader thread, the encoder, journaled parts (no torch import here).

The reader thread streams the documents of this partition in order, groups them into windows
of ``window_docs`` documents that never straddle a part (``part_docs`` documents), and runs the
encoder's ``prepare`` (tokenization) on each window, a few windows ahead of the model. The main
thread embeds each window and writes a part as soon as the next part starts or the stream ends.
Batching depends only on the documents of a part, so a resumed run writes the same bytes.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..progress import bar as progress_bar
from ..readers import ReadStats, iter_documents

_DONE = object()


@dataclass
class Window:
    part: int
    sources: list
    rows: list
    n_chars: list
    user_ids: list
    prepared: object  # encoder.Prepared
    bytes_start: int
    bytes_end: int


class _Producer(threading.Thread):
    """Reads documents and prepares them in windows, a few windows ahead of the model."""

    def __init__(self, docs, encoder, part_docs: int, window_docs: int, skip_docs: int, limit: int | None,
                 position):
        super().__init__(name="clusterclip-embed-reader", daemon=True)
        self.docs, self.encoder = docs, encoder
        self.part_docs, self.window_docs, self.skip_docs, self.limit = part_docs, window_docs, skip_docs, limit
        self.position = position
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

    def _flush(self, buf: list, part: int, bytes_start: int) -> bool:
        w = Window(part, [d[0] for d in buf], [d[1] for d in buf], [len(d[2]) for d in buf], [d[3] for d in buf],
                   self.encoder.prepare([d[2] for d in buf]), bytes_start, self.position())
        return self._put(w)

    def run(self):
        try:
            buf: list = []
            part, index, bytes_start = None, 0, self.position()
            for doc in self.docs:
                if self.stop_event.is_set():
                    return
                if self.limit is not None and index >= self.limit:
                    break
                index += 1
                if index <= self.skip_docs:
                    bytes_start = self.position()
                    continue
                doc_part = (index - 1) // self.part_docs
                if buf and (doc_part != part or len(buf) >= self.window_docs):
                    if not self._flush(buf, part, bytes_start):
                        return
                    buf, bytes_start = [], self.position()
                part = doc_part
                buf.append(doc)
            if buf and not self._flush(buf, part, bytes_start):
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


def run_local(readers, settings, encoder, writer, partition, *, done_parts: int, progress: bool) -> tuple[ReadStats, int]:
    """Embed the documents of ``partition`` after the first ``done_parts`` parts into ``writer``.

    Returns the read accounting and the number of documents embedded by this call.
    """
    stats = ReadStats()
    docs = iter_documents(readers, settings.text_column, settings.id_column, stats=stats, partition=partition)
    sizes = [r.size for r in readers]

    def position() -> int:
        done = 0
        for r, size in zip(readers, sizes):
            if r.bytes_done >= size:
                done += size
            else:
                return done + r.bytes_done
        return done

    producer = _Producer(docs, encoder, settings.part_docs, settings.window_docs,
                         done_parts * settings.part_docs, settings.limit, position)
    bar = progress_bar(sum(sizes), desc="embed", unit="B", unit_scale=True, enabled=progress)
    embedded, tokens = 0, 0
    t0 = time.perf_counter()
    buffers = _empty()
    current = done_parts
    shown = [0.0]

    def show(pos: float) -> None:
        if pos > shown[0]:
            bar.update(pos - shown[0])
            shown[0] = pos

    producer.start()
    try:
        for w in producer.windows():
            if w.part != current:
                _flush(writer, current, buffers, encoder.dim)
                buffers, current = _empty(), w.part
            show(w.bytes_start)
            span = w.bytes_end - w.bytes_start
            emb = encoder.embed(w.prepared, on_progress=lambda f, w=w, span=span: show(w.bytes_start + f * span))
            bad = np.nonzero(~np.isfinite(emb).all(axis=1))[0]
            if len(bad):
                j = int(bad[0])
                raise InputError(
                    f"{w.sources[j]}, row {w.rows[j]}: its embedding is NaN or zero (an unembeddable document, "
                    f"or overflow in {encoder.settings.get('dtype')}); check the text, or rerun with --dtype float32")
            buffers["emb"].append(emb)
            for key, values in (("sources", w.sources), ("rows", w.rows), ("n_chars", w.n_chars),
                                ("user_ids", w.user_ids), ("n_tokens", w.prepared.tokens)):
                buffers[key].extend(values)
            buffers["truncated"] += w.prepared.truncated
            embedded += len(emb)
            tokens += int(sum(w.prepared.tokens))
            show(w.bytes_end)
            dt = max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix_str(f"{embedded + done_parts * settings.part_docs:,} docs, {embedded / dt:,.1f} docs/s, "
                                f"{tokens / dt:,.0f} tok/s", refresh=False)
        if buffers["emb"]:
            _flush(writer, current, buffers, encoder.dim)
    except BaseException:
        producer.stop_event.set()
        raise
    finally:
        bar.close()
    producer.join()
    return stats, embedded


def _empty() -> dict:
    return {"emb": [], "sources": [], "rows": [], "n_chars": [], "user_ids": [], "n_tokens": [], "truncated": 0}


def _flush(writer, k: int, buf: dict, dim: int) -> None:
    emb = np.concatenate(buf["emb"]) if buf["emb"] else np.zeros((0, dim), dtype=np.float32)
    writer.write_part(k, emb, buf["sources"], buf["rows"], buf["n_chars"], buf["n_tokens"], buf["user_ids"],
                      buf["truncated"], dim=dim)
