"""Every shard format read back by its owner's reader, token for token, in the order.

bin: a reader written here from llm.c's published layout (dev/data/data_common.py
write_datafile, llmc/dataloader.h); megatron: megatron-core's IndexedDataset; parquet:
pyarrow. (mds: tests/test_shards_mds.py, with the real StreamingDataset.)
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pytest

from clusterclip.errors import InputError
from clusterclip.shards import plan_shards, read_sample, write_shards

from shards_testlib import ALL, big_vocab_tokenizer, build_all, stdlib_docstrings, train_tokenizer, tree_bytes


@pytest.fixture(scope="module")
def texts():
    return stdlib_docstrings(300)


@pytest.fixture(scope="module")
def small(tmp_path_factory, texts):
    root = tmp_path_factory.mktemp("small")
    return build_all(root, train_tokenizer(root / "tokenizer.json", texts), texts)


@pytest.fixture(scope="module")
def big(tmp_path_factory, texts):
    root = tmp_path_factory.mktemp("big")
    return build_all(root, big_vocab_tokenizer(root / "tokenizer.json", texts), texts, n_samples=300, seed=1)


# --------------------------------------------------------------------------- owners' readers
def llmc_read(path: str) -> tuple[int, int, np.ndarray]:
    """llm.c's layout: 256 int32 header (magic, version, ntok), then uint16 (v1) / uint32 (v7) tokens."""
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(256 * 4), dtype="<i4")
        magic, version, ntok = (int(x) for x in header[:3])
        assert (magic, version) in {(20240520, 1), (20240801, 7)}, "bad magic/version"
        dtype = "<u2" if magic == 20240520 else "<u4"
        data = np.frombuffer(f.read(), dtype=dtype)
    assert len(data) == ntok > 0, "file size must match the header's token count"
    assert not header[3:].any()
    return magic, version, data


def megatron_read(directory: Path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    prefixes = sorted(p[: -len(".idx")] for p in glob.glob(str(directory / "*.idx")))
    samples, dtypes = [], set()
    for prefix in prefixes:
        ds = IndexedDataset(prefix)
        assert np.array_equal(ds.document_indices, np.arange(len(ds) + 1))  # one document per sequence
        dtypes.add(np.dtype(ds.index.dtype))
        # copy: the arrays are views into a memory map that IndexedDataset closes when collected
        samples.extend(np.array(ds[i], copy=True) for i in range(len(ds)))
        # contiguous slice access (what GPTDataset uses) agrees
        if len(ds) > 2:
            assert all(np.array_equal(a, np.asarray(ds[i])) for i, a in enumerate(ds[0:3]))
    return prefixes, samples, dtypes


def parquet_read(directory: Path):
    import pyarrow.parquet as pq

    files = sorted(glob.glob(str(directory / "*.parquet")))
    tables = [pq.read_table(f) for f in files]
    return files, tables


# --------------------------------------------------------------------------- tests
def test_several_shards_and_names_sort_in_order(small):
    n = small.index["n_shards"]
    assert n >= 4
    for fmt in ALL:
        recs = small.index["shards"][fmt]
        assert [r["index"] for r in recs] == list(range(n))
        paths = [f["path"] for r in recs for f in r["files"]]
        assert paths == sorted(paths)
        assert sum(r["samples"] for r in recs) == len(small.doc_ids)
        starts = [r["first_sample"] for r in recs]
        assert starts == [0] + list(np.cumsum([r["samples"] for r in recs])[:-1])
    # same boundaries in every format, each shard within the budget
    for recs in zip(*(small.index["shards"][f] for f in ALL)):
        assert len({(r["first_sample"], r["samples"], r["tokens"]) for r in recs}) == 1
        assert recs[0]["tokens"] <= small.shard_tokens


def test_bin_read_by_llmc_layout(small):
    files = sorted(glob.glob(str(small.out / "bin" / "*.bin")))
    assert len(files) == small.index["n_shards"]
    stream = []
    for f in files:
        magic, version, data = llmc_read(f)
        assert (magic, version) == (20240520, 1) and data.dtype == np.uint16
        assert data[-1] == small.tok.eos_id  # a shard ends at a sample boundary
        stream.append(data)
    assert np.array_equal(np.concatenate(stream), np.concatenate(small.expected))


def test_bin_read_like_modded_nanogpt(small):
    """modded-nanogpt's _load_data_shard: torch.from_file header, asserts, readinto a uint16 tensor."""
    import torch

    stream = []
    for file in sorted((small.out / "bin").glob("train_*.bin")):
        header = torch.from_file(str(file), False, 256, dtype=torch.int32)
        assert header[0] == 20240520, "magic number mismatch in the data .bin file"
        assert header[1] == 1, "unsupported version"
        num_tokens = int(header[2])
        with file.open("rb", buffering=0) as f:
            tokens = torch.empty(num_tokens, dtype=torch.uint16)
            f.seek(256 * 4)
            nbytes = f.readinto(tokens.numpy())
            assert nbytes == 2 * num_tokens, "number of tokens read does not match header"
        stream.append(tokens.numpy().copy())
    assert np.array_equal(np.concatenate(stream), np.concatenate(small.expected))


def test_megatron_read_by_indexed_dataset(small):
    prefixes, samples, dtypes = megatron_read(small.out / "megatron")
    assert len(prefixes) == small.index["n_shards"]
    assert dtypes == {np.dtype(np.uint16)}
    assert len(samples) == len(small.expected)
    for got, exp in zip(samples, small.expected):
        assert np.array_equal(got, exp)


def test_parquet_read_by_pyarrow(small):
    files, tables = parquet_read(small.out / "parquet")
    assert len(files) == small.index["n_shards"]
    import pyarrow as pa

    t = pa.concat_tables(tables)
    assert t.schema.field("input_ids").type == pa.list_(pa.int32())
    assert t.column("doc_id").to_numpy().tolist() == small.doc_ids.tolist()
    assert t.column("cluster").to_numpy().tolist() == small.cluster.tolist()
    assert t.column("repeat").to_numpy().tolist() == small.repeat.tolist()
    for got, exp in zip(t.column("input_ids").to_pylist(), small.expected):
        assert got == exp.tolist()


def test_own_readers_agree_for_every_position(small):
    for fmt in ALL:
        for i in range(0, len(small.expected), 37):
            assert np.array_equal(read_sample(small.out, fmt, i), small.expected[i]), (fmt, i)


def test_shards_json_checksums_match_files(small):
    import hashlib

    index = json.loads((small.out / "shards.json").read_text())
    assert index["n_tokens"] == sum(len(x) for x in small.expected)
    assert index["n_samples"] == len(small.expected)
    files = [f for fmt in ALL for r in index["shards"][fmt] for f in r["files"]]
    files += [f for fs in index["dataset_files"].values() for f in fs]
    on_disk = sorted(str(p.relative_to(small.out)) for p in small.out.rglob("*") if p.is_file())
    assert sorted(f["path"] for f in files) + ["shards.json"] == on_disk
    for f in files:
        data = (small.out / f["path"]).read_bytes()
        assert len(data) == f["bytes"] and hashlib.sha256(data).hexdigest() == f["sha256"]


def test_big_vocab_uses_32_bit_layouts(big):
    assert big.tok.vocab_size > 65536
    files = sorted(glob.glob(str(big.out / "bin" / "*.bin")))
    stream = []
    for f in files:
        magic, version, data = llmc_read(f)
        assert (magic, version) == (20240801, 7) and data.dtype == np.uint32
        stream.append(data)
    assert np.array_equal(np.concatenate(stream), np.concatenate(big.expected))
    assert np.concatenate(big.expected).max() > 65535
    _, samples, dtypes = megatron_read(big.out / "megatron")
    assert dtypes == {np.dtype(np.int32)}
    idx = sorted((big.out / "megatron").glob("*.idx"))[0].read_bytes()
    assert idx[:9] == b"MMIDIDX\x00\x00" and idx[17] == 4  # dtype code 4 = int32
    assert all(np.array_equal(a, b) for a, b in zip(samples, big.expected)) and len(samples) == len(big.expected)
    _, tables = parquet_read(big.out / "parquet")
    got = [x for t in tables for x in t.column("input_ids").to_pylist()]
    assert got == [x.tolist() for x in big.expected]
    assert json.loads((big.out / "mds" / "index.json").read_text())["shards"][0]["column_encodings"] == [
        "int32", "int64", "int32", "ndarray:int32"]  # cluster, doc_id, repeat, tokens


def _write(b, out, **kw):
    return write_shards(b.doc_ids, b.cluster, b.repeat, b.store, out, formats=ALL, shard_tokens=b.shard_tokens,
                        eos_id=b.tok.eos_id, vocab_size=b.tok.vocab_size, progress=False, **kw)


def _interrupt_at_commit(monkeypatch, cls, n: int):
    """Make the ``n``-th ``cls.commit`` raise KeyboardInterrupt (a kill between two shards)."""
    orig = cls.commit
    state = {"n": 0}

    def failing(self):
        state["n"] += 1
        if state["n"] == n:
            raise KeyboardInterrupt
        return orig(self)

    monkeypatch.setattr(cls, "commit", failing)
    return lambda: monkeypatch.setattr(cls, "commit", orig)


def test_resume_rewrites_damaged_kept_shards_and_is_byte_identical(small, tmp_path, monkeypatch):
    """Resume keeps a finished shard only if it re-hashes to its journaled digest: a missing
    shard, a same-size corrupted one and a half-written pair are all rewritten."""
    from clusterclip.shards import bin as bin_mod
    from clusterclip.shards import parquet as pq_mod

    out = tmp_path / "out"
    n = small.index["n_shards"]
    restore = _interrupt_at_commit(monkeypatch, pq_mod.ParquetFormat, n - 1)
    with pytest.raises(KeyboardInterrupt):
        _write(small, out)
    restore()
    assert (out / ".shards-journal.jsonl").is_file() and not (out / "shards.json").exists()
    (out / "bin" / "train_000000.bin").unlink()  # lost
    p = out / "megatron" / "shard_000001.bin"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF  # flipped byte, same size
    p.write_bytes(bytes(data))
    (out / "megatron" / "shard_000002.idx").unlink()  # a half-written pair
    (out / "bin" / ".train_000003.bin.abc.tmp").write_bytes(b"partial")  # leftover of a killed write
    calls = []
    orig = bin_mod.BinFormat.begin
    monkeypatch.setattr(bin_mod.BinFormat, "begin", lambda self, plan: calls.append(plan.index) or orig(self, plan))
    _write(small, out, resume=True)
    assert calls == [0, n - 1]  # bin: the lost shard and the one never committed (n - 2 was, before parquet's)
    assert tree_bytes(out) == tree_bytes(small.out)
    assert not (out / ".shards-journal.jsonl").exists()


def test_interrupted_write_resumes_byte_identical(small, tmp_path, monkeypatch):
    from clusterclip.shards import parquet as pq_mod

    out = tmp_path / "out"
    restore = _interrupt_at_commit(monkeypatch, pq_mod.ParquetFormat, 3)
    with pytest.raises(KeyboardInterrupt):
        _write(small, out)
    restore()
    assert not (out / "shards.json").exists()
    assert not list(out.rglob("*.tmp"))
    _write(small, out, resume=True)
    assert tree_bytes(out) == tree_bytes(small.out)


def test_plan_shards_properties():
    rng = np.random.default_rng(3)
    for _ in range(30):
        lengths = rng.integers(0, 50, size=40)
        order = rng.integers(0, 40, size=int(rng.integers(0, 300)))
        budget = int(rng.integers(1, 200))
        plans = plan_shards(order, lengths, budget)
        sizes = lengths[order] + 1
        assert sum(p.samples for p in plans) == len(order)
        pos = 0
        for p in plans:
            assert p.start == pos and p.stop > p.start
            assert p.tokens == sizes[p.start:p.stop].sum()
            assert p.tokens <= budget or p.samples == 1
            if p.stop < len(order):  # greedy: the next sample would not have fit
                assert p.tokens + sizes[p.stop] > budget
            pos = p.stop


def test_plan_shards_across_planning_chunks(monkeypatch):
    import clusterclip.shards.plan as sh  # where plan_shards reads it

    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 30, size=50)
    order = rng.integers(0, 50, size=1000)
    ref = plan_shards(order, lengths, 97)
    monkeypatch.setattr(sh, "PLAN_CHUNK", 7)
    assert plan_shards(order, lengths, 97) == ref


def test_oversized_document_gets_its_own_shard(small, tmp_path):
    big_doc = int(np.argmax(small.store.lengths))
    order = np.array([0, big_doc, 0], dtype=np.int64) if small.store.has(0) else np.array([big_doc] * 3)
    budget = int(small.store.lengths[big_doc])  # smaller than the sample (EOS makes it +1)
    idx = write_shards(order, np.zeros(3, np.int32), np.zeros(3, np.int32), small.store, tmp_path / "o",
                       formats=("bin",), shard_tokens=budget, eos_id=small.tok.eos_id,
                       vocab_size=small.tok.vocab_size, progress=False)
    assert [r["samples"] for r in idx["shards"]["bin"]][1] == 1


def test_document_missing_from_store_is_a_clear_error(small, tmp_path):
    missing = int(np.flatnonzero(np.asarray(small.store.lengths) < 0)[0])
    with pytest.raises(InputError, match=f"doc_id {missing} was never tokenized"):
        write_shards(np.array([missing]), np.zeros(1, np.int32), np.zeros(1, np.int32), small.store, tmp_path / "o",
                     formats=("bin",), shard_tokens=100, eos_id=small.tok.eos_id, vocab_size=small.tok.vocab_size,
                     progress=False)


def test_unknown_format_is_refused(small, tmp_path):
    with pytest.raises(InputError, match="--format"):
        write_shards(small.doc_ids, small.cluster, small.repeat, small.store, tmp_path / "o", formats=("tfrecord",),
                     eos_id=small.tok.eos_id, vocab_size=small.tok.vocab_size, progress=False)


def test_empty_order(small, tmp_path):
    e = np.zeros(0, np.int64)
    idx = write_shards(e, e, e, small.store, tmp_path / "o", formats=ALL, shard_tokens=100, eos_id=small.tok.eos_id,
                       vocab_size=small.tok.vocab_size, progress=False)
    assert idx["n_shards"] == 0 and all(v == [] for v in idx["shards"].values())
    assert json.loads((tmp_path / "o" / "mds" / "index.json").read_text()) == {"shards": [], "version": 2}
