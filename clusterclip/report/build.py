"""``build_report``: the HTML report of an embed + cluster (+ schedule) run.

Output directory (``out_dir``):

- ``index.html``: the page, self-contained (figures inlined as PNG data URIs);
- ``figures/*.png``: the same figures as files;
- ``report.json``: the numbers behind the page (every figure's plotted data and the table); with a
  schedule that counted tokens also ``token_shares`` (per cluster, each sampler's share of the tokens
  beside its share of the samples) and ``token_balance_over_time`` (token shares per tenth);
- ``manifest.json``: ``step: "report"``, settings, inputs (upstream manifest digests), outputs; written last.

The directory is written like every step's output (:class:`ReportStep`, run by the one driver
:func:`clusterclip.steps.run_step`): built beside the old report and replacing it at the end, never a
directory clusterclip did not make, never through a symbolic link, one run at a time; a report of
other inputs or settings is replaced only with ``overwrite``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import __version__
from ..artifacts import dumps_json, write_bytes_atomic
from ..cluster.directory import ClusterDir
from ..embed.directory import EmbedDir
from ..errors import InputError
from ..schedule.directory import ScheduleDir
from ..steps import Outcome, Plan, Run, Step, run_step
from . import figures, inputs, proxy
from .html import Figure, ScheduleColumns, Section, render_page
from .mix import expected_shares, law_counts, scan_order, shares_of
from .settings import ReportSettings
from .table import add_schedule, cluster_table


class ReportStep(Step[ReportSettings]):
    """The HTML report of ``emb`` + ``cl`` (+ a schedule ``sched``)."""

    name = "report"
    settings_class = ReportSettings

    def __init__(self, emb: EmbedDir, cl: ClusterDir, sched: ScheduleDir | None, settings: ReportSettings, *,
                 shown_as: tuple | None = None, **kwargs):
        super().__init__(settings, **kwargs)
        self.emb, self.cl, self.sched = emb, cl, sched
        self.proxies = proxy.ProxyInputs.open(settings.runs, settings.fit)  #: --runs / --fit (None: none)
        #: the directories as the user named them (the page shows them so)
        self.shown_as = shown_as or (emb.path, cl.path, sched.path if sched is not None else None)
        self.info: inputs.ClusterInfo | None = None
        self.embed: inputs.EmbedInfo | None = None
        self.sched_info: inputs.ScheduleInfo | None = None

    @classmethod
    def open(cls, emb_dir, cl_dir, sched_dir, settings: ReportSettings, **kwargs) -> ReportStep:
        cl = ClusterDir(cl_dir)
        emb = EmbedDir(emb_dir)
        sched = ScheduleDir(sched_dir) if sched_dir is not None else None
        return cls(emb, cl, sched, settings, shown_as=(emb_dir, cl_dir, sched_dir), **kwargs)

    def upstream(self) -> dict:
        found = {"embed": self.emb, "cluster": self.cl}
        if self.sched is not None:
            found["schedule"] = self.sched
        if self.proxies is not None:
            found.update(self.proxies.upstream())
        return found

    def plan(self, out: Path, overwrite: bool) -> Plan:
        self.info = inputs.read_clusters(self.cl.path)
        self.embed = inputs.read_embed(self.emb.path)
        inputs.check_embed_matches(self.emb.path, self.info)
        self.sched_info = inputs.read_schedule(self.sched.path, self.info) if self.sched is not None else None
        if self.proxies is not None:
            self.proxies.check(self.cl)
        return super().plan(out, overwrite)

    def run(self, run: Run) -> Outcome:
        assert self.info is not None and self.embed is not None
        page = _Page(self.settings, self.info, self.embed, self.sched_info, *self.shown_as)
        page.proxies = self.proxies
        return page.write(run.build)

    def summary(self, result) -> str:
        index = result.out / "index.html"
        return f"report: {index} in {result.seconds:.1f}s; open {index.resolve().as_uri()} in a browser"

    def done_line(self, result) -> str:
        return self.summary(result)


STEP = ReportStep


def build_report(
    emb_dir: str | Path,
    cl_dir: str | Path,
    sched_dir: str | Path | None = None,
    out_dir: str | Path = "report",
    settings: ReportSettings | None = None,
    *,
    overwrite: bool = False,
    **options,
) -> Path:
    """Write the report of ``emb_dir`` + ``cl_dir`` (+ ``sched_dir``) into ``out_dir``; return ``index.html``'s path.

    ``settings`` (a :class:`ReportSettings`), or its fields as keyword arguments
    (``sample_docs``, ``max_sample_docs``, ``max_table_clusters``, ``max_repeats``, ``seed``,
    ``map`` or ``map_method``). ``max_repeats``: the clip of the expected ``clusterclip`` mix
    drawn when no schedule is given (one epoch); with a ``clusterclip`` schedule its own
    settings are used. ``max_table_clusters``: the table lists at most this many clusters.
    """
    if "map_method" in options:
        options["map"] = options.pop("map_method")
    s = settings if settings is not None else ReportSettings.build(options)
    result = run_step(ReportStep.open(emb_dir, cl_dir, sched_dir, s), out_dir, overwrite=overwrite)
    return result.out / "index.html"


class _Page:
    """The report being built: its sections (text and figures), the numbers behind them, its warnings."""

    def __init__(self, s: ReportSettings, info: inputs.ClusterInfo, embed: inputs.EmbedInfo,
                 sched: inputs.ScheduleInfo | None, emb_dir, cl_dir, sched_dir):
        self.s, self.info, self.embed, self.sched = s, info, embed, sched
        self.emb_dir, self.cl_dir, self.sched_dir = emb_dir, cl_dir, sched_dir
        self.warnings: list[str] = []
        self.sections: list[Section] = []
        self.plotted: dict[str, dict] = {}
        self.sizes = info.size
        self.empty = int(np.count_nonzero(self.sizes == 0))
        self.shown = np.lexsort((np.arange(info.k), -self.sizes))[: s.max_table_clusters]
        self.table = cluster_table(info.directory, emb_dir, clusters=self.shown.tolist(), sample_docs=s.sample_docs,
                                   max_sample_docs=s.max_sample_docs, seed=s.seed, cluster_info=info)
        if sched is not None:
            add_schedule(self.table, sched)
        self.scan = None
        self.shares: dict[str, np.ndarray] = {}
        self.labels: dict[str, str] = {}
        self.token_shares: dict[str, np.ndarray] | None = None
        self.proxies: proxy.ProxyInputs | None = None

    def write(self, out: Path) -> Outcome:
        self._mix_section()
        self._tokens_section()
        self._schedule_section()
        if self.proxies is not None:
            self.sections.append(self.proxies.section(self.sizes, self.plotted))
        self._map_section()
        page = render_page(title="clusterclip report", summary=self._summary(), warnings=self.warnings,
                           sections=self.sections, rows=self.table.rows, table_note=self._table_note(),
                           schedule=self._schedule_columns(),
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
        write_bytes_atomic(out / "report.json", dumps_json(_finite(data)).encode("utf-8"))
        names += ["index.html", "report.json"]
        statistics = {"n_docs": self.info.n_docs, "k": self.info.k, "clusters_in_table": len(self.shown),
                      "sampled_docs": self.table.sampled_docs, "warnings": self.warnings}
        return Outcome(names, statistics)

    # ---- the mix: sizes and the share each sampler gives each cluster
    def _mix_section(self) -> None:
        sizes, sched, n_docs, k = self.sizes, self.sched, self.info.n_docs, self.info.k
        # the expected clusterclip mix: that of a clusterclip SCHED (its budget, clip and alpha), else one epoch
        like_sched = sched is not None and sched.sampler == "clusterclip"
        clip = sched.max_repeats if like_sched else self.s.max_repeats
        budget = sched.samples if like_sched else n_docs
        alpha = sched.alpha if like_sched else 0.0
        shares = self.shares
        shares.update({
            "random": expected_shares(sizes, sampler="random", samples=max(n_docs, 1)),
            "uniform": expected_shares(sizes, sampler="uniform", samples=max(n_docs, 1)),
            "clusterclip": expected_shares(sizes, sampler="clusterclip", samples=budget, max_repeats=clip, alpha=alpha),
        })
        budget_text = f"{budget:,} samples" if budget != n_docs else "one epoch"
        labels = self.labels
        labels.update({
            "random": "random (share ∝ size)",
            "uniform": f"uniform (1/{k - self.empty} each)",
            "clusterclip": f"clusterclip, expected ({budget_text}, max_repeats {clip}"
                           + (f", alpha {alpha:g}" if alpha else "") + ")",
        })
        if sched is not None:
            self._scan(sched)
        self.mean_tokens, self.estimated = _mean_tokens(sched) if sched is not None else (None, [])
        law_text = None
        if sched is not None and sched.extended:
            law_text = _law(sched, sizes, self.mean_tokens, shares, labels)
        png, self.plotted["sizes_and_shares"] = figures.sizes_and_shares(sizes, shares, labels)
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

    def _scan(self, sched: inputs.ScheduleInfo) -> None:
        """The schedule's actual shares, counted from its order.parquet."""
        sizes = self.sizes
        try:
            # per-cluster clips and semantic duplicates (never drawn) decide when a cluster has left the pool
            clips = sched.cluster_max_repeats if sched.cluster_max_repeats is not None and sched.max_repeats \
                else sched.max_repeats
            drawable = sizes if sched.cluster_dedup_removed is None else \
                sizes - np.asarray(sched.cluster_dedup_removed[: len(sizes)], np.int64)
            self.scan = scan_order(inputs.iter_order(self.sched_dir), samples=sched.samples, sizes=drawable,
                                   n_docs=self.info.n_docs, max_repeats=clips, n_bins=sched.n_bins)
        except ValueError as e:
            raise InputError(f"{self.sched_dir}: {e}; rerun `clusterclip schedule --overwrite`") from None
        self.shares["schedule"] = self.scan.cluster_samples / max(self.scan.samples, 1)
        self.labels["schedule"] = f"this schedule ({sched.sampler}, {self.scan.samples:,} samples, actual)"
        self.warnings += _compare_with_manifest(self.scan, sched)

    # ---- the same in tokens, when the schedule counted them
    def _tokens_section(self) -> None:
        sched, mean_tokens, shares, labels = self.sched, self.mean_tokens, self.shares, self.labels
        if mean_tokens is None or sched is None:
            return
        # expected: each sampler's samples times the cluster's mean sample length; actual: the manifest's count
        token_shares = {name: shares_of(share * mean_tokens) for name, share in shares.items() if name != "schedule"}
        token_shares["schedule"] = shares_of(np.asarray(sched.cluster_tokens, np.float64))
        self.token_shares = token_shares
        png, self.plotted["token_shares"] = figures.token_shares(self.sizes, mean_tokens, shares, token_shares, labels)
        self.plotted["token_shares"]["estimated_mean_tokens"] = self.estimated
        token_figs = [Figure("token_shares", png, "share of the tokens per cluster and sampler",
                             "Mean sample length of each cluster and the share of the training tokens each "
                             "cluster gets under each sampler.")]
        token_text = [
            (f"Token shares: this schedule's are its own counts ({sched.tokens:,} tokens, manifest.json "
             "cluster_tokens); the expected ones are each sampler's expected samples times the cluster's mean "
             "sample length (manifest.json cluster_mean_tokens, delimiters included). A cluster of long documents "
             "gets a larger share of the tokens than of the samples.")]
        if self.estimated:
            token_text.append(f"{len(self.estimated):,} cluster(s) had no tokenized document; their mean length is "
                              "taken as the schedule's mean sample length.")
        if sched.balance_tokens is not None and self.scan is not None:
            png, self.plotted["token_balance_over_time"] = figures.token_balance_over_time(sched.balance_tokens,
                                                                                           self.scan)
            token_figs.append(Figure("token_balance_over_time", png, "share of the tokens over training",
                                     "Each cluster's share of the tokens in each tenth of the schedule (manifest.json "
                                     "balance_tokens), and the balance of each tenth in tokens and in samples."))
            if sched.balance_tokens.get("shares") is None:
                token_text.append("The manifest lists the per-cluster token shares of each tenth only for up to 100 "
                                  "clusters; for more, the figure shows the largest and smallest share per tenth.")
        self.sections.append(Section("tokens", "The training mix in tokens", token_text, token_figs))

    # ---- the schedule over time
    def _schedule_section(self) -> None:
        scan, sched = self.scan, self.sched
        if scan is None or sched is None:
            return
        sched_clip = sched.max_repeats
        sched_figs = []
        png, self.plotted["balance_over_time"] = figures.balance_over_time(scan, sched.sampler)
        sched_figs.append(Figure("balance_over_time", png, "share of each cluster over training",
                                 "Each cluster's share in each tenth of the schedule (as manifest.json's balance "
                                 "statistics), and the balance of each tenth."))
        png, self.plotted["repetition"] = figures.repetition_histogram(scan.docs_by_uses, sched_clip)
        sched_figs.append(Figure("repetition", png, "repetition histogram",
                                 "Documents by the number of times the schedule uses them."))
        if sched_clip is not None:
            png, self.plotted["pool_exits"] = figures.pool_exits(scan)
            sched_figs.append(Figure("pool_exits", png, "clusters leaving the pool",
                                     "Clusters that left the pool, by the position of their last sample."))
        n_left = int(np.count_nonzero(scan.exit_position >= 0))
        text = [(f"{scan.samples:,} samples by the {sched.sampler} sampler from {self.sched_dir}; "
                 f"{int(scan.docs_by_uses[1:].sum()):,} of {self.info.n_docs:,} documents used, "
                 f"{n_left:,} cluster(s) left the pool.")]
        self.sections.append(Section("schedule", "The schedule over training", text, sched_figs))

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
                           + (f", {sched.tokens:,} tokens" if sched.has_tokens else "")
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
        scan, sched, token_shares = self.scan, self.sched, self.token_shares
        if scan is None or sched is None:
            return None
        shown = self.shown.tolist()
        return ScheduleColumns(
            samples={c: int(scan.cluster_samples[c]) for c in shown},
            share={c: float(self.shares["schedule"][c]) for c in shown},
            exit_position={c: int(scan.exit_position[c]) for c in shown},
            total=scan.samples,
            tokens=None if token_shares is None else {c: int(sched.cluster_tokens[c]) for c in shown},
            token_share=None if token_shares is None else {c: float(token_shares["schedule"][c]) for c in shown},
        )


def _mean_tokens(sched: inputs.ScheduleInfo) -> tuple[np.ndarray | None, list[int]]:
    """Mean sample length per cluster (float64 ``[K]``) from the schedule's manifest, and the clusters whose
    mean is unknown (none of their documents was tokenized), which get the schedule's mean sample length.
    ``(None, [])`` when the schedule counted no tokens (a dry run without a tokenizer)."""
    if not sched.has_tokens or sched.cluster_mean_tokens is None:
        return None, []
    recorded = sched.cluster_mean_tokens
    fallback = sched.tokens / max(sched.samples, 1)
    estimated = [c for c, m in enumerate(recorded) if m is None]
    return np.asarray([fallback if m is None else float(m) for m in recorded], np.float64), estimated


def _law(sched: inputs.ScheduleInfo, sizes: np.ndarray, mean_tokens, shares: dict, labels: dict) -> str | None:
    """Add the expected shares under the schedule's own law (``--balance tokens``, ``--weights``, per-cluster
    clips, ``--budget-tokens``, dedup) to ``shares`` as ``law``; return a sentence for the page."""
    if sched.law_missing is not None:
        return f"The expected shares under this schedule's weights are not drawn: {sched.law_missing}."
    needs_tokens = sched.balance == "tokens" or sched.cluster_token_budget is not None
    if needs_tokens and mean_tokens is None:
        return None
    sizes = np.asarray(sizes, np.int64)
    if sched.cluster_dedup_removed is not None:  # semantic duplicates are never drawn
        sizes = sizes - np.asarray(sched.cluster_dedup_removed[: len(sizes)], np.int64)
    clip = sched.cluster_max_repeats if sched.cluster_max_repeats is not None else sched.max_repeats
    counts = law_counts(sizes, mean_tokens if mean_tokens is not None else np.ones(len(sizes)),
                        sampler=sched.sampler, samples=sched.samples, max_repeats=clip, alpha=sched.alpha,
                        balance=sched.balance, multipliers=sched.multipliers,
                        token_budget=sched.cluster_token_budget)
    shares["law"] = shares_of(counts)
    what = [f"--balance {sched.balance}"] + (["--weights"] if sched.multipliers is not None else []) \
        + (["per-cluster clips"] if sched.cluster_max_repeats is not None else []) \
        + (["--budget-tokens"] if sched.cluster_token_budget is not None else []) \
        + (["dedup"] if sched.cluster_dedup_removed is not None else [])
    labels["law"] = f"{sched.sampler} under this schedule's law, expected ({', '.join(what)})"
    return ("The expected shares under this schedule's law use its weights (size, or tokens with --balance tokens, "
            "to the power alpha, times its --weights), its per-cluster clips and token budgets: each cluster is "
            "drawn in proportion to its weight (divided by its mean sample length when balancing tokens) until it "
            "reaches its clip or budget.")


def _compare_with_manifest(scan, sched: inputs.ScheduleInfo) -> list[str]:
    """Warnings where order.parquet and the schedule's manifest statistics disagree (none expected)."""
    warnings = []
    if list(scan.cluster_samples) != sched.cluster_samples:
        warnings.append("order.parquet and manifest.json disagree on the samples per cluster; the figures "
                        "are drawn from order.parquet")
    if sched.balance_shares is not None and not np.allclose(
            scan.bin_shares, np.asarray(sched.balance_shares, np.float64), atol=1e-6, rtol=0):
        warnings.append("order.parquet and manifest.json disagree on the balance over time; the figures are drawn "
                        "from order.parquet")
    left = int(np.count_nonzero(scan.exit_position >= 0))
    if sched.max_repeats is not None and sched.clusters_exhausted is not None and sched.clusters_exhausted != left:
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
