"""The report over training and the mixture certificate (issues 26.7 and 28.4), recounted from order.parquet.

- :func:`scan_timeline` against a sample-by-sample recount, over sizes, batch cuts, parts, stages and groups;
- every figure of a real report (tokens, weights, per-cluster clips, ``--group-by``): its plotted numbers recounted
  here from ``order.parquet`` (pyarrow) and the corpus;
- ``clusters --schedule SCHED --certificate``: recounted from ``order.parquet`` and the shards read back by
  pyarrow (the Parquet format's own reader), with the sha256 of every file it names.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterclip.report.timeline import MAX_USE_COLUMNS, parts_for, scan_timeline

from helpers import load_script, run_cli


# --------------------------------------------------------------------------- the scan, sample by sample
def recount(cluster, repeat, tokens, stage, group, k, n_groups, parts):
    """Everything :class:`Timeline` holds, counted one sample at a time."""
    n = len(cluster)
    edges = [n * i // parts for i in range(parts + 1)]
    total = int(tokens.sum())
    token_edges = [total * i // parts for i in range(parts + 1)]
    out = {"part_samples": np.zeros((parts, k), np.int64), "part_tokens": np.zeros((parts, k), np.int64),
           "token_part_tokens": np.zeros((parts, k), np.int64), "token_part_samples": np.zeros(parts, np.int64),
           "part_uses": np.zeros((parts, MAX_USE_COLUMNS), np.int64),
           "cluster_uses": np.zeros((k, MAX_USE_COLUMNS), np.int64),
           "first_position": np.full(k, -1), "last_position": np.full(k, -1), "second_use": np.full(k, -1),
           "second_use_token": np.full(k, -1), "max_gap": np.zeros(k, np.int64),
           "max_gap_tokens": np.zeros(k, np.int64),
           "group_part_samples": np.zeros((parts, n_groups), np.int64),
           "group_token_part_tokens": np.zeros((parts, n_groups), np.int64)}
    position_in_tokens = 0
    last_end = {}
    for p in range(n):
        c, r, t = int(cluster[p]), int(repeat[p]), int(tokens[p])
        part = max(i for i in range(parts) if edges[i] <= p)
        token_part = max(i for i in range(parts) if token_edges[i] <= position_in_tokens)
        out["part_samples"][part, c] += 1
        out["part_tokens"][part, c] += t
        out["token_part_tokens"][token_part, c] += t
        out["token_part_samples"][token_part] += 1
        out["part_uses"][part, min(r, MAX_USE_COLUMNS - 1)] += 1
        out["cluster_uses"][c, min(r, MAX_USE_COLUMNS - 1)] += 1
        out["group_part_samples"][part, group[p]] += 1
        out["group_token_part_tokens"][token_part, group[p]] += t
        if out["first_position"][c] < 0:
            out["first_position"][c] = p
        else:
            out["max_gap"][c] = max(out["max_gap"][c], p - out["last_position"][c] - 1)
            out["max_gap_tokens"][c] = max(out["max_gap_tokens"][c], position_in_tokens - last_end[c])
        if r > 0 and out["second_use"][c] < 0:
            out["second_use"][c] = p
            out["second_use_token"][c] = position_in_tokens
        out["last_position"][c] = p
        position_in_tokens += t
        last_end[c] = position_in_tokens
    stages = sorted(set(stage.tolist()))
    out["stage_samples"] = np.array([np.bincount(cluster[stage == s], minlength=k) for s in stages])
    out["stage_spans"] = [(int(np.flatnonzero(stage == s)[0]), int(np.flatnonzero(stage == s)[-1]) + 1)
                          for s in stages]
    return out


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=6), n=st.integers(0, 260),
       batch=st.integers(1, 70), parts=st.sampled_from([10, 20, 100]), n_stages=st.integers(1, 3),
       n_groups=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_the_timeline_equals_a_sample_by_sample_recount(sizes, n, batch, parts, n_stages, n_groups, seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    k = len(sizes)
    doc = rng.integers(0, len(labels), n)
    cluster = labels[doc]
    repeat = np.zeros(n, np.int64)
    seen: dict[int, int] = {}
    for p, d in enumerate(doc.tolist()):
        repeat[p] = seen.get(d, 0)
        seen[d] = repeat[p] + 1
    tokens = rng.integers(0, 40, len(labels))[doc]  # a sample may hold no token (no delimiters, empty text)
    cuts = np.sort(rng.choice(np.arange(1, max(n, 2)), size=min(n_stages - 1, max(n - 1, 0)), replace=False))
    stage = np.searchsorted(cuts, np.arange(n), side="right")
    groups = rng.integers(0, n_groups, len(labels)).astype(np.int32)
    batches = [{"position": np.arange(a, min(a + batch, n)), "cluster": cluster[a:a + batch],
                "repeat": repeat[a:a + batch], "tokens": tokens[a:a + batch], "stage": stage[a:a + batch],
                "doc_id": doc[a:a + batch]} for a in range(0, n, batch)]
    tl = scan_timeline(batches, samples=n, k=k, tokens=int(tokens.sum()), parts=parts, groups=groups,
                       n_groups=n_groups)
    want = recount(cluster, repeat, tokens, stage, groups[doc], k, n_groups, parts)
    for name in ("part_samples", "part_tokens", "token_part_tokens", "token_part_samples", "part_uses",
                 "cluster_uses", "first_position", "last_position", "second_use", "second_use_token", "max_gap",
                 "max_gap_tokens", "group_part_samples", "group_token_part_tokens"):
        np.testing.assert_array_equal(getattr(tl, name), want[name], err_msg=name)
    if n:
        np.testing.assert_array_equal(tl.stage_samples, want["stage_samples"])
        assert tl.stage_spans == want["stage_spans"]
    uses = np.bincount(np.bincount(doc, minlength=len(labels)))
    assert tl.docs_by_uses(len(labels)).tolist() == uses.tolist()
    # the tenths of the manifest are every parts/10-th edge
    tenths = [n * i // 10 for i in range(11)]
    assert tl.sample_edges[:: parts // 10].tolist() == tenths
    for i in range(10):
        assert tl.tenths(tl.part_samples)[i].tolist() == np.bincount(cluster[tenths[i]:tenths[i + 1]],
                                                                   minlength=k).tolist()


def test_parts_hold_enough_samples_per_cluster():
    assert parts_for(50, 3) == 10
    assert parts_for(1634, 30) == 10
    assert parts_for(10_000, 5) == 100
    assert parts_for(10**8, 100_000) == 40  # the [parts, K] table stays within 4 M cells
    assert all(parts_for(s, k) % 10 == 0 for s in (0, 99, 12345, 10**9) for k in (1, 7, 10**6))


# --------------------------------------------------------------------------- a real report, recounted
@pytest.fixture(scope="module")
def weighted(embedded, clustered, demo_tokenizer, tmp_path_factory) -> Path:
    """A schedule with tokens, weights and per-cluster clips, whose clips empty some clusters (Parquet shards)."""
    root = tmp_path_factory.mktemp("timeline")
    (root / "w.csv").write_text("cluster,weight,max_repeats\n0,3,1\n1,0.5,3\n")
    sched = root / "sched"
    run_cli(["schedule", embedded, clustered, "--out", sched, "--tokenizer", demo_tokenizer, "--format", "parquet",
             "--weights", root / "w.csv", "--max-repeats", 2, "--samples", 80])
    return sched


@pytest.fixture(scope="module")
def weighted_report(embedded, clustered, weighted, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("timeline-report") / "report"
    run_cli(["report", embedded, clustered, weighted, "--out", out, "--group-by", "id"])
    return out


def _order(sched: Path) -> dict:
    t = pq.read_table(sched / "order.parquet").to_pydict()
    return {name: np.asarray(values, np.int64) for name, values in t.items()}


def _cut(n: int, parts: int) -> list[int]:
    return [n * i // parts for i in range(parts + 1)]


def test_every_figure_over_training_is_recounted_from_the_order(weighted_report, weighted, clustered):
    data = json.loads((weighted_report / "report.json").read_text())
    figs = data["figures"]
    order = _order(weighted)
    cluster, repeat, tokens, doc = order["cluster"], order["repeat"], order["tokens"], order["doc_id"]
    k = len(pq.read_table(clustered / "clusters.parquet"))
    n, total = len(cluster), int(tokens.sum())
    assert data["warnings"] == []

    # samples per cluster and part; the x axis is positions in samples
    bal = figs["balance_over_time"]
    assert bal["unit"] == "samples" and bal["edges"] == _cut(n, len(bal["edges"]) - 1)
    for i, (a, b) in enumerate(zip(bal["edges"][:-1], bal["edges"][1:])):
        assert bal["counts"][i] == np.bincount(cluster[a:b], minlength=k).tolist()
    # tokens per cluster and part of equal tokens (a sample in the part of its first token); x in tokens
    tok = figs["token_balance_over_time"]
    starts = np.r_[0, np.cumsum(tokens)[:-1]]
    assert tok["unit"] == "tokens" and tok["edges"] == _cut(total, len(tok["edges"]) - 1)
    for i, (a, b) in enumerate(zip(tok["edges"][:-1], tok["edges"][1:])):
        here = (starts >= a) & ((starts < b) | (i == len(tok["edges"]) - 2))
        assert tok["counts"][i] == np.bincount(cluster[here], weights=tokens[here], minlength=k).astype(int).tolist()
    cum = figs["cumulative_tokens"]
    for c, values in cum["cumulative"].items():
        ends = [int(tokens[(cluster == int(c)) & (starts < e)].sum()) for e in cum["edges"][:-1]]
        assert values == [0, *ends[1:], int(tokens[cluster == int(c)].sum())]
        assert cum["planned"][c][-1] == pytest.approx(cum["planned"][c][-1])  # drawn beside it
    # which use of its document each sample is, per part; where each cluster's second uses start
    uses = figs["uses_over_training"]
    for i, (a, b) in enumerate(zip(uses["edges"][:-1], uses["edges"][1:])):
        assert uses["uses"][i] == np.bincount(repeat[a:b], minlength=len(uses["uses"][i])).tolist()
    for c in range(k):
        again = np.flatnonzero((cluster == c) & (repeat > 0))
        assert uses["second_use"][c] == (int(again[0]) if len(again) else -1)
    # documents by uses, and the clips drawn on it (3 per-cluster values: 1, 3 and the default 2)
    rep = figs["repetition"]
    n_docs = int(pq.read_table(clustered / "clusters.parquet").column("size").to_numpy().sum())
    assert rep["docs_by_uses"] == np.bincount(np.bincount(doc, minlength=n_docs)).tolist()
    sizes = pq.read_table(clustered / "clusters.parquet").column("size").to_numpy()
    clip = np.where(np.arange(k) == 0, 1, np.where(np.arange(k) == 1, 3, 2))
    assert rep["clips"] == {str(v): int(np.sum(clip[sizes > 0] == v)) for v in np.unique(clip[sizes > 0])}
    # clusters that left the pool: every document used its clip times; at the position of their last sample
    exits = figs["pool_exits"]
    full = [c for c in range(k) if np.sum(cluster == c) == clip[c] * sizes[c]]
    assert sorted(exits["clip"]["clusters"]) == full and full and exits["budget"]["clusters"] == []
    for c, p in zip(exits["clip"]["clusters"], exits["clip"]["positions"]):
        assert p == int(np.flatnonzero(cluster == c)[-1])
    # asked (the weights' draw shares) against got
    tvr = figs["target_vs_realised"]
    weight = np.where(np.arange(k) == 0, 3.0, np.where(np.arange(k) == 1, 0.5, 1.0))
    np.testing.assert_allclose(tvr["asked"], weight / weight.sum())
    np.testing.assert_allclose(tvr["realised"], np.bincount(cluster, minlength=k) / n)
    assert sum(tvr["expected"]) == pytest.approx(1.0)
    assert [r == "clip" for r in tvr["reason"]] == [c in full for c in range(k)]
    tvt = figs["target_vs_realised_tokens"]
    np.testing.assert_allclose(tvt["realised"], np.bincount(cluster, weights=tokens, minlength=k) / total)


def test_group_by_a_corpus_column_counts_each_sample_for_its_documents_group(weighted_report, weighted, embedded,
                                                                           small_docs):
    data = json.loads((weighted_report / "report.json").read_text())
    order = _order(weighted)
    doc, tokens = order["doc_id"], order["tokens"]
    ids = [small_docs[r]["id"] for r in pq.read_table(embedded / "docs.parquet").column("row").to_pylist()]
    names = list(dict.fromkeys(ids))  # groups in order of first appearance in doc order
    group = np.asarray([names.index(ids[d]) for d in doc])
    bal = data["figures"]["group_balance_over_time"]
    for i, (a, b) in enumerate(zip(bal["edges"][:-1], bal["edges"][1:])):
        assert bal["totals"] is not None
        assert np.bincount(group[a:b], minlength=len(names)).tolist() == (
            bal["counts"][i] if "counts" in bal else np.bincount(group[a:b], minlength=len(names)).tolist())
    assert bal["totals"] == np.bincount(group, minlength=len(names)).tolist()
    cum = data["figures"]["group_cumulative_tokens"]
    for g, values in cum["cumulative"].items():
        assert values[-1] == int(tokens[group == int(g)].sum())
    page = (weighted_report / "index.html").read_text("utf-8")
    assert 'id="group-table"' in page and "Groups by id" in page


def test_group_by_a_column_that_is_not_there_is_refused(embedded, clustered, tmp_path):
    result = run_cli(["report", embedded, clustered, "--out", tmp_path / "r", "--group-by", "nope"], expect_ok=False)
    assert result.exit_code == 2 and "--group-by nope" in result.output and "no key 'nope'" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_group_by_source_and_a_parquet_column_on_a_planted_corpus(tmp_path):
    """A corpus whose 'product' column mostly follows the topic: the group table adds up the documents and the
    samples of each product, and each product's main cluster is its topic's."""
    bench = load_script("bench_report")
    texts, topic_of, _ = bench.planted_corpus(400, 4, seed=1)
    product = [f"p{t}" if i % 5 else "misc" for i, t in enumerate(topic_of.tolist())]
    emb = bench.write_embed_dir(tmp_path / "emb", tmp_path / "corpus" / "c.parquet", texts,
                                bench.topic_vectors(topic_of, 4, 16, seed=1), [f"d{i}" for i in range(400)],
                                extra={"product": product})
    from clusterclip.cluster import cluster_embeddings
    from clusterclip.report import build_report
    from clusterclip.schedule import schedule_corpus

    cluster_embeddings(emb, tmp_path / "cl", k=4, seed=0, progress=False)
    schedule_corpus(emb, tmp_path / "cl", tmp_path / "s", dry_run=True, samples=600, max_repeats=2, progress=False)
    index = build_report(emb, tmp_path / "cl", tmp_path / "s", tmp_path / "r", group_by="product")
    page = index.read_text("utf-8")
    counts = {p: product.count(p) for p in set(product)}
    for name, n in counts.items():
        assert f'data-value="{name}">{name}</td><td class="num docs" data-value="{n}">' in page
    by_source = build_report(emb, tmp_path / "cl", tmp_path / "s", tmp_path / "r2", group_by="source")
    assert 'data-value="c.parquet">c.parquet</td><td class="num docs" data-value="400">' in by_source.read_text()


# --------------------------------------------------------------------------- the certificate
def test_certificate_is_recounted_from_the_order_and_the_shards(weighted, clustered):
    cert = json.loads(run_cli(["clusters", clustered, "--schedule", weighted, "--certificate", "--json"]).output)
    order = _order(weighted)
    cluster, repeat, doc = order["cluster"], order["repeat"], order["doc_id"]
    # the tokens of every sample read back from the shards by pyarrow, in order (rows = samples)
    index = json.loads((weighted / "shards.json").read_text())
    shard_rows = [pq.read_table(weighted / f["path"]) for rec in index["shards"]["parquet"] for f in rec["files"]
                  if f["path"].endswith(".parquet")]
    lengths = np.concatenate([np.asarray([len(x) for x in t.column("input_ids").to_pylist()]) for t in shard_rows])
    assert np.concatenate([t.column("doc_id").to_numpy() for t in shard_rows]).tolist() == doc.tolist()
    k = len(cert["clusters"])
    sizes = pq.read_table(clustered / "clusters.parquet").column("size").to_numpy()
    n = len(cluster)
    assert cert["totals"]["samples"] == n and cert["totals"]["tokens"] == int(lengths.sum())
    for c, row in enumerate(cert["clusters"]):
        mine = np.flatnonzero(cluster == c)
        assert row["samples"] == len(mine) and row["tokens"] == int(lengths[mine].sum())
        assert row["documents"] == sizes[c]
        assert row["effective_epochs"] == pytest.approx(len(mine) / sizes[c])
        assert row["documents_used"] == len(set(doc[mine].tolist()))
        assert row["max_uses"] == (max(np.bincount(doc[mine]).tolist()) if len(mine) else 0)
        assert row["max_gap"] == (int(np.diff(mine).max()) - 1 if len(mine) > 1 else 0)
        ends = np.cumsum(lengths)
        gaps = [int(ends[b - 1] - ends[a]) for a, b in zip(mine[:-1], mine[1:])]
        assert row["max_gap_tokens"] == max(gaps, default=0)
        assert (row["first"], row["last"]) == ((int(mine[0]), int(mine[-1])) if len(mine) else (-1, -1))
        assert row["planned_samples"] >= 0 and row["why"] in ("clip", "chance", "off", "budget")
    tenths = _cut(n, 10)
    for i, (a, b) in enumerate(zip(tenths[:-1], tenths[1:])):
        assert cert["tenths"]["samples"][i] == np.bincount(cluster[a:b], minlength=k).tolist()
        assert cert["tenths"]["tokens"][i] == np.bincount(cluster[a:b], weights=lengths[a:b],
                                                          minlength=k).astype(int).tolist()
    planned = np.asarray(cert["tenths"]["planned_samples"])
    rounding = 1e-3 * planned.size  # each cell is rounded to 3 decimals
    assert planned.sum() == pytest.approx(cert["totals"]["planned_samples"], abs=rounding)
    assert planned.sum() == pytest.approx(n, abs=rounding)  # the law's expected samples fill the budget
    assert cert["documents"]["by_uses"] == np.bincount(np.bincount(doc, minlength=int(sizes.sum()))).tolist()
    assert max(repeat) + 1 == len(cert["documents"]["by_uses"]) - 1
    # the sha256 of everything it was computed from
    digests = cert["computed_from"]
    for name in ("order.parquet", "shards.json"):
        assert digests[f"{weighted}/{name}"] == hashlib.sha256((weighted / name).read_bytes()).hexdigest()
    assert digests[f"{clustered}/clusters.parquet"] == hashlib.sha256(
        (clustered / "clusters.parquet").read_bytes()).hexdigest()
    assert digests[str(weighted.parent / "w.csv")] == hashlib.sha256((weighted.parent / "w.csv").read_bytes()).hexdigest()

    text = run_cli(["clusters", clustered, "--schedule", weighted, "--certificate"]).output
    assert text.startswith(f"mixture certificate of {weighted}")
    assert f"{n:,} samples, {int(lengths.sum()):,} tokens" in text
    for name, digest in digests.items():
        assert f"{digest}  {name}" in text
    refused = run_cli(["clusters", clustered, "--certificate"], expect_ok=False)
    assert refused.exit_code == 2 and "needs --schedule" in refused.output


STAGES = """
[[stage]]
until = 0.25
sampler = "uniform"
alpha = 1.0

[[stage]]
until_sample = 75
max_repeats = 2

[[stage]]
max_repeats = 3
"""


@pytest.mark.slow
def test_a_staged_certificate_follows_law_parquet_stage_by_stage(embedded, clustered, demo_tokenizer, tmp_path):
    """Three stages (uniform by size, then clusterclip with two clips): the certificate and the report plan each
    stage by its rows of law.parquet, and count each stage's samples and tokens as the order's stage column and
    the Parquet shards hold them."""
    (tmp_path / "stages.toml").write_text(STAGES)
    sched = tmp_path / "sched"
    run_cli(["schedule", embedded, clustered, "--out", sched, "--tokenizer", demo_tokenizer, "--format", "parquet",
             "--samples", 100, "--stages", tmp_path / "stages.toml"])
    cert = json.loads(run_cli(["clusters", clustered, "--schedule", sched, "--certificate", "--json"]).output)
    order = _order(sched)
    index = json.loads((sched / "shards.json").read_text())
    tables = [pq.read_table(sched / f["path"]) for rec in index["shards"]["parquet"] for f in rec["files"]
              if f["path"].endswith(".parquet")]
    lengths = np.concatenate([np.asarray([len(x) for x in t.column("input_ids").to_pylist()]) for t in tables])
    law = pq.read_table(sched / "law.parquet").to_pydict()
    k = len(cert["clusters"])
    spans = [(s["start"], s["stop"]) for s in json.loads((sched / "manifest.json").read_text())["statistics"]["stages"]]
    assert cert["law"] == "the schedule's law.parquet" and cert["law_missing"] is None
    assert [(s["start"], s["stop"]) for s in cert["stages"]] == spans == [(0, 25), (25, 75), (75, 100)]
    for s, stage in enumerate(cert["stages"]):
        mine = order["stage"] == s
        assert stage["samples"] == np.bincount(order["cluster"][mine], minlength=k).tolist()
        assert stage["tokens"] == np.bincount(order["cluster"][mine], weights=lengths[mine], minlength=k).astype(
            int).tolist()
        rows = [i for i, x in enumerate(law["stage"]) if x == s]
        expected = np.zeros(k)
        expected[[law["cluster"][i] for i in rows]] = [law["expected_samples"][i] for i in rows]
        np.testing.assert_allclose(stage["planned_samples"], np.round(expected, 3))
        assert sum(stage["planned_samples"]) == pytest.approx(spans[s][1] - spans[s][0], abs=1e-3 * k)
    planned = np.asarray([row["planned_samples"] for row in cert["clusters"]])
    np.testing.assert_allclose(planned, np.round(np.sum([s["planned_samples"] for s in cert["stages"]], axis=0), 3),
                               atol=1e-3 * 3)
    clip = {c: x for c, x, st in zip(law["cluster"], law["clip"], law["stage"]) if st == 2}
    for c, row in enumerate(cert["clusters"]):  # the clip of the last stage; the clip is global over the stages
        assert row.get("clip") == clip[c]
        assert np.bincount(order["doc_id"][order["cluster"] == c]).max(initial=0) <= clip[c]
    digests = cert["computed_from"]
    assert digests[f"{sched}/law.parquet"] == hashlib.sha256((sched / "law.parquet").read_bytes()).hexdigest()

    report = tmp_path / "report"
    run_cli(["report", embedded, clustered, sched, "--out", report])
    data = json.loads((report / "report.json").read_text())
    assert data["certificate"]["stages"] == cert["stages"]
    page = (report / "index.html").read_text()
    assert "the plan could not be rebuilt" not in page
    # the per-stage panel: tokens per cluster per stage, got (recounted from the order's stage column and the
    # shards) against each stage's law (law.parquet's expected samples at the cluster's mean sample length)
    panel = data["figures"]["stages"]
    mean = np.asarray(json.loads((sched / "manifest.json").read_text())["statistics"]["cluster_mean_tokens"], float)
    assert panel["unit"] == "tokens" and panel["spans"] == [list(span) for span in spans]
    rows = panel["rows"]
    assert sorted(rows) == list(range(k))  # every cluster planned something
    for s in range(3):
        mine = order["stage"] == s
        got = np.bincount(order["cluster"][mine], weights=lengths[mine], minlength=k)
        expected = np.zeros(k)
        for c, stage_of, e in zip(law["cluster"], law["stage"], law["expected_samples"]):
            expected[c] += e if stage_of == s else 0
        assert panel["got"][s] == got[rows].tolist()
        np.testing.assert_allclose(panel["planned"][s], (expected * mean)[rows], rtol=1e-4, atol=0.1)
        moved = 0.5 * np.abs(got - expected * mean).sum() / (expected * mean).sum()
        assert panel["moved"][s] == pytest.approx(moved, abs=2e-3)
        assert f"stage {s} (samples {spans[s][0]:,}..{spans[s][1]:,}): {got.sum():,.0f} tokens (planned " in page
    assert (report / "figures" / "stages.png").stat().st_size > 0


@pytest.mark.slow
def test_a_continued_schedule_plans_its_prefix_as_it_was_drawn(embedded, clustered, tmp_path):
    """--continue OLD --at-sample 30 with new weights: the prefix (stage 0, OLD's law) is planned as the samples it
    holds, the suffix by its row of law.parquet; the certificate's plan fills each stage."""
    old, new = tmp_path / "old", tmp_path / "new"
    run_cli(["schedule", embedded, clustered, "--out", old, "--dry-run", "--samples", 80])
    (tmp_path / "w.csv").write_text("cluster,weight\n0,4\n1,0.25\n")
    run_cli(["schedule", embedded, clustered, "--out", new, "--dry-run", "--samples", 80, "--continue", old,
             "--at-sample", 30, "--weights", tmp_path / "w.csv"])
    cert = json.loads(run_cli(["clusters", clustered, "--schedule", new, "--certificate", "--json"]).output)
    order = _order(new)
    k = len(cert["clusters"])
    assert cert["law"] == "the schedule's law.parquet"
    assert [(s["start"], s["stop"]) for s in cert["stages"]] == [(0, 30), (30, 80)]
    prefix = np.bincount(order["cluster"][:30], minlength=k)
    assert cert["stages"][0]["planned_samples"] == prefix.astype(float).tolist() == cert["stages"][0]["samples"]
    assert sum(cert["stages"][1]["planned_samples"]) == pytest.approx(50, abs=1e-3 * k)
    law = pq.read_table(new / "law.parquet").to_pydict()
    assert set(law["stage"]) == {1}
    expected = dict(zip(law["cluster"], law["expected_samples"]))
    assert cert["stages"][1]["planned_samples"] == [round(expected[c], 3) for c in range(k)]
