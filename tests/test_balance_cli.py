"""``schedule --balance tokens / --weights / --budget-tokens / --doc-weight-column / --dedup-threshold``
through the CLI on the session's real corpus, and ``clusterclip mixtures``."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from helpers import SMALL_N_DOCS, run_cli


def manifest(out):
    return json.loads((out / "manifest.json").read_text())


def test_token_balance_weights_and_statistics_in_tokens(tmp_path, embedded, clustered, demo_tokenizer):
    (tmp_path / "w.csv").write_text("cluster,weight,max_repeats\n0,2,3\n4,0,\n")
    out = tmp_path / "tok"
    result = run_cli(["schedule", embedded, clustered, "--out", out, "--tokenizer", demo_tokenizer, "--dry-run",
                      "--balance", "tokens", "--weights", tmp_path / "w.csv", "--cluster-max-repeats", "1=2",
                      "--samples", 100])
    m = manifest(out)
    st = m["statistics"]
    assert st["samples"] == 100 and sum(st["cluster_tokens"]) == st["tokens"]
    assert st["cluster_samples"][4] == 0 and len(st["balance_tokens"]["shares"]) == 10
    assert m["settings"]["balance"] == "tokens" and len(m["settings"]["weights_digest"]) == 64
    assert "tokens per cluster" in result.output
    order = pq.read_table(out / "order.parquet").to_pydict()
    uses = np.bincount(order["doc_id"])
    labels = pq.read_table(clustered / "assignments.parquet").column("cluster").to_numpy()
    assert uses[: len(labels)][labels[: len(uses)] == 1].max(initial=0) <= 2


def test_default_settings_record_nothing_new(tmp_path, embedded, clustered):
    out = tmp_path / "plain"
    run_cli(["schedule", embedded, clustered, "--out", out, "--dry-run", "--samples", 50])
    recorded = manifest(out)["settings"]
    assert not {"balance", "weights", "budget_tokens", "doc_weight_column", "dedup_threshold"} & set(recorded)


def test_token_budget_doc_scores_and_dedup(tmp_path, embedded, clustered, demo_tokenizer):
    scores = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"doc_id": np.arange(SMALL_N_DOCS), "score": np.linspace(0, 1, SMALL_N_DOCS)}), scores)
    out = tmp_path / "budget"
    result = run_cli(["schedule", embedded, clustered, "--out", out, "--tokenizer", demo_tokenizer,
                      "--budget-tokens", 20_000, "--doc-weight-column", scores, "--doc-weight-power", 2,
                      "--dedup-threshold", 0.97, "--format", "bin"])
    st = manifest(out)["statistics"]
    assert sum(st["cluster_token_budget"]) == 20_000
    assert st["tokens"] >= 20_000 - 0 or st["clusters_short_of_budget"] > 0
    assert "dedup_removed" in st and len(st["cluster_dedup_removed"]) == len(st["cluster_samples"])
    assert "token budgets" in result.output


def test_token_balance_needs_a_tokenizer(tmp_path, embedded, clustered):
    result = run_cli(["schedule", embedded, clustered, "--out", tmp_path / "x", "--dry-run", "--balance", "tokens"],
                     expect_ok=False)
    assert result.exit_code != 0 and "--balance tokens: needs --tokenizer" in result.output


def test_mixtures_write_n_schedules_with_their_weights(tmp_path, embedded, clustered):
    out = tmp_path / "mix"
    run_cli(["mixtures", embedded, clustered, "--out", out, "--dirichlet", 0.5, "--n", 3, "--samples", 80])
    weights = pq.read_table(out / "weights.parquet").to_pydict()
    assert sorted(set(weights["mixture"])) == [0, 1, 2]
    for i in range(3):
        sub = out / f"mixture-{i:03d}"
        assert pq.read_metadata(sub / "order.parquet").num_rows == 80
        assert manifest(sub)["settings"]["weights_digest"]
