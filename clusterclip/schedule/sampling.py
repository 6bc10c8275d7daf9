"""Plan a training order: ClusterClip Sampling and its two baselines (SPEC §1.2).

Pure and vectorised: arrays in, arrays out, no file I/O. What is drawn is a :class:`.law.SamplingLaw` (or a
sequence of :class:`.law.Stage`), for how long a :class:`.law.Budget`.

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

Stages
------
A schedule of several :class:`.law.Stage` changes law at each stage's end (a fraction of the budget,
a sample or a token count; always on a sample boundary). The state of every cluster (documents used,
the pass in progress and its order) carries over, so the clip is global: a stage's clip bounds a
document's uses over the whole order, and a cluster already at its clip stays out. The block in which
a stage ends is cut there and the draws past it are handed back (:meth:`_ClusterState.rollback`: the
pass in progress keeps the order it was drawn in); the next stage draws from its own weights.

Continuing an order
-------------------
``prefix=`` (the first samples of an older order) plans the samples after it under a new law: the
uses of every document in the prefix count against the clip, and each cluster's pass in progress goes on
with the documents the prefix used one time fewer than the others, in a fresh random order (a prefix of
a schedule planned from the same documents uses each cluster's documents ``r`` or ``r + 1`` times).
The result is the prefix followed by the new samples.

Spaced repeats
--------------
``gap=RepeatGap(G)``: at least ``G`` other samples (``unit="tokens"``: tokens of other samples) lie
between two uses of one document. A draw whose cluster's next document was used more recently is
rejected like a draw of a cluster at its clip: the cluster rests, its pass order kept, until that
document is ``G`` old; the law is otherwise unchanged, and ``G = 0`` is the schedule without a gap,
byte for byte. The planner still works by blocks: it checks a block's samples against the gap, keeps
the samples up to the first point where an earlier rejection could change a later decision (the next
draw of a rejected cluster, or a sample that the rejections before it bring within the gap), hands the
rest back and draws again, so the result is that of the one-step-at-a-time process. When every
cluster left would reuse a document of the last ``G`` samples, nothing can come next: the planner
stops there (:class:`BudgetError`, or the samples so far with ``allow_partial``).

Determinism and prefix stability
--------------------------------
Everything is drawn from one ``numpy.random.default_rng(seed)`` (PCG64) with operations whose
results do not depend on the platform or on threads. Block sizes depend only on the block index
and the pool state, never on the budget, so **the schedule for a budget is a prefix of the
schedule for any larger budget with the same seed** (``--samples``, ``--tokens`` and ``--epochs``
alike; for stages, as long as their ends stay where they are). The one caveat: for ``alpha`` other
than 0 and 1 the weights ``size ** alpha`` come from the platform's ``pow``, which may differ in the
last bit between platforms.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .law import (
    BALANCES,
    SAMPLERS,
    Budget,
    RepeatGap,
    ResolvedLaw,
    SamplingLaw,
    Stage,
    StageSpan,
    as_stages,
    check_keep,
    cluster_token_sums,
    epochs_to_samples,
    hamilton_apportionment,
    n_clusters_of,
    resolve_law,
)
from .law import _as_count as _as_count

__all__ = ["BALANCES", "SAMPLERS", "BudgetError", "Prefix", "Schedule", "epochs_to_samples",
           "hamilton_apportionment", "plan_schedule"]

# Blocks grow geometrically from _MIN_BLOCK to _MAX_BLOCK draws: small budgets stay cheap, large
# ones pay the per-block O(K) bookkeeping once per million samples, and a block's temporaries
# stay small enough to be reused from the heap instead of freshly mapped.
_MIN_BLOCK = 1 << 12
_MAX_BLOCK = 1 << 20
#: with a repeat gap, the fewest draws a block starts from after the planner stopped a block short
_MIN_GAP_BLOCK = 1 << 6


def _max_gap_block(n_clusters: int, n_docs: int) -> int:
    """With a repeat gap, the most draws in one block: every cluster with a rejection in a block has its draws
    from there on resolved exactly (the hot draws), which grows with the draws per cluster in a block, while
    each block also costs O(K) and a sweep over the gap's N-long ``last_end`` (its gather and scatter reach
    nearly every cache line of it), which outgrows the caches past a few million documents.
    ``2**15 * (K / 1000) ** 0.6 * min(2, max(1, (N / 2**21) ** 0.5))`` as a power of two in [2**12, 2**20],
    fitted with ``scripts/bench_sampler.py --course`` (docs/PERFORMANCE.md): at 100 k clusters 2**19 draws
    for 1 M documents, 2**20 for 10 M. Block sizes decide which draws are made, so this is part of what a
    seed gives."""
    target = 2.0**15 * (max(n_clusters, 1) / 1000) ** 0.6 * min(2.0, max(1.0, (n_docs / 2**21) ** 0.5))
    return int(min(_MAX_BLOCK, max(1 << 12, 1 << int(round(np.log2(target))))))


_LOW32 = np.int64(0xFFFFFFFF)
#: with a repeat gap, the most pass levels in one block handled level by level (:meth:`_ClusterStream._note_uses`)
_MAX_LEVELS = 64
#: the end of a document's last use before it was ever used (far before any position)
_NEVER = np.int64(-(1 << 62))
#: a repeat gap in samples keeps ``last_end`` in int32 (half the memory its per-sample gather and scatter go
#: through) when every position it can hold stays below this and the gap below half of it; it then marks a
#: document never used with ``-_INT32_LIMIT``, which lies at least ``_INT32_LIMIT / 2`` units outside the gap
#: from any position, far beyond any threshold a margin is compared with (at most twice a block's units)
_INT32_LIMIT = 1 << 30

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
    spans : tuple of StageSpan
        Where each stage lies (samples ``[start, stop)``, in order; a continued order's prefix keeps the
        stages it had). Empty for a schedule built by hand.
    stalled : bool
        True when the repeat gap stopped the schedule short of its budget (``allow_partial``).
    """

    doc_id: np.ndarray
    cluster: np.ndarray
    repeat: np.ndarray
    exhausted: bool = False
    cluster_budget: np.ndarray | None = None
    spans: tuple[StageSpan, ...] = ()
    stalled: bool = False

    def __len__(self) -> int:
        return int(self.doc_id.shape[0])

    @property
    def staged(self) -> bool:
        """More than one stage (several laws, or a continued order)."""
        return len(self.spans) > 1

    @property
    def stage(self) -> np.ndarray:
        """int32 ``[B]``: the stage of each sample (0 throughout for a single law)."""
        if not self.spans:
            return np.zeros(len(self), np.int32)
        return np.repeat(np.arange(len(self.spans), dtype=np.int32), [s.samples for s in self.spans])


@dataclass(frozen=True, eq=False)
class Prefix:
    """The first samples of an older order that a new schedule continues: its ``doc_id``, ``cluster`` and
    ``repeat`` columns, and where its stages lie (``spans``; empty: one stage)."""

    doc_id: np.ndarray
    cluster: np.ndarray
    repeat: np.ndarray
    spans: tuple[StageSpan, ...] = ()

    def __len__(self) -> int:
        return int(np.asarray(self.doc_id).shape[0])


#: the defaults of :func:`plan_schedule`: ClusterClip as in the paper (clip 4), one epoch, no gap
DEFAULT_LAW = SamplingLaw()
ONE_EPOCH = Budget()
NO_GAP = RepeatGap()


class BudgetError(ValueError):
    """The repetition clip (or the repeat gap) cannot meet the budget.

    Attributes
    ----------
    possible_samples : int
        The most samples the clip allows (``max_repeats * N``), or the samples planned when the repeat gap
        stopped the schedule.
    possible_tokens : int or None
        The most tokens the clip allows (``max_repeats * sum(lengths)``), for a token budget.
    """

    def __init__(self, message: str, possible_samples: int, possible_tokens: int | None = None):
        super().__init__(message)
        self.possible_samples = possible_samples
        self.possible_tokens = possible_tokens


def plan_schedule(labels, law: SamplingLaw | Sequence[Stage] = DEFAULT_LAW, budget: Budget = ONE_EPOCH, *,
                  lengths=None, seed: int = 0, allow_partial: bool = False, gap: RepeatGap = NO_GAP,
                  prefix: Prefix | None = None) -> Schedule:
    """Plan the training order of a clustered corpus.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        Cluster id (``>= 0``) of each document. Cluster ids without documents are never drawn.
    law : SamplingLaw or sequence of Stage
        What is drawn (:class:`.law.SamplingLaw`); stages change it at points of the budget.
    budget : Budget
        How long (:class:`.law.Budget`; default one epoch). With ``prefix`` it counts the prefix too.
    lengths : array_like of int, shape (N,), optional
        Tokens per document (one sample of it); required for a token budget, ``balance="tokens"``,
        per-cluster token budgets, stages ending at a token count and a gap in tokens.
    seed : int
        Seed of ``numpy.random.default_rng``; same seed, same schedule on any machine.
    allow_partial : bool
        When the clip empties the pool before the budget (or a stage's end), or the repeat gap leaves
        nothing to draw, go on (the next stage, else stop) with what is possible instead of raising
        :class:`BudgetError`.
    gap : RepeatGap
        The fewest samples (or tokens) between two uses of a document (see the module docstring).
    prefix : Prefix, optional
        The first samples of an older order to continue (see the module docstring).

    Returns
    -------
    Schedule

    Raises
    ------
    BudgetError
        The clip or the gap cannot meet the budget and ``allow_partial`` is False.
    ValueError
        Invalid arguments.
    """
    labels = _as_int_array(labels, "labels")
    n_docs = labels.shape[0]
    if n_docs and labels.max() >= 2**31:
        raise ValueError(f"cluster ids must be below 2**31 (found {labels.max()})")
    stages = as_stages(law)
    if not isinstance(budget, Budget) or not isinstance(gap, RepeatGap):
        raise ValueError("budget must be a Budget and gap a RepeatGap")
    if lengths is not None:
        lengths = _as_int_array(lengths, "lengths")
        if lengths.shape != labels.shape:
            raise ValueError(f"lengths has {lengths.shape[0]} entries but labels has {n_docs}")
    _check_lengths_given(stages, budget, gap, lengths)
    keep = check_keep(stages[0].law.keep, n_docs)
    if prefix is not None:
        prefix = _checked_prefix(prefix, labels)
    if budget.budget_tokens is not None and (len(stages) > 1 or gap or prefix is not None):
        raise ValueError("per-cluster token budgets (budget_tokens) cannot be combined with stages, a repeat gap "
                         "or a prefix; give a token budget (tokens) instead")
    if gap and stages[0].law.sampler == "random":
        raise ValueError("the repeat gap applies to the cluster samplers (uniform, clusterclip); the random "
                         "sampler draws no clusters to rest")
    rng = np.random.default_rng(seed)
    if stages[0].law.sampler == "random":
        return _plan_random(labels, budget, lengths, rng, keep, prefix)
    return _ClusterPlan(labels, stages, budget, lengths, rng, keep, allow_partial, gap).run(prefix)


def _check_lengths_given(stages: list[Stage], budget: Budget, gap: RepeatGap, lengths) -> None:
    if lengths is not None:
        return
    if any(s.law.balance == "tokens" for s in stages) or budget.budget_tokens is not None:
        raise ValueError("balancing tokens or a per-cluster token budget needs the document lengths (lengths=)")
    if budget.tokens is not None:
        raise ValueError("a token budget needs the document lengths (lengths=)")
    if any(s.until_tokens is not None for s in stages):
        raise ValueError("a stage that ends at a token count needs the document lengths (lengths=)")
    if gap and gap.unit == "tokens":
        raise ValueError("a repeat gap in tokens needs the document lengths (lengths=)")


def _checked_prefix(prefix: Prefix, labels: np.ndarray) -> Prefix:
    doc = _as_int_array(prefix.doc_id, "the prefix's doc_id")
    if doc.size and doc.max() >= labels.shape[0]:
        raise ValueError(f"the prefix names document {doc.max()} but there are {labels.shape[0]}")
    cluster = np.asarray(prefix.cluster)
    repeat = np.asarray(prefix.repeat)
    if cluster.shape != doc.shape or repeat.shape != doc.shape:
        raise ValueError("the prefix's doc_id, cluster and repeat must have the same length")
    if not np.array_equal(cluster, labels[doc]):
        raise ValueError("the prefix's clusters are not these labels' (an order of another clustering)")
    spans = tuple(prefix.spans) or (StageSpan(0, len(doc)),)
    if spans[0].start != 0 or spans[-1].stop != len(doc) or any(
            a.stop != b.start for a, b in zip(spans[:-1], spans[1:])):
        raise ValueError("the prefix's stage spans must cover its samples in order")
    return Prefix(doc, cluster.astype(np.int32, copy=False), repeat.astype(np.int32, copy=False), spans)


# ----------------------------------------------------------------------------- the order being planned


class _Order:
    """The samples planned so far (a continued order's prefix first) and their tokens.

    Preallocated when the budget fixes the length, so a 100 M sample schedule is written once."""

    def __init__(self, capacity: int | None, lengths: np.ndarray | None):
        self.capacity = capacity
        self.lengths = lengths
        self.n = 0
        self.tokens = 0
        self.last_start = 0  # where the last block appended starts
        if capacity is not None:
            self.columns: _Block = (np.empty(capacity, np.int64), np.empty(capacity, np.int32),
                                np.empty(capacity, np.int32))
        else:
            self.parts: list[_Block] = []

    def append(self, block: _Block) -> None:
        n = len(block[0])
        if not n:
            return
        if self.capacity is not None:
            for column, values in zip(self.columns, block):
                column[self.n: self.n + n] = values
        else:
            self.parts.append(block)
        self.last_start = self.n
        self.n += n
        if self.lengths is not None:
            self.tokens += int(self.lengths[block[0]].sum())

    def take(self, blocks: Iterator[tuple], end_samples: int | None = None, end_tokens: int | None = None):
        """Append ``blocks`` until the order holds ``end_samples`` samples or reaches ``end_tokens`` tokens (at the
        first sample that reaches them, included), whichever comes first; neither: all of them.

        Returns the rest of the last block taken (its columns past the end, or None) and whether an end
        was reached (False: the blocks ran out)."""
        if self.reached(end_samples, end_tokens):
            return None, True
        for block in blocks:
            n = len(block[0])
            take = n
            if end_samples is not None:
                take = min(take, end_samples - self.n)
            if end_tokens is not None and n:
                assert self.lengths is not None  # an end in tokens comes with the documents' lengths
                cumulative = np.cumsum(self.lengths[block[0]]) + self.tokens
                take = min(take, int(np.searchsorted(cumulative, end_tokens, side="left")) + 1)
            self.append(tuple(column[:take] for column in block[:3]))
            if take < n or self.reached(end_samples, end_tokens):
                rest = tuple(column[take:] for column in block) if take < n else None
                return rest, True
        return None, False

    def last(self, n: int) -> np.ndarray:
        """The documents of the last ``n`` samples, in order."""
        if self.capacity is not None:
            return self.columns[0][self.n - n: self.n]
        docs: list[np.ndarray] = []
        for part in reversed(self.parts):
            if n <= 0:
                break
            docs.append(part[0][max(len(part[0]) - n, 0):])
            n -= len(docs[-1])
        return np.concatenate(docs[::-1]) if docs else np.zeros(0, np.int64)

    def reached(self, end_samples: int | None, end_tokens: int | None) -> bool:
        return (end_samples is not None and self.n >= end_samples) or (end_tokens is not None
                                                                       and self.tokens >= end_tokens)

    def result(self) -> _Block:
        if self.capacity is not None:
            doc, cluster, repeat = self.columns
            return doc[: self.n], cluster[: self.n], repeat[: self.n]
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32)
        if len(self.parts) == 1:
            return self.parts[0]
        return tuple(np.concatenate(column) for column in zip(*self.parts))


def _stage_ends(stages: list[Stage], budget: Budget, n_samples: int | None, lengths) -> list[tuple[str, int]]:
    """Where each stage ends, as ``("samples" | "tokens", count from the start of the order)``; the last one is
    the end of the budget unless it says otherwise. Checks what can be checked before planning: ends
    that grow, none past the budget, the last one at it."""
    if budget.budget_tokens is not None:  # per-cluster token budgets: the schedule ends when every cluster has
        return [("all", 0)]
    unit, total = ("tokens", budget.tokens) if budget.in_tokens else ("samples", n_samples)
    ends: list[tuple[str, int]] = []
    for i, stage in enumerate(stages):
        if stage.until is not None:
            end = (unit, int(np.floor(stage.until * _known(total, unit) + 0.5)))
        elif stage.until_samples is not None:
            end = ("samples", int(stage.until_samples))
        elif stage.until_tokens is not None:
            end = ("tokens", int(stage.until_tokens))
        else:
            end = (unit, _known(total, unit))
        what = _stage_name(stages, i)
        if end[0] == unit and end[1] > _known(total, unit):
            raise ValueError(f"{what} ends at {_at(end)}, past the end of the budget ({_at((unit, _known(total, unit)))}); "
                             "end it earlier or raise the budget")
        earlier = [e for e in ends if e[0] == end[0]]
        if earlier and end[1] <= earlier[-1][1]:
            raise ValueError(f"{what} ends at {_at(end)}, not after the stage before it ({_at(earlier[-1])}): the "
                             "stages overlap or one is empty; give each stage a later end than the one before")
        ends.append(end)
    last = ends[-1]
    if last[0] == unit and last[1] < _known(total, unit):
        raise ValueError(f"the stages end at {_at(last)}, before the end of the budget ({_at((unit, _known(total, unit)))}); "
                         "let the last stage run to the end (leave out its until, or until = 1)")
    return ends


def _known(total: int | None, unit: str) -> int:
    """The budget in ``unit`` where a stage's end needs it."""
    if total is None:
        raise ValueError(f"a stage ending at a share of the budget, or at its end, needs the budget in {unit}")
    return total

def _stage_name(stages: list[Stage], i: int) -> str:
    return f"stage {i + 1} of {len(stages)} ({stages[i].describe()})"


def _at(end: tuple[str, int]) -> str:
    return f"sample {end[1]:,}" if end[0] == "samples" else f"{end[1]:,} tokens"


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


def _clip_text(law: SamplingLaw) -> str:
    return f"--max-repeats {law.max_repeats}" + (" and the per-cluster clips" if law.cluster_max_repeats is not None
                                                 else "")


def _block_size(index: int) -> int:
    return min(_MAX_BLOCK, _MIN_BLOCK << min(index, 32))


# ----------------------------------------------------------------------------- random sampler


def _plan_random(labels: np.ndarray, budget: Budget, lengths, rng: np.random.Generator, keep, prefix) -> Schedule:
    n_docs = labels.shape[0]
    pool = np.flatnonzero(keep) if keep is not None else None
    n_samples = budget.total_samples(n_docs)
    _check_reachable(budget.tokens, lengths if pool is None else lengths[pool] if lengths is not None else None,
                     n_samples, n_docs if pool is None else len(pool))
    order = _Order(n_samples, lengths)
    spans: list[StageSpan] = []
    if prefix is not None:
        _start_after(order, prefix, budget, n_samples)
        spans = list(prefix.spans)
        blocks = _random_blocks_after(rng, labels, pool, prefix.doc_id)
    else:
        blocks = _random_blocks(rng, labels, pool)
    start = order.n
    order.take(blocks, n_samples, budget.tokens)
    doc_id, cluster, repeat = order.result()
    return Schedule(doc_id=doc_id, cluster=cluster, repeat=repeat, spans=tuple(spans) + (StageSpan(start, order.n),))


def _start_after(order: _Order, prefix: Prefix, budget: Budget, n_samples: int | None) -> None:
    """Put ``prefix`` first in ``order``; the budget must end after it."""
    order.append((prefix.doc_id, prefix.cluster, prefix.repeat))
    if order.reached(n_samples, budget.tokens):
        end = f"sample {n_samples:,}" if n_samples is not None else f"{budget.tokens:,} tokens"
        raise ValueError(f"the budget ends at {end}, within the {order.n:,} samples ({order.tokens:,} tokens) "
                         "continued from; give a budget past them")


def _random_blocks(rng: np.random.Generator, labels: np.ndarray, pool=None, base=None) -> Iterator[_Block]:
    """Yield fresh permutations of all documents (of ``pool``, when given), one epoch after another.

    Small corpora get many epochs per block (one ``Generator.permuted`` call over rows); the
    number of epochs per block depends only on N and the block index, never on the budget.
    ``base``: the uses of every document before the first epoch (the ``repeat`` column counts them).
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
        repeat: np.ndarray = np.repeat(np.arange(epoch, epoch + n_epochs, dtype=np.int32), n_docs)
        if base is not None:
            repeat += base[doc]
        yield doc, labels[doc].astype(np.int32), repeat
        epoch += n_epochs


def _random_blocks_after(rng: np.random.Generator, labels: np.ndarray, pool, prefix_doc: np.ndarray):
    """The random sampler after a prefix: first the documents of the pool the prefix used least (the rest of
    its epoch), in a random order, then whole epochs."""
    uses = np.bincount(prefix_doc, minlength=labels.shape[0]).astype(np.int32)
    members = np.arange(labels.shape[0], dtype=np.int64) if pool is None else pool.astype(np.int64)
    if len(members):
        least = members[uses[members] == uses[members].min()]
        if len(least) < len(members):
            doc = rng.permutation(least)
            yield doc, labels[doc].astype(np.int32), uses[doc]
            uses[least] += 1
    yield from _random_blocks(rng, labels, pool, base=uses)


# ----------------------------------------------------------------------------- cluster samplers


class _ClusterPlan:
    """Plan a ``uniform``/``clusterclip`` order stage by stage over one :class:`_ClusterState`."""

    def __init__(self, labels: np.ndarray, stages: list[Stage], budget: Budget, lengths, rng: np.random.Generator,
                 keep, allow_partial: bool, gap: RepeatGap):
        self.stages = stages
        self.budget = budget
        self.lengths = lengths
        self.rng = rng
        self.allow_partial = allow_partial
        self.gap = gap
        self.n_docs = labels.shape[0]
        self.keep = keep
        n_clusters = n_clusters_of(labels, [s.law for s in stages])
        self.laws = [resolve_law(s.law, labels, lengths, n_clusters, budget_tokens=budget.budget_tokens, keep=keep)
                     for s in stages]
        first = self.laws[0]
        self.state = _ClusterState(first.labels, first.sizes)
        self.n_samples = budget.total_samples(self.n_docs)
        self.ends = _stage_ends(stages, budget, self.n_samples, lengths)
        tracks_tokens = budget.tokens is not None or any(e[0] == "tokens" for e in self.ends)
        self.order = _Order(self.n_samples, lengths if tracks_tokens else None)
        self.stalled = False

    def run(self, prefix: Prefix | None) -> Schedule:
        spans: list[StageSpan] = []
        if prefix is not None:
            _start_after(self.order, prefix, self.budget, self.n_samples)
            drawn = np.logical_or.reduce([law.pool for law in self.laws])
            self.state.continue_from(prefix.doc_id, self.rng, self.laws[0].doc_log_weight, drawn)
            spans = list(prefix.spans)
        if self.gap:
            self.state.track_gap(self.gap, self.lengths, prefix.doc_id if prefix is not None else None,
                                 self.n_samples)
        last = len(self.stages) - 1
        for i in range(len(self.stages)):
            start = self.order.n
            self._stage(i, last_stage=i == last)
            spans.append(StageSpan(start, self.order.n))
            if self.stalled:
                break
        spans += [StageSpan(self.order.n, self.order.n)] * (len(self.stages) - i - 1)  # after a stall
        law = self.laws[-1]
        exhausted = law.clip is not None and self.order.n > 0 and not self._capacity_left(law)
        doc_id, cluster, repeat = self.order.result()
        return Schedule(doc_id=doc_id, cluster=cluster, repeat=repeat, exhausted=bool(exhausted),
                        cluster_budget=law.cluster_budget, spans=tuple(spans), stalled=self.stalled)

    def _capacity_left(self, law: ResolvedLaw) -> int:
        """Samples the clip still allows the clusters ``law`` draws."""
        cap: np.ndarray = self.state.sizes * law.clip
        return int(np.maximum(cap - self.state.used, 0)[law.pool].sum())

    def _stage(self, i: int, last_stage: bool) -> None:  # noqa: C901 - one branch per way a stage ends
        law = self.laws[i]
        unit, end = self.ends[i]
        end_samples, end_tokens = self._ends_with_budget(unit, end)
        self._check_can_start(i, unit, end)
        stream = _ClusterStream(self.state, law, self.rng, lengths=self.lengths)
        checked = self._check_clip(i, law, end_samples, end_tokens)
        blocks = stream.gap_blocks(self.gap) if self.gap else stream.blocks()
        rest, reached = self.order.take(blocks, *checked)
        if rest is not None:  # drawn past the end: handed back (the next stage goes on from there)
            self.state.rollback(*rest)
            if self.gap:
                self._rewind_gap(rest[0])
        if not reached and stream.stalled:
            self._stall(i)
        elif not reached and law.clip is not None and unit != "all" and not self.allow_partial:
            self._ran_out(i, law)
        elif reached and unit != "all" and checked == (end_samples, end_tokens):  # not cut short by allow_partial
            self._check_ended_at_its_end(i, unit, end, last_stage)

    def _rewind_gap(self, undone_doc: np.ndarray) -> None:
        """The repeat gap's bookkeeping after the samples ``undone_doc`` at the end of the last block were handed
        back: where the order now ends, and each document's last use from the order itself (see
        :meth:`_GapTrack.rewind`)."""
        track = self.state.gap_track
        track.position -= int(track.units(undone_doc).sum())
        block_doc = np.concatenate([self.order.last(self.order.n - self.order.last_start), undone_doc])
        n = min(self.order.n, track.count)
        window = self.order.last(n)
        while track.lengths is not None and n < self.order.n and _window_length(track.lengths[window],
                                                                                track.count) == n:
            n = min(self.order.n, 2 * n)  # the samples ending less than ``count`` tokens before the end
            window = self.order.last(n)
        if track.lengths is not None:
            window = window[len(window) - _window_length(track.lengths[window], track.count):]
        track.rewind(self.state.slot_of(block_doc), window, self.state.slot_of)

    def _ends_with_budget(self, unit: str, end: int) -> tuple[int | None, int | None]:
        """The stage's end and the budget's, as (samples, tokens): the stage stops at whichever comes first."""
        if unit == "all":
            return None, None
        samples = end if unit == "samples" else None
        tokens = end if unit == "tokens" else None
        if self.n_samples is not None:
            samples = self.n_samples if samples is None else min(samples, self.n_samples)
        if self.budget.tokens is not None:
            tokens = self.budget.tokens if tokens is None else min(tokens, self.budget.tokens)
        return samples, tokens

    def _check_can_start(self, i: int, unit: str, end: int) -> None:
        if unit == "all":
            return
        now = self.order.n if unit == "samples" else self.order.tokens
        if i and self._budget_reached():
            raise ValueError(f"{_stage_name(self.stages, i)} is empty: the budget ends before it starts; end the "
                             "stages before it earlier or raise the budget")
        if end <= now and len(self.stages) > 1:  # (a single law may plan no sample: a budget of 0)
            raise ValueError(f"{_stage_name(self.stages, i)} is empty: the order is already at "
                             f"{_at((unit, now))} when it starts; give each stage a later end than the one before"
                             + (" and than the samples continued from" if i == 0 and now else ""))
        law = self.laws[i]
        if law.clip is None and self.lengths is not None and unit == "tokens":
            drawn_tokens = law.cluster_tokens if law.cluster_tokens is not None else np.bincount(
                law.labels, weights=self.lengths, minlength=law.n_clusters)
            if not np.any(np.asarray(drawn_tokens)[law.pool] > 0):
                raise ValueError(f"{_stage_name(self.stages, i)}: the documents it draws hold no tokens, so it "
                                 "cannot reach its end")

    def _check_clip(self, i: int, law: ResolvedLaw, end_samples, end_tokens):
        """What the clip allows against the stage's end, before drawing: the single law of a fresh order keeps
        the messages (and the switch to the whole pool under ``allow_partial``) of the planner without stages;
        a stage ending at a sample count is checked the same way; one ending at a token count, after it ran out."""
        fresh = self.order.n == 0 and len(self.stages) == 1
        if law.clip is None:
            if fresh:
                lengths = self.lengths if self.lengths is None or self.keep is None else self.lengths[self.keep]
                _check_reachable(self.budget.tokens, lengths, self.n_samples, int(law.sizes[law.pool].sum()))
            return end_samples, end_tokens
        possible = self._capacity_left(law)
        if fresh:
            if self.budget.budget_tokens is not None:
                return end_samples, end_tokens
            possible_tokens = None
            if self.lengths is not None and self.budget.tokens is not None:
                tokens = law.cluster_tokens if law.cluster_tokens is not None else cluster_token_sums(
                    law.labels, self.lengths, law.n_clusters)
                possible_tokens = int((tokens * law.clip)[law.pool].sum())
            return _clip_budget(_clip_text(law.law), possible, possible_tokens, self.n_samples, self.budget.tokens,
                                self.allow_partial)
        if end_samples is not None and end_samples - self.order.n > possible and end_tokens is None:
            if self.allow_partial:
                return self.order.n + possible, None
            asked = end_samples - self.order.n
            raise BudgetError(f"{_stage_name(self.stages, i)}: the clip ({_clip_text(law.law)}) allows at most "
                              f"{possible:,} more samples after sample {self.order.n:,} but the stage asks for "
                              f"{asked:,}; lower the budget, end the stage earlier or raise its clip",
                              possible_samples=self.order.n + possible)
        return end_samples, end_tokens

    def _ran_out(self, i: int, law: ResolvedLaw) -> None:
        raise BudgetError(f"{_stage_name(self.stages, i)}: the clip ({_clip_text(law.law)}) empties the pool after "
                          f"{self.order.n:,} samples ({self.order.tokens:,} tokens), before the stage's end; lower "
                          f"the budget, end the stage earlier or raise its clip", possible_samples=self.order.n)

    def _stall(self, i: int) -> None:
        self.stalled = True
        if not self.allow_partial:
            where = f" in {_stage_name(self.stages, i)}" if len(self.stages) > 1 else ""
            raise BudgetError(f"--min-repeat-gap {self.gap.describe()}: after {self.order.n:,} samples{where} every "
                              f"cluster still drawn would reuse a document of the last {self.gap.describe()}, so "
                              f"nothing can come next; lower the budget to {self.order.n:,} samples or lower the gap",
                              possible_samples=self.order.n)

    def _check_ended_at_its_end(self, i: int, unit: str, end: int, last_stage: bool) -> None:
        """A stage whose end is in the other unit than the budget may meet the budget's end first (or, the last
        one, end before it)."""
        at_end = self.order.n >= end if unit == "samples" else self.order.tokens >= end
        if not last_stage and not at_end:
            raise ValueError(f"{_stage_name(self.stages, i)} runs past the end of the budget (reached at sample "
                             f"{self.order.n:,}); end it earlier or raise the budget")
        if last_stage and not self._budget_reached():
            raise ValueError(f"the last stage ({self.stages[i].describe()}) ends at sample {self.order.n:,}, before "
                             "the end of the budget; let it run to the end (leave out its until)")

    def _budget_reached(self) -> bool:
        return ((self.n_samples is not None and self.order.n >= self.n_samples)
                or (self.budget.tokens is not None and self.order.tokens >= self.budget.tokens))


class _ClusterState:
    """Where every cluster's passes stand, carried from block to block and from stage to stage.

    ``used[k]`` (documents of cluster k emitted so far), ``cur_pass[k]`` (the pass whose permutation is
    stored in ``cur_perm``; -1 before the first) and ``cur_perm`` (for each cluster, the permutation of its
    documents for that pass, at the cluster's slice of the cluster-grouped document order). With a repeat
    gap also ``gap`` (where each document's last use ended).

    Passes hold *slots*, a document's index in the cluster-grouped order (``by_cluster[slot]`` is the
    document): a pass then reads and writes only its cluster's contiguous slice of every per-document array
    kept in that order (the gap's ``last_end``, the document scores), where document ids would be spread
    over the whole corpus.
    """

    def __init__(self, labels: np.ndarray, sizes: np.ndarray):
        self.sizes = sizes
        self.offsets = np.cumsum(sizes) - sizes
        self.size_rank = np.empty_like(sizes)
        self.size_rank[np.argsort(sizes, kind="stable")] = np.arange(sizes.shape[0])
        # documents grouped by cluster, ascending inside a cluster (one sort of packed keys);
        # int32 while N allows, to halve the memory traffic of the gathers below
        self.doc_dtype = np.int32 if labels.shape[0] < 2**31 else np.int64
        self.by_cluster = (np.sort((labels << 32) | np.arange(labels.shape[0])) & _LOW32).astype(self.doc_dtype)
        self.used = np.zeros(sizes.shape[0], np.int64)
        self.cur_pass = np.full(sizes.shape[0], -1, np.int64)
        self.cur_perm = np.empty(labels.shape[0], self.doc_dtype)  # slots
        self._slot_of: np.ndarray | None = None
        self.block_index = 0  # blocks drawn so far, over all stages (their sizes grow with it)
        self.gap: _GapTrack | None = None
        self.stamp: np.ndarray | None = None  # with a gap in tokens: scratch map from slots to a block's samples
        self.stamp_token = 0
        self.slot: np.ndarray | None = None

    @property
    def gap_track(self) -> _GapTrack:
        """The repeat gap's bookkeeping (:meth:`track_gap` made it)."""
        if self.gap is None:
            raise RuntimeError("no repeat gap is kept (track_gap first)")
        return self.gap

    def slot_of(self, doc: np.ndarray) -> np.ndarray:
        """The slots of documents (the inverse of ``by_cluster``, built when first needed)."""
        if self._slot_of is None:
            self._slot_of = np.empty_like(self.by_cluster)
            self._slot_of[self.by_cluster] = np.arange(self.by_cluster.shape[0], dtype=self.doc_dtype)
        return self._slot_of[doc]

    def grouped(self, per_doc: np.ndarray | None) -> np.ndarray | None:
        """A per-document array in the slots' order."""
        return None if per_doc is None else per_doc[self.by_cluster]

    def rollback(self, doc: np.ndarray, cluster: np.ndarray, repeat: np.ndarray) -> None:
        """Undo emissions (in time order) that were drawn but are not part of the order: for each cluster, its
        last ones. The pass in progress keeps its drawn order: the undone emissions of the pass the cluster
        falls back into are its rest, put back where they were; passes started after it are forgotten."""
        if not len(doc):
            return
        slot = self.slot_of(doc)
        counts = np.bincount(cluster, minlength=self.sizes.shape[0])
        touched = np.flatnonzero(counts)
        self.used[touched] -= counts[touched]
        level = np.zeros(self.sizes.shape[0], np.int64)
        level[touched] = self.used[touched] // self.sizes[touched]
        pass_of_level = np.flatnonzero(repeat == level[cluster])
        c = cluster[pass_of_level].astype(np.int64)
        order = np.argsort(c, kind="stable")  # time order kept inside each cluster
        c = c[order]
        first = np.r_[True, c[1:] != c[:-1]] if len(c) else np.zeros(0, bool)
        run_start = np.flatnonzero(first)
        rank = np.arange(len(c)) - np.repeat(run_start, np.diff(np.r_[run_start, len(c)]))
        at = self.offsets[c] + self.used[c] - level[c] * self.sizes[c] + rank
        self.cur_perm[at] = slot[pass_of_level[order]]
        self.cur_pass[touched] = np.minimum(self.cur_pass[touched], level[touched])

    def continue_from(self, prefix_doc: np.ndarray, rng: np.random.Generator, doc_log_weight, drawn) -> None:
        """The state after an older order's first samples: a cluster whose documents the prefix used ``r`` or
        ``r + 1`` times goes on with the ones used ``r`` times, in a fresh random order (by the first stage's
        document scores, when it has them), then whole passes."""
        n_docs = self.cur_perm.shape[0]
        sizes = self.sizes
        k = sizes.shape[0]
        uses = np.bincount(prefix_doc, minlength=n_docs)[self.by_cluster]  # grouped by cluster
        nonempty = np.flatnonzero(sizes > 0)
        low = np.zeros(k, np.int64)
        high = np.zeros(k, np.int64)
        if len(nonempty):
            low[nonempty] = np.minimum.reduceat(uses, self.offsets[nonempty])
            high[nonempty] = np.maximum.reduceat(uses, self.offsets[nonempty])
        grouped_cluster: np.ndarray = np.repeat(np.arange(k), sizes)
        uneven = np.flatnonzero((high > low + 1) & drawn)
        if len(uneven):
            c = int(uneven[0])
            raise ValueError(f"the first {len(prefix_doc):,} samples use the documents of cluster {c} unevenly (some "
                             f"{high[c]} times, some {low[c]}), which no order planned from these documents does; "
                             "continue an order planned from the same documents (the same --dedup-threshold)")
        at_low = uses == low[grouped_cluster]
        m = np.bincount(grouped_cluster[at_low], minlength=k)
        self.used = low * sizes + (sizes - m)
        partial = (m > 0) & (m < sizes)
        self.cur_pass = np.where(partial, low, low - 1)
        # each cluster's slice: its documents used r + 1 times, then those used r times
        low_rank = np.cumsum(at_low) - at_low
        high_rank = np.cumsum(~at_low) - ~at_low
        start_low: np.ndarray = np.repeat(np.cumsum(m) - m, sizes)
        start_high: np.ndarray = np.repeat(np.cumsum(sizes - m) - (sizes - m), sizes)
        base: np.ndarray = np.repeat(self.offsets, sizes)
        slot = np.where(at_low, base + (sizes - m)[grouped_cluster] + low_rank - start_low,
                        base + high_rank - start_high)
        self.cur_perm[slot] = np.arange(n_docs, dtype=self.doc_dtype)
        # the rest of each pass in progress in a fresh random order, rows of equal length together
        rows = np.flatnonzero(partial)
        rows = rows[np.argsort(m[rows], kind="stable")]
        index = _segment_arange(self.offsets[rows] + sizes[rows] - m[rows], m[rows])
        rest = self.cur_perm[index]
        _shuffle_rows(rng, rest, m[rows], m[rows], self.grouped(doc_log_weight))
        self.cur_perm[index] = rest

    def track_gap(self, gap: RepeatGap, lengths, prefix_doc, n_samples: int | None) -> None:
        n_docs = self.cur_perm.shape[0]
        self.gap = _GapTrack(gap, n_docs, lengths, n_samples)
        if prefix_doc is not None:
            self.gap.after(prefix_doc, self.slot_of(prefix_doc))
        if gap.unit == "tokens":
            self.stamp = np.full(n_docs, -1, np.int64)
            self.slot = np.empty(n_docs, np.int64)


class _GapTrack:
    """Where each document's last use ended (``last_end``, by slot), in samples or tokens from the start of the
    order, and where the order is (``position``).

    ``last_end`` is int32 where a gap in samples and a budget of samples bound every position it can hold (the
    order's samples plus one block drawn past its end) below :data:`_INT32_LIMIT`, else int64; ``never`` marks
    a document not used yet. Readers compare it with positions or read it into int64 arrays, never subtract
    from it in its own type."""

    def __init__(self, gap: RepeatGap, n_docs: int, lengths, n_samples: int | None = None):
        self.count = gap.count
        self.lengths = lengths if gap.unit == "tokens" else None
        small = (gap.unit == "samples" and n_samples is not None and n_samples + 2 * _MAX_BLOCK < _INT32_LIMIT
                 and 2 * gap.count < _INT32_LIMIT)
        self.never = -_INT32_LIMIT if small else int(_NEVER)
        self.last_end: np.ndarray = np.full(n_docs, self.never, np.int32 if small else np.int64)
        self.position = 0

    def after(self, doc: np.ndarray, slot: np.ndarray) -> None:
        """The order starts with the samples ``doc`` (a continued order's prefix)."""
        if len(doc):
            end = np.cumsum(self.units(doc))
            np.maximum.at(self.last_end, slot, end.astype(self.last_end.dtype))
            self.position = int(end[-1])

    def units(self, doc: np.ndarray) -> np.ndarray:
        return np.ones(len(doc), np.int64) if self.lengths is None else self.lengths[doc].astype(np.int64)

    def rewind(self, block_slot: np.ndarray, window: np.ndarray, slot_of) -> None:
        """After samples at the end of the order were handed back (``position`` already moved back): every
        document of the last block (``block_slot``: the slots of its samples, kept or not) gets its last use
        from the order's samples that end within ``count`` units of its end (``window``, time order), or none.

        A use that ends ``count`` units or more before the end counts as none: every later sample starts at or
        after the end, so the gap holds for it either way."""
        self.last_end[block_slot] = self.never
        if not len(window):
            return
        end = self.position - np.r_[np.cumsum(self.units(window)[::-1])[::-1][1:], 0]
        slot = slot_of(window)
        last = np.unique(slot[::-1], return_index=True)[1]  # each document's last sample here
        self.last_end[slot[::-1][last]] = end[::-1][last]


class _Planned:
    """A block planned as if every draw were kept, in time order, for the repeat gap: each sample's document,
    cluster, repeat, draw (``time``), where the sample ends and its units; and the samples grouped by cluster
    (``sample``: runs of ``n_kept[g]`` samples of cluster ``group[g]``, each in time order), with, in that
    grouped order, where each one's document's use before ended (``prev``) and how many units it lies outside
    the gap (``margin``: its start less that end less the gap; negative: inside). With a gap in tokens also
    ``prev_index``: the sample before with the same document (-1: none in the block).

    ``prev`` and ``margin`` stay in the grouped order they are computed in (putting them in time order would be
    a scatter over the block): :meth:`close` and :meth:`samples_of` hand them out with the samples asked for."""

    def __init__(self, doc, cluster, repeat, time, prev, margin, end, units, start: int, sample, group, n_kept):
        self.doc, self.cluster, self.repeat, self.time = doc, cluster, repeat, time
        self.prev, self.margin, self.end, self.units = prev, margin, end, units
        self.start_position, self.sample, self.group, self.n_kept = start, sample, group, n_kept
        self.prev_index: np.ndarray | None = None

    def close(self, bound: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The samples less than ``bound`` units outside the gap (or inside it), in time order: ``(sample, margin,
        prev)``."""
        at = np.flatnonzero(self.margin < bound)
        at = at[np.argsort(self.sample[at])]
        return self.sample[at], self.margin[at], self.prev[at]

    def samples_of(self, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The samples of the clusters where ``clusters`` (bool ``[K]``) is set, grouped by cluster (ascending),
        in time order inside a cluster, and their ``prev``."""
        runs = np.flatnonzero(clusters[self.group])
        run_start = np.cumsum(self.n_kept) - self.n_kept
        at = _segment_arange(run_start[runs], self.n_kept[runs])
        return self.sample[at], self.prev[at]

    def previous_index(self, index: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """For samples ``index`` (whose ``prev`` is given): the sample before it with the same document in the
        block, or -1."""
        if self.prev_index is not None:
            return self.prev_index[index]
        # samples: the sample ending at prev
        return np.where(prev > self.start_position, prev - self.start_position - 1, -1)


class _ClusterStream:
    """The ``uniform`` / ``clusterclip`` process of one law over a :class:`_ClusterState`, generated block by
    block."""

    def __init__(self, state: _ClusterState, law: ResolvedLaw, rng: np.random.Generator, *, lengths=None):
        self.state = state
        self.rng = rng
        # per-cluster token budgets: a cluster leaves at the first sample that reaches its budget
        self.budget = law.cluster_budget
        self.lengths = lengths
        self.tokens_used = None if self.budget is None else np.zeros(state.sizes.shape[0], np.int64)
        self.done = None if self.budget is None else np.zeros(state.sizes.shape[0], bool)
        self.doc_logw = state.grouped(law.doc_log_weight)  # passes hold slots
        self.weights = law.weights
        self.cap: np.ndarray | None = None if law.clip is None else state.sizes * law.clip
        live = self.weights > 0
        if self.cap is not None:
            live &= state.used < self.cap
        self.active = np.flatnonzero(live)
        self.stalled = False

    def blocks(self) -> Iterator[_Block]:
        chooser = None
        while len(self.active):
            if chooser is None:
                chooser = _WeightedChooser(self.active, self.weights)
            n_active = len(self.active)
            size = _block_size(self.state.block_index)
            self.state.block_index += 1
            yield self._block(chooser.draw(self.rng, size))
            self._drop_finished()
            if len(self.active) != n_active:
                chooser = None

    def _drop_finished(self) -> None:
        if self.cap is not None:
            self.active = self.active[self.state.used[self.active] < self.cap[self.active]]
        if self.done is not None:
            self.active = self.active[~self.done[self.active]]

    def _block(self, choice: np.ndarray, with_time: bool = False):
        state = self.state
        m = len(choice)
        if m == 0:
            empty: _Block = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32))
            if with_time:
                self._runs: tuple[np.ndarray, ...] = (np.zeros(0, np.int64),) * 4
                nothing: np.ndarray = np.zeros(0, np.int64)
                return _Planned(*empty, nothing, nothing, nothing, nothing, nothing, self.state.gap_track.position,
                                nothing, nothing, nothing)
            return empty
        # Sort the draws by (cluster, time): each cluster's draws become a run, in time order.
        key = np.sort((choice << 32) | np.arange(m))
        cluster = key >> 32
        time = key & _LOW32
        starts = np.flatnonzero(np.r_[True, cluster[1:] != cluster[:-1]])
        group = cluster[starts]
        n_kept = np.diff(np.r_[starts, m])
        if with_time:  # the draws' runs, for the repeat gap
            self._runs = (cluster, time, starts, group)
        rejected = False
        if self.cap is not None:
            # rejection: a cluster's draws count only until it reaches its cap
            capped = np.minimum(n_kept, np.maximum(self.cap[group] - state.used[group], 0))
            rejected = bool(np.any(capped < n_kept))
            if rejected:
                kept = _segment_arange(starts, capped)
                cluster, time, n_kept = cluster[kept], time[kept], capped
        slot, repeat, pieces = self._documents(group, n_kept)
        doc = state.by_cluster[slot]
        if self.budget is not None:
            cut, n_kept = self._cut_at_budget(group, n_kept, doc)
            if cut is not None:
                doc, repeat, cluster, time = doc[cut], repeat[cut], cluster[cut], time[cut]
                rejected = True
        state.used[group] += n_kept

        # back to time order, the rejected draws left out: each kept draw goes straight to its sample's place
        draw: np.ndarray | None = None  # with time and rejected draws: the draw of each sample
        sample = time  # where each emission goes (every draw a sample: sample i is draw i)
        if rejected:
            kept = np.zeros(m, bool)
            kept[time] = True
            through = np.cumsum(kept, dtype=np.int32)  # (a block holds fewer than 2**31 draws)
            through -= 1
            sample = through[time].astype(np.int64)
            if with_time:
                draw = np.flatnonzero(kept)
        n = len(time)  # the kept draws (each once in ``time``)
        out_doc: np.ndarray = np.empty(n, np.int64)
        out_cluster: np.ndarray = np.empty(n, np.int32)
        out_repeat: np.ndarray = np.empty(n, np.int32)
        out_doc[sample] = doc
        out_cluster[sample] = cluster
        out_repeat[sample] = repeat
        if with_time:
            return self._note_uses(out_doc, out_cluster, out_repeat, np.arange(m) if draw is None else draw, sample,
                                   slot, pieces, (group, n_kept))
        return out_doc, out_cluster, out_repeat

    # ------------------------------------------------------------------------- the repeat gap

    def _note_uses_sorted(self, grouped_slot, grouped_end, grouped_prev, sample, grouped_prev_index) -> None:
        """:meth:`_note_uses` by one sort of the emissions by (document, sample) instead of level by level."""
        track = self.state.gap_track
        key = np.sort((grouped_slot.astype(np.int64) << 32) | sample)
        d = key >> 32
        at: np.ndarray = np.empty(len(key), np.int64)
        at[sample] = np.arange(len(sample))  # grouped index of each sample
        at = at[key & _LOW32]
        repeat_of_doc = np.r_[False, d[1:] == d[:-1]]
        grouped_prev[at] = np.where(repeat_of_doc, np.r_[0, grouped_end[at][:-1]], track.last_end[d])
        if grouped_prev_index is not None:
            grouped_prev_index[at[repeat_of_doc]] = (key & _LOW32)[np.flatnonzero(repeat_of_doc) - 1]
        last = np.r_[d[1:] != d[:-1], True]
        track.last_end[d[last]] = grouped_end[at[last]]

    def gap_blocks(self, gap: RepeatGap) -> Iterator[tuple]:
        """Blocks of samples that keep the repeat gap (see the module docstring). A cluster that leaves the pool
        stays in the chooser, its draws rejected, until the clusters gone weigh half of it."""
        chooser = None
        largest = _max_gap_block(len(self.active), self.state.cur_perm.shape[0])
        size = min(largest, _block_size(self.state.block_index))
        self.gone = np.zeros(self.weights.shape[0], bool)
        gone_weight = chooser_weight = 0.0
        self.n_live = len(self.active)
        self.resting = np.zeros(self.weights.shape[0], bool)  # rejected since the last sample
        while self.n_live:
            if chooser is None:
                self.active = self.active[~self.gone[self.active]]
                chooser = _WeightedChooser(self.active, self.weights)
                chooser_weight, gone_weight = float(self.weights[self.active].sum()), 0.0
            self.state.block_index += 1
            self.left_weight = 0.0
            block, progress, stalled = self._gap_round(chooser.draw(self.rng, size))
            if len(block[0]):
                yield block
            if stalled and not self._unstall():
                self.stalled = True
                return
            if self.left_weight:
                gone_weight += self.left_weight
                if gone_weight > chooser_weight / 2 or size >= len(self.active):  # rebuilding costs O(K)
                    chooser = None
            size = min(largest, 2 * size) if progress is None else max(_MIN_GAP_BLOCK, min(largest, 2 * progress))

    def _rest(self, committed: bool, rejected_time: np.ndarray, rejected_cluster: np.ndarray) -> int | None:
        """Note the clusters that rest after a round (rejected by the gap since its last sample, in time order).
        Returns the draw at which every live cluster rests (the planner stops drawing there), or None."""
        if committed:
            self.resting[:] = False
        need = self.n_live - int(np.count_nonzero(self.resting & ~self.gone))
        if need <= 0 < self.n_live:  # the last cluster that did not rest has just left the pool
            return int(rejected_time[0]) if len(rejected_time) and not committed else -1
        fresh = ~self.resting[rejected_cluster] & ~self.gone[rejected_cluster]
        if not fresh.any():
            return None
        clusters, first = np.unique(rejected_cluster[fresh], return_index=True)
        self.resting[clusters] = True
        if len(clusters) < need:
            return None
        return int(np.sort(rejected_time[fresh][first])[need - 1])

    def _unstall(self) -> bool:
        """Every live cluster rests: each moves the documents still inside the gap at the head of its pass (up to
        its first one outside) to the end of the pass, and the planner goes on. False when no live cluster has a
        document outside the gap left in its pass: then nothing can come next."""
        state, track = self.state, self.state.gap_track
        self.resting[:] = False
        live = self.active[~self.gone[self.active]]
        size = state.sizes[live]
        done = state.used[live] - state.cur_pass[live] * size  # of the stored pass (every live cluster drew it)
        length = np.maximum(size - done, 0)
        index = _segment_arange(state.offsets[live] + done, length)
        ok = track.last_end[state.cur_perm[index]] <= track.position - track.count
        start = np.cumsum(length) - length
        position = np.arange(len(index)) - np.repeat(start, length)
        first: np.ndarray = np.full(len(live), -1, np.int64)
        hit = np.flatnonzero(ok)
        if not len(hit):
            return False
        owner = np.repeat(np.arange(len(live)), length)[hit]
        runs, at = np.unique(owner, return_index=True)
        first[runs] = position[hit[at]]
        turn: np.ndarray = np.repeat(np.where(first > 0, first, 0), length)
        state.cur_perm[index] = state.cur_perm[index][np.repeat(start, length) + (position + turn) % np.repeat(length,
                                                                                                             length)]
        return True

    def _left(self) -> np.ndarray:
        """Clusters drawn in the last block that are at their clip."""
        if self.cap is None:
            return np.zeros(0, np.int64)
        touched = self._runs[3]
        return touched[self.state.used[touched] >= self.cap[touched]]

    def _gap_round(self, choice: np.ndarray):
        """Plan the draws ``choice`` under the repeat gap: ``(block, draws used or None when all were, whether
        every live cluster rests after them)`` (see :class:`_GapRound`)."""
        planned = self._block(choice, with_time=True)
        block, used, rejected_time, rejected_cluster = _GapRound(self, len(choice), planned).run()
        left = self._left()
        left = left[~self.gone[left]]
        if len(left):  # clusters at their clip leave the pool (their draws are rejected from now on)
            self.gone[left] = True
            self.n_live -= len(left)
            self.left_weight = float(self.weights[left].sum())
        stall = self._rest(len(block[0]) > 0, rejected_time, rejected_cluster)
        if stall is not None:  # nothing was kept after it: the draws after this one are drawn again once unstalled
            return block, stall + 1, True
        return block, used, False

    def _cut_at_budget(self, group: np.ndarray, n_kept: np.ndarray, doc: np.ndarray):
        """Cut each cluster's run (``doc`` grouped by cluster) after its first document that brings the
        cluster to its token budget; such a cluster is done. Returns ``(mask of the kept documents or
        None, new n_kept)``. The passes already drawn for a done cluster are never used again."""
        lengths, tokens_used, budget, done = self.lengths, self.tokens_used, self.budget, self.done
        assert lengths is not None and tokens_used is not None and budget is not None and done is not None
        tok = lengths[doc]
        run_start = np.cumsum(n_kept) - n_kept
        total = np.cumsum(tok)
        total += np.repeat(tokens_used[group] - (total[run_start] - tok[run_start]), n_kept)
        hits = np.flatnonzero(total >= np.repeat(budget[group], n_kept))
        cut = None
        if len(hits):
            run_of: np.ndarray = np.repeat(np.arange(len(group)), n_kept)
            runs, first = np.unique(run_of[hits], return_index=True)
            n_kept = n_kept.copy()
            n_kept[runs] = hits[first] - run_start[runs] + 1
            done[group[runs]] = True
            cut = (np.arange(len(doc)) - run_start[run_of]) < n_kept[run_of]
            tok = np.where(cut, tok, 0)
        tokens_used[group] += np.add.reduceat(tok, run_start) if len(tok) else 0
        return cut, n_kept

    def _documents(self, group: np.ndarray, n_kept: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
        """Documents (as slots) and pass indices of the next ``n_kept[g]`` emissions of each cluster ``group[g]``,
        grouped by cluster; draws the permutations of passes that start here.

        Each cluster's emissions are one run: the rest of its stored pass (``stored`` of them),
        then its fresh passes in order (the last one possibly cut short). Also returns these pieces, in
        the grouped order, as (level, length): the level is the pass counted from the one the cluster had
        stored, 0 for the rest of that one.
        """
        state = self.state
        size = state.sizes[group]
        used = state.used[group]
        previous = state.cur_pass[group]
        first = used // size
        last = (used + n_kept - 1) // size
        stored = np.where(first == previous, np.minimum(size * (first + 1) - used, n_kept), 0)
        n_new = last - previous  # passes that start in this block (>= 0)
        new = np.flatnonzero(n_new)
        # Fresh passes: n_new[g] permutations of cluster g's documents, laid out by cluster size
        # so that passes of equal length are consecutive rows of one 2-D block.
        by_size = new[np.argsort(state.size_rank[group[new]])]
        fresh_len = n_new * size
        fresh_base: np.ndarray = np.zeros(len(group), np.int64)
        fresh_base[by_size] = np.cumsum(fresh_len[by_size]) - fresh_len[by_size]
        fresh: np.ndarray = _segment_arange(
            np.repeat(state.offsets[group[by_size]], n_new[by_size]),
            np.repeat(size[by_size], n_new[by_size]),
        ).astype(state.doc_dtype)  # slots
        _shuffle_rows(self.rng, fresh, size[by_size], fresh_len[by_size], self.doc_logw)

        out_start = np.cumsum(n_kept) - n_kept
        doc: np.ndarray = np.empty(int(n_kept.sum()), state.doc_dtype)
        doc[_segment_arange(out_start, stored)] = state.cur_perm[
            _segment_arange(state.offsets[group] + used - first * size, stored)
        ]
        doc[_segment_arange(out_start + stored, n_kept - stored)] = fresh[
            _segment_arange(fresh_base, n_kept - stored)
        ]

        # pass index: one piece for the stored pass, one per fresh pass (the last one cut short)
        n_pieces = 1 + n_new
        piece_group: np.ndarray = np.repeat(np.arange(len(group)), n_pieces)
        piece = _segment_arange(np.zeros(len(group), np.int64), n_pieces)
        piece_len = np.where(piece == 0, stored[piece_group], size[piece_group])
        last_piece = np.cumsum(n_pieces)[new] - 1
        piece_len[last_piece] = n_kept[new] - stored[new] - (n_new[new] - 1) * size[new]
        repeat: np.ndarray = np.repeat((previous[piece_group] + piece).astype(np.int32), piece_len)

        # keep the last fresh pass of every cluster for the next blocks
        g_new = group[new]
        state.cur_perm[_segment_arange(state.offsets[g_new], size[new])] = fresh[
            _segment_arange(fresh_base[new] + fresh_len[new] - size[new], size[new])
        ]
        state.cur_pass[g_new] = last[new]
        return doc, repeat, (piece, piece_len, n_pieces)

    def _note_uses(self, doc, cluster, repeat, time, sample, grouped_slot, pieces, runs) -> _Planned:
        """A block planned with every draw kept (time order; ``sample``: the sample of each emission in the
        cluster-grouped order of ``grouped_slot``; ``pieces``: the (level, length) of each piece of emissions in
        that order, the level being the pass counted from the one its cluster had stored before the block, 0
        for the rest of that one), with each sample's end and the end of its
        document's use before, which it writes in the gap's ``last_end`` as the block's last use of each
        document (undone by :meth:`_GapTrack.restore` where a sample is not kept).

        A document is used at most once per pass, and passes are permutations, so the emissions go level
        by level: in one level every document comes once, and what it reads from ``last_end`` is its use in
        the level before or before the block. One gather and one scatter per sample, in the slots' order
        (a cluster's own slice); a level's emissions are its pieces in order, one range per piece."""
        track = self.state.gap_track
        units = track.units(doc)
        by_tokens = track.lengths is not None
        end: np.ndarray = track.position + (np.cumsum(units) if by_tokens else np.arange(1, len(doc) + 1))
        grouped_end = end[sample] if by_tokens else track.position + 1 + sample
        grouped_prev: np.ndarray = np.empty(len(grouped_slot), np.int64)
        if by_tokens:  # a sample's end does not name it (a sample of 0 tokens ends where the one before does)
            grouped_prev_index: np.ndarray = np.full(len(grouped_slot), -1, np.int64)
            self.state.stamp_token += 1
        piece, piece_len, n_pieces = pieces
        n_levels = int(piece.max(initial=-1)) + 1  # (only a piece 0 may be empty)
        if n_levels > _MAX_LEVELS:  # tiny clusters drawn often (no clip): many passes here, one sort instead
            self._note_uses_sorted(grouped_slot, grouped_end, grouped_prev, sample,
                                   grouped_prev_index if by_tokens else None)
        else:
            # The pieces level by level, each level's in grouped order. A cluster with no pass starting here uses
            # each of its documents once in the block: where such clusters have most of the block, one gather and
            # one scatter for the whole block, then the other clusters' documents put back as before the block
            # (where one comes twice, the scatter kept either end) go level by level.
            #
            # In samples, always: one gather and one scatter for the whole block, then the other clusters level
            # by level, without putting their documents back. Their first level (the rest of the stored pass) has
            # its use before from the whole gather; the later levels read ``last_end`` after the level before
            # wrote it, which gives the use in that level, except in the first fresh pass for a document not in
            # the stored rest: ``last_end`` then holds the end of one of its own uses in this block (where the
            # scatter met it), which is not before this one, and its use before the block is the whole gather's.
            # (Every level after the first fresh pass follows a whole pass, which used every document.)
            multi: np.ndarray = np.repeat(n_pieces > 1, n_pieces)
            level, length = piece[multi], piece_len[multi]
            whole = not by_tokens or 4 * int(length.sum()) < len(grouped_slot)
            if whole:
                grouped_prev[:] = track.last_end[grouped_slot]
                track.last_end[grouped_slot] = grouped_end
            else:
                multi[:] = True
                level, length = piece, piece_len
            order = np.argsort(level, kind="stable")
            by_level = _segment_arange((np.cumsum(piece_len) - piece_len)[multi][order], length[order])
            if whole and by_tokens:
                track.last_end[grouped_slot[by_level]] = grouped_prev[by_level]
            bounds = np.r_[0, np.cumsum(length[order])][np.searchsorted(level[order], np.arange(n_levels + 1))]
            stamp, slot = self.state.stamp, self.state.slot
            for i, (lo, hi) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
                at = by_level[lo:hi]
                d = grouped_slot[at]
                if not by_tokens:
                    if i:
                        prev = track.last_end[d]
                        if i == 1:
                            prev = np.where(prev < grouped_end[at], prev, grouped_prev[at])
                        grouped_prev[at] = prev
                    track.last_end[d] = grouped_end[at]
                    continue
                grouped_prev[at] = track.last_end[d]
                track.last_end[d] = grouped_end[at]
                assert stamp is not None and slot is not None  # a gap in tokens keeps them (track_gap)
                here = stamp[d] == self.state.stamp_token
                grouped_prev_index[at[here]] = slot[d[here]]
                stamp[d] = self.state.stamp_token
                slot[d] = sample[at]
        margin = grouped_end - (units[sample] if by_tokens else 1)  # each sample's start, less the use before
        margin -= grouped_prev
        margin -= track.count
        planned = _Planned(doc, cluster, repeat, time, grouped_prev, margin, end, units, track.position, sample,
                           *runs)
        if by_tokens:
            planned.prev_index = np.empty(len(doc), np.int64)
            planned.prev_index[sample] = grouped_prev_index
        return planned



class _GapRound:
    """One block of draws planned under the repeat gap (what :meth:`_ClusterStream.gap_blocks` yields).

    The block was planned as if every draw were kept (:meth:`_ClusterStream._block`). A sample whose document
    was used within the gap is rejected instead; the document stays next in its cluster, so the rejection
    changes what its cluster emits at its later draws, and it moves every later sample back, which may bring
    another sample within the gap. The clusters with a rejection, and those with a sample close enough to
    the gap to be moved into it by the rejections before it (the bound: every sample of those clusters in
    between rejected), are "hot" and resolved exactly; every other sample is kept as planned, only moved.

    The hot clusters' draws go through a fixpoint: each pass recomputes every draw's document (the next one
    of its cluster after the draws accepted before it), position and previous use from the current
    decisions, and flips every decision that disagrees with the rule. Decisions before the earliest
    disagreement follow from decisions before them alone, so they are those of the one-step-at-a-time
    process, and each pass settles at least that earliest one: the fixpoint is the sequential result. When
    :data:`_GAP_PASSES` passes have not settled it (a few clusters drawn again and again within the gap,
    each decision hanging on the one before), the draws from the earliest disagreement on are decided one at
    a time (:meth:`_HotClusters._one_at_a_time`: only the hot draws, never the block).
    """

    def __init__(self, stream: _ClusterStream, n_draws: int, planned: _Planned):
        self.stream = stream
        self.track: _GapTrack = stream.state.gap_track
        self.n_draws = n_draws
        self.planned = planned
        self.doc, self.cluster, self.repeat, self.time = planned.doc, planned.cluster, planned.repeat, planned.time
        self.end, self.units = planned.end, planned.units

    def run(self):
        # the samples close to the gap (their start less their document's use before, less the gap: the margin)
        close = self.planned.close(_CLOSE)
        short = close[0][close[1] < 0]
        if not len(short):  # the block as planned (its last uses are noted already)
            if len(self.end):
                self.track.position = int(self.end[-1])
            nothing: np.ndarray = np.zeros(0, np.int64)
            return (self.doc, self.cluster, self.repeat), None, nothing, nothing
        hot = self._hot(short, close)
        hot_samples, hot_prev = self.planned.samples_of(hot)
        self._restore(hot_samples, hot_prev)  # the hot clusters' uses are redone
        decided = _HotClusters(self, hot, hot_samples).resolve()
        return self._commit(hot_samples, decided)

    def _hot(self, short: np.ndarray, close: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """Clusters with a rejection, closed under "a sample that the possible rejections before it could move
        into the gap". A cluster's samples before its first such event are kept for certain (nothing before
        them can move them into the gap, and their documents follow from its draws alone), so only its
        samples from that event on count as possible rejections."""
        first_event = np.full(self.stream.weights.shape[0], self.n_draws, np.int64)
        np.minimum.at(first_event, self.cluster[short], self.time[short])
        bound = _CLOSE
        while True:
            hot = first_event < self.n_draws
            gone = self.planned.samples_of(hot)[0]  # the samples that may be rejected, in time order
            gone = np.sort(gone[self.time[gone] >= first_event[self.cluster[gone]]])
            gone_through = np.r_[0, np.cumsum(self.units[gone])]
            total = int(gone_through[-1])
            if total > bound:  # ``close``: the samples less than ``bound`` outside the gap (a superset of those
                bound = 2 * total  # less than ``total``), rarely recomputed
                close = self.planned.close(bound)
            candidates, margin, prev_end = close
            pick = np.flatnonzero(margin < total)
            pick = pick[self.time[candidates[pick]] < first_event[self.cluster[candidates[pick]]]]
            candidates, margin, prev_end = candidates[pick], margin[pick], prev_end[pick]
            prev = self.planned.previous_index(candidates, prev_end)
            # the units that may go between the use before and the sample
            between = (gone_through[np.searchsorted(gone, candidates, side="right")]
                       - gone_through[np.searchsorted(gone, prev, side="right")])
            near = candidates[margin < between]
            if not len(near):
                return hot
            np.minimum.at(first_event, self.cluster[near], self.time[near])

    def _restore(self, hot_samples: np.ndarray, hot_prev: np.ndarray) -> None:
        """The hot clusters' documents' last uses go back to where they were before the block (``hot_prev``: where
        each hot sample's document's use before ended)."""
        first = self.planned.previous_index(hot_samples, hot_prev) < 0  # each document's first use here
        self.track.last_end[self.slot_of(self.doc[hot_samples[first]])] = hot_prev[first]

    def slot_of(self, doc: np.ndarray) -> np.ndarray:
        return self.stream.state.slot_of(doc)

    def _commit(self, hot_samples: np.ndarray, decided: _HotDecisions):
        """Keep the cold samples (moved) and the hot clusters' accepted draws; hand the rest back.

        The cold samples' last uses in ``last_end`` stay as planned except near the end of the block: a use
        that ends ``count`` units or more before the block's end, as planned and as kept, lets every later
        sample through either way (where the order is cut inside the block, :meth:`_ClusterPlan._rewind_gap`
        redoes them)."""
        track = self.track
        # a hot cluster keeps as many of its planned samples (the first ones) as it has accepted draws
        hot_cluster = self.cluster[hot_samples]
        first = np.r_[True, hot_cluster[1:] != hot_cluster[:-1]] if len(hot_cluster) else np.zeros(0, bool)
        rank = np.arange(len(hot_cluster)) - np.maximum.accumulate(np.where(first, np.arange(len(first)), 0))
        undo = np.sort(hot_samples[rank >= decided.accepted_per_cluster[hot_cluster]])
        self.stream.state.rollback(self.doc[undo], self.cluster[undo], self.repeat[undo])
        hot_sorted = np.sort(hot_samples)
        # the final order: the cold samples and the accepted draws, by draw time
        m = len(self.doc)
        at: np.ndarray = np.asarray(np.searchsorted(self.time, decided.time))  # planned samples drawn before them
        cold_before = at - np.searchsorted(hot_sorted, at)
        index = cold_before + np.arange(len(at))  # of each accepted draw in the final order
        at_sample = np.minimum(at, m - 1)
        present = (at < m) & (self.time[at_sample] == decided.time)  # a draw the plan had a sample for
        keep: np.ndarray = np.ones(m, bool)
        keep[hot_samples] = False
        keep[at[present]] = True
        columns = []
        for planned, value in ((self.doc, decided.doc), (self.cluster, decided.cluster),
                               (self.repeat, decided.repeat)):
            planned[at[present]] = value[present]  # (the plan's columns are not used after this)
            column = planned[keep]
            if not present.all():  # accepted draws the clip had rejected as planned
                column = np.insert(column, index[~present] - np.arange(int((~present).sum())), value[~present])
            columns.append(column)
        doc = columns[0]
        n = len(doc)
        decided_units = track.units(decided.doc)
        hot_units = self.units[hot_sorted]
        planned_units = int(self.end[-1]) - track.position if m else 0
        end_position = track.position + planned_units - int(hot_units.sum()) + int(decided_units.sum())
        # the accepted draws' last uses, then every last use near the end of the block, where they end as kept
        cold_units_before = (np.where(at > 0, self.end[np.maximum(at - 1, 0)], track.position) - track.position
                             - np.r_[0, np.cumsum(hot_units)][np.searchsorted(hot_sorted, at)])
        decided_end = track.position + cold_units_before + np.cumsum(decided_units)
        last = np.unique(decided.slot[::-1], return_index=True)[1]
        track.last_end[decided.slot[::-1][last]] = decided_end[::-1][last]
        tail = n - self._window(doc, end_position)
        planned_tail = int(np.searchsorted(self.end, end_position - track.count, side="right"))
        self._note_last_uses(doc[max(0, min(tail, planned_tail - len(hot_samples))):], end_position)
        track.position = end_position
        last_time = -1
        if n:
            kept_planned = np.flatnonzero(keep[max(0, m - len(hot_samples) - 1):])
            last_time = max(int(self.time[max(0, m - len(hot_samples) - 1) + kept_planned[-1]])
                            if len(kept_planned) else -1, int(decided.time[-1]) if len(decided.time) else -1)
        after = decided.rejected_time > last_time  # rejected at the position it ends at
        order = np.argsort(decided.rejected_time[after], kind="stable")
        return ((doc, columns[1], columns[2]), None, decided.rejected_time[after][order],
                decided.rejected_cluster[after][order].astype(np.int64))

    def _window(self, doc: np.ndarray, end_position: int) -> int:
        """How many of the last samples ``doc`` end less than ``count`` units before ``end_position``."""
        track = self.track
        if track.lengths is None:
            return min(len(doc), track.count)
        n = min(len(doc), track.count)
        while n < len(doc) and _window_length(track.lengths[doc[len(doc) - n:]], track.count) == n:
            n = min(len(doc), 2 * n)
        return _window_length(track.lengths[doc[len(doc) - n:]], track.count)

    def _note_last_uses(self, doc: np.ndarray, end_position: int) -> None:
        """The last samples of the order (``doc``, ending at ``end_position``): each document's last use here."""
        if not len(doc):
            return
        units = self.track.units(doc)
        end = end_position - np.r_[np.cumsum(units[::-1])[::-1][1:], 0]
        slot = self.slot_of(doc)
        last = np.unique(slot[::-1], return_index=True)[1]
        self.track.last_end[slot[::-1][last]] = end[::-1][last]


@dataclass
class _HotDecisions:
    """The hot clusters' accepted draws (time, document, cluster, repeat, slot), and the draws rejected by the
    gap."""

    time: np.ndarray
    doc: np.ndarray
    cluster: np.ndarray
    repeat: np.ndarray
    slot: np.ndarray
    accepted_per_cluster: np.ndarray  # int64 [K]
    rejected_time: np.ndarray  # draws rejected by the gap (not by the clip)
    rejected_cluster: np.ndarray


#: passes of the hot clusters' fixpoint before the draws it has not settled are decided one at a time
_GAP_PASSES = 6
#: a sample this close to the gap (in its units) or closer is looked at when the samples before it may move
_CLOSE = 1 << 12
#: at most this many hot draws are decided one at a time straight away
_GAP_FEW = 16


class _HotClusters:
    """The exact decisions of the hot clusters' draws in a :class:`_GapRound` (see there)."""

    def __init__(self, gap_round: _GapRound, hot: np.ndarray, planned: np.ndarray):
        r = gap_round
        self.round = r
        cluster, time, starts, group = r.stream._runs  # every draw, by (cluster, time)
        runs = np.flatnonzero(hot[group])
        lengths = np.diff(np.r_[starts, len(cluster)])[runs]
        pick = _segment_arange(starts[runs], lengths)
        self.cluster = cluster[pick]
        self.time = time[pick]
        self.run_start: np.ndarray = np.repeat(np.cumsum(lengths) - lengths, lengths)
        self.by_time = np.argsort(self.time, kind="stable")
        self.time_rank: np.ndarray = np.empty(len(self.time), np.int64)
        self.time_rank[self.by_time] = np.arange(len(self.time))
        # each hot cluster's planned samples in order (``planned``): what its accepted draws emit, one after the other
        self.seq_doc = r.doc[planned]
        self.seq_slot = r.slot_of(self.seq_doc)
        self.seq_repeat = r.repeat[planned]
        k = hot.shape[0]
        self.n_planned = np.bincount(r.cluster[planned], minlength=k)
        self.seq_start = np.cumsum(self.n_planned) - self.n_planned
        # units of the cold samples before each draw: of all planned samples drawn before it, less the hot ones'
        at = np.searchsorted(r.time, self.time)
        hot_sorted = np.sort(planned)
        hot_through = np.r_[0, np.cumsum(r.units[hot_sorted])]
        self.base = np.where(at > 0, r.end[np.maximum(at - 1, 0)], r.track.position) - hot_through[
            np.searchsorted(hot_sorted, at)]
        self.k = k

    def resolve(self) -> _HotDecisions:
        accepted = (np.arange(len(self.time)) - self.run_start) < self.n_planned[self.cluster]  # as planned
        if len(self.time) <= _GAP_FEW:  # a few draws: one at a time at once
            nothing: np.ndarray = np.zeros(len(self.time), np.int64)
            accepted = self._one_at_a_time(accepted, -1, self.seq_doc[nothing], nothing, nothing)
            ok, doc, seq, start, units = self._rule(accepted)
            return self._decisions(accepted, doc, seq)
        for _ in range(_GAP_PASSES):
            ok, doc, seq, start, units = self._rule(accepted)
            wrong = accepted != ok
            if not wrong.any():
                return self._decisions(accepted, doc, seq)
            accepted = ok
        # slow to settle: a few clusters drawn again and again within the gap, each decision hanging on the one
        # before; settle the draws from the earliest undecided one on one at a time
        ok, doc, seq, start, units = self._rule(accepted)
        wrong = accepted != ok
        if wrong.any():
            accepted = self._one_at_a_time(accepted, int(self.time[wrong].min()), doc, start, units)
            ok, doc, seq, start, units = self._rule(accepted)
        return self._decisions(accepted, doc, seq)

    def _one_at_a_time(self, accepted, settled_before: int, doc, start, units) -> np.ndarray:
        """The decisions of the hot draws from time ``settled_before`` on, one draw after the other (the rule of
        :meth:`_rule`), the ones before kept."""
        track = self.round.track
        accepted = accepted.copy()
        settled = self.time < settled_before
        kept = accepted & settled
        rank = np.bincount(self.cluster[kept], minlength=self.k).tolist()
        shift = int(units[kept].sum())  # units of the hot samples before
        last_end = dict(zip(self.seq_slot_of(doc[kept]).tolist(), (start + units)[kept].tolist()))
        slots, lengths = self.seq_slot.tolist(), track.units(self.seq_doc).tolist()
        n_planned, seq_start = self.n_planned.tolist(), self.seq_start.tolist()
        later = self.by_time[~settled[self.by_time]]
        base, cluster = self.base[later].tolist(), self.cluster[later].tolist()
        decisions = []
        for b, c in zip(base, cluster):
            r = rank[c]
            if r >= n_planned[c]:  # the clip
                decisions.append(False)
                continue
            slot = slots[seq_start[c] + r]
            at = b + shift
            previous = last_end.get(slot)
            if previous is None:
                previous = int(track.last_end[slot])
            if at - previous < track.count:  # the gap
                decisions.append(False)
                continue
            decisions.append(True)
            rank[c] = r + 1
            shift += lengths[seq_start[c] + r]
            last_end[slot] = at + lengths[seq_start[c] + r]
        accepted[later] = decisions
        return accepted

    def seq_slot_of(self, doc: np.ndarray) -> np.ndarray:
        return self.round.stream.state.slot_of(doc)

    def _rule(self, accepted: np.ndarray):
        """For every hot draw under ``accepted``: whether the rule accepts it, its document, its index in its
        cluster's planned samples, where it would start and its units."""
        track = self.round.track
        rank = _exclusive_run_cumsum(accepted, self.run_start)
        n_planned = self.n_planned[self.cluster]
        in_plan = rank < n_planned
        seq = self.seq_start[self.cluster] + np.minimum(rank, n_planned - 1)
        doc = self.seq_doc[seq]
        slot = self.seq_slot[seq]
        units = track.units(doc)
        accepted_units = np.where(accepted, units, 0)[self.by_time]
        before: np.ndarray = np.empty(len(doc), np.int64)
        before[self.by_time] = np.cumsum(accepted_units) - accepted_units
        start = self.base + before
        end = start + units
        # the end of the previous accepted draw of the same document (this round), else its last use before
        key = np.sort((slot.astype(np.int64) << 32) | self.time_rank)
        where = self.by_time[key & _LOW32]
        d = key >> 32
        first_of_doc = np.r_[True, d[1:] != d[:-1]]
        run_start = np.maximum.accumulate(np.where(first_of_doc, np.arange(len(d)), 0))
        last_accepted = np.maximum.accumulate(np.where(accepted[where], np.arange(len(d)), -1))
        previous = np.r_[-1, last_accepted[:-1]]
        has = previous >= run_start
        prev_end = np.where(has, end[where[np.maximum(previous, 0)]], track.last_end[d])
        ok: np.ndarray = np.empty(len(doc), bool)
        ok[where] = in_plan[where] & (start[where] - prev_end >= track.count)
        return ok, doc, seq, start, units

    def _decisions(self, accepted, doc, seq) -> _HotDecisions:
        keep = self.by_time[accepted[self.by_time]]  # in time order
        per_cluster = np.bincount(self.cluster[keep], minlength=self.k)
        gap_rejected = ~accepted & (_exclusive_run_cumsum(accepted, self.run_start) < self.n_planned[self.cluster])
        return _HotDecisions(self.time[keep], doc[keep], self.cluster[keep], self.seq_repeat[seq[keep]],
                             self.seq_slot[seq[keep]], per_cluster, self.time[gap_rejected],
                             self.cluster[gap_rejected])


def _window_length(units: np.ndarray, count: int) -> int:
    """How many of the last samples (``units``, time order) end less than ``count`` units before the end of the
    last one."""
    ends_before = np.r_[0, np.cumsum(units[::-1])[:-1]]
    return int(np.searchsorted(ends_before, count, side="left"))


def _exclusive_run_cumsum(flags: np.ndarray, run_start: np.ndarray) -> np.ndarray:
    """For each element, how many ``flags`` are set before it in its run (runs given by each element's
    ``run_start``, consecutive)."""
    through = np.cumsum(flags)
    before = through - flags
    return before - before[run_start]


def _rank_in_cluster(cluster: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """For each element with ``mask``: how many elements of its cluster with ``mask`` come before it."""
    rank: np.ndarray = np.zeros(len(cluster), np.int64)
    index = np.flatnonzero(mask)
    if len(index):
        order = index[np.argsort(cluster[index], kind="stable")]
        c = cluster[order]
        first = np.r_[True, c[1:] != c[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(len(c)), 0))
        rank[order] = np.arange(len(c)) - start
    return rank


# ----------------------------------------------------------------------------- the chooser


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
    count: np.ndarray = np.zeros(len(x), np.uint8)
    for edge in edges[:-1]:  # the last bucket takes every x at or past its lower edge
        count += x >= edge
    return count.astype(np.intp)



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
