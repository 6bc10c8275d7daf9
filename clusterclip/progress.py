"""Progress bars: on stderr, with a total, a rate and an ETA, refreshed at least every few seconds.

Hidden with ``--quiet``, ``CLUSTERCLIP_NO_PROGRESS=1`` or tqdm's own ``TQDM_DISABLE``.
"""

from __future__ import annotations

import os
import sys

_TRUE = ("1", "true", "yes", "on")


def progress_enabled(requested: bool = True) -> bool:
    """Whether to draw bars: ``requested`` (False with --quiet) and no environment variable says no."""
    if not requested:
        return False
    if os.environ.get("CLUSTERCLIP_NO_PROGRESS", "").lower() in _TRUE:
        return False
    if os.environ.get("TQDM_DISABLE", "").lower() in _TRUE:
        return False
    return True


def bar(total=None, *, desc: str, unit: str = "it", enabled: bool = True, unit_scale: bool = False,
        initial: float = 0, leave: bool = True, bar_format: str | None = None):
    """A tqdm bar on stderr (a disabled one when progress is off)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, initial=initial, leave=leave,
                disable=not progress_enabled(enabled), file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5, maxinterval=5.0, smoothing=0.05, bar_format=bar_format)


def estimate_documents(known_rows: int, files=(), *, share: float = 1.0, limit: int | None = None) -> int | None:
    """The documents a run will embed, from what is known before reading and what was read so far.

    ``known_rows``: rows of the files whose row count is known without reading them (Parquet
    metadata). ``files``: ``(size, documents read, bytes read, finished)`` of each other file
    (JSON lines). A finished file counts its documents; the others are extrapolated by the
    documents per byte of the finished ones, or while none is finished, of the ones being read.
    Readers buffer, so a file whose bytes were all read but whose documents still come says
    nothing of its ratio: with no other measure the total is unknown (None), not a guess off by
    the buffer. ``share``: the fraction of rows this run owns (1 / partitions); ``limit``: ``--limit``.
    """
    files = [f for f in files if f[0] > 0]
    done = [(size, docs) for size, docs, _, finished in files if finished]
    reading = [(b, docs) for size, docs, b, finished in files if not finished and 0 < b < size]
    if done:
        ratio = sum(docs for _, docs in done) / sum(size for size, _ in done)
    elif reading:
        ratio = sum(docs for _, docs in reading) / sum(b for b, _ in reading)
    elif files:
        return None
    else:
        ratio = 0.0
    unknown = sum(docs if finished else max(docs, ratio * size) for size, docs, _, finished in files)
    total = int(round(known_rows * share + unknown))
    return min(total, limit) if limit is not None else total


class EncodeEta:
    """Time left of an encoding run, from the tokens actually encoded (no wall clock inside: give ``now``).

    The rate is the tokens encoded per second since :meth:`start`; the work left is the tokens
    tokenized but not yet encoded (known exactly) plus the documents not tokenized yet times the
    mean tokens per document tokenized so far. Encoding time grows with tokens, not with input
    bytes (compression, markup and skipped rows make bytes a poor measure) nor with documents
    (batches are sorted longest first inside a window).
    """

    def __init__(self, start: float, done_docs: int = 0):
        self.start = start
        self.done_docs = done_docs  #: documents finished before this run (a resumed run's parts)
        self.read_docs = 0  #: documents tokenized by this run (handed to the encoder)
        self.read_tokens = 0
        self.encoded_docs = 0.0  #: documents encoded by this run (fractional within a window)
        self.encoded_tokens = 0.0
        self.now = start

    def tokenized(self, docs: int, tokens: int) -> None:
        """A window of ``docs`` documents holding ``tokens`` tokens is ready for the encoder."""
        self.read_docs += docs
        self.read_tokens += tokens

    def encoded(self, docs: float, tokens: float, now: float) -> None:
        """``docs`` more documents holding ``tokens`` tokens were encoded by ``now``."""
        self.encoded_docs += docs
        self.encoded_tokens += tokens
        self.now = now

    @property
    def elapsed(self) -> float:
        return max(self.now - self.start, 0.0)

    def tokens_per_second(self) -> float | None:
        return self.encoded_tokens / self.elapsed if self.encoded_tokens > 0 and self.elapsed > 0 else None

    def docs_per_second(self) -> float | None:
        return self.encoded_docs / self.elapsed if self.encoded_docs > 0 and self.elapsed > 0 else None

    def tokens_left(self, total_docs: int | None) -> float | None:
        """Tokens still to encode when the run holds ``total_docs`` documents in all (resumed ones included)."""
        if total_docs is None or self.read_docs == 0:
            return None
        pending = max(self.read_tokens - self.encoded_tokens, 0.0)
        unread = max(total_docs - self.done_docs - self.read_docs, 0)
        return pending + unread * (self.read_tokens / self.read_docs)

    def seconds_left(self, total_docs: int | None) -> float | None:
        rate, left = self.tokens_per_second(), self.tokens_left(total_docs)
        if rate is None or left is None:
            return None
        return left / rate


def format_seconds(seconds: float | None) -> str:
    """``1:02:03`` / ``7:30`` / ``?``."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
