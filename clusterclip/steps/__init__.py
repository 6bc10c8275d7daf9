"""Steps: what every step of the pipeline is, and the one driver that runs any of them.

A step is a :class:`Step` subclass: its settings object, its typed inputs (the owners of the
directories it reads: ``EmbedDir``, ``ClusterDir``, ``ScheduleDir``), :meth:`Step.plan` (everything
that can be computed and refused before ``--out`` is touched: the settings and inputs that make the
output's identity) and :meth:`Step.run` (the outputs, written into a build directory). The driver,
:func:`run_step`, owns what every step shares: the lock on ``--out``, the output-directory
transaction (done / resume / fresh, refusals of other jobs), the manifest and the commit, the
timing and the summary line, and the :class:`~clusterclip.artifacts.StepResult`.

Where a step's heavy work runs is its engine's business (:mod:`clusterclip.engines`): the step cuts
its work into tasks (input parts, row ranges, shard ranges) and ``self.engine.map(...)`` runs them.

**Adding a step**: one module defining a :class:`Step` subclass and ending with ``STEP = YourStep``,
plus one line in :data:`STEPS` (or ``STEPS.register(name, module)`` at run time). See
``tests/test_architecture.py``, which registers a toy one, and ``/docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

from ..registry import Registry
from .base import Outcome, Plan, Run, Step, settings_from
from .driver import preview, run_step

#: step name -> the module that defines it (ending with ``STEP = YourStep``): one line per step
STEPS: Registry = Registry("step", "STEP", {
    "embed": "clusterclip.embed.step",
    "distill": "clusterclip.embed.distill",
    "merge": "clusterclip.embed.merge",
    "cluster": "clusterclip.cluster.step",
    "schedule": "clusterclip.schedule.step",
    "report": "clusterclip.report.build",
    "mixtures": "clusterclip.schedule.mixtures",
    "holdout": "clusterclip.proxy.holdout_step",
    "proxy": "clusterclip.proxy.proxy_step",
    "fit": "clusterclip.mixsearch.fit_step",
    "propose": "clusterclip.mixsearch.propose_file",
})

__all__ = ["STEPS", "Outcome", "Plan", "Run", "Step", "preview", "run_step", "settings_from"]
