#!/usr/bin/env python
"""Tokens/s of clusterclip's fast exact tokenization against Hugging Face ``tokenizers``.

The documents are real and long: the Python standard library's source files, then (past
them) the ``.py`` files of this environment's site-packages, in path order. The tokenizer is
the demo's byte-level BPE (``scripts/train_demo_tokenizer.py``) trained on the first of them
at a realistic vocabulary (default 32768), or ``--tokenizer``. Both sides encode the same
documents on every core, in groups of about 8 M characters (what the token store hands the
encoder): Hugging Face with ``encode_batch_fast`` (ids taken out of the encodings, nothing
more), clusterclip with ``TokenEncoder.encode_arrays(parallel=True)`` (token arrays ready to
write). The tokens are asserted identical and the ratio printed. Then ``build_token_store``
runs end to end (read, encode, write, fsync) with ``--workers`` 1 and 2 on the fast backend
and on Hugging Face (``fast=False``), and the stores are asserted byte-identical::

    python scripts/bench_tokenize.py                    # ~64 MB of source text
    python scripts/bench_tokenize.py --text-mb 200 --repeat 3 --vocab-size 50000

``--huge-doc-mb 50`` instead measures the peak memory (resident set) of ``build_token_store``
on one document of that many million characters (the source files joined), each backend in
a fresh process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train_demo_tokenizer

from clusterclip.tokens.build import build_token_store
from clusterclip.tokens.fast import TokenEncoder
from clusterclip.tokens.tokenizer import load_tokenizer

GROUP_CHARS = 8_000_000


def source_documents(text_mb: float) -> list[str]:
    """Standard-library .py files, then site-packages .py files, until ``text_mb`` MB of text."""
    paths = sysconfig.get_paths()
    stdlib, site = Path(paths["stdlib"]), Path(paths["purelib"])
    roots = [(stdlib, lambda p: "site-packages" not in p.parts), (site, lambda p: True)]
    docs, chars, seen = [], 0, set()
    for root, keep in roots:
        for p in sorted(root.rglob("*.py")):
            if not keep(p) or p.resolve() in seen:
                continue
            seen.add(p.resolve())
            try:
                text = p.read_text("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if text.strip():
                docs.append(text)
                chars += len(text)
                if chars >= text_mb * 1e6:
                    return docs
    return docs


def groups(docs: list[str]):
    lo, size = 0, 0
    for i, d in enumerate(docs):
        size += len(d)
        if size >= GROUP_CHARS:
            yield docs[lo:i + 1]
            lo, size = i + 1, 0
    if lo < len(docs):
        yield docs[lo:]


def best_of(repeat: int, fn):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), times, out


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def rss_mb() -> float:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def huge_document_child(mb: float, backend: str, tok_file: str, out: str) -> None:
    """In a fresh process: build a store of one ``mb`` M-character document, print the memory."""
    doc = "".join(source_documents(mb))
    while len(doc) < mb * 1e6:
        doc += doc[: int(mb * 1e6) - len(doc)]
    doc = doc[: int(mb * 1e6)]
    try:
        tok = load_tokenizer(tok_file, fast=backend != "hf")
    except TypeError:  # a clusterclip from before the fast backend (to measure the old figure)
        tok = load_tokenizer(tok_file)
    before = rss_mb()
    t = time.perf_counter()
    store = build_token_store([(0, doc)], 1, tok, out, progress=False)
    print(json.dumps({"backend": getattr(tok, "backend", "hf"), "chars": len(doc), "tokens": store.n_tokens,
                      "seconds": round(time.perf_counter() - t, 1), "rss_before_mb": round(before),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


def huge_document(args, tok_file: Path, work: Path) -> None:
    for backend in ("fast", "hf"):
        out = work / f"huge-{backend}"
        shutil.rmtree(out, ignore_errors=True)
        res = subprocess.run([sys.executable, __file__, "--huge-child", str(args.huge_doc_mb), backend,
                              str(tok_file), str(out)], check=True, capture_output=True, text=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"one document of {r['chars'] / 1e6:.0f} M characters, backend {r['backend']}: {r['tokens']:,} tokens "
              f"in {r['seconds']} s; resident memory {r['rss_before_mb']} MB before tokenizing (the text, "
              f"the libraries), peak {r['peak_rss_mb']} MB (+{r['peak_rss_mb'] - r['rss_before_mb']} MB)")
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--huge-child":
        huge_document_child(float(argv[1]), argv[2], argv[3], argv[4])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text-mb", type=float, default=64.0, help="characters of source text to tokenize (millions)")
    ap.add_argument("--vocab-size", type=int, default=32768)
    ap.add_argument("--train-mb", type=float, default=16.0, help="text the tokenizer is trained on (millions of chars)")
    ap.add_argument("--tokenizer", type=Path, default=None, help="use this tokenizer.json instead of training one")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each side; the best is reported")
    ap.add_argument("--workers", default="1,2", help="build_token_store worker counts to run")
    ap.add_argument("--no-store", action="store_true", help="skip the end-to-end build_token_store runs")
    ap.add_argument("--huge-doc-mb", type=float, default=None,
                    help="measure the peak memory of one document this long (M characters) instead")
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temp dir, removed)")
    args = ap.parse_args(argv)

    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_tokenize_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"machine: {os.cpu_count()} cores, {load()}")
        t = time.perf_counter()
        docs = source_documents(args.text_mb)
        chars = sum(map(len, docs))
        print(f"text: {len(docs):,} Python source files, {chars / 1e6:.1f} M characters, "
              f"median {int(np.median([len(d) for d in docs])):,} per file  [{time.perf_counter() - t:.1f}s]")
        if args.tokenizer:
            tok_file = args.tokenizer
        else:
            t = time.perf_counter()
            train_docs, n = [], 0
            for d in docs:
                train_docs.append(d)
                n += len(d)
                if n >= args.train_mb * 1e6:
                    break
            tok_file = work / "tokenizer.json"
            train_demo_tokenizer.train_bpe(train_docs, args.vocab_size).save(str(tok_file))
            print(f"tokenizer: demo byte-level BPE trained on {n / 1e6:.1f} M characters  "
                  f"[{time.perf_counter() - t:.1f}s]")
        if args.huge_doc_mb:
            huge_document(args, tok_file, work)
            return
        tok = load_tokenizer(str(tok_file))
        print(f"tokenizer: vocab {tok.vocab_size:,}, backend {tok.backend}"
              + (f" ({tok.fast_off})" if tok.fast_off else ""))
        if tok.backend != "gigatoken":
            sys.exit("the fast backend does not run this tokenizer: nothing to compare")

        from tokenizers import Tokenizer as HFTokenizer

        hf = HFTokenizer.from_file(str(tok_file))
        hf.encode_special_tokens = True
        batches = list(groups(docs))

        def run_hf():
            return [[e.ids for e in hf.encode_batch_fast(b, add_special_tokens=False)] for b in batches]

        def run_fast():
            fast = TokenEncoder(tok.encoder_plan())  # a new one each run: its pre-token cache starts empty
            return [fast.encode_arrays(b, parallel=True) for b in batches]

        t_hf, all_hf, ref = best_of(args.repeat, run_hf)
        t_fast, all_fast, out = best_of(args.repeat, run_fast)
        n_tok = 0
        for ids_lists, enc in zip(ref, out):
            lens = np.array([len(x) for x in ids_lists])
            flat = np.fromiter((i for x in ids_lists for i in x), dtype=np.uint32, count=int(lens.sum()))
            assert np.array_equal(lens, enc.lengths) and np.array_equal(flat, enc.ids), "tokens differ"
            n_tok += len(flat)
        print(f"tokens: {n_tok:,} ({chars / n_tok:.2f} characters per token), identical on both sides")
        print(f"HF tokenizers encode_batch_fast, all cores : {n_tok / t_hf / 1e6:7.2f} M tokens/s  "
              f"({t_hf:.2f} s; runs {', '.join(f'{x:.2f}' for x in all_hf)})")
        print(f"clusterclip fast path ({tok.backend}), all cores: {n_tok / t_fast / 1e6:7.2f} M tokens/s  "
              f"({t_fast:.2f} s; runs {', '.join(f'{x:.2f}' for x in all_fast)})")
        print(f"ratio fast / HF: {t_hf / t_fast:.2f}x   [{load()}]")

        if not args.no_store:
            digests = set()
            for fast_on in (True, False):
                st_tok = load_tokenizer(str(tok_file), fast=fast_on)
                for w in [int(x) for x in args.workers.split(",")]:
                    def build(w=w, st_tok=st_tok):
                        path = work / f"store-{st_tok.backend}-{w}"
                        shutil.rmtree(path, ignore_errors=True)
                        store = build_token_store(enumerate(docs), len(docs), st_tok, path, progress=False, workers=w)
                        return store, path

                    t_store, _runs, (store, path) = best_of(args.repeat, build)
                    digests.add(hashlib.sha256((path / "tokens.bin").read_bytes()).hexdigest())
                    print(f"build_token_store backend={store.meta['backend']:9s} workers={w}: "
                          f"{store.n_tokens / t_store / 1e6:7.2f} M tokens/s ({t_store:.2f} s)")
                    shutil.rmtree(path, ignore_errors=True)
            assert len(digests) == 1, "token stores differ"
            print(f"token stores byte-identical across backends and workers   [{load()}]")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
