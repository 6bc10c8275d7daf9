"""The report's figures, drawn with matplotlib's Agg canvas (no display, no global pyplot state).

Every function returns ``(png_bytes, plotted)``: the PNG and the numbers it draws, so the
report can record them (``report.json``) and tests can compare them with the manifests.
PNGs carry no timestamp: the same inputs give the same bytes.
"""

from __future__ import annotations

import io

import numpy as np

WIDTH, HEIGHT, DPI = 9.0, 4.2, 100
SAMPLER_COLORS = {"random": "#7f7f7f", "uniform": "#1f77b4", "clusterclip": "#d62728", "law": "#9467bd",
                  "schedule": "#2ca02c"}
MAX_HEATMAP_ROWS = 100  # a heat map over training shows at most this many rows (the most drawn)


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
