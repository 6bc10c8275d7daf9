"""The sampling law as data: what the sampler draws with, and what it should give.

- :class:`SamplingLaw`: one law (sampler, clip, alpha, balance, per-cluster weight multipliers and clips,
  document scores and their power, the documents kept). Frozen; arrays are read, never written.
- :class:`Budget`: how long the schedule runs (samples, tokens, epochs, or per-cluster token budgets).
- :class:`Stage`: a law that holds until a point of the budget (a fraction of it, a sample or a token
  count); a schedule of several stages changes law at those points, its repetition counts carried.
- :class:`RepeatGap`: no document reappears within ``G`` samples (or tokens) of its last use.
- :func:`resolve_law`: a law against a corpus, as per-cluster arrays (draw weight, clip, token budget):
  what :func:`.sampling.plan_schedule` draws with.
- :func:`law_table`: the resolved law per stage and cluster with the expected share of the samples and
  of the tokens each cluster gets (:func:`water_fill`), the table ``schedule`` writes to ``law.parquet``
  and ``report`` reads instead of re-reading the user's ``--weights`` file.

Pure: arrays in, arrays out, no file I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SAMPLERS = ("clusterclip", "uniform", "random")
BALANCES = ("samples", "tokens")
GAP_UNITS = ("samples", "tokens")


@dataclass(frozen=True, eq=False)
class SamplingLaw:
    """How each sample is drawn (SPEC §1.2 and the balancing options).

    Attributes
    ----------
    sampler : {"clusterclip", "uniform", "random"}
        See :mod:`.sampling`.
    max_repeats : int
        ``clusterclip``: the most times one document may be emitted over the whole order.
    alpha : float
        ``uniform``/``clusterclip``: cluster ``k`` weighs ``size_k ** alpha`` (``balance="tokens"``: its
        tokens ``** alpha``); 0 is uniform over clusters (the paper), 1 proportional to size.
    balance : {"samples", "tokens"}
        ``samples``: cluster ``k`` is drawn ``∝ w_k``. ``tokens``: ``∝ w_k / Lbar_k`` (mean sample length),
        so its expected share of the tokens is ``∝ w_k``.
    cluster_weights : array_like of float, shape (K,), optional
        Multipliers ``>= 0`` of the cluster weights (``w_k = size_k ** alpha * m_k``); 0 leaves a cluster out.
    cluster_max_repeats : array_like of int, shape (K,), optional
        ``clusterclip``: every cluster's own clip (0: ``max_repeats``).
    doc_scores : array_like of float, shape (N,), optional
        Scores ``>= 0``: each pass of a cluster is drawn without replacement ``∝ score ** doc_power``.
    doc_power : float
        The exponent of ``doc_scores``.
    keep : array_like of bool, shape (N,), optional
        Documents left out (False) are never drawn (e.g. semantic duplicates).
    """

    sampler: str = "clusterclip"
    max_repeats: int = 4
    alpha: float = 0.0
    balance: str = "samples"
    cluster_weights: np.ndarray | None = None
    cluster_max_repeats: np.ndarray | None = None
    doc_scores: np.ndarray | None = None
    doc_power: float = 1.0
    keep: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.balance not in BALANCES:
            raise ValueError(f"unknown balance {self.balance!r}; choose one of {', '.join(BALANCES)}")
        if self.sampler == "clusterclip" and _as_count(self.max_repeats, "max_repeats") == 0:
            raise ValueError("max_repeats must be at least 1")
        if self.sampler == "random" and (
                self.balance != "samples" or self.cluster_weights is not None or self.cluster_max_repeats is not None
                or self.doc_scores is not None):
            raise ValueError("the random sampler draws no clusters: balance, cluster weights, per-cluster "
                             "clips, budget_tokens and document scores apply to uniform and clusterclip")
        if self.cluster_max_repeats is not None and self.sampler != "clusterclip":
            raise ValueError("per-cluster clips (cluster_max_repeats) need the clusterclip sampler")

    @property
    def clipped(self) -> bool:
        return self.sampler == "clusterclip"


@dataclass(frozen=True)
class Budget:
    """How long the schedule runs: at most one of

    - ``samples=B``: exactly ``B`` samples;
    - ``tokens=T``: up to the first sample at which the cumulative token count reaches ``T`` (included);
    - ``epochs=E``: ``B = floor(E * N + 0.5)`` samples (may be fractional);
    - ``budget_tokens=T``: ``T`` tokens split over the clusters by weight (Hamilton apportionment into
      ``T_k``); cluster ``k`` leaves at the first sample that brings it to ``T_k`` tokens (or at its clip)
      and the schedule ends when every cluster has left.

    None of them: one epoch.
    """

    samples: int | None = None
    tokens: int | None = None
    epochs: float | None = None
    budget_tokens: int | None = None

    def __post_init__(self) -> None:
        if sum(b is not None for b in (self.samples, self.tokens, self.epochs, self.budget_tokens)) > 1:
            raise ValueError("give at most one budget: samples, tokens, epochs or budget_tokens")
        if self.samples is not None:
            object.__setattr__(self, "samples", _as_count(self.samples, "samples"))
        for name in ("tokens", "budget_tokens"):
            value = getattr(self, name)
            if value is not None:
                value = _as_count(value, name)
                if value == 0:
                    raise ValueError(f"{name} must be positive")
                object.__setattr__(self, name, value)
        if self.epochs is not None:
            epochs_to_samples(self.epochs, 0)  # checks the value

    @property
    def in_tokens(self) -> bool:
        """The budget counts tokens (``tokens``), not samples."""
        return self.tokens is not None

    def total_samples(self, n_docs: int) -> int | None:
        """The budget in samples (None for a token budget or per-cluster token budgets)."""
        if self.tokens is not None or self.budget_tokens is not None:
            return None
        if self.samples is not None:
            return self.samples
        return epochs_to_samples(1.0 if self.epochs is None else self.epochs, n_docs)


@dataclass(frozen=True)
class Stage:
    """A law that holds until a point of the budget: at most one of ``until`` (a fraction of the budget,
    ``0 < until <= 1``), ``until_samples`` or ``until_tokens`` (counts from the start of the order); none:
    to the end of the budget. Stages follow each other; each ends strictly after the one before."""

    law: SamplingLaw
    until: float | None = None
    until_samples: int | None = None
    until_tokens: int | None = None

    def __post_init__(self) -> None:
        given = [v for v in (self.until, self.until_samples, self.until_tokens) if v is not None]
        if len(given) > 1:
            raise ValueError("a stage ends at one point: give at most one of until, until_samples, until_tokens")
        if self.until is not None:
            until = float(self.until)
            if not (np.isfinite(until) and 0 < until <= 1):
                raise ValueError(f"a stage's until is a fraction of the budget in (0, 1], got {self.until!r}")
        for name in ("until_samples", "until_tokens"):
            value = getattr(self, name)
            if value is not None and _as_count(value, name) == 0:
                raise ValueError(f"{name} must be positive")

    def describe(self) -> str:
        """``until 0.25``, ``until sample 1000``, ``until 5000 tokens`` or ``to the end``."""
        if self.until is not None:
            return f"until {self.until:g} of the budget"
        if self.until_samples is not None:
            return f"until sample {self.until_samples:,}"
        if self.until_tokens is not None:
            return f"until {self.until_tokens:,} tokens"
        return "to the end of the budget"


@dataclass(frozen=True)
class RepeatGap:
    """No document reappears within ``count`` samples (``unit="tokens"``: tokens) of its last use: at least
    ``count`` other samples (tokens of other samples) lie between two uses of one document. 0: no gap."""

    count: int = 0
    unit: str = "samples"

    def __post_init__(self) -> None:
        _as_count(self.count, "the repeat gap")
        if self.unit not in GAP_UNITS:
            raise ValueError(f"unknown gap unit {self.unit!r}; choose one of {', '.join(GAP_UNITS)}")

    def __bool__(self) -> bool:
        return self.count > 0

    def describe(self) -> str:
        return f"{self.count:,} {self.unit}"


def as_stages(law: SamplingLaw | Sequence[Stage]) -> list[Stage]:
    """One law as a single stage to the end; a sequence of stages checked: at least one, the same kept
    documents throughout, and only the last may run to the end of the budget without an ``until``."""
    if isinstance(law, SamplingLaw):
        return [Stage(law)]
    stages = list(law)
    if not stages or not all(isinstance(s, Stage) for s in stages):
        raise ValueError("give a SamplingLaw or a non-empty sequence of Stage")
    for i, stage in enumerate(stages[:-1]):
        if stage.until is None and stage.until_samples is None and stage.until_tokens is None:
            raise ValueError(f"stage {i + 1} of {len(stages)} has no end: only the last stage runs to the end "
                             "of the budget")
    if len(stages) > 1:
        keeps = [s.law.keep for s in stages]
        if any((k is None) != (keeps[0] is None) or (k is not None and not np.array_equal(k, keeps[0]))
               for k in keeps):
            raise ValueError("every stage must keep the same documents (one keep mask for the whole order)")
        if any(s.law.sampler == "random" for s in stages):
            raise ValueError("the random sampler draws no clusters and cannot be one stage of several; "
                             "use the uniform sampler with alpha 1 (drawn in proportion to size)")
    return stages


# ----------------------------------------------------------------------------- a law against a corpus


@dataclass(frozen=True, eq=False)
class ResolvedLaw:
    """A law against the cluster labels (and document lengths): what the sampler draws with.

    ``labels`` and every per-cluster array include, when the law leaves documents out, one extra cluster
    (the last) holding them, never drawn.
    """

    law: SamplingLaw
    labels: np.ndarray  # int64 [N]
    sizes: np.ndarray  # int64 [K]: documents of each cluster
    weights: np.ndarray  # float64 [K]: draw weight (0: never drawn)
    clip: int | np.ndarray | None  # the most uses per document (per cluster), None without a clip
    cluster_budget: np.ndarray | None  # int64 [K]: per-cluster token budgets
    cluster_tokens: np.ndarray | None  # int64 [K]: tokens of each cluster's documents (one sample each)
    doc_log_weight: np.ndarray | None  # float64 [N]: log(score ** power), -inf for score 0

    @property
    def n_clusters(self) -> int:
        return int(self.sizes.shape[0])

    @property
    def pool(self) -> np.ndarray:
        """Clusters that are drawn."""
        return self.weights > 0


def n_clusters_of(labels: np.ndarray, laws: Sequence[SamplingLaw]) -> int:
    """Clusters of the labels and of every per-cluster array of the laws (before the left-out cluster)."""
    n = (int(labels.max()) + 1) if labels.shape[0] else 0
    for law in laws:
        for a in (law.cluster_weights, law.cluster_max_repeats):
            if a is not None:
                n = max(n, len(np.atleast_1d(a)))
    return n


def resolve_law(law: SamplingLaw, labels: np.ndarray, lengths: np.ndarray | None, n_clusters: int, *,
                budget_tokens: int | None = None, keep: np.ndarray | None = None) -> ResolvedLaw:
    """``law`` against ``labels`` (int64, checked) for a cluster sampler: draw weights, clips and token budgets.

    ``n_clusters`` counts the clusters before the extra one of the left-out documents (``keep``: the law's
    keep mask, already checked and None when it keeps everything)."""
    n_docs = labels.shape[0]
    if keep is not None:  # left-out documents go to an extra cluster that is never drawn
        labels = labels.copy()
        labels[~keep] = n_clusters
        n_clusters += 1
    sizes = np.bincount(labels, minlength=n_clusters) if n_docs else np.zeros(n_clusters, np.int64)
    extended = (law.balance != "samples" or law.cluster_weights is not None or budget_tokens is not None
                or keep is not None)
    cluster_budget = cluster_tokens = None
    if extended:
        weights, cluster_budget, cluster_tokens = _extended_weights(
            labels, sizes, law.alpha, law.balance, law.cluster_weights, lengths, budget_tokens, keep)
    else:
        weights = cluster_weights(sizes, law.alpha)
    clip: int | np.ndarray | None = None
    if law.clipped:
        clip = int(law.max_repeats)
        if law.cluster_max_repeats is not None:
            clip = _per_cluster_repeats(law.cluster_max_repeats, clip, n_clusters)
    doc_logw = _doc_log_weights(law.doc_scores, law.doc_power, n_docs) if law.doc_scores is not None else None
    return ResolvedLaw(law, labels, sizes, weights, clip, cluster_budget, cluster_tokens, doc_logw)


def check_keep(keep, n_docs: int) -> np.ndarray | None:
    """``keep`` as a boolean array of ``n_docs`` (None when it keeps every document)."""
    if keep is None:
        return None
    keep = np.asarray(keep)
    if keep.shape != (n_docs,) or keep.dtype != bool:
        raise ValueError(f"keep must be a boolean array of {n_docs} entries")
    return None if keep.all() else keep


def hamilton_apportionment(total: int, weights) -> np.ndarray:
    """Split ``total`` into integers ``T_k`` that sum to ``total``, ``∝ weights`` by the largest
    remainder (Hamilton) method: every ``T_k`` is its quota ``total * w_k / sum(w)`` rounded down or
    up, and the units left after rounding down go to the largest fractional parts (ties: the lower
    index). A weight of 0 gets 0."""
    w = np.asarray(weights, np.float64)
    total = int(total)
    if w.ndim != 1 or np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("apportionment needs finite, non-negative weights with a positive sum")
    quota = w / w.sum() * total
    share = np.minimum(np.floor(quota), total).astype(np.int64)
    fraction = quota - share
    left = total - int(share.sum())
    order = np.lexsort((np.arange(len(w)), -fraction))  # largest remainder first
    order = order[w[order] > 0]
    while left < 0:  # rounding of huge totals only: take back from the smallest remainders
        for k in order[::-1]:
            if left == 0:
                break
            if share[k] > 0:
                share[k] -= 1
                left += 1
    if left > 0:
        extra: np.ndarray = np.zeros(len(w), np.int64)
        full, rest = divmod(left, len(order))
        extra[order] = full
        extra[order[:rest]] += 1
        share += extra
    return share


def cluster_token_sums(labels: np.ndarray, lengths: np.ndarray, n_clusters: int) -> np.ndarray:
    """Tokens of every cluster (sum of its documents' sample lengths), exact int64.

    One ``bincount`` (O(N)) while the total stays below 2**53, where float64 sums of integers are
    exact; a sort by cluster (O(N log N)) beyond."""
    if len(lengths) and int(lengths.max()) * len(lengths) < 2**53:  # bounds every partial sum (lengths >= 0)
        return np.bincount(labels, weights=lengths, minlength=n_clusters).astype(np.int64)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=n_clusters)
    sums: np.ndarray = np.zeros(n_clusters, np.int64)
    nonempty = counts > 0
    starts = (np.cumsum(counts) - counts)[nonempty]
    if len(starts):
        sums[nonempty] = np.add.reduceat(lengths[order], starts)
    return sums


def cluster_weights(sizes: np.ndarray, alpha: float) -> np.ndarray:
    """Weight ``size ** alpha`` of every cluster; 0 for clusters without documents."""
    alpha = float(alpha)
    if not np.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha!r}")
    nonempty = sizes > 0
    weights = np.zeros(sizes.shape[0], np.float64)
    weights[nonempty] = 1.0 if alpha == 0 else np.power(sizes[nonempty].astype(np.float64), alpha)
    if not np.all(np.isfinite(weights)) or np.any(weights[nonempty] == 0):
        raise ValueError(f"alpha={alpha} makes some cluster weights overflow or vanish")
    return weights


def _extended_weights(labels, sizes, alpha, balance, multipliers, lengths, budget_tokens, keep):
    """Draw weights (and token budgets) when balancing tokens, weighting clusters, budgeting tokens per
    cluster or leaving documents out. Returns ``(draw_weights, cluster_budget or None, cluster_tokens
    or None)``; a cluster with draw weight 0 is not in the pool."""
    n_clusters = len(sizes)
    cluster_tokens = cluster_token_sums(labels, lengths, n_clusters) if lengths is not None else None
    excluded: np.ndarray = np.zeros(n_clusters, bool)
    if keep is not None and not keep.all():
        excluded[-1] = True  # the extra cluster of the left-out documents
    base_sizes = cluster_tokens if balance == "tokens" else sizes
    base_sizes = np.where(excluded, 0, base_sizes)
    if balance == "tokens":
        silent = np.flatnonzero((sizes > 0) & (cluster_tokens == 0) & ~excluded)
        if len(silent):
            raise ValueError(f"cluster {silent[0]} holds documents but no tokens, so it cannot get a share of "
                             f"the tokens; balance samples instead")
    weights = cluster_weights(base_sizes, alpha)
    if multipliers is not None:
        m = np.asarray(multipliers, np.float64)
        if m.ndim != 1:
            raise ValueError("cluster_weights must be one-dimensional")
        if np.any(~np.isfinite(m)) or np.any(m < 0):
            raise ValueError("cluster_weights must be finite and non-negative")
        full = np.ones(n_clusters)
        full[: min(len(m), n_clusters)] = m[:n_clusters]
        weights = weights * full
        if not np.any(weights > 0) and sizes.sum():
            raise ValueError("every cluster with documents has weight 0, so nothing can be drawn")
    cluster_budget = None
    if budget_tokens is not None:
        if cluster_tokens is None:
            raise ValueError("budget_tokens needs the tokens of each cluster (the documents' lengths)")
        cluster_budget = hamilton_apportionment(budget_tokens, weights)
        drawn = cluster_budget > 0
        silent = np.flatnonzero(drawn & (cluster_tokens == 0))
        if len(silent):
            raise ValueError(f"cluster {silent[0]} has a token budget but its documents hold no tokens")
        weights = np.zeros(n_clusters)
        # ∝ T_k / mean length: every cluster spends its budget at the same relative speed
        weights[drawn] = cluster_budget[drawn] * (sizes[drawn] / cluster_tokens[drawn])
    elif balance == "tokens":
        drawn = weights > 0
        weights = np.where(drawn, weights * sizes / np.maximum(cluster_tokens, 1), 0.0)
    return weights, cluster_budget, cluster_tokens


def _per_cluster_repeats(values, max_repeats: int, n_clusters: int) -> np.ndarray:
    r = np.asarray(values)
    if r.ndim != 1 or (r.size and not np.issubdtype(r.dtype, np.integer)) or np.any(r < 0):
        raise ValueError("cluster_max_repeats must be non-negative integers (0: max_repeats)")
    if len(r) > n_clusters:
        raise ValueError(f"cluster_max_repeats has {len(r)} entries but there are {n_clusters} clusters")
    full: np.ndarray = np.full(n_clusters, max_repeats, np.int64)
    full[: len(r)] = np.where(r > 0, r, max_repeats)
    return full


def _doc_log_weights(scores, power, n_docs: int) -> np.ndarray:
    """``log(score ** power)`` per document (``-inf`` for weight 0), without overflow."""
    scores = np.asarray(scores, np.float64)
    if scores.shape != (n_docs,):
        raise ValueError(f"doc_scores has {scores.size} entries but labels has {n_docs}")
    if np.any(~np.isfinite(scores)) or np.any(scores < 0):
        raise ValueError("doc_scores must be finite and non-negative")
    power = float(power)
    if not np.isfinite(power) or power < 0:
        raise ValueError(f"doc_power must be a finite number >= 0, got {power!r}")
    if power == 0:
        return np.zeros(n_docs)
    with np.errstate(divide="ignore"):
        return power * np.log(scores)


def _as_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def epochs_to_samples(epochs, n_docs: int) -> int:
    """``B = floor(E * N + 0.5)``: fractional epochs round half up to whole samples."""
    epochs = float(epochs)
    if not np.isfinite(epochs) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative number, got {epochs!r}")
    return int(np.floor(epochs * n_docs + 0.5))


# ----------------------------------------------------------------------------- expected shares


def water_fill(w, cap, samples: float) -> np.ndarray:
    """Expected draws per cluster when clusters are drawn ``∝ w`` among those below their ``cap``:
    ``min(cap_c, level × w_c)`` with ``level`` such that the draws sum to ``samples`` (all caps
    when they sum to less)."""
    w = np.asarray(w, np.float64)
    cap = np.where(w > 0, np.asarray(cap, np.float64), 0.0)
    if samples >= cap.sum():
        return cap
    # level at which cluster c hits its cap; clusters cap out in increasing order of it
    active = w > 0
    hit = np.full(len(w), np.inf)
    hit[active] = cap[active] / w[active]
    order = np.argsort(hit, kind="stable")
    capped_total = np.r_[0.0, np.cumsum(cap[order])]  # draws of the first j clusters to cap out
    weight_left = np.r_[w[order][::-1].cumsum()[::-1], 0.0]  # weight of the clusters from j on
    # with the first j clusters capped, the level is (samples - capped_total[j]) / weight_left[j];
    # the total drawn at level hit[order[j]] grows with j, so the right j is the first whose
    # level does not pass the next cap-out level
    with np.errstate(divide="ignore", invalid="ignore"):
        levels = (samples - capped_total[:-1]) / weight_left[:-1]
    j = int(np.argmax(levels <= hit[order]))
    level = levels[j]
    return np.minimum(cap, level * w)


def expected_counts(sizes, mean_tokens, *, sampler: str, samples: float, max_repeats=4, alpha: float = 0.0,
                    balance: str = "samples", multipliers=None, token_budget=None, used=None) -> np.ndarray:
    """Expected samples per cluster (float64 ``[K]``) of a law over ``samples`` draws, the water-filling of
    :func:`water_fill`:

    - ``random``: ``∝ size`` (every document once per epoch);
    - otherwise ``w_k = base_k ** alpha × m_k`` with ``base_k`` the size (``balance="samples"``) or the
      cluster's tokens ``size_k × mean_tokens_k`` (``"tokens"``) and ``m_k`` the ``multipliers``; cluster
      ``k`` is drawn ``∝ w_k`` (samples) or ``∝ w_k / mean_tokens_k`` (tokens), up to its clip
      ``max_repeats_k × size_k`` (``clusterclip``; ``max_repeats`` may be one per cluster) less the
      ``used`` samples earlier stages took from it;
    - with ``token_budget`` (``T_k``) cluster ``k`` spends ``min(T_k, clip_k × size_k × mean_tokens_k)``
      tokens, i.e. that over ``mean_tokens_k`` samples.

    It is the expectation of :func:`.sampling.plan_schedule`'s counts up to the randomness of the exit
    times. ``mean_tokens`` may be None when neither ``balance="tokens"`` nor a token budget needs it.
    """
    sizes = np.asarray(sizes, np.float64)
    if sampler == "random":
        return samples * sizes / sizes.sum() if sizes.sum() and samples > 0 else np.zeros_like(sizes)
    length = np.ones(len(sizes)) if mean_tokens is None else np.asarray(mean_tokens, np.float64)
    cap = np.asarray(max_repeats, np.float64) * sizes if sampler == "clusterclip" else np.full(len(sizes), np.inf)
    if used is not None:
        cap = np.maximum(cap - np.asarray(used, np.float64), 0.0)
    if token_budget is not None:
        budget = np.asarray(token_budget, np.float64)[: len(sizes)]
        budget = np.r_[budget, np.zeros(len(sizes) - len(budget))]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(length > 0, np.minimum(budget, cap * length) / length, 0.0)
    base = sizes * length if balance == "tokens" else sizes
    w = np.zeros_like(sizes)
    w[base > 0] = base[base > 0] ** alpha
    if multipliers is not None:
        w = w * np.asarray(multipliers, np.float64)
    if balance == "tokens":
        w = np.where(length > 0, w / np.where(length > 0, length, 1.0), 0.0)
    if w.sum() == 0 or samples <= 0:
        return np.zeros_like(sizes)
    if sampler != "clusterclip":
        return samples * w / w.sum()
    return water_fill(w, cap, samples)


def shares_of(counts) -> np.ndarray:
    """``counts`` divided by their sum (all zeros when they sum to 0)."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    return counts / total if total else counts


# ----------------------------------------------------------------------------- the table of law.parquet

#: columns of :func:`law_table`, in order (``law.parquet``)
LAW_COLUMNS = ("stage", "cluster", "size", "multiplier", "weight", "clip", "token_budget", "expected_samples",
               "expected_sample_share", "expected_token_share")


@dataclass(frozen=True)
class StageSpan:
    """Where a stage of a planned order lies: samples ``[start, stop)``."""

    start: int
    stop: int

    @property
    def samples(self) -> int:
        return self.stop - self.start


def law_table(stages: Sequence[Stage], labels, spans: Sequence[StageSpan], *, lengths=None, used=None,
              budget_tokens: int | None = None, cluster_budget=None, n_clusters: int | None = None,
              first_stage: int = 0) -> dict[str, np.ndarray]:
    """The resolved law of every stage, one row per stage and cluster (``LAW_COLUMNS``).

    - ``size``: documents the stage can draw from the cluster (left-out ones not counted);
    - ``multiplier``: the weight multiplier (``--weights``; 1 when none);
    - ``weight``: the cluster's draw probability at the start of the stage (its draw weight over the
      sum; for ``random`` its share of the documents);
    - ``clip``: the most uses of a document of the cluster (0: no clip);
    - ``token_budget``: its per-cluster token budget (-1: none);
    - ``expected_samples`` and the two shares: :func:`expected_counts` over the stage's planned length
      (``spans``), with the clip less what earlier stages are expected to use (``used``: the samples of
      each cluster before the first stage, e.g. a continued order's prefix); token shares are expected
      samples × the cluster's mean sample length (NaN without ``lengths``).

    ``stage`` numbers the rows from ``first_stage``.
    """
    labels = np.asarray(labels, np.int64)
    lengths = None if lengths is None else np.asarray(lengths, np.int64)
    laws = [s.law for s in stages]
    k = n_clusters if n_clusters is not None else n_clusters_of(labels, laws)
    keep = check_keep(laws[0].keep, labels.shape[0])
    drawable = labels if keep is None else labels[keep]
    sizes = np.bincount(drawable, minlength=k)[:k].astype(np.int64)
    mean = None
    if lengths is not None:
        tokens = cluster_token_sums(drawable, lengths if keep is None else lengths[keep], k)[:k]
        mean = np.where(sizes > 0, tokens / np.maximum(sizes, 1), 0.0)
    taken = np.zeros(k) if used is None else np.asarray(used, np.float64)[:k].copy()
    columns: dict[str, list] = {name: [] for name in LAW_COLUMNS}
    for i, (stage, span) in enumerate(zip(stages, spans)):
        law = stage.law
        multiplier = np.ones(k)
        if law.cluster_weights is not None:
            m = np.asarray(law.cluster_weights, np.float64)[:k]
            multiplier[: len(m)] = m
        clip: np.ndarray = np.zeros(k, np.int64)
        if law.clipped:
            clip[:] = law.max_repeats
            if law.cluster_max_repeats is not None:
                clip = _per_cluster_repeats(law.cluster_max_repeats, law.max_repeats, k)
        budget: np.ndarray = np.full(k, -1, np.int64)
        if cluster_budget is not None:
            budget = np.asarray(cluster_budget, np.int64)[:k]
        counts = expected_counts(sizes, mean, sampler=law.sampler, samples=span.samples, max_repeats=clip,
                                 alpha=law.alpha, balance=law.balance, multipliers=multiplier,
                                 token_budget=cluster_budget if budget_tokens is not None else None, used=taken)
        draw = expected_counts(sizes, mean, sampler=law.sampler if law.sampler == "random" else "uniform",
                               samples=1.0, alpha=law.alpha, balance=law.balance, multipliers=multiplier)
        columns["stage"].append(np.full(k, first_stage + i, np.int32))
        columns["cluster"].append(np.arange(k, dtype=np.int32))
        columns["size"].append(sizes)
        columns["multiplier"].append(multiplier)
        columns["weight"].append(draw)
        columns["clip"].append(clip)
        columns["token_budget"].append(budget)
        columns["expected_samples"].append(counts)
        columns["expected_sample_share"].append(shares_of(counts))
        columns["expected_token_share"].append(shares_of(counts * mean) if mean is not None
                                               else np.full(k, np.nan))
        taken = taken + counts
    return {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in columns.items()}


__all__ = ["BALANCES", "Budget", "GAP_UNITS", "LAW_COLUMNS", "RepeatGap", "ResolvedLaw", "SAMPLERS", "SamplingLaw",
           "Stage", "StageSpan", "as_stages", "cluster_token_sums", "cluster_weights", "epochs_to_samples",
           "expected_counts", "hamilton_apportionment", "law_table", "resolve_law", "shares_of", "water_fill"]
