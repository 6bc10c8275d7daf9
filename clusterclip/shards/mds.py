"""``mds``: MosaicML Streaming shards (``index.json`` + ``shard.NNNNN.mds``), written byte for byte
in the layout of ``streaming.MDSWriter`` (mosaicml-streaming 0.13, MDS version 2, no compression),
so ``streaming.StreamingDataset(local=DIR, shuffle=False)`` yields the samples in order.

Columns (MDS orders them by name): ``cluster`` int32, ``doc_id`` int64, ``input_ids``
``ndarray:uint16`` (``ndarray:int32`` above 65536 ids), ``repeat`` int32.

Shard file: uint32 sample count N, uint32[N + 1] absolute byte offsets of the samples (the last
one is the file size), the writer config as sorted-key JSON, then the samples. A sample is the
uint32 byte sizes of its variable-size columns (here only ``input_ids``) followed by each
column's bytes in name order; an ``ndarray:<dtype>`` value with a dynamic shape is one byte
``(ndim << 2) | shape-dtype code`` (0 uint8, 1 uint16, 2 uint32, 3 uint64: the smallest that holds
the length), the shape in that dtype, then the values. Offsets are uint32, so a shard stays
under 4 GiB.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from ..artifacts import write_bytes_atomic
from .base import HashedFile, ShardPlan, SingleFileWriter, file_record, sha256_of

INDEX = "index.json"
COLUMNS = {"cluster": "int32", "doc_id": "int64", "input_ids": None, "repeat": "int32"}  # input_ids set per vocab
MAX_SHARD_BYTES = 2**32 - 1


def ids_encoding(vocab_size: int) -> tuple[str, np.dtype]:
    return ("ndarray:uint16", np.dtype("<u2")) if vocab_size <= 1 << 16 else ("ndarray:int32", np.dtype("<i4"))


def config(vocab_size: int) -> dict:
    names = sorted(COLUMNS)
    enc = {**COLUMNS, "input_ids": ids_encoding(vocab_size)[0]}
    sizes = {"cluster": 4, "doc_id": 8, "input_ids": None, "repeat": 4}
    return {
        "version": 2,
        "format": "mds",
        "compression": None,
        "hashes": [],
        "size_limit": None,
        "column_names": names,
        "column_encodings": [enc[n] for n in names],
        "column_sizes": [sizes[n] for n in names],
    }


def _shape_code(lengths: np.ndarray) -> np.ndarray:
    """MDS shape-dtype code of each 1-D length: 0 uint8, 1 uint16, 2 uint32."""
    return np.where(lengths < 1 << 8, 0, np.where(lengths < 1 << 16, 1, 2)).astype(np.int64)


def sample_bytes(sizes: np.ndarray, itemsize: int) -> np.ndarray:
    """Encoded size of each sample: 4 (size header) + 4 + 8 + (1 + shape + values) + 4."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return 4 + 4 + 8 + 1 + (1 << _shape_code(sizes)) + sizes * itemsize + 4


class MDSWriter(SingleFileWriter):
    name = "mds"
    pattern = "shard.*.mds"

    def __init__(self, out_dir: Path, *, vocab_size: int, eos_id: int):
        super().__init__(out_dir, vocab_size=vocab_size, eos_id=eos_id)
        self.encoding, self.dtype = ids_encoding(vocab_size)
        self.config = config(vocab_size)
        self.config_bytes = json.dumps(self.config, sort_keys=True).encode("utf-8")
        self._file: HashedFile | None = None

    def files(self, k: int) -> list[Path]:
        return [self.dir / f"shard.{k:05d}.mds"]

    def final_files(self) -> list[Path]:
        return [self.dir / INDEX]

    def _layout(self, sizes: np.ndarray) -> tuple[int, np.ndarray]:
        n = len(sizes)
        head = 4 + 4 * (n + 1) + len(self.config_bytes)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(sample_bytes(sizes, self.dtype.itemsize), out=offsets[1:])
        offsets += head
        return int(offsets[-1]), offsets

    def expected_sizes(self, plan: ShardPlan, sizes: np.ndarray) -> list[int]:
        return [self._layout(sizes)[0]]

    def begin(self, plan: ShardPlan, sizes: np.ndarray) -> None:
        total, offsets = self._layout(sizes)
        if total > MAX_SHARD_BYTES:
            raise ValueError(f"an MDS shard must stay under 4 GiB (this one would be {total} bytes)")
        self._file = HashedFile(self.files(plan.index)[0])
        self._file.write(struct.pack("<I", len(sizes)))
        self._file.write(offsets.astype("<u4").tobytes())
        self._file.write(self.config_bytes)

    def write(self, tokens, sizes, doc_ids, clusters, repeats) -> None:
        toks = np.ascontiguousarray(tokens, dtype=self.dtype)
        raw = toks.tobytes()
        itemsize = self.dtype.itemsize
        sizes = np.asarray(sizes, dtype=np.int64)
        codes = _shape_code(sizes)
        shape_fmt = ("<B", "<H", "<I")
        pack = struct.pack
        parts = []
        pos = 0
        for n, code, d, c, r in zip(sizes.tolist(), codes.tolist(), doc_ids.tolist(), clusters.tolist(),
                                    repeats.tolist()):
            nbytes = n * itemsize
            ids_size = 1 + (1 << code) + nbytes
            parts.append(pack("<IiqB", ids_size, c, d, 4 | code))
            parts.append(pack(shape_fmt[code], n))
            parts.append(raw[pos : pos + nbytes])
            parts.append(pack("<i", r))
            pos += nbytes
        self._file.write(b"".join(parts))


    def finish(self, shard_records: list[dict]) -> list[dict]:
        shards = []
        for rec in shard_records:
            f = rec["files"][0]
            entry = {
                "samples": rec["samples"],
                "raw_data": {"basename": Path(f["path"]).name, "bytes": f["bytes"], "hashes": {}},
                "zip_data": None,
            }
            entry.update(self.config)
            shards.append(entry)
        data = json.dumps({"version": 2, "shards": shards}, sort_keys=True).encode("utf-8")
        path = self.dir / INDEX
        self.dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)
        return [file_record(self.out_dir, path, len(data), sha256_of(path))]


def read_sample(out_dir: Path, record: dict, j: int, eos_id: int) -> np.ndarray:
    """Sample ``j`` of a shard, decoded from the MDS layout (``input_ids`` column)."""
    path = Path(out_dir) / record["files"][0]["path"]
    with open(path, "rb") as f:
        (n,) = struct.unpack("<I", f.read(4))
        if j >= n:
            raise IndexError(f"sample {j} not in {path} ({n} samples)")
        f.seek(4 + 4 * j)
        begin, end = struct.unpack("<II", f.read(8))
        # the config follows the offsets
        f.seek(4 + 4 * (n + 1))
        cfg_text = f.read(begin - (4 + 4 * (n + 1))) if j == 0 else None
        f.seek(begin)
        data = f.read(end - begin)
    return decode_sample(data, _columns_of(path, cfg_text))["input_ids"]


def _columns_of(path: Path, cfg_text: bytes | None) -> dict:
    if cfg_text is None:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<I", f.read(4))
            (first,) = struct.unpack("<I", f.read(4))
            f.seek(4 + 4 * (n + 1))
            cfg_text = f.read(first - (4 + 4 * (n + 1)))
    return json.loads(cfg_text)


_SCALARS = {"int32": "<i4", "int64": "<i8", "uint16": "<u2", "uint32": "<u4", "int8": "<i1", "uint8": "<u1",
            "float32": "<f4", "float64": "<f8"}
_SHAPE_DTYPES = {0: "<u1", 1: "<u2", 2: "<u4", 3: "<u8"}


def decode_sample(data: bytes, cfg: dict) -> dict:
    """Decode one MDS sample (scalar and ``ndarray:<dtype>`` columns) from its bytes."""
    names, encs, sizes = cfg["column_names"], cfg["column_encodings"], cfg["column_sizes"]
    n_var = sum(s is None for s in sizes)
    var_sizes = list(struct.unpack_from(f"<{n_var}I", data, 0))
    pos = 4 * n_var
    out = {}
    for name, enc, size in zip(names, encs, sizes):
        if size is None:
            size = var_sizes.pop(0)
        chunk = data[pos : pos + size]
        pos += size
        if enc.startswith("ndarray:"):
            dtype = _SCALARS[enc.split(":")[1]]
            byte = chunk[0]
            ndim, sd = byte >> 2, byte & 3
            sd_size = 1 << sd
            shape = np.frombuffer(chunk, dtype=_SHAPE_DTYPES[sd], count=ndim, offset=1)
            out[name] = np.frombuffer(chunk, dtype=dtype, offset=1 + ndim * sd_size).reshape(tuple(shape))
        else:
            out[name] = np.frombuffer(chunk, dtype=_SCALARS[enc])[0]
    return out
