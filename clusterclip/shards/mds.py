"""``mds``: MosaicML Streaming shards (``index.json`` + ``shard.NNNNN.mds``), written byte for byte
in the layout of ``streaming.MDSWriter`` (mosaicml-streaming 0.13, MDS version 2, no compression),
so ``streaming.StreamingDataset(local=DIR, shuffle=False, batch_size=B)`` yields the samples in order.

Columns (MDS orders them by name): ``cluster`` int32, ``doc_id`` int64, ``repeat`` int32,
``tokens`` ``ndarray:uint16`` (``ndarray:int32`` above 65536 ids). With ``--pack L``:
``cu_seqlens`` ``ndarray:int32``, ``doc_ids`` ``ndarray:int64``, ``positions`` ``ndarray:int64``,
``tokens`` (``L`` tokens) (see :mod:`clusterclip.shards.packing`). The token column is named
``tokens`` because that is the column LLM Foundry's ``StreamingTextDataset`` reads (an ``ndarray``
value: ``torch.from_numpy(tokens[:max_seq_len]).to(torch.int64)``); the other columns are extras it
ignores.

Shard file: uint32 sample count N, uint32[N + 1] absolute byte offsets of the samples (the last
one is the file size), the writer config as sorted-key JSON, then the samples. A sample is the
uint32 byte sizes of its variable-size columns followed by each column's bytes in name order;
an ``ndarray:<dtype>`` value with a dynamic shape is one byte ``(ndim << 2) | shape-dtype code``
(0 uint8, 1 uint16, 2 uint32, 3 uint64: the smallest that holds the length), the shape in that
dtype, then the values. Offsets are uint32, so a shard stays under 4 GiB. The samples are
spooled to a temporary file while the shard is written (the offsets come first).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import IO

import numpy as np

from ..artifacts import temp_file_beside, write_bytes_atomic
from .base import (
    HashedFile,
    ShardContent,
    ShardFormat,
    ShardPlan,
    file_record,
    sha256_of,
    uint16_or,
)
from .packing import RowPacker

INDEX = "index.json"
#: the token column: LLM Foundry's ``StreamingTextDataset`` reads ``sample["tokens"]``
TOKENS = "tokens"
MAX_SHARD_BYTES = 2**32 - 1


def config(vocab_size: int, packed: bool = False) -> dict:
    ids = "ndarray:" + MDSFormat.token_dtype(vocab_size).name
    if packed:
        enc = {"cu_seqlens": "ndarray:int32", "doc_ids": "ndarray:int64", "positions": "ndarray:int64",
               TOKENS: ids}
        sizes = dict.fromkeys(enc)
    else:
        enc = {"cluster": "int32", "doc_id": "int64", "repeat": "int32", TOKENS: ids}
        sizes = {"cluster": 4, "doc_id": 8, "repeat": 4, TOKENS: None}
    names = sorted(enc)
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


_SHAPE_FMT = ("<B", "<H", "<I")


def _ndarray(values: np.ndarray) -> bytes:
    """One 1-D ``ndarray:<dtype>`` value with a dynamic shape."""
    code = int(_shape_code(np.array([len(values)]))[0])
    return struct.pack("<B", 4 | code) + struct.pack(_SHAPE_FMT[code], len(values)) + values.tobytes()


class MDSFormat(ShardFormat):
    name = "mds"
    rank = 40
    pattern = "shard.*.mds"
    read_by = "MosaicML StreamingDataset / LLM Foundry (one row per sample, or --pack rows)"
    supports_pack = True

    @classmethod
    def token_dtype(cls, vocab_size: int) -> np.dtype:
        return uint16_or(vocab_size, "<i4")

    def __init__(self, out_dir, layout):
        super().__init__(out_dir, layout)
        self.packed = bool(layout.pack)
        self.config = config(layout.vocab_size, self.packed)
        self.config_bytes = json.dumps(self.config, sort_keys=True).encode("utf-8")
        self._spool: IO[bytes] | None = None

    @property
    def spool(self) -> IO[bytes]:
        """The open shard's samples, spooled to a temporary file (between ``begin`` and ``commit``)."""
        if self._spool is None:
            raise RuntimeError("mds: no shard is open (write before begin)")
        return self._spool

    def files(self, k: int) -> list[Path]:
        return [self.dir / f"shard.{k:05d}.mds"]

    def final_files(self) -> list[Path]:
        return [self.dir / INDEX]

    def begin(self, plan: ShardPlan) -> None:
        self._plan = plan
        path = self.files(plan.index)[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._spool_path = temp_file_beside(path.with_name(path.name + ".samples"))
        self._spool = os.fdopen(fd, "w+b", buffering=1 << 20)
        self._sample_sizes: list[np.ndarray] = []
        pack = self.layout.pack
        self._packer = RowPacker(pack, self.dtype) if pack else None  # pack: as self.packed

    def write(self, tokens, segments) -> None:
        if self._packer is not None:
            rows = self._packer.add(tokens, segments)
            parts, sizes = [], []
            L = self._packer.length
            for r in range(len(rows)):
                a, b = rows.piece_offsets[r], rows.piece_offsets[r + 1]
                cols = [_ndarray(np.append(rows.cu_seqlens[a:b], L).astype("<i4")),  # in column-name order
                        _ndarray(rows.doc_ids[a:b].astype("<i8")),
                        _ndarray(rows.positions[a:b].astype("<i8")),
                        _ndarray(np.ascontiguousarray(rows.tokens[r], dtype=self.dtype))]
                data = struct.pack("<4I", *(len(c) for c in cols)) + b"".join(cols)
                parts.append(data)
                sizes.append(len(data))
            self.spool.write(b"".join(parts))
            self._sample_sizes.append(np.asarray(sizes, dtype=np.int64))
            self.written["tokens"] += int(rows.tokens.size)
            self.written["samples"] += rows.samples_begun
            return
        toks = np.ascontiguousarray(tokens, dtype=self.dtype)
        raw = toks.tobytes()
        itemsize = self.dtype.itemsize
        sizes = np.asarray(segments.sizes, dtype=np.int64)
        codes = _shape_code(sizes)
        pack = struct.pack
        parts = []
        pos = 0
        for n, code, d, c, r in zip(sizes.tolist(), codes.tolist(), segments.doc_ids.tolist(),
                                    segments.clusters.tolist(), segments.repeats.tolist()):
            nbytes = n * itemsize
            ids_size = 1 + (1 << code) + nbytes
            parts.append(pack("<IiqiB", ids_size, c, d, r, 4 | code))  # cluster, doc_id, repeat, tokens
            parts.append(pack(_SHAPE_FMT[code], n))
            parts.append(raw[pos : pos + nbytes])
            pos += nbytes
        self.spool.write(b"".join(parts))
        self._sample_sizes.append(4 + 4 + 8 + 1 + (1 << codes) + sizes * itemsize + 4)
        self._account(len(tokens), segments)

    def commit(self) -> list[dict]:
        if self._packer is not None and self._packer.pending():
            raise ValueError(f"{self._packer.pending()} tokens left over a whole --pack row")
        sizes = np.concatenate(self._sample_sizes) if self._sample_sizes else np.zeros(0, np.int64)
        n = len(sizes)
        head = 4 + 4 * (n + 1) + len(self.config_bytes)
        offsets: np.ndarray = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        offsets += head
        if offsets[-1] > MAX_SHARD_BYTES:
            raise ValueError(f"an MDS shard must stay under 4 GiB (this one would be {int(offsets[-1])} bytes)")
        self.last_rows = n
        f = HashedFile(self.files(self._plan.index)[0])
        try:
            f.write(struct.pack("<I", n))
            f.write(offsets.astype("<u4").tobytes())
            f.write(self.config_bytes)
            self.spool.flush()
            self.spool.seek(0)
            while True:
                block = self.spool.read(1 << 22)
                if not block:
                    break
                f.write(block)
            size, digest = f.commit()
        except BaseException:
            f.abort()
            raise
        finally:
            self._close_spool()
        return [file_record(self.out_dir, f.path, size, digest)]

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
            Path(self._spool_path).unlink(missing_ok=True)

    def abort(self) -> None:
        self._close_spool()

    def finish(self, shard_records: list[dict]) -> list[dict]:
        shards = []
        for rec in shard_records:
            f = rec["files"][0]
            entry = {
                "samples": rec["rows"],
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

    def describe(self) -> dict:
        return {"token_dtype": self.dtype.name, "column_encodings": dict(zip(self.config["column_names"],
                                                                              self.config["column_encodings"]))}

    @classmethod
    def read_shard(cls, out_dir: Path, record: dict, index: dict) -> ShardContent:
        path = Path(out_dir) / record["files"][0]["path"]
        data = path.read_bytes()
        (n,) = struct.unpack_from("<I", data, 0)
        offsets = np.frombuffer(data, dtype="<u4", count=n + 1, offset=4).astype(np.int64)
        cfg = json.loads(data[4 + 4 * (n + 1): offsets[0]] if n else data[4 + 4 * (n + 1):])
        samples = [decode_sample(data[offsets[i]: offsets[i + 1]], cfg) for i in range(n)]
        if "cu_seqlens" in cfg["column_names"]:
            from .parquet import packed_content

            return packed_content([s[TOKENS].astype(np.int64) for s in samples],
                                  [s["cu_seqlens"].astype(np.int64) for s in samples],
                                  [s["positions"] for s in samples])
        ids = [s[TOKENS].astype(np.int64) for s in samples]
        starts: np.ndarray = np.zeros(len(ids), dtype=np.int64)
        if len(ids) > 1:
            np.cumsum([len(x) for x in ids[:-1]], out=starts[1:])
        return ShardContent(np.concatenate(ids) if ids else np.zeros(0, np.int64), starts)


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

FORMAT = MDSFormat
