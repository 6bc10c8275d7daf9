#!/usr/bin/env python
"""Throughput of each shard format's writer, against a plain write of the same bytes and against
the format's own library writing the same rows, all in the same run.

The text is the docstrings of the Python standard library (the demo corpus builder's walk), the
tokenizer a byte-level BPE trained on it (like the demo's); the order is every document
``--epochs`` times, each epoch a fresh permutation (a random gather from the token store, as a
ClusterClip order is). Each round runs, interleaved, for every format: a plain write + fsync of as
many bytes as the format's files hold (one file, 8 MB ``write`` calls: the disk's limit), then
``write_shards`` in that format (gather, delimiters, sha256 of every file, atomic rename, the
resume journal, ``shards.json``); and for ``mds`` and ``parquet``, the format's library writing the
same rows directly (``streaming.MDSWriter`` in the separate ``.venv-mds``, one ``write`` per
sample; ``pyarrow.parquet.write_table`` of the same table with the same options), then an fsync.
Figures are the best of ``--repeat`` rounds; the load average is printed before and after::

    python scripts/bench_shards.py                       # ~20 MB of text, 2 epochs, 3 rounds
    python scripts/bench_shards.py --text-mb 50 --vocab-size 100000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
#: the columns our ``mds`` writer writes for a vocabulary that fits 16 bits (``shards/mds.py``)
MDS_COLUMNS = {"cluster": "int32", "doc_id": "int64", "repeat": "int32", "tokens": "ndarray:uint16"}


def stdlib_docstrings() -> list[str]:
    """Every docstring of the demo corpus builder's standard-library walk longer than 40 characters."""
    import build_demo_corpus

    return [d["text"] for d in build_demo_corpus.iter_docstrings(max_docs=10**9, min_chars=41)]


def train(texts: list[str], vocab_size: int, path: Path) -> Path:
    import train_demo_tokenizer

    tok = train_demo_tokenizer.train_bpe(texts, min(vocab_size, 50_000))
    if vocab_size > tok.get_vocab_size():  # pad to the requested size (e.g. > 65536 for the 32-bit layouts)
        tok.add_special_tokens([f"<|pad_{i}|>" for i in range(vocab_size - tok.get_vocab_size())])
    tok.save(str(path))
    return path


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def plain_write(path: Path, src: np.ndarray, nbytes: int) -> None:
    """``nbytes`` of ``src`` (repeated) to one file in 8 MB writes, then fsync."""
    mv = memoryview(src).cast("B")
    with open(path, "wb") as f:
        left = nbytes
        while left:
            n = min(left, len(mv), 8 << 20)
            f.write(mv[:n])
            left -= n
        f.flush()
        os.fsync(f.fileno())
    path.unlink()


def dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


class Rows:
    """The order's samples as a user holding them would: flat tokens, sizes, and the columns."""

    def __init__(self, store, order, cluster, repeat, eos_id):
        self.tokens, self.sizes = store.gather(order, eos_id)
        self.doc_id, self.cluster, self.repeat = order, cluster, repeat

    def save(self, path: Path) -> None:
        np.savez(path, tokens=self.tokens, sizes=self.sizes, doc_id=self.doc_id, cluster=self.cluster,
                 repeat=self.repeat)


def parquet_peer(rows: Rows, path: Path) -> None:
    """pyarrow writing the rows of our ``parquet`` format directly, with its options (zstd, no dictionary)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clusterclip.shards.parquet import schema

    offsets = np.zeros(len(rows.sizes) + 1, dtype=np.int32)
    np.cumsum(rows.sizes, out=offsets[1:])
    table = pa.Table.from_arrays([
        pa.ListArray.from_arrays(pa.array(offsets), pa.array(rows.tokens.astype(np.int32))),
        pa.array(rows.doc_id), pa.array(rows.cluster), pa.array(rows.repeat)], schema=schema(False))
    pq.write_table(table, str(path), compression="zstd", use_dictionary=False,
                   write_statistics=["doc_id", "cluster", "repeat"])
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def mds_peer_main(rows_file: str, out: str, size_limit: int) -> None:
    """Runs in ``.venv-mds``: ``streaming.MDSWriter`` writing the rows, one ``write`` per sample; prints
    the wall and CPU seconds of the writing (the rows are loaded first)."""
    from streaming import MDSWriter

    data = np.load(rows_file)
    tokens, sizes = data["tokens"], data["sizes"]
    doc_id, cluster, repeat = data["doc_id"], data["cluster"], data["repeat"]
    ends = np.cumsum(sizes)
    starts = ends - sizes
    w, c = time.perf_counter(), time.process_time()
    with MDSWriter(out=out, columns=MDS_COLUMNS, compression=None, size_limit=size_limit) as writer:
        for i in range(len(sizes)):
            writer.write({"cluster": cluster[i], "doc_id": doc_id[i], "repeat": repeat[i],
                          "tokens": tokens[starts[i]: ends[i]]})
    for p in Path(out).glob("shard.*.mds"):
        with open(p, "rb+") as f:
            os.fsync(f.fileno())
    print(json.dumps([time.perf_counter() - w, time.process_time() - c]))


def run_mds_peer(python: str, rows_file: Path, out: Path, size_limit: int) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    r = subprocess.run([python, __file__, "--mds-peer", str(rows_file), str(out), str(size_limit)],
                       capture_output=True, text=True, env=env, check=False)
    if r.returncode:
        raise RuntimeError(f"MDSWriter peer failed: {r.stderr.strip()[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    wall, cpu = json.loads(r.stdout.strip().splitlines()[-1])
    return wall, cpu


def load() -> str:
    return os.popen("uptime").read().strip()


def print_results(runs: list, best: dict, sizes: dict, n_tokens: int, peers: dict, mds_ok: bool,
                  mds_python: str) -> None:
    """The table: each writer's best round against a plain write of its bytes and against the library peer."""
    print(f"{'writer':<24} {'M tokens/s':>10} {'MB':>6} {'x plain write':>13} {'x library':>10} "
          f"{'wall s':>7} {'cpu s':>6}   (plain write + fsync of the same bytes: wall s)")
    for fmts in runs:
        name = "+".join(fmts)
        wall, cpu = best[name]
        plain = best["plain " + name][0]
        lib = ""
        if name in peers and "peer " + name in best:
            lib = f"{best['peer ' + name][0] / wall:.2f}"
        label = "all six together" if len(fmts) > 1 else name
        print(f"{label:<24} {n_tokens / wall / 1e6:>10.1f} {sizes[fmts] / 1e6:>6.0f} {plain / wall:>13.2f} "
              f"{lib:>10} {wall:>7.3f} {cpu:>6.3f}   ({plain:.3f})")
    for name, what in peers.items():
        if "peer " + name in best:
            wall, cpu = best["peer " + name]
            print(f"  peer {name}: {what}: {n_tokens / wall / 1e6:.1f} M tokens/s, wall {wall:.3f} s, "
                  f"cpu {cpu:.3f} s")
    if not mds_ok:
        print(f"  peer mds: not measured ({mds_python} missing: bash scripts/setup_mds_env.sh)")
    print("\nx plain write: its time / the writer's (1.0 = as fast as the disk); x library: the library's "
          "time / the writer's (above 1: faster than the library)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text-mb", type=float, default=20.0, help="text to tokenize (the docstrings, repeated)")
    ap.add_argument("--epochs", type=int, default=2, help="each document appears this many times in the order")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--shard-tokens", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; each figure is the best round")
    ap.add_argument("--mds-python", default=str(ROOT / ".venv-mds" / "bin" / "python"),
                    help="python of the environment with mosaicml-streaming (scripts/setup_mds_env.sh)")
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temp dir, removed)")
    ap.add_argument("--mds-peer", nargs=3, metavar=("ROWS", "OUT", "SIZE_LIMIT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.mds_peer:
        mds_peer_main(args.mds_peer[0], args.mds_peer[1], int(args.mds_peer[2]))
        return

    from clusterclip.shards import FORMATS, write_shards
    from clusterclip.tokens.build import build_token_store
    from clusterclip.tokens.tokenizer import load_tokenizer

    print(f"$ python scripts/bench_shards.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(f"load before: {load()}")
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_shards_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        base = stdlib_docstrings()
        base_chars = sum(map(len, base))
        reps = max(1, int(args.text_mb * 1e6 / base_chars + 0.999))
        # repeated copies are distinct documents (a suffix keeps them from being identical strings)
        texts = [d if r == 0 else f"{d}\n[{r}]" for r in range(reps) for d in base]
        chars = sum(map(len, texts))
        tok = load_tokenizer(str(train(base, args.vocab_size, work / "tokenizer.json")))
        t = time.perf_counter()
        store = build_token_store(enumerate(texts), len(texts), tok, work / "store", progress=False)
        t_tok = time.perf_counter() - t
        rng = np.random.default_rng(0)
        order = np.concatenate([rng.permutation(len(texts)) for _ in range(args.epochs)]).astype(np.int64)
        cluster = (order % 97).astype(np.int32)
        repeat = np.repeat(np.arange(args.epochs, dtype=np.int32), len(texts))
        n_tokens = int((store.lengths[order] + 1).sum())
        print(f"text: {len(base):,} stdlib docstrings ({base_chars / 1e6:.1f} MB) x {reps} = {len(texts):,} docs, "
              f"{chars / 1e6:.1f} MB; tokenizer: byte-level BPE, vocab {tok.vocab_size:,}; tokenized at "
              f"{store.n_tokens / t_tok / 1e6:.1f} M tokens/s")
        print(f"order: {len(order):,} samples, {n_tokens:,} tokens ({store.dtype.name}, "
              f"{n_tokens * store.dtype.itemsize / 1e6:.0f} MB as a raw stream); shards of <= "
              f"{args.shard_tokens:,} tokens; cores: {os.cpu_count()}; best of {args.repeat} interleaved rounds\n")

        src = np.resize(np.asarray(store.data[: store.n_tokens]), n_tokens)
        runs = [(f,) for f in FORMATS] + [tuple(FORMATS)]

        def ours(fmts):
            out = work / ("out_" + "_".join(fmts))
            write_shards(order, cluster, repeat, store, out, formats=fmts, shard_tokens=args.shard_tokens,
                         eos_id=tok.eos_id, vocab_size=tok.vocab_size, progress=False, resume=False)
            return out

        # a first run of each (imports, page cache) gives the bytes each format writes
        sizes, n_shards = {}, {}
        for fmts in runs:
            out = ours(fmts)
            sizes[fmts] = dir_bytes(out)
            n_shards[fmts] = len(list((out / fmts[0]).glob(FORMATS[fmts[0]].pattern)))
            shutil.rmtree(out)

        rows = Rows(store, order, cluster, repeat, tok.eos_id)
        peers = {"parquet": "pyarrow write_table (same options)"}
        mds_ok = Path(args.mds_python).exists() and "mds" in FORMATS and store.dtype == np.uint16
        if mds_ok:
            rows.save(work / "rows.npz")
            peers["mds"] = "streaming.MDSWriter (.venv-mds)"
        best: dict[str, list[float]] = {}

        def keep(key: str, wall_cpu: tuple[float, float]) -> None:
            b = best.setdefault(key, [float("inf"), float("inf")])
            b[0], b[1] = min(b[0], wall_cpu[0]), min(b[1], wall_cpu[1])

        for _ in range(args.repeat):
            for fmts in runs:
                name = "+".join(fmts)
                keep("plain " + name, timed(lambda fmts=fmts: plain_write(work / "plain.bin", src, sizes[fmts])))
                keep(name, timed(lambda fmts=fmts: ours(fmts)))
                shutil.rmtree(work / ("out_" + "_".join(fmts)))
                if name == "parquet":
                    keep("peer parquet", timed(lambda: parquet_peer(rows, work / "peer.parquet")))
                    (work / "peer.parquet").unlink()
                if name == "mds" and mds_ok:
                    limit = -(-sizes[fmts] // n_shards[fmts]) + 4096  # about as many shards as ours
                    keep("peer mds", run_mds_peer(args.mds_python, work / "rows.npz", work / "peer_mds", limit))

        print_results(runs, best, sizes, n_tokens, peers, mds_ok, args.mds_python)
        print(f"load after: {load()}")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
