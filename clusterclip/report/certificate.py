"""The mixture certificate of a schedule (issue 28 item 4): what it was planned to give each cluster and what
it gave, and the sha256 of everything that was computed from.

``clusterclip clusters CL --schedule SCHED --certificate`` prints it (``--json``: :func:`certificate` as JSON;
otherwise :func:`format_certificate`'s table); the report shows it as a panel (its numbers in ``report.json``
``certificate``). Per cluster: planned and realised samples and tokens over the whole run, per tenth of the
samples and per stage (when the order has stages), the effective epochs (samples over documents: the mean uses
of a document of the cluster), the documents used and the most any one was used, the largest gap between two
successive samples of the cluster (other samples, and their tokens, in between), and why the realised count
differs from the plan (:func:`.plan.explain`). Per document: how many are used 0, 1, 2, ... times.

Everything is counted from ``order.parquet`` (every sample's cluster, use, tokens and stage; read through its
owner, sha256 checked) against the law the schedule recorded in ``law.parquet``, stage by stage
(:func:`.plan.plan_from_law`; rebuilt from the manifest for schedules written before it: :func:`.plan.plan_of`);
``computed_from`` lists the sha256 of each file and manifest involved (the shards are pinned by ``shards.json``, whose record
holds every shard file's sha256).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import manifest_digest
from ..schedule.directory import ORDER_FILE, ScheduleDir
from . import inputs
from .plan import Explained, PlannedMix, explain, plan_from_law, plan_of
from .timeline import Timeline, order_columns, scan_timeline

CERTIFICATE_VERSION = 1


@dataclass
class Counted:
    """A schedule read for its certificate (and the report): the law, the timeline, exits and explanations."""

    sched: inputs.ScheduleInfo
    sizes: np.ndarray  # int64 [K]: documents each cluster can draw (semantic duplicates left out)
    timeline: Timeline
    plan: PlannedMix | None
    plan_missing: str | None
    mean_tokens: np.ndarray | None
    at_clip: np.ndarray  # bool [K]: every document used its clip times
    left_clip: np.ndarray  # bool [K]: left the pool at its clip (not at its token budget)
    left_budget: np.ndarray  # bool [K]: left the pool at its token budget
    explained: Explained | None

    @property
    def exit_position(self) -> np.ndarray:
        return np.where(self.left_clip | self.left_budget, self.timeline.last_position, -1)


def count_schedule(sched: inputs.ScheduleInfo, clusters: inputs.ClusterInfo, *, groups: np.ndarray | None = None,
                   n_groups: int = 0, parts: int | None = None, batch_rows: int = inputs.BATCH_ROWS) -> Counted:
    """Scan ``sched``'s order (through its owner) and set it against its law (see the module docstring)."""
    owner = ScheduleDir(sched.directory)
    available = owner.order_columns()
    with_tokens = sched.has_tokens and "tokens" in available
    columns = order_columns(available, tokens=with_tokens, groups=groups is not None)
    try:
        timeline = scan_timeline(owner.iter_order_columns(columns, batch_rows), samples=sched.samples, k=clusters.k,
                                 tokens=sched.tokens if with_tokens else None, parts=parts, groups=groups,
                                 n_groups=n_groups)
    except ValueError as e:
        from ..errors import InputError

        raise InputError(f"{sched.directory}: {e}; rerun `clusterclip schedule --overwrite`") from None
    sizes = np.asarray(clusters.size, np.int64)
    if sched.cluster_dedup_removed is not None:
        sizes = sizes - np.asarray(sched.cluster_dedup_removed[: len(sizes)], np.int64)
    mean_tokens = mean_sample_tokens(sched)
    law = owner.law()
    plan: PlannedMix | None
    if law is not None:  # the law the sampler resolved, stage by stage
        spans = timeline.stage_spans if timeline.stage_samples is not None else [(0, timeline.samples)]
        plan, missing = plan_from_law(law, spans, clusters.k, balance=sched.balance, mean_tokens=mean_tokens,
                                      realised=timeline.stage_samples), None
    else:  # a schedule written before law.parquet: the law rebuilt from its manifest
        plan, missing = plan_of(sched, clusters.size, mean_tokens)
    at_clip, left_budget = _exits(sched, sizes, timeline, plan)
    left_clip = at_clip & ~left_budget
    explained = explain(plan, timeline.cluster_samples, left_clip=left_clip, left_budget=left_budget) \
        if plan is not None else None
    return Counted(sched, sizes, timeline, plan, missing, mean_tokens, at_clip, left_clip, left_budget, explained)


def mean_sample_tokens(sched: inputs.ScheduleInfo) -> np.ndarray | None:
    """Mean sample length per cluster from the manifest (clusters none of whose documents was tokenized get the
    schedule's mean sample length); None when the schedule counted no tokens."""
    if not sched.has_tokens or sched.cluster_mean_tokens is None:
        return None
    fallback = (sched.tokens or 0) / max(sched.samples, 1)
    return np.asarray([fallback if m is None else float(m) for m in sched.cluster_mean_tokens], np.float64)


def _exits(sched: inputs.ScheduleInfo, sizes: np.ndarray, tl: Timeline, plan: PlannedMix | None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Clusters whose every document was used ``clip`` times (``samples == clip × size``, since no document passes
    its clip: the clip is global over the stages), and clusters that left the pool at their token budget (their
    tokens reached it). The clips and budgets are the plan's (the last stage's), else the manifest's."""
    samples = tl.cluster_samples
    left_clip: np.ndarray = np.zeros(len(sizes), bool)
    clip = plan.clip if plan is not None else None
    if plan is None and sched.sampler == "clusterclip" and sched.max_repeats is not None:
        clip = np.asarray(sched.cluster_max_repeats, np.int64) if sched.cluster_max_repeats is not None \
            else np.full(len(sizes), sched.max_repeats, np.int64)
    if clip is not None:
        left_clip = (sizes > 0) & (clip > 0) & (samples == clip * sizes)
    left_budget: np.ndarray = np.zeros(len(sizes), bool)
    tokens = tl.cluster_tokens
    budget = plan.token_budget if plan is not None else None
    if plan is None and sched.cluster_token_budget is not None:
        budget = np.r_[np.asarray(sched.cluster_token_budget, np.int64), np.zeros(len(sizes), np.int64)][: len(sizes)]
    if budget is not None and tokens is not None:
        left_budget = (budget > 0) & (tokens >= budget)
    return left_clip, left_budget


# ----------------------------------------------------------------------------- the certificate


def certificate_of(cl_dir: str | Path, sched_dir: str | Path) -> dict:
    """The certificate of the schedule ``sched_dir`` of the clusters ``cl_dir`` (both checked through their owners)."""
    clusters = inputs.read_clusters(cl_dir)
    sched = inputs.read_schedule(sched_dir, clusters)
    return certificate(count_schedule(sched, clusters), clusters)


def certificate(counted: Counted, clusters: inputs.ClusterInfo) -> dict:
    """The certificate of ``counted`` (see the module docstring) as plain JSON values."""
    tl, plan, sched = counted.timeline, counted.plan, counted.sched
    planned = plan.expected_samples if plan is not None else None
    tenth_edges = tl.sample_edges[:: tl.parts // 10]
    out: dict = {
        "certificate_version": CERTIFICATE_VERSION,
        "schedule": str(sched.directory),
        "computed_from": _digests(sched.directory, clusters.directory),
        "law": plan.source if plan is not None else None,
        "law_missing": counted.plan_missing,
        "totals": _totals(counted),
        "notes": counted.explained.notes if counted.explained is not None else [],
        "documents": {"by_uses": tl.docs_by_uses(int(counted.sizes.sum())).tolist()},
        "tenths": {"edges": tenth_edges.tolist(), "samples": tl.tenths(tl.part_samples).tolist()},
        "clusters": [_cluster(counted, c, planned) for c in range(clusters.k)],
    }
    if tl.part_tokens is not None:
        out["tenths"]["tokens"] = tl.tenths(tl.part_tokens).tolist()
    if plan is not None:
        expected = np.diff(plan.expected_at(tenth_edges), axis=0)
        out["tenths"]["planned_samples"] = np.round(expected, 3).tolist()
        if plan.mean_tokens is not None:
            out["tenths"]["planned_tokens"] = np.round(expected * plan.mean_tokens, 1).tolist()
    if tl.stage_samples is not None:
        out["stages"] = _stages(counted)
    gaps = tl.max_gap
    widest = int(np.argmax(gaps)) if len(gaps) else 0
    out["largest_gap"] = {"cluster": widest, "samples": int(gaps[widest]) if len(gaps) else 0,
                          "tokens": None if tl.max_gap_tokens is None else int(tl.max_gap_tokens[widest])}
    return out


def _digests(sched_dir: Path, cl_dir: Path) -> dict:
    owner = ScheduleDir(sched_dir)
    recorded = {r["path"]: r["sha256"] for r in owner.info.outputs}
    found = {f"{sched_dir}/manifest.json": manifest_digest(sched_dir), f"{sched_dir}/{ORDER_FILE}": recorded[ORDER_FILE]}
    for name in ("law.parquet", "shards.json"):
        if name in recorded:
            found[f"{sched_dir}/{name}"] = recorded[name]
    if owner.settings.get("weights_digest"):
        found[str(owner.settings.get("weights"))] = owner.settings["weights_digest"]
    found[f"{cl_dir}/manifest.json"] = manifest_digest(cl_dir)
    cluster_outputs = {r["path"]: r["sha256"] for r in inputs.read_clusters(cl_dir).manifest.outputs}
    if "clusters.parquet" in cluster_outputs:
        found[f"{cl_dir}/clusters.parquet"] = cluster_outputs["clusters.parquet"]
    return found


def _totals(counted: Counted) -> dict:
    tl, plan = counted.timeline, counted.plan
    docs = int(counted.sizes.sum())
    totals = {"samples": tl.samples, "tokens": tl.tokens, "documents": docs,
              "effective_epochs": round(tl.samples / docs, 6) if docs else None,
              "clusters_left_at_clip": int(counted.left_clip.sum()),
              "clusters_left_at_budget": int(counted.left_budget.sum())}
    if plan is not None:
        totals["planned_samples"] = round(float(plan.expected_samples.sum()), 3)
        if plan.expected_tokens is not None:
            totals["planned_tokens"] = round(float(plan.expected_tokens.sum()), 1)
    return totals


def _cluster(counted: Counted, c: int, planned: np.ndarray | None) -> dict:
    tl, size = counted.timeline, int(counted.sizes[c])
    samples = int(tl.cluster_samples[c])
    row: dict = {"cluster": c, "documents": size, "samples": samples,
                 "effective_epochs": round(samples / size, 6) if size else None,
                 "documents_used": int(tl.cluster_uses[c, 0]),
                 "first": int(tl.first_position[c]), "last": int(tl.last_position[c]),
                 "max_uses": _max_uses(tl.cluster_uses[c]),
                 "second_use": int(tl.second_use[c]), "max_gap": int(tl.max_gap[c])}
    if tl.part_tokens is not None:
        row["tokens"] = int(tl.part_tokens[:, c].sum())
        assert tl.max_gap_tokens is not None
        row["max_gap_tokens"] = int(tl.max_gap_tokens[c])
    if counted.plan is not None and counted.plan.clip is not None:
        row["clip"] = int(counted.plan.clip[c])
    if planned is not None and counted.plan is not None and counted.explained is not None:
        row["planned_samples"] = round(float(planned[c]), 3)
        if counted.plan.mean_tokens is not None:
            row["planned_tokens"] = round(float(planned[c] * counted.plan.mean_tokens[c]), 1)
        row["asked_share"] = round(float(counted.plan.asked()[c]), 9)
        row["why"] = counted.explained.reason[c]
    return row


def _max_uses(uses: np.ndarray) -> int:
    """The most uses of one document of the cluster (``uses[u]``: its samples that are use ``u + 1``)."""
    used = np.flatnonzero(uses)
    return int(used.max()) + 1 if len(used) else 0


def _stages(counted: Counted) -> list[dict]:
    tl = counted.timeline
    assert tl.stage_samples is not None
    stages = []
    for s, (start, stop) in enumerate(tl.stage_spans):
        stage: dict = {"stage": s, "start": start, "stop": stop, "samples": tl.stage_samples[s].tolist()}
        if tl.stage_tokens is not None:
            stage["tokens"] = tl.stage_tokens[s].tolist()
        plan = counted.plan
        if plan is not None and len(plan.stages) == len(tl.stage_spans):
            stage["planned_samples"] = np.round(plan.stages[s].expected, 3).tolist()
            if plan.mean_tokens is not None:
                stage["planned_tokens"] = np.round(plan.stages[s].expected * plan.mean_tokens, 1).tolist()
        stages.append(stage)
    return stages


# ----------------------------------------------------------------------------- for people


def format_certificate(cert: dict) -> list[str]:
    """The certificate as terminal text: totals, notes, the files it was computed from, one line per cluster,
    the tenths, and the documents by uses."""
    t = cert["totals"]
    tokens = f", {t['tokens']:,} tokens" if t.get("tokens") is not None else ""
    planned = ""
    if "planned_samples" in t:
        planned = f" (planned {t['planned_samples']:,.0f} samples" + (
            f", {t['planned_tokens']:,.0f} tokens)" if "planned_tokens" in t else ")")
    lines = [f"mixture certificate of {cert['schedule']}",
             f"{t['samples']:,} samples{tokens}{planned} over {t['documents']:,} documents: "
             f"{t['effective_epochs'] or 0:.3f} epochs; {t['clusters_left_at_clip']:,} clusters left at their clip, "
             f"{t['clusters_left_at_budget']:,} at their token budget"]
    lines.append(f"planned by: {cert['law']}" if cert["law"] else f"no plan: {cert['law_missing']}")
    lines += [f"  {note}" for note in cert["notes"]]
    lines += _cluster_lines(cert)
    lines += _tenth_lines(cert)
    lines += _stage_lines(cert)
    by_uses = cert["documents"]["by_uses"]
    lines.append("documents by uses: " + ", ".join(f"{u}x {n:,}" for u, n in enumerate(by_uses)))
    gap = cert["largest_gap"]
    lines.append(f"largest gap between two samples of a cluster: {gap['samples']:,} samples"
                 + (f" ({gap['tokens']:,} tokens)" if gap.get("tokens") is not None else "")
                 + f", cluster {gap['cluster']}")
    lines.append("computed from (sha256):")
    lines += [f"  {digest}  {name}" for name, digest in cert["computed_from"].items()]
    return lines


def _cluster_lines(cert: dict) -> list[str]:
    rows = cert["clusters"]
    with_tokens = any("tokens" in r for r in rows)
    unit = "tokens" if with_tokens else "samples"
    head = (f"{'cluster':>7}  {'docs':>8}  {'planned ' + unit:>15}  {unit:>12}  {'got/plan':>8}  {'epochs':>7}  "
            f"{'max uses':>8}  {'max gap':>9}  why")
    lines = [head]
    for r in rows:
        plan = r.get(f"planned_{unit}")
        got = r.get(unit, 0)
        ratio = f"{got / plan:8.3f}" if plan else f"{'-':>8}"
        epochs = "-" if r["effective_epochs"] is None else f"{r['effective_epochs']:.3f}"
        plan_text = "-" if plan is None else f"{plan:,.0f}"
        lines.append(f"{r['cluster']:>7}  {r['documents']:>8,}  {plan_text:>15}  {got:>12,}  {ratio}  {epochs:>7}  "
                     f"{r.get('max_uses', ''):>8}  {r['max_gap']:>9,}  {r.get('why', '')}".rstrip())
    return lines


def _tenth_lines(cert: dict) -> list[str]:
    tenths = cert["tenths"]
    unit = "tokens" if "tokens" in tenths else "samples"
    got = np.asarray(tenths[unit], np.float64)
    planned = tenths.get(f"planned_{unit}")
    if planned is None:
        return [f"per tenth ({unit}): " + " ".join(f"{x:,.0f}" for x in got.sum(axis=1))]
    plan = np.asarray(planned, np.float64)
    moved = 0.5 * np.abs(got - plan).sum(axis=1) / np.maximum(plan.sum(axis=1), 1e-12)
    return [f"per tenth, the share of its {unit} that went to other clusters than planned (total variation): "
            + " ".join(f"{m:.1%}" for m in moved)]


def _stage_lines(cert: dict) -> list[str]:
    """One line per stage: its samples, its tokens got and planned, and the share of them that went to other
    clusters than planned (total variation)."""
    stages = cert.get("stages") or []
    unit = "tokens" if stages and all("tokens" in s for s in stages) else "samples"
    lines = []
    for s in stages:
        got = np.asarray(s[unit], np.float64)
        line = f"stage {s['stage']} (samples {s['start']:,}..{s['stop']:,}): {got.sum():,.0f} {unit}"
        if f"planned_{unit}" in s:
            plan = np.asarray(s[f"planned_{unit}"], np.float64)
            moved = 0.5 * np.abs(got - plan).sum() / max(float(plan.sum()), 1e-12)
            line += f" (planned {plan.sum():,.0f}); {moved:.1%} of them went to other clusters than planned"
        lines.append(line)
    return lines
