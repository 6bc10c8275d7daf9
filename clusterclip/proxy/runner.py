"""Running the proxy runs of a ``proxy`` step: one after another in this process, or several at once, each in a
process of its own with its own threads.

Small models do not spread well over cores (their matrix products are too small, and a busy machine
stalls every thread of one product while it waits for the slowest), so on the CPU the runs of a step
go to ``--workers`` processes of ``--threads`` threads each (by default one process per core, one
thread each). A run's result depends on its thread count only, never on the workers: the same
``--threads`` gives the same losses to the last digit whether runs go one by one or side by side.
Progress comes back to the step's one bar through a queue; a finished run comes back as its journal
entry (its record and its files' digests).
"""

from __future__ import annotations

import os
import queue as queue_module
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..artifacts.files import file_record
from ..errors import ClusterClipError
from .run import EvalDocs, train_and_score
from .runfiles import read_heldout_loss, run_files
from .score import Scores
from .settings import ProxySettings
from .train import Runtime, skip_ahead


@dataclass
class RunTask:
    """Everything one run needs, picklable (it may run in another process)."""

    item: dict  #: run, schedule (its path), seed
    build: Path
    settings: ProxySettings
    runtime: Runtime
    steps: int
    n_clusters: int
    evaluation: EvalDocs
    rare: np.ndarray  #: the clusters of the rare half (mask)
    desc: str


def run_task(task: RunTask, pbar=None, progress: bool = False) -> dict:
    """Train and score one run into ``task.build / run``; its journal entry (record and files)."""
    from ..schedule.directory import ScheduleDir
    from .stream import open_schedule_stream

    s, item = task.settings, task.item
    sched = ScheduleDir(item["schedule"])
    stream = open_schedule_stream(sched, s.format, s.batch, s.context)
    record = train_and_score(stream, task.evaluation, s, seed=item["seed"], steps=task.steps,
                             n_clusters=task.n_clusters, run_dir=task.build / item["run"],
                             identity={"schedule": sched.record()}, runtime=task.runtime, desc=task.desc,
                             progress=progress, pbar=pbar)
    rare, common = half_losses(read_heldout_loss(task.build / item["run"]), task.rare)
    record = {**record, **item, "sampler": sched.settings.get("sampler"),
              "max_repeats": sched.settings.get("max_repeats"), "rare_half": rare, "common_half": common}
    return {"run": item["run"], "record": record,
            "files": [file_record(task.build, f) for f in run_files(task.build, item["run"])]}


def half_losses(scores: Scores, rare: np.ndarray) -> tuple[float, float]:
    """The cluster-balanced held-out loss over the scored clusters of the rare half and of the common half."""
    clusters = (scores.groups >= 0) & (scores.groups < len(rare))
    in_rare: np.ndarray = np.zeros(len(scores.groups), bool)
    in_rare[clusters] = rare[scores.groups[clusters]]
    return (scores.select(clusters & in_rare).balanced, scores.select(clusters & ~in_rare).balanced)


# --------------------------------------------------------------------------- several at once
class QueueBar:
    """What :func:`~.train.train` calls on a progress bar, sent to the step's bar in the main process."""

    def __init__(self, q) -> None:
        self.q = q

    def update(self, n: int) -> None:
        self.q.put(("update", int(n)))

    def skip(self, n: int) -> None:
        self.q.put(("skip", int(n)))

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.q.put(("postfix", text))


def _worker(task: RunTask, q) -> dict:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return run_task(task, QueueBar(q))


def _drain(q, pbar) -> None:
    while True:
        try:
            kind, value = q.get_nowait()
        except queue_module.Empty:
            return
        if kind == "update":
            pbar.update(value)
        elif kind == "skip":
            skip_ahead(pbar, value)
        else:
            pbar.set_postfix_str(value, refresh=False)


def run_parallel(tasks: list[RunTask], workers: int, pbar, on_done: Callable[[dict], None]) -> None:
    """Run ``tasks`` in ``workers`` processes (spawned: no state of this one is shared); ``on_done(entry)`` as
    each finishes (in the order they finish)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        q = manager.Queue()
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                pending = {pool.submit(_worker, task, q) for task in tasks}
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    _drain(q, pbar)
                    for future in done:
                        on_done(future.result())
        except BrokenProcessPool:
            raise ClusterClipError("proxy: a run's process was killed (out of memory, or a signal); rerun the same "
                                   "command to resume: finished runs are kept, the others go on from their last "
                                   "checkpoint") from None
        _drain(q, pbar)
