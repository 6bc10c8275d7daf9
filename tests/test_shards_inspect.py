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


def _flip_middle_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))


#: (format, file of the shard): every file a sample is read from, in every format of the fixture
SHARD_FILES = [("bin", 0), ("megatron", 0), ("megatron", 1), ("mds", 0), ("parquet", 0)]


@pytest.mark.parametrize("fmt, k", SHARD_FILES, ids=[f"{f}-{k}" for f, k in SHARD_FILES])
def test_a_damaged_shard_is_refused_never_shown(built, tmp_path, fmt, k):
    """A same-size flipped byte in a shard file: `inspect --sample` refuses in one line naming the file,
    in every format (bin and megatron used to print the wrong tokens and exit 0)."""
    import shutil

    from helpers import assert_one_line_error, invoke

    record = built.index["shards"][fmt][1]
    assert len(record["files"]) == (2 if fmt == "megatron" else 1)
    rel = record["files"][k]["path"]
    out = tmp_path / "out"
    shutil.copytree(built.out, out)
    _flip_middle_byte(out / rel)
    code, output = invoke(["inspect", out, "--sample", record["start"], "--format", fmt])
    assert_one_line_error(code, output, rel, "sha256")
    code, output = invoke(["inspect", out, "--sample", record["start"]])  # all formats: refused as well
    assert_one_line_error(code, output, rel)


_PEAK = """
import sys, json, numpy as np, pyarrow as pa
from clusterclip.shards import read_sample
index = json.loads(open(sys.argv[2]).read())
tokens = read_sample(sys.argv[1], "parquet", int(sys.argv[3]), index)
print(json.dumps({"peak": pa.default_memory_pool().max_memory(), "tokens": tokens.tolist()}))
"""


def _packed_rows(lengths, L):
    """Rows of ``L`` tokens over samples of ``lengths`` (token value = 1000 * sample + offset), the last row padded
    (position -1)."""
    pad = -sum(lengths) % L
    stream = np.concatenate([1000 * s + np.arange(n) for s, n in enumerate(lengths)] + [np.zeros(pad, np.int64)])
    owner = np.concatenate([np.repeat(np.arange(len(lengths)), lengths), np.full(pad, -1)])
    rows = {"input_ids": [], "cu_seqlens": [], "positions": [], "doc_ids": []}
    for r in range(len(stream) // L):
        toks, own = stream[r * L:(r + 1) * L], owner[r * L:(r + 1) * L]
        cuts = np.concatenate([[0], np.flatnonzero(np.diff(own)) + 1, [L]])
        rows["input_ids"].append(toks.astype(np.int32))
        rows["cu_seqlens"].append(cuts.astype(np.int32))
        rows["positions"].append(own[cuts[:-1]].astype(np.int64))
        rows["doc_ids"].append(own[cuts[:-1]].astype(np.int64))
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("packed", [False, True])
def test_inspect_reads_one_parquet_row_group_not_the_shard(tmp_path, packed):
    """`inspect --sample N` on a Parquet shard decodes only the row groups that hold the sample: the arrow
    memory peak of the read stays far below the shard's tokens (it read the whole shard: 1.4 GB on a real one)."""
    import subprocess
    import sys

    from clusterclip.shards.parquet import schema

    n, per = 8192, 1000
    lengths = [per + (s % 7) for s in range(n)]
    if packed:
        rows = _packed_rows(lengths, 512)
        n_rows = len(rows["input_ids"])
        table = pa.table({k: pa.array(v, type=schema(True).field(k).type) for k, v in rows.items()})
        n_samples = n
    else:
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        values = (np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths) + np.repeat(1000 * np.arange(n), lengths))
        table = pa.table({"input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.astype(np.int32))),
                          "doc_id": pa.array(np.arange(n)), "cluster": pa.array(np.zeros(n, np.int32)),
                          "repeat": pa.array(np.zeros(n, np.int32))}, schema=schema(False))
        n_rows = n_samples = n
    (tmp_path / "parquet").mkdir()
    pq.write_table(table, tmp_path / "parquet" / "part-000000.parquet", row_group_size=n_rows // 64,
                   compression="zstd")
    record = {"index": 0, "start": 0, "stop": n_samples, "first_offset": 0, "samples": n_samples,
              "files": [{"path": "parquet/part-000000.parquet"}]}
    index = {"n_samples": n_samples, "shards": {"parquet": [record]}, "eos_id": None}
    (tmp_path / "index.json").write_text(json.dumps(index))
    shard_bytes = table.column("input_ids").nbytes
    for position in (0, n_samples // 2 + 1, n_samples - 1):
        res = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path), str(tmp_path / "index.json"), str(position)],
                             capture_output=True, text=True, check=True)
        got = json.loads(res.stdout)
        assert got["tokens"] == (1000 * position + np.arange(lengths[position])).tolist()
        assert got["peak"] < shard_bytes / 4, (got["peak"], shard_bytes)
