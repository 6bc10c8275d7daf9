"""The shards read by each trainer's own loader (the real package where it installs here,
else a reader written from the trainer's published code), in its sequential mode.

For each: the stream it trains on equals the order token for token; with ``--align-tokens``
no token is dropped; with the trainer's delimiter convention the first sample is trained on.

Real packages (the ``readers`` extra): datasets, ai2-olmo-core, datatrove; megatron-core in
tests/test_shards_formats.py; in ``.venv-mds``: mosaicml-streaming (tests/test_shards_mds.py) and
litdata (here). Readers written
here: llm.c ``llmc/dataloader.h``, modded-nanogpt ``train_gpt.py`` (``_load_data_shard``,
``Shard.next_batch``, ``distributed_data_generator``), nanoGPT ``train.py`` ``get_batch``.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from clusterclip.shards import plan_shards, read_index, write_shards

from shards_testlib import stream_of, synthetic_store

EOT = 50256  # GPT-2's <|endoftext|>, modded-nanogpt's BOS_ID
VOCAB = 50257


def _docs(n_docs: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lens = rng.integers(0, 90, size=n_docs)
    return [rng.integers(0, EOT, size=n) for n in lens]


def _build(root: Path, formats, *, n_docs=40, n_samples=160, seed=0, **kw):
    docs = _docs(n_docs, seed)
    rng = np.random.default_rng([seed, 1])
    store = synthetic_store(root / "store", docs, VOCAB)
    order = rng.integers(0, n_docs, size=n_samples).astype(np.int64)
    out = root / "out"
    write_shards(order, (order % 3).astype(np.int32), np.zeros(n_samples, np.int32), store, out, formats=formats,
                 vocab_size=VOCAB, progress=False, **kw)
    stream, starts = stream_of(store, order, kw.get("bos_id"), kw.get("eos_id"))
    return out, order, stream, starts


# --------------------------------------------------------------------------- llm.c
def llmc_batches(pattern: str, B: int, T: int, num_processes: int = 1):
    """llm.c's DataLoader with should_shuffle = 0, rank 0 (llmc/dataloader.h, master)."""
    files = sorted(glob.glob(pattern))  # glob(3) returns sorted names
    total = num_processes * B * T
    for f in files:  # dataloader_init validates every shard
        header = np.fromfile(f, dtype="<i4", count=256)
        assert header[0] == 20240520 and header[1] == 1, "Bad magic / version in the data file"
        ntok = int(header[2])
        assert ntok >= total + 1, "assert(shard_ntok >= num_processes * B * T + 1)"
    for f in files:
        tokens = np.fromfile(f, dtype="<u2", offset=1024)
        assert len(tokens) == int(np.fromfile(f, dtype="<i4", count=3)[2])
        for idx in range((len(tokens) - 1) // total):  # shard_num_samples
            buf = tokens[idx * total: idx * total + B * T + 1].astype(np.int64)
            yield buf[:-1], buf[1:]


def test_llmc_reads_every_token_with_align_and_its_convention(tmp_path):
    B, T = 4, 16
    out, _order, stream, _starts = _build(tmp_path, ("bin",), shard_tokens=1000, bos_id=EOT, eos_id=None,
                                        align_tokens=B * T)
    batches = list(llmc_batches(str(out / "bin" / "train_*.bin"), B, T))
    inputs = np.concatenate([x for x, _ in batches])
    targets = np.concatenate([y for _, y in batches])
    assert len(read_index(out)["shards"]["bin"]) >= 3
    assert np.array_equal(inputs[: len(stream)], stream)  # every token, in order
    assert np.array_equal(targets[: len(stream) - 1], stream[1:])  # and the right next token, across files
    assert (inputs[len(stream):] == EOT).all() and len(inputs) - len(stream) < B * T
    assert inputs[0] == EOT and inputs[1] == stream[1]  # sample 0 begins the first sequence


def test_llmc_drops_shard_tails_without_align(tmp_path):
    """Today's whole-sample shards: llm.c skips each file's tail (what --align-tokens fixes)."""
    B, T = 4, 16
    out, _order, stream, _ = _build(tmp_path, ("bin",), shard_tokens=1000, eos_id=EOT)
    seen = sum(len(x) for x, _ in llmc_batches(str(out / "bin" / "train_*.bin"), B, T))
    assert seen < len(stream)


@settings(max_examples=60, deadline=None)
@given(vocab=st.sampled_from([VOCAB, 128_256]), shard_tokens=st.one_of(st.integers(1, 2**40), st.just(2**40)),
       align=st.one_of(st.none(), st.integers(1, 2**27)),
       lengths=st.lists(st.integers(0, 3 * 10**8), min_size=1, max_size=12))
@example(vocab=128_256, shard_tokens=2**40, align=None, lengths=[3 * 10**8] * 4)
@example(vocab=VOCAB, shard_tokens=2**40, align=2**20 + 3, lengths=[3 * 10**8] * 5)
def test_bin_files_stay_under_2_gib_for_their_token_width(vocab, shard_tokens, align, lengths):
    """llm.c seeks with an int offset: every bin file (header, look-ahead and padding included) stays
    below 2**31 bytes, so a uint32 (v7) file holds half the tokens of a uint16 (v1) one."""
    from clusterclip.shards import StreamLayout, plan_shards, shard_tokens_for, total_tokens
    from clusterclip.shards.bin import HEADER_BYTES, BinFormat, max_bin_tokens

    lens = np.asarray(lengths, dtype=np.int64)
    order = np.arange(len(lens), dtype=np.int64)
    layout = StreamLayout(vocab, EOT, None, EOT, align, None)
    total = total_tokens(order, lens, 1)
    assume(align is None or align <= total)  # else refused: the padding would outweigh the data
    used = shard_tokens_for(("bin",), layout, shard_tokens, total)
    cap = max_bin_tokens(vocab)
    assert cap == (2**31 - 1 - HEADER_BYTES) // BinFormat.token_dtype(vocab).itemsize
    assert cap in (1_073_741_311, 536_870_655)
    for p in plan_shards(order, lens, used, delimiters=1, align_tokens=align):
        assert HEADER_BYTES + p.file_tokens * BinFormat.token_dtype(vocab).itemsize < 2**31


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_docs=st.integers(2, 30), n_samples=st.integers(2, 80),
       shard_tokens=st.integers(1, 10**9))
def test_modded_nanogpt_convention_makes_at_least_two_files_and_no_more_than_needed(seed, n_docs, n_samples,
                                                                                   shard_tokens):
    """min_shards=2 (--convention modded-nanogpt): a stream below two shards is cut into exactly two
    files (its loader opens a second file before the first batch); a larger one keeps --shard-tokens."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out, order, stream, _ = _build(Path(tmp), ("bin",), n_docs=n_docs, n_samples=n_samples, seed=seed,
                                       shard_tokens=shard_tokens, bos_id=EOT, eos_id=None, min_shards=2)
        index = read_index(out)
        files = sorted((out / "bin").glob("train_*.bin"))
        plain = plan_shards(order, np.asarray([len(d) for d in _docs(n_docs, seed)]), shard_tokens, delimiters=1)
        if len(plain) >= 2:
            assert len(files) == len(plain) and index["shard_tokens"] == shard_tokens
        else:
            assert len(files) == 2 and index["shard_tokens_requested"] == shard_tokens
        got = np.concatenate([np.fromfile(f, dtype="<u2", offset=1024) for f in files])
        assert np.array_equal(got, stream)


# --------------------------------------------------------------------------- modded-nanogpt
def modded_nanogpt_sequences(pattern: str, num_tokens: int, max_seq_len: int, bos_id: int = EOT):
    """``distributed_data_generator(align_to_bos=True)`` on one rank: each step's documents as
    (shard, start, end) spans; ``Shard.next_batch`` starts every sequence at a BOS."""
    for file in sorted(glob.glob(pattern)):
        header = np.fromfile(file, dtype="<i4", count=256)
        assert header[0] == 20240520 and header[1] == 1
        tokens = np.fromfile(file, dtype="<u2", offset=1024)
        assert len(tokens) == int(header[2])
        bos_idx = np.flatnonzero(tokens == bos_id)
        i, n = 0, len(bos_idx)
        while True:
            starts, ends, cur_len, idx, exhausted = [], [], 0, i, False
            while cur_len <= num_tokens:
                if idx >= n:  # "Insufficient BOS ahead; hit tail of shard": the next shard
                    exhausted = True
                    break
                cur = int(bos_idx[idx])
                starts.append(cur)
                idx += 1
                end = min(int(bos_idx[idx]) if idx < n else len(tokens), cur + max_seq_len,
                          cur + num_tokens - cur_len + 1)
                ends.append(end)
                cur_len += end - cur
            if exhausted:
                break
            i = idx
            buf = np.concatenate([tokens[a:b] for a, b in zip(starts, ends)]).astype(np.int64)
            yield buf[:-1], buf[1:]


def test_modded_nanogpt_trains_on_sample_zero_only_with_bos(tmp_path):
    out, order, stream, starts = _build(tmp_path / "bos", ("bin",), shard_tokens=4000, bos_id=EOT, eos_id=None)
    first_x, _ = next(modded_nanogpt_sequences(str(out / "bin" / "train_*.bin"), 256, 128))
    sample0 = stream[: starts[1]]
    assert np.array_equal(first_x[: min(len(sample0), 128)], sample0[:128])  # sample 0 opens the first step
    out, _order, stream, starts = _build(tmp_path / "eos", ("bin",), shard_tokens=4000, eos_id=EOT)
    first_x, _ = next(modded_nanogpt_sequences(str(out / "bin" / "train_*.bin"), 256, 128))
    assert first_x[0] == EOT and not np.array_equal(first_x[1:6], stream[:5])  # EOS after: sample 0 is skipped


def _readme_section(title: str) -> str:
    from test_readme_snippets import README

    text = README.read_text("utf-8")
    start = text.index(f"\n{title}\n")
    return text[start: text.index("\n### ", start + 1)]


def test_modded_nanogpt_readme_snippet_finds_the_documents_by_the_bos_id_of_shards_json(tmp_path):
    """The README's listing takes BOS_ID from ``shards.json`` (here 1, not GPT-2's 50256) and finds
    where every document starts, as ``align_to_bos`` does."""
    import re

    docs = [np.random.default_rng(d).integers(3, 300, size=5 + d) for d in range(6)]
    store = synthetic_store(tmp_path / "store", docs, 300)
    order = np.array([0, 3, 5, 1, 2, 4, 0], dtype=np.int64)
    out = tmp_path / "OUT"
    write_shards(order, order.astype(np.int32), np.zeros(len(order), np.int32), store, out, formats=("bin",),
                 vocab_size=300, bos_id=1, eos_id=None, progress=False)
    _, starts = stream_of(store, order, 1, None)
    (code,) = re.findall(r"```python\n(.*?)```", _readme_section("### modded-nanogpt"), flags=re.DOTALL)
    scope: dict = {}
    exec(compile(code.replace("OUT/", f"{out}/"), "README modded-nanogpt", "exec"), scope)
    assert np.array_equal(scope["documents"], starts)


def test_readme_names_the_error_modded_nanogpt_raises_for_too_many_documents():
    """The README quotes the error of ``distributed_data_generator`` (its document table, run on torch as
    shipped) when a rank's batch holds more documents than its ``TRAIN_MAX_NUM_DOCS`` row."""
    import re

    import trainer_loaders as tl

    quoted = re.search(r"`RuntimeError: (The expanded size of the tensor \((\d+)\) must match the existing size) "
                       r"\(D\) at\s+non-singleton dimension 0`", _readme_section("### modded-nanogpt"))
    assert quoted, "the README's modded-nanogpt section names no RuntimeError"
    rows = int(quoted.group(2)) + 1
    assert rows == tl.TRAIN_MAX_NUM_DOCS[16384]
    spans = [(i * 200, i * 200 + 200) for i in range(rows + 6)]  # 70 documents of 200 tokens
    with pytest.raises(RuntimeError) as e:
        tl._doc_table(spans, 16384, rows)
    assert str(e.value).startswith(f"{quoted.group(1)} ({len(spans)}) at non-singleton dimension 0")
    assert len(tl._doc_table(spans[: rows - 1], 16384, rows)) == rows  # rows - 1 documents fit


# --------------------------------------------------------------------------- nanoGPT
def nanogpt_sequential_get_batch(path: Path, block_size: int, batch_size: int):
    """nanoGPT's get_batch with ``ix`` = consecutive windows instead of ``torch.randint`` (the
    README's edit): ``x = data[i:i+block_size]``, ``y = data[i+1:i+1+block_size]``."""
    data = np.memmap(path, dtype=np.uint16, mode="r")
    step = 0
    while (step + 1) * batch_size * block_size + 1 <= len(data):
        ix = [step * batch_size * block_size + b * block_size for b in range(batch_size)]
        x = np.stack([data[i:i + block_size].astype(np.int64) for i in ix])
        y = np.stack([data[i + 1:i + 1 + block_size].astype(np.int64) for i in ix])
        yield x, y
        step += 1


def test_nanogpt_reads_one_raw_train_bin(tmp_path):
    B, T = 4, 32
    out, _order, stream, _ = _build(tmp_path, ("raw",), shard_tokens=10**12, eos_id=EOT, align_tokens=B * T)
    files = sorted((out / "raw").glob("tokens_*.bin"))
    assert len(files) == 1
    xs = np.concatenate([x.reshape(-1) for x, _ in nanogpt_sequential_get_batch(files[0], T, B)])
    assert np.array_equal(xs[: len(stream)], stream) and (xs[len(stream):] == EOT).all()


# --------------------------------------------------------------------------- OLMo-core
def test_olmo_core_numpy_fsl_dataset_reads_raw_in_order(tmp_path):
    from olmo_core.data.numpy_dataset import NumpyFSLDataset

    seq = 64
    out, _order, stream, _ = _build(tmp_path, ("raw",), shard_tokens=900, eos_id=EOT, align_tokens=seq)
    paths = sorted(str(p) for p in (out / "raw").glob("tokens_*.bin"))
    assert len(paths) >= 3
    ds = NumpyFSLDataset(*paths, sequence_length=seq, pad_token_id=EOT, eos_token_id=EOT, vocab_size=VOCAB,
                         dtype=np.uint16)
    ds.work_dir = tmp_path / "olmo-work"
    got = np.concatenate([np.asarray(ds[i]["input_ids"], dtype=np.int64) for i in range(len(ds))])
    assert np.array_equal(got[: len(stream)], stream) and (got[len(stream):] == EOT).all()


# --------------------------------------------------------------------------- nanotron / datatrove
def test_datatrove_folder_dataset_reads_every_window(tmp_path):
    from datatrove.utils.dataset import DatatroveFolderDataset

    seq_len = 31  # windows of seq_len + 1 = 32 tokens that do not overlap
    out, _order, stream, _ = _build(tmp_path, ("datatrove",), shard_tokens=700, eos_id=EOT,
                                   align_tokens=seq_len + 1)
    ds = DatatroveFolderDataset(str(out / "datatrove"), seq_len=seq_len, token_size=2, shuffle=False,
                                return_positions=True)
    assert len(ds.files) == len(read_index(out)["shards"]["datatrove"]) >= 3
    got = [ds[i] for i in range(len(ds))]
    ids = np.concatenate([np.asarray(g["input_ids"]) for g in got])
    assert np.array_equal(ids[: len(stream)], stream) and (ids[len(stream):] == EOT).all()
    assert all(int(g["positions"][0]) == 0 for g in got)  # it read our .ds.index


# --------------------------------------------------------------------------- Hugging Face datasets
def test_hf_datasets_reads_rows_and_packed_rows_in_order(tmp_path):
    from datasets import load_dataset

    out, order, stream, starts = _build(tmp_path / "rows", ("parquet",), shard_tokens=900, eos_id=EOT)
    files = sorted(glob.glob(str(out / "parquet" / "part-*.parquet")))
    ds = load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    assert ds["doc_id"] == order.tolist()
    ends = np.append(starts[1:], len(stream))
    assert ds["input_ids"] == [stream[a:b].tolist() for a, b in zip(starts, ends)]

    L = 48
    out, order, stream, starts = _build(tmp_path / "packed", ("parquet",), shard_tokens=500, eos_id=EOT, pack=L)
    files = sorted(glob.glob(str(out / "parquet" / "part-*.parquet")))
    ds = load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf2"))
    rows = np.asarray(ds["input_ids"])
    assert rows.shape[1] == L
    flat = rows.reshape(-1)
    assert np.array_equal(flat[: len(stream)], stream) and (flat[len(stream):] == EOT).all()
    # document boundaries: every sample start falls on a cu_seqlens entry of its row
    bounds = {r * L + int(c) for r, cu in enumerate(ds["cu_seqlens"]) for c in cu[:-1]}
    assert set(starts.tolist()) <= bounds
    first_pos = [p[0] for p in ds["positions"]]
    assert first_pos == sorted(first_pos) and ds["positions"][0][0] == 0


# --------------------------------------------------------------------------- litdata
LITDATA_CHECK = """
import json, sys
from litdata import StreamingDataset, index_parquet_dataset
from litdata.streaming.item_loader import ParquetLoader
d = sys.argv[1]
index_parquet_dataset(d)
with open(d + "/index.json") as f:
    index = json.load(f)
listed = [c["filename"] for c in index["chunks"]]
index["chunks"].sort(key=lambda c: c["filename"])  # litdata lists the files in directory order
with open(d + "/index.json", "w") as f:
    json.dump(index, f)
ds = StreamingDataset(d, item_loader=ParquetLoader(), shuffle=False)
print(json.dumps({"listed": listed, "doc_ids": [int(ds[i]["doc_id"]) for i in range(len(ds))]}))
"""


@pytest.mark.slow
def test_litdata_reads_parquet_in_order_after_sorting_its_index(tmp_path):
    """litdata (in .venv-mds: it requires torchvision) with the README's index fix."""
    import subprocess

    from test_shards_mds import _env_python

    out, order, _stream, _starts = _build(tmp_path, ("parquet",), shard_tokens=400, eos_id=EOT)
    r = subprocess.run([_env_python(), "-c", LITDATA_CHECK, str(out / "parquet")], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(got["listed"]) >= 3
    assert got["doc_ids"] == order.tolist()


@pytest.mark.slow
@pytest.mark.parametrize("pack", [None, 48])
def test_llm_foundry_reads_the_tokens_column(tmp_path, pack):
    """MosaicML's StreamingDataset (in .venv-mds) read as LLM Foundry's StreamingTextDataset reads it:
    ``sample["tokens"]``, an ndarray cut to max_seq_len; every row in order, token for token."""
    import trainer_loaders as tl
    from test_shards_mds import _env_python

    out, _order, _stream, _starts = _build(tmp_path, ("mds",), shard_tokens=600, eos_id=EOT, pack=pack)
    info = read_index(out)
    assert json.loads((out / "mds" / "index.json").read_text())["shards"][0]["column_names"][-1] == "tokens"
    max_seq_len = pack or 64
    s = tl.llm_foundry(out, _env_python(), max_seq_len, 1, tmp_path)  # batch 1: drop_last drops nothing
    lengths = np.diff(np.append(s.starts, s.total))
    cut = 0 if pack else int(np.maximum(lengths - max_seq_len, 0).sum())
    assert s.never_yielded() == cut and len(info["shards"]["mds"]) >= 2


@pytest.mark.parametrize("conv,bos,eos", [("llm.c", EOT, None), ("modded-nanogpt", EOT, None), ("megatron", None, EOT)])
def test_conventions_name_the_trainers_delimiters(tmp_path, conv, bos, eos):
    from tokenizers import Tokenizer, models

    from clusterclip.tokens.tokenizer import load_tokenizer

    vocab = {f"t{i}": i for i in range(10)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.add_special_tokens(["<|endoftext|>"])
    path = tmp_path / "tok.json"
    tok.save(str(path))
    t = load_tokenizer(str(path), require_eos=False)
    t.set_delimiters(convention=conv)
    assert (t.bos_id, t.eos_id) == ((10 if bos else None), (10 if eos else None))
