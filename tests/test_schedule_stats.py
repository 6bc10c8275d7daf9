"""Tests of the schedule statistics (SPEC §1.3) on hand-made and sampled schedules."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from clusterclip.schedule.law import Budget, SamplingLaw
from clusterclip.schedule.sampling import Schedule, plan_schedule
from clusterclip.schedule.stats import format_statistics, schedule_statistics

LABELS = np.array([0, 1, 1, 1, 3, 3])  # cluster 2 has no documents


def hand_schedule() -> Schedule:
    doc = np.array([0, 1, 2, 0, 3, 1, 4])
    repeat = np.array([0, 0, 0, 1, 0, 1, 0])
    return Schedule(doc, LABELS[doc].astype(np.int32), repeat.astype(np.int32), False)


def test_hand_computed_statistics():
    lengths = np.array([10, 20, 30, 40, 50, 60])
    stats = schedule_statistics(hand_schedule(), n_docs=6, n_clusters=4, lengths=lengths, n_bins=2,
                                labels=LABELS, max_repeats=1)
    assert stats["samples"] == 7
    assert stats["tokens"] == 10 + 20 + 30 + 10 + 40 + 20 + 50
    assert stats["unique_docs_used"] == 5 and stats["docs_never_used"] == 1
    assert stats["cluster_samples"] == [2, 4, 0, 1]
    assert stats["max_repeat_count"] == 2
    assert stats["mean_repeat_count"] == pytest.approx(7 / 5)
    assert stats["exhausted"] is False
    assert stats["clusters_exhausted"] == 2  # clusters 0 and 1: every document used at least once
    balance = stats["balance"]
    assert balance["bin_edges"] == [0, 3, 7]  # first part: docs 0 1 2, second: 0 3 1 4
    assert balance["shares"] == [[pytest.approx(1 / 3), pytest.approx(2 / 3), 0.0, 0.0],
                                 [0.25, 0.5, 0.0, 0.25]]
    assert balance["active_clusters"] == [2, 3]
    assert balance["max_share"] == [pytest.approx(2 / 3), 0.5]
    assert balance["min_share"] == [pytest.approx(1 / 3), 0.25]
    h = -(0.25 * math.log(0.25) * 2 + 0.5 * math.log(0.5))
    assert balance["entropy"][1] == pytest.approx(h / math.log(4), abs=1e-6)
    json.dumps(stats)  # plain JSON types only


def test_many_clusters_store_a_summary_per_part():
    labels = np.random.default_rng(0).integers(0, 500, 5000)
    schedule = plan_schedule(labels, SamplingLaw(sampler="uniform"), Budget(samples=20000), seed=1)
    stats = schedule_statistics(schedule, n_docs=5000, n_clusters=500)
    balance = stats["balance"]
    assert "shares" not in balance
    assert len(balance["entropy"]) == len(balance["max_share"]) == 10
    assert all(0.95 < e <= 1.0 for e in balance["entropy"])  # uniform over clusters
    # the whole clusterclip pool: clusters leave one by one, balance falls towards the end
    clipped = plan_schedule(labels, SamplingLaw(), Budget(samples=20000), seed=1)
    clip = schedule_statistics(clipped, 5000, 500)["balance"]
    assert clip["entropy"][-1] < clip["entropy"][0] - 0.1
    assert clip["active_clusters"][-1] < clip["active_clusters"][0]
    assert sum(stats["cluster_samples"]) == 20000 and len(stats["cluster_samples"]) == 500
    assert stats["clusters_exhausted"] is None  # unknown without labels and max_repeats
    json.dumps(stats)


def test_exhausted_pool_counts_every_cluster():
    schedule = plan_schedule(LABELS, SamplingLaw(max_repeats=2), Budget(samples=12), seed=3)
    stats = schedule_statistics(schedule, n_docs=6, n_clusters=4)
    assert stats["exhausted"] and stats["clusters_exhausted"] == 3
    assert stats["max_repeat_count"] == 2 and stats["mean_repeat_count"] == 2.0
    assert "pool" in format_statistics(stats)


def test_clusters_exhausted_from_labels_and_clip():
    labels = np.repeat([0, 1, 2], [1, 2, 50])
    schedule = plan_schedule(labels, SamplingLaw(max_repeats=2), Budget(samples=60), seed=0)
    stats = schedule_statistics(schedule, n_docs=53, n_clusters=3, labels=labels, max_repeats=2)
    counts = np.bincount(schedule.doc_id, minlength=53)
    expected = sum(bool(np.all(counts[labels == k] == 2)) for k in range(3))
    assert stats["clusters_exhausted"] == expected == 2  # 60 samples: the two small ones are done


def test_empty_schedule():
    empty = Schedule(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32), False)
    stats = schedule_statistics(empty, n_docs=3, n_clusters=2, lengths=np.ones(3, np.int64))
    assert stats["samples"] == 0 and stats["tokens"] == 0 and stats["docs_never_used"] == 3
    assert stats["balance"]["entropy"] == [0.0] * 10
    format_statistics(stats)


def test_format_statistics_is_a_short_summary():
    stats = schedule_statistics(hand_schedule(), n_docs=6, n_clusters=4,
                                lengths=np.arange(1, 7), labels=LABELS, max_repeats=1)
    text = format_statistics(stats)
    assert len(text.splitlines()) <= 6
    assert "7 samples (" in text and "5 of 6 documents" in text and "max 2" in text
