"""A schedule that changes course (issue 28 items 1-3, sampler side): stages, spaced repeats and continuing an
older order, as properties over sizes, settings and prefix points."""

from __future__ import annotations

import collections
import contextlib
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from clusterclip.schedule import sampling
from clusterclip.schedule.law import Budget, RepeatGap, SamplingLaw, Stage
from clusterclip.schedule.sampling import BudgetError, Prefix, plan_schedule

LEVEL = 1e-3


def tiny_blocks(enabled: bool = True, **more):
    """Blocks of 1 to 8 draws: small cases cross many block (and stage) boundaries."""
    if enabled:
        more.update(_MIN_BLOCK=1, _MAX_BLOCK=8, _MIN_GAP_BLOCK=1)
    return mock.patch.multiple(sampling, **more) if more else contextlib.nullcontext()


def labels_from_sizes(sizes) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


def check_order(schedule, labels):
    """What holds for any order: columns agree, ``repeat`` counts earlier uses, passes inside a cluster (at every
    point, a cluster's documents were used r or r + 1 times)."""
    doc = schedule.doc_id
    np.testing.assert_array_equal(schedule.cluster, labels[doc])
    seen: collections.Counter = collections.Counter()
    expected = np.empty(len(doc), np.int64)
    for t, d in enumerate(doc.tolist()):
        expected[t] = seen[d]
        seen[d] += 1
    np.testing.assert_array_equal(schedule.repeat, expected)
    assert sum(s.samples for s in schedule.spans) == len(schedule)


def uses_are_even(doc, labels, keep=None):
    uses = np.bincount(doc, minlength=len(labels))
    for k in np.unique(labels):
        member = (labels == k) if keep is None else (labels == k) & keep
        if member.any() and uses[member].max() - uses[member].min() > 1:
            return False
    return True


# ----------------------------------------------------------------------------- stages


stage_laws = st.builds(
    lambda sampler, clip, alpha, weights: SamplingLaw(sampler=sampler, max_repeats=clip, alpha=alpha,
                                                      cluster_weights=weights),
    st.sampled_from(["clusterclip", "uniform"]), st.integers(1, 4), st.sampled_from([0.0, 1.0, -1.0]),
    st.one_of(st.none(), st.lists(st.sampled_from([0.0, 1.0, 3.0]), min_size=6, max_size=6)
              .filter(lambda w: sum(w) > 0).map(np.array)))


@settings(max_examples=80, deadline=None)
@given(sizes=st.lists(st.integers(0, 8), min_size=1, max_size=6).filter(lambda s: sum(s) > 0),
       laws=st.lists(stage_laws, min_size=1, max_size=4), cuts=st.lists(st.floats(0.05, 0.95), max_size=3),
       budget=st.integers(1, 60), seed=st.integers(0, 2**32), tiny=st.booleans())
def test_stages_change_law_on_sample_boundaries_and_the_clip_is_global(sizes, laws, cuts, budget, seed, tiny):
    labels = labels_from_sizes(sizes)
    ends = sorted(set(int(np.floor(c * budget + 0.5)) for c in cuts[: len(laws) - 1]))
    ends = [e for e in ends if 0 < e < budget]
    stages = [Stage(law, until_samples=end) for law, end in zip(laws, ends)] + [Stage(laws[len(ends)])]
    with tiny_blocks(tiny):
        try:
            schedule = plan_schedule(labels, stages, Budget(samples=budget), seed=seed, allow_partial=True)
        except ValueError as e:  # a law that draws nothing (every cluster with documents weighs 0)
            assert "weight 0" in str(e)
            return
    check_order(schedule, labels)
    assert uses_are_even(schedule.doc_id, labels)
    assert len(schedule.spans) == len(stages)
    bounds = [0] + ends + [budget]
    for i, (stage, span) in enumerate(zip(stages, schedule.spans)):
        assert span.start == (0 if i == 0 else schedule.spans[i - 1].stop)
        if not schedule.exhausted and span.stop < bounds[i + 1]:
            assert stage.law.sampler == "clusterclip"  # only a clip stops a stage short (allow_partial)
        part = slice(span.start, span.stop)
        clusters = schedule.cluster[part]
        if stage.law.cluster_weights is not None:  # weight 0: never drawn in this stage
            assert np.all(stage.law.cluster_weights[clusters] > 0)
        if stage.law.sampler == "clusterclip":  # uses before each sample, over the whole order, below the clip
            assert np.all(schedule.repeat[part] < stage.law.max_repeats)
    np.testing.assert_array_equal(schedule.stage, np.repeat(np.arange(len(stages)), [s.samples for s in
                                                                                      schedule.spans]))


def test_each_stage_draws_by_its_own_law():
    """Warm-up by size, then uniform over clusters: chi-square of each stage's cluster counts."""
    sizes = np.array([50, 200, 800, 1950])
    labels = labels_from_sizes(sizes)
    stages = [Stage(SamplingLaw(alpha=1.0, max_repeats=10**4), until=0.5), Stage(SamplingLaw(max_repeats=10**4))]
    s = plan_schedule(labels, stages, Budget(samples=40_000), seed=4)
    first = np.bincount(s.cluster[:20_000], minlength=4)
    second = np.bincount(s.cluster[20_000:], minlength=4)
    assert stats.chisquare(first, 20_000 * sizes / sizes.sum()).pvalue > LEVEL
    assert stats.chisquare(second).pvalue > LEVEL


def test_a_stage_ends_at_a_fraction_a_sample_or_a_token_count():
    labels = labels_from_sizes([30, 30, 40])
    lengths = np.arange(100) % 9 + 1
    stages = [Stage(SamplingLaw(), until=0.25), Stage(SamplingLaw(alpha=1.0), until_tokens=700),
              Stage(SamplingLaw(), until_samples=250), Stage(SamplingLaw())]
    s = plan_schedule(labels, stages, Budget(samples=300), lengths=lengths, seed=2)
    spans = [(span.start, span.stop) for span in s.spans]
    assert spans[0] == (0, 75) and spans[2][1] == 250 and spans[3] == (250, 300)
    tokens = np.cumsum(lengths[s.doc_id])
    assert tokens[spans[1][1] - 1] >= 700 > tokens[spans[1][1] - 2]  # the first sample that reaches 700 tokens
    # a token budget: fractions of it are token counts
    t = plan_schedule(labels, [Stage(SamplingLaw(), until=0.5), Stage(SamplingLaw(alpha=1.0, max_repeats=10))],
                      Budget(tokens=2000), lengths=lengths, seed=2)
    tokens = np.cumsum(lengths[t.doc_id])
    assert tokens[t.spans[0].stop - 1] >= 1000 > tokens[t.spans[0].stop - 2] and tokens[-1] >= 2000 > tokens[-2]


@pytest.mark.parametrize("stages, budget, match", [
    ([Stage(SamplingLaw(), until=0.6), Stage(SamplingLaw(), until=0.4), Stage(SamplingLaw())], Budget(samples=100),
     "not after the stage before it"),
    ([Stage(SamplingLaw(), until_samples=50), Stage(SamplingLaw(), until_samples=50), Stage(SamplingLaw())],
     Budget(samples=100), "overlap or one is empty"),
    ([Stage(SamplingLaw(), until=0.5), Stage(SamplingLaw(), until=0.9)], Budget(samples=100),
     "before the end of the budget"),
    ([Stage(SamplingLaw(), until_samples=500), Stage(SamplingLaw())], Budget(samples=100),
     "past the end of the budget"),
    ([Stage(SamplingLaw(), until_tokens=10**9), Stage(SamplingLaw())], Budget(samples=100),
     "runs past the end of the budget"),
    ([Stage(SamplingLaw(), until=0.001), Stage(SamplingLaw())], Budget(samples=100), "empty"),
    ([Stage(SamplingLaw(), until=0.5), Stage(SamplingLaw())], Budget(budget_tokens=100),
     "cannot be combined with stages"),
])
def test_stages_that_overlap_are_empty_or_miss_the_budget_are_refused(stages, budget, match):
    labels = labels_from_sizes([40, 60])
    with pytest.raises(ValueError, match=match):
        plan_schedule(labels, stages, budget, lengths=np.ones(100, np.int64))


def test_a_stage_the_clip_cannot_fill_says_so_or_hands_over_with_allow_partial():
    labels = labels_from_sizes([5, 5])
    stages = [Stage(SamplingLaw(max_repeats=1), until_samples=15), Stage(SamplingLaw(max_repeats=3))]
    with pytest.raises(BudgetError, match=r"stage 1 of 2 \(until sample 15\).*allows at most 10 more samples"):
        plan_schedule(labels, stages, Budget(samples=25))
    s = plan_schedule(labels, stages, Budget(samples=25), allow_partial=True)
    assert [(p.start, p.stop) for p in s.spans] == [(0, 10), (10, 25)]
    assert np.bincount(s.doc_id[:10]).tolist() == [1] * 10 and len(s) == 25


# ----------------------------------------------------------------------------- the repeat gap


def reference_gap(labels, proposals, gap, unit, clip, budget, lengths):
    """ClusterClip with the repeat gap, one proposal at a time, passes in slot order (the shuffle switched off):
    a cluster whose next document is within the gap rests; when every cluster left rests, each moves the
    documents within the gap at the head of its pass to its end; when none has another, the order stops.
    Returns the order and whether it stopped so."""
    members = {k: np.flatnonzero(labels == k).tolist() for k in np.unique(labels)}
    used = dict.fromkeys(members, 0)
    queue = {k: [] for k in members}
    last_end: dict = {}
    resting: set = set()
    position, out = 0, []

    def eligible(d):
        return d not in last_end or position - last_end[d] >= gap

    for c in proposals.tolist():
        live = {k for k in members if clip is None or used[k] < clip * len(members[k])}
        if c not in live:
            continue  # the clip
        if not queue[c]:
            queue[c] = list(members[c])  # a fresh pass
        d = queue[c][0]
        if not eligible(d):  # the gap: the cluster rests, its next document stays next
            resting.add(c)
            if resting >= live:
                turned = False
                for k in live:
                    first = next((j for j, e in enumerate(queue[k]) if eligible(e)), None)
                    if first is not None:
                        queue[k] = queue[k][first:] + queue[k][:first]
                        turned = True
                if not turned:
                    return out, True
                resting.clear()
            continue
        queue[c].pop(0)
        position += 1 if unit == "samples" else int(lengths[d])
        last_end[d] = position
        used[c] += 1
        resting.clear()
        out.append(d)
        if len(out) == budget:
            break
    return out, False


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, 7), min_size=1, max_size=10), sampler=st.sampled_from(["clusterclip", "uniform"]),
       clip=st.integers(1, 5), alpha=st.sampled_from([0.0, 1.0]), gap=st.integers(1, 40),
       unit=st.sampled_from(["samples", "tokens"]), data=st.data(), seed=st.integers(0, 2**32), tiny=st.booleans(),
       few=st.sampled_from([0, 16, 2**40]), int32=st.booleans())
def test_the_gap_is_the_one_step_at_a_time_process(sizes, sampler, clip, alpha, gap, unit, data, seed, tiny, few,
                                                    int32):
    """Given the draws the planner used (every block's, up to where it was cut), its order is exactly that of
    drawing one sample at a time and rejecting a cluster whose next document was used within the gap; whichever
    way the hot draws are decided (``few``: the fixpoint first, or one at a time) and whichever type ``last_end``
    has (``int32``: the int32 one where allowed, else int64 everywhere)."""
    labels = labels_from_sizes(sizes)
    lengths = np.array(data.draw(st.lists(st.integers(0, 5), min_size=len(labels), max_size=len(labels))))
    budget = data.draw(st.integers(1, clip * len(labels)))
    consumed = []
    plan_round = sampling._ClusterStream._gap_round

    def recording(stream, choice):
        out = plan_round(stream, choice)
        consumed.append(choice[: len(choice) if out[1] is None else out[1]])
        return out

    more = {"_GAP_FEW": few} if int32 else {"_GAP_FEW": few, "_INT32_LIMIT": 0}
    with tiny_blocks(tiny, _shuffle_rows=lambda *a, **k: None, **more), \
            mock.patch.object(sampling._ClusterStream, "_gap_round", recording):
        s = plan_schedule(labels, SamplingLaw(sampler=sampler, max_repeats=clip, alpha=alpha), Budget(samples=budget),
                          seed=seed, gap=RepeatGap(gap, unit), lengths=lengths, allow_partial=True)
    proposals = np.concatenate(consumed) if consumed else np.zeros(0, np.int64)
    expected, stalled = reference_gap(labels, proposals, gap, unit, clip if sampler == "clusterclip" else None,
                                      budget, lengths)
    assert s.doc_id.tolist() == expected
    assert s.stalled == stalled


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(1, 9), min_size=1, max_size=8), laws=st.lists(stage_laws, min_size=1, max_size=3),
       gap=st.integers(0, 30), unit=st.sampled_from(["samples", "tokens"]), budget=st.integers(1, 120),
       data=st.data(), seed=st.integers(0, 2**32), tiny=st.booleans())
def test_no_document_comes_back_within_the_gap(sizes, laws, gap, unit, budget, data, seed, tiny):
    labels = labels_from_sizes(sizes)
    lengths = np.array(data.draw(st.lists(st.integers(0, 6), min_size=len(labels), max_size=len(labels))))
    stages = [Stage(law, until=(i + 1) / len(laws)) for i, law in enumerate(laws[:-1])] + [Stage(laws[-1])]
    with tiny_blocks(tiny):
        try:
            s = plan_schedule(labels, stages, Budget(samples=budget), seed=seed, gap=RepeatGap(gap, unit),
                              lengths=lengths, allow_partial=True)
        except ValueError as e:
            assert "weight 0" in str(e) or "empty" in str(e)
            return
    check_order(s, labels)
    units = np.ones(len(s), np.int64) if unit == "samples" else lengths[s.doc_id]
    end = np.cumsum(units)
    last: dict = {}
    for t, d in enumerate(s.doc_id.tolist()):
        if d in last:
            assert end[t] - units[t] - last[d] >= gap  # units of the samples in between
        last[d] = end[t]


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 9), min_size=1, max_size=7).filter(lambda s: sum(s) > 0),
       sampler=st.sampled_from(["clusterclip", "uniform"]), alpha=st.sampled_from([0.0, 1.0]),
       budget=st.integers(0, 80), seed=st.integers(0, 2**32), tiny=st.booleans())
def test_a_gap_of_zero_is_no_gap(sizes, sampler, alpha, budget, seed, tiny):
    labels = labels_from_sizes(sizes)
    law = SamplingLaw(sampler=sampler, alpha=alpha, max_repeats=20)
    with tiny_blocks(tiny):
        a = plan_schedule(labels, law, Budget(samples=budget), seed=seed, allow_partial=True)
        b = plan_schedule(labels, law, Budget(samples=budget), seed=seed, gap=RepeatGap(0), allow_partial=True)
    for column in ("doc_id", "cluster", "repeat"):
        np.testing.assert_array_equal(getattr(a, column), getattr(b, column))


def test_a_pool_that_cannot_keep_the_gap_says_how_far_it_got():
    labels = labels_from_sizes([3, 3])
    with pytest.raises(BudgetError, match=r"--min-repeat-gap 10 samples: after (\d+) samples every cluster") as error:
        plan_schedule(labels, SamplingLaw(max_repeats=4), Budget(samples=24), gap=RepeatGap(10))
    reached = error.value.possible_samples
    assert 6 <= reached < 24 and f"lower the budget to {reached} samples" in str(error.value)
    s = plan_schedule(labels, SamplingLaw(max_repeats=4), Budget(samples=24), gap=RepeatGap(10), allow_partial=True)
    assert s.stalled and len(s) == reached


def test_the_gap_rests_a_small_cluster_without_starving_it():
    """A cluster of one document under a gap of 50: drawn as often as the gap allows, ~1 in 51 samples; the two
    large clusters never stall (a pass that starts with recent documents moves them to its end)."""
    labels = labels_from_sizes([1, 400, 400])
    s = plan_schedule(labels, SamplingLaw(max_repeats=100), Budget(samples=5000), gap=RepeatGap(50), seed=1)
    positions = np.flatnonzero(s.cluster == 0)
    assert np.diff(positions).min() > 50
    assert 5000 / 51 * 0.8 < len(positions) <= 5000 / 51 + 1


def test_the_random_sampler_has_no_gap():
    with pytest.raises(ValueError, match="cluster samplers"):
        plan_schedule(np.zeros(5, np.int64), SamplingLaw(sampler="random"), gap=RepeatGap(2))


# ----------------------------------------------------------------------------- continuing an order


def prefix_of(schedule, n) -> Prefix:
    spans = [type(s)(s.start, min(s.stop, n)) for s in schedule.spans if s.start < n]
    return Prefix(schedule.doc_id[:n], schedule.cluster[:n], schedule.repeat[:n], tuple(spans))


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(0, 8), min_size=1, max_size=6).filter(lambda s: sum(s) > 0),
       old=stage_laws, new=stage_laws, old_budget=st.integers(1, 60), extra=st.integers(1, 60), data=st.data(),
       gap=st.sampled_from([0, 0, 3]), seed=st.integers(0, 2**32), tiny=st.booleans())
def test_a_continued_order_keeps_the_prefix_and_counts_it_against_the_clip(sizes, old, new, old_budget, extra, data,
                                                                           gap, seed, tiny):
    labels = labels_from_sizes(sizes)
    with tiny_blocks(tiny):
        try:
            before = plan_schedule(labels, old, Budget(samples=old_budget), seed=seed, allow_partial=True)
        except ValueError:
            return
        n = data.draw(st.integers(0, len(before)))
        try:
            after = plan_schedule(labels, new, Budget(samples=n + extra), seed=seed + 1, allow_partial=True,
                                  prefix=prefix_of(before, n), gap=RepeatGap(gap))
        except ValueError as e:
            assert "weight 0" in str(e)
            return
    for column in ("doc_id", "cluster", "repeat"):  # the prefix, byte for byte
        np.testing.assert_array_equal(getattr(after, column)[:n], getattr(before, column)[:n])
    check_order(after, labels)  # every document accounted: repeat counts the prefix's uses too
    assert uses_are_even(after.doc_id, labels)
    if new.sampler == "clusterclip":  # the clip counts what the prefix used
        assert np.all(after.repeat[n:] < new.max_repeats)
    if new.cluster_weights is not None:
        assert np.all(new.cluster_weights[after.cluster[n:]] > 0)
    assert after.spans[-1].start == n and after.spans[-1].stop == len(after)


def test_continuing_at_any_point_of_an_unchanged_law_gives_its_law():
    """Continue ClusterClip with its own settings at the middle: the suffix's cluster counts follow the
    expected water-filling of the whole (a test of the state it starts from, not of a seed)."""
    sizes = np.array([5, 20, 80, 400])
    labels = labels_from_sizes(sizes)
    law = SamplingLaw(max_repeats=3)
    runs = [plan_schedule(labels, law, Budget(samples=1200), seed=s) for s in range(60)]
    continued = [plan_schedule(labels, law, Budget(samples=1200), seed=1000 + s, prefix=prefix_of(r, 300))
                 for s, r in enumerate(runs)]
    for k in range(4):
        a = [int(np.sum(r.cluster == k)) for r in runs]
        b = [int(np.sum(r.cluster == k)) for r in continued]
        assert stats.ks_2samp(a, b).pvalue > LEVEL, k


def test_a_continuation_needs_a_budget_past_the_prefix_and_an_even_prefix():
    labels = labels_from_sizes([3, 3])
    old = plan_schedule(labels, SamplingLaw(max_repeats=2), Budget(samples=10))
    with pytest.raises(ValueError, match="within the 10 samples"):
        plan_schedule(labels, SamplingLaw(), Budget(samples=10), prefix=prefix_of(old, 10))
    doc = np.array([0, 0, 0, 3])  # document 0 thrice, 1 and 2 never: not a prefix of an order of these documents
    uneven = Prefix(doc, labels[doc], np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="unevenly"):
        plan_schedule(labels, SamplingLaw(), Budget(samples=12), prefix=uneven)
    with pytest.raises(ValueError, match="not these labels"):
        plan_schedule(labels, SamplingLaw(), Budget(samples=12), prefix=Prefix(doc, np.zeros(4, np.int32), doc))


def test_the_random_sampler_continues_with_the_rest_of_its_epoch():
    labels = np.arange(10) % 3
    old = plan_schedule(labels, SamplingLaw(sampler="random"), Budget(samples=14), seed=1)
    s = plan_schedule(labels, SamplingLaw(sampler="random"), Budget(samples=40), seed=2, prefix=prefix_of(old, 14))
    np.testing.assert_array_equal(s.doc_id[:14], old.doc_id[:14])
    assert sorted(s.doc_id[14:20].tolist()) == sorted(set(range(10)) - set(old.doc_id[10:14].tolist()))
    for epoch in (1, 2, 3):  # then whole epochs
        assert sorted(s.doc_id[epoch * 10: epoch * 10 + 10].tolist()) == list(range(10))
    check_order(s, labels)


def test_stages_of_a_continued_order_are_numbered_after_the_prefix_stages():
    labels = labels_from_sizes([10, 10])
    old = plan_schedule(labels, [Stage(SamplingLaw(), until=0.5), Stage(SamplingLaw(alpha=1.0))],
                        Budget(samples=40))
    s = plan_schedule(labels, SamplingLaw(max_repeats=3), Budget(samples=50), prefix=prefix_of(old, 30))
    assert [(p.start, p.stop) for p in s.spans] == [(0, 20), (20, 30), (30, 50)]
    assert s.stage[29] == 1 and s.stage[30] == 2
