"""The ``fit`` step: RUNS -> FIT, held-out loss regressed on the proxies' mixtures (see :mod:`.fit`).

One point per schedule: its mixture (each cluster's share of the tokens its proxies trained on, the
same for every seed) and the mean of the target loss over its seeds. Refused before ``--out`` is
touched: a RUNS whose run has no finite target loss, a target the runs do not have, and fewer
schedules than the model has parameters (leave-one-out needs one more).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..proxy.runfiles import TARGET_GROUP, RunsDir
from ..steps import Outcome, Plan, Run, Step
from .fit import MixtureFit, check_fit_size, fit_mixture
from .fitdir import FitDir, FitStats, write_fit
from .settings import FitSettings

__all__ = ["FitDir", "FitStep"]


class FitStep(Step[FitSettings]):
    name = "fit"
    settings_class = FitSettings
    resumable = False  # seconds of work: redone rather than checked

    def __init__(self, runs: RunsDir, settings: FitSettings, **kwargs):
        super().__init__(settings, **kwargs)
        self.runs = runs
        self.names: list[str] = []
        self.x = np.zeros((0, 0))
        self.y = np.zeros(0)
        self.spread = np.zeros(0)
        self.seeds: np.ndarray = np.zeros(0, np.int64)

    @classmethod
    def open(cls, runs_dir, settings: FitSettings, **kwargs) -> FitStep:
        return cls(RunsDir(runs_dir), settings, **kwargs)

    def upstream(self) -> dict:
        return {"runs": self.runs}

    def plan(self, out: Path, overwrite: bool) -> Plan:
        s = self.settings
        runs = self.runs.runs()
        target = target_losses(self.runs, runs, s)
        names = list(runs["run"])
        bad = np.flatnonzero(~np.isfinite(target))
        if len(bad):
            raise InputError(f"{self.runs.path}: run {names[bad[0]]} has no finite {s.target} loss (diverged, or no "
                             f"such group); rerun `clusterclip proxy` with a lower --lr, or fit another --target")
        mixtures: np.ndarray = self.runs.mixtures(names).astype(float)
        shares = mixtures / np.maximum(mixtures.sum(axis=1, keepdims=True), 1)
        schedules = np.array([Path(p).name for p in runs["schedule"]])
        self.names = list(dict.fromkeys(schedules))
        rows = [np.flatnonzero(schedules == n) for n in self.names]
        self.x = np.stack([shares[r[0]] for r in rows])
        self.y = np.array([target[r].mean() for r in rows])
        self.spread = np.array([target[r].std(ddof=1) if len(r) > 1 else 0.0 for r in rows])
        self.seeds = np.array([len(r) for r in rows], np.int64)
        check_fit_size("lightgbm" if s.model == "auto" else s.model, len(self.y), self.x.shape[1],
                       str(self.runs.path), "schedules")
        return Plan(s.record(), self.upstream_records())

    def run(self, run: Run) -> Outcome:
        s = self.settings
        fit = fit_mixture(self.x, self.y, model=s.model, seed=s.seed, source=str(self.runs.path), what="schedules")
        runs = self.runs.runs()
        pool_docs, pool_tokens = self.runs.pool()
        record = {"target": s.target, "train_tokens": int(self.runs.stats.train_tokens),
                  "max_repeats": max(int(r.get("max_repeats") or 1) for r in self.runs.stats.runs),
                  "pool_tokens": [int(v) for v in pool_tokens], "pool_documents": [int(v) for v in pool_docs],
                  "runs": [str(r) for r in runs["run"]]}
        names = write_fit(run.build, fit, record, self.names, self.spread, self.seeds)
        return Outcome(names, statistics(fit, self.names, s.target), processed=len(self.names))

    def summary(self, result) -> str:
        st = FitStats.from_json(result.statistics)
        lines = [f"fit: {st.model} on {st.points} schedules ({st.target} loss) -> {result.out}",
                 "leave-one-out (each schedule predicted by the fit to the others):"]
        for model, d in (st.leave_one_out or {}).items():
            chosen = "  <- chosen" if model == st.model else ""
            lines.append(f"  {model:<10} Spearman {_num(d['spearman'])}   R² {_num(d['r2'])}{chosen}")
        return "\n".join(lines)


def _num(v) -> str:
    return "   n/a" if v is None else f"{v:+.3f}"


def target_losses(runs_dir: RunsDir, runs: dict, s: FitSettings) -> np.ndarray:
    """The target loss of every run: a column of runs.parquet, or one cluster's held-out loss."""
    k = s.target_cluster()
    if k is None:
        return np.asarray(runs[s.target], float)
    out = np.full(len(runs["run"]), np.nan)
    for i, name in enumerate(runs["run"]):
        scores = runs_dir.heldout_loss(str(name))
        mine = np.flatnonzero(scores.groups == k)
        if k == TARGET_GROUP or not len(mine):
            continue
        out[i] = scores.loss[mine[0]]
    return out


def statistics(fit: MixtureFit, names: list[str], target: str) -> FitStats:
    return FitStats(model=fit.name, target=target, points=len(names), measured=[float(v) for v in fit.y],
                    leave_one_out=fit.record()["leave_one_out"])


STEP = FitStep
