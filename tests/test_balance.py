"""Balancing beyond samples (issue 18): token balance, cluster weights and clips, per-cluster token
budgets, document scores, semantic deduplication, token statistics and mixtures."""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from clusterclip.schedule import sampling
from clusterclip.schedule.law import Budget, SamplingLaw, cluster_token_sums, hamilton_apportionment
from clusterclip.schedule.mixing import (
    dirichlet_weights,
    parse_cluster_repeats,
    read_cluster_table,
    semantic_duplicates,
)
from clusterclip.schedule.sampling import plan_schedule
from clusterclip.schedule.stats import format_statistics, schedule_statistics

LEVEL = 1e-3


def tiny_blocks(enabled: bool = True):
    if not enabled:
        return contextlib.nullcontext()
    return mock.patch.multiple(sampling, _MIN_BLOCK=1, _MAX_BLOCK=8)


def labels_from_sizes(sizes) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


def token_draw_law(labels, lengths, alpha=0.0, multipliers=None):
    """Probability of drawing each cluster under ``balance="tokens"``: ∝ w_k / mean length_k with
    w_k = tokens_k ** alpha * m_k."""
    sizes = np.bincount(labels).astype(float)
    tokens = np.bincount(labels, weights=lengths)
    w = tokens ** alpha * (1.0 if multipliers is None else np.asarray(multipliers, float))
    p = w / (tokens / sizes)
    return w / w.sum(), p / p.sum()


# ----------------------------------------------------------------------------- --balance tokens


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 12), min_size=2, max_size=4), data=st.data(),
       sampler=st.sampled_from(["clusterclip", "uniform"]), alpha=st.sampled_from([0.0, 0.5, 1.0]),
       seed=st.integers(0, 2**32))
def test_token_shares_are_within_tolerance_of_the_target_while_no_cluster_has_left(sizes, data, sampler, alpha,
                                                                                    seed):
    """With every cluster still in the pool, cluster k's tokens T_k are within a relative
    eps_k = 6 sqrt((1 - p_k) / (n p_k)) + size_k max_len_k / (n p_k mean_len_k) of their expectation
    n p_k mean_len_k ∝ w_k (binomial draw count to 6 sigma, plus at most one partial pass), so the
    token share is within the ratio (1 ± eps_k) / (1 ∓ eps_max) of the target w_k / sum(w)."""
    labels = labels_from_sizes(sizes)
    scale = np.array(data.draw(st.lists(st.sampled_from([1, 4, 16]), min_size=len(sizes), max_size=len(sizes))))
    lengths = scale[labels] * np.array(data.draw(st.lists(st.integers(1, 3), min_size=len(labels),
                                                          max_size=len(labels))))
    target, p = token_draw_law(labels, lengths, alpha)
    n = int(np.ceil(5000 / p.min()))
    s = plan_schedule(labels, SamplingLaw(sampler=sampler, balance="tokens", alpha=alpha, max_repeats=10**6),
                      Budget(samples=n), lengths=lengths, seed=seed)
    assert len(s) == n and not s.exhausted
    tokens = np.bincount(s.cluster, weights=lengths[s.doc_id], minlength=len(sizes))
    mean_len = np.bincount(labels, weights=lengths) / sizes
    max_len = np.array([lengths[labels == k].max() for k in range(len(sizes))])
    eps = 6 * np.sqrt((1 - p) / (n * p)) + np.array(sizes) * max_len / (n * p * mean_len)
    share = tokens / tokens.sum()
    assert np.all(share <= target * (1 + eps) / (1 - eps.max()))
    assert np.all(share >= target * (1 - eps) / (1 + eps.max()))


@pytest.mark.parametrize("tiny", [False, True])
def test_token_balance_draws_clusters_with_the_stated_law(tiny):
    """P(cluster k) = (w_k / mean_len_k) / sum: chi-square of the draw counts, weights included."""
    labels = labels_from_sizes([3, 5, 2, 4])
    lengths = np.array([10, 20, 30, 1, 1, 2, 2, 1, 100, 300, 5, 5, 5, 7])
    multipliers = [1.0, 2.0, 0.5, 1.0]
    for alpha in (0.0, 1.0):
        _, p = token_draw_law(labels, lengths, alpha, multipliers)
        with tiny_blocks(tiny):
            law = SamplingLaw(balance="tokens", alpha=alpha, cluster_weights=multipliers, max_repeats=10**5)
            s = plan_schedule(labels, law, Budget(samples=20_000), lengths=lengths, seed=3)
        assert stats.chisquare(np.bincount(s.cluster, minlength=4), 20_000 * p).pvalue > LEVEL


def test_a_long_document_cluster_gets_its_token_share_not_its_sample_share():
    """The issue's case: 28 long changelogs among short documents."""
    rng = np.random.default_rng(0)
    labels = labels_from_sizes([200, 150, 28, 300])
    lengths = np.where(labels == 2, 5000, rng.integers(20, 200, len(labels)))
    by = {}
    for balance in ("samples", "tokens"):
        s = plan_schedule(labels, SamplingLaw(balance=balance, max_repeats=100), Budget(samples=2000), lengths=lengths,
                          seed=1)
        tokens = np.bincount(s.cluster, weights=lengths[s.doc_id], minlength=4)
        by[balance] = tokens / tokens.sum()
    assert by["samples"][2] > 0.8  # equal samples: the long cluster takes the tokens
    assert np.all(np.abs(by["tokens"] - 0.25) < 0.05)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 6), min_size=1, max_size=5), seed=st.integers(0, 2**32),
       tiny=st.booleans(), alpha=st.sampled_from([0.0, 1.0]))
def test_weights_of_one_and_no_weights_give_the_same_schedule(sizes, seed, tiny, alpha):
    labels = labels_from_sizes(sizes)
    if not len(labels):
        return
    with tiny_blocks(tiny):
        a = plan_schedule(labels, SamplingLaw(alpha=alpha, max_repeats=3), Budget(samples=3 * len(labels)), seed=seed)
        ones = SamplingLaw(alpha=alpha, max_repeats=3, cluster_weights=np.ones(len(sizes)),
                           cluster_max_repeats=np.zeros(len(sizes), np.int64))
        b = plan_schedule(labels, ones, Budget(samples=3 * len(labels)), seed=seed)
    np.testing.assert_array_equal(a.doc_id, b.doc_id)
    np.testing.assert_array_equal(a.repeat, b.repeat)


# ----------------------------------------------------------------------------- weights and clips


def test_weights_multiply_the_draw_probability_and_zero_leaves_a_cluster_out():
    labels = labels_from_sizes([4, 4, 4, 4])
    s = plan_schedule(labels, SamplingLaw(cluster_weights=[1, 3, 0, 2], max_repeats=10**4), Budget(samples=12_000),
                      seed=0)
    counts = np.bincount(s.cluster, minlength=4)
    assert counts[2] == 0
    assert stats.chisquare(counts[[0, 1, 3]], 12_000 * np.array([1, 3, 2]) / 6).pvalue > LEVEL


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 5), min_size=1, max_size=5), data=st.data(), seed=st.integers(0, 2**32),
       tiny=st.booleans())
def test_per_cluster_clips_bound_every_document_and_the_pool(sizes, data, seed, tiny):
    labels = labels_from_sizes(sizes)
    caps = np.array(data.draw(st.lists(st.integers(0, 4), min_size=len(sizes), max_size=len(sizes))))
    limit = np.where(caps > 0, caps, 2)
    possible = int((np.array(sizes) * limit).sum())
    with tiny_blocks(tiny):
        s = plan_schedule(labels, SamplingLaw(max_repeats=2, cluster_max_repeats=caps), Budget(samples=possible),
                          seed=seed)
        with pytest.raises(sampling.BudgetError) as error:
            plan_schedule(labels, SamplingLaw(max_repeats=2, cluster_max_repeats=caps), Budget(samples=possible + 1),
                          seed=seed)
    assert error.value.possible_samples == possible
    assert s.exhausted and len(s) == possible
    uses = np.bincount(s.doc_id, minlength=len(labels))
    np.testing.assert_array_equal(uses, limit[labels])


def test_weights_file_in_every_format(tmp_path):
    rows = {"cluster": [0, 2], "weight": [2.5, 0.0], "max_repeats": [3, None]}
    pq.write_table(pa.table(rows), tmp_path / "w.parquet")
    (tmp_path / "w.csv").write_text("cluster,weight,max_repeats\n0,2.5,3\n2,0,\n")
    (tmp_path / "w.json").write_text(json.dumps([{"cluster": 0, "weight": 2.5, "max_repeats": 3},
                                                 {"cluster": 2, "weight": 0}]))
    for name in ("w.parquet", "w.csv", "w.json"):
        weights, repeats = read_cluster_table(tmp_path / name, 4)
        assert weights.tolist() == [2.5, 1.0, 0.0, 1.0], name
        assert repeats.tolist() == [3, 0, 0, 0], name
    (tmp_path / "m.json").write_text(json.dumps({"1": 0.5}))
    assert read_cluster_table(tmp_path / "m.json", 3)[0].tolist() == [1.0, 0.5, 1.0]
    assert parse_cluster_repeats("1=2, 3=5", 4, [3, 0, 0, 0]).tolist() == [3, 2, 0, 5]


@pytest.mark.parametrize("content, needle", [
    ("cluster,weight\n9,1\n", "cluster 9 does not exist"),
    ("cluster,weight\n0,-1\n", "row 0: weight -1"),
    ("cluster,weight\n0,1\n0,2\n", "listed twice"),
    ("cluster,weight\n0,0\n1,0\n", "every cluster has weight 0"),
    ("k,w\n0,1\n", "needs a column 'cluster'"),
])
def test_weights_file_errors_are_one_line(tmp_path, content, needle):
    from clusterclip.errors import InputError, MismatchError

    (tmp_path / "w.csv").write_text(content)
    with pytest.raises((InputError, MismatchError), match=needle):
        read_cluster_table(tmp_path / "w.csv", 2)


# ----------------------------------------------------------------------------- per-cluster token budgets


@settings(max_examples=60, deadline=None)
@given(total=st.integers(0, 10**15), weights=st.lists(st.floats(0, 1e6), min_size=1, max_size=30))
def test_hamilton_apportionment_sums_exactly_and_rounds_each_quota(total, weights):
    w = np.array(weights)
    if w.sum() <= 0:
        return
    share = hamilton_apportionment(total, w)
    assert int(share.sum()) == total
    quota = total * w / w.sum()
    assert np.all(np.abs(share - quota) < 1 + 1e-6 * max(1, total) * 1e-6)
    assert np.all(share[w == 0] == 0)


def test_hamilton_gives_the_remainders_to_the_largest_fractions():
    assert hamilton_apportionment(10, [1, 1, 1]).tolist() == [4, 3, 3]
    assert hamilton_apportionment(7, [0.5, 0.25, 0.25, 0]).tolist() == [3, 2, 2, 0]  # 3.5, 1.75, 1.75
    assert hamilton_apportionment(100, [0.601, 0.399]).tolist() == [60, 40]


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(1, 8), min_size=1, max_size=5), data=st.data(), seed=st.integers(0, 2**32),
       tiny=st.booleans(), sampler=st.sampled_from(["clusterclip", "uniform"]),
       balance=st.sampled_from(["samples", "tokens"]))
def test_token_budgets_are_met_per_cluster_with_the_clip_inside(sizes, data, seed, tiny, sampler, balance):
    """Every cluster stops at the first sample that reaches its budget T_k, or at its clip."""
    labels = labels_from_sizes(sizes)
    lengths = np.array(data.draw(st.lists(st.integers(1, 50), min_size=len(labels), max_size=len(labels))))
    weights = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=len(sizes),
                                          max_size=len(sizes))))
    if weights.sum() == 0:
        weights[0] = 1
    budget = data.draw(st.integers(1, 3 * int(lengths.sum())))
    with tiny_blocks(tiny):
        s = plan_schedule(labels, SamplingLaw(sampler=sampler, balance=balance, cluster_weights=weights, max_repeats=2),
                          Budget(budget_tokens=budget), lengths=lengths, seed=seed)
    t = s.cluster_budget
    assert int(t.sum()) == budget
    uses = np.bincount(s.doc_id, minlength=len(labels))
    for k in range(len(sizes)):
        mine = np.flatnonzero(s.cluster == k)
        got = int(lengths[s.doc_id[mine]].sum())
        if t[k] == 0:
            assert len(mine) == 0
            continue
        clipped = sampler == "clusterclip" and np.all(uses[labels == k] == 2)
        if got < t[k]:
            assert clipped
        else:
            assert got - lengths[s.doc_id[mine[-1]]] < t[k]  # the last sample is the first to reach T_k
        if sampler == "clusterclip":
            assert uses[labels == k].max() <= 2


def test_token_budgets_interleave_the_clusters_to_the_end():
    rng = np.random.default_rng(0)
    labels = labels_from_sizes([50, 400, 30, 120])
    lengths = np.where(labels == 2, 2000, rng.integers(10, 100, len(labels)))
    s = plan_schedule(labels, SamplingLaw(cluster_weights=[1, 1, 2, 1], max_repeats=500),
                      Budget(budget_tokens=1_200_000), lengths=lengths, seed=0)
    assert s.cluster_budget.tolist() == [240_000, 240_000, 480_000, 240_000]
    # every cluster spends its budget at the same relative speed: all are drawn from the start
    # to near the end (cluster 2 finishes after about 240 draws: its end spreads by ~1/sqrt(240))
    for k in range(4):
        positions = np.flatnonzero(s.cluster == k)
        assert positions[0] < 0.05 * len(s) and positions[-1] > 0.75 * len(s), k


# ----------------------------------------------------------------------------- document scores


@pytest.mark.parametrize("tiny", [False, True])
def test_a_pass_is_drawn_by_score_without_replacement(tiny):
    """Scores 1, 2, 3, beta 1: P(a, b, c) = s_a / 6 * s_b / (6 - s_a)."""
    labels = np.zeros(3, np.int64)
    scores = np.array([1.0, 2.0, 3.0])
    runs = 3000
    with tiny_blocks(tiny):
        counts = collections.Counter(
            tuple(plan_schedule(labels, SamplingLaw(doc_scores=scores), Budget(samples=3), seed=seed).doc_id.tolist())
            for seed in range(runs))
    perms = list(itertools.permutations(range(3)))
    law = [scores[a] / 6 * scores[b] / (6 - scores[a]) for a, b, _ in perms]
    assert stats.chisquare([counts[p] for p in perms], runs * np.array(law)).pvalue > LEVEL


def test_power_sharpens_scores_and_zero_scores_come_last_in_every_pass():
    labels = np.zeros(6, np.int64)
    scores = np.array([0.0, 1.0, 2.0, 0.0, 4.0, 1.0])
    s = plan_schedule(labels, SamplingLaw(doc_scores=scores, doc_power=2.0, max_repeats=3), Budget(samples=18), seed=5)
    for p in range(3):
        assert set(s.doc_id[6 * p + 4: 6 * p + 6].tolist()) == {0, 3}
    first = collections.Counter(int(plan_schedule(labels, SamplingLaw(doc_scores=scores, doc_power=2.0),
                                                  Budget(samples=1), seed=seed).doc_id[0]) for seed in range(2000))
    law = np.array([0, 1, 4, 0, 16, 1]) / 22
    assert stats.chisquare([first[d] for d in (1, 2, 4, 5)], 2000 * law[[1, 2, 4, 5]]).pvalue > LEVEL


# ----------------------------------------------------------------------------- semantic deduplication


class ArrayStore:
    def __init__(self, e):
        self.e = e

    def take(self, rows):
        return self.e[np.asarray(rows)]


def test_semdedup_keeps_one_of_each_group_and_leaves_distinct_documents():
    rng = np.random.default_rng(0)
    dim = 64
    base = rng.normal(size=(10, dim))
    groups = np.repeat(np.arange(10), [1, 3, 1, 2, 5, 1, 1, 4, 1, 2])
    e = base[groups] + 1e-3 * rng.normal(size=(len(groups), dim))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    labels = np.where(groups < 5, 0, 1)
    centroids = np.stack([e[labels == k].mean(0) for k in (0, 1)])
    keep = semantic_duplicates(ArrayStore(e.astype(np.float32)), labels, centroids, 0.95, chunk_elements=7)
    assert np.bincount(groups[keep], minlength=10).tolist() == [1] * 10
    s = plan_schedule(labels, SamplingLaw(keep=keep, max_repeats=4), Budget(samples=4 * int(keep.sum())), seed=0)
    assert s.exhausted and set(s.doc_id.tolist()) == set(np.flatnonzero(keep).tolist())
    st_ = schedule_statistics(s, n_docs=len(labels), n_clusters=2, labels=labels, max_repeats=4, keep=keep)
    assert st_["dedup_removed"] == int((~keep).sum()) and st_["clusters_exhausted"] == 2
    assert "semantic duplicates left out" in format_statistics(st_)


# ----------------------------------------------------------------------------- statistics in tokens


def test_statistics_count_tokens_per_cluster_and_per_part():
    labels = labels_from_sizes([3, 3])
    lengths = np.array([1, 1, 1, 100, 100, 100])
    s = plan_schedule(labels, SamplingLaw(max_repeats=2), Budget(samples=12), lengths=lengths, seed=0)
    out = schedule_statistics(s, n_docs=6, n_clusters=2, lengths=lengths, labels=labels, max_repeats=2)
    assert out["cluster_tokens"] == [6, 600]
    assert out["cluster_mean_tokens"] == [1.0, 100.0]
    assert sum(out["balance_tokens"]["shares"][0]) == pytest.approx(1.0)
    assert "tokens per cluster" in format_statistics(out)
    assert "k is large for N" in out["warnings"][0]


def test_dirichlet_mixtures_are_seeded_and_sum_to_one():
    w = dirichlet_weights(8, 5, 0.5, seed=1, present=[True, True, False, True, True])
    assert w.shape == (8, 5) and np.allclose(w.sum(1), 1) and np.all(w[:, 2] == 0)
    np.testing.assert_array_equal(w, dirichlet_weights(8, 5, 0.5, seed=1, present=[True, True, False, True, True]))


# ----------------------------------------------------------------------------- the fast paths stay exact
@settings(max_examples=200, deadline=None, derandomize=True)
@given(edges=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=24), data=st.data())
def test_bucket_is_searchsorted_clamped(edges, data):
    """The chooser's group lookup equals the binary search it replaces, on and between the edges."""
    edges = np.sort(np.asarray(edges))
    picks = data.draw(st.lists(st.sampled_from(list(edges)) | st.floats(-1, 2e6, allow_nan=False), max_size=50))
    x = np.asarray(picks + list(edges) + list(np.nextafter(edges, -np.inf)), np.float64)
    expected = np.minimum(np.searchsorted(edges, x, side="right"), len(edges) - 1)
    np.testing.assert_array_equal(sampling._bucket(edges, x), expected)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(labels=st.lists(st.integers(0, 9), min_size=1, max_size=60), data=st.data(),
       huge=st.booleans())
def test_cluster_token_sums_are_exact(labels, data, huge):
    """Per-cluster token sums: the O(N) bincount path and (past 2**53) the sorting path, both exact."""
    labels = np.asarray(labels, np.int64)
    top = 2**60 // 64 if huge else 10**6
    lengths = np.asarray(data.draw(st.lists(st.integers(0, top), min_size=len(labels), max_size=len(labels))),
                         np.int64)
    expected = [sum(int(t) for t, c in zip(lengths, labels) if c == k) for k in range(12)]
    assert cluster_token_sums(labels, lengths, 12).tolist() == expected
