"""The report page being built (:class:`Page`): its sections, the numbers behind its figures, its warnings.

Sections: the mix (sizes and each sampler's share), what the schedule was asked for and what it got (budget
and per cluster, with why they differ), the mix in tokens (positions in tokens), the schedule over training
(shares per part, uses, repetition, pool exits), the groups of ``--group-by``, the mixture certificate, and the
map of the centroids. A schedule's figures are counted from its ``order.parquet`` in one pass
(:func:`.certificate.count_schedule`) and checked against its manifest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..artifacts import dumps_json, write_bytes_atomic
from ..artifacts.manifest import Stats, written
from ..schedule.target import format_budget
from ..steps import Outcome
from . import figures, inputs, training
from .certificate import Counted, certificate, count_schedule, format_certificate, mean_sample_tokens
from .groups import Groups
from .html import Figure, ScheduleColumns, Section, SimpleTable, render_page
from .mix import expected_shares, shares_of
from .settings import ReportSettings
from .table import add_schedule, cluster_table


@dataclass(frozen=True)
class ReportStats(Stats):
    """A report manifest's ``statistics`` (written by the report step; see
    :class:`~clusterclip.artifacts.manifest.Stats` for the versions)."""

    n_docs: int | None = written()
    k: int | None = written()
    clusters_in_table: int | None = written()  #: clusters the page's table shows
    sampled_docs: int | None = written()  #: documents read for the keywords
    warnings: list[str] | None = written()


class Page:
    """The report being built: its sections (text and figures), the numbers behind them, its warnings."""

    def __init__(self, s: ReportSettings, info: inputs.ClusterInfo, embed: inputs.EmbedInfo,
                 sched: inputs.ScheduleInfo | None, emb_dir, cl_dir, sched_dir, *, groups: Groups | None = None,
                 labels: np.ndarray | None = None):
        self.s, self.info, self.embed, self.sched = s, info, embed, sched
        self.emb_dir, self.cl_dir, self.sched_dir = emb_dir, cl_dir, sched_dir
        self.groups, self.doc_labels = groups, labels
        self.warnings: list[str] = []
        self.sections: list[Section] = []
        self.tables: list[SimpleTable] = []
        self.plotted: dict[str, dict] = {}
        self.sizes = info.size
        self.empty = int(np.count_nonzero(self.sizes == 0))
        self.shown = np.lexsort((np.arange(info.k), -self.sizes))[: s.max_table_clusters]
        self.table = cluster_table(info.directory, emb_dir, clusters=self.shown.tolist(), sample_docs=s.sample_docs,
                                   max_sample_docs=s.max_sample_docs, seed=s.seed, cluster_info=info)
        if sched is not None:
            add_schedule(self.table, sched)
        self.counted: Counted | None = None
        self.certificate: dict | None = None
        self.shares: dict[str, np.ndarray] = {}
        self.labels: dict[str, str] = {}
        self.token_shares: dict[str, np.ndarray] | None = None
        self.mean_tokens: np.ndarray | None = None
        self.estimated: list[int] = []
        self.extra_sections: list = []  # callables adding sections before the map (e.g. proxies)

    def write(self, out: Path) -> Outcome:
        if self.sched is not None:
            self._count(self.sched)
        self._mix_section()
        self._asked_section()
        self._tokens_section()
        self._schedule_section()
        self._group_section()
        self._certificate_section()
        for add in self.extra_sections:
            self.sections.append(add(self.sizes, self.plotted))
        self._map_section()
        page = render_page(title="clusterclip report", summary=self._summary(), warnings=self.warnings,
                           sections=self.sections, rows=self.table.rows, table_note=self._table_note(),
                           schedule=self._schedule_columns(), tables=self.tables,
                           footer=f"Written by clusterclip {__version__} (`clusterclip report`).")
        # figures, page, data into the build; the commit writes the manifest last
        fig_dir = out / "figures"
        fig_dir.mkdir(exist_ok=True)
        names = []
        for section in self.sections:
            for f in section.figures:
                write_bytes_atomic(fig_dir / f"{f.name}.png", f.png)
                names.append(f"figures/{f.name}.png")
        write_bytes_atomic(out / "index.html", page.encode("utf-8"))
        data = {"tool": "clusterclip", "version": __version__, "warnings": self.warnings, "figures": self.plotted,
                "table": self.table.to_json()}
        if self.certificate is not None:
            data["certificate"] = self.certificate
        write_bytes_atomic(out / "report.json", dumps_json(_finite(data)).encode("utf-8"))
        names += ["index.html", "report.json"]
        statistics = ReportStats(n_docs=self.info.n_docs, k=self.info.k, clusters_in_table=len(self.shown),
                                 sampled_docs=self.table.sampled_docs, warnings=self.warnings)
        return Outcome(names, statistics)

    # ---- the schedule, counted from its order
    def _count(self, sched: inputs.ScheduleInfo) -> None:
        groups = self.groups
        self.counted = counted = count_schedule(sched, self.info, groups=None if groups is None else groups.of_doc,
                                                n_groups=0 if groups is None else groups.n)
        tl = counted.timeline
        self.shares["schedule"] = shares_of(tl.cluster_samples)
        self.labels["schedule"] = f"this schedule ({sched.sampler}, {tl.samples:,} samples, actual)"
        self.warnings += _compare_with_manifest(counted, sched)
        self.mean_tokens = mean_sample_tokens(sched)
        if self.mean_tokens is not None and sched.cluster_mean_tokens is not None:
            self.estimated = [c for c, m in enumerate(sched.cluster_mean_tokens) if m is None]

    # ---- the mix: sizes and the share each sampler gives each cluster
    def _mix_section(self) -> None:
        sizes, sched, n_docs, k = self.sizes, self.sched, self.info.n_docs, self.info.k
        # the expected clusterclip mix: that of a clusterclip SCHED (its budget, clip and alpha), else one epoch
        like_sched = sched is not None and sched.sampler == "clusterclip"
        clip = sched.max_repeats if like_sched and sched is not None else self.s.max_repeats
        budget = sched.samples if like_sched and sched is not None else n_docs
        alpha = sched.alpha if like_sched and sched is not None else 0.0
        mixes = {
            "random": expected_shares(sizes, sampler="random", samples=max(n_docs, 1)),
            "uniform": expected_shares(sizes, sampler="uniform", samples=max(n_docs, 1)),
            "clusterclip": expected_shares(sizes, sampler="clusterclip", samples=budget, max_repeats=clip, alpha=alpha),
        }
        self.shares = {**mixes, **self.shares}  # the schedule's own share (counted) drawn last
        budget_text = f"{budget:,} samples" if budget != n_docs else "one epoch"
        self.labels.update({
            "random": "random (share ∝ size)",
            "uniform": f"uniform (1/{k - self.empty} each)",
            "clusterclip": f"clusterclip, expected ({budget_text}, max_repeats {clip}"
                           + (f", alpha {alpha:g}" if alpha else "") + ")",
        })
        law_text = self._law() if sched is not None and sched.extended else None
        png, self.plotted["sizes_and_shares"] = figures.sizes_and_shares(sizes, self.shares, self.labels)
        mix_text = [
            ("Top: documents per cluster, largest first. Bottom: the share of the training samples each cluster gets: "
             "random sampling follows the sizes, uniform gives every cluster the same share, clusterclip gives every "
             "cluster the same share until a cluster's documents have all been used max_repeats times (the clip), "
             "so small clusters get at most max_repeats × their size."),
            ("The expected clusterclip share needs only the cluster sizes (clusters grow at the same rate until they "
             "reach their clip); a schedule's actual share, when given, is counted from its order.parquet."),
        ]
        if self.empty:
            mix_text.append(f"{self.empty} empty cluster(s) are left out of the log-scale plots.")
        if law_text:
            mix_text.append(law_text)
        self.sections.append(Section("mix", "Cluster sizes and the training mix", mix_text,
                                     [Figure("sizes_and_shares", png, "cluster sizes and shares per sampler",
                                             "Cluster sizes (log scale) and the share of each cluster under each "
                                             "sampler.")]))

    def _law(self) -> str | None:
        """The expected shares under the schedule's own law (``--balance tokens``, ``--weights``, per-cluster clips,
        ``--budget-tokens``, dedup) as ``law``; a sentence for the page."""
        counted, sched = self.counted, self.sched
        assert counted is not None and sched is not None
        if counted.plan is None:
            missing = counted.plan_missing
            return f"The expected shares under this schedule's weights are not drawn: {missing}." if missing else None
        self.shares["law"] = shares_of(counted.plan.expected_samples)
        what = [f"--balance {sched.balance}"] + (["--weights"] if sched.multipliers is not None else []) \
            + (["per-cluster clips"] if sched.cluster_max_repeats is not None else []) \
            + (["--budget-tokens"] if sched.cluster_token_budget is not None else []) \
            + (["dedup"] if sched.cluster_dedup_removed is not None else []) \
            + ([f"{len(counted.plan.stages)} stages"] if len(counted.plan.stages) > 1 else [])
        self.labels["law"] = f"{sched.sampler} under this schedule's law, expected ({', '.join(what)})"
        return ("The expected shares under this schedule's law use its weights (size, or tokens with --balance "
                "tokens, to the power alpha, times its --weights), its per-cluster clips and token budgets: each "
                "cluster is drawn in proportion to its weight (divided by its mean sample length when balancing "
                "tokens) until it reaches its clip or budget.")

    # ---- what was asked and what was got
    def _asked_section(self) -> None:
        counted, sched = self.counted, self.sched
        if counted is None or sched is None:
            return
        text = format_budget(sched.budget) if sched.budget is not None else []
        plan, explained, tl = counted.plan, counted.explained, counted.timeline
        figs = []
        if plan is None or explained is None:
            text.append(f"Per cluster, the plan could not be rebuilt: {counted.plan_missing}.")
        else:
            text += [note[0].upper() + note[1:] + "." for note in explained.notes]
            text.append("Asked: the share the draw weights alone give each cluster (before any clip); expected: the "
                        "law's expected share with its clips and budgets; got: counted from order.parquet. Largest "
                        "differences: " + ", ".join(
                            f"cluster {c} asked {plan.asked()[c]:.2%}, got {self.shares['schedule'][c]:.2%}"
                            + (f" ({explained.reason[c]})" if explained.reason[c] else "")
                            for c in explained.largest[:3]))
            rows = training.cluster_rows(self.info.k)
            png, self.plotted["target_vs_realised"] = training.target_vs_realised(
                plan.asked(), shares_of(plan.expected_samples), shares_of(tl.cluster_samples), explained.reason,
                rows, unit="samples")
            figs.append(Figure("target_vs_realised", png, "asked and got per cluster",
                               "Each cluster's share of the samples: what the weights ask (x) against what the "
                               "schedule got (dots, coloured by why) and what its law expects (rings)."))
            asked_tokens, tokens = plan.asked_tokens(), tl.cluster_tokens
            if asked_tokens is not None and tokens is not None and plan.expected_tokens is not None:
                png, self.plotted["target_vs_realised_tokens"] = training.target_vs_realised(
                    asked_tokens, shares_of(plan.expected_tokens), shares_of(tokens), explained.reason, rows,
                    unit="tokens")
                figs.append(Figure("target_vs_realised_tokens", png, "asked and got per cluster, in tokens",
                                   "The same in tokens: the weights' share of the tokens (their draw share × mean "
                                   "sample length) against the tokens the schedule got."))
        self.sections.append(Section("asked", "Asked and got", text, figs))

    # ---- the same in tokens, when the schedule counted them
    def _tokens_section(self) -> None:
        sched, mean_tokens, counted = self.sched, self.mean_tokens, self.counted
        if mean_tokens is None or sched is None or counted is None:
            return
        # expected: each sampler's samples times the cluster's mean sample length; actual: the manifest's count
        token_shares = {name: shares_of(share * mean_tokens) for name, share in self.shares.items()
                        if name != "schedule"}
        token_shares["schedule"] = shares_of(np.asarray(sched.cluster_tokens, np.float64))
        self.token_shares = token_shares
        png, self.plotted["token_shares"] = figures.token_shares(self.sizes, mean_tokens, self.shares, token_shares,
                                                                 self.labels)
        self.plotted["token_shares"]["estimated_mean_tokens"] = self.estimated
        figs = [Figure("token_shares", png, "share of the tokens per cluster and sampler",
                       "Mean sample length of each cluster and the share of the training tokens each cluster gets "
                       "under each sampler.")]
        text = [
            (f"Token shares: this schedule's are its own counts ({sched.tokens:,} tokens, manifest.json "
             "cluster_tokens); the expected ones are each sampler's expected samples times the cluster's mean "
             "sample length (manifest.json cluster_mean_tokens, delimiters included). A cluster of long documents "
             "gets a larger share of the tokens than of the samples.")]
        if self.estimated:
            text.append(f"{len(self.estimated):,} cluster(s) had no tokenized document; their mean length is taken as "
                        "the schedule's mean sample length.")
        tl = counted.timeline
        if tl.token_part_tokens is None or tl.token_edges is None:
            text.append("This schedule's order.parquet holds no tokens column (an older clusterclip made it): rerun "
                        "`clusterclip schedule` for the figures over training in tokens.")
        else:
            figs += self._token_timeline(tl)
        self.sections.append(Section("tokens", "The training mix in tokens", text, figs))

    def _token_timeline(self, tl) -> list[Figure]:
        rows = training.cluster_rows(self.info.k)
        png, self.plotted["token_balance_over_time"] = training.balance_over_time(
            tl.token_part_tokens, tl.token_edges, rows, unit="tokens",
            title="Share of each cluster in the tokens of each part of the schedule")
        planned = None
        plan = self.counted.plan if self.counted is not None else None
        if plan is not None and plan.mean_tokens is not None:
            planned = plan.expected_at(tl.samples_at_token_edges) * plan.mean_tokens
        png2, self.plotted["cumulative_tokens"] = training.cumulative_tokens(tl.token_part_tokens, tl.token_edges,
                                                                             rows, planned)
        return [Figure("token_balance_over_time", png, "share of the tokens over training",
                       f"Each cluster's share of the tokens in each of {tl.parts} parts of equal tokens (x: tokens), "
                       "and the balance of the parts."),
                Figure("cumulative_tokens", png2, "tokens per cluster over training",
                       "Cumulative tokens of the clusters with the most tokens against the position in tokens; "
                       "dashed: what the schedule's law plans for them.")]

    # ---- the schedule over time
    def _schedule_section(self) -> None:
        counted, sched = self.counted, self.sched
        if counted is None or sched is None:
            return
        tl = counted.timeline
        rows = training.cluster_rows(self.info.k)
        figs = []
        png, self.plotted["balance_over_time"] = training.balance_over_time(
            tl.part_samples, tl.sample_edges, rows, unit="samples",
            title=f"Share of each cluster in each part of the schedule ({sched.sampler})")
        figs.append(Figure("balance_over_time", png, "share of each cluster over training",
                           f"Each cluster's share of the samples in each of {tl.parts} parts of the schedule, and "
                           "the balance of the parts."))
        clips = self._clips()
        png, self.plotted["uses_over_training"] = training.uses_over_training(
            tl, None if not clips else "clip " + ", ".join(str(c) for c in sorted(clips)))
        figs.append(Figure("uses_over_training", png, "first and later uses over training",
                           "The share of each part's samples that are a document's first, second, ... use, and when "
                           "each cluster's second uses start."))
        png, self.plotted["repetition"] = training.repetition_histogram(tl.docs_by_uses(int(self.info.n_docs)), clips)
        figs.append(Figure("repetition", png, "repetition histogram",
                           "Documents by the number of times the schedule uses them; dashed: the clips."))
        if clips or sched.cluster_token_budget is not None:
            png, self.plotted["pool_exits"] = training.pool_exits(
                tl.last_position, counted.left_clip, counted.left_budget, tl.samples,
                int(np.count_nonzero(tl.cluster_samples)))
            figs.append(Figure("pool_exits", png, "clusters leaving the pool",
                               "Clusters that left the pool at their clip or their token budget, by the position of "
                               "their last sample."))
        left = int(counted.left_clip.sum() + counted.left_budget.sum())
        text = [(f"{tl.samples:,} samples by the {sched.sampler} sampler from {self.sched_dir}; "
                 f"{int(np.count_nonzero(tl.cluster_samples)):,} clusters drawn, "
                 f"{int(tl.cluster_uses[:, 0].sum()):,} of {self.info.n_docs:,} documents used, "
                 f"{left:,} cluster(s) left the pool ({int(counted.left_budget.sum()):,} at their token budget).")]
        self.sections.append(Section("schedule", "The schedule over training", text, figs))

    def _clips(self) -> dict[int, int]:
        """clip -> non-empty clusters with it (none without a clip); the plan's (law.parquet's last stage) when read."""
        sched, plan = self.sched, self.counted.plan if self.counted is not None else None
        if plan is not None and plan.source.endswith("law.parquet"):
            if plan.clip is None:
                return {}
            values, counts = np.unique(plan.clip[(self.sizes > 0) & (plan.clip > 0)], return_counts=True)
            return {int(v): int(n) for v, n in zip(values, counts)}
        if sched is None or sched.sampler != "clusterclip" or sched.max_repeats is None:
            return {}
        if sched.cluster_max_repeats is None:
            return {int(sched.max_repeats): int(np.count_nonzero(self.sizes))}
        values, counts = np.unique(np.asarray(sched.cluster_max_repeats)[self.sizes > 0], return_counts=True)
        return {int(v): int(n) for v, n in zip(values, counts)}

    # ---- --group-by
    def _group_section(self) -> None:
        groups = self.groups
        if groups is None:
            return
        from .group_page import group_figures, group_table

        counted = self.counted
        self.tables.append(group_table(groups, counted, self.doc_labels, self.sizes))
        if counted is not None:
            figs, plotted = group_figures(groups, counted, self.doc_labels, self.sizes)
            self.plotted.update(plotted)
            self.sections.append(Section("groups", f"By {groups.column}", [
                f"Documents grouped by {groups.column} ({groups.n:,} groups); a sample counts for its document's "
                f"group, and what the law asks of a cluster is spread evenly over its documents."], figs))

    # ---- the mixture certificate
    def _certificate_section(self) -> None:
        counted = self.counted
        if counted is None:
            return
        self.certificate = cert = certificate(counted, self.info)
        lines = format_certificate(cert)
        text = [lines[1], lines[2]] + [line for line in lines if line.startswith(("per tenth", "stage ",
                                                                                  "documents by uses", "largest gap"))]
        text.append("Computed from (sha256): " + "; ".join(f"{name} {digest[:16]}…"
                                                          for name, digest in cert["computed_from"].items()))
        text.append("The full certificate (per cluster and per tenth, planned and got) is report.json's certificate "
                    "and `clusterclip clusters CL --schedule SCHED --certificate [--json]`.")
        png, self.plotted["certificate"] = training.certificate_panel(cert)
        figs = [Figure("certificate", png, "planned and got per cluster and tenth",
                       "Effective epochs per cluster (samples over documents) and, per tenth of the schedule, each "
                       "cluster's tokens (samples without a tokenizer) over what its law planned.")]
        if cert.get("stages"):  # a staged or continued schedule: each stage against its own law
            png, self.plotted["stages"] = training.stages_panel(cert)
            figs.append(Figure("stages", png, "planned and got per cluster and stage",
                               "Per stage, each cluster's tokens (samples without a tokenizer) over what that stage's "
                               "law (law.parquet) planned."))
        self.sections.append(Section("certificate", "Mixture certificate", text, figs))

    # ---- map of the centroids
    def _map_section(self) -> None:
        keywords = {r.cluster: r.keywords for r in self.table.rows}
        map_labels = {c: f"{c}: {', '.join(kw[:2])}" if kw else str(c) for c, kw in keywords.items()}
        png, self.plotted["centroid_map"] = figures.centroid_map(self.info.centroids, self.sizes, map_labels,
                                                                 method=self.s.map, seed=self.s.seed)
        self.sections.append(Section("map", "Map of the clusters", [
            ("Each disc is a cluster centroid projected to two dimensions; nearby discs are clusters of similar "
             "documents. The largest clusters are labelled with their id and first keywords.")],
            [Figure("centroid_map", png, "map of the centroids",
                    f"Centroids ({self.plotted['centroid_map']['method']}).")]))

    def _summary(self) -> list[str]:
        info, sched = self.info, self.sched
        summary = [
            (f"{info.n_docs:,} documents in {info.k:,} clusters ({self.empty} empty); mean similarity to the centroid "
             f"{info.overall_mean_similarity:.4f}"),
            f"embeddings: {self.emb_dir} (encoder {self.embed.encoder}, model {self.embed.model})",
            f"clusters: {self.cl_dir}",
        ]
        if sched is not None:
            summary.append(f"schedule: {self.sched_dir} ({sched.sampler}, {sched.samples:,} samples"
                           + (f", {sched.tokens:,} tokens" if sched.has_tokens and sched.tokens is not None else "")
                           + (f", max_repeats {sched.max_repeats}" if sched.max_repeats is not None else "")
                           + (f", balance {sched.balance}" if sched.balance != "samples" else "")
                           + ")")
        return summary

    def _table_note(self) -> str:
        shown, k, table = self.shown, self.info.k, self.table
        return (
            f"Largest first{'' if len(shown) == k else f'; the {len(shown):,} largest of {k:,} clusters'}. Keywords: "
            f"the terms most specific to the cluster (TF-IDF) in a seeded sample of up to "
            f"{table.sample_docs_per_cluster} documents per cluster ({table.sampled_docs:,} in all). Nearest: the "
            f"documents most similar to the centroid; edge: the least similar ones."
        )

    def _schedule_columns(self) -> ScheduleColumns | None:
        counted, sched, token_shares = self.counted, self.sched, self.token_shares
        if counted is None or sched is None:
            return None
        tl, shown = counted.timeline, self.shown.tolist()
        exits = counted.exit_position
        plan, explained = counted.plan, counted.explained
        return ScheduleColumns(
            samples={c: int(tl.cluster_samples[c]) for c in shown},
            share={c: float(self.shares["schedule"][c]) for c in shown},
            exit_position={c: int(exits[c]) for c in shown},
            total=tl.samples,
            tokens=None if token_shares is None or sched.cluster_tokens is None
            else {c: int(sched.cluster_tokens[c]) for c in shown},
            token_share=None if token_shares is None else {c: float(token_shares["schedule"][c]) for c in shown},
            planned=None if plan is None else {c: float(plan.expected_samples[c]) for c in shown},
            why=None if explained is None else {c: explained.reason[c] for c in shown},
            second_use={c: int(tl.second_use[c]) for c in shown},
        )


def _compare_with_manifest(counted: Counted, sched: inputs.ScheduleInfo) -> list[str]:
    """Warnings where order.parquet and the schedule's manifest statistics disagree (none expected)."""
    tl = counted.timeline
    warnings = []
    if tl.cluster_samples.tolist() != list(sched.cluster_samples):
        warnings.append("order.parquet and manifest.json disagree on the samples per cluster; the figures "
                        "are drawn from order.parquet")
    tenths = tl.tenths(tl.part_samples) / np.maximum(np.diff(tl.sample_edges[:: tl.parts // 10]), 1)[:, None]
    if sched.balance_shares is not None and not np.allclose(
            tenths, np.asarray(sched.balance_shares, np.float64), atol=1e-6, rtol=0):
        warnings.append("order.parquet and manifest.json disagree on the balance over time; the figures are drawn "
                        "from order.parquet")
    tokens = tl.cluster_tokens
    if tokens is not None and sched.cluster_tokens is not None and tokens.tolist() != list(sched.cluster_tokens):
        warnings.append("order.parquet and manifest.json disagree on the tokens per cluster; the figures are drawn "
                        "from order.parquet")
    at_clip = int(counted.at_clip.sum())
    if sched.max_repeats is not None and sched.clusters_exhausted is not None and sched.clusters_exhausted != at_clip:
        warnings.append("order.parquet and manifest.json disagree on the clusters that left the pool")
    return warnings


def _finite(obj):
    """NaN/inf -> None, so report.json stays valid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
