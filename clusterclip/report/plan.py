"""What a schedule was planned to give each cluster, and why what it got differs (issue 26 item 6).

:class:`PlannedMix` is a schedule's law as the report and the certificate use it: per stage, each cluster's
draw probability (what the weights ask), the most samples its clip (or token budget) lets the stage take, and
the expected samples (the water-filling of :func:`.mix.water_fill`: clusters grow at the rate of their draw
weight until their cap). :meth:`PlannedMix.expected_at` is the expected samples of every cluster up to any
position, so planned and realised can be set side by side per tenth (or per part) as well as for the run.

It is read from the schedule's ``law.parquet`` (:func:`plan_from_law`: the law the sampler resolved, per stage)
and, for schedules written before that file existed, rebuilt from the schedule's manifest (its settings, its
per-cluster clips and token budgets, its ``--weights`` while that file is unchanged) by the law's one
computation, :func:`.mix.law_counts` (:func:`plan_of`).

:func:`explain` says, cluster by cluster, why the realised mix differs from the draw weights: the clip (the
cluster used every document ``max_repeats`` times and left the pool, so it got less than its weight asked and
the others shared what it left), its token budget (``--budget-tokens``: it stopped there), or chance (within
the sampling spread around the expected count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import inputs
from .mix import law_counts, shares_of, water_fill

#: a realised count further than this many standard deviations from the expected one is not put down to chance
CHANCE_SIGMAS = 4.0


@dataclass(frozen=True)
class PlanStage:
    """One stage of the law over samples ``[start, stop)``."""

    start: int
    stop: int
    weight: np.ndarray  # float64 [K]: draw probability at the start of the stage (what the weights ask)
    cap: np.ndarray  # float64 [K]: the most samples the stage can take from the cluster (inf: no clip)
    expected: np.ndarray  # float64 [K]: expected samples of the cluster over the stage


@dataclass(frozen=True)
class PlannedMix:
    """A schedule's law against its clusters (see the module docstring)."""

    stages: list[PlanStage]
    mean_tokens: np.ndarray | None  # float64 [K]: mean sample length (None: the schedule counted no tokens)
    clip: np.ndarray | None  # int64 [K]: the clip of every cluster (None: no clip)
    token_budget: np.ndarray | None  # int64 [K]: per-cluster token budgets (--budget-tokens)
    balance: str  # "samples" or "tokens": what the weights ask a share of
    source: str  # where the law was read from (for the page)

    @property
    def k(self) -> int:
        return int(self.stages[0].weight.shape[0])

    @property
    def expected_samples(self) -> np.ndarray:
        return np.sum([s.expected for s in self.stages], axis=0)

    @property
    def expected_tokens(self) -> np.ndarray | None:
        return None if self.mean_tokens is None else self.expected_samples * self.mean_tokens

    def asked(self) -> np.ndarray:
        """The share of the samples the draw weights alone ask for (each stage's for its length), before the clip."""
        return shares_of(np.sum([s.weight * (s.stop - s.start) for s in self.stages], axis=0))

    def asked_tokens(self) -> np.ndarray | None:
        """The share of the tokens the draw weights alone ask for (what ``--balance tokens`` weights are)."""
        return None if self.mean_tokens is None else shares_of(self.asked() * self.mean_tokens)

    def expected_at(self, positions) -> np.ndarray:
        """Expected samples of every cluster before each of ``positions`` (float64 ``[len(positions), K]``)."""
        positions = np.asarray(positions, np.int64)
        out = np.zeros((len(positions), self.k))
        for i, x in enumerate(positions.tolist()):
            for stage in self.stages:
                if x <= stage.start:
                    break
                if x >= stage.stop:
                    out[i] += stage.expected
                else:
                    out[i] += water_fill(stage.weight, stage.cap, x - stage.start)
        return out


def plan_of(sched: inputs.ScheduleInfo, sizes: np.ndarray, mean_tokens: np.ndarray | None
            ) -> tuple[PlannedMix | None, str | None]:
    """The law of ``sched`` (a single stage over its samples) from its manifest: ``(PlannedMix, None)``, or
    ``(None, why not)`` when it cannot be rebuilt (its ``--weights`` file moved or changed, or it balanced
    tokens without counting them)."""
    if sched.law_missing is not None:
        return None, sched.law_missing
    if (sched.balance == "tokens" or sched.cluster_token_budget is not None) and mean_tokens is None:
        return None, "it balanced or budgeted tokens but the manifest holds no mean sample lengths"
    sizes = np.asarray(sizes, np.int64)
    if sched.cluster_dedup_removed is not None:  # semantic duplicates are never drawn
        sizes = sizes - np.asarray(sched.cluster_dedup_removed[: len(sizes)], np.int64)
    clip = None
    if sched.sampler == "clusterclip":
        clip = np.asarray(sched.cluster_max_repeats, np.int64) if sched.cluster_max_repeats is not None \
            else np.full(len(sizes), int(sched.max_repeats or 0), np.int64)
    length = mean_tokens if mean_tokens is not None else np.ones(len(sizes))
    cap = clip * sizes.astype(np.float64) if clip is not None else np.full(len(sizes), np.inf)
    budget = None
    if sched.sampler == "random":
        weight = shares_of(sizes)
    elif sched.cluster_token_budget is not None:
        budget = np.r_[np.asarray(sched.cluster_token_budget, np.int64), np.zeros(len(sizes), np.int64)][: len(sizes)]
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = shares_of(np.where(length > 0, budget / length, 0.0))  # drawn ∝ T_k / mean length
            cap = np.where(length > 0, np.minimum(budget, cap * length) / length, 0.0)
    else:  # the law's draw probabilities: its expected counts of one sample without a clip
        weight = law_counts(sizes, length, sampler="uniform", samples=1, alpha=sched.alpha, balance=sched.balance,
                            multipliers=sched.multipliers)
    expected = cap.copy() if budget is not None else water_fill(weight, cap, sched.samples)
    stage = PlanStage(0, sched.samples, weight, cap, expected)
    return PlannedMix([stage], mean_tokens, clip, budget, sched.balance, "the schedule's manifest"), None


def plan_from_law(law: dict[str, np.ndarray], spans: list[tuple[int, int]], k: int, *, balance: str,
                  mean_tokens: np.ndarray | None, realised: np.ndarray | None = None) -> PlannedMix:
    """The law a schedule recorded in its ``law.parquet`` (one row per stage and cluster, see
    :func:`clusterclip.schedule.law.law_table`), stage by stage over ``spans`` (``[start, stop)`` of every stage of
    the order, by stage number).

    Each stage's draw probability, clip and token budget are the recorded ones and its expected samples the
    recorded ``expected_samples``; the most it can take from a cluster (what :meth:`PlannedMix.expected_at` fills up
    to inside the stage) is its clip × size less what earlier stages are expected to have used, or its token budget
    over its mean sample length. Stages before the first recorded one (the prefix a ``--continue`` kept from an
    older order, drawn under that order's law) are planned as what they hold: ``realised`` (``[S, K]`` samples per
    stage, counted from the order)."""
    stage_of = np.asarray(law["stage"], np.int64)
    numbers = sorted(set(stage_of.tolist()))
    stages: list[PlanStage] = []
    used = np.zeros(k)
    for s in range(numbers[0] if numbers else 0):  # a continued order's prefix: what it holds
        held = np.zeros(k) if realised is None or s >= len(realised) else np.asarray(realised[s], np.float64)[:k]
        start, stop = spans[s] if s < len(spans) else (0, 0)
        stages.append(PlanStage(start, stop, shares_of(held), held.copy(), held))
        used += held
    clip = budget = None
    for s in numbers:
        rows = _rows(law, stage_of == s, k)
        clip, budget = rows["clip"], rows["token_budget"]
        cap = np.where(clip > 0, clip * rows["size"] - used, np.inf)
        if np.any(budget >= 0) and mean_tokens is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                cap = np.where(budget >= 0, np.where(mean_tokens > 0, budget / mean_tokens, 0.0), cap)
        start, stop = spans[s] if s < len(spans) else (0, int(round(float(rows["expected_samples"].sum()))))
        stages.append(PlanStage(start, stop, rows["weight"], np.maximum(cap, 0.0), rows["expected_samples"]))
        used += rows["expected_samples"]
    clips: np.ndarray | None = None if clip is None or not np.any(clip > 0) else clip.astype(np.int64)
    budgets = None if budget is None or not np.any(budget >= 0) else np.maximum(budget, 0).astype(np.int64)
    return PlannedMix(stages, mean_tokens, clips, budgets, balance, "the schedule's law.parquet")


def _rows(law: dict[str, np.ndarray], mine: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """One stage's columns of ``law`` as ``[K]`` arrays by cluster id (clusters the table leaves out: weight 0)."""
    cluster = np.asarray(law["cluster"], np.int64)[mine]
    fill = {"size": 0, "weight": 0.0, "clip": 0, "token_budget": -1, "expected_samples": 0.0}
    out = {}
    for name, default in fill.items():
        column: np.ndarray = np.full(k, default, np.float64)
        column[cluster] = np.asarray(law[name], np.float64)[mine]
        out[name] = column
    return out


@dataclass(frozen=True)
class Explained:
    """Why each cluster's realised samples differ from the draw weights (see :func:`explain`)."""

    reason: list[str]  # per cluster: "clip", "budget", "chance", "off" (beyond chance: see the notes) or "" (not drawn)
    notes: list[str]  # sentences for the page and the certificate
    largest: list[int]  # clusters ordered by |realised share - asked share|, largest first


def explain(plan: PlannedMix, realised: np.ndarray, *, left_clip: np.ndarray, left_budget: np.ndarray
            ) -> Explained:
    """Set ``realised`` samples per cluster against ``plan``: ``left_clip``/``left_budget`` (bool ``[K]``) mark the
    clusters that left the pool at their clip or their token budget (counted from the order)."""
    realised = np.asarray(realised, np.float64)
    expected = plan.expected_samples
    asked = plan.asked()
    got = shares_of(realised)
    sigma = np.sqrt(np.maximum(expected * (1 - shares_of(expected)), 1.0))
    reason = []
    for c in range(plan.k):
        if realised[c] == 0 and expected[c] == 0:
            reason.append("")
        elif left_budget[c]:
            reason.append("budget")
        elif left_clip[c]:
            reason.append("clip")
        elif abs(realised[c] - expected[c]) <= CHANCE_SIGMAS * sigma[c]:
            reason.append("chance")
        else:
            reason.append("off")
    notes = _notes(plan, reason, asked, got)
    largest = np.lexsort((np.arange(plan.k), -np.abs(got - asked))).tolist()
    return Explained(reason, notes, largest)


def _notes(plan: PlannedMix, reason: list[str], asked: np.ndarray, got: np.ndarray) -> list[str]:
    clipped = [c for c, r in enumerate(reason) if r == "clip"]
    notes = []
    if clipped:
        short = float(np.sum(asked[clipped] - got[clipped]))
        notes.append(f"{len(clipped):,} of {sum(r != '' for r in reason):,} clusters reached their clip (every "
                     f"document used max_repeats times) and left the pool: they got {short:.1%} of the samples less "
                     f"than their weights ask, which the clusters still in the pool shared")
    budget = reason.count("budget")
    if budget:
        notes.append(f"{budget:,} clusters stopped at their token budget (--budget-tokens): each got its share of the "
                     f"tokens to within one sample")
    if plan.balance == "tokens":
        notes.append("the weights ask for shares of the tokens (--balance tokens): clusters of short documents get a "
                     "larger share of the samples than of the tokens")
    off = [c for c, r in enumerate(reason) if r == "off"]
    if off:
        notes.append(f"{len(off):,} clusters are further than {CHANCE_SIGMAS:g} standard deviations from their expected "
                     f"samples without reaching a clip or budget (first: cluster {off[0]})")
    return notes
