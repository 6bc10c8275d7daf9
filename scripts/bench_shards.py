#!/usr/bin/env python
"""Throughput of tokenization (token store) and of each shard format's writer, on real text.

The text is the docstrings of the Python standard library (the demo corpus builder's walk), the
tokenizer a byte-level BPE trained on it (like the demo's). Each writer's rate is shown
beside two practical limits for the same bytes: a plain memory copy (``np.copyto``) and a
plain file write + fsync (the disk), each the best of 3 runs::

    python scripts/bench_shards.py                       # ~20 MB of text, 2 epochs
    python scripts/bench_shards.py --text-mb 50 --vocab-size 100000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import build_demo_corpus  # noqa: E402  (scripts/, beside this file)
import train_demo_tokenizer  # noqa: E402

from clusterclip.shards import FORMATS, write_shards  # noqa: E402
from clusterclip.tokens.build import build_token_store  # noqa: E402
from clusterclip.tokens.tokenizer import load_tokenizer  # noqa: E402


def stdlib_docstrings() -> list[str]:
    """Every docstring of the demo corpus builder's standard-library walk longer than 40 characters."""
    return [d["text"] for d in build_demo_corpus.iter_docstrings(max_docs=10**9, min_chars=41)]


def train(texts: list[str], vocab_size: int, path: Path) -> Path:
    tok = train_demo_tokenizer.train_bpe(texts, min(vocab_size, 50_000))
    if vocab_size > tok.get_vocab_size():  # pad to the requested size (e.g. > 65536 for the 32-bit layouts)
        tok.add_special_tokens([f"<|pad_{i}|>" for i in range(vocab_size - tok.get_vocab_size())])
    tok.save(str(path))
    return path


def rate(n: float, s: float) -> str:
    return f"{n / s / 1e6:8.1f} M/s"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text-mb", type=float, default=20.0, help="text to tokenize (the docstrings, repeated)")
    ap.add_argument("--epochs", type=int, default=2, help="each document appears this many times in the order")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--shard-tokens", type=int, default=5_000_000)
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temp dir, removed)")
    args = ap.parse_args(argv)

    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_shards_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        base = stdlib_docstrings()
        base_chars = sum(map(len, base))
        reps = max(1, int(args.text_mb * 1e6 / base_chars + 0.999))
        # repeated copies are distinct documents (a suffix keeps them from being identical strings)
        texts = [d if r == 0 else f"{d}\n[{r}]" for r in range(reps) for d in base]
        chars = sum(map(len, texts))
        print(f"text: {len(base):,} stdlib docstrings ({base_chars / 1e6:.1f} MB) x {reps} = {len(texts):,} docs, "
              f"{chars / 1e6:.1f} MB  [{time.perf_counter() - t:.1f}s]")
        tok = load_tokenizer(str(train(base, args.vocab_size, work / "tokenizer.json")))
        print(f"tokenizer: byte-level BPE, vocab {tok.vocab_size:,}, EOS {tok.eos_token!r}; cores: {os.cpu_count()}")

        t = time.perf_counter()
        store = build_token_store(enumerate(texts), len(texts), tok, work / "store", progress=False)
        t_tok = time.perf_counter() - t
        rng = np.random.default_rng(0)
        order = np.concatenate([rng.permutation(len(texts)) for _ in range(args.epochs)]).astype(np.int64)
        cluster = (order % 97).astype(np.int32)
        repeat = np.repeat(np.arange(args.epochs, dtype=np.int32), len(texts))
        n_tokens = int((store.lengths[order] + 1).sum())
        itemsize = store.dtype.itemsize
        nbytes = n_tokens * itemsize
        print(f"order: {len(order):,} samples, {n_tokens:,} tokens ({store.dtype.name}, {nbytes / 1e6:.0f} MB per "
              f"raw copy); shards of <= {args.shard_tokens:,} tokens\n")

        # practical limits for the same bytes
        src = np.asarray(store.data[: store.n_tokens])
        src = np.resize(src, n_tokens)
        dst = np.zeros_like(src)  # touched: no page faults inside the timing

        def best(fn, n=3):
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return min(times)

        t_copy = best(lambda src=src, dst=dst: np.copyto(dst, src))

        def file_write(src=src):
            with open(work / "raw.bin", "wb") as f:
                for i in range(0, n_tokens, 1 << 22):
                    f.write(src[i : i + (1 << 22)])
                f.flush()
                os.fsync(f.fileno())

        t_file = best(file_write)
        os.unlink(work / "raw.bin")
        del src, dst

        rows = [("memory copy (np.copyto)", n_tokens, t_copy), ("file write + fsync", n_tokens, t_file)]
        runs = [(f,) for f in FORMATS] + [tuple(FORMATS)]
        results = []
        for fmts in runs:
            out = work / ("out_" + "_".join(fmts))
            t = time.perf_counter()
            index = write_shards(order, cluster, repeat, store, out, formats=fmts, shard_tokens=args.shard_tokens,
                                 eos_id=tok.eos_id, vocab_size=tok.vocab_size, progress=False, resume=False)
            dt = time.perf_counter() - t
            size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            results.append((" + ".join(fmts) if len(fmts) > 1 else fmts[0], index["n_tokens"], dt, size,
                            index["n_shards"]))
            shutil.rmtree(out)

        print(f"{'step':<34} {'tokens/s':>12} {'x memcpy':>9} {'x file write':>12} {'seconds':>8}")
        print(f"{'tokenize (token store, ' + str(store.n_tokens // 1_000_000) + 'M tok)':<34} "
              f"{rate(store.n_tokens, t_tok):>12} {t_copy / t_tok * store.n_tokens / n_tokens:>9.4f} "
              f"{t_file / t_tok * store.n_tokens / n_tokens:>12.3f} {t_tok:>8.2f}")
        for name, n, dt in rows:
            print(f"{name:<34} {rate(n, dt):>12} {t_copy / dt:>9.3f} {t_file / dt:>12.3f} {dt:>8.2f}")
        for name, n, dt, size, shards in results:
            label = f"write {name}"
            print(f"{label:<34} {rate(n, dt):>12} {t_copy / dt:>9.3f} {t_file / dt:>12.3f} {dt:>8.2f}"
                  f"   ({shards} shards, {size / 1e6:.0f} MB)")
        print(f"\n{chars / t_tok / 1e6:.1f} M chars/s tokenized; ratios are rate / limit (1.0 = as fast as the limit)")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
