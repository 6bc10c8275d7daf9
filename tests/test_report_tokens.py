"""The report and ``clusterclip clusters --schedule`` in tokens: token share per cluster under each
sampler and over training, checked against the schedule's manifest and against its order.parquet
times every document's length counted here again with the same tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterclip.embed.directory import EmbedDir
from clusterclip.report.mix import expected_counts, law_counts, shares_of
from clusterclip.schedule.law import Budget, SamplingLaw
from clusterclip.schedule.sampling import plan_schedule
from clusterclip.tokens.tokenizer import load_tokenizer

from helpers import run_cli


@pytest.fixture(scope="module")
def token_schedule(embedded, clustered, demo_tokenizer, tmp_path_factory):
    """A token-balanced, weighted dry-run schedule (every document tokenized, so every length is known)."""
    root = tmp_path_factory.mktemp("report-tokens")
    (root / "w.csv").write_text("cluster,weight,max_repeats\n0,3,2\n2,0.5,\n")
    sched = root / "sched"
    run_cli(["schedule", embedded, clustered, "--out", sched, "--tokenizer", demo_tokenizer, "--dry-run",
             "--balance", "tokens", "--weights", root / "w.csv", "--samples", 100, "--max-repeats", 3])
    return sched


@pytest.fixture(scope="module")
def token_report(embedded, clustered, token_schedule, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-tokens-out") / "report"
    run_cli(["report", embedded, clustered, token_schedule, "--out", out])
    return out


def sample_lengths(embedded, demo_tokenizer) -> np.ndarray:
    """Every document's sample length (its tokens + the EOS appended by default), counted here."""
    tok = load_tokenizer(str(demo_tokenizer), require_eos=False)
    tok.set_delimiters()
    emb = EmbedDir(embedded)
    return np.array([len(tok.encode(text)) + 1 for _, text in emb.texts(np.arange(emb.n_docs))], np.int64)


def test_report_token_shares_sum_to_one_and_match_the_order(token_report, token_schedule, embedded, clustered,
                                                            demo_tokenizer):
    data = json.loads((token_report / "report.json").read_text())
    stats = json.loads((token_schedule / "manifest.json").read_text())["statistics"]
    figs = data["figures"]
    assert data["warnings"] == []
    tok = figs["token_shares"]
    order_ids = tok["cluster_order"]
    assert set(tok["token_shares"]) == {"random", "uniform", "clusterclip", "law", "schedule"}
    for name, values in tok["token_shares"].items():
        assert sum(values) == pytest.approx(1.0), name
    for name, values in tok["sample_shares"].items():
        assert sum(values) == pytest.approx(1.0), name

    # the schedule's token shares: the manifest's counts, and the order times the lengths counted here
    lengths = sample_lengths(embedded, demo_tokenizer)
    order = pq.read_table(token_schedule / "order.parquet").to_pydict()
    doc, cluster = np.asarray(order["doc_id"]), np.asarray(order["cluster"])
    k = len(stats["cluster_samples"])
    per_cluster = np.bincount(cluster, weights=lengths[doc], minlength=k)
    assert per_cluster.astype(np.int64).tolist() == stats["cluster_tokens"]
    actual = dict(zip(order_ids, tok["token_shares"]["schedule"]))
    for c in order_ids:
        assert actual[c] == pytest.approx(per_cluster[c] / per_cluster.sum())
    # mean sample length per cluster: of its documents
    labels = pq.read_table(clustered / "assignments.parquet").column("cluster").to_numpy()
    for c, mean in zip(order_ids, tok["mean_tokens"]):
        assert mean == pytest.approx(lengths[labels == c].mean(), abs=1e-3)
    # the expected token share of a sampler is its sample share times the mean length, renormalised
    for name in ("uniform", "clusterclip", "law"):
        weighted = np.asarray(tok["sample_shares"][name]) * np.asarray(tok["mean_tokens"])
        np.testing.assert_allclose(tok["token_shares"][name], weighted / weighted.sum(), rtol=1e-9)

    # over training, in tokens: the tokens of each cluster in each part of equal tokens (x: token positions)
    over = figs["token_balance_over_time"]
    edges = over["edges"]
    assert over["unit"] == "tokens" and edges[0] == 0 and edges[-1] == stats["tokens"]
    starts = np.r_[0, np.cumsum(lengths[doc])[:-1]]
    for part, (start, stop) in enumerate(zip(edges[:-1], edges[1:])):
        here = (starts >= start) & ((starts < stop) | (part == len(edges) - 2))
        counts = np.bincount(cluster[here], weights=lengths[doc[here]], minlength=k)
        assert over["counts"][part] == counts.astype(int).tolist()

    # the table rows carry the same numbers
    rows = {r["cluster"]: r for r in data["table"]["clusters"]}
    for c in range(k):
        assert rows[c]["tokens"] == stats["cluster_tokens"][c]
        assert rows[c]["samples"] == stats["cluster_samples"][c]
    assert data["table"]["schedule_tokens"] == stats["tokens"] == int(per_cluster.sum())


def test_report_law_follows_the_weights(token_report, token_schedule):
    """Under --balance tokens with weights, the law gives each cluster tokens ∝ its weight until its clip;
    cluster 2 (weight 0.5) is expected at half the token share of an unclipped weight-1 cluster."""
    tok = json.loads((token_report / "report.json").read_text())["figures"]["token_shares"]
    law = dict(zip(tok["cluster_order"], tok["token_shares"]["law"]))
    page = (token_report / "index.html").read_text("utf-8")
    assert "under this schedule&#x27;s law" in page or "under this schedule's law" in page
    assert 'class="num token-share"' in page and 'id="fig-token_shares"' in page
    unclipped = [law[c] for c in law if c not in (0, 2)]
    if law[2] > 0 and unclipped:
        assert law[2] <= max(unclipped)


def test_report_without_token_counts_has_no_token_section(embedded, clustered, tmp_path):
    sched = tmp_path / "plain"
    run_cli(["schedule", embedded, clustered, "--out", sched, "--dry-run", "--samples", 40])
    out = tmp_path / "r"
    run_cli(["report", embedded, clustered, sched, "--out", out])
    data = json.loads((out / "report.json").read_text())
    assert "token_shares" not in data["figures"] and "law" not in data["figures"]["sizes_and_shares"]["shares"]
    assert all("tokens" not in r for r in data["table"]["clusters"])


def test_clusters_with_a_schedule_shows_tokens_per_cluster(clustered, token_schedule, embedded, tmp_path):
    stats = json.loads((token_schedule / "manifest.json").read_text())["statistics"]
    whole = json.loads(run_cli(["clusters", clustered, "--schedule", token_schedule, "--json"]).output)
    assert [c["tokens"] for c in whole["clusters"]] == stats["cluster_tokens"]
    assert [c["samples"] for c in whole["clusters"]] == stats["cluster_samples"]
    assert sum(c["token_share"] for c in whole["clusters"]) == pytest.approx(1.0)
    assert whole["schedule_tokens"] == stats["tokens"]
    for c, row in enumerate(whole["clusters"]):
        assert row["mean_tokens"] == pytest.approx(stats["cluster_mean_tokens"][c])

    text = run_cli(["clusters", clustered, "--schedule", token_schedule]).output.splitlines()
    assert "tokens" in text[0] and "tok share" in text[0]
    first = text[1].split()
    assert int(first[5].replace(",", "")) == stats["cluster_tokens"][int(first[0])]
    assert any(f"{stats['tokens']:,} tokens" in line for line in text)
    shown = run_cli(["clusters", clustered, "--schedule", token_schedule, "--show", 1]).output
    assert f"{stats['cluster_tokens'][1]:,} tokens" in shown

    # without --schedule: no token columns; a schedule of other clusters is refused
    assert "tokens" not in run_cli(["clusters", clustered]).output.splitlines()[0]
    other = tmp_path / "other-cl"
    run_cli(["cluster", embedded, "--out", other, "--k", 3, "--seed", 1])
    refused = run_cli(["clusters", other, "--schedule", token_schedule], expect_ok=False)
    assert refused.exit_code == 2 and "was scheduled from" in refused.output


# --------------------------------------------------------------------------- the law, as numbers
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(1, 50), min_size=1, max_size=12), data=st.data())
def test_law_counts_fill_the_budget_up_to_the_clips(sizes, data):
    k = len(sizes)
    sizes = np.asarray(sizes)
    length = np.asarray(data.draw(st.lists(st.floats(1, 500), min_size=k, max_size=k)))
    mult = np.asarray(data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=k, max_size=k)))
    clip = np.asarray(data.draw(st.lists(st.integers(1, 4), min_size=k, max_size=k)))
    samples = data.draw(st.integers(1, int((clip * sizes).sum()) + 10))
    balance = data.draw(st.sampled_from(["samples", "tokens"]))
    counts = law_counts(sizes, length, sampler="clusterclip", samples=samples, max_repeats=clip,
                        balance=balance, multipliers=mult)
    cap = np.where(mult > 0, clip * sizes, 0)
    assert np.all(counts <= cap + 1e-9) and np.all(counts >= 0)
    if cap.sum():
        assert counts.sum() == pytest.approx(min(samples, cap.sum()))
    # clusters below their clip share at the rate of their weight (in tokens when balancing tokens)
    free = (counts < cap - 1e-6) & (mult > 0)
    rate = counts[free] * (length[free] if balance == "tokens" else 1) / mult[free]
    assert np.allclose(rate, rate[0] if len(rate) else 0, rtol=1e-6)
    # no weights, no per-cluster clips, balance samples: the report's old clusterclip expectation
    plain = law_counts(sizes, length, sampler="clusterclip", samples=samples, max_repeats=2)
    np.testing.assert_allclose(plain, expected_counts(sizes, sampler="clusterclip", samples=samples, max_repeats=2))


def test_law_matches_what_the_sampler_does():
    """The expected token shares of --balance tokens with weights and clips against the sampler's own counts."""
    rng = np.random.default_rng(5)
    k = 8
    sizes = rng.integers(20, 400, k)
    labels = rng.permutation(np.repeat(np.arange(k), sizes))
    scale = rng.choice([1, 4, 16], k)
    lengths = (rng.integers(5, 50, len(labels)) * scale[labels]).astype(np.int64)
    mult = np.array([1, 2, 0.5, 1, 0, 1, 3, 1.0])
    clips = np.array([1, 3, 3, 3, 3, 2, 3, 3])
    samples = 3000
    law = SamplingLaw(balance="tokens", cluster_weights=mult, cluster_max_repeats=clips, max_repeats=3)
    schedule = plan_schedule(labels, law, Budget(samples=samples), lengths=lengths, seed=0)
    actual = shares_of(np.bincount(schedule.cluster, weights=lengths[schedule.doc_id], minlength=k))
    mean = np.bincount(labels, weights=lengths, minlength=k) / sizes
    counts = law_counts(sizes, mean, sampler="clusterclip", samples=samples, max_repeats=clips, balance="tokens",
                        multipliers=mult)
    expected = shares_of(counts * mean)
    assert expected[4] == actual[4] == 0
    np.testing.assert_allclose(actual, expected, atol=0.03)


def test_balance_figure_for_many_clusters_labels_every_row_it_shows():
    """Past 100 clusters the heat map shows the 100 most drawn, each row labelled (the figure grows with them);
    report.json keeps the totals, not the [parts, K] counts."""
    from clusterclip.report import training

    rng = np.random.default_rng(2)
    k, parts = 150, 20
    counts = rng.integers(0, 30, (parts, k))
    counts[:, 7] = 0  # never drawn: not a row
    edges = np.arange(parts + 1) * 1000
    png, plotted = training.balance_over_time(counts, edges, training.cluster_rows(k), unit="tokens", title="t")
    assert png.startswith(b"\x89PNG") and "counts" not in plotted
    assert len(plotted["rows"]) == 100 and 7 not in plotted["rows"]
    totals = counts.sum(axis=0)
    assert [totals[r] for r in plotted["rows"]] == sorted((totals[r] for r in plotted["rows"]), reverse=True)
    assert plotted["totals"] == totals.tolist() and plotted["edges"] == edges.tolist()
    assert plotted["active"] == np.count_nonzero(counts, axis=1).tolist()
    shares = counts / counts.sum(axis=1, keepdims=True)
    entropy = [-(p[p > 0] * np.log(p[p > 0])).sum() / np.log(k) for p in shares]
    np.testing.assert_allclose(plotted["entropy"], entropy)
