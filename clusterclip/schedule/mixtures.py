"""``clusterclip mixtures`` as a :class:`~clusterclip.steps.Step`: N dry-run schedules, each with
Dirichlet-drawn cluster weights (mixture search, RegMix / CLIMB style).

``OUT/weights.parquet`` holds ``mixture``, ``cluster``, ``weight`` (one row per mixture and non-empty
cluster), ``OUT/weights/mixture-III.csv`` each mixture's ``--weights`` file and ``OUT/mixture-III/``
its schedule: a normal ``schedule`` output (run through the same driver) whose manifest records the
weights file's digest. Every schedule uses the same ``seed``, so the mixtures differ only by their
weights (common random numbers). The folder itself has no manifest yet (issue 25.3): the step is
not ``transactional``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cluster.directory import ClusterDir
from ..embed.directory import EmbedDir
from ..steps import Outcome, Plan, Run, Step, run_step
from .mixing import dirichlet_weights
from .settings import MixturesSettings, ScheduleSettings
from .step import ScheduleStep
from .target import format_mixtures, mixture_record


class MixturesStep(Step[MixturesSettings]):
    """N cluster-weight vectors from ``Dirichlet(--dirichlet)`` and a dry-run schedule for each."""

    name = "mixtures"
    settings_class = MixturesSettings
    transactional = False

    def __init__(self, emb: EmbedDir, cl: ClusterDir, settings: MixturesSettings, *,
                 schedule_options: dict | None = None, overwrite: bool = False, **kwargs):
        super().__init__(settings, **kwargs)
        self.emb, self.cl = emb, cl
        #: the settings every mixture's schedule shares (all but the weights)
        self.schedule_options = settings.schedule_options() if schedule_options is None else dict(schedule_options)
        self.overwrite = overwrite
        self.weights = np.zeros((0, 0))
        self.present: np.ndarray = np.zeros(0, np.int64)

    @classmethod
    def open(cls, emb_dir, cl_dir, settings: MixturesSettings, **kwargs) -> MixturesStep:
        return cls(EmbedDir(emb_dir), ClusterDir(cl_dir), settings, **kwargs)

    def upstream(self) -> dict:
        return {"embed": self.emb, "cluster": self.cl}

    def plan(self, out: Path, overwrite: bool) -> Plan:
        s, cl = self.settings, self.cl
        sizes = np.bincount(cl.labels(), minlength=cl.k)
        self.weights = dirichlet_weights(s.n, cl.k, s.dirichlet, s.seed, sizes > 0)
        self.present = np.flatnonzero(sizes > 0)
        self.overwrite = self.overwrite or overwrite
        return super().plan(out, overwrite)

    def run(self, run: Run) -> Outcome:
        import pyarrow as pa
        import pyarrow.parquet as pq

        out, s, weights, present = run.out, self.settings, self.weights, self.present
        (out / "weights").mkdir(parents=True, exist_ok=True)
        table = pa.table({"mixture": np.repeat(np.arange(s.n, dtype=np.int32), len(present)),
                          "cluster": np.tile(present.astype(np.int32), s.n),
                          "weight": weights[:, present].reshape(-1)})
        tmp = out / "weights.parquet.tmp"
        pq.write_table(table, tmp)
        tmp.replace(out / "weights.parquet")
        children = []
        for i in range(s.n):
            path = out / "weights" / f"mixture-{i:03d}.csv"
            lines = ["cluster,weight"] + [f"{k},{float(weights[i, k])!r}" for k in present]
            tmp = path.with_suffix(".tmp")
            tmp.write_text("\n".join(lines) + "\n")
            tmp.replace(path)
            settings = ScheduleSettings(**{**self.schedule_options, "seed": s.seed, "weights": str(path),
                                           "dry_run": True})
            step = ScheduleStep(self.emb, self.cl, settings, progress=self.progress, log=self.log)
            children.append(run_step(step, out / f"mixture-{i:03d}", overwrite=self.overwrite))
        return Outcome([], {}, children=children)

    def summary(self, result) -> str:
        samples = sum(r.statistics["samples"] for r in result.children if r.statistics)
        realised = format_mixtures(self.realised(result.children))
        return (f"mixtures: {len(result.children)} schedules ({samples:,} samples in all), weights in "
                f"{result.out}/weights.parquet" + (f"\n{realised}" if realised else ""))

    def realised(self, children) -> list[dict]:
        """Each mixture's drawn weights against what its schedule got (:func:`.target.mixture_record`)."""
        opts = self.schedule_options
        unit = "tokens" if opts.get("balance") == "tokens" or opts.get("budget_tokens") is not None else "samples"
        return [mixture_record(self.weights[i], child.statistics, unit=unit)
                for i, child in enumerate(children) if child.statistics]

    def done_line(self, result) -> str:
        return self.summary(result)


STEP = MixturesStep


def write_mixtures(emb_dir, cl_dir, out_dir, *, concentration: float, n: int, seed: int = 0,
                   overwrite: bool = False, progress: bool = False, log=None, **schedule_options) -> list:
    """``clusterclip mixtures`` (see the module docstring): ``n`` cluster-weight vectors from
    ``Dirichlet(concentration)`` (seeded) and, for each, a dry-run schedule with those weights; returns
    the schedules' results. ``schedule_options``: the ``ScheduleSettings`` every schedule shares."""
    settings = MixturesSettings(dirichlet=concentration, n=n, seed=seed)
    step = MixturesStep.open(emb_dir, cl_dir, settings, schedule_options=schedule_options, progress=progress,
                             log=log)
    return run_step(step, out_dir, overwrite=overwrite).children
