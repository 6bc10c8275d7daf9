"""How a proxy reads a schedule: sequentially, exactly as the trainer of the shard format does.

:class:`SequentialLoader` is llm.c's ``dataloader.h`` with shuffling off, the loop the README
gives for ``bin`` (and nanoGPT's sequential ``get_batch`` of the README for ``raw``): the files in
training order; in each, ``(ntok - 1) // (B·T)`` windows of ``B·T + 1`` tokens that start ``B·T``
apart; inputs ``window[:-1]``, targets ``window[1:]``, both ``[B, T]``; after the last file the
first again (a new pass in the same order). A file's tail that fills no window is not trained on,
as in llm.c (``schedule --align-tokens B·T`` makes every file hold whole steps).

:func:`open_schedule_stream` opens a schedule's ``bin`` or ``raw`` files through its owner
(:class:`~clusterclip.schedule.ScheduleDir`: every file's sha256 checked first) and
:func:`trained_cluster_tokens` counts, per cluster, the input tokens the first ``steps`` steps
train on: the realised mixture of a run, what the mixture fit regresses on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


class SequentialLoader:
    """Batches of a list of token files read sequentially (see the module docstring)."""

    def __init__(self, files: list[np.ndarray], batch: int, context: int):
        self.files = files
        self.batch_size = int(batch)
        self.context = int(context)
        self.step_tokens = self.batch_size * self.context
        self.windows = np.array([max(len(f) - 1, 0) // self.step_tokens for f in files], dtype=np.int64)
        self.first_step = np.concatenate([[0], np.cumsum(self.windows)]).astype(np.int64)
        self.steps_per_pass = int(self.first_step[-1])

    def where(self, step: int) -> tuple[int, int]:
        """``(file, first token)`` of the window of ``step`` (steps count on across passes)."""
        if self.steps_per_pass == 0:
            raise ValueError("no file holds one window")
        s = step % self.steps_per_pass
        k = int(np.searchsorted(self.first_step, s, side="right")) - 1
        return k, int(s - self.first_step[k]) * self.step_tokens

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs, targets)`` int64 ``[B, T]`` of ``step``."""
        k, a = self.where(step)
        window = np.asarray(self.files[k][a: a + self.step_tokens + 1], dtype=np.int64)
        return window[:-1].reshape(self.batch_size, self.context), window[1:].reshape(self.batch_size, self.context)

    def input_coverage(self, steps: int) -> list[np.ndarray]:
        """Per file, how many times each of its tokens is an input in the first ``steps`` steps (int64)."""
        passes, rest = divmod(int(steps), self.steps_per_pass) if self.steps_per_pass else (0, 0)
        out = []
        for k, f in enumerate(self.files):
            cover: np.ndarray = np.zeros(len(f), dtype=np.int64)
            n_full = int(self.windows[k]) * self.step_tokens
            cover[:n_full] += passes
            done = min(max(rest - int(self.first_step[k]), 0), int(self.windows[k]))
            cover[: done * self.step_tokens] += 1
            out.append(cover)
        return out


@dataclass
class ScheduleStream:
    """A schedule's token files of one format, ready to read: ``loader``, and what the accounting needs:
    each file's shard record (``start_token``, own ``tokens``), where each sample starts in the stream and
    each sample's cluster (order.parquet)."""

    loader: SequentialLoader
    records: list[dict]
    sample_starts: np.ndarray
    sample_clusters: np.ndarray
    stream_tokens: int
    vocab_size: int
    bos_id: int | None
    eos_id: int | None


def read_token_files(sched, fmt: str) -> tuple[list[np.ndarray], list[dict], dict]:
    """The token files of ``fmt`` of a schedule (memory-mapped, whole, look-ahead and padding included, as a
    trainer reads them), their ``shards.json`` records and the index; every file's sha256 checked first."""
    from ..shards.bin import read_bin

    index = sched.shards_index()
    if fmt not in index["shards"]:
        raise InputError(f"{sched.path}: holds no {fmt} shards (it has {', '.join(index['shards'])}); rerun "
                         f"`clusterclip schedule` with --format {fmt} (or pass the proxy --format of one it has)")
    records = index["shards"][fmt]
    sched.verify({f["path"] for rec in records for f in rec["files"]})
    files = []
    for rec in records:
        path = sched.path / rec["files"][0]["path"]
        if fmt == "bin":
            files.append(read_bin(path))  # llm.c's header checks, then the tokens
        else:  # nanoGPT: np.memmap(train.bin, dtype) over the whole headerless file
            dtype = np.dtype(index["format_info"]["raw"]["token_dtype"]).newbyteorder("<")
            files.append(np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype))
    return files, records, index


def open_schedule_stream(sched, fmt: str, batch: int, context: int) -> ScheduleStream:
    """A schedule's ``fmt`` shards as a :class:`ScheduleStream` (a one-line error when no file holds one step)."""
    from ..shards import read_stream

    files, records, index = read_token_files(sched, fmt)
    loader = SequentialLoader(files, batch, context)
    if loader.steps_per_pass == 0:
        longest = max((len(f) for f in files), default=0)
        raise InputError(f"{sched.path}: no {fmt} file holds one step of --batch {batch} x --context {context} + 1 = "
                         f"{batch * context + 1:,} tokens (the longest has {longest:,}); lower --batch or --context, "
                         f"or write larger shards (`schedule --shard-tokens`, --align-tokens {batch * context})")
    tokens, starts = read_stream(sched.path, fmt, index)
    clusters = np.concatenate([c for _, c, _ in sched.iter_order(1 << 20)]) if sched.n_samples else np.zeros(0)
    if len(clusters) != len(starts):
        raise InputError(f"{sched.path}: its {fmt} shards hold {len(starts)} samples but order.parquet {len(clusters)}; "
                         f"check it with `clusterclip verify {sched.path}`")
    return ScheduleStream(loader, records, starts.astype(np.int64), clusters.astype(np.int64), len(tokens),
                          int(index["vocab_size"]), index.get("bos_id"), index.get("eos_id"))


def trained_cluster_tokens(stream: ScheduleStream, steps: int, n_clusters: int) -> np.ndarray:
    """Input tokens of each cluster in the first ``steps`` steps (int64 ``[n_clusters]``): every position a
    window feeds as an input, counted once per pass, mapped to its sample's cluster. Look-ahead copies and
    padding (past a file's own tokens) belong to no sample and are not counted."""
    per_position: np.ndarray = np.zeros(stream.stream_tokens + 1, dtype=np.int64)
    for rec, cover in zip(stream.records, stream.loader.input_coverage(steps)):
        own = min(int(rec["tokens"]), len(cover))
        start = int(rec["start_token"])
        per_position[start: start + own] += cover[:own]
    running = np.concatenate([[0], np.cumsum(per_position[:-1])])
    ends: np.ndarray = np.append(stream.sample_starts[1:], stream.stream_tokens)
    per_sample = running[ends] - running[stream.sample_starts]
    return np.bincount(stream.sample_clusters, weights=per_sample, minlength=n_clusters).astype(np.int64)
