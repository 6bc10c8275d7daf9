"""Building a token store (its layout: :mod:`.store`): each used document tokenized once.

While it is built, ``tokens.partial`` and ``docs.partial`` (int64 pairs doc_id, length) grow
batch by batch and ``progress.json`` records, after an fsync, how far they are valid; a rerun
truncates them there and goes on after the last finished document, so an interrupted
tokenization loses at most the batches in flight (one per worker, plus one; two per worker process).

Batches are encoded by ``workers`` processes (as Megatron's ``preprocess_data.py
--workers``) and written in input order, so the store's bytes do not depend on the number
of workers or on the batch sizes. Memory stays bounded by the batches in flight and, per
document, by the encoder's pieces (:mod:`clusterclip.tokens.fast`).

With the fast backend, every run checks it against Hugging Face ``tokenizers`` on its first
:data:`VERIFY_FIRST_DOCS` documents and on one document in :data:`VERIFY_ONE_IN` (chosen
by a hash of the doc_id, so the same ones for any batch split or worker count). On a
difference the run goes on with Hugging Face: transparently when nothing encoded by the
fast backend was written yet or when ``texts`` can be read again (a callable); otherwise
the store is reset and the run stops with a one-line error, and a rerun uses Hugging Face.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts import save_npy_atomic, write_json_atomic
from ..artifacts.files import replace_durably
from ..errors import ClusterClipError, InputError, MismatchError
from ..faults import checkpoint
from ..progress import WorkEta, progress_enabled
from ..progress import bar as progress_bar
from ..settings import Rule
from .fast import FAST_BACKEND, Encoded, TokenEncoder
from .store import META, STORE_VERSION, TOKENS, TokenStore, fits_uint16, token_dtype, tokenizer_record  # noqa: F401

PROGRESS = "progress.json"
TOKENS_PARTIAL = "tokens.partial"
DOCS_PARTIAL = "docs.partial"

#: ``--workers``: the rule of the flag (``ScheduleSettings.workers``) and of ``build_token_store(workers=)``
WORKERS = Rule(flag="--workers", kind=int, min=1, max=4096, optional=True)

#: a batch for ``encode_batch`` closes at this many documents or characters, whichever comes first
BATCH_DOCS = 4096
BATCH_CHARS = 8_000_000

#: a batch for Hugging Face ``tokenizers`` closes at this many characters (or BATCH_DOCS documents)
HF_BATCH_CHARS = 2_000_000

#: documents of every run checked against Hugging Face when the fast backend encodes:
#: the run's first ones, then one in VERIFY_ONE_IN chosen by a seeded hash of the doc_id
VERIFY_FIRST_DOCS = 64
VERIFY_ONE_IN = 1024
_VERIFY_SEED = 0x636C7573746572

#: worker processes start (about a second each) only for inputs with at least this many
#: characters in more than one batch; smaller ones are encoded in this process
PROCESS_MIN_CHARS = 4_000_000

#: the progress bar is redrawn at least this often (seconds), even while a batch is encoded
REFRESH_S = 2.0

Texts = Iterable[tuple[int, str]] | Callable[[], Iterable[tuple[int, str]]]


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def build_token_store(
    texts: Texts,
    n_docs: int,
    tokenizer,
    path: str | os.PathLike,
    *,
    progress: bool = True,
    batch_docs: int = BATCH_DOCS,
    batch_chars: int = BATCH_CHARS,
    total: int | None = None,
    workers: int | None = None,
    chars=None,
) -> TokenStore:
    """Tokenize ``texts`` (``(doc_id, text)`` pairs in ascending doc_id) into a store at ``path``.

    ``texts`` may also be a callable returning such an iterable; then a run whose fast
    backend is found wrong after some of its tokens were written starts over with Hugging
    Face instead of stopping (see the module docstring).
    ``n_docs`` is the size of the doc_id space (documents not in ``texts`` get length -1).
    If ``path`` holds a finished store for the same tokenizer and ``n_docs`` it is reused
    as is (``texts`` is not read); an unfinished one is resumed after its last document.
    ``total`` (the number of documents ``texts`` yields, those done before a resume
    included) sizes the progress bar, which shows the documents done, tokens/s and an
    ETA on stderr (off with ``progress=False`` or TQDM_DISABLE=1); ``chars`` (the characters of each
    document ``texts`` yields, in order) makes the ETA count characters, the work tokenizing takes,
    instead of documents, whose lengths vary. ``workers``: encoding
    workers, default every core (threads for the fast backend, which releases the GIL;
    processes for Hugging Face ``tokenizers``; with 1, one thread). ``tokenizer`` is a :class:`~clusterclip.tokens.tokenizer.Tokenizer`, or any
    object with ``encode_batch(texts) -> list[list[int]]``, ``vocab_size`` and
    ``describe()`` (encoded in this process).
    """
    if workers is None:
        workers = default_workers()
    workers = WORKERS.check(workers)  # the rule ScheduleSettings.workers (--workers) is declared with
    p = Path(path)
    tok_rec = tokenizer_record(tokenizer)
    vocab_size = int(tokenizer.vocab_size)
    dtype = token_dtype(vocab_size)
    identity = {"version": STORE_VERSION, "n_docs": int(n_docs), "dtype": dtype.name,
                "vocab_size": vocab_size, "tokenizer": tok_rec}

    if (p / META).is_file():
        meta = json.loads((p / META).read_text("utf-8"))
        if {k: meta.get(k) for k in identity} == identity:
            return TokenStore.open(p)
        raise MismatchError(f"{p}: holds tokens of another tokenizer or corpus; delete it to rebuild")
    p.mkdir(parents=True, exist_ok=True)

    run = _Run(p, identity, tokenizer, dtype, vocab_size, int(workers), batch_docs, batch_chars,
               progress_enabled(progress), total, chars)
    try:
        while True:
            run.resume()
            try:
                run.tokenize(texts() if callable(texts) else texts)
                break
            except _FastWasWrong as e:
                run.reset()
                if not callable(texts):
                    raise ClusterClipError(
                        f"{p}: the fast tokenizer ({FAST_BACKEND}) disagreed with tokenizers on doc_id "
                        f"{e.doc_id} after some of its tokens were written; the store was reset to use "
                        f"tokenizers: rerun to finish") from None
    finally:
        run.close_bar()
    return _finish(p, identity, run)


class _FastWasWrong(Exception):
    def __init__(self, doc_id: int):
        super().__init__(doc_id)
        self.doc_id = doc_id


@dataclass
class _Batch:
    doc_ids: np.ndarray
    texts: list[str]
    verify: list[int]
    future: Future | None = None


@dataclass
class _Tally:
    """What is written so far: tokens and documents (the resumed ones included), the last doc_id."""

    tokens: int
    docs: int
    last: int
    fast_written: bool  #: tokens of the fast backend were written (a later mismatch means starting over)
    new_tokens: int = 0  #: written by this run
    t0: float = field(default_factory=time.perf_counter)

    def add(self, docs: int, tokens: int, last: int) -> None:
        self.tokens += tokens
        self.docs += docs
        self.new_tokens += tokens
        self.last = last


class _Flight:
    """The batches being encoded, oldest first, on one pool of workers (remade when the backend changes)."""

    def __init__(self, run: "_Run", batches: Iterator[list[tuple[int, str]]], use_processes: bool,
                 input_error: BaseException | None):
        self.run, self.batches, self.use_processes = run, batches, use_processes
        self.input_error = input_error  #: raised once the batches read before it are written
        self.exhausted = False
        self.stream_pos = 0
        self.pending: deque[_Batch] = deque()
        self.pool, self.submit, self.window = run._executor(use_processes=use_processes)

    def fill(self) -> None:
        """Submit batches until ``window`` are in flight or the input ends (or fails)."""
        while not self.exhausted and len(self.pending) < self.window:
            try:
                raw = next(self.batches, None)
            except BaseException as e:  # noqa: BLE001 - the input failed or was interrupted:
                self.input_error, self.exhausted = e, True  # write the batches already encoding, then raise it
                return
            if raw is None:
                self.exhausted = True
                return
            ids = np.fromiter((d for d, _ in raw), dtype=np.int64, count=len(raw))
            b = _Batch(ids, [t for _, t in raw], self.run._verify_list(ids, self.stream_pos))
            self.stream_pos += len(raw)
            b.future = self.submit(b)
            self.pending.append(b)

    def restart(self, keep_head: bool) -> None:
        """A new pool for the tokenizer's new backend; every batch in flight (but the oldest when
        ``keep_head``: its worker already re-encoded it) is submitted again, unverified."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool, self.submit, self.window = self.run._executor(use_processes=self.use_processes)
        for b in list(self.pending)[1 if keep_head else 0:]:
            b.verify = []
            b.future = self.submit(b)

    def close(self) -> None:
        self.pool.shutdown(wait=not self.pending, cancel_futures=True)


class _Run:
    """One build: the resume point, the encoding workers, the ordered writes."""

    def __init__(self, p: Path, identity: dict, tokenizer, dtype, vocab_size: int, workers: int,
                 batch_docs: int, batch_chars: int, progress: bool, total: int | None, chars=None):
        self.p, self.identity, self.tokenizer = p, identity, tokenizer
        self.dtype, self.vocab_size, self.workers = dtype, vocab_size, workers
        self.batch_docs, self.batch_chars = batch_docs, batch_chars
        self.progress, self.total, self.bar = progress, total, None
        #: characters of each document to tokenize, in order (the ETA's work); None: documents
        self.chars = None if chars is None else np.asarray(chars, dtype=np.int64)
        self.eta = WorkEta(total)
        self.backends: list[str] = []
        self.noted_backend = False

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # ------------------------------------------------------------------ resume point
    def resume(self) -> None:
        self.done_docs, self.done_tokens, self.last_doc = 0, 0, -1
        self.backends = []
        prog_file = self.p / PROGRESS
        prog = None
        if prog_file.is_file():
            try:
                prog = json.loads(prog_file.read_text("utf-8"))
            except (OSError, json.JSONDecodeError):
                prog = None
        if prog and prog.get("identity") == self.identity:
            self.done_docs, self.done_tokens = int(prog["docs"]), int(prog["tokens"])
            self.last_doc = int(prog["last_doc"])
            self.backends = list(prog.get("backends") or [])
            if prog.get("hf_only") and hasattr(self.tokenizer, "disable_fast"):
                self.tokenizer.disable_fast("an earlier run found the fast tokenizer wrong on this corpus")
        self.hf_only = bool(prog and prog.get("hf_only"))
        self.close_bar()
        if self.chars is not None:  # the work is characters: the resumed documents are the first ones
            self.eta = WorkEta(float(self.chars.sum()), float(self.chars[: self.done_docs].sum()))
        else:
            self.eta = WorkEta(self.total, self.done_docs)
        if self.progress:
            self.bar = progress_bar(self.total, initial=self.done_docs, unit="doc", desc="tokenize", leave=False,
                                    eta=self.eta.seconds_left)

    def reset(self) -> None:
        """Forget every token written; the next attempt encodes with Hugging Face."""
        for name in (TOKENS_PARTIAL, DOCS_PARTIAL):
            with open(self.p / name, "wb"):
                pass
        self.hf_only = True
        write_json_atomic(self.p / PROGRESS, {"identity": self.identity, "docs": 0, "tokens": 0, "last_doc": -1,
                                               "backends": [], "hf_only": True})

    def _save_progress(self, docs: int, tokens: int, last_doc: int) -> None:
        write_json_atomic(self.p / PROGRESS, {"identity": self.identity, "docs": docs, "tokens": tokens,
                                               "last_doc": last_doc, "backends": self.backends,
                                               "hf_only": self.hf_only})
        checkpoint("schedule.tokens")

    # ------------------------------------------------------------------ encoding
    def _backend(self) -> str:
        return str(getattr(self.tokenizer, "backend", "custom"))

    def _plan(self):
        get = getattr(self.tokenizer, "encoder_plan", None)
        return get() if get is not None else None

    def _executor(self, use_processes: bool):
        """(pool, submit(batch) -> Future, batches in flight) for the tokenizer's backend.

        The fast backend releases the GIL while it encodes, so its workers are threads of
        this process, each with its own encoder (no copies of texts and tokens between
        processes). Hugging Face ``tokenizers`` holds the GIL in ``encode``, so its workers
        are processes, as Megatron's ``preprocess_data.py --workers``; those start only for
        inputs of at least :data:`PROCESS_MIN_CHARS` (``use_processes``).
        """
        plan = self._plan()
        if plan is None:  # a tokenizer-like object: its own encode_batch, in this process
            pool: Executor = ThreadPoolExecutor(1, thread_name_prefix="tokenize")
            return pool, (lambda b: pool.submit(_encode_with, self.tokenizer.encode_batch, b.texts)), 2
        if plan.fast_json is None and use_processes:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            from .fast import worker_encode, worker_init

            # fork where there is one: no re-import of the caller's __main__ (spawn needs an
            # `if __name__ == "__main__"` guard there) and no second start-up; the workers use
            # no thread pool inherited from this process (they encode on their own thread)
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method),
                                       initializer=worker_init, initargs=(plan,))
            # two batches per worker in flight: one that finishes early does not wait for the oldest one,
            # which is written first (batches of long documents take uneven times)
            return pool, (lambda b: pool.submit(worker_encode, b.texts, b.verify)), 2 * self.workers + 1
        threads = self.workers if plan.fast_json is not None else 1
        local = threading.local()
        shared = self.tokenizer.encoder()  # the first thread reuses this process's encoder
        claimed: list[bool] = []  # the shared encoder is taken (by the first thread)

        def encode(b: _Batch) -> Encoded:
            encoder = getattr(local, "encoder", None)
            if encoder is None:
                with lock:
                    encoder = local.encoder = shared if not claimed else TokenEncoder(plan)
                    claimed.append(True)
            return encoder.encode_arrays(b.texts, parallel=False, verify=b.verify)

        lock = threading.Lock()
        pool = ThreadPoolExecutor(threads, thread_name_prefix="tokenize")
        return pool, (lambda b: pool.submit(encode, b)), threads + 1

    def _verify_list(self, doc_ids: np.ndarray, stream_pos: int) -> list[int]:
        if self._backend() != FAST_BACKEND:
            return []
        return [j for j, d in enumerate(doc_ids.tolist())
                if stream_pos + j < VERIFY_FIRST_DOCS or _sampled_for_verification(d)]

    def tokenize(self, texts: Iterable[tuple[int, str]]) -> None:
        if self._backend() != FAST_BACKEND and getattr(self.tokenizer, "fast_off", None) and not self.noted_backend:
            _note(f"fast tokenizer off: {self.tokenizer.fast_off}; encoding with Hugging Face", self.bar)
            self.noted_backend = True
        with open(self.p / TOKENS_PARTIAL, "ab" if self.done_docs else "wb") as tok_f, \
                open(self.p / DOCS_PARTIAL, "ab" if self.done_docs else "wb") as doc_f:
            tok_f.truncate(self.done_tokens * self.dtype.itemsize)
            doc_f.truncate(self.done_docs * 16)
            tok_f.seek(0, os.SEEK_END)
            doc_f.seek(0, os.SEEK_END)
            self._encode_and_write(texts, tok_f, doc_f)

    def _encode_and_write(self, texts, tok_f, doc_f) -> None:
        tally = _Tally(self.done_tokens, self.done_docs, self.last_doc, fast_written=FAST_BACKEND in self.backends)
        self.eta.begin(tally.t0)
        flight = self._flight(texts)
        try:
            while True:
                flight.fill()
                if not flight.pending:
                    break
                head = flight.pending[0]
                enc = self._result(head, tally)
                if enc is None:  # not ready yet (the bar was refreshed)
                    continue
                backend: str | None = self._backend()
                if enc.mismatch is not None or enc.error is not None:
                    backend = self._fast_failed(enc, head, flight, tally.fast_written)
                if backend is None:  # every batch in flight is encoding again
                    continue
                flight.pending.popleft()
                self._write_batch(head, enc, backend, tok_f, doc_f, tally)
        finally:
            flight.close()
        if flight.input_error is not None:
            raise flight.input_error
        self.n_tokens = tally.tokens

    def _flight(self, texts) -> _Flight:
        """The batches of ``texts`` after the resume point, on the workers the input is big enough for."""
        plan = self._plan()
        # Hugging Face's batches are smaller: a worker process encodes ~1-2 M characters a second, and the
        # last batches of a run are spread over the workers
        batch_chars = self.batch_chars if plan is None or plan.fast_json is not None \
            else min(self.batch_chars, HF_BATCH_CHARS)
        batches = _batches(texts, self.last_doc, int(self.identity["n_docs"]), self.batch_docs, batch_chars)
        first: list[list[tuple[int, str]]] = []
        chars = 0
        input_error: BaseException | None = None
        use_processes = self.workers > 1 and plan is not None
        if use_processes and plan.fast_json is None:  # is the input big enough for processes?
            try:
                for batch in batches:
                    first.append(batch)
                    chars += sum(len(t) for _, t in batch)
                    if len(first) > 1 and chars >= PROCESS_MIN_CHARS:
                        break
            except BaseException as e:  # noqa: BLE001 - write what was read, then raise it
                input_error = e
            use_processes = len(first) > 1 and chars >= PROCESS_MIN_CHARS
        return _Flight(self, itertools.chain(first, batches if input_error is None else ()), use_processes,
                       input_error)

    def _result(self, head: _Batch, tally: _Tally) -> Encoded | None:
        """The oldest batch's tokens, or None while they are not ready (after refreshing the bar)."""
        assert head.future is not None  # every batch is submitted when it is queued
        try:
            return head.future.result(timeout=REFRESH_S)
        except FutureTimeout:
            self._show(tally.tokens, tally.new_tokens, tally.t0)
            return None
        except BrokenProcessPool:
            raise ClusterClipError(
                f"{self.p}: a tokenize worker process died (out of memory?); rerun to resume, "
                f"with fewer workers (--workers) if it happens again") from None

    def _fast_failed(self, enc: Encoded, head: _Batch, flight: _Flight, fast_written: bool) -> str | None:
        """The fast tokenizer disagreed with tokenizers or failed: turn it off and encode again what is in
        flight. Returns the backend of ``head``'s tokens, or None when ``head`` is encoding again too."""
        doc_id = int(head.doc_ids[enc.mismatch]) if enc.mismatch is not None else None
        why = f"it disagreed with tokenizers on doc_id {doc_id}" if doc_id is not None else str(enc.error)
        _note(f"fast tokenizer off: {why}; encoding with Hugging Face", self.bar)
        self.noted_backend = True
        self.tokenizer.disable_fast(why)
        if doc_id is not None and fast_written:
            raise _FastWasWrong(doc_id)
        # nothing the fast backend encoded was kept: encode what is in flight again
        if enc.mismatch is not None:
            flight.restart(keep_head=False)
            return None
        flight.restart(keep_head=True)
        return FAST_BACKEND + "->hf"  # this batch: the worker re-encoded it with tokenizers

    def _write_batch(self, head: _Batch, enc: Encoded, backend: str, tok_f, doc_f, tally: _Tally) -> None:
        """Append ``head``'s tokens and (doc_id, length) rows, synced, then save the resume point."""
        lens = np.asarray(enc.lengths, dtype=np.int64)
        flat = np.asarray(enc.ids)
        if len(lens) != len(head.doc_ids) or int(lens.sum()) != len(flat):
            raise RuntimeError(f"encoder returned {len(lens)} lengths / {len(flat)} ids for "
                               f"{len(head.doc_ids)} documents")
        if len(flat) and int(flat.max()) >= self.vocab_size:
            raise InputError(f"{self.identity['tokenizer'].get('spec')}: produced token id "
                             f"{int(flat.max())} >= vocab_size {self.vocab_size}")
        tok_f.write(np.ascontiguousarray(flat.astype(self.dtype, copy=False)).data)
        doc_f.write(np.stack([head.doc_ids, lens], axis=1).data)
        for f in (tok_f, doc_f):
            f.flush()
            os.fsync(f.fileno())
        used = FAST_BACKEND if backend == FAST_BACKEND else "hf" if backend.endswith("hf") else backend
        if used not in self.backends:
            self.backends.append(used)
        tally.fast_written = tally.fast_written or used == FAST_BACKEND
        tally.add(len(head.doc_ids), len(flat), int(head.doc_ids[-1]))
        self._save_progress(tally.docs, tally.tokens, tally.last)
        self.eta.advance(sum(len(t) for t in head.texts) if self.chars is not None else len(head.doc_ids),
                         time.perf_counter())
        if self.bar is not None:
            self.bar.update(len(head.doc_ids))
            self._show(tally.tokens, tally.new_tokens, tally.t0)

    def _show(self, n_tok: int, new_tokens: int, t0: float) -> None:
        if self.bar is None:
            return
        rate = new_tokens / max(time.perf_counter() - t0, 1e-9)
        self.bar.set_postfix_str(f"{_si(n_tok)} tok, {_si(rate)} tok/s", refresh=False)
        self.bar.refresh()


def _finish(p: Path, identity: dict, run: _Run) -> TokenStore:
    recs = np.fromfile(p / DOCS_PARTIAL, dtype=np.int64).reshape(-1, 2)
    n_docs = int(identity["n_docs"])
    lengths: np.ndarray = np.full(n_docs, -1, dtype=np.int64)
    offsets: np.ndarray = np.zeros(n_docs, dtype=np.int64)
    if len(recs):
        starts: np.ndarray = np.zeros(len(recs), dtype=np.int64)
        np.cumsum(recs[:-1, 1], out=starts[1:])
        lengths[recs[:, 0]] = recs[:, 1]
        offsets[recs[:, 0]] = starts
    save_npy_atomic(p / "lengths.npy", lengths)
    save_npy_atomic(p / "offsets.npy", offsets)
    replace_durably(p / TOKENS_PARTIAL, p / TOKENS)
    meta = dict(identity, n_tokens=int(run.n_tokens), n_tokenized=len(recs),
                backend="+".join(run.backends) or None,
                backend_reason=getattr(run.tokenizer, "backend_reason", None))
    write_json_atomic(p / META, meta)
    for name in (DOCS_PARTIAL, PROGRESS):
        try:
            (p / name).unlink()
        except FileNotFoundError:
            pass
    return TokenStore.open(p)


def _encode_with(encode_batch, texts: list[str]) -> Encoded:
    encoded = encode_batch(texts)
    lens = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    flat = np.fromiter((i for e in encoded for i in e), dtype=np.int64, count=int(lens.sum()))
    if len(flat) and flat.min() < 0:
        raise ValueError(f"the tokenizer produced a negative token id ({int(flat.min())})")
    return Encoded(lens, flat)


def _sampled_for_verification(doc_id: int) -> bool:
    """One doc_id in VERIFY_ONE_IN, by a seeded splitmix64 hash (the same for any batching)."""
    z = (doc_id + _VERIFY_SEED) * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) % VERIFY_ONE_IN == 0


def _note(message: str, bar=None) -> None:
    line = f"tokenize: {message}"
    if bar is not None:
        bar.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def _batches(texts: Iterable[tuple[int, str]], last_doc: int, n_docs: int, batch_docs: int,
             batch_chars: int) -> Iterator[list[tuple[int, str]]]:
    batch: list[tuple[int, str]] = []
    chars = 0
    prev = last_doc
    for doc_id, text in texts:
        doc_id = int(doc_id)
        if doc_id <= last_doc:  # done before an interruption
            continue
        if not 0 <= doc_id < n_docs:
            raise ValueError(f"doc_id {doc_id} outside 0..{n_docs - 1}")
        if doc_id <= prev:
            raise ValueError(f"token store input must be in ascending doc_id order (got {doc_id} after {prev})")
        prev = doc_id
        if not isinstance(text, str):
            text = "" if text is None else str(text)  # a missing text is an empty document
        batch.append((doc_id, text))
        chars += len(batch[-1][1])
        if len(batch) >= batch_docs or chars >= batch_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _si(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"
