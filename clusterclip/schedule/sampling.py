"""Plan a training order: ClusterClip Sampling and its two baselines (SPEC §1.2).

Pure and vectorised: arrays in, arrays out, no file I/O.

Samplers
--------
``random``
    The whole corpus in a fresh random permutation per epoch, epochs concatenated.
``uniform``
    Each step picks a cluster with probability proportional to ``size_k ** alpha`` (``alpha=0``:
    uniform over the clusters that have documents, as in the paper) and emits that cluster's next
    document. Inside a cluster the documents come as successive independent uniform random
    permutations ("passes"), so no document repeats before all others of its cluster were used.
``clusterclip``
    ``uniform`` plus the repetition clip: a document is emitted at most ``max_repeats`` times, so
    a cluster leaves the pool after ``max_repeats`` full passes, and the clusters still active are
    drawn in proportion to their weights among themselves.

How the vectorised planner stays exact
--------------------------------------
Cluster choices are drawn in blocks of iid draws from the weights of the clusters that were
active when the block started. A draw whose cluster has reached its cap earlier in the same block
is *rejected* (skipped). Because a cluster's draws are accepted exactly until its cap is reached,
the accepted draws are its first ``cap`` occurrences in the block, which one sort of the block by
``(cluster, time)`` finds for all clusters at once. This is plain rejection sampling: given the
past, the next accepted draw is cluster ``k`` with probability ``w_k / sum(w of active)`` - the
per-step process of the specification, without a Python loop per sample and without one phase
per exhaustion event. Rejections only happen for clusters that run out inside a block, and the
next block is drawn from the active clusters only.

Weighted choices (``alpha != 0``) use the same idea: clusters are grouped by the binary exponent
of their weight, a group is chosen by its envelope mass ``count * max_weight`` and a member
uniformly, and the member is kept with probability ``weight / max_weight`` (at least 1/2).

Passes inside a cluster are independent uniform random permutations (Fisher-Yates), drawn when
the pass starts, all passes of equal length in one call (:func:`_shuffle_rows`).

Determinism and prefix stability
--------------------------------
Everything is drawn from one ``numpy.random.default_rng(seed)`` (PCG64) with operations whose
results do not depend on the platform or on threads. Block sizes depend only on the block index
and the pool state, never on the budget, so **the schedule for a budget is a prefix of the
schedule for any larger budget with the same seed** (``--samples``, ``--tokens`` and ``--epochs``
alike). The one caveat: for ``alpha`` other than 0 and 1 the weights ``size ** alpha`` come from
the platform's ``pow``, which may differ in the last bit between platforms.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

import numpy as np

SAMPLERS = ("clusterclip", "uniform", "random")
BALANCES = ("samples", "tokens")

# Blocks grow geometrically from _MIN_BLOCK to _MAX_BLOCK draws: small budgets stay cheap, large
# ones pay the per-block O(K) bookkeeping once per million samples, and a block's temporaries
# stay small enough to be reused from the heap instead of freshly mapped.
_MIN_BLOCK = 1 << 12
_MAX_BLOCK = 1 << 20
_LOW32 = np.int64(0xFFFFFFFF)

_Block = tuple[np.ndarray, np.ndarray, np.ndarray]  # doc_id int64, cluster int32, repeat int32


@dataclass(frozen=True)
class Schedule:
    """A planned training order, one entry per sample.

    Attributes
    ----------
    doc_id : numpy.ndarray
        int64 ``[B]``: document index (0..N-1) of each sample, in training order.
    cluster : numpy.ndarray
        int32 ``[B]``: cluster of that document (``labels[doc_id]``).
    repeat : numpy.ndarray
        int32 ``[B]``: how many times the document was emitted before (0 for its first use).
    exhausted : bool
        True when the clip emptied the pool: every document was used ``max_repeats`` times
        (``clusterclip`` only; the schedule then has exactly ``max_repeats * N`` samples).
    cluster_budget : numpy.ndarray or None
        int64 ``[K]``: with ``budget_tokens``, the token budget of every cluster (Hamilton
        apportionment of the total by weight); None otherwise.
    """

    doc_id: np.ndarray
    cluster: np.ndarray
    repeat: np.ndarray
    exhausted: bool = False
    cluster_budget: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.doc_id.shape[0])


class BudgetError(ValueError):
    """The repetition clip cannot meet the budget.

    Attributes
    ----------
    possible_samples : int
        The most samples the clip allows (``max_repeats * N``).
    possible_tokens : int or None
        The most tokens the clip allows (``max_repeats * sum(lengths)``), for a token budget.
    """

    def __init__(self, message: str, possible_samples: int, possible_tokens: int | None = None):
        super().__init__(message)
        self.possible_samples = possible_samples
        self.possible_tokens = possible_tokens


def plan_schedule(
    labels,
    *,
    sampler: str = "clusterclip",
    max_repeats: int = 4,
    alpha: float = 0.0,
    samples: int | None = None,
    tokens: int | None = None,
    epochs: float | None = None,
    lengths=None,
    seed: int = 0,
    allow_partial: bool = False,
    balance: str = "samples",
    cluster_weights=None,
    cluster_max_repeats=None,
    budget_tokens: int | None = None,
    doc_scores=None,
    doc_power: float = 1.0,
    keep=None,
) -> Schedule:
    """Plan the training order of a clustered corpus.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        Cluster id (``>= 0``) of each document. Cluster ids without documents are never drawn.
    sampler : {"clusterclip", "uniform", "random"}
        See the module docstring.
    max_repeats : int
        ``clusterclip`` only: the most times one document may be emitted (default 4).
    alpha : float
        ``uniform``/``clusterclip``: clusters are drawn with weight ``size ** alpha`` (0: uniform
        over clusters, the paper; 1: proportional to size). With ``balance="tokens"`` the size is
        the cluster's tokens.
    samples, tokens, epochs
        The budget; at most one. ``samples=B``: exactly ``B`` samples. ``tokens=T``: stop at the
        first sample at which the cumulative token count reaches ``T`` (that sample included).
        ``epochs=E`` (may be fractional): ``B = floor(E * N + 0.5)`` samples. None: one epoch.
    lengths : array_like of int, shape (N,), optional
        Tokens per document (one sample of it); required for ``tokens``, ``balance="tokens"`` and
        ``budget_tokens``.
    seed : int
        Seed of ``numpy.random.default_rng``; same seed, same schedule on any machine.
    allow_partial : bool
        ``clusterclip``: when the clip empties the pool before the budget, return the ``max_repeats
        * N`` possible samples (``exhausted=True``) instead of raising :class:`BudgetError`.
    balance : {"samples", "tokens"}
        ``samples``: cluster ``k`` is drawn with probability ``∝ w_k`` (its expected share of the
        samples is ``∝ w_k``). ``tokens``: drawn ``∝ w_k / Lbar_k`` (``Lbar_k``: mean sample length
        of its documents), so its expected share of the tokens is ``∝ w_k``.
    cluster_weights : array_like of float, shape (K,), optional
        A multiplier ``>= 0`` of every cluster's weight (``w_k = size_k ** alpha * m_k``); a cluster
        with multiplier 0 is never drawn.
    cluster_max_repeats : array_like of int, shape (K,), optional
        ``clusterclip``: every cluster's own clip (0: ``max_repeats``).
    budget_tokens : int, optional
        A budget (instead of samples/tokens/epochs): ``T`` tokens split over the clusters by
        ``w_k`` with largest-remainder (Hamilton) apportionment into ``T_k``; cluster ``k`` is
        drawn ``∝ T_k / Lbar_k`` and leaves at the first sample that brings it to ``T_k`` tokens
        (or at its clip); the schedule ends when every cluster has left.
    doc_scores : array_like of float, shape (N,), optional
        Scores ``>= 0``: every pass of a cluster is drawn without replacement with probability
        ``∝ score ** doc_power`` among its documents not yet drawn in the pass (successive
        sampling; Efraimidis-Spirakis keys). None: uniform permutations.
    doc_power : float
        The exponent ``beta`` of ``doc_scores``.
    keep : array_like of bool, shape (N,), optional
        Documents left out (False) are never drawn (e.g. semantic duplicates).

    Returns
    -------
    Schedule

    Raises
    ------
    BudgetError
        ``clusterclip`` cannot meet the budget and ``allow_partial`` is False.
    ValueError
        Invalid arguments.
    """
    labels = _as_int_array(labels, "labels")
    n_docs = labels.shape[0]
    if n_docs and labels.max() >= 2**31:
        raise ValueError(f"cluster ids must be below 2**31 (found {labels.max()})")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if balance not in BALANCES:
        raise ValueError(f"unknown balance {balance!r}; choose one of {', '.join(BALANCES)}")
    if sum(b is not None for b in (samples, tokens, epochs, budget_tokens)) > 1:
        raise ValueError("give at most one budget: samples, tokens, epochs or budget_tokens")
    if lengths is not None:
        lengths = _as_int_array(lengths, "lengths")
        if lengths.shape != labels.shape:
            raise ValueError(f"lengths has {lengths.shape[0]} entries but labels has {n_docs}")
    if lengths is None and (balance == "tokens" or budget_tokens is not None):
        raise ValueError("balancing tokens or a per-cluster token budget needs the document lengths (lengths=)")
    keep = _as_keep(keep, n_docs)
    if tokens is not None:
        if lengths is None:
            raise ValueError("a token budget needs the document lengths (lengths=)")
        tokens = _as_count(tokens, "tokens")
        if tokens == 0:
            raise ValueError("tokens must be positive")
        n_samples = None
    elif budget_tokens is not None:
        budget_tokens = _as_count(budget_tokens, "budget_tokens")
        if budget_tokens == 0:
            raise ValueError("budget_tokens must be positive")
        n_samples = None
    elif samples is not None:
        n_samples = _as_count(samples, "samples")
    else:
        n_samples = epochs_to_samples(1.0 if epochs is None else epochs, n_docs)

    rng = np.random.default_rng(seed)
    cluster_budget = None
    if sampler == "random":
        if (balance != "samples" or cluster_weights is not None or cluster_max_repeats is not None
                or budget_tokens is not None or doc_scores is not None):
            raise ValueError("the random sampler draws no clusters: balance, cluster weights, per-cluster "
                             "clips, budget_tokens and document scores apply to uniform and clusterclip")
        pool = np.flatnonzero(keep) if keep is not None else None
        _check_reachable(tokens, lengths if pool is None else lengths[pool] if lengths is not None else None,
                         n_samples, n_docs if pool is None else len(pool))
        blocks = _random_blocks(rng, labels, pool)
        possible = None
    else:
        n_clusters = max([(int(labels.max()) + 1) if n_docs else 0]
                         + [len(np.atleast_1d(a)) for a in (cluster_weights, cluster_max_repeats) if a is not None])
        if keep is not None:  # left-out documents go to an extra cluster that is never drawn
            labels = labels.copy()
            labels[~keep] = n_clusters
            n_clusters += 1
        sizes = np.bincount(labels, minlength=n_clusters) if n_docs else np.zeros(n_clusters, np.int64)
        extended = (balance != "samples" or cluster_weights is not None or budget_tokens is not None
                    or keep is not None)
        if extended:
            weights, cluster_budget, cluster_tokens = _extended_weights(
                labels, sizes, alpha, balance, cluster_weights, lengths, budget_tokens, keep)
        else:
            weights, cluster_tokens = _cluster_weights(sizes, alpha), None
        repeats = None
        if sampler == "clusterclip":
            max_repeats = _as_count(max_repeats, "max_repeats")
            if max_repeats == 0:
                raise ValueError("max_repeats must be at least 1")
            repeats = max_repeats
            if cluster_max_repeats is not None:
                repeats = _per_cluster_repeats(cluster_max_repeats, max_repeats, n_clusters)
            pool = weights > 0
            possible = int((sizes * repeats)[pool].sum())
            possible_tokens = None
            if lengths is not None and tokens is not None:
                if cluster_tokens is None:
                    cluster_tokens = _cluster_token_sums(labels, lengths, n_clusters)
                possible_tokens = int((cluster_tokens * repeats)[pool].sum())
            if budget_tokens is None:
                clip = f"--max-repeats {max_repeats}" + (" and the per-cluster clips"
                                                         if cluster_max_repeats is not None else "")
                n_samples, tokens = _clip_budget(clip, possible, possible_tokens, n_samples, tokens, allow_partial)
        else:
            if cluster_max_repeats is not None:
                raise ValueError("per-cluster clips (cluster_max_repeats) need the clusterclip sampler")
            possible = None
            pool = weights > 0
            _check_reachable(tokens, lengths if lengths is None or keep is None else lengths[keep],
                             n_samples, int(sizes[pool].sum()))
        doc_logw = _doc_log_weights(doc_scores, doc_power, n_docs) if doc_scores is not None else None
        stream = _ClusterStream(labels, sizes, weights, repeats, rng, lengths=lengths, budget=cluster_budget,
                                doc_logw=doc_logw)
        blocks = stream.blocks()
    doc_id, cluster, repeat = _take_budget(blocks, n_samples, tokens, lengths)
    exhausted = sampler == "clusterclip" and bool(possible) and len(doc_id) == possible
    return Schedule(doc_id=doc_id, cluster=cluster, repeat=repeat, exhausted=exhausted,
                    cluster_budget=cluster_budget)


# ----------------------------------------------------------------------------- weights and budgets


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
        extra = np.zeros(len(w), np.int64)
        full, rest = divmod(left, len(order))
        extra[order] = full
        extra[order[:rest]] += 1
        share += extra
    return share


def _cluster_token_sums(labels: np.ndarray, lengths: np.ndarray, n_clusters: int) -> np.ndarray:
    """Tokens of every cluster (sum of its documents' sample lengths), exact int64.

    One ``bincount`` (O(N)) while the total stays below 2**53, where float64 sums of integers are
    exact; a sort by cluster (O(N log N)) beyond."""
    if len(lengths) and int(lengths.max()) * len(lengths) < 2**53:  # bounds every partial sum (lengths >= 0)
        return np.bincount(labels, weights=lengths, minlength=n_clusters).astype(np.int64)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=n_clusters)
    sums = np.zeros(n_clusters, np.int64)
    nonempty = counts > 0
    starts = (np.cumsum(counts) - counts)[nonempty]
    if len(starts):
        sums[nonempty] = np.add.reduceat(lengths[order], starts)
    return sums


def _extended_weights(labels, sizes, alpha, balance, multipliers, lengths, budget_tokens, keep):
    """Draw weights (and token budgets) when balancing tokens, weighting clusters, budgeting tokens per
    cluster or leaving documents out. Returns ``(draw_weights, cluster_budget or None, cluster_tokens
    or None)``; a cluster with draw weight 0 is not in the pool."""
    n_clusters = len(sizes)
    cluster_tokens = _cluster_token_sums(labels, lengths, n_clusters) if lengths is not None else None
    excluded = np.zeros(n_clusters, bool)
    if keep is not None and not keep.all():
        excluded[-1] = True  # the extra cluster of the left-out documents
    base_sizes = cluster_tokens if balance == "tokens" else sizes
    base_sizes = np.where(excluded, 0, base_sizes)
    if balance == "tokens":
        silent = np.flatnonzero((sizes > 0) & (cluster_tokens == 0) & ~excluded)
        if len(silent):
            raise ValueError(f"cluster {silent[0]} holds documents but no tokens, so it cannot get a share of "
                             f"the tokens; balance samples instead")
    weights = _cluster_weights(base_sizes, alpha)
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
    full = np.full(n_clusters, max_repeats, np.int64)
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


def _as_keep(keep, n_docs: int):
    if keep is None:
        return None
    keep = np.asarray(keep)
    if keep.shape != (n_docs,) or keep.dtype != bool:
        raise ValueError(f"keep must be a boolean array of {n_docs} entries")
    return None if keep.all() else keep


# ----------------------------------------------------------------------------- budget handling


def _as_int_array(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must be non-negative (found {array.min()})")
    return array


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


def _check_reachable(tokens, lengths, n_samples, n_docs: int) -> None:
    """An unclipped sampler repeats forever, so only an empty corpus (or one without tokens)
    can fail to meet the budget."""
    if tokens is not None and int(lengths.sum()) == 0:
        raise ValueError(f"the documents hold no tokens, so {tokens} tokens cannot be reached")
    if n_samples and n_docs == 0:
        raise ValueError(f"there are no documents, so {n_samples} samples cannot be planned")


def _clip_budget(clip: str, possible, possible_tokens, n_samples, tokens, allow_partial):
    """Compare the budget with what the clip allows: the pool always empties after exactly
    ``possible`` samples (``max_repeats * N`` without per-cluster clips), so this is known before
    planning.

    Returns ``(n_samples, tokens)``, switched to "the whole pool" when the budget is out of
    reach and ``allow_partial`` is set.
    """
    if tokens is not None:
        if tokens <= possible_tokens:
            return None, tokens
        asked = f"{tokens} tokens were asked"
        allows = f"{possible} samples ({possible_tokens} tokens)"
    else:
        possible_tokens = None
        if n_samples <= possible:
            return n_samples, None
        asked = f"{n_samples} were asked"
        allows = f"{possible} samples"
    if allow_partial:
        return possible, None
    raise BudgetError(
        f"the clip ({clip}) allows at most {allows} but {asked}; "
        "lower the budget or raise --max-repeats",
        possible_samples=possible,
        possible_tokens=possible_tokens,
    )


def _take_budget(blocks: Iterator[_Block], n_samples, tokens, lengths) -> _Block:
    """Consume blocks until the budget is met and cut the last one exactly at it (neither: all)."""
    if n_samples is not None:
        return _take_samples(blocks, n_samples)
    if tokens is None:
        return _take_all(blocks)
    return _take_tokens(blocks, tokens, lengths)


def _take_all(blocks: Iterator[_Block]) -> _Block:
    """Every block of a stream that ends by itself (per-cluster token budgets)."""
    parts = list(blocks)
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32)
    return tuple(np.concatenate(column) for column in zip(*parts))


def _take_samples(blocks: Iterator[_Block], n_samples: int) -> _Block:
    """Fill ``n_samples`` samples (the callers checked that the blocks reach that far)."""
    out = (np.empty(n_samples, np.int64), np.empty(n_samples, np.int32), np.empty(n_samples, np.int32))
    taken = 0
    if n_samples:
        for block in blocks:
            take = min(len(block[0]), n_samples - taken)
            for column, values in zip(out, block):
                column[taken : taken + take] = values[:take]
            taken += take
            if taken == n_samples:
                break
    return out


def _take_tokens(blocks: Iterator[_Block], tokens: int, lengths: np.ndarray) -> _Block:
    """Take samples up to the first one at which the cumulative token count reaches ``tokens``
    (that sample included), or all of them when the blocks end before."""
    parts: list[_Block] = []
    token_total = 0
    for doc, cluster, repeat in blocks:
        cumulative = np.cumsum(lengths[doc]) + token_total
        take = int(np.searchsorted(cumulative, tokens, side="left")) + 1
        parts.append((doc[:take], cluster[:take], repeat[:take]))
        if take <= len(doc):
            break
        token_total = int(cumulative[-1]) if len(doc) else token_total
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32)
    return tuple(np.concatenate(column) for column in zip(*parts))


def _block_size(index: int) -> int:
    return min(_MAX_BLOCK, _MIN_BLOCK << min(index, 32))


# ----------------------------------------------------------------------------- random sampler


def _random_blocks(rng: np.random.Generator, labels: np.ndarray, pool=None) -> Iterator[_Block]:
    """Yield fresh permutations of all documents (of ``pool``, when given), one epoch after another.

    Small corpora get many epochs per block (one ``Generator.permuted`` call over rows); the
    number of epochs per block depends only on N and the block index, never on the budget.
    """
    members = np.arange(labels.shape[0], dtype=np.int64) if pool is None else pool.astype(np.int64)
    n_docs = members.shape[0]
    if n_docs == 0:
        return
    epoch = 0
    for index in itertools.count():
        n_epochs = max(1, _block_size(index) // n_docs)
        rows = np.broadcast_to(members, (n_epochs, n_docs))
        doc = rng.permuted(rows, axis=1).reshape(-1)
        repeat = np.repeat(np.arange(epoch, epoch + n_epochs, dtype=np.int32), n_docs)
        yield doc, labels[doc].astype(np.int32), repeat
        epoch += n_epochs


# ----------------------------------------------------------------------------- cluster samplers


def _cluster_weights(sizes: np.ndarray, alpha: float) -> np.ndarray:
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


def _segment_arange(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[i], starts[i] + sizes[i])`` for all i."""
    ends = np.cumsum(sizes)
    return np.arange(ends[-1] if len(ends) else 0, dtype=np.int64) - np.repeat(
        ends - sizes - starts, sizes
    )


class _WeightedChooser:
    """Draw cluster ids iid with probability proportional to their weights.

    Equal weights use one ``integers`` call. Otherwise clusters are grouped by the binary
    exponent of their weight; a group is chosen by its envelope mass ``count * max_weight``, a
    member uniformly, and the draw kept with probability ``weight / max_weight`` (>= 1/2), so a
    block of ``m`` proposals yields at least about ``m / 2`` exact draws.
    """

    def __init__(self, clusters: np.ndarray, weights: np.ndarray):
        w = weights[clusters]
        self.equal = bool(np.all(w == w[0]))
        if self.equal:
            self.members = clusters
            return
        # int16 (binary exponents of doubles lie within ±1074): a stable sort of 16-bit keys is a radix sort,
        # O(K) for this rebuild, which comes after every block in which a cluster left the pool
        exponent = np.frexp(w)[1].astype(np.int16)
        order = np.argsort(exponent, kind="stable")
        exponent = exponent[order]
        self.members = clusters[order]
        self.member_weight = w[order]
        self.starts = np.flatnonzero(np.r_[True, exponent[1:] != exponent[:-1]])
        self.counts = np.diff(np.r_[self.starts, len(order)])
        self.max_weight = np.maximum.reduceat(self.member_weight, self.starts)
        self.envelope = np.cumsum(self.counts * self.max_weight)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.equal:
            return self.members[rng.integers(0, len(self.members), size)]
        group = _bucket(self.envelope, rng.random(size) * self.envelope[-1])
        index = self.starts[group] + rng.integers(0, self.counts[group])
        keep = rng.random(size) * self.max_weight[group] < self.member_weight[index]
        return self.members[index[keep]]


def _bucket(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``min(searchsorted(edges, x, side="right"), len(edges) - 1)``: the bucket of every ``x`` under the
    ascending ``edges``. The envelope has one edge per binary exponent of the weights, rarely more than a
    few; then counting the edges ``<= x`` in passes over ``x`` is several times faster than a binary
    search per element, with the same result."""
    if len(edges) > 16:
        return np.minimum(np.searchsorted(edges, x, side="right"), len(edges) - 1)
    count = np.zeros(len(x), np.uint8)
    for edge in edges[:-1]:  # the last bucket takes every x at or past its lower edge
        count += x >= edge
    return count.astype(np.intp)


class _ClusterStream:
    """The ``uniform`` / ``clusterclip`` process, generated block by block.

    State between blocks: ``used[k]`` (documents of cluster k emitted so far), ``cur_pass[k]``
    (the pass whose permutation is stored in ``cur_perm``; -1 before the first) and ``cur_perm``
    (for each cluster, the permutation of its documents for that pass, at the cluster's slice of
    the cluster-grouped document order).
    """

    def __init__(self, labels, sizes, weights, max_repeats, rng, *, lengths=None, budget=None, doc_logw=None):
        self.rng = rng
        # per-cluster token budgets: a cluster leaves at the first sample that reaches its budget
        self.budget = budget
        self.lengths = lengths
        self.tokens_used = None if budget is None else np.zeros(sizes.shape[0], np.int64)
        self.done = None if budget is None else np.zeros(sizes.shape[0], bool)
        self.doc_logw = doc_logw
        self.sizes = sizes
        self.weights = weights
        self.offsets = np.cumsum(sizes) - sizes
        self.size_rank = np.empty_like(sizes)
        self.size_rank[np.argsort(sizes, kind="stable")] = np.arange(sizes.shape[0])
        # documents grouped by cluster, ascending inside a cluster (one sort of packed keys);
        # int32 while N allows, to halve the memory traffic of the gathers below
        self.doc_dtype = np.int32 if labels.shape[0] < 2**31 else np.int64
        self.by_cluster = (np.sort((labels << 32) | np.arange(labels.shape[0])) & _LOW32).astype(
            self.doc_dtype
        )
        self.cap = None if max_repeats is None else sizes * max_repeats
        self.used = np.zeros(sizes.shape[0], np.int64)
        self.cur_pass = np.full(sizes.shape[0], -1, np.int64)
        self.cur_perm = np.empty(labels.shape[0], self.doc_dtype)
        self.active = np.flatnonzero(weights > 0)

    def blocks(self) -> Iterator[_Block]:
        chooser = None
        for index in itertools.count():
            if len(self.active) == 0:
                return
            if chooser is None:
                chooser = _WeightedChooser(self.active, self.weights)
            n_active = len(self.active)
            yield self._block(chooser.draw(self.rng, _block_size(index)))
            if self.cap is not None:
                self.active = self.active[self.used[self.active] < self.cap[self.active]]
            if self.done is not None:
                self.active = self.active[~self.done[self.active]]
            if len(self.active) != n_active:
                chooser = None

    def _block(self, choice: np.ndarray) -> _Block:
        m = len(choice)
        if m == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32)
        # Sort the draws by (cluster, time): each cluster's draws become a run, in time order.
        key = np.sort((choice << 32) | np.arange(m))
        cluster = key >> 32
        time = key & _LOW32
        starts = np.flatnonzero(np.r_[True, cluster[1:] != cluster[:-1]])
        group = cluster[starts]
        n_kept = np.diff(np.r_[starts, m])
        rejected = False
        if self.cap is not None:
            # rejection: a cluster's draws count only until it reaches its cap
            capped = np.minimum(n_kept, self.cap[group] - self.used[group])
            rejected = bool(np.any(capped < n_kept))
            if rejected:
                kept = _segment_arange(starts, capped)
                cluster, time, n_kept = cluster[kept], time[kept], capped
        doc, repeat = self._documents(group, n_kept)
        if self.budget is not None:
            cut, n_kept = self._cut_at_budget(group, n_kept, doc)
            if cut is not None:
                doc, repeat, cluster, time = doc[cut], repeat[cut], cluster[cut], time[cut]
                rejected = True
        self.used[group] += n_kept

        # back to time order, skipping rejected draws
        out_doc = np.empty(m, np.int64)
        out_cluster = np.empty(m, np.int32)
        out_repeat = np.empty(m, np.int32)
        out_doc[time] = doc
        out_cluster[time] = cluster
        out_repeat[time] = repeat
        if rejected:
            kept = np.zeros(m, bool)
            kept[time] = True
            return out_doc[kept], out_cluster[kept], out_repeat[kept]
        return out_doc, out_cluster, out_repeat

    def _cut_at_budget(self, group: np.ndarray, n_kept: np.ndarray, doc: np.ndarray):
        """Cut each cluster's run (``doc`` grouped by cluster) after its first document that brings the
        cluster to its token budget; such a cluster is done. Returns ``(mask of the kept documents or
        None, new n_kept)``. The passes already drawn for a done cluster are never used again."""
        tok = self.lengths[doc]
        run_start = np.cumsum(n_kept) - n_kept
        total = np.cumsum(tok)
        total += np.repeat(self.tokens_used[group] - (total[run_start] - tok[run_start]), n_kept)
        hits = np.flatnonzero(total >= np.repeat(self.budget[group], n_kept))
        cut = None
        if len(hits):
            run_of = np.repeat(np.arange(len(group)), n_kept)
            runs, first = np.unique(run_of[hits], return_index=True)
            n_kept = n_kept.copy()
            n_kept[runs] = hits[first] - run_start[runs] + 1
            self.done[group[runs]] = True
            cut = (np.arange(len(doc)) - run_start[run_of]) < n_kept[run_of]
            tok = np.where(cut, tok, 0)
        self.tokens_used[group] += np.add.reduceat(tok, run_start) if len(tok) else 0
        return cut, n_kept

    def _documents(self, group: np.ndarray, n_kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Documents and pass indices of the next ``n_kept[g]`` emissions of each cluster
        ``group[g]``, grouped by cluster; draws the permutations of passes that start here.

        Each cluster's emissions are one run: the rest of its stored pass (``stored`` of them),
        then its fresh passes in order (the last one possibly cut short).
        """
        size = self.sizes[group]
        used = self.used[group]
        previous = self.cur_pass[group]
        first = used // size
        last = (used + n_kept - 1) // size
        stored = np.where(first == previous, np.minimum(size * (first + 1) - used, n_kept), 0)
        n_new = last - previous  # passes that start in this block (>= 0)
        new = np.flatnonzero(n_new)
        # Fresh passes: n_new[g] permutations of cluster g's documents, laid out by cluster size
        # so that passes of equal length are consecutive rows of one 2-D block.
        by_size = new[np.argsort(self.size_rank[group[new]])]
        fresh_len = n_new * size
        fresh_base = np.zeros(len(group), np.int64)
        fresh_base[by_size] = np.cumsum(fresh_len[by_size]) - fresh_len[by_size]
        fresh = self.by_cluster[_segment_arange(
            np.repeat(self.offsets[group[by_size]], n_new[by_size]),
            np.repeat(size[by_size], n_new[by_size]),
        )]
        _shuffle_rows(self.rng, fresh, size[by_size], fresh_len[by_size], self.doc_logw)

        out_start = np.cumsum(n_kept) - n_kept
        doc = np.empty(int(n_kept.sum()), self.doc_dtype)
        doc[_segment_arange(out_start, stored)] = self.cur_perm[
            _segment_arange(self.offsets[group] + used - first * size, stored)
        ]
        doc[_segment_arange(out_start + stored, n_kept - stored)] = fresh[
            _segment_arange(fresh_base, n_kept - stored)
        ]

        # pass index: one piece for the stored pass, one per fresh pass (the last one cut short)
        n_pieces = 1 + n_new
        piece_group = np.repeat(np.arange(len(group)), n_pieces)
        piece = _segment_arange(np.zeros(len(group), np.int64), n_pieces)
        piece_len = np.where(piece == 0, stored[piece_group], size[piece_group])
        last_piece = np.cumsum(n_pieces)[new] - 1
        piece_len[last_piece] = n_kept[new] - stored[new] - (n_new[new] - 1) * size[new]
        repeat = np.repeat((previous[piece_group] + piece).astype(np.int32), piece_len)

        # keep the last fresh pass of every cluster for the next blocks
        g_new = group[new]
        self.cur_perm[_segment_arange(self.offsets[g_new], size[new])] = fresh[
            _segment_arange(fresh_base[new] + fresh_len[new] - size[new], size[new])
        ]
        self.cur_pass[g_new] = last[new]
        return doc, repeat


# ----------------------------------------------------------------------------- pass permutations


def _shuffle_rows(rng: np.random.Generator, values: np.ndarray, row_size: np.ndarray,
                  length: np.ndarray, log_weight=None) -> None:
    """Shuffle ``values`` in place, cut into consecutive pieces of ``length[i]`` elements that
    each hold rows of ``row_size[i]`` elements (equal sizes adjacent): every row is permuted
    independently and uniformly (Fisher-Yates in ``Generator.permuted``), one call per size.

    With ``log_weight`` (per value, ``-inf`` for weight 0) every row is instead a weighted random
    permutation: successive draws without replacement ``∝ weight`` (Efraimidis-Spirakis: sort by
    ``E / weight`` with ``E`` standard exponential, here in logs); weight-0 values come last, in
    uniform random order."""
    if log_weight is not None:
        _weighted_shuffle_rows(rng, values, row_size, length, log_weight)
        return
    for start, stop, size in _runs_of_equal_rows(row_size, length):
        rows = values[start:stop].reshape(-1, size)
        rng.permuted(rows, axis=1, out=rows)


def _runs_of_equal_rows(row_size, length):
    """``(start, stop, size)`` of each run of rows of one size (> 1) in the flat ``values``."""
    if len(row_size) == 0:
        return
    runs = np.flatnonzero(np.r_[True, row_size[1:] != row_size[:-1]])
    ends = np.cumsum(length)
    starts = np.r_[0, ends[runs[1:] - 1]]
    stops = np.r_[starts[1:], ends[-1]]
    for start, stop, size in zip(starts.tolist(), stops.tolist(), row_size[runs].tolist()):
        if size > 1:
            yield start, stop, size


def _weighted_shuffle_rows(rng, values, row_size, length, log_weight) -> None:
    for start, stop, size in _runs_of_equal_rows(row_size, length):
        rows = values[start:stop].reshape(-1, size)
        exponential = rng.standard_exponential(rows.shape)
        key = np.log(exponential) - log_weight[rows]  # +inf for weight 0
        if np.isinf(key).any():
            order = np.lexsort((exponential, key), axis=1)
        else:
            order = np.argsort(key, axis=1)
        rows[...] = np.take_along_axis(rows, order, axis=1)
