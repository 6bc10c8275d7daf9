"""``build_report``: the HTML report of an embed + cluster (+ schedule) run.

Output directory (``out_dir``):

- ``index.html``: the page, self-contained (figures inlined as PNG data URIs);
- ``figures/*.png``: the same figures as files;
- ``report.json``: the numbers behind the page (every figure's plotted data and the table); with a
  schedule that counted tokens also ``token_shares`` (per cluster, each sampler's share of the tokens
  beside its share of the samples) and ``token_balance_over_time`` (token shares per tenth);
- ``manifest.json``: ``step: "report"``, settings, inputs (upstream manifest digests), outputs; written last.

The directory is written like every step's output (:class:`~clusterclip.artifacts.OutputDir`):
built beside the old report and replacing it at the end, never a directory clusterclip did not
make, never through a symbolic link, one run at a time; a report of other inputs or settings is
replaced only with ``overwrite``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import __version__
from ..artifacts import Job, OutputDir, build_manifest, dumps_json, upstream_record, write_bytes_atomic
from ..errors import InputError
from . import figures, inputs
from .html import Figure, ScheduleColumns, Section, render_page
from .mix import expected_shares, law_counts, scan_order, shares_of
from .settings import ReportSettings
from .table import add_schedule, cluster_table

STEP = "report"


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
    sample_docs, max_sample_docs, max_table_clusters = s.sample_docs, s.max_sample_docs, s.max_table_clusters
    max_repeats, seed, map_method = s.max_repeats, s.seed, s.map
    info = inputs.read_clusters(cl_dir)
    embed = inputs.read_embed(emb_dir)
    inputs.check_embed_matches(emb_dir, info)
    sched = inputs.read_schedule(sched_dir, info) if sched_dir is not None else None
    out = Path(out_dir)
    settings = s.record()
    upstream = {"embed": upstream_record(emb_dir, "embed"), "cluster": upstream_record(cl_dir, "cluster")}
    if sched_dir is not None:
        upstream["schedule"] = upstream_record(sched_dir, "schedule")
    inputs_dirs = tuple(Path(p) for p in (emb_dir, cl_dir, sched_dir) if p is not None)
    with OutputDir(out, Job(STEP, settings, upstream), overwrite=overwrite, inputs=inputs_dirs) as run:
        if run.state != "done":
            _build(run, info, embed, sched, emb_dir, cl_dir, sched_dir, settings, upstream, sample_docs=sample_docs,
                   max_sample_docs=max_sample_docs, max_table_clusters=max_table_clusters, max_repeats=max_repeats,
                   seed=seed, map_method=map_method)
    return out / "index.html"


def _build(run, info, embed, sched, emb_dir, cl_dir, sched_dir, settings, upstream, *, sample_docs, max_sample_docs,
           max_table_clusters, max_repeats, seed, map_method) -> None:
    out = run.build

    sizes = info.size
    shown = np.lexsort((np.arange(info.k), -sizes))[:max_table_clusters]
    table = cluster_table(info.directory, emb_dir, clusters=shown.tolist(), sample_docs=sample_docs,
                          max_sample_docs=max_sample_docs, seed=seed, cluster_info=info)
    if sched is not None:
        add_schedule(table, sched)
    keywords = {r.cluster: r.keywords for r in table.rows}

    warnings: list[str] = []
    sections: list[Section] = []
    plotted: dict[str, dict] = {}
    n_docs, k = info.n_docs, info.k
    empty = int(np.count_nonzero(sizes == 0))

    # ---- the mix: sizes and the share each sampler gives each cluster
    # the expected clusterclip mix: that of a clusterclip SCHED (its budget, clip and alpha), else one epoch
    like_sched = sched is not None and sched.sampler == "clusterclip"
    clip = sched.max_repeats if like_sched else max_repeats
    budget = sched.samples if like_sched else n_docs
    alpha = sched.alpha if like_sched else 0.0
    shares = {
        "random": expected_shares(sizes, sampler="random", samples=max(n_docs, 1)),
        "uniform": expected_shares(sizes, sampler="uniform", samples=max(n_docs, 1)),
        "clusterclip": expected_shares(sizes, sampler="clusterclip", samples=budget, max_repeats=clip, alpha=alpha),
    }
    budget_text = f"{budget:,} samples" if budget != n_docs else "one epoch"
    labels = {
        "random": "random (share ∝ size)",
        "uniform": f"uniform (1/{k - empty} each)",
        "clusterclip": f"clusterclip, expected ({budget_text}, max_repeats {clip}"
                       + (f", alpha {alpha:g}" if alpha else "") + ")",
    }
    scan = None
    if sched is not None:
        sched_clip = sched.max_repeats
        try:
            # per-cluster clips and semantic duplicates (never drawn) decide when a cluster has left the pool
            clips = sched.cluster_max_repeats if sched.cluster_max_repeats is not None and sched_clip else sched_clip
            drawable = sizes if sched.cluster_dedup_removed is None else \
                sizes - np.asarray(sched.cluster_dedup_removed[: len(sizes)], np.int64)
            scan = scan_order(inputs.iter_order(sched_dir), samples=sched.samples, sizes=drawable,
                              n_docs=n_docs, max_repeats=clips, n_bins=sched.n_bins)
        except ValueError as e:
            raise InputError(f"{sched_dir}: {e}; rerun `clusterclip schedule --overwrite`") from None
        shares["schedule"] = scan.cluster_samples / max(scan.samples, 1)
        labels["schedule"] = f"this schedule ({sched.sampler}, {scan.samples:,} samples, actual)"
        warnings += _compare_with_manifest(scan, sched)
    mean_tokens, estimated = _mean_tokens(sched) if sched is not None else (None, [])
    law_text = None
    if sched is not None and sched.extended:
        law_text = _law(sched, sizes, mean_tokens, shares, labels)
    png, plotted["sizes_and_shares"] = figures.sizes_and_shares(sizes, shares, labels)
    mix_text = [
        ("Top: documents per cluster, largest first. Bottom: the share of the training samples each cluster gets: "
        "random sampling follows the sizes, uniform gives every cluster the same share, clusterclip gives every "
        "cluster the same share until a cluster's documents have all been used max_repeats times (the clip), "
        "so small clusters get at most max_repeats × their size."),
        ("The expected clusterclip share needs only the cluster sizes (clusters grow at the same rate until they "
        "reach their clip); a schedule's actual share, when given, is counted from its order.parquet."),
    ]
    if empty:
        mix_text.append(f"{empty} empty cluster(s) are left out of the log-scale plots.")
    if law_text:
        mix_text.append(law_text)
    sections.append(Section("mix", "Cluster sizes and the training mix", mix_text,
                            [Figure("sizes_and_shares", png, "cluster sizes and shares per sampler",
                                    "Cluster sizes (log scale) and the share of each cluster under each sampler.")]))

    # ---- the same in tokens, when the schedule counted them
    token_shares = None
    if mean_tokens is not None:
        # expected: each sampler's samples times the cluster's mean sample length; actual: the manifest's count
        token_shares = {name: shares_of(share * mean_tokens) for name, share in shares.items() if name != "schedule"}
        token_shares["schedule"] = shares_of(np.asarray(sched.cluster_tokens, np.float64))
        png, plotted["token_shares"] = figures.token_shares(sizes, mean_tokens, shares, token_shares, labels)
        plotted["token_shares"]["estimated_mean_tokens"] = estimated
        token_figs = [Figure("token_shares", png, "share of the tokens per cluster and sampler",
                             "Mean sample length of each cluster and the share of the training tokens each "
                             "cluster gets under each sampler.")]
        token_text = [
            (f"Token shares: this schedule's are its own counts ({sched.tokens:,} tokens, manifest.json "
             "cluster_tokens); the expected ones are each sampler's expected samples times the cluster's mean "
             "sample length (manifest.json cluster_mean_tokens, delimiters included). A cluster of long documents "
             "gets a larger share of the tokens than of the samples.")]
        if estimated:
            token_text.append(f"{len(estimated):,} cluster(s) had no tokenized document; their mean length is "
                              "taken as the schedule's mean sample length.")
        if sched.balance_tokens is not None and scan is not None:
            png, plotted["token_balance_over_time"] = figures.token_balance_over_time(sched.balance_tokens, scan)
            token_figs.append(Figure("token_balance_over_time", png, "share of the tokens over training",
                                     "Each cluster's share of the tokens in each tenth of the schedule (manifest.json "
                                     "balance_tokens), and the balance of each tenth in tokens and in samples."))
            if sched.balance_tokens.get("shares") is None:
                token_text.append("The manifest lists the per-cluster token shares of each tenth only for up to 100 "
                                  "clusters; for more, the figure shows the largest and smallest share per tenth.")
        sections.append(Section("tokens", "The training mix in tokens", token_text, token_figs))

    # ---- the schedule over time
    if scan is not None:
        sched_figs = []
        png, plotted["balance_over_time"] = figures.balance_over_time(scan, sched.sampler)
        sched_figs.append(Figure("balance_over_time", png, "share of each cluster over training",
                                 "Each cluster's share in each tenth of the schedule (as manifest.json's balance "
                                 "statistics), and the balance of each tenth."))
        png, plotted["repetition"] = figures.repetition_histogram(scan.docs_by_uses, sched_clip)
        sched_figs.append(Figure("repetition", png, "repetition histogram",
                                 "Documents by the number of times the schedule uses them."))
        if sched_clip is not None:
            png, plotted["pool_exits"] = figures.pool_exits(scan)
            sched_figs.append(Figure("pool_exits", png, "clusters leaving the pool",
                                     "Clusters that left the pool, by the position of their last sample."))
        n_left = int(np.count_nonzero(scan.exit_position >= 0))
        text = [(f"{scan.samples:,} samples by the {sched.sampler} sampler from {sched_dir}; "
                f"{int(scan.docs_by_uses[1:].sum()):,} of {n_docs:,} documents used, "
                f"{n_left:,} cluster(s) left the pool.")]
        sections.append(Section("schedule", "The schedule over training", text, sched_figs))

    # ---- map of the centroids
    map_labels = {c: f"{c}: {', '.join(kw[:2])}" if kw else str(c) for c, kw in keywords.items()}
    png, plotted["centroid_map"] = figures.centroid_map(info.centroids, sizes, map_labels, method=map_method,
                                                        seed=seed)
    sections.append(Section("map", "Map of the clusters", [
        ("Each disc is a cluster centroid projected to two dimensions; nearby discs are clusters of similar "
        "documents. The largest clusters are labelled with their id and first keywords.")],
        [Figure("centroid_map", png, "map of the centroids", f"Centroids ({plotted['centroid_map']['method']}).")]))

    summary = [
        (f"{n_docs:,} documents in {k:,} clusters ({empty} empty); mean similarity to the centroid "
        f"{info.overall_mean_similarity:.4f}"),
        f"embeddings: {emb_dir} (model {embed.model})",
        f"clusters: {cl_dir}",
    ]
    if sched is not None:
        summary.append(f"schedule: {sched_dir} ({sched.sampler}, {sched.samples:,} samples"
                       + (f", {sched.tokens:,} tokens" if sched.has_tokens else "")
                       + (f", max_repeats {sched.max_repeats}" if sched.max_repeats is not None else "")
                       + (f", balance {sched.balance}" if sched.balance != "samples" else "")
                       + ")")
    table_note = (
        f"Largest first{'' if len(shown) == k else f'; the {len(shown):,} largest of {k:,} clusters'}. Keywords: "
        f"the terms most specific to the cluster (TF-IDF) in a seeded sample of up to "
        f"{table.sample_docs_per_cluster} documents per cluster ({table.sampled_docs:,} in all). Nearest: the "
        f"documents most similar to the centroid; edge: the least similar ones."
    )
    schedule_columns = None
    if scan is not None:
        schedule_columns = ScheduleColumns(
            samples={c: int(scan.cluster_samples[c]) for c in shown.tolist()},
            share={c: float(shares["schedule"][c]) for c in shown.tolist()},
            exit_position={c: int(scan.exit_position[c]) for c in shown.tolist()},
            total=scan.samples,
            tokens=None if token_shares is None else {c: int(sched.cluster_tokens[c]) for c in shown.tolist()},
            token_share=None if token_shares is None else {c: float(token_shares["schedule"][c])
                                                           for c in shown.tolist()},
        )
    page = render_page(title="clusterclip report", summary=summary, warnings=warnings, sections=sections,
                       rows=table.rows, table_note=table_note, schedule=schedule_columns,
                       footer=f"Written by clusterclip {__version__} (`clusterclip report`).")

    # ---- write: figures, page, data into the build; the commit writes the manifest last
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    names = []
    for section in sections:
        for f in section.figures:
            write_bytes_atomic(fig_dir / f"{f.name}.png", f.png)
            names.append(f"figures/{f.name}.png")
    write_bytes_atomic(out / "index.html", page.encode("utf-8"))
    data = {"tool": "clusterclip", "version": __version__, "warnings": warnings, "figures": plotted,
            "table": table.to_json()}
    write_bytes_atomic(out / "report.json", dumps_json(_finite(data)).encode("utf-8"))
    names += ["index.html", "report.json"]
    statistics = {"n_docs": n_docs, "k": k, "clusters_in_table": len(shown), "sampled_docs": table.sampled_docs,
                  "warnings": warnings}
    run.commit(build_manifest(STEP, settings, upstream, run.records(names), statistics))


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
