"""``clusterclip mixtures`` as a :class:`~clusterclip.steps.Step`: N dry-run schedules, each with
Dirichlet-drawn cluster weights (mixture search, RegMix / CLIMB style).

One output, one transaction (layout: :mod:`.mixtures_dir`): ``OUT/weights.parquet`` holds ``mixture``,
``cluster``, ``weight`` (one row per mixture and non-empty cluster), ``OUT/weights/mixture-III.csv`` each
mixture's ``--weights`` file and ``OUT/mixture-III/`` its schedule: a normal ``schedule`` dry run (run
through the same driver, inside this step's build) whose manifest records the weights file's final path and
digest. The manifest of ``OUT`` lists every one of these files with its sha256, so ``verify`` checks them all,
a rerun with a smaller ``--n`` deletes the schedules and weights files the new output does not have, and a
killed run resumes with the schedules it finished. Every schedule uses the same ``seed``, so the mixtures
differ only by their weights (common random numbers).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..artifacts import MANIFEST, PRIVATE_DIR, StepResult, file_record
from ..cluster.directory import ClusterDir
from ..embed.directory import EmbedDir
from ..errors import MismatchError
from ..steps import Outcome, Plan, Run, Step, run_step
from .directory import ScheduleStats
from .mixing import dirichlet_weights
from .mixtures_dir import (
    WEIGHTS_FILE,
    MixturesStats,
    mixture_name,
    weights_name,
    write_weights_csv,
    write_weights_table,
)
from .settings import MixturesSettings, ScheduleSettings
from .step import ScheduleStep
from .target import format_mixtures, mixture_record


class MixturesStep(Step[MixturesSettings]):
    """N cluster-weight vectors from ``Dirichlet(--dirichlet)`` and a dry-run schedule for each."""

    name = "mixtures"
    settings_class = MixturesSettings

    def __init__(self, emb: EmbedDir, cl: ClusterDir, settings: MixturesSettings, *,
                 schedule_options: dict | None = None, **kwargs):
        super().__init__(settings, **kwargs)
        self.emb, self.cl = emb, cl
        #: the settings every mixture's schedule shares (all but the weights)
        self.schedule_options = settings.schedule_options() if schedule_options is None else dict(schedule_options)
        self.weights = np.zeros((0, 0))
        self.present: np.ndarray = np.zeros(0, np.int64)

    @classmethod
    def open(cls, emb_dir, cl_dir, settings: MixturesSettings, **kwargs) -> MixturesStep:
        return cls(EmbedDir(emb_dir), ClusterDir(cl_dir), settings, **kwargs)

    def upstream(self) -> dict:
        return {"embed": self.emb, "cluster": self.cl}

    def plan(self, out: Path, overwrite: bool) -> Plan:
        _refuse_earlier_layout(out)
        s, cl = self.settings, self.cl
        sizes = np.bincount(cl.labels(), minlength=cl.k)
        self.weights = dirichlet_weights(s.n, cl.k, s.dirichlet, s.seed, sizes > 0)
        self.present = np.flatnonzero(sizes > 0)
        self._schedule_settings(weights_name(0))  # the schedules' settings checked before --out is touched
        plan = super().plan(out, overwrite)
        # schedule settings given beside the mixtures' own (``write_mixtures(..., samples=80)``) are the job's too
        own = s.schedule_options()
        given = {k: v for k, v in sorted(self.schedule_options.items()) if k not in own or own[k] != v}
        if given:
            plan.settings = {**plan.settings, "schedule": given}
        return plan

    def _schedule_settings(self, weights: str) -> ScheduleSettings:
        return ScheduleSettings(**{**self.schedule_options, "seed": self.settings.seed, "weights": weights or None,
                                   "dry_run": True})

    def run(self, run: Run) -> Outcome:
        build, final = run.build, Path(os.path.abspath(run.out))
        write_weights_table(build / WEIGHTS_FILE, self.weights, self.present)
        files: list[str | dict] = [WEIGHTS_FILE]
        children = []
        for i in range(self.settings.n):
            csv = weights_name(i)
            write_weights_csv(build / csv, self.weights[i], self.present)
            step = ScheduleStep(self.emb, self.cl, self._schedule_settings(str(final / csv)),
                                weights_from=build / csv, progress=self.progress, log=self.log)
            # inside the build, which this step owns: a schedule of another job there (a resume after the
            # inputs' paths were spelled otherwise) is simply replaced
            child = run_step(step, build / mixture_name(i), overwrite=True)
            children.append(child)
            files += [csv, *_child_records(mixture_name(i), child.manifest), file_record(build, f"{mixture_name(i)}/{MANIFEST}")]
        samples = [int(ScheduleStats.from_json(c.statistics).samples) for c in children]
        statistics = MixturesStats(mixtures=len(children), k=int(self.cl.k), samples=samples,
                                   realised=self.realised(children))
        return Outcome(files, statistics, processed=sum(samples), children=children)

    def summary(self, result) -> str:
        st = MixturesStats.from_json(result.statistics)
        realised = format_mixtures(st.realised or [])
        return (f"mixtures: {st.mixtures} schedules ({sum(st.samples or []):,} samples in all) -> {result.out} "
                f"(weights in {result.out}/{WEIGHTS_FILE}, one dry-run schedule per mixture-III)"
                + (f"\n{realised}" if realised else ""))

    def realised(self, children) -> list[dict]:
        """Each mixture's drawn weights against what its schedule got (:func:`.target.mixture_record`)."""
        opts = self.schedule_options
        unit = "tokens" if opts.get("balance") == "tokens" or opts.get("budget_tokens") is not None else "samples"
        return [mixture_record(self.weights[i], ScheduleStats.from_json(child.statistics), unit=unit)
                for i, child in enumerate(children) if child.statistics]

    def done_line(self, result) -> str:
        return f"{self.summary(result)}: already done with these inputs and settings (nothing to do)"


STEP = MixturesStep


def write_mixtures(emb_dir, cl_dir, out_dir, *, concentration: float, n: int, seed: int = 0,
                   overwrite: bool = False, progress: bool = False, log=None, **schedule_options) -> StepResult:
    """``clusterclip mixtures`` (see the module docstring): ``n`` cluster-weight vectors from
    ``Dirichlet(concentration)`` (seeded) and, for each, a dry-run schedule with those weights; returns the
    step's result (``children``: the schedules' results when they were run now; open the output with
    :class:`~clusterclip.schedule.mixtures_dir.MixturesDir`). ``schedule_options``: the ``ScheduleSettings``
    every schedule shares."""
    settings = MixturesSettings(dirichlet=concentration, n=n, seed=seed)
    step = MixturesStep.open(emb_dir, cl_dir, settings, schedule_options=schedule_options, progress=progress,
                             log=log)
    return run_step(step, out_dir, overwrite=overwrite)


def _child_records(name: str, manifest: dict) -> list[dict]:
    """The records of a mixture's schedule files, as its manifest holds them, under ``name/``."""
    return [{"path": f"{name}/{r['path']}", "bytes": r["bytes"], "sha256": r["sha256"]} for r in manifest["outputs"]]


def _refuse_earlier_layout(out: Path) -> None:
    """A ``mixtures`` folder of a clusterclip before 25.3 has no manifest of its own: say what to do."""
    if (out / WEIGHTS_FILE).is_file() and not os.path.lexists(out / MANIFEST) \
            and not os.path.lexists(out / PRIVATE_DIR):
        raise MismatchError(f"{out}: a `clusterclip mixtures` folder of an earlier clusterclip (no manifest.json, so "
                            f"clusterclip cannot tell its files from others); delete it (its schedules are dry runs, "
                            f"quick to redo) or choose another --out")
