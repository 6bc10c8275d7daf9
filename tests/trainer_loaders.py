"""Each trainer's loader over a schedule output, as spans of the stream it yields.

A loader yields batches; every token of a batch (input or target) lies at a known place of the
stream (the samples of the order, concatenated). :func:`never_yielded` counts the stream tokens
that no batch holds. The real package reads where it installs here (OLMo-core, datatrove,
megatron-core, ``datasets``; MosaicML streaming and litdata in ``.venv-mds``); llm.c and
modded-nanogpt are written from their published loaders (``llmc/dataloader.h``,
``train_gpt.py``: ``_load_data_shard``, ``Shard.next_batch``, ``distributed_data_generator``),
nanoGPT's is the README's sequential ``get_batch``. Every loader's batches are checked token for
token against the stream before they are counted.
"""

from __future__ import annotations

import glob
import json
import math
import subprocess
from pathlib import Path

import numpy as np

from clusterclip.shards import read_index, read_stream


class Stream:
    """The stream of a schedule output (read back from ``fmt``) and where each shard's own tokens lie in it."""

    def __init__(self, out: Path, fmt: str):
        self.out = Path(out)
        self.index = read_index(out)
        self.tokens, self.starts = read_stream(out, fmt, self.index)
        self.total = len(self.tokens)
        self.shards = self.index["shards"][fmt]
        self.seen = np.zeros(self.total, dtype=bool)

    def file_span(self, k: int, a: int, b: int, got: np.ndarray | None = None) -> None:
        """Tokens ``[a, b)`` of shard file ``k`` were yielded (``got``: what the loader returned there)."""
        rec = self.shards[k]
        own_b = min(b, rec["tokens"])
        if got is not None:
            got = np.asarray(got, dtype=np.int64)
            assert len(got) == b - a, (len(got), a, b)
            if own_b > a:
                assert np.array_equal(got[: own_b - a], self.tokens[rec["start_token"] + a: rec["start_token"] + own_b])
        if own_b > a:
            self.seen[rec["start_token"] + a: rec["start_token"] + own_b] = True

    def stream_span(self, a: int, b: int, got: np.ndarray | None = None) -> None:
        """Stream tokens ``[a, b)`` were yielded (beyond the end: padding)."""
        own_b = min(b, self.total)
        if got is not None and own_b > a:
            assert np.array_equal(np.asarray(got[: own_b - a], dtype=np.int64), self.tokens[a:own_b])
        if own_b > a:
            self.seen[a:own_b] = True

    def sample_span(self, i: int, got: np.ndarray, limit: int | None = None) -> None:
        """Sample ``i`` was yielded (its first ``limit`` tokens when the loader truncates)."""
        a = int(self.starts[i])
        b = int(self.starts[i + 1]) if i + 1 < len(self.starts) else self.total
        if limit is not None:
            b = min(b, a + limit)
        self.stream_span(a, b, got)

    def never_yielded(self) -> int:
        return int(self.total - np.count_nonzero(self.seen))


def shard_paths(out: Path, pattern: str) -> list[str]:
    return sorted(glob.glob(str(Path(out) / pattern)))


# --------------------------------------------------------------------------- llm.c
def llmc(out: Path, B: int, T: int, processes: int) -> Stream:
    """``llmc/dataloader.h`` with shuffling off, every rank: per file ``(ntok - 1) // (P·B·T)``
    steps; at each step rank ``r`` reads ``B·T + 1`` tokens at ``step·P·B·T + r·B·T``."""
    s = Stream(out, "bin")
    total = processes * B * T
    files = shard_paths(out, "bin/train_*.bin")
    for f in files:  # dataloader_init checks every file first
        h = np.fromfile(f, dtype="<i4", count=256)
        assert (int(h[0]), int(h[1])) in ((20240520, 1), (20240801, 7)), "Bad magic / version"
        if int(h[2]) < total + 1:
            raise AssertionError(f"{f}: assert(shard_ntok >= num_processes * B * T + 1) fails ({int(h[2])} tokens)")
    for k, f in enumerate(files):
        h = np.fromfile(f, dtype="<i4", count=256)
        tokens = np.fromfile(f, dtype=np.uint16 if h[1] == 1 else np.uint32, offset=1024)
        for step in range((len(tokens) - 1) // total):
            for r in range(processes):
                a = step * total + r * B * T
                s.file_span(k, a, a + B * T + 1, tokens[a: a + B * T + 1])
    return s


# --------------------------------------------------------------------------- modded-nanogpt
#: train_gpt.py: per-rank document table rows for the batch sizes of its schedule
TRAIN_MAX_NUM_DOCS = {16384: 64, 32768: 96, 49152: 128}


def modded_nanogpt(out: Path, num_tokens: int, max_seq_len: int, world_size: int, bos_id: int,
                   max_num_docs: dict | None = None) -> Stream:
    """``distributed_data_generator(align_to_bos=True)`` of ``train_gpt.py``, every rank, one pass.

    Its failures are kept: fewer than two files (``next(file_iter)`` for the second file raises
    ``StopIteration`` inside the generator) and a batch with more documents than its
    ``TRAIN_MAX_NUM_DOCS`` row: the shipped lines run on torch as they are (:func:`_doc_table`), so the
    error is torch's own ``RuntimeError``. After the last file the shipped code stops
    (``next_shard_getter`` is None): the end of the pass here.
    """
    s = Stream(out, "bin")
    files = shard_paths(out, "bin/train_*.bin")
    if len(files) < 2:
        raise RuntimeError("generator raised StopIteration (next(file_iter) for a second file)")
    local = num_tokens // world_size
    table = TRAIN_MAX_NUM_DOCS if max_num_docs is None else max_num_docs
    rows = table.get(local, math.ceil((local // 300) / 128) * 128)
    for k, f in enumerate(files):
        h = np.fromfile(f, dtype="<i4", count=256)
        assert h[0] == 20240520 and h[1] == 1, "magic number mismatch / unsupported version"
        tokens = np.fromfile(f, dtype=np.uint16, offset=1024)
        assert len(tokens) == int(h[2])
        bos = np.flatnonzero(tokens == bos_id)
        n, i = len(bos), 0
        while True:
            idx, spans = i, []
            try:
                for _r in range(world_size):
                    cur_len, rank_spans = 0, []
                    while cur_len <= local:
                        if idx >= n:
                            raise StopIteration
                        cur = int(bos[idx])
                        idx += 1
                        end = min(int(bos[idx]) if idx < n else len(tokens), cur + max_seq_len,
                                  cur + local - cur_len + 1)
                        rank_spans.append((cur, end))
                        cur_len += end - cur
                    spans.append(rank_spans)
            except StopIteration:  # "Insufficient BOS ahead; hit tail of shard": the next file
                break
            i = idx
            for rank_spans in spans:
                _doc_table(rank_spans, local, rows)
                for a, b in rank_spans:
                    s.file_span(k, a, b, tokens[a:b])
    return s


def _doc_table(rank_spans: list[tuple[int, int]], num_tokens_local: int, max_num_docs: int):
    """The document table ``distributed_data_generator`` builds for one rank's batch (``align_to_bos``),
    its lines as shipped: more documents than ``max_num_docs - 1`` raise torch's ``RuntimeError``."""
    import torch

    start_idxs = torch.tensor([a for a, _ in rank_spans])
    end_idxs = torch.tensor([b for _, b in rank_spans])
    end_idxs[-1] -= 1  # last document was too long to account for _targets offset
    cum_lengths = (end_idxs - start_idxs).cumsum(0)
    _cum_lengths = torch.full((max_num_docs,), num_tokens_local)
    _cum_lengths[0] = 0
    _cum_lengths[1:len(cum_lengths) + 1] = cum_lengths
    return _cum_lengths


# --------------------------------------------------------------------------- nanoGPT
def nanogpt(out: Path, batch_size: int, block_size: int) -> Stream:
    """The README's sequential ``get_batch`` over the one ``raw`` file, one pass of ``n_steps``."""
    s = Stream(out, "raw")
    files = shard_paths(out, "raw/tokens_*.bin")
    assert len(files) == 1
    data = np.memmap(files[0], dtype=np.dtype(s.index["format_info"]["raw"]["token_dtype"]), mode="r")
    n_steps = (len(data) - 1) // (batch_size * block_size)
    for step in range(n_steps):
        for b in range(batch_size):
            i = step * batch_size * block_size + b * block_size
            s.file_span(0, i, i + block_size + 1, data[i: i + block_size + 1])
    return s


# --------------------------------------------------------------------------- OLMo-core
def olmo_core(out: Path, sequence_length: int, global_batch_size: int, work_dir: Path) -> Stream:
    """``NumpyFSLDataset`` + ``NumpyFSLDataLoader(shuffle=False)`` of ai2-olmo-core, one epoch."""
    from olmo_core.data import DataCollator, NumpyFSLDataLoader
    from olmo_core.data.numpy_dataset import NumpyFSLDataset

    s = Stream(out, "raw")
    info = s.index
    dtype = np.dtype(info["format_info"]["raw"]["token_dtype"])
    paths = shard_paths(out, "raw/tokens_*.bin")
    ds = NumpyFSLDataset(*paths, sequence_length=sequence_length, pad_token_id=info["pad_id"],
                         eos_token_id=info["eos_id"], vocab_size=info["vocab_size"], dtype=dtype.type)
    ds.work_dir = Path(work_dir)
    loader = NumpyFSLDataLoader(ds, collator=DataCollator(pad_token_id=info["pad_id"]),
                                global_batch_size=global_batch_size, work_dir=work_dir, shuffle=False)
    loader.reshuffle(epoch=1)
    per_file = [Path(p).stat().st_size // dtype.itemsize // sequence_length for p in paths]
    first = np.cumsum([0] + per_file)
    for batch in loader:
        for idx, ids in zip(batch["index"].tolist(), batch["input_ids"]):
            k = int(np.searchsorted(first, idx, side="right")) - 1
            a = (idx - int(first[k])) * sequence_length
            s.file_span(k, a, a + sequence_length, ids.numpy())
    return s


# --------------------------------------------------------------------------- nanotron / datatrove
def datatrove(out: Path, seq_len: int) -> Stream:
    """``DatatroveFolderDataset(shuffle=False)``: per file ``len // (seq_len + 1)`` windows that do not overlap."""
    from datatrove.utils.dataset import DatatroveFolderDataset

    s = Stream(out, "datatrove")
    token_size = s.index["format_info"]["datatrove"]["token_size"]
    ds = DatatroveFolderDataset(str(out / "datatrove"), seq_len=seq_len, token_size=token_size, shuffle=False)
    lens = ds.lens
    for i in range(len(ds)):
        k = int(np.searchsorted(lens, i, side="right")) - 1
        a = (i - lens[k]) * (seq_len + 1)
        s.file_span(k, a, a + seq_len + 1, np.asarray(ds[i]["input_ids"]))
    return s


# --------------------------------------------------------------------------- Megatron, Hugging Face
def megatron(out: Path) -> Stream:
    """megatron-core ``IndexedDataset`` per prefix, read in order (sample ``i`` = order position ``i``)."""
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    s = Stream(out, "megatron")
    prefixes = sorted(p[:-4] for p in glob.glob(str(out / "megatron" / "shard_*.idx")))
    data = torch.utils.data.ConcatDataset([IndexedDataset(p) for p in prefixes])
    for i, sample in enumerate(torch.utils.data.DataLoader(data, batch_size=None, shuffle=False)):
        s.sample_span(i, np.asarray(sample))
    return s


def hf_datasets(out: Path, cache: Path) -> Stream:
    """``datasets.load_dataset("parquet")`` read in order: a row per sample, or ``--pack L`` rows."""
    from datasets import load_dataset

    s = Stream(out, "parquet")
    files = shard_paths(out, "parquet/part-*.parquet")
    ds = load_dataset("parquet", data_files=files, split="train", cache_dir=str(cache))
    L = s.index["pack"]
    for i, ids in enumerate(ds["input_ids"]):
        if L:
            s.stream_span(i * L, (i + 1) * L, np.asarray(ids))
        else:
            s.sample_span(i, np.asarray(ids))
    return s


# --------------------------------------------------------------------------- in .venv-mds
FOUNDRY = """
import json, sys
import numpy as np, torch
from streaming import StreamingDataset
from torch.utils.data import DataLoader

class StreamingTextDataset(StreamingDataset):
    # llmfoundry/data/text_data.py: __getitem__ and _read_binary_tokenized_sample, pretokenized rows
    def __init__(self, max_seq_len, **kw):
        super().__init__(**kw)
        self.max_seq_len = max_seq_len

    def __getitem__(self, idx):
        sample = super().__getitem__(idx)
        if "tokens" not in sample:
            raise RuntimeError("StreamingTextDataset needs samples to have a `text` or `tokens` column")
        if isinstance(sample["tokens"], np.ndarray):
            return torch.from_numpy(sample["tokens"][: self.max_seq_len].copy()).to(torch.int64)
        return torch.from_numpy(np.frombuffer(sample["tokens"], dtype=np.int64)[: self.max_seq_len].copy())

d, max_seq_len, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ds = StreamingTextDataset(max_seq_len, local=d, shuffle=False, batch_size=batch)
loader = DataLoader(ds, batch_size=batch, drop_last=True, collate_fn=list)  # Foundry's train loaders: drop_last
print(json.dumps([[int(x) for x in row] for b in loader for row in b]))
"""

LITDATA = """
import json, sys
from litdata import StreamingDataLoader, StreamingDataset, index_parquet_dataset
from litdata.streaming.item_loader import ParquetLoader

def main(d, workers, batch):
    index_parquet_dataset(d)
    with open(d + "/index.json") as f:
        index = json.load(f)
    index["chunks"].sort(key=lambda chunk: chunk["filename"])
    with open(d + "/index.json", "w") as f:
        json.dump(index, f)
    ds = StreamingDataset(d, item_loader=ParquetLoader(), shuffle=False)
    loader = StreamingDataLoader(ds, batch_size=batch, num_workers=workers, multiprocessing_context="spawn",
                                 collate_fn=list)
    print(json.dumps([[int(r["doc_id"]), [int(x) for x in r["input_ids"]]] for b in loader for r in b]))

if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""


def _in_mds_env(py: str, code: str, args: list, cwd: Path) -> list:
    script = Path(cwd) / "reader.py"
    script.write_text(code, "utf-8")
    r = subprocess.run([py, str(script), *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd,
                       check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def llm_foundry(out: Path, py: str, max_seq_len: int, batch: int, cwd: Path) -> Stream:
    """MosaicML ``StreamingDataset`` read as LLM Foundry's ``StreamingTextDataset`` reads it (the
    ``tokens`` column, cut to ``max_seq_len``), through a ``DataLoader`` with ``drop_last=True``."""
    s = Stream(out, "mds")
    rows = _in_mds_env(py, FOUNDRY, [out / "mds", max_seq_len, batch], cwd)
    L = s.index["pack"]
    for i, row in enumerate(rows):
        if L:
            s.stream_span(i * L, i * L + len(row), np.asarray(row))
        else:
            s.sample_span(i, np.asarray(row), limit=max_seq_len)
    return s


def litdata(out: Path, py: str, workers: int, batch: int, cwd: Path) -> Stream:
    """litdata's ``StreamingDataLoader`` over the Parquet rows (index sorted by file name), spawned workers."""
    s = Stream(out, "parquet")
    rows = _in_mds_env(py, LITDATA, [out / "parquet", workers, batch], cwd)
    for i, (_doc, ids) in enumerate(rows):
        s.sample_span(i, np.asarray(ids))
    return s
