"""`clusterclip inspect`: lists the shards and reads samples back through each format's layout."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from clusterclip.artifacts import build_manifest, file_record, write_json_atomic
from clusterclip.cli import cli
from clusterclip.inspect_shards import order_row, sample_report, summarize

from shards_testlib import build_all, stdlib_docstrings, train_tokenizer


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    texts = stdlib_docstrings(200)
    root = tmp_path_factory.mktemp("inspect")
    tok_file = train_tokenizer(root / "tokenizer.json", texts)
    b = build_all(root, tok_file, texts, n_samples=300, seed=5)
    pq.write_table(pa.table({"position": np.arange(len(b.doc_ids), dtype=np.int64), "doc_id": b.doc_ids,
                             "cluster": b.cluster, "repeat": b.repeat}), b.out / "order.parquet", row_group_size=64)
    files = ["order.parquet", "shards.json"] + [f["path"] for shards in b.index["shards"].values() for x in shards
                                                for f in x["files"]]
    files += [f["path"] for fs in (b.index.get("dataset_files") or {}).values() for f in fs]
    manifest = build_manifest("schedule", {"tokenizer": str(tok_file), "tokenizer_digest": b.tok.describe(),
                                           "dry_run": False}, {}, [file_record(b.out, f) for f in files],
                              {"samples": len(b.doc_ids)})
    write_json_atomic(b.out / "manifest.json", manifest)
    b.tok_file = tok_file
    return b


def test_summary(built):
    s = summarize(built.out)
    assert set(s["formats"]) == {"bin", "megatron", "mds", "parquet"}
    assert all(f["samples"] == len(built.doc_ids) and f["tokens"] == s["n_tokens"] for f in s["formats"].values())
    assert s["formats"]["megatron"]["files"] == 2 * s["n_shards"]
    assert s["formats"]["mds"]["files"] == s["n_shards"] + 1  # + index.json


def test_order_row_reads_one_row_group(built):
    for i in (0, 63, 64, 299):
        assert order_row(built.out, i) == {"doc_id": int(built.doc_ids[i]), "cluster": int(built.cluster[i]),
                                           "repeat": int(built.repeat[i])}


def test_sample_report_decodes_the_document(built):
    i = 150
    r = sample_report(built.out, i, decode=True)
    assert r["formats_agree"] and r["ends_with_eos"]
    assert r["tokens"]["bin"] == built.expected[i].tolist()
    assert r["text"] == built.texts[int(built.doc_ids[i])] + "<|endoftext|>"
    assert "warning" not in r


def test_cli_inspect(built):
    runner = CliRunner()
    res = runner.invoke(cli, ["inspect", str(built.out)])
    assert res.exit_code == 0, res.output
    assert "bin" in res.output and "megatron" in res.output and f"{len(built.doc_ids):,} samples" in res.output
    i = 7
    res = runner.invoke(cli, ["inspect", str(built.out), "--sample", str(i), "--decode", "--max-tokens", "0"])
    assert res.exit_code == 0, res.output
    d = int(built.doc_ids[i])
    assert f"sample {i}: doc_id {d}, cluster {built.cluster[i]}, repeat {built.repeat[i]}" in res.output
    assert "bin, megatron, mds, parquet agree" in res.output
    assert ", ".join(map(str, built.expected[i].tolist())) in res.output
    assert built.texts[d].splitlines()[0] in res.output
    res = runner.invoke(cli, ["inspect", str(built.out), "-s", "3", "--format", "mds", "--json",
                              "--tokenizer", str(built.tok_file), "--decode"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert list(data["samples"][0]["tokens"]) == ["mds"]
    assert data["samples"][0]["tokens"]["mds"] == built.expected[3].tolist()


def test_cli_inspect_errors_are_one_line(built, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["inspect", str(built.out), "--sample", "100000"])
    assert res.exit_code == 2 and "out of range" in res.output and len(res.output.strip().splitlines()) == 1
    res = runner.invoke(cli, ["inspect", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no such directory" in res.output
