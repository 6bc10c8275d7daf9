"""The report's figures, drawn with matplotlib's Agg canvas (no display, no global pyplot state).

Every function returns ``(png_bytes, plotted)``: the PNG and the numbers it draws, so the
report can record them (``report.json``) and tests can compare them with the manifests.
PNGs carry no timestamp: the same inputs give the same bytes.
"""

from __future__ import annotations

import io

import numpy as np

from .mix import OrderScan

WIDTH, HEIGHT, DPI = 9.0, 4.2, 100
SAMPLER_COLORS = {"random": "#7f7f7f", "uniform": "#1f77b4", "clusterclip": "#d62728", "law": "#9467bd",
                  "schedule": "#2ca02c"}
MAX_HEATMAP_ROWS = 100  # the balance heat map shows at most this many clusters (the most drawn)


def _figure(height: float = HEIGHT, rows: int = 1, sharex: bool = False):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, axes


def _plain_log_ticks(ax, percent: bool = False) -> None:
    """Log-scale tick labels as plain numbers (``20``, ``1.5%``) instead of ``2×10^1``."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    fmt = FuncFormatter(lambda v, _: f"{100 * v:.3g}%" if percent else f"{v:,.0f}" if v >= 1 else f"{v:g}")
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.yaxis.set_minor_formatter(fmt)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def sizes_and_shares(sizes: np.ndarray, shares: dict[str, np.ndarray], labels: dict[str, str]) -> tuple[bytes, dict]:
    """Cluster sizes, largest first (log scale), and each schedule's share per cluster in the same order.

    ``shares``: name (``random``, ``uniform``, ``clusterclip``, ``schedule``) -> share per cluster id;
    ``labels``: the legend text of each.
    """
    fig, order = _ranked_panels(sizes, sizes, "documents", "Cluster sizes, largest first", shares, labels,
                                "share of the samples", "Share of each cluster in the training mix")
    plotted = {"cluster_order": order.tolist(), "sizes": sizes[order].tolist(),
               "shares": {name: share[order].tolist() for name, share in shares.items()}}
    return _png(fig), plotted


def _ranked_panels(sizes, values, value_label, value_title, shares, labels, share_label, share_title, *,
                   zero_as_gap=False):
    """Two panels over the non-empty clusters, largest first: ``values`` per cluster (log scale) above,
    each sampler's share per cluster (log scale) below; the figure and the cluster order."""
    order = np.lexsort((np.arange(len(sizes)), -sizes))
    order = order[sizes[order] > 0]  # log scale: empty clusters are left out (the page counts them)
    rank = np.arange(1, len(order) + 1)
    fig, (ax_value, ax_share) = _figure(HEIGHT * 1.6, rows=2, sharex=True)
    marker = "o" if len(order) <= 200 else None
    ax_value.plot(rank, values[order], color="black", marker=marker, markersize=3, linewidth=1)
    ax_value.set_yscale("log")
    _plain_log_ticks(ax_value)
    ax_value.set_ylabel(value_label)
    ax_value.set_title(value_title)
    ax_value.grid(True, which="both", alpha=0.3)
    for name, share in shares.items():
        actual = name == "schedule"  # drawn under the expected lines, which it scatters around
        y = np.where(share[order] > 0, share[order], np.nan) if zero_as_gap else share[order]
        ax_share.plot(rank, y, label=labels[name], color=SAMPLER_COLORS[name], marker=marker,
                      markersize=3, linewidth=1.0 if actual else 1.4, alpha=0.75 if actual else 1.0,
                      zorder=2 if actual else 3, drawstyle="steps-mid" if actual else "default")
    ax_share.set_yscale("log")
    _plain_log_ticks(ax_share, percent=True)
    ax_share.set_xlabel("cluster rank by size")
    ax_share.set_ylabel(share_label)
    ax_share.set_title(share_title)
    ax_share.grid(True, which="both", alpha=0.3)
    ax_share.legend(fontsize=8, loc="lower left")
    if len(order) <= 30:
        ax_share.set_xticks(rank, [str(c) for c in order], fontsize=7)
        ax_share.set_xlabel("cluster id, largest first")
    return fig, order


def _heatmap(fig, ax, edges, shares, rows, label) -> None:
    """Each part's share (``shares[part, cluster]``) of the clusters ``rows``, one row each, first on top."""
    image = ax.pcolormesh(edges, np.arange(len(rows) + 1), shares[:, rows].T, cmap="viridis", vmin=0, shading="flat")
    fig.colorbar(image, ax=ax, label=label, pad=0.01)
    ax.set_ylim(len(rows), 0)
    if len(rows) <= 40:
        ax.set_yticks(np.arange(len(rows)) + 0.5, [str(c) for c in rows], fontsize=6)


def _part_entropy(scan: OrderScan) -> list[float]:
    """Normalised entropy of the clusters' shares of the samples of each part (1 = all clusters equal)."""
    k = scan.bin_counts.shape[1]
    entropy = []
    for row, counts in zip(scan.bin_shares, scan.bin_counts):
        p = row[counts > 0]
        entropy.append(float(-(p * np.log(p)).sum() / np.log(k)) if k > 1 and len(p) else float(len(p) > 0))
    return entropy


def balance_over_time(scan: OrderScan, order_label: str) -> tuple[bytes, dict]:
    """Share of each cluster in each part of the schedule (a heat map), and the balance of the parts."""
    shares = scan.bin_shares
    k = shares.shape[1]
    edges = np.asarray(scan.bin_edges, np.float64) / max(scan.samples, 1)
    mid = (edges[:-1] + edges[1:]) / 2
    totals = scan.cluster_samples
    rows = np.lexsort((np.arange(k), -totals))
    rows = rows[totals[rows] > 0][:MAX_HEATMAP_ROWS]  # the most drawn clusters, most drawn on top
    fig, (ax, ax_h) = _figure(HEIGHT * 2.0, rows=2, sharex=True)
    fig.get_layout_engine().set(h_pad=0.1)
    if len(rows):
        _heatmap(fig, ax, edges, shares, rows, "share of the part")
    more = f", the {len(rows)} most drawn of {int(np.count_nonzero(totals))}" if len(rows) < np.count_nonzero(totals) else ""
    ax.set_ylabel(f"cluster id{more}" if len(rows) <= 40 else f"clusters by samples drawn{more}")
    ax.set_title(f"Share of each cluster in each tenth of the schedule ({order_label})")
    drawn = scan.bin_counts > 0
    entropy = _part_entropy(scan)
    ax_h.plot(mid, entropy, marker="o", color="black", label="normalised entropy (1 = all clusters equal)")
    ax_h.set_ylim(0, 1.05)
    ax_h.set_xlim(0, 1)
    ax_h.set_xlabel("position in the schedule (fraction of all samples)")
    ax_h.set_ylabel("entropy")
    ax_a = ax_h.twinx()
    active = drawn.sum(axis=1)
    ax_a.plot(mid, active, marker="s", color="#d62728", label="clusters drawn in the part")
    ax_a.set_ylabel("clusters drawn", color="#d62728")
    ax_a.set_ylim(0, max(int(active.max()) if len(active) else 1, 1) * 1.1)
    ax_h.legend(fontsize=7, loc="lower left")
    ax_a.legend(fontsize=7, loc="lower right")
    ax_h.grid(True, alpha=0.3)
    plotted = {"bin_edges": list(scan.bin_edges), "entropy": entropy, "active_clusters": active.tolist(),
               "heatmap_clusters": [int(c) for c in rows]}
    if k <= 100:
        plotted["shares"] = shares.tolist()
    return _png(fig), plotted


def token_shares(sizes: np.ndarray, mean_tokens: np.ndarray, shares: dict[str, np.ndarray],
                 token_shares: dict[str, np.ndarray], labels: dict[str, str]) -> tuple[bytes, dict]:
    """Mean sample length per cluster and each sampler's share of the TOKENS per cluster, clusters in the
    order of :func:`sizes_and_shares` (largest first). ``shares``: the same samplers' shares of the
    samples, recorded beside the token shares (``report.json``)."""
    fig, order = _ranked_panels(sizes, mean_tokens, "tokens per sample",
                                "Mean sample length of each cluster (clusters largest first)", token_shares, labels,
                                "share of the tokens", "Share of each cluster in the training tokens",
                                zero_as_gap=True)
    plotted = {"cluster_order": order.tolist(), "mean_tokens": [float(x) for x in mean_tokens[order]],
               "token_shares": {name: share[order].tolist() for name, share in token_shares.items()},
               "sample_shares": {name: shares[name][order].tolist() for name in token_shares if name in shares}}
    return _png(fig), plotted


def token_balance_over_time(balance_tokens: dict, scan: OrderScan) -> tuple[bytes, dict]:
    """The schedule's share of the tokens of each tenth per cluster (a heat map, when the manifest lists
    the shares: K <= 100), and the balance of the tenths in tokens beside that in samples.

    ``balance_tokens``: the schedule manifest's ``statistics.balance_tokens`` (exact: counted from every
    sample's length when the schedule was planned)."""
    edges_pos = list(balance_tokens["bin_edges"])
    edges = np.asarray(edges_pos, np.float64) / max(scan.samples, 1)
    mid = (edges[:-1] + edges[1:]) / 2
    shares = balance_tokens.get("shares")
    entropy = [float(e) for e in balance_tokens["entropy"]]
    rows = np.zeros(0, np.int64)
    fig, (ax, ax_h) = _figure(HEIGHT * 2.0, rows=2, sharex=True)
    fig.get_layout_engine().set(h_pad=0.1)
    if shares is not None:
        shares = np.asarray(shares, np.float64)
        totals = shares.sum(axis=0)
        rows = np.lexsort((np.arange(shares.shape[1]), -totals))
        rows = rows[totals[rows] > 0][:MAX_HEATMAP_ROWS]
    if len(rows):
        _heatmap(fig, ax, edges, shares, rows, "share of the part's tokens")
        ax.set_ylabel("cluster id" if len(rows) <= 40 else "clusters by tokens")
    else:
        ax.plot(mid, balance_tokens["max_share"], marker="o", color="#d62728", label="largest cluster's share")
        ax.plot(mid, balance_tokens["min_share"], marker="s", color="#1f77b4", label="smallest drawn cluster's share")
        ax.set_yscale("log")
        _plain_log_ticks(ax, percent=True)
        ax.set_ylabel("share of the part's tokens")
        ax.legend(fontsize=7, loc="lower left")
        ax.grid(True, which="both", alpha=0.3)
    ax.set_title("Share of each cluster in the tokens of each tenth of the schedule")
    sample_entropy = _part_entropy(scan)
    ax_h.plot(mid, entropy, marker="o", color="black", label="of the tokens")
    ax_h.plot(mid, sample_entropy, marker="s", color="#7f7f7f", linestyle="--", label="of the samples")
    ax_h.set_ylim(0, 1.05)
    ax_h.set_xlim(0, 1)
    ax_h.set_xlabel("position in the schedule (fraction of all samples)")
    ax_h.set_ylabel("normalised entropy")
    ax_h.legend(fontsize=7, loc="lower left")
    ax_h.grid(True, alpha=0.3)
    plotted = {"bin_edges": edges_pos, "entropy": entropy, "sample_entropy": sample_entropy,
               "max_share": [float(x) for x in balance_tokens["max_share"]],
               "min_share": [float(x) for x in balance_tokens["min_share"]],
               "active_clusters": [int(x) for x in balance_tokens["active_clusters"]],
               "heatmap_clusters": [int(c) for c in rows]}
    if shares is not None:
        plotted["shares"] = shares.tolist()
    return _png(fig), plotted


def repetition_histogram(docs_by_uses: np.ndarray, max_repeats: int | None) -> tuple[bytes, dict]:
    """How many documents the schedule uses 0, 1, 2, ... times."""
    fig, (ax,) = _figure()
    uses = np.arange(len(docs_by_uses))
    ax.bar(uses, docs_by_uses, color=["#bbbbbb"] + ["#1f77b4"] * (len(uses) - 1), width=0.8)
    for u, n in zip(uses, docs_by_uses):
        ax.annotate(f"{int(n):,}", (u, n), ha="center", va="bottom", fontsize=8)
    if max_repeats is not None:
        ax.axvline(max_repeats + 0.5, color="#d62728", linestyle="--", linewidth=1)
        ax.annotate(f"clip: max_repeats = {max_repeats} ", (max_repeats + 0.5, ax.get_ylim()[1] * 0.95),
                    color="#d62728", fontsize=8, ha="right", va="top")
    if len(uses) <= 30:
        ax.set_xticks(uses)
    ax.set_xlabel("times a document is used (0: never)")
    ax.set_ylabel("documents")
    ax.set_title("Repetition: documents by the number of times the schedule uses them")
    return _png(fig), {"docs_by_uses": [int(x) for x in docs_by_uses]}


def pool_exits(scan: OrderScan) -> tuple[bytes, dict]:
    """Clusters that left the pool (clip reached for all their documents) against the position they left at."""
    fig, (ax,) = _figure()
    left = np.flatnonzero(scan.exit_position >= 0)
    positions = scan.exit_position[left]
    order = np.argsort(positions, kind="stable")
    left, positions = left[order], positions[order]
    total = max(scan.samples, 1)
    if len(left):
        x = np.r_[0, positions / total, 1.0]
        y = np.r_[0, np.arange(1, len(left) + 1), len(left)]
        ax.step(x, y, where="post", color="#d62728")
        if len(left) <= 12:
            for c, p, n in zip(left, positions, range(1, len(left) + 1)):
                ax.annotate(f"{c}", (p / total, n), fontsize=7, xytext=(-3, 2), textcoords="offset points",
                            ha="right")
    else:
        ax.text(0.5, 0.5, "no cluster left the pool", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_xlabel("position in the schedule (fraction of all samples)")
    ax.set_ylabel("clusters that left the pool")
    ax.set_title(f"When clusters left the pool (all their documents used max_repeats times): "
                 f"{len(left)} of {int(np.count_nonzero(scan.cluster_samples))} clusters")
    ax.grid(True, alpha=0.3)
    return _png(fig), {"clusters": left.tolist(), "positions": positions.tolist()}


def centroid_map(centroids: np.ndarray, sizes: np.ndarray, labels: dict[int, str], *, method: str = "auto",
                 seed: int = 0) -> tuple[bytes, dict]:
    """The non-empty centroids in 2-D (PCA, or UMAP when ``method`` is ``umap`` or ``auto`` and it is installed).

    Marker area is proportional to the cluster's size; ``labels`` (cluster -> text) are written
    beside the largest clusters.
    """
    nonempty = np.flatnonzero(sizes > 0)
    xy, used = project_2d(centroids[nonempty], method=method, seed=seed)
    fig, (ax,) = _figure(HEIGHT * 1.5)
    area = 600.0 * sizes[nonempty] / max(int(sizes.max()), 1) + 8.0
    ax.scatter(xy[:, 0], xy[:, 1], s=area, alpha=0.55, color="#1f77b4", edgecolors="#0b3c66", linewidths=0.5)
    for i in np.argsort(-sizes[nonempty], kind="stable")[: min(len(nonempty), 15)]:
        c = int(nonempty[i])
        ax.annotate(labels.get(c, str(c)), xy[i], fontsize=7, ha="center", va="center")
    ax.set_title(f"Cluster centroids in 2-D ({used}); area ∝ documents")
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig), {"method": used, "clusters": nonempty.tolist(), "xy": np.round(xy, 6).tolist()}


def project_2d(x: np.ndarray, *, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """``[n, D] -> [n, 2]`` and the method used: UMAP (cosine) when asked or available, else PCA."""
    x = np.asarray(x, np.float64)
    if len(x) >= 4 and method in ("auto", "umap"):
        try:
            import umap
        except ImportError:
            if method == "umap":
                from ..errors import InputError

                raise InputError("--map umap: the `umap` package is not installed; pip install umap-learn, "
                                 "or use --map pca") from None
        else:
            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(x) - 1), metric="cosine", random_state=seed)
            return np.asarray(reducer.fit_transform(x), np.float64), "UMAP"
    return pca_2d(x), "PCA"


def pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components (``D × D`` eigendecomposition, so K may be large); signs fixed."""
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return np.zeros((0, 2))
    centred = x - x.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    top = vectors[:, np.argsort(values)[::-1][:2]]
    if top.shape[1] < 2:
        top = np.c_[top, np.zeros((x.shape[1], 2 - top.shape[1]))]
    # a component's sign is arbitrary: make its largest loading positive, for the same picture every time
    signs = np.sign(top[np.abs(top).argmax(axis=0), [0, 1]])
    return centred @ (top * np.where(signs == 0, 1, signs))
