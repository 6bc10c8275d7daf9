"""Statistics every schedule reports (SPEC §1.3), as plain JSON-serialisable values.

Balance over time: the schedule is cut into ``n_bins`` contiguous parts of (nearly) equal length
(tenths by default). For every part the statistics hold the number of clusters drawn in it, the
largest and the smallest share among those drawn, and the normalised entropy of the shares
(``H / log(n_clusters)``: 1 when all clusters are drawn equally, 0 when one cluster takes all).
With at most :data:`MAX_LISTED_CLUSTERS` clusters they also hold every cluster's share per part;
beyond that the summary alone keeps the manifest small.
"""

from __future__ import annotations

import numpy as np

from .sampling import Schedule

MAX_LISTED_CLUSTERS = 100
#: below this median cluster size (documents) k is large for N: the clip and the balance act on
#: clusters of a few documents, and the summary says so
SMALL_MEDIAN_CLUSTER = 5


def schedule_statistics(
    schedule: Schedule,
    n_docs: int,
    n_clusters: int,
    lengths=None,
    n_bins: int = 10,
    *,
    labels=None,
    max_repeats=None,
    lengths_known=None,
    keep=None,
) -> dict:
    """Summarise a schedule.

    Parameters
    ----------
    schedule : Schedule
        The planned order.
    n_docs, n_clusters : int
        Corpus size and number of clusters (ids ``0..n_clusters-1``).
    lengths : array_like of int, optional
        Tokens per document (one sample of it); adds ``tokens``.
    n_bins : int
        Parts of the schedule for the balance over time (tenths by default).
    labels : array_like of int, optional
        Cluster of every document; with ``max_repeats`` it lets ``clusters_exhausted`` be counted.
    max_repeats : int or array_like of int, optional
        The clip of a ``clusterclip`` schedule (one per cluster with per-cluster clips).
    lengths_known : array_like of bool, optional
        Documents whose length is known (tokenized); default: all, when ``lengths`` is given.
    keep : array_like of bool, optional
        Documents the sampler could draw (False: left out as semantic duplicates).

    Returns
    -------
    dict
        ``samples``, ``tokens`` (with ``lengths``), ``unique_docs_used``, ``docs_never_used``,
        ``cluster_samples`` (list of ``n_clusters`` counts), ``max_repeat_count`` and
        ``mean_repeat_count`` (times used, over the used documents), ``exhausted``,
        ``clusters_exhausted`` (clusters whose every document was used ``max_repeats`` times;
        all non-empty clusters when the pool is exhausted; None when it cannot be known without
        ``labels`` and ``max_repeats``) and ``balance`` (see the module docstring). With
        ``lengths`` also, in tokens: ``cluster_tokens`` (tokens emitted per cluster),
        ``balance_tokens`` (as ``balance``, shares of the tokens of each part) and
        ``cluster_mean_tokens`` (mean sample length of each cluster's documents whose length is
        known; None where none is). With per-cluster token budgets ``cluster_token_budget`` and
        ``clusters_short_of_budget``; with ``keep`` the documents left out (``dedup_removed``,
        ``cluster_dedup_removed``); with ``labels`` ``warnings`` (k large for N).
    """
    doc_id = np.asarray(schedule.doc_id)
    cluster = np.asarray(schedule.cluster)
    uses = np.bincount(doc_id, minlength=n_docs)
    used = uses > 0
    n_used = int(used.sum())
    cluster_samples = np.bincount(cluster, minlength=n_clusters)
    stats: dict = {"samples": len(schedule)}
    if lengths is not None:
        stats["tokens"] = int(np.asarray(lengths, np.int64)[doc_id].sum())
    stats.update(
        unique_docs_used=n_used,
        docs_never_used=int(n_docs - n_used),
        cluster_samples=cluster_samples.tolist(),
        max_repeat_count=int(uses.max()) if n_used else 0,
        mean_repeat_count=float(uses[used].mean()) if n_used else 0.0,
        exhausted=bool(schedule.exhausted),
        clusters_exhausted=_clusters_exhausted(schedule, uses, n_clusters, labels, max_repeats, keep),
        balance=_balance(cluster, n_clusters, n_bins),
    )
    if lengths is not None:
        lengths = np.asarray(lengths, np.int64)
        sample_tokens = lengths[doc_id]
        cluster_tokens = np.bincount(cluster, weights=sample_tokens, minlength=n_clusters)
        stats["cluster_tokens"] = [int(x) for x in cluster_tokens]
        stats["balance_tokens"] = _balance(cluster, n_clusters, n_bins, sample_tokens)
        if labels is not None:
            labels_arr = np.asarray(labels)
            known = np.ones(len(lengths), bool) if lengths_known is None else np.asarray(lengths_known, bool)
            count = np.bincount(labels_arr[known], minlength=n_clusters)
            total = np.bincount(labels_arr[known], weights=lengths[known], minlength=n_clusters)
            stats["cluster_mean_tokens"] = [round(float(t / c), 3) if c else None for t, c in zip(total, count)]
    if schedule.cluster_budget is not None:
        budget = np.asarray(schedule.cluster_budget, np.int64)[:n_clusters]
        stats["cluster_token_budget"] = budget.tolist()
        if lengths is not None:
            short = np.asarray(stats["cluster_tokens"][: len(budget)]) < budget
            stats["clusters_short_of_budget"] = int(short.sum())
    if keep is not None and labels is not None:
        removed = np.bincount(np.asarray(labels)[~np.asarray(keep, bool)], minlength=n_clusters)
        stats["dedup_removed"] = int(removed.sum())
        stats["cluster_dedup_removed"] = removed.tolist()
    if labels is not None:
        stats["warnings"] = _warnings(np.bincount(np.asarray(labels), minlength=n_clusters), n_docs)
    return stats


def stage_statistics(schedule: Schedule, n_clusters: int, lengths=None) -> list[dict]:
    """Per stage of a staged schedule: where it lies (``start``, ``stop``), its ``samples`` and
    ``cluster_samples``; with ``lengths`` its ``tokens`` and ``cluster_tokens`` (at most
    :data:`MAX_LISTED_CLUSTERS` clusters listed; beyond, the clusters drawn)."""
    out = []
    sample_tokens = None if lengths is None else np.asarray(lengths, np.int64)[np.asarray(schedule.doc_id)]
    for span in schedule.spans:
        part = np.asarray(schedule.cluster[span.start:span.stop])
        counts = np.bincount(part, minlength=n_clusters)
        entry: dict = {"start": span.start, "stop": span.stop, "samples": span.samples,
                       "clusters_drawn": int(np.count_nonzero(counts))}
        if n_clusters <= MAX_LISTED_CLUSTERS:
            entry["cluster_samples"] = counts.tolist()
        if sample_tokens is not None:
            tokens = np.bincount(part, weights=sample_tokens[span.start:span.stop], minlength=n_clusters)
            entry["tokens"] = int(tokens.sum())
            if n_clusters <= MAX_LISTED_CLUSTERS:
                entry["cluster_tokens"] = [int(t) for t in tokens]
        out.append(entry)
    return out


def _warnings(sizes: np.ndarray, n_docs: int) -> list[str]:
    nonempty = sizes[sizes > 0]
    if len(nonempty) and np.median(nonempty) < SMALL_MEDIAN_CLUSTER:
        return [f"k is large for N: the median cluster holds {np.median(nonempty):g} documents (k={len(sizes):,}, "
                f"N={n_docs:,}); the clip and the balance then act on near-single documents - fewer clusters "
                f"(about N/{SMALL_MEDIAN_CLUSTER * 10} or less) balance topics instead"]
    return []


def _clusters_exhausted(schedule, uses, n_clusters, labels, max_repeats, keep=None) -> int | None:
    if labels is not None and max_repeats is not None:
        labels = np.asarray(labels)
        limit = np.asarray(max_repeats)
        if limit.ndim:  # one clip per cluster
            limit = np.r_[limit, np.zeros(max(0, n_clusters - len(limit)), limit.dtype)][labels]
        drawable = np.ones(len(labels), bool) if keep is None else np.asarray(keep, bool)
        short = np.bincount(labels[(uses < limit) & drawable], minlength=n_clusters)
        return int(np.sum((np.bincount(labels[drawable], minlength=n_clusters) > 0) & (short == 0)))
    if schedule.exhausted:
        return int(np.count_nonzero(np.bincount(np.asarray(schedule.cluster), minlength=n_clusters)))
    return None


def _balance(cluster: np.ndarray, n_clusters: int, n_bins: int, tokens=None) -> dict:
    """Shares per part of the schedule: of its samples, or (``tokens``: each sample's tokens) of its
    tokens; the parts are the same tenths by position either way."""
    edges = [len(cluster) * i // n_bins for i in range(n_bins + 1)]
    balance: dict = {"bins": n_bins, "bin_edges": edges, "active_clusters": [], "max_share": [],
                     "min_share": [], "entropy": []}
    if n_clusters <= MAX_LISTED_CLUSTERS:
        balance["shares"] = []
    for start, stop in zip(edges[:-1], edges[1:]):
        if tokens is None:
            counts = np.bincount(cluster[start:stop], minlength=n_clusters)
            share = counts / max(stop - start, 1)
        else:
            counts = np.bincount(cluster[start:stop], weights=tokens[start:stop], minlength=n_clusters)
            share = counts / max(counts.sum(), 1)
        drawn = share[counts > 0]
        if n_clusters > 1:
            entropy = max(0.0, float(-(drawn * np.log(drawn)).sum() / np.log(n_clusters)))
        else:
            entropy = float(len(drawn) > 0)
        balance["active_clusters"].append(int(len(drawn)))
        balance["max_share"].append(float(drawn.max()) if len(drawn) else 0.0)
        balance["min_share"].append(float(drawn.min()) if len(drawn) else 0.0)
        balance["entropy"].append(round(entropy, 6))
        if "shares" in balance:
            balance["shares"].append([round(float(x), 6) for x in share])
    return balance


def format_statistics(stats: dict) -> str:
    """A few lines of human summary of :func:`schedule_statistics`' result."""
    tokens = f" ({stats['tokens']:,} tokens)" if "tokens" in stats else ""
    used = stats["unique_docs_used"]
    total = used + stats["docs_never_used"]
    counts = np.asarray(stats["cluster_samples"])
    drawn = counts[counts > 0]
    lines = [
        f"{stats['samples']:,} samples{tokens} from {used:,} of {total:,} documents "
        f"({stats['docs_never_used']:,} never used)",
        f"uses per used document: max {stats['max_repeat_count']}, "
        f"mean {stats['mean_repeat_count']:.2f}",
    ]
    if len(drawn):
        lines.append(
            f"samples per cluster: {len(drawn):,} of {len(counts):,} clusters drawn, "
            f"min {drawn.min():,}, median {int(np.median(drawn)):,}, max {drawn.max():,}"
        )
    if "cluster_tokens" in stats and stats.get("tokens"):
        tokens = np.asarray(stats["cluster_tokens"], np.float64)
        top = int(np.argmax(tokens))
        drawn_tokens = tokens[counts > 0] if len(counts) == len(tokens) else tokens[tokens > 0]
        lines.append(
            f"tokens per cluster: min {int(drawn_tokens.min()):,}, median {int(np.median(drawn_tokens)):,}, "
            f"max {int(drawn_tokens.max()):,} (cluster {top}: {tokens[top] / tokens.sum():.1%} of the tokens, "
            f"{counts[top] / max(counts.sum(), 1):.1%} of the samples)")
    budget = stats.get("cluster_token_budget")
    if budget is not None:
        short = stats.get("clusters_short_of_budget")
        lines.append(f"token budgets: {sum(budget):,} tokens over {sum(b > 0 for b in budget):,} clusters"
                     + (f"; {short:,} hit the clip before their budget" if short else ""))
    if stats.get("dedup_removed") is not None:
        lines.append(f"semantic duplicates left out: {stats['dedup_removed']:,} documents")
    exhausted = stats.get("clusters_exhausted")
    if exhausted is not None:
        lines.append(f"clusters that left the pool (clip reached): {exhausted:,}")
    if stats["exhausted"]:
        lines.append("the clip emptied the pool: every document was used max_repeats times")
    entropy = " ".join(f"{e:.2f}" for e in stats["balance"]["entropy"])
    if "balance_tokens" in stats:
        entropy += "; of the tokens: " + " ".join(f"{e:.2f}" for e in stats["balance_tokens"]["entropy"])
    lines.append(f"balance per part (normalised entropy, 1 = all clusters equal): {entropy}")
    for i, stage in enumerate(stats.get("stages") or []):
        tokens = f", {stage['tokens']:,} tokens" if "tokens" in stage else ""
        lines.append(f"stage {i}: samples {stage['start']:,}..{stage['stop']:,} ({stage['samples']:,}{tokens}), "
                     f"{stage['clusters_drawn']:,} clusters drawn")
    if stats.get("stalled"):
        lines.append("the repeat gap stopped the order short of its budget (--allow-partial)")
    return "\n".join(lines)  # stats["warnings"] are the caller's to print (on stderr)
