"""What each sampler does to the mix: expected shares per cluster, and what a schedule really did.

:func:`expected_shares` needs only the cluster sizes (K numbers, never the N labels):

- ``random``: share ``∝ size``;
- ``uniform``: share ``∝ size ** alpha`` over the non-empty clusters (``alpha = 0``: ``1/K``);
- ``clusterclip``: clusters are drawn ``∝ weight`` among those still in the pool and cluster
  ``c`` leaves after ``max_repeats × size_c`` draws, so in expectation every active cluster
  grows at the rate of its weight until it hits its cap. The expected counts are the
  "water-filling" solution ``count_c = min(max_repeats × size_c, level × weight_c)`` with
  ``level`` set so that the counts sum to the budget. It is the expectation of
  :func:`clusterclip.sampling.plan_schedule`'s counts up to the randomness of the exit times.

:func:`law_counts` is the same water-filling under a schedule's own law (``--balance tokens``,
``--weights``, per-cluster clips, ``--budget-tokens``); token shares are expected samples times each
cluster's mean sample length.

:func:`scan_order` streams a schedule's ``order.parquet`` once and returns what the report
draws from it (samples per cluster and per tenth, uses per document, exits from the pool).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..schedule import law


def cluster_weights(sizes: np.ndarray, alpha: float) -> np.ndarray:
    """``size ** alpha`` for non-empty clusters, 0 for empty ones (``alpha = 0``: 1 each)."""
    sizes = np.asarray(sizes, np.float64)
    w = np.zeros_like(sizes)
    nonempty = sizes > 0
    w[nonempty] = sizes[nonempty] ** alpha
    return w


def expected_counts(sizes, *, sampler: str, samples: int, max_repeats=4, alpha: float = 0.0) -> np.ndarray:
    """Expected samples per cluster (float64 ``[K]``) for a budget of ``samples`` (see the module docstring)."""
    if sampler not in ("random", "uniform", "clusterclip"):
        raise ValueError(f"unknown sampler {sampler!r}")
    return law.expected_counts(sizes, None, sampler=sampler, samples=samples, max_repeats=max_repeats, alpha=alpha)


#: the water-filling of the clip and a schedule's own law: :mod:`clusterclip.schedule.law` (one implementation)
water_fill = law.water_fill
shares_of = law.shares_of


def law_counts(sizes, mean_tokens, *, sampler: str, samples: int, max_repeats=4, alpha: float = 0.0,
               balance: str = "samples", multipliers=None, token_budget=None) -> np.ndarray:
    """Expected samples per cluster under a schedule's own law (``--balance``, ``--weights``, per-cluster
    clips, ``--budget-tokens``): :func:`clusterclip.schedule.law.expected_counts`."""
    return law.expected_counts(sizes, mean_tokens, sampler=sampler, samples=samples, max_repeats=max_repeats,
                               alpha=alpha, balance=balance, multipliers=multipliers, token_budget=token_budget)


def expected_shares(sizes, **kwargs) -> np.ndarray:
    """:func:`expected_counts` divided by their sum (all zeros for an empty corpus)."""
    return shares_of(expected_counts(sizes, **kwargs))


@dataclass
class OrderScan:
    """What :func:`scan_order` read from ``order.parquet``."""

    samples: int
    cluster_samples: np.ndarray  # int64 [K]
    bin_edges: list[int]  # positions cutting the schedule into parts, as the manifest's balance
    bin_counts: np.ndarray  # int64 [bins, K]: samples of each cluster in each part
    docs_by_uses: np.ndarray  # int64 [max uses + 1]: documents used 0, 1, 2, ... times (max: the most any document is used)
    exit_position: np.ndarray  # int64 [K]: position of the last sample of a cluster that left the pool, -1 if it did not

    @property
    def bin_shares(self) -> np.ndarray:
        width = np.diff(self.bin_edges).astype(np.float64)
        return self.bin_counts / np.maximum(width, 1)[:, None]


def scan_order(batches, *, samples: int, sizes: np.ndarray, n_docs: int, max_repeats,
               n_bins: int = 10) -> OrderScan:
    """Stream ``(position, cluster, repeat)`` batches of a schedule in order.

    Uses per document come from the ``repeat`` column alone: a document used ``u`` times
    has samples with ``repeat`` 0..u-1, so ``#(repeat == r)`` documents were used more than
    ``r`` times. A cluster left the pool (``clusterclip``) when all its documents reached
    ``max_repeats`` uses; it left at the position of its last sample with ``repeat ==
    max_repeats - 1``. ``max_repeats``: the clip, one per cluster with per-cluster clips (None:
    no clip); ``sizes``: the documents each cluster can draw. Memory: O(K × n_bins), whatever the
    schedule length.
    """
    k = len(sizes)
    clip = np.asarray(max_repeats, np.int64) if max_repeats is not None and np.ndim(max_repeats) else None
    edges = [samples * i // n_bins for i in range(n_bins + 1)]
    bin_counts = np.zeros((n_bins, k), np.int64)
    by_repeat = np.zeros(1, np.int64)
    last_round = np.zeros(k, np.int64)  # samples with repeat == max_repeats - 1, per cluster
    last_position = np.full(k, -1, np.int64)
    seen = 0
    for position, cluster, repeat in batches:
        if len(position) and (position[0] != seen or position[-1] != seen + len(position) - 1):
            raise ValueError("order.parquet: positions are not 0, 1, 2, ... in order")
        seen += len(position)
        part = np.searchsorted(edges, position, side="right") - 1
        _add_2d(bin_counts, np.minimum(part, n_bins - 1), cluster)
        counts = np.bincount(repeat)
        if len(counts) > len(by_repeat):
            by_repeat = np.r_[by_repeat, np.zeros(len(counts) - len(by_repeat), np.int64)]
        by_repeat[: len(counts)] += counts
        if max_repeats is not None:
            final = repeat == (clip[cluster] if clip is not None else max_repeats) - 1
            last_round += np.bincount(cluster[final], minlength=k)
            np.maximum.at(last_position, cluster[final], position[final])
    if seen != samples:
        raise ValueError(f"order.parquet: holds {seen} samples, the manifest says {samples}")
    used_more_than = np.r_[n_docs, by_repeat, 0]  # documents used more than r times, r = -1, 0, 1, ...
    docs_by_uses = used_more_than[:-1] - used_more_than[1:]
    docs_by_uses = docs_by_uses[: max(1, int(np.flatnonzero(docs_by_uses).max(initial=0)) + 1)]
    left = (sizes > 0) & (last_round == sizes) if max_repeats is not None else np.zeros(k, bool)
    return OrderScan(samples=seen, cluster_samples=bin_counts.sum(axis=0), bin_edges=edges, bin_counts=bin_counts,
                     docs_by_uses=docs_by_uses,
                     exit_position=np.where(left, last_position, -1))


def _add_2d(counts: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    n_rows, n_cols = counts.shape
    counts += np.bincount(rows * n_cols + cols, minlength=n_rows * n_cols).reshape(n_rows, n_cols)
