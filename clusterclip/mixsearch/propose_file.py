"""``clusterclip propose FIT --out weights.csv``: the proposed mixture as a ``schedule --weights`` file.

A step like the others (run by :func:`~clusterclip.steps.run_step`), but its output is one file and
its sidecar manifest, not a directory: :class:`~.weights.WeightsOutput` is its transaction (every
check before anything is written; only a file ``propose`` wrote is replaced; never through a link;
the weights file first, then the sidecar that names its sha256).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts import Job, StepResult
from ..steps import Outcome, Plan, Run, Step, run_step, settings_from
from . import Proposal, propose
from .fit import MixtureFit
from .fitdir import FitDir
from .propose import Constraints, constraints_for, kl_divergence
from .settings import ProposeSettings
from .weights import WeightsOutput, read_provenance, write_weights_csv

__all__ = ["ProposeStep", "propose_weights"]


def propose_weights(fit_dir, out, settings: ProposeSettings | None = None, *, overwrite: bool = False,
                    **kwargs) -> StepResult:
    """Propose the mixture of ``fit_dir`` within the sampler's constraints; write it to ``out`` (+ sidecar)."""
    s = settings_from(settings, kwargs, ProposeSettings)
    return run_step(ProposeStep.open(fit_dir, s), out, overwrite=overwrite)


class ProposeStep(Step[ProposeSettings]):
    name = "propose"
    settings_class = ProposeSettings
    resumable = False  # seconds of work: redone rather than checked

    def __init__(self, fit: FitDir, settings: ProposeSettings, **kwargs):
        super().__init__(settings, **kwargs)
        self.fit = fit
        self.fit_record: dict = {}
        self.budget = self.repeats = 0
        self._constraints: Constraints | None = None

    @classmethod
    def open(cls, fit_dir, settings: ProposeSettings, **kwargs) -> ProposeStep:
        return cls(FitDir(fit_dir), settings, **kwargs)

    def upstream(self) -> dict:
        return {"fit": self.fit}

    def output(self, out: Path, job: Job, *, overwrite: bool, inputs: tuple[Path, ...]) -> WeightsOutput:
        return WeightsOutput(out, job, overwrite=overwrite)

    def plan(self, out: Path, overwrite: bool) -> Plan:
        s, rec = self.settings, self.fit.fit_record()
        self.fit_record = rec
        self.budget = s.budget_tokens or int(rec["train_tokens"])
        self.repeats = s.max_repeats or int(rec["max_repeats"])
        self._constraints = constraints_for(rec["pool_tokens"], self.repeats, self.budget, s.max_kl,
                                            source="--budget-tokens")
        return Plan(s.record(), self.upstream_records())

    @property
    def constraints(self) -> Constraints:
        """The sampler's constraints on the proposal (set by :meth:`plan`)."""
        if self._constraints is None:
            raise RuntimeError("ProposeStep.constraints: plan() has not run")
        return self._constraints

    def run(self, run: Run) -> Outcome:
        s, rec, constraints = self.settings, self.fit_record, self.constraints
        proposal = propose(MixtureFit(self.fit.model(), rec["model"]), constraints, seed=s.seed, n=s.candidates)
        write_weights_csv(run.build / run.out.name, proposal.weights)
        side = sidecar(rec, proposal, constraints, self.budget, self.repeats, run.out)
        return Outcome([run.out.name], {}, extra={**side, "clusters": int(len(proposal.weights))},
                       processed=len(proposal.weights))

    def summary(self, result: StepResult) -> str:
        return summary(result)


def sidecar(rec: dict, proposal: Proposal, c: Constraints, budget: int, repeats: int, out: Path) -> dict:
    """The provenance of a proposal (besides the job): the fit, the constraints, the predictions, how to use it."""
    weights = proposal.weights
    return {
        "fit": {"model": rec["model"], "target": rec["target"], "leave_one_out": rec["leave_one_out"],
                "schedules": rec["schedules"], "runs": rec["runs"]},
        "constraints": {"budget_tokens": budget, "max_repeats": repeats, "max_kl": c.max_kl,
                        "caps_binding": [int(k) for k in np.flatnonzero(np.isclose(weights, c.caps) & (c.caps < 1))]},
        "proposal": {**proposal.record(), "kl_to_natural": kl_divergence(weights, c.natural),
                     "natural": [float(v) for v in c.natural]},
        "use": f"clusterclip schedule EMB CL --out SCHED --weights {out.name} --balance tokens --alpha 0 "
               f"--budget-tokens {budget} --max-repeats {repeats} --tokenizer ...",
    }


def summary(result: StepResult, top: int = 5) -> str:
    """What the CLI prints: the prediction, the constraint use and the largest changes from the natural mixture."""
    side = result.manifest
    p, c = side["proposal"], side["constraints"]
    weights = np.asarray(read_weights_column(result.out))
    natural = np.asarray(p["natural"])
    order = np.argsort(-np.abs(weights - natural), kind="stable")[:top]
    changes = ", ".join(f"{k}: {natural[k]:.3f}->{weights[k]:.3f}" for k in order)
    return (f"propose: {side['fit']['model']} fit ({p['method']}): predicted {side['fit']['target']} loss "
            f"{p['predicted_loss']:.4f} vs {p['natural_predicted_loss']:.4f} for the natural mixture; KL to it "
            f"{p['kl_to_natural']:.3f} (limit {c['max_kl']:g}); largest changes {changes} -> {result.out}\n"
            f"use it: {side['use']}")


def read_weights_column(path: Path) -> list[float]:
    from ..schedule.mixing import read_cluster_table

    side = read_provenance(path)
    weights, _ = read_cluster_table(path, int(side["clusters"]))
    return [float(v) for v in weights]


STEP = ProposeStep
