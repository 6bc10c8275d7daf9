"""The one driver: :func:`run_step` runs any :class:`~clusterclip.steps.Step` through the same transaction.

1. ``step.plan(out)``: the settings and inputs records (the output's identity), every refusal of
   bad settings or inputs, before ``--out`` is touched;
2. ``step.preflight()``: the engine can run here;
3. ``step.output(...)`` (an :class:`~clusterclip.artifacts.OutputDir` but for a single-file output):
   lock ``--out``, roll forward an interrupted commit, decide "done" / "resume" / "fresh" (or refuse
   another job unless ``overwrite``);
4. ``step.run(run)`` writes into the build directory (inside ``step.environment()``);
5. the manifest (every file recorded with size and sha256, in the output's layout) is built here and
   committed last;
6. the :class:`~clusterclip.artifacts.StepResult`, with the step's summary line.

:func:`preview` answers, without writing anything, what a run would do now ("done", "resume",
"fresh", or the refusal).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..artifacts import Job, StepResult, file_record
from ..remote import refuse_remote
from .base import Outcome, Plan, Run, Step


def run_step(step: Step, out: str | os.PathLike, *, overwrite: bool = False) -> StepResult:
    """Run ``step`` into ``out`` (see the module docstring); a rerun of a finished job does nothing."""
    t0 = time.perf_counter()
    refuse_remote(out, "output")  # before Path() makes s3://b s3:/b
    out = Path(out)
    plan = step.plan(out, overwrite)
    step.preflight()
    job = Job(step.artifact_name, plan.settings, plan.inputs)
    reads = plan.reads + tuple(d.path for d in step.upstream().values())
    with step.output(out, job, overwrite=overwrite or plan.replaces, inputs=reads) as output:
        if output.state == "done":
            assert output.manifest is not None
            result = StepResult(output.manifest, out, "done", time.perf_counter() - t0)
        else:
            assert output.state is not None
            with step.environment():
                outcome = step.run(Run(out, output.build, output.state, output.previous, plan))
            manifest = output.manifest_for(job, _records(output.build, outcome), outcome.statistics_record(),
                                           outcome.accounting, outcome.extra)
            output.commit(manifest, keep_previous=outcome.keep_previous)
            result = StepResult(manifest, out, output.state, time.perf_counter() - t0, outcome.processed,
                                children=outcome.children)
    result.summary = step.done_line(result) if result.already_done else step.summary(result)
    return result


def preview(step: Step, out: str | os.PathLike, *, overwrite: bool = False) -> Plan:
    """``step.plan(out)`` with :attr:`Plan.state` filled in: what a :func:`run_step` now would find in ``out``
    (``"done"``: nothing to do; ``"resume"``; ``"fresh"``), or its one-line refusal. Nothing is written."""
    refuse_remote(out, "output")
    out = Path(out)
    plan = step.plan(out, overwrite)
    job = Job(step.artifact_name, plan.settings, plan.inputs)
    reads = plan.reads + tuple(d.path for d in step.upstream().values())
    plan.state = step.output(out, job, overwrite=overwrite or plan.replaces, inputs=reads).peek()
    return plan


def _records(build: Path, outcome: Outcome) -> list[dict]:
    """The manifest's ``outputs``: each file's record (size, sha256), taken now unless the step gave it."""
    return [f if isinstance(f, dict) else file_record(build, f) for f in outcome.files]

