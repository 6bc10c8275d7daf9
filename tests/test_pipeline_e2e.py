"""End to end through the CLI: embed -> cluster -> schedule on a small real corpus."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from helpers import SMALL_N_DOCS, run_cli, same_but_cache_record, tree_bytes

EOS = "<|endoftext|>"


def read_llmc_bin(path: Path) -> np.ndarray:
    """A reader written from llm.c's published layout: 256 int32 header, then the tokens."""
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] in (20240520, 20240801), "bad magic"
    dtype = np.uint16 if header[1] == 1 else np.uint32
    tokens = np.fromfile(path, dtype=dtype, offset=1024)
    assert len(tokens) == header[2]
    return tokens


def texts_by_doc_id(emb: Path, corpus: Path) -> list[str]:
    lines = corpus.read_text("utf-8").splitlines()
    docs = pq.read_table(emb / "docs.parquet").to_pydict()
    return [json.loads(lines[row])["text"] for row in docs["row"]]


def test_embed_artifacts_follow_the_spec(embedded, small_docs):
    docs = pq.read_table(embedded / "docs.parquet")
    schema = docs.schema
    assert schema.field("doc_id").type == pa.int64()
    assert schema.field("source").type == pa.string()
    assert schema.field("row").type == pa.int64()
    assert schema.field("n_chars").type == pa.int64()
    assert "id" in schema.names  # the user's --id-column
    assert docs.column("doc_id").to_pylist() == list(range(SMALL_N_DOCS))
    assert docs.column("id").to_pylist() == [d["id"] for d in small_docs]
    assert docs.column("n_chars").to_pylist() == [len(d["text"]) for d in small_docs]

    parts = sorted(glob.glob(str(embedded / "embeddings-*.npy")))
    emb = np.concatenate([np.load(p) for p in parts])
    assert emb.shape == (SMALL_N_DOCS, 384) and emb.dtype in (np.float16, np.float32)
    np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1.0, atol=2e-3)
    manifest = json.loads((embedded / "manifest.json").read_text())
    assert manifest["step"] == "embed" and manifest["statistics"]["n_docs"] == SMALL_N_DOCS


def test_cluster_artifacts_give_every_document_one_cluster(embedded, clustered):
    assign = pq.read_table(clustered / "assignments.parquet")
    assert assign.schema.field("doc_id").type == pa.int64()
    assert assign.schema.field("cluster").type == pa.int32()
    assert assign.schema.field("similarity").type == pa.float32()
    assert assign.column("doc_id").to_pylist() == list(range(SMALL_N_DOCS))
    labels = assign.column("cluster").to_numpy()
    centroids = np.load(clustered / "centroids.npy")
    assert centroids.dtype == np.float32 and centroids.shape == (5, 384)
    assert labels.min() >= 0 and labels.max() < 5
    clusters = pq.read_table(clustered / "clusters.parquet").to_pydict()
    sizes = dict(zip(clusters["cluster"], clusters["size"]))
    assert sum(sizes.values()) == SMALL_N_DOCS
    assert all(sizes.get(c, 0) == int((labels == c).sum()) for c in range(5))


def test_schedule_bin_shards_decode_to_the_ordered_documents(tmp_path, embedded, clustered, small_corpus,
                                                             demo_tokenizer):
    out = tmp_path / "sched"
    result = run_cli(["schedule", embedded, clustered, "--out", out, "--tokenizer", demo_tokenizer,
                      "--epochs", 2, "--max-repeats", 2, "--shard-tokens", 500, "--seed", 3])
    assert "samples" in result.output

    order = pq.read_table(out / "order.parquet")
    assert order.schema.field("position").type == pa.int64()
    assert order.schema.field("repeat").type == pa.int32()
    doc_ids = order.column("doc_id").to_numpy()
    assert len(doc_ids) == 2 * SMALL_N_DOCS
    assert np.bincount(doc_ids, minlength=SMALL_N_DOCS).max() <= 2  # the clip
    labels = pq.read_table(clustered / "assignments.parquet").column("cluster").to_numpy()
    np.testing.assert_array_equal(order.column("cluster").to_numpy(), labels[doc_ids])

    tok = Tokenizer.from_file(str(demo_tokenizer))
    eos = tok.token_to_id(EOS)
    texts = texts_by_doc_id(embedded, small_corpus)
    expected = np.concatenate([tok.encode(texts[d], add_special_tokens=False).ids + [eos] for d in doc_ids])
    shards = sorted(glob.glob(str(out / "bin" / "*.bin")))
    assert len(shards) > 1, "small --shard-tokens must give several shards"
    got = np.concatenate([read_llmc_bin(Path(p)) for p in shards])
    np.testing.assert_array_equal(got, expected)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["statistics"]["samples"] == 2 * SMALL_N_DOCS
    assert manifest["statistics"]["tokens"] == len(expected)
    # which encoder wrote the tokens, and why (the demo tokenizer is a GPT-2 byte-level BPE)
    assert manifest["statistics"]["tokenizer_backend"] == "gigatoken"
    assert manifest["statistics"]["tokenizer_backend_reason"] == "in the fast path's allow-list (gpt2 family)"


def test_same_seed_gives_byte_identical_outputs(tmp_path, embedded, clustered, demo_tokenizer):
    def run(name, seed):
        out = tmp_path / name
        run_cli(["schedule", embedded, clustered, "--out", out, "--tokenizer", demo_tokenizer,
                 "--samples", 150, "--seed", seed, "--format", "bin,parquet", "--shard-tokens", 800])
        return tree_bytes(out)

    a, b, c = run("a", 7), run("b", 7), run("c", 8)
    assert same_but_cache_record(a) == same_but_cache_record(b)  # b's tokens came from the token cache:
    assert json.loads(b["manifest.json"])["token_cache"]["reused"]  # its manifest says so, nothing else differs
    assert a["order.parquet"] != c["order.parquet"]


def test_dry_run_writes_order_and_statistics_without_shards(tmp_path, embedded, clustered):
    out = tmp_path / "plan"
    result = run_cli(["schedule", embedded, clustered, "--out", out, "--dry-run", "--sampler", "uniform",
                      "--samples", 400])
    assert (out / "order.parquet").exists() and (out / "manifest.json").exists()
    assert not (out / "bin").exists()
    assert pq.read_metadata(out / "order.parquet").num_rows == 400
    assert "400" in result.output


def test_clip_that_cannot_meet_the_budget_says_how_many_samples_were_possible(tmp_path, embedded, clustered):
    out = tmp_path / "too-many"
    result = run_cli(["schedule", embedded, clustered, "--out", out, "--dry-run", "--max-repeats", 2,
                      "--samples", 10 * SMALL_N_DOCS], expect_ok=False)
    assert result.exit_code != 0
    assert str(2 * SMALL_N_DOCS) in result.output
    assert "Traceback" not in result.output
    assert not (out / "order.parquet").exists()


def test_rerun_is_a_no_op_and_other_settings_are_refused(tmp_path, embedded, clustered):
    out = tmp_path / "rerun"
    args = ["schedule", embedded, clustered, "--out", out, "--dry-run", "--samples", 50]
    run_cli(args)
    before = (out / "order.parquet").read_bytes()
    again = run_cli(args)
    assert "already done" in again.output
    refused = run_cli(args[:-1] + ["60"], expect_ok=False)
    assert refused.exit_code != 0 and "--overwrite" in refused.output
    assert (out / "order.parquet").read_bytes() == before
    run_cli(args[:-1] + ["60", "--overwrite"])
    assert pq.read_metadata(out / "order.parquet").num_rows == 60


def test_config_file_supplies_options_and_flags_override_it(tmp_path, embedded, clustered):
    config = tmp_path / "c.toml"
    config.write_text('[schedule]\nsampler = "random"\nsamples = 30\ndry-run = true\n')
    out = tmp_path / "cfg"
    run_cli(["schedule", embedded, clustered, "--out", out, "--config", config, "--samples", 20])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["sampler"] == "random"
    assert manifest["settings"]["samples"] == 20 and manifest["settings"]["epochs"] is None
    assert manifest["settings"]["dry_run"] is True and manifest["statistics"]["samples"] == 20


@pytest.mark.parametrize("line, needle", [
    ("k = 4.7", "k = 4.7: must be a whole number"),
    ("k = true", "k = True: must be a whole number"),
    ('k = "8"', "k = '8': must be a whole number"),
    ("k = 0", "k = 0"),
    ("iters = 1e3", "must be a whole number"),
    ('init = "best"', "choose one of greedy-kmeans++"),
    ("kk = 3", "unknown option(s) for `clusterclip cluster`: kk"),
])
def test_config_values_have_the_flags_types_and_ranges(tmp_path, embedded, line, needle):
    """A config value is never coerced: what the flag would refuse, the config file may not give."""
    from helpers import assert_one_line_error, invoke

    config = tmp_path / "c.toml"
    config.write_text(f"[cluster]\n{line}\n")
    code, output = invoke(["cluster", embedded, "--out", tmp_path / "cl", "--config", config] +
                          ([] if line.startswith("k ") else ["--k", 3]))
    assert_one_line_error(code, output, needle, str(config))
    assert not (tmp_path / "cl").exists()


@pytest.mark.parametrize("sampler", ["random", "uniform", "clusterclip"])
def test_every_sampler_runs_through_the_cli(tmp_path, embedded, clustered, sampler):
    out = tmp_path / sampler
    run_cli(["schedule", embedded, clustered, "--out", out, "--dry-run", "--sampler", sampler, "--epochs", 1.5])
    order = pq.read_table(out / "order.parquet")
    assert order.num_rows == round(1.5 * SMALL_N_DOCS)
    if sampler == "random":  # the first epoch is a permutation of all documents
        first = order.column("doc_id").to_numpy()[:SMALL_N_DOCS]
        assert sorted(first) == list(range(SMALL_N_DOCS))
