"""The ``schedule`` step: the ClusterClip order over the clusters, then token shards in that order.

1. check that the ``embed`` and ``cluster`` directories belong together (:class:`ClusterDir`);
2. plan the order with :func:`.sampling.plan_schedule` (pure, vectorised), before ``--out`` is touched
   (a token budget first needs every document's length, so it is planned after tokenizing);
3. write ``order.parquet`` and the statistics of SPEC §1.3 (:mod:`.stats`);
4. unless a dry run: tokenize each used document once (:mod:`clusterclip.token_store`) from the
   corpus (its content checked against what ``embed`` read) and write the shards in the order
   (:func:`clusterclip.shards.write_shards`).

The step is :class:`.step.ScheduleStep`, run by the one driver (:func:`clusterclip.steps.run_step`);
:func:`schedule_corpus` is its library entry point.
"""

from __future__ import annotations

from typing import Callable

from ..artifacts import StepResult
from ..steps import run_step, settings_from
from .directory import ScheduleDir
from .sampling import SAMPLERS, Schedule, plan_schedule
from .settings import DEFAULT_SHARD_TOKENS, ScheduleSettings
from .stats import format_statistics, schedule_statistics
from .step import ScheduleStep

__all__ = ["DEFAULT_SHARD_TOKENS", "SAMPLERS", "ScheduleDir", "ScheduleSettings", "ScheduleStep", "Schedule",
           "format_statistics", "plan_schedule", "schedule_corpus", "schedule_statistics"]


def schedule_corpus(emb_dir, cl_dir, out_dir, settings: ScheduleSettings | None = None, *, overwrite: bool = False,
                    progress: bool = True, log: Callable[[str], None] | None = None, **kwargs) -> StepResult:
    """Plan the training order of the documents of ``emb_dir`` by the clusters of ``cl_dir``; write it,
    the shards (unless a dry run) and ``manifest.json`` into ``out_dir``.

    Settings come as a :class:`ScheduleSettings` or as its fields in keyword arguments.
    """
    s = settings_from(settings, kwargs, ScheduleSettings)
    return run_step(ScheduleStep.open(emb_dir, cl_dir, s, progress=progress, log=log), out_dir, overwrite=overwrite)
