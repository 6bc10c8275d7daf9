"""The sampling law as data (issue 23 item 3): ``plan_schedule(labels, SamplingLaw, Budget)`` plans exactly what
the 18-keyword ``plan_schedule`` planned, and the law resolves to the per-cluster table of ``law.parquet``."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterclip.schedule import law as law_module
from clusterclip.schedule import sampling
from clusterclip.schedule.law import (
    LAW_COLUMNS,
    Budget,
    RepeatGap,
    SamplingLaw,
    Stage,
    StageSpan,
    expected_counts,
    law_table,
)
from clusterclip.schedule.sampling import plan_schedule

#: sha256 of the order (or of the error) of every case of :func:`legacy_cases`, recorded with the 18-keyword
#: ``plan_schedule`` just before it was replaced (main at 6c7b125)
DIGESTS = Path(__file__).with_name("sampling_law_digests.json")

LAW_KEYS = ("sampler", "max_repeats", "alpha", "balance", "cluster_weights", "cluster_max_repeats", "doc_scores",
            "doc_power", "keep")
BUDGET_KEYS = ("samples", "tokens", "epochs", "budget_tokens")


def legacy_cases(n: int = 400):
    """``(labels, keyword arguments of the old plan_schedule, tiny blocks)`` over every option, seeded."""
    rng = np.random.default_rng(20261207)
    for _ in range(n):
        k = int(rng.integers(1, 8))
        sizes = rng.integers(0, 10, k)
        sizes[0] += sizes.sum() == 0
        labels = rng.permutation(np.repeat(np.arange(k), sizes))
        n_docs = len(labels)
        sampler = str(rng.choice(["clusterclip", "uniform", "random"]))
        kw: dict = {"seed": int(rng.integers(0, 2**32)), "sampler": sampler, "max_repeats": int(rng.integers(1, 5))}
        lengths = rng.integers(0, 7, n_docs)
        lengths[0] += 1
        if sampler != "random":
            kw["alpha"] = float(rng.choice([0.0, 0.5, 1.0, -1.0, 2.0]))
            if rng.random() < 0.3:
                lengths = lengths + 1
                kw.update(balance="tokens", lengths=lengths)
            if rng.random() < 0.3:
                weights = rng.choice([0.0, 0.5, 1.0, 3.0], k)
                weights[0] = 1.0
                kw["cluster_weights"] = weights
            if rng.random() < 0.3 and sampler == "clusterclip":
                kw["cluster_max_repeats"] = rng.integers(0, 4, k)
            if rng.random() < 0.3:
                kw.update(doc_scores=rng.choice([0.0, 1.0, 2.0, 5.0], n_docs), doc_power=float(rng.choice([0, 1, 2])))
        if rng.random() < 0.3:
            kw["keep"] = rng.random(n_docs) < 0.8
        which = int(rng.integers(0, 4))
        capacity = kw["max_repeats"] * n_docs
        if which == 0:
            kw["samples"] = int(rng.integers(0, int(1.3 * capacity) + 1))
        elif which == 1:
            kw.update(tokens=int(rng.integers(1, kw["max_repeats"] * int(lengths.sum()) + 3)), lengths=lengths)
        elif which == 2:
            kw["epochs"] = float(rng.uniform(0, 3))
        elif sampler != "random":
            kw.update(budget_tokens=int(rng.integers(1, 3 * int(lengths.sum()) + 2)), lengths=lengths)
        kw["allow_partial"] = bool(rng.random() < 0.5)
        yield labels, kw, bool(rng.random() < 0.5)


def digest(plan) -> str:
    """sha256 of what ``plan()`` returns (every column, its dtype, ``exhausted``, the token budgets) or raises."""
    h = hashlib.sha256()
    try:
        s = plan()
    except ValueError as e:
        h.update(f"{type(e).__name__}: {e}".encode())
        return h.hexdigest()
    for column in (s.doc_id, s.cluster, s.repeat):
        h.update(str(column.dtype).encode() + np.ascontiguousarray(column).tobytes())
    h.update(repr(bool(s.exhausted)).encode())
    if s.cluster_budget is not None:
        h.update(np.asarray(s.cluster_budget, np.int64).tobytes())
    return h.hexdigest()


def tiny_blocks(enabled: bool):
    return mock.patch.multiple(sampling, _MIN_BLOCK=1, _MAX_BLOCK=8) if enabled else contextlib.nullcontext()


def plan_with_law(labels, kw):
    kw = dict(kw)
    law = SamplingLaw(**{key: kw.pop(key) for key in LAW_KEYS if key in kw})
    budget = Budget(**{key: kw.pop(key) for key in BUDGET_KEYS if key in kw})
    return plan_schedule(labels, law, budget, **kw)


def test_the_law_object_plans_what_the_eighteen_keywords_planned():
    """400 settings over every option (samplers, alpha, token balance, weights, per-cluster clips, document
    scores, keep, each budget, allow_partial, blocks of 1-8 draws): the same bytes, or the same error."""
    recorded = json.loads(DIGESTS.read_text())
    cases = list(legacy_cases(len(recorded)))
    assert len(cases) == len(recorded)
    for i, ((labels, kw, tiny), expected) in enumerate(zip(cases, recorded)):
        with tiny_blocks(tiny):
            got = digest(lambda labels=labels, kw=kw: plan_with_law(labels, kw))
        assert got == expected, (i, kw)


@settings(max_examples=40, deadline=None)
@given(case=st.integers(0, 399))
def test_one_stage_a_zero_gap_and_the_plain_law_plan_the_same(case):
    """The staged planner with one stage to the end and ``RepeatGap(0)`` is the single law, byte for byte."""
    labels, kw, tiny = list(legacy_cases(case + 1))[case]
    kw = dict(kw)
    law = SamplingLaw(**{key: kw.pop(key) for key in LAW_KEYS if key in kw})
    budget = Budget(**{key: kw.pop(key) for key in BUDGET_KEYS if key in kw})
    with tiny_blocks(tiny):
        plain = digest(lambda: plan_schedule(labels, law, budget, **kw))
        staged = digest(lambda: plan_schedule(labels, [Stage(law, until=1.0 if budget.budget_tokens is None else None)],
                                              budget, gap=RepeatGap(0), **kw))
    assert staged == plain


# ----------------------------------------------------------------------------- the law's table


def test_law_table_has_one_row_per_stage_and_cluster_with_shares_that_sum_to_one():
    labels = np.repeat(np.arange(4), [3, 5, 0, 8])
    lengths = np.arange(len(labels)) % 7 + 1
    stages = [Stage(SamplingLaw(alpha=1.0), until=0.5),
              Stage(SamplingLaw(max_repeats=5, cluster_weights=np.array([1.0, 0.0, 1.0, 2.0])))]
    table = law_table(stages, labels, [StageSpan(0, 20), StageSpan(20, 40)], lengths=lengths)
    assert tuple(table) == LAW_COLUMNS
    assert table["stage"].tolist() == [0] * 4 + [1] * 4 and table["cluster"].tolist() == [0, 1, 2, 3] * 2
    assert table["size"].tolist() == [3, 5, 0, 8] * 2
    assert table["clip"].tolist() == [4] * 4 + [5] * 4
    assert table["token_budget"].tolist() == [-1] * 8
    for stage in (0, 1):
        rows = table["stage"] == stage
        assert table["expected_sample_share"][rows].sum() == pytest.approx(1.0)
        assert table["expected_token_share"][rows].sum() == pytest.approx(1.0)
        assert table["expected_samples"][rows].sum() == pytest.approx(20)
    np.testing.assert_allclose(table["weight"][:4], np.array([3, 5, 0, 8]) / 16)  # alpha 1: by size
    assert table["expected_samples"][5] == 0  # weight 0 in stage 2


def test_later_stages_expect_what_the_clip_leaves_them():
    """Stage 1 (clip 1) uses up the small cluster; stage 2, clip 1 as well, cannot draw it again."""
    labels = np.repeat(np.arange(2), [2, 100])
    stages = [Stage(SamplingLaw(max_repeats=1), until_samples=10), Stage(SamplingLaw(max_repeats=1))]
    table = law_table(stages, labels, [StageSpan(0, 10), StageSpan(10, 60)])
    assert table["expected_samples"].tolist() == [2, 8, 0, 50]


def test_law_table_matches_the_realised_counts():
    rng = np.random.default_rng(3)
    k = 6
    labels = rng.permutation(np.repeat(np.arange(k), rng.integers(20, 300, k)))
    lengths = rng.integers(5, 80, len(labels))
    stages = [Stage(SamplingLaw(max_repeats=10, alpha=1.0), until=0.3),
              Stage(SamplingLaw(max_repeats=10, balance="tokens", cluster_weights=np.array([1, 2, 0, 1, 3, 1.0])))]
    schedule = plan_schedule(labels, stages, Budget(samples=3000), lengths=lengths, seed=1)
    table = law_table(stages, labels, schedule.spans, lengths=lengths)
    for stage, span in enumerate(schedule.spans):
        realised = np.bincount(schedule.cluster[span.start:span.stop], minlength=k)
        expected = table["expected_samples"][table["stage"] == stage]
        np.testing.assert_allclose(realised, expected, atol=0.08 * span.samples)


def test_expected_counts_water_fill_the_clip():
    sizes = np.array([1, 10, 100])
    counts = expected_counts(sizes, None, sampler="clusterclip", samples=60, max_repeats=2)
    assert counts.tolist() == pytest.approx([2, 20, 38])
    used = expected_counts(sizes, None, sampler="clusterclip", samples=60, max_repeats=2, used=[2, 20, 0])
    assert used.tolist() == pytest.approx([0, 0, 60])
    assert expected_counts(sizes, None, sampler="random", samples=111).tolist() == pytest.approx([1, 10, 100])


@pytest.mark.parametrize("make, match", [
    (lambda: SamplingLaw(sampler="nope"), "unknown sampler"),
    (lambda: SamplingLaw(balance="words"), "unknown balance"),
    (lambda: SamplingLaw(max_repeats=0), "at least 1"),
    (lambda: SamplingLaw(sampler="random", cluster_weights=np.ones(2)), "random sampler draws no clusters"),
    (lambda: SamplingLaw(sampler="uniform", cluster_max_repeats=np.ones(2, int)), "need the clusterclip"),
    (lambda: Budget(samples=1, tokens=2), "at most one budget"),
    (lambda: Budget(tokens=0), "tokens must be positive"),
    (lambda: Stage(SamplingLaw(), until=1.5), r"fraction of the budget in \(0, 1\]"),
    (lambda: Stage(SamplingLaw(), until=0.5, until_samples=3), "at most one of"),
    (lambda: RepeatGap(3, "words"), "unknown gap unit"),
    (lambda: law_module.as_stages([Stage(SamplingLaw()), Stage(SamplingLaw())]), "only the last stage"),
    (lambda: law_module.as_stages([Stage(SamplingLaw(sampler="random"), until=0.5), Stage(SamplingLaw())]),
     "cannot be one stage of several"),
])
def test_invalid_laws_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()
