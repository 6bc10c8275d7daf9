"""``clusterclip propose FIT --out weights.csv``: the proposed mixture as a ``schedule --weights`` file.

Its output is one file and its sidecar manifest (:mod:`.weights`), not a directory, so it follows
the output rules itself: everything is checked before anything is written; an existing file is
replaced only when its sidecar proves ``propose`` wrote it (and then only with ``--overwrite`` if
the job differs: the same FIT and settings again is "done"); never through a symbolic link; the
weights file first, then the sidecar that names its sha256, each atomically.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError, IntegrityError, MismatchError
from ..settings import differences
from . import Proposal, propose
from .fit import MixtureFit
from .fitdir import FitDir
from .propose import Constraints, constraints_for, kl_divergence
from .settings import ProposeSettings
from .weights import read_provenance, sidecar_path, write_weights


@dataclass
class ProposeResult:
    """What ``propose`` wrote (or found done): the file, its sidecar, the proposal and the constraints."""

    path: Path
    sidecar: dict
    state: str
    seconds: float

    @property
    def already_done(self) -> bool:
        return self.state == "done"


def propose_weights(fit_dir, out, settings: ProposeSettings | None = None, *, overwrite: bool = False,
                    **kwargs) -> ProposeResult:
    """Propose the mixture of ``fit_dir`` within the sampler's constraints; write it to ``out`` (+ sidecar)."""
    from ..steps import settings_from

    t0 = time.perf_counter()
    s = settings_from(settings, kwargs, ProposeSettings)
    fit_owner = FitDir(fit_dir)
    rec = fit_owner.fit_record()
    out = Path(out)
    job = {"step": "propose", "settings": s.record(), "inputs": {"fit": fit_owner.record()}}
    state = _check_out(out, job, overwrite)
    if state == "done":
        return ProposeResult(out, read_provenance(out), "done", time.perf_counter() - t0)
    budget = s.budget_tokens or int(rec["train_tokens"])
    repeats = s.max_repeats or int(rec["max_repeats"])
    constraints = constraints_for(rec["pool_tokens"], repeats, budget, s.max_kl, source="--budget-tokens")
    fit = MixtureFit(fit_owner.model(), rec["model"])
    proposal = propose(fit, constraints, seed=s.seed, n=s.candidates)
    side = sidecar(job, rec, proposal, constraints, budget, repeats, out)
    write_weights(out, proposal.weights, side)
    return ProposeResult(out, read_provenance(out), "fresh", time.perf_counter() - t0)


def _check_out(out: Path, job: dict, overwrite: bool) -> str:
    """"fresh" (nothing there, or our own file replaced), "done" (the same job), or a one-line refusal."""
    for p in (out, sidecar_path(out)):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
            raise InputError(f"--out {p}: exists and is not a plain file (a link or a directory); choose another "
                             f"--out")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: its directory {out.parent} does not exist; create it first")
    if not out.exists():
        if sidecar_path(out).exists():
            raise InputError(f"--out {out}: {sidecar_path(out).name} is there without its weights file; remove it or "
                             f"choose another --out")
        return "fresh"
    try:
        previous = read_provenance(out)
    except IntegrityError:
        raise InputError(f"--out {out}: exists and was not written by `clusterclip propose` (or was edited since); "
                         f"choose another --out or remove it") from None
    old = {k: previous.get(k) for k in job}
    if old == job:
        return "done"
    if not overwrite:
        what = differences(old.get("settings") or {}, job["settings"]) or ["the fit (another FIT directory or run)"]
        raise MismatchError(f"--out {out}: holds the proposal of another job ({'; '.join(what)}); pass --overwrite to "
                            f"replace it, or choose another --out")
    return "fresh"


def sidecar(job: dict, rec: dict, proposal: Proposal, c: Constraints, budget: int, repeats: int, out: Path) -> dict:
    """The provenance of a proposal: the job, the fit, the constraints, the predictions, how to use it."""
    weights = proposal.weights
    return {
        **job, "tool": "clusterclip", "version": __version__,
        "fit": {"model": rec["model"], "target": rec["target"], "leave_one_out": rec["leave_one_out"],
                "schedules": rec["schedules"], "runs": rec["runs"]},
        "constraints": {"budget_tokens": budget, "max_repeats": repeats, "max_kl": c.max_kl,
                        "caps_binding": [int(k) for k in np.flatnonzero(np.isclose(weights, c.caps) & (c.caps < 1))]},
        "proposal": {**proposal.record(), "kl_to_natural": kl_divergence(weights, c.natural),
                     "natural": [float(v) for v in c.natural]},
        "use": f"clusterclip schedule EMB CL --out SCHED --weights {out.name} --balance tokens --alpha 0 "
               f"--budget-tokens {budget} --max-repeats {repeats} --tokenizer ...",
    }


def summary(result: ProposeResult, top: int = 5) -> str:
    """What the CLI prints: the prediction, the constraint use and the largest changes from the natural mixture."""
    side = result.sidecar
    if result.already_done:
        return f"propose: {result.path} is already done with these inputs and settings (nothing to do)"
    p, c = side["proposal"], side["constraints"]
    weights = np.asarray(read_weights_column(result.path))
    natural = np.asarray(p["natural"])
    order = np.argsort(-np.abs(weights - natural), kind="stable")[:top]
    changes = ", ".join(f"{k}: {natural[k]:.3f}->{weights[k]:.3f}" for k in order)
    return (f"propose: {side['fit']['model']} fit ({p['method']}): predicted {side['fit']['target']} loss "
            f"{p['predicted_loss']:.4f} vs {p['natural_predicted_loss']:.4f} for the natural mixture; KL to it "
            f"{p['kl_to_natural']:.3f} (limit {c['max_kl']:g}); largest changes {changes} -> {result.path}\n"
            f"use it: {side['use']}")


def read_weights_column(path: Path) -> list[float]:
    from ..schedule.mixing import read_cluster_table

    side = read_provenance(path)
    weights, _ = read_cluster_table(path, int(side["clusters"]))
    return [float(v) for v in weights]
