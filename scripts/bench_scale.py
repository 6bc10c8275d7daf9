#!/usr/bin/env python
"""Tokens/s of ``clusterclip schedule`` (tokenize + write shards), local and Ray engines, against datatrove.

The same corpus (real, long documents: Python source files of this interpreter's standard
library and site-packages, one document per file, in several JSON lines files), the same
``tokenizer.json`` (a byte-level BPE trained here), the same cores, in one run:

- ``clusterclip schedule --sampler random --epochs 1 --format bin`` (every document once) with the local engine (and with
  ``--workers 1`` / ``--workers N`` when this clusterclip has that option);
- the same with ``--engine ray`` on a local Ray of N CPUs (started before the clock; its start
  time is printed apart);
- datatrove's ``JsonlReader -> DocumentTokenizer`` (EOS after each document, no shuffling) with
  ``LocalPipelineExecutor(tasks=N, workers=N)``.

Both sides read the corpus, tokenize every document once and write the tokens once; clusterclip
also checks the corpus digests and writes the order, ``shards.json`` and a manifest. The embed
and cluster directories the schedule needs are built once (``--max-length 8``, ``--k 8``) and
cached in ``--work``. Prints seconds, tokens/s and each ratio to datatrove, and the load average
(the machine may be shared: compare ratios measured in the same run).

    python scripts/bench_scale.py --work /tmp/bench-scale            # ~30 M tokens
    python scripts/bench_scale.py --work /tmp/bench-scale --max-mb 20  # a quicker check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path

EOS = "<|endoftext|>"


def source_files() -> list[Path]:
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    seen, out = set(), []
    for root in roots:
        for p in sorted(root.rglob("*.py")):
            if p.is_file() and p.resolve() not in seen:
                seen.add(p.resolve())
                out.append(p)
    return out


def build_corpus(work: Path, max_mb: float, n_files: int) -> Path:
    corpus = work / "corpus"
    done = work / "corpus.json"
    if done.is_file() and json.loads(done.read_text()).get("max_mb") == max_mb:
        return corpus
    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir(parents=True)
    docs, chars = [], 0
    for p in source_files():
        try:
            text = p.read_text("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if len(text.strip()) < 200:
            continue
        docs.append({"id": str(p), "text": text})
        chars += len(text)
        if chars >= max_mb * 1e6:
            break
    per = -(-len(docs) // n_files)
    for i in range(n_files):
        with open(corpus / f"part-{i:03d}.jsonl", "w", encoding="utf-8") as f:
            for d in docs[i * per:(i + 1) * per]:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
    done.write_text(json.dumps({"max_mb": max_mb, "docs": len(docs), "chars": chars}))
    return corpus


def train_tokenizer(work: Path, corpus: Path, vocab_size: int) -> Path:
    path = work / f"tokenizer-{vocab_size}.json"
    if path.is_file():
        return path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_demo_tokenizer import train_bpe

    def texts(limit_chars=30_000_000):
        n = 0
        for f in sorted(corpus.glob("*.jsonl")):
            for line in open(f, encoding="utf-8"):
                t = json.loads(line)["text"]
                n += len(t)
                yield t
                if n > limit_chars:
                    return

    train_bpe(texts(), vocab_size).save(str(path))
    return path


def upstream(work: Path, corpus: Path) -> tuple[Path, Path]:
    from clusterclip.cluster import cluster_embeddings
    from clusterclip.embed import embed_corpus

    emb, cl = work / "emb", work / "cl"
    embed_corpus([corpus], emb, max_length=8, progress=False)
    cluster_embeddings(emb, cl, k=8, progress=False)
    return emb, cl


def run_schedule(emb, cl, tok, out: Path, **settings) -> tuple[float, int]:
    from clusterclip.schedule import schedule_corpus

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    r = schedule_corpus(emb, cl, out, tokenizer=str(tok), epochs=1, sampler="random", formats=("bin",),
                        progress=False, **settings)  # random: every document once, as datatrove
    dt = time.perf_counter() - t0
    index = json.loads((out / "shards.json").read_text())
    assert r.state == "fresh"
    return dt, int(index["n_tokens"])


def run_datatrove(corpus: Path, tok: Path, out: Path, cores: int) -> tuple[float, int]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    shutil.rmtree(out, ignore_errors=True)
    pipeline = [JsonlReader(str(corpus), glob_pattern="*.jsonl", text_key="text", id_key="id"),
                DocumentTokenizer(str(out / "tokens"), tokenizer_name_or_path=str(tok), eos_token=EOS,
                                  shuffle_documents=False)]
    executor = LocalPipelineExecutor(pipeline=pipeline, tasks=cores, workers=cores, logging_dir=str(out / "logs"),
                                     skip_completed=False)
    t0 = time.perf_counter()
    executor.run()
    dt = time.perf_counter() - t0
    token_bytes = sum(p.stat().st_size for p in (out / "tokens").glob("*.ds"))
    return dt, token_bytes // 2  # uint16 tokens (vocab < 65536)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("bench-scale"), help="cache and output directory")
    ap.add_argument("--max-mb", type=float, default=110.0, help="corpus size in millions of characters")
    ap.add_argument("--files", type=int, default=8, help="JSON lines files the corpus is split into")
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=1, help="runs of each row; the fastest is reported")
    ap.add_argument("--skip", default="", help="comma-separated rows to skip: local,workers,ray,datatrove")
    args = ap.parse_args(argv)
    os.environ.setdefault("CLUSTERCLIP_NO_PROGRESS", "1")
    skip = set(filter(None, args.skip.split(",")))
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus(work, args.max_mb, args.files)
    info = json.loads((work / "corpus.json").read_text())
    tok = train_tokenizer(work, corpus, args.vocab_size)
    emb, cl = upstream(work, corpus)
    print(f"corpus: {info['docs']:,} documents, {info['chars'] / 1e6:.1f} M characters in {args.files} files; "
          f"tokenizer: byte-level BPE, vocab {args.vocab_size}; cores: {args.cores}; "
          f"load average before: {os.getloadavg()[0]:.2f}", flush=True)

    def best(fn, *a, **k):
        runs = [fn(*a, **k) for _ in range(args.repeats)]
        return min(runs)

    rows = []
    if "datatrove" not in skip:
        rows.append((f"datatrove DocumentTokenizer ({args.cores} tasks)", *best(run_datatrove, corpus, tok, work / "dt",
                                                                                               args.cores)))
    if "local" not in skip:
        rows.append(("clusterclip schedule, local engine", *best(run_schedule, emb, cl, tok, work / "s-local")))
    from clusterclip.schedule import ScheduleSettings

    if "workers" not in skip and "workers" in ScheduleSettings.rules():
        for w in sorted({1, args.cores}):
            rows.append((f"clusterclip schedule, local, --workers {w}",
                         *best(run_schedule, emb, cl, tok, work / f"s-w{w}", workers=w)))
    if "ray" not in skip:
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=args.cores, include_dashboard=False, log_to_driver=False)
        started = time.perf_counter() - t0
        rows.append((f"clusterclip schedule, --engine ray ({args.cores} CPUs; Ray start {started:.1f} s not counted)",
                     *best(run_schedule, emb, cl, tok, work / "s-ray", engine="ray")))
        ray.shutdown()
    base = next((r for r in rows if r[0].startswith("datatrove")), None)
    print(f"{'':72s} {'seconds':>8s} {'tokens':>12s} {'M tok/s':>8s} {'vs datatrove':>13s}")
    for name, dt, n in rows:
        ratio = f"{(n / dt) / (base[2] / base[1]):.2f}x" if base else "-"
        print(f"{name:72s} {dt:8.2f} {n:12,d} {n / dt / 1e6:8.2f} {ratio:>13s}")
    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min), {os.getloadavg()[1]:.2f} (5 min)")
    if not (work / "s-local").exists() or not (work / "s-ray").exists():
        return
    same = all((work / "s-local" / "bin" / p.name).read_bytes() == p.read_bytes()
               for p in (work / "s-ray" / "bin").glob("*.bin"))
    print(f"ray shards byte-identical to local: {same}")


if __name__ == "__main__":
    main()
