"""Progress bars: on stderr, with a total, a rate and an honest ETA, redrawn every second.

Hidden with ``--quiet``, ``CLUSTERCLIP_NO_PROGRESS=1`` or tqdm's own ``TQDM_DISABLE``.

What "honest" means here (issue 26):

- **The total** is exact where that is cheap: Parquet row counts come from the file's metadata and
  JSON lines files are counted (a newline count) before they are read, within a budget
  (:data:`~clusterclip.readers.counting.COUNT_PLAIN_BYTES` of plain and
  :data:`~clusterclip.readers.counting.COUNT_COMPRESSED_BYTES` of compressed files, about a second).
  Beyond it a file's documents are extrapolated from the bytes read so far and the bar says so,
  with the uncertainty (:class:`DocumentTotal`).
- **The rate** is the work done per second since the work began (not since the bar appeared, so
  loading a model or reading the first window is not counted as slow work), measured in the unit
  the time is spent on: tokens encoded (embed), characters tokenized (schedule's tokenize), tokens
  written (shards), documents assigned. A whole-run average, so the ETA does not swing with each
  batch; stalls count, because the ETA is recomputed from the current time at every redraw.
- **The ETA** is the work left over that rate, recomputed every :data:`REFRESH_SECONDS` even while
  nothing finishes, so a stalled bar shows its ETA growing instead of a frozen figure.

``CLUSTERCLIP_PROGRESS_LOG=FILE`` appends one JSON line per redraw (bar, time, done, total, ETA):
``scripts/eta_accuracy.py`` measures the ETA's error against the real end of a run from it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

_TRUE = ("1", "true", "yes", "on")
#: bars are redrawn at least this often (seconds), with the ETA recomputed from the current time
REFRESH_SECONDS = 1.0
#: the bars' layout: done/total, elapsed, the ETA, the rate, and what the caller adds
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, eta {eta}, {rate_fmt}{postfix}]"
PROGRESS_LOG = "CLUSTERCLIP_PROGRESS_LOG"


def progress_enabled(requested: bool = True) -> bool:
    """Whether to draw bars: ``requested`` (False with --quiet) and no environment variable says no."""
    if not requested:
        return False
    if os.environ.get("CLUSTERCLIP_NO_PROGRESS", "").lower() in _TRUE:
        return False
    if os.environ.get("TQDM_DISABLE", "").lower() in _TRUE:
        return False
    return True


def _now() -> float:
    """The clock of the bars (``time.perf_counter``; a test replaces it)."""
    return time.perf_counter()


def bar(total=None, *, desc: str, unit: str = "it", enabled: bool = True, unit_scale: bool = False,
        initial: float = 0, leave: bool = True, bar_format: str | None = None,
        eta: Callable[[float], float | None] | None = None):
    """A tqdm bar on stderr (a disabled one when progress is off), redrawn every second.

    ``eta(now)`` gives the seconds left at ``time.perf_counter()`` ``now`` (None: unknown); without
    it the ETA is the units left over the units done per second since the bar appeared. Use
    ``{eta}`` in ``bar_format`` to place it (the default format does).
    """
    from tqdm.auto import tqdm

    cls = _live_class(tqdm)
    b = cls(total=total, desc=desc, unit=unit, unit_scale=unit_scale, initial=initial, leave=leave,
            disable=not progress_enabled(enabled), file=sys.stderr, dynamic_ncols=True,
            mininterval=0.5, maxinterval=5.0, smoothing=0, bar_format=bar_format or BAR_FORMAT)
    b.start_live(eta)
    return b


_LIVE: dict[type, type] = {}


def _live_class(base: type) -> type:
    """``base`` (tqdm's class) with an ``{eta}`` field and a thread that redraws it every second."""
    if base in _LIVE:
        return _LIVE[base]

    class LiveBar(base):  # type: ignore[misc, valid-type]
        _eta_fn: Callable[[float], float | None] | None = None
        _ticker: _Ticker | None = None
        _t0: float = 0.0

        def start_live(self, eta: Callable[[float], float | None] | None) -> None:
            self._eta_fn, self._t0 = eta, _now()
            if not self.disable:
                _log(self, self._t0)
                self._ticker = _Ticker(self)
                self._ticker.start()

        def update(self, n=1):
            done = super().update(n)
            if self._ticker is not None and os.environ.get(PROGRESS_LOG):
                _log(self, _now())
            return done

        def tick(self) -> None:
            """Redraw with the ETA of the current time (the ticker calls it every :data:`REFRESH_SECONDS`)."""
            self.refresh()
            _log(self, _now())

        def seconds_left(self, now: float) -> float | None:
            if self._eta_fn is not None:
                return self._eta_fn(now)
            return rate_eta(self.total, self.n, getattr(self, "initial", 0), now - self._t0)

        @property
        def format_dict(self):
            d = super().format_dict
            d["eta"] = format_seconds(self.seconds_left(_now()))
            return d

        def close(self):
            ticker, self._ticker = self._ticker, None
            if ticker is not None:
                ticker.stop()
            if not self.disable:
                _log(self, _now(), final=True)
            super().close()

    _LIVE[base] = LiveBar
    return LiveBar


def rate_eta(total: float | None, n: float, initial: float, elapsed: float) -> float | None:
    """Seconds left when ``n`` of ``total`` units are done, ``n - initial`` of them in ``elapsed`` seconds."""
    done = n - initial
    if total is None or done <= 0 or elapsed <= 0:
        return None
    return max(total - n, 0) * elapsed / done


class _Ticker(threading.Thread):
    """Redraws one bar every :data:`REFRESH_SECONDS` (and logs it with ``CLUSTERCLIP_PROGRESS_LOG``)."""

    def __init__(self, owner):
        super().__init__(name="clusterclip-progress", daemon=True)
        self.owner = owner
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(REFRESH_SECONDS):
            try:
                self.owner.tick()
            except Exception:  # noqa: BLE001 - a bar closed under us: drawing is never worth an error
                return

    def stop(self) -> None:
        self.stopped.set()
        if self is not threading.current_thread():
            self.join(timeout=2 * REFRESH_SECONDS)


def _log(b, now: float, final: bool = False) -> None:
    path = os.environ.get(PROGRESS_LOG)
    if not path:
        return
    record = {"bar": b.desc, "t": round(now, 4), "n": b.n, "total": b.total,
              "eta": b.seconds_left(now), "final": final}
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError:
        pass


class WorkEta:
    """Seconds left of a run whose time is spent in proportion to some work (characters, tokens, bytes).

    The rate is the work done per second since :meth:`begin` (the moment the work itself
    starts), evaluated at the time asked, so a stall lowers it. No clock inside: give ``now``.
    """

    def __init__(self, total: float | None, done_before: float = 0.0):
        self.total = total
        self.done_before = done_before  #: work finished before this run (a resume)
        self.done = 0.0  #: work done by this run
        self.start: float | None = None

    def begin(self, now: float) -> None:
        if self.start is None:
            self.start = now

    def advance(self, work: float, now: float) -> None:
        self.begin(now)
        self.done += work

    def rate(self, now: float) -> float | None:
        if self.start is None or self.done <= 0 or now <= self.start:
            return None
        return self.done / (now - self.start)

    def seconds_left(self, now: float) -> float | None:
        rate = self.rate(now)
        if rate is None or self.total is None:
            return None
        return max(self.total - self.done_before - self.done, 0.0) / rate


class EncodeEta:
    """Time left of an encoding run, from the tokens actually encoded (no wall clock inside: give ``now``).

    The rate is the tokens encoded per second since the first window was handed to the encoder
    (``tokenized(..., now=)``; the reader's first window and the model's loading are not
    encoding), evaluated at the time asked; the work left is the tokens tokenized but not yet
    encoded (known exactly) plus the documents not tokenized yet times the mean tokens per
    document tokenized so far. Encoding time grows with tokens, not with input bytes
    (compression, markup and skipped rows make bytes a poor measure) nor with documents
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
        self.began = False

    def tokenized(self, docs: int, tokens: int, now: float | None = None) -> None:
        """A window of ``docs`` documents holding ``tokens`` tokens is ready for the encoder (at ``now``:
        the first one starts the clock of the rate)."""
        if now is not None and not self.began:
            self.start = self.now = now
        self.began = True
        self.read_docs += docs
        self.read_tokens += tokens

    def encoded(self, docs: float, tokens: float, now: float) -> None:
        """``docs`` more documents holding ``tokens`` tokens were encoded by ``now``."""
        self.encoded_docs += docs
        self.encoded_tokens += tokens
        self.now = now

    def _elapsed(self, now: float | None) -> float:
        return max((self.now if now is None else max(now, self.now)) - self.start, 0.0)

    @property
    def elapsed(self) -> float:
        return self._elapsed(None)

    def tokens_per_second(self, now: float | None = None) -> float | None:
        elapsed = self._elapsed(now)
        return self.encoded_tokens / elapsed if self.encoded_tokens > 0 and elapsed > 0 else None

    def docs_per_second(self, now: float | None = None) -> float | None:
        elapsed = self._elapsed(now)
        return self.encoded_docs / elapsed if self.encoded_docs > 0 and elapsed > 0 else None

    def tokens_left(self, total_docs: int | None) -> float | None:
        """Tokens still to encode when the run holds ``total_docs`` documents in all (resumed ones included)."""
        if total_docs is None or self.read_docs == 0:
            return None
        pending = max(self.read_tokens - self.encoded_tokens, 0.0)
        unread = max(total_docs - self.done_docs - self.read_docs, 0)
        return pending + unread * (self.read_tokens / self.read_docs)

    def seconds_left(self, total_docs: int | None, now: float | None = None) -> float | None:
        """At ``now`` (default: the last encoded batch): a stall since then lowers the rate."""
        rate, left = self.tokens_per_second(now), self.tokens_left(total_docs)
        if rate is None or left is None:
            return None
        return left / rate


# ----------------------------------------------------------------------------- the document total


@dataclass(frozen=True)
class FileSeen:
    """What the reader has seen of one input file so far."""

    documents: int = 0  #: documents it gave (this partition's, not empty)
    bytes_read: int = 0  #: bytes of the file consumed (compressed bytes for a compressed file)
    finished: bool = False  #: read to its end
    chars: float = 0.0  #: characters of those documents (their sum) ...
    chars_sq: float = 0.0  #: ... and the sum of their squares (the spread of document sizes)


@dataclass(frozen=True)
class Total:
    """The documents a run will embed: ``value`` (None: unknown yet), ``exact`` (counted, up to empty
    rows) and ``uncertainty``, the relative half-width of a 95 % interval when estimated."""

    value: int | None
    exact: bool
    uncertainty: float = 0.0

    def describe(self) -> str:
        """``""`` when exact, else ``"total ~N ±x %"`` for the bar."""
        if self.exact or self.value is None:
            return ""
        return f"total estimated ±{100 * self.uncertainty:.0f} %"


class DocumentTotal:
    """The documents a run will embed, exact where the rows are known and estimated from bytes elsewhere.

    ``rows[i]``: the rows of input file ``i`` when known before reading it (Parquet metadata, a
    counted JSON lines file), else None; ``sizes[i]``: its size in bytes. A finished file counts
    the documents it gave; a file of known rows counts the rows this partition owns (rows are
    numbered over all files, so exactly when every file before it is known too, else its share);
    a file of unknown rows is extrapolated: the documents it gave so far plus its unread bytes
    times the documents per byte of its read part (or of the finished files of unknown rows,
    pooled, before it has read enough). The uncertainty is two standard errors of that
    extrapolation, from the spread of the sizes of the documents read (``cv``):
    ``2 · cv · sqrt(1/n_read + 1/n_unread)`` of the extrapolated part; it holds if the unread part
    is like the read one.
    """

    #: a file's own ratio is used once this many of its bytes (or all of them) were read
    MIN_BYTES = 1 << 20

    def __init__(self, rows: Sequence[int | None], sizes: Sequence[int], *, partition=None,
                 limit: int | None = None):
        self.rows, self.sizes, self.limit = list(rows), list(sizes), limit
        whole = partition is None or partition.count == 1
        self.owned: list[float | None] = []
        base: int | None = 0
        for r in self.rows:
            if r is None:
                self.owned.append(None)
                base = None
            elif whole:
                self.owned.append(float(r))
            elif base is not None:
                self.owned.append(float(partition.owned_in(base, base + r)))
                base += r
            else:
                self.owned.append(r / partition.count)

    def estimate(self, seen: Sequence[FileSeen]) -> Total:
        pooled = [s for s, r in zip(seen, self.rows) if r is None and s.finished and s.bytes_read > 0]
        pool_docs = sum(s.documents for s in pooled)
        pool_ratio = pool_docs / sum(s.bytes_read for s in pooled) if pooled else None
        total, variance, exact = 0.0, 0.0, True
        for s, owned, size in zip(seen, self.owned, self.sizes):
            if s.finished:
                total += s.documents
            elif owned is not None:
                total += max(owned, s.documents)
            else:
                exact = False
                guess = self._extrapolate(s, size, pool_ratio, pooled)
                if guess is None:
                    return Total(None, False)
                value, var = guess
                total += value
                variance += var
        value = int(round(total))
        uncertainty = 0.0 if exact or value == 0 else 2 * math.sqrt(variance) / value
        if self.limit is not None and value >= self.limit:
            return Total(self.limit, True)
        return Total(value, exact, uncertainty)

    def _extrapolate(self, s: FileSeen, size: int, pool_ratio: float | None, pooled) -> tuple[float, float] | None:
        """``(documents, variance)`` of a file of unknown rows not read to its end."""
        unread = max(size - s.bytes_read, 0)
        if s.documents and (s.bytes_read >= min(self.MIN_BYTES, size) or pool_ratio is None) and s.bytes_read > 0:
            ratio, basis = s.documents / s.bytes_read, [s]
        elif pool_ratio is not None:
            ratio, basis = pool_ratio, list(pooled)
        else:
            return None
        more = unread * ratio
        n = sum(b.documents for b in basis)
        mean = sum(b.chars for b in basis) / n if n else 0.0
        var_len = sum(b.chars_sq for b in basis) / n - mean * mean if n else 0.0
        cv2 = max(var_len, 0.0) / (mean * mean) if mean > 0 else 1.0
        # the ratio is a mean over the n documents read, and the unread part holds its own random sizes
        return s.documents + more, more * more * cv2 * (1 / max(n, 1) + 1 / max(more, 1.0))


def format_seconds(seconds: float | None) -> str:
    """``1:02:03`` / ``7:30`` / ``?``."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
