"""The report's figures of a schedule over training, drawn from a :class:`.timeline.Timeline`.

Time axes are positions in the order: samples for figures of samples, tokens (cumulative, from the
order's ``tokens`` column) for figures of tokens, with whole-number ticks. Every function returns
``(png_bytes, plotted)`` like :mod:`.figures`: ``plotted`` holds the numbers drawn (``report.json``), which the
tests recount from ``order.parquet``.

A figure's rows are clusters, or groups of documents (``report --group-by``): :class:`Rows` names them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .figures import HEIGHT, MAX_HEATMAP_ROWS, _figure, _png
from .timeline import Timeline

#: clusters (or groups) drawn as their own line in the cumulative figures
MAX_LINES = 12
USE_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
REASON_COLORS = {"chance": "#1f77b4", "clip": "#d62728", "budget": "#9467bd", "off": "#ff7f0e", "group": "#1f77b4"}
REASON_LABELS = {"chance": "as expected (within chance)", "clip": "reached its clip",
                 "budget": "stopped at its token budget", "off": "beyond chance", "group": "got"}


@dataclass(frozen=True)
class Rows:
    """What the rows of a figure are: ``kind`` ("cluster" or a --group-by column) and each row's label."""

    kind: str
    labels: list[str]

    def label(self, i: int) -> str:
        return self.labels[i]


def cluster_rows(k: int) -> Rows:
    return Rows("cluster", [str(c) for c in range(k)])


def count_format(value: float, _pos=None) -> str:
    """A whole count as tick text: ``950``, ``12,000``, ``1.2M``, ``3.4B``."""
    v = abs(value)
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if v >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:,.0f}"


def _count_axis(axis) -> None:
    """Whole-number ticks written as counts."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True, nbins="auto"))
    axis.set_major_formatter(FuncFormatter(count_format))


def _scaled(ax, values, lo: float = 0.0, hi: float = 1.0) -> None:
    """y limits around the data (a margin of a tenth of its range), inside ``[lo, hi]``."""
    values = np.asarray([v for v in np.ravel(values) if np.isfinite(v)], np.float64)
    if not len(values):
        return
    a, b = float(values.min()), float(values.max())
    margin = max((b - a) * 0.1, 0.01 * max(abs(b), 1e-9), 1e-3)
    ax.set_ylim(max(lo, a - margin), min(hi, b + margin))


def _heat_rows(ax, rows: np.ndarray, names: Rows) -> None:
    """Every row labelled (the figure grows with the rows), first on top."""
    ax.set_yticks(np.arange(len(rows)) + 0.5, [names.label(int(r)) for r in rows],
                  fontsize=7 if len(rows) <= 40 else 5)
    ax.set_ylabel(f"{names.kind}, most drawn on top")


def _heat_height(n_rows: int) -> float:
    return max(HEIGHT, 0.9 + 0.11 * n_rows)


def entropy_of(counts: np.ndarray) -> list[float]:
    """Normalised entropy of each row's shares (1 = every column equal; over all columns)."""
    k = counts.shape[1]
    out = []
    for row in counts.astype(np.float64):
        total = row.sum()
        p = row[row > 0] / total if total else row[:0]
        out.append(float(-(p * np.log(p)).sum() / np.log(k)) if k > 1 and len(p) else float(len(p) > 0))
    return out


def _ranked_rows(totals: np.ndarray) -> np.ndarray:
    rows = np.lexsort((np.arange(len(totals)), -totals))
    return rows[totals[rows] > 0][:MAX_HEATMAP_ROWS]


def balance_over_time(counts: np.ndarray, edges: np.ndarray, names: Rows, *, unit: str, title: str
                      ) -> tuple[bytes, dict]:
    """Each row's share of each part (a heat map, every row labelled) and the balance of the parts: their
    normalised entropy (scaled to its data) and the rows drawn in each.

    ``counts``: ``[P, rows]`` samples (``unit="samples"``) or tokens (``"tokens"``) per part; ``edges``:
    ``[P+1]`` positions of the parts in that unit."""
    totals = counts.sum(axis=0)
    rows = _ranked_rows(totals)
    width = np.maximum(counts.sum(axis=1), 1).astype(np.float64)
    shares = counts / width[:, None]
    fig, (ax, ax_h) = _figure(_heat_height(len(rows)) + HEIGHT, rows=2, sharex=True)
    fig.get_layout_engine().set(h_pad=0.1)
    x = np.asarray(edges, np.float64)
    if len(rows):
        image = ax.pcolormesh(x, np.arange(len(rows) + 1), shares[:, rows].T, cmap="viridis", vmin=0, shading="flat")
        fig.colorbar(image, ax=ax, label=f"share of the part's {unit}", pad=0.01)
        ax.set_ylim(len(rows), 0)
        _heat_rows(ax, rows, names)
    drawn = int(np.count_nonzero(totals))
    more = f" (the {len(rows)} most drawn of {drawn})" if len(rows) < drawn else ""
    ax.set_title(f"{title}{more}")
    entropy = entropy_of(counts)
    mid = (x[:-1] + x[1:]) / 2
    ax_h.plot(mid, entropy, marker="o", markersize=3, color="black", label="normalised entropy (1 = all equal)")
    _scaled(ax_h, entropy)
    ax_h.set_ylabel("entropy")
    active = np.count_nonzero(counts, axis=1)
    ax_a = ax_h.twinx()
    ax_a.plot(mid, active, marker="s", markersize=3, color="#d62728", label=f"{names.kind}s drawn in the part")
    ax_a.set_ylabel(f"{names.kind}s drawn", color="#d62728")
    _scaled(ax_a, active, 0, np.inf)
    _count_axis(ax_a.yaxis)
    ax_h.set_xlim(x[0], x[-1])
    _count_axis(ax_h.xaxis)
    ax_h.set_xlabel(f"position in the schedule ({unit})")
    ax_h.legend(fontsize=7, loc="lower left")
    ax_a.legend(fontsize=7, loc="lower right")
    ax_h.grid(True, alpha=0.3)
    plotted = {"unit": unit, "edges": [int(e) for e in edges], "rows": [int(r) for r in rows],
               "entropy": entropy, "active": active.tolist(), "totals": totals.tolist()}
    if counts.shape[1] <= 100:
        plotted["counts"] = counts.tolist()
    return _png(fig), plotted


def cumulative_tokens(tokens: np.ndarray, edges: np.ndarray, names: Rows, planned: np.ndarray | None
                      ) -> tuple[bytes, dict]:
    """Cumulative tokens of each row over training (x: tokens), the :data:`MAX_LINES` rows with the most tokens as
    lines, the planned cumulative tokens (dashed) beside them when ``planned`` (``[P+1, rows]``) is given.

    ``tokens``: ``[P, rows]`` tokens per part of equal tokens; ``edges``: ``[P+1]`` token positions."""
    cumulative = np.vstack([np.zeros(tokens.shape[1], np.int64), np.cumsum(tokens, axis=0)])
    totals = cumulative[-1]
    rows = np.lexsort((np.arange(len(totals)), -totals))[: min(MAX_LINES, int(np.count_nonzero(totals)))]
    fig, (ax,) = _figure(HEIGHT * 1.3)
    x = np.asarray(edges, np.float64)
    for i, r in enumerate(rows.tolist()):
        color = USE_COLORS[i % len(USE_COLORS)]
        ax.plot(x, cumulative[:, r], color=color, linewidth=1.4, label=f"{names.kind} {names.label(r)}")
        if planned is not None:
            ax.plot(x, planned[:, r], color=color, linewidth=1.0, linestyle="--")
    ax.set_xlim(x[0], x[-1])
    _count_axis(ax.xaxis)
    _count_axis(ax.yaxis)
    ax.set_xlabel("position in the schedule (tokens)")
    ax.set_ylabel("tokens so far")
    shown = f"the {len(rows)} {names.kind}s with the most tokens" if len(rows) < len(totals) else f"every {names.kind}"
    ax.set_title(f"Tokens of each {names.kind} over training ({shown}"
                 + ("; dashed: planned" if planned is not None else "") + ")")
    ax.grid(True, alpha=0.3)
    if len(rows):
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    plotted = {"edges": [int(e) for e in edges], "rows": rows.tolist(),
               "cumulative": {int(r): cumulative[:, r].tolist() for r in rows}}
    if planned is not None:
        plotted["planned"] = {int(r): [float(v) for v in planned[:, r]] for r in rows}
    return _png(fig), plotted


def uses_over_training(tl: Timeline, clip_label: str | None) -> tuple[bytes, dict]:
    """The share of each part's samples that are a document's first, second, third, ... use (stacked), and
    how many clusters have started their second uses by then."""
    x: np.ndarray = tl.sample_edges.astype(np.float64)
    width = np.maximum(np.diff(tl.sample_edges), 1).astype(np.float64)
    n_uses = max(1, int(np.flatnonzero(tl.part_uses.sum(axis=0)).max(initial=0)) + 1)
    shown = min(n_uses, len(USE_COLORS))
    stacked: np.ndarray = tl.part_uses[:, :shown].astype(np.float64)
    if n_uses > shown:  # the rest in the last band
        stacked[:, -1] += tl.part_uses[:, shown:].sum(axis=1)
    fig, (ax, ax_c) = _figure(HEIGHT * 1.8, rows=2, sharex=True)
    bottom = np.zeros(tl.parts)
    for u in range(shown):
        label = f"use {u + 1}" + (" or later" if u == shown - 1 and n_uses > shown else "")
        ax.bar(x[:-1], stacked[:, u] / width, width=np.diff(x), bottom=bottom, align="edge",
               color=USE_COLORS[u], label=label, linewidth=0)
        bottom += stacked[:, u] / width
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of the part's samples")
    ax.set_title("Which use of their document the samples are (first use, second, ...)"
                 + (f"; {clip_label}" if clip_label else ""))
    ax.legend(fontsize=7, loc="lower left", ncol=min(shown, 4))
    started = np.sort(tl.second_use[tl.second_use >= 0])
    count = np.searchsorted(started, tl.sample_edges, side="left")
    ax_c.step(x, count, where="post", color="#d62728")
    ax_c.set_ylabel("clusters")
    ax_c.set_title("Clusters whose second uses have started")
    _count_axis(ax_c.yaxis)
    ax_c.set_xlim(x[0], x[-1])
    _count_axis(ax_c.xaxis)
    ax_c.set_xlabel("position in the schedule (samples)")
    ax_c.grid(True, alpha=0.3)
    plotted = {"edges": tl.sample_edges.tolist(), "uses": tl.part_uses[:, :n_uses].tolist(),
               "second_use": tl.second_use.tolist(), "started": count.tolist()}
    return _png(fig), plotted


def target_vs_realised(asked: np.ndarray, expected: np.ndarray, realised: np.ndarray, reason: list[str],
                       names: Rows, *, unit: str) -> tuple[bytes, dict]:
    """Each row's share of the ``unit`` (samples or tokens): what the weights ask (x) against what the schedule
    got (dots, coloured by why they differ) and what the law expects with its clips (rings)."""
    fig, (ax,) = _figure(HEIGHT * 1.4)
    drawn = (asked > 0) | (realised > 0)
    floor = max(float(np.min(np.r_[asked[asked > 0], realised[realised > 0], 1.0])) / 2, 1e-9)
    for why, color in REASON_COLORS.items():
        these = np.asarray([r == why for r in reason]) & drawn
        if these.any():
            ax.scatter(np.maximum(asked[these], floor), np.maximum(realised[these], floor), s=16, color=color,
                       label=REASON_LABELS[why], zorder=3)
    ax.scatter(np.maximum(asked[drawn], floor), np.maximum(expected[drawn], floor), s=30, facecolors="none",
               edgecolors="#555555", linewidths=0.7, label="expected with the clips", zorder=2)
    top = max(float(np.max(np.r_[asked, realised, expected], initial=0)) * 1.3, floor * 10)
    ax.plot([floor, top], [floor, top], color="#999999", linewidth=0.8, linestyle="--", label="got = asked")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from .figures import _plain_log_ticks

    _plain_log_ticks(ax, percent=True)
    ax.xaxis.set_major_formatter(ax.yaxis.get_major_formatter())
    ax.set_xlabel(f"share of the {unit} the weights ask for")
    ax.set_ylabel(f"share of the {unit} the schedule got")
    ax.set_title(f"Asked and got, per {names.kind} (share of the {unit})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    plotted = {"unit": unit, "asked": asked.tolist(), "expected": expected.tolist(), "realised": realised.tolist(),
               "reason": list(reason)}
    return _png(fig), plotted


def repetition_histogram(docs_by_uses: np.ndarray, clips: dict[int, int]) -> tuple[bytes, dict]:
    """How many documents the schedule uses 0, 1, 2, ... times, with a line at each clip (``clips``: clip ->
    clusters with that clip; one entry for a single ``--max-repeats``)."""
    fig, (ax,) = _figure()
    uses = np.arange(len(docs_by_uses))
    ax.bar(uses, docs_by_uses, color=["#bbbbbb"] + ["#1f77b4"] * (len(uses) - 1), width=0.8)
    for u, n in zip(uses, docs_by_uses):
        ax.annotate(f"{int(n):,}", (u, n), ha="center", va="bottom", fontsize=8)
    top = ax.get_ylim()[1]
    for i, (clip, n_clusters) in enumerate(sorted(clips.items())):
        ax.axvline(clip + 0.5, color="#d62728", linestyle="--", linewidth=1)
        text = f"clip {clip}" + (f": {n_clusters:,} clusters" if len(clips) > 1 else " (max_repeats)")
        ax.annotate(text + " ", (clip + 0.5, top * (0.95 - 0.07 * i)), color="#d62728", fontsize=8, ha="right",
                    va="top")
    _count_axis(ax.xaxis)
    _count_axis(ax.yaxis)
    ax.set_xlabel("times a document is used (0: never)")
    ax.set_ylabel("documents")
    ax.set_title("Repetition: documents by the number of times the schedule uses them")
    return _png(fig), {"docs_by_uses": [int(x) for x in docs_by_uses], "clips": {int(c): int(n) for c, n in clips.items()}}


def pool_exits(exit_position: np.ndarray, left_clip: np.ndarray, left_budget: np.ndarray, samples: int,
               drawn: int) -> tuple[bytes, dict]:
    """Clusters that left the pool, by the position of their last sample: at their clip (every document used
    its max_repeats times) and at their token budget (``--budget-tokens``), counted apart."""
    fig, (ax,) = _figure()
    plotted: dict = {}
    for what, mask, color in (("clip", left_clip, "#d62728"), ("budget", left_budget, "#9467bd")):
        left = np.flatnonzero(mask)
        positions = exit_position[left]
        order = np.argsort(positions, kind="stable")
        left, positions = left[order], positions[order]
        plotted[what] = {"clusters": left.tolist(), "positions": positions.tolist()}
        if len(left):
            x = np.r_[0, positions, samples]
            y = np.r_[0, np.arange(1, len(left) + 1), len(left)]
            ax.step(x, y, where="post", color=color,
                    label=f"at their clip: {len(left):,}" if what == "clip" else f"at their token budget: {len(left):,}")
    if not (left_clip.any() or left_budget.any()):
        ax.text(0.5, 0.5, "no cluster left the pool", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=8, loc="upper left")
    ax.set_xlim(0, max(samples, 1))
    _count_axis(ax.xaxis)
    _count_axis(ax.yaxis)
    ax.set_xlabel("position in the schedule (samples)")
    ax.set_ylabel("clusters that left the pool")
    n_left = int(left_clip.sum() + left_budget.sum())
    ax.set_title(f"When clusters left the pool: {n_left:,} of {drawn:,} clusters")
    ax.grid(True, alpha=0.3)
    return _png(fig), plotted


def certificate_panel(cert: dict) -> tuple[bytes, dict]:
    """The certificate as a figure: effective epochs per cluster (clusters largest first) above, and per tenth of
    the schedule each cluster's tokens (samples without token counts) over what its law planned (a heat map, 1 =
    as planned; the :data:`MAX_HEATMAP_ROWS` clusters with the most planned)."""
    rows = cert["clusters"]
    docs = np.asarray([r["documents"] for r in rows], np.int64)
    epochs = np.asarray([r["effective_epochs"] or 0.0 for r in rows], np.float64)
    order = np.lexsort((np.arange(len(docs)), -docs))
    order = order[docs[order] > 0]
    tenths = cert["tenths"]
    unit = "tokens" if "tokens" in tenths else "samples"
    planned = tenths.get(f"planned_{unit}")
    fig, (ax_e, ax_r) = _figure(HEIGHT + _heat_height(min(len(order), MAX_HEATMAP_ROWS)), rows=2)
    rank = np.arange(1, len(order) + 1)
    ax_e.bar(rank, epochs[order], width=0.9 if len(order) <= 200 else 1.0, color="#1f77b4")
    for clip in sorted({r.get("clip") for r in rows if r.get("clip")}):
        ax_e.axhline(clip, color="#d62728", linestyle="--", linewidth=1)
    ax_e.set_ylabel("samples / documents")
    ax_e.set_xlabel("clusters, largest first")
    ax_e.set_title("Effective epochs per cluster (the mean uses of its documents)")
    _count_axis(ax_e.xaxis)
    ax_e.grid(True, axis="y", alpha=0.3)
    plotted: dict = {"cluster_order": order.tolist(), "effective_epochs": epochs[order].tolist(), "unit": unit}
    if planned is None:
        ax_r.text(0.5, 0.5, "no plan to compare with", ha="center", va="center", transform=ax_r.transAxes)
        ax_r.set_axis_off()
        return _png(fig), plotted
    got = np.asarray(tenths[unit], np.float64)
    plan = np.asarray(planned, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(plan > 0, got / plan, np.nan)
    shown = np.lexsort((np.arange(plan.shape[1]), -plan.sum(axis=0)))
    shown = shown[plan.sum(axis=0)[shown] > 0][:MAX_HEATMAP_ROWS]
    _got_over_planned(fig, ax_r, ratio[:, shown], shown, plan.shape[1], unit)
    ax_r.set_xticks(np.arange(10) + 0.5, [f"{i + 1}" for i in range(10)])
    ax_r.set_xlabel("tenth of the schedule (samples)")
    ax_r.set_title(f"{unit.capitalize()} got over planned, per tenth")
    plotted.update(rows=shown.tolist(), ratio=[[None if not np.isfinite(v) else float(v) for v in row]
                                               for row in ratio[:, shown]])
    return _png(fig), plotted


def stages_panel(cert: dict) -> tuple[bytes, dict]:
    """A staged (or continued) schedule stage by stage: each stage's tokens (samples without token counts) per
    cluster, got and planned by that stage's law (``law.parquet``), as got over planned (a heat map, 1 = as
    planned; the :data:`MAX_HEATMAP_ROWS` clusters with the most planned over the stages, every stage a column)
    and each stage's share of its tokens that went to other clusters than planned (total variation).

    ``plotted``: ``unit``, each stage's ``spans`` (samples ``[start, stop)``), the ``rows`` drawn and, per stage, the
    ``got`` and ``planned`` counts of those rows and the stage's ``moved`` share."""
    stages = cert["stages"]
    unit = "tokens" if all("tokens" in s for s in stages) else "samples"
    got = np.asarray([s[unit] for s in stages], np.float64)
    has_plan = all(f"planned_{unit}" in s for s in stages)
    plan = np.asarray([s[f"planned_{unit}"] for s in stages], np.float64) if has_plan else None
    shown = _ranked_rows((plan if plan is not None else got).sum(axis=0))
    plotted: dict = {"unit": unit, "spans": [[s["start"], s["stop"]] for s in stages], "rows": shown.tolist(),
                     "got": got[:, shown].tolist(), "planned": None if plan is None else plan[:, shown].tolist()}
    fig, (ax,) = _figure(_heat_height(len(shown)))
    if plan is None:
        ax.text(0.5, 0.5, "no plan to compare with", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _png(fig), plotted
    moved = 0.5 * np.abs(got - plan).sum(axis=1) / np.maximum(plan.sum(axis=1), 1e-12)
    plotted["moved"] = moved.tolist()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(plan > 0, got / plan, np.nan)
    _got_over_planned(fig, ax, ratio[:, shown], shown, plan.shape[1], unit)
    ax.set_xticks(np.arange(len(stages)) + 0.5, [f"{s['stage']}: {count_format(s['start'])}-{count_format(s['stop'])}"
                                                 f"\n{m:.1%} moved" for s, m in zip(stages, moved)], fontsize=7)
    ax.set_xlabel("stage: samples, and the share of its " + unit + " that went to other clusters than planned")
    ax.set_title(f"{unit.capitalize()} got over planned, per stage")
    return _png(fig), plotted


def _got_over_planned(fig, ax, ratio: np.ndarray, shown, n_clusters: int, unit: str) -> None:
    """A heat map of got / planned (``ratio``: columns x the ``shown`` clusters' rows, on a log scale from 0.5
    to 2), its colour bar, and the clusters' row labels, most planned on top."""
    from matplotlib.colors import LogNorm

    image = ax.pcolormesh(np.arange(ratio.shape[0] + 1), np.arange(len(shown) + 1), ratio.T, cmap="RdBu_r",
                          norm=LogNorm(vmin=0.5, vmax=2.0), shading="flat")
    bar = fig.colorbar(image, ax=ax, label=f"{unit} got / planned", pad=0.01)
    ticks = [0.5, 0.71, 1.0, 1.41, 2.0]
    bar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    bar.ax.minorticks_off()
    ax.set_ylim(len(shown), 0)
    _heat_rows(ax, shown, cluster_rows(n_clusters))
    ax.set_ylabel("cluster, most planned on top")
