"""What a schedule was asked for and what it got (issue 26 item 6): ``statistics.budget`` and the summary.

The differences it reports are the sampler's rules, so they are checked as invariants over sizes, lengths and
budgets: a token budget is passed by less than the last sample; per-cluster token budgets are each passed by less
than one sample of the cluster, or fallen short of only at the clip; a sample budget is met unless the clip
emptied the pool.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterclip.schedule.directory import ScheduleStats
from clusterclip.schedule.law import Budget, SamplingLaw
from clusterclip.schedule.sampling import plan_schedule
from clusterclip.schedule.settings import ScheduleSettings
from clusterclip.schedule.stats import schedule_statistics
from clusterclip.schedule.target import budget_record, format_budget, mixture_record

from helpers import run_cli


def _record(labels, lengths, **budget):
    s = ScheduleSettings(tokenizer="tok.json", dry_run=True, max_repeats=budget.pop("max_repeats", 2),
                         allow_partial=True, **budget)
    schedule = plan_schedule(labels, SamplingLaw(sampler="clusterclip", max_repeats=s.max_repeats, balance=s.balance),
                             Budget(samples=s.samples, tokens=s.tokens, epochs=s.epochs, budget_tokens=s.budget_tokens),
                             lengths=lengths, allow_partial=True, seed=3)
    k = int(labels.max()) + 1
    stats = schedule_statistics(schedule, n_docs=len(labels), n_clusters=k, lengths=lengths, labels=labels,
                                max_repeats=s.max_repeats)
    record = budget_record(s, stats, n_docs=len(labels), sample_tokens=lengths[schedule.doc_id], lengths=lengths)
    return schedule, stats, record


corpora = st.tuples(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.integers(0, 2**16))


def _corpus(sizes, seed):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    lengths = rng.integers(1, 300, len(labels)).astype(np.int64)
    return labels, lengths


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(corpus=corpora, fraction=st.floats(0.01, 1.5))
def test_a_token_budget_is_passed_by_less_than_the_last_sample(corpus, fraction):
    labels, lengths = _corpus(*corpus)
    target = max(1, int(fraction * 2 * lengths.sum()))  # up to beyond what the clip (2) allows
    schedule, stats, record = _record(labels, lengths, tokens=target)
    got = record["got"]["tokens"]
    assert record["asked"] == {"kind": "tokens", "tokens": target}
    assert record["difference"]["tokens"] == got - target == stats["tokens"] - target
    if schedule.exhausted:
        assert got < target and "emptied the pool" in " ".join(record["notes"])
    else:
        last = int(lengths[schedule.doc_id[-1]])
        assert 0 <= got - target < last
        assert f"the last one ({last:,} tokens) passed {target:,} by {got - target:,}" in record["notes"][0]


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(corpus=corpora, fraction=st.floats(0.01, 1.2))
def test_cluster_token_budgets_are_passed_by_less_than_one_sample_or_short_at_the_clip(corpus, fraction):
    labels, lengths = _corpus(*corpus)
    target = max(1, int(fraction * 2 * lengths.sum()))
    schedule, stats, record = _record(labels, lengths, budget_tokens=target)
    budget = np.asarray(stats["cluster_token_budget"])
    got = np.asarray(stats["cluster_tokens"])
    k = len(budget)
    longest = np.array([lengths[labels == c].max() for c in range(k)])
    clipped = np.bincount(labels[np.bincount(schedule.doc_id, minlength=len(labels)) == 2], minlength=k) \
        == np.bincount(labels, minlength=k)
    for c in range(k):
        if budget[c] == 0:
            continue
        assert got[c] - budget[c] < longest[c]  # passed by less than one of its samples
        if got[c] < budget[c]:
            assert clipped[c]  # short only at the clip
    notes = " ".join(record["notes"])
    over, short = np.maximum(got - budget, 0), np.maximum(budget - got, 0)
    assert (f"+{int(over.sum()):,} tokens over {int(np.count_nonzero(over)):,} clusters" in notes) == bool(over.any())
    assert (f"-{int(short.sum()):,} tokens" in notes) == bool(short.any())
    assert record["difference"]["tokens"] == int(got.sum()) - target == int(over.sum() - short.sum())


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(corpus=corpora, epochs=st.floats(0.05, 3.0), balance=st.sampled_from(["samples", "tokens"]))
def test_a_sample_budget_is_met_unless_the_clip_empties_the_pool(corpus, epochs, balance):
    labels, lengths = _corpus(*corpus)
    schedule, stats, record = _record(labels, lengths, epochs=epochs, balance=balance)
    asked = record["asked"]
    assert asked["kind"] == "epochs" and asked["samples"] == int(np.floor(epochs * len(labels) + 0.5))
    assert record["difference"]["samples"] == len(schedule) - asked["samples"]
    assert (record["difference"]["samples"] < 0) == schedule.exhausted
    notes = " ".join(record["notes"])
    # balancing tokens under a budget of samples says how far the tokens are from the corpus's mean length
    assert ("the budget counts samples, not tokens" in notes) == (balance == "tokens")
    if balance == "tokens":
        even = len(schedule) * lengths.mean()
        assert f"hold {stats['tokens']:,} tokens, {stats['tokens'] / even:.0%} of the {even:,.0f}" in notes
    assert format_budget(record)[0].startswith(f"budget: asked {asked['samples']:,} samples (--epochs {epochs:g})")


def test_the_summary_and_manifest_say_what_was_asked_and_got(embedded, clustered, demo_tokenizer, tmp_path):
    cases = {
        "tokens": (["--tokens", 3000], "asked 3,000 tokens (--tokens)"),
        "budget": (["--budget-tokens", 3000], "asked 3,000 tokens (--budget-tokens)"),
        "balance": (["--epochs", 2, "--balance", "tokens"], "asked 96 samples (--epochs 2)"),
    }
    for name, (flags, line) in cases.items():
        out = tmp_path / name
        result = run_cli(["schedule", embedded, clustered, "--out", out, "--tokenizer", demo_tokenizer, "--dry-run",
                          *flags])
        stats = json.loads((out / "manifest.json").read_text())["statistics"]
        budget = stats["budget"]
        assert line in result.output and format_budget(budget)[0] in result.output
        assert budget["got"] == {"samples": stats["samples"], "tokens": stats["tokens"]}
        for note in budget["notes"]:
            assert note in result.output
        if name != "balance":
            assert budget["difference"]["tokens"] == stats["tokens"] - 3000
    plain = run_cli(["schedule", embedded, clustered, "--out", tmp_path / "plain", "--dry-run"]).output
    assert "budget: asked 48 samples (one epoch, the default), got 48 samples\n" in plain


@pytest.mark.parametrize("flag", [["--samples", 10]])
def test_no_note_when_nothing_differs(embedded, clustered, tmp_path, flag):
    out = tmp_path / "s"
    run_cli(["schedule", embedded, clustered, "--out", out, "--dry-run", *flag])
    budget = json.loads((out / "manifest.json").read_text())["statistics"]["budget"]
    assert budget.pop("mix")["clusters_at_clip"] == 0  # differences by chance only: no `mix:` line
    assert budget == {"asked": {"kind": "samples", "samples": 10}, "got": {"samples": 10, "tokens": None},
                      "difference": {"samples": 0, "relative": 0.0}, "notes": []}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 10), min_size=1, max_size=8), st.lists(st.integers(0, 50), min_size=1, max_size=8))
def test_a_mixture_record_measures_what_went_elsewhere(weights, got):
    """The total variation is the share that went to other clusters than the weights ask: 0 exactly when the
    realised shares are the weights', at most 1, and the largest difference is where they differ most."""
    w = np.asarray(weights)
    record = mixture_record(w, ScheduleStats(samples=int(np.sum(got)), cluster_samples=got, clusters_exhausted=1),
                            unit="samples")
    tv = record["total_variation"]
    assert 0 <= tv <= 1 + 1e-9
    n = max(len(w), len(got))
    asked = np.pad(w / w.sum(), (0, n - len(w))) if w.sum() > 0 else np.zeros(n)
    real = np.pad(np.asarray(got, float) / max(sum(got), 1), (0, n - len(got)))
    assert tv == pytest.approx(0.5 * np.abs(real - asked).sum(), abs=1e-5)
    big = record["largest"]
    assert abs(big["got"] - big["asked"]) == pytest.approx(np.abs(real - asked).max(), abs=1e-5)
    if w.sum() > 0 and sum(got) > 0:
        same = mixture_record(w, ScheduleStats(samples=1000, cluster_samples=w * 1000), unit="samples")
        assert same["total_variation"] == pytest.approx(0, abs=1e-6)


def test_mixtures_say_how_far_the_realised_mix_is_from_the_drawn_weights(tmp_path, embedded, clustered):
    """Dirichlet(0.2) weights over a small clip: some clusters reach it, the summary says how many and how much of
    the samples went elsewhere, recounted from each mixture's order and weights."""
    import pyarrow.parquet as pq

    out = tmp_path / "mix"
    result = run_cli(["mixtures", embedded, clustered, "--out", out, "--dirichlet", 0.2, "--n", 3, "--samples", 80,
                      "--max-repeats", 2])
    line = next(x for x in result.output.splitlines() if x.startswith("realised vs drawn weights:"))
    weights = pq.read_table(out / "weights.parquet").to_pydict()
    tvs, clipped = [], []
    for i in range(3):
        order = pq.read_table(out / f"mixture-{i:03d}" / "order.parquet").to_pydict()
        k = max(max(order["cluster"]), max(weights["cluster"])) + 1
        got = np.bincount(order["cluster"], minlength=k) / len(order["cluster"])
        asked = np.zeros(k)
        for m, c, w in zip(weights["mixture"], weights["cluster"], weights["weight"]):
            if m == i:
                asked[c] = w
        asked /= asked.sum()
        tvs.append(0.5 * np.abs(got - asked).sum())
        stats = json.loads((out / f"mixture-{i:03d}" / "manifest.json").read_text())["statistics"]
        clipped.append(stats["clusters_exhausted"])
    assert max(clipped) > 0 and f"{min(clipped)}" in line and "reached their clip per mixture" in line
    assert f"{min(tvs):.1%}" in line and f"{max(tvs):.1%}" in line


@pytest.mark.parametrize("how", ["weights", "stages"])
def test_the_schedule_says_how_far_its_mix_is_from_what_its_weights_ask(tmp_path, embedded, clustered, how):
    """statistics.budget.mix and the summary's `mix:` line, recounted from law.parquet (each stage's draw weights
    times its samples) and order.parquet."""
    import pyarrow.parquet as pq

    (tmp_path / "w.csv").write_text("cluster,weight\n0,6\n1,0.2\n")
    (tmp_path / "stages.toml").write_text('[[stage]]\nuntil = 0.5\nsampler = "uniform"\nalpha = 1.0\n\n[[stage]]\n')
    extra = ["--weights", tmp_path / "w.csv"] if how == "weights" else ["--stages", tmp_path / "stages.toml"]
    out = tmp_path / "sched"
    result = run_cli(["schedule", embedded, clustered, "--out", out, "--dry-run", "--samples", 80,
                      "--max-repeats", 2, *extra])
    mix = json.loads((out / "manifest.json").read_text())["statistics"]["budget"]["mix"]
    law = pq.read_table(out / "law.parquet").to_pydict()
    order = pq.read_table(out / "order.parquet").to_pydict()
    k = max(law["cluster"]) + 1
    stage = np.asarray(order.get("stage", [0] * len(order["cluster"])))
    asked = np.zeros(k)
    for s, c, w in zip(law["stage"], law["cluster"], law["weight"]):
        asked[c] += w * np.count_nonzero(stage == s)
    asked /= asked.sum()
    got = np.bincount(order["cluster"], minlength=k) / len(order["cluster"])
    assert mix["unit"] == "samples"
    assert mix["total_variation"] == pytest.approx(0.5 * np.abs(got - asked).sum(), abs=1e-5)
    worst = int(np.argmax(np.abs(got - asked)))
    assert mix["largest"]["cluster"] == worst
    assert mix["clusters_at_clip"] > 0
    assert f"so {mix['total_variation']:.1%} of the samples went to other clusters" in result.output
