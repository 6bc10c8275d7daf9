"""A schedule over training, from one streaming pass over its ``order.parquet``.

:func:`scan_timeline` reads the order in batches (memory ``O(K × parts)``, whatever its length) and counts
what the report's figures over training and the mixture certificate show:

- samples (and, when the order holds each sample's ``tokens``, tokens) of every cluster in each of
  ``parts`` parts of equal samples, and tokens of every cluster in each of ``parts`` parts of equal tokens
  (a sample belongs to the part its first token lies in), so token figures have a time axis in tokens;
- samples by use (first, second, ... use of their document) per cluster and per part, and where each
  cluster's second uses start (in samples and tokens);
- each cluster's first and last position and the largest gap between two of its successive samples
  (other samples in between, and their tokens);
- with a ``stage`` column, samples and tokens of every cluster per stage and where each stage lies;
- with ``groups`` (a group id per document, ``report --group-by``), samples and tokens per group per part.

Parts are cut at ``samples * i // parts`` (and ``tokens * i // parts``); with ``parts`` a multiple of 10 the
tenths of the schedule's manifest (``balance``) are every ``parts // 10``-th edge, so :meth:`Timeline.tenths`
sums them back exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

#: uses counted one by one per cluster; more uses are counted in the last column ("or more")
MAX_USE_COLUMNS = 64
#: the most cells of a ``[parts, K]`` count table: parts are fewer for many clusters
MAX_PART_CELLS = 4_000_000
#: a part holds at least this many samples per cluster (else the schedule gets fewer parts, at least 10)
SAMPLES_PER_CLUSTER = 4


def parts_for(samples: int, k: int, wanted: int = 100) -> int:
    """Parts of the timeline: up to ``wanted`` (a multiple of 10), fewer so that a part holds at least
    :data:`SAMPLES_PER_CLUSTER` samples per cluster (a part's shares and balance mean something) and a
    ``[parts, K]`` table stays within :data:`MAX_PART_CELLS`; a multiple of 10, at least 10."""
    fit = min(wanted, MAX_PART_CELLS // max(k, 1), samples // max(SAMPLES_PER_CLUSTER * k, 1))
    return int(max(10, fit // 10 * 10))


@dataclass
class Timeline:
    """What :func:`scan_timeline` counted (``K`` clusters, ``P`` parts, ``U`` use columns, ``S`` stages, ``G`` groups)."""

    samples: int
    tokens: int | None  # None: the order holds no tokens column
    sample_edges: np.ndarray  # int64 [P+1]
    part_samples: np.ndarray  # int64 [P, K]
    part_tokens: np.ndarray | None  # int64 [P, K]: tokens of each cluster's samples in each part (of samples)
    token_edges: np.ndarray | None  # int64 [P+1]: token positions cutting the order into P parts of equal tokens
    token_part_tokens: np.ndarray | None  # int64 [P, K]: tokens of each cluster in each part of tokens
    token_part_samples: np.ndarray | None  # int64 [P]: samples whose first token lies in each part of tokens
    cluster_uses: np.ndarray  # int64 [K, U]: samples of cluster k that are use u + 1 of their document
    part_uses: np.ndarray  # int64 [P, U]
    uses: np.ndarray  # int64 [R]: samples with repeat r (unbounded)
    first_position: np.ndarray  # int64 [K], -1: never drawn
    last_position: np.ndarray  # int64 [K], -1: never drawn
    second_use: np.ndarray  # int64 [K]: position of the cluster's first sample with repeat >= 1, -1: none
    second_use_token: np.ndarray | None  # int64 [K]: its first token's position
    max_gap: np.ndarray  # int64 [K]: most samples of other clusters between two successive samples of the cluster
    max_gap_tokens: np.ndarray | None  # int64 [K]: the tokens of those samples
    stage_samples: np.ndarray | None = None  # int64 [S, K]
    stage_tokens: np.ndarray | None = None  # int64 [S, K]
    stage_spans: list[tuple[int, int]] = field(default_factory=list)  # [start, stop) of each stage
    group_part_samples: np.ndarray | None = None  # int64 [P, G]
    group_part_tokens: np.ndarray | None = None  # int64 [P, G] (parts of samples)
    group_token_part_tokens: np.ndarray | None = None  # int64 [P, G] (parts of tokens)

    @property
    def k(self) -> int:
        return int(self.part_samples.shape[1])

    @property
    def parts(self) -> int:
        return int(self.part_samples.shape[0])

    @property
    def cluster_samples(self) -> np.ndarray:
        return self.part_samples.sum(axis=0)

    @property
    def cluster_tokens(self) -> np.ndarray | None:
        return None if self.part_tokens is None else self.part_tokens.sum(axis=0)

    @property
    def samples_at_token_edges(self) -> np.ndarray | None:
        """int64 ``[P+1]``: samples that start before each token edge (the position each edge falls at)."""
        return None if self.token_part_samples is None else np.r_[0, np.cumsum(self.token_part_samples)]

    def tenths(self, counts: np.ndarray) -> np.ndarray:
        """``[P, X]`` counts summed into the manifest's tenths (``[10, X]``)."""
        return counts.reshape(10, self.parts // 10, -1).sum(axis=1)

    def docs_by_uses(self, n_docs: int) -> np.ndarray:
        """Documents used 0, 1, 2, ... times (``#(repeat == r)`` documents were used more than ``r`` times)."""
        more_than = np.r_[n_docs, self.uses, 0]
        by_uses = more_than[:-1] - more_than[1:]
        return by_uses[: max(1, int(np.flatnonzero(by_uses).max(initial=0)) + 1)]


class _Scanner:
    """The counts of :class:`Timeline`, batch by batch."""

    def __init__(self, *, samples: int, tokens: int | None, k: int, parts: int, groups: np.ndarray | None,
                 n_groups: int):
        self.samples, self.tokens, self.k, self.parts = samples, tokens, k, parts
        self.edges = np.asarray([samples * i // parts for i in range(parts + 1)], np.int64)
        self.part_samples: np.ndarray = np.zeros((parts, k), np.int64)
        self.cluster_uses: np.ndarray = np.zeros((k, MAX_USE_COLUMNS), np.int64)
        self.part_uses: np.ndarray = np.zeros((parts, MAX_USE_COLUMNS), np.int64)
        self.uses: np.ndarray = np.zeros(1, np.int64)
        self.first: np.ndarray = np.full(k, -1, np.int64)
        self.last: np.ndarray = np.full(k, -1, np.int64)
        self.last_token: np.ndarray = np.zeros(k, np.int64)  # where the cluster's last sample ended, in tokens
        self.second: np.ndarray = np.full(k, -1, np.int64)
        self.second_token: np.ndarray = np.full(k, -1, np.int64)
        self.max_gap: np.ndarray = np.zeros(k, np.int64)
        self.max_gap_tokens: np.ndarray = np.zeros(k, np.int64)
        self.seen = 0
        self.token_pos = 0
        with_tokens = tokens is not None
        self.token_edges: np.ndarray | None = None
        if tokens is not None:
            self.token_edges = np.asarray([tokens * i // parts for i in range(parts + 1)], np.int64)
        self.part_tokens: np.ndarray | None = np.zeros((parts, k), np.int64) if with_tokens else None
        self.token_part_tokens: np.ndarray | None = np.zeros((parts, k), np.int64) if with_tokens else None
        self.token_part_samples: np.ndarray | None = np.zeros(parts, np.int64) if with_tokens else None
        self.stage_samples: list[np.ndarray] = []
        self.stage_tokens: list[np.ndarray] = []
        self.stage_first: list[int] = []
        self.stage_last: list[int] = []
        self.groups, self.n_groups = groups, n_groups
        if groups is not None:
            self.group_part_samples: np.ndarray = np.zeros((parts, n_groups), np.int64)
            self.group_part_tokens: np.ndarray = np.zeros((parts, n_groups), np.int64)
            self.group_token_part_tokens: np.ndarray = np.zeros((parts, n_groups), np.int64)

    def add(self, batch: dict[str, np.ndarray]) -> None:
        position, cluster, repeat = batch["position"], batch["cluster"], batch["repeat"]
        n = len(position)
        if n and (position[0] != self.seen or position[-1] != self.seen + n - 1):
            raise ValueError("order.parquet: positions are not 0, 1, 2, ... in order")
        if n and (cluster.min() < 0 or cluster.max() >= self.k):
            raise ValueError(f"order.parquet: a cluster id outside 0..{self.k - 1}")
        tokens = batch.get("tokens") if self.tokens is not None else None
        start = self.token_pos + np.r_[0, np.cumsum(tokens)[:-1]] if tokens is not None else None
        part = np.minimum(np.searchsorted(self.edges, position, side="right") - 1, self.parts - 1)
        _add_2d(self.part_samples, part, cluster)
        self._uses(part, cluster, repeat, start)
        self._positions(position, cluster, start, tokens)
        if tokens is not None and start is not None:
            self._tokens(part, cluster, tokens, start)
        if "stage" in batch:
            self._stages(position, batch["stage"], cluster, tokens)
        if self.groups is not None:
            self._groups(part, batch["doc_id"], tokens, start)
        self.seen += n
        if tokens is not None:
            self.token_pos += int(tokens.sum())

    def _uses(self, part, cluster, repeat, start) -> None:
        column = np.minimum(repeat, MAX_USE_COLUMNS - 1)
        _add_2d(self.cluster_uses, cluster, column)
        _add_2d(self.part_uses, part, column)
        counts = np.bincount(repeat)
        if len(counts) > len(self.uses):
            self.uses = np.r_[self.uses, np.zeros(len(counts) - len(self.uses), np.int64)]
        self.uses[: len(counts)] += counts
        again = np.flatnonzero(repeat > 0)
        if len(again):  # the first later use of each cluster in this batch, where none was seen before
            clusters, first = np.unique(cluster[again], return_index=True)
            new = self.second[clusters] < 0
            self.second[clusters[new]] = self.seen + again[first[new]]
            if start is not None:
                self.second_token[clusters[new]] = start[again[first[new]]]

    def _positions(self, position, cluster, start, tokens) -> None:
        """First and last positions, and the largest gap between successive samples of each cluster."""
        if not len(position):
            return
        order = np.argsort(cluster, kind="stable")  # by cluster, positions ascending inside each
        c, p = cluster[order], position[order]
        head = np.r_[True, c[1:] != c[:-1]]
        prev = np.r_[-1, p[:-1]]
        prev[head] = self.last[c[head]]
        has_prev = prev >= 0
        gap = np.where(has_prev, p - prev - 1, 0)
        groups = np.flatnonzero(head)
        tail = np.r_[head[1:], True]
        self.max_gap[c[head]] = np.maximum(self.max_gap[c[head]], np.maximum.reduceat(gap, groups))
        if tokens is not None and start is not None:
            s, t = start[order], tokens[order]
            prev_end = np.r_[0, (s + t)[:-1]]
            prev_end[head] = self.last_token[c[head]]
            gap_tokens = np.where(has_prev, s - prev_end, 0)
            self.max_gap_tokens[c[head]] = np.maximum(self.max_gap_tokens[c[head]],
                                                      np.maximum.reduceat(gap_tokens, groups))
            self.last_token[c[tail]] = (s + t)[tail]
        fresh = self.first[c[head]] < 0
        self.first[c[head][fresh]] = p[head][fresh]
        self.last[c[tail]] = p[tail]

    def _tokens(self, part, cluster, tokens, start) -> None:
        assert self.part_tokens is not None and self.token_part_tokens is not None and self.token_edges is not None
        assert self.token_part_samples is not None
        _add_2d(self.part_tokens, part, cluster, tokens)
        token_part = np.minimum(np.searchsorted(self.token_edges, start, side="right") - 1, self.parts - 1)
        _add_2d(self.token_part_tokens, token_part, cluster, tokens)
        self.token_part_samples += np.bincount(token_part, minlength=self.parts)

    def _stages(self, position, stage, cluster, tokens) -> None:
        for s in np.unique(stage).tolist():
            while len(self.stage_samples) <= s:
                self.stage_samples.append(np.zeros(self.k, np.int64))
                self.stage_tokens.append(np.zeros(self.k, np.int64))
                self.stage_first.append(-1)
                self.stage_last.append(-1)
            here = stage == s
            self.stage_samples[s] += np.bincount(cluster[here], minlength=self.k)
            if tokens is not None:
                self.stage_tokens[s] += np.bincount(cluster[here], weights=tokens[here],
                                                    minlength=self.k).astype(np.int64)
            where = position[here]
            if self.stage_first[s] < 0:
                self.stage_first[s] = int(where[0])
            self.stage_last[s] = int(where[-1])

    def _groups(self, part, doc_id, tokens, start) -> None:
        assert self.groups is not None
        group = self.groups[doc_id]
        _add_2d(self.group_part_samples, part, group)
        if tokens is not None and start is not None and self.token_edges is not None:
            _add_2d(self.group_part_tokens, part, group, tokens)
            token_part = np.minimum(np.searchsorted(self.token_edges, start, side="right") - 1, self.parts - 1)
            _add_2d(self.group_token_part_tokens, token_part, group, tokens)

    def result(self) -> Timeline:
        if self.seen != self.samples:
            raise ValueError(f"order.parquet: holds {self.seen} samples, the manifest says {self.samples}")
        if self.tokens is not None and self.token_pos != self.tokens:
            raise ValueError(f"order.parquet: its samples hold {self.token_pos} tokens, the manifest says "
                             f"{self.tokens}")
        with_tokens = self.tokens is not None
        timeline = Timeline(
            samples=self.samples, tokens=self.tokens, sample_edges=self.edges, part_samples=self.part_samples,
            part_tokens=self.part_tokens, token_edges=self.token_edges, token_part_tokens=self.token_part_tokens,
            token_part_samples=self.token_part_samples,
            cluster_uses=self.cluster_uses, part_uses=self.part_uses, uses=self.uses, first_position=self.first,
            last_position=self.last, second_use=self.second,
            second_use_token=self.second_token if with_tokens else None, max_gap=self.max_gap,
            max_gap_tokens=self.max_gap_tokens if with_tokens else None)
        if self.stage_samples:
            timeline.stage_samples = np.stack(self.stage_samples)
            timeline.stage_tokens = np.stack(self.stage_tokens) if with_tokens else None
            timeline.stage_spans = [(a, b + 1) for a, b in zip(self.stage_first, self.stage_last)]
        if self.groups is not None:
            timeline.group_part_samples = self.group_part_samples
            timeline.group_part_tokens = self.group_part_tokens if with_tokens else None
            timeline.group_token_part_tokens = self.group_token_part_tokens if with_tokens else None
        return timeline


def scan_timeline(batches: Iterable[dict[str, np.ndarray]], *, samples: int, k: int, tokens: int | None = None,
                  parts: int | None = None, groups: np.ndarray | None = None, n_groups: int = 0) -> Timeline:
    """Count :class:`Timeline` from ``order.parquet`` batches (dicts of int64 columns: ``position``, ``cluster``,
    ``repeat``, and ``tokens`` when ``tokens`` (the schedule's total) is given, ``stage`` when present,
    ``doc_id`` with ``groups``). ``samples``/``tokens``: the manifest's totals, checked against the order."""
    scanner = _Scanner(samples=samples, tokens=tokens, k=k, parts=parts or parts_for(samples, k), groups=groups,
                       n_groups=n_groups)
    for batch in batches:
        scanner.add(batch)
    return scanner.result()


def order_columns(available: list[str], *, tokens: bool, groups: bool) -> list[str]:
    """The columns :func:`scan_timeline` reads from an order holding ``available``."""
    columns = ["position", "cluster", "repeat"]
    if tokens:
        columns.append("tokens")
    if "stage" in available:
        columns.append("stage")
    if groups:
        columns.append("doc_id")
    return columns


def _add_2d(counts: np.ndarray, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray | None = None) -> None:
    n_rows, n_cols = counts.shape
    flat = np.bincount(rows * n_cols + cols, weights=weights, minlength=n_rows * n_cols)
    counts += flat.reshape(n_rows, n_cols).astype(np.int64) if weights is not None else flat.reshape(n_rows, n_cols)
