#!/usr/bin/env python
"""How the cost of every step grows with the corpus: time per document and peak memory at each size.

``python scripts/bench_scale.py --sizes 10k,100k,1M`` (this module is that mode; issue 27.4). For each
size N, a synthetic corpus of N documents whose lengths are drawn from a real corpus on this machine
(``--lengths docstrings``: the demo's standard-library docstrings; ``man``: this machine's man pages
rendered as text), each text a window of that length at a random offset of the real texts joined
(real words, every document different), in JSON lines files of ``--file-docs`` documents. Then every
step runs as a whole process (``python -m clusterclip ...``: start-up, imports, reading, writing and
the final checks included), one after the other:

    embed     --encoder model2vec --max-length 32   (the static encoder; its default model distilled once
                                                      into $CLUSTERCLIP_CACHE, before the clock, and reused)
    cluster   --k 256                               (the same k at every size: the cost per document of
                                                      k-means is proportional to k)
    schedule  --tokenizer T --epochs 1 --format bin (clusterclip sampler; a byte-level BPE trained here)
    report    EMB CL SCHED
    verify    EMB CL SCHED REPORT                    (every file re-hashed, the corpus by its recorded status)

Measured for each: wall seconds, CPU seconds (user + system of all its processes), the peak resident
memory of its largest process (the kernel's high-water mark, from ``/usr/bin/time``: exact, mapped
files included) and the sampled peak of its processes' own (anonymous) memory, with the 1-minute load
average before and after. The same pipeline on a small corpus (``--start-up``, 1,000 documents) gives
the fixed cost of each step (starting Python, imports, loading models, writing manifests), which is
subtracted: the cost of one more document, ``(t(N) - t(start-up)) / (N - start-up)``, should be flat
across sizes when a step is linear. Then, per step, the growth exponents: the log-log slopes of time
and memory against N. Results are kept in ``WORK/sweep.json`` (one entry per size and step, the latest
run of each), so a large size can be run alone when the machine is quiet and the table printed from
all of them (``--table``).

    python scripts/bench_scale.py --sizes 10k,100k --work /tmp/bench-sizes
    python scripts/bench_scale.py --sizes 1M --work /tmp/bench-sizes           # when the load is lowest
    python scripts/bench_scale.py --sizes 10k,100k,1M --work /tmp/bench-sizes --table
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STEPS = ("embed", "cluster", "schedule", "report", "verify")
TIME = "/usr/bin/time"

sys.path.insert(0, str(REPO / "scripts"))
from benchlib import add_session_cpu  # noqa: E402


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parse_sizes(text: str) -> list[int]:
    """``"10k,100k,1M"`` -> ``[10000, 100000, 1000000]``."""
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        mult = scale.get(part[-1].lower(), 1)
        out.append(int(float(part[:-1] if mult > 1 else part) * mult))
    if not out or min(out) < 1:
        raise SystemExit(f"--sizes {text}: give document counts such as 10k,100k,1M")
    return sorted(set(out))


def size_name(n: int) -> str:
    for unit, mult in (("M", 10**6), ("k", 10**3)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return str(n)


# ----------------------------------------------------------------------------- the corpus
def real_texts(kind: str, work: Path) -> list[str]:
    """The real corpus whose lengths (and words) the synthetic documents take."""
    if kind == "docstrings":
        return [d["text"] for d in _script("build_demo_corpus").iter_docstrings(max_docs=10**6, min_chars=1)]
    if kind == "man":  # the first 2,000 pages, whole (no length cut)
        return _script("bench_embed").man_docs(2000, work / "man-cache", min_chars=1, max_chars=1 << 30)
    raise SystemExit(f"--lengths {kind}: docstrings or man")


def write_corpus(out: Path, n: int, texts: list[str], file_docs: int, seed: int) -> dict:
    """``n`` documents in JSON lines files of ``file_docs``: lengths drawn from ``texts``' lengths, each text a
    window of that length at a random offset of ``texts`` joined. Kept when ``out`` already holds the same."""
    key = {"n": n, "file_docs": file_docs, "seed": seed, "source_docs": len(texts),
           "source_chars": sum(map(len, texts))}
    done = out.parent / f"{out.name}.json"
    if done.is_file() and json.loads(done.read_text())["key"] == key:
        return json.loads(done.read_text())
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pool = "\n\n".join(texts)
    lengths = np.array([len(t) for t in texts if t.strip()], dtype=np.int64)
    rng = np.random.default_rng(seed)
    chars = 0
    for f, start in enumerate(range(0, n, file_docs)):
        m = min(file_docs, n - start)
        size = rng.choice(lengths, m)
        offset = (rng.random(m) * (len(pool) - size + 1)).astype(np.int64)
        with open(out / f"part-{f:05d}.jsonl", "w", encoding="utf-8") as fh:
            for i in range(m):
                text = pool[offset[i]:offset[i] + size[i]].strip() or "empty"
                chars += len(text)
                fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    info = {"key": key, "docs": n, "chars": chars, "files": -(-n // file_docs),
            "source_mean_chars": float(lengths.mean()), "source_median_chars": float(np.median(lengths))}
    done.write_text(json.dumps(info))
    return info


def tokenizer(work: Path, texts: list[str], vocab_size: int) -> Path:
    path = work / f"tokenizer-{vocab_size}.json"
    if not path.is_file():
        sys.path.insert(0, str(REPO / "scripts"))
        from train_demo_tokenizer import train_bpe

        train_bpe(iter(texts), vocab_size).save(str(path))
    return path


def warm_static_model() -> None:
    """The default static model, distilled once into $CLUSTERCLIP_CACHE before any clock starts."""
    from clusterclip.embed.model2vec import resolve_static_model

    resolve_static_model(None, log=lambda m: print(m, file=sys.stderr, flush=True))


# ----------------------------------------------------------------------------- measuring a whole process
@dataclass
class Measured:
    seconds: float
    cpu: float  #: user + system seconds of the step's processes (the larger of /usr/bin/time's and the sampled sum)
    peak_mib: float  #: the largest process's peak RSS (the kernel's high-water mark, from /usr/bin/time; mapped files in)
    anon_mib: float  #: the sampled peak of the anonymous memory summed over the step's processes (its own memory)
    load_before: float
    load_after: float


def measure(cmd: list[str], env: dict) -> Measured:
    """Run ``cmd`` to its end under /usr/bin/time, in a session of its own (sampled every 0.1 s); its figures."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        load0 = os.getloadavg()[0]
        seen: dict[int, float] = {}
        peak_anon = 0.0
        t0 = time.perf_counter()
        with subprocess.Popen([TIME, "-f", "%M %U %S", "-o", tf.name, *cmd], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
            err: list[str] = []
            reader = threading.Thread(target=lambda: err.append(proc.stderr.read() if proc.stderr else ""), daemon=True)
            reader.start()
            while proc.poll() is None:
                peak_anon = max(peak_anon, add_session_cpu(proc.pid, seen))
                time.sleep(0.1)
            reader.join()
        seconds = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{''.join(err)[-4000:]}")
        peak_kib, user, system = (float(x) for x in tf.read().split()[-3:])
    return Measured(seconds, max(sum(seen.values()), user + system), peak_kib / 1024, peak_anon, load0,
                    os.getloadavg()[0])


def step_commands(d: Path, corpus: Path, tok: Path, args) -> dict[str, list[str]]:
    cc = [sys.executable, "-m", "clusterclip"]
    emb, cl, sched, rep = d / "emb", d / "cl", d / "sched", d / "report"
    return {
        "embed": [*cc, "embed", str(corpus), "--out", str(emb), "--encoder", "model2vec", "--max-length",
                  str(args.max_length), "-q"],
        "cluster": [*cc, "cluster", str(emb), "--out", str(cl), "--k", str(args.k), "-q"],
        "schedule": [*cc, "schedule", str(emb), str(cl), "--out", str(sched), "--tokenizer", str(tok), "--epochs", "1",
                     "--format", "bin", "-q"],
        "report": [*cc, "report", str(emb), str(cl), str(sched), "--out", str(rep), "-q"],
        "verify": [*cc, "verify", str(emb), str(cl), str(sched), str(rep), "-q"],
    }


#: each step's output directory under a size's directory (removed before each run: nothing is "already done")
OUTPUT = {"embed": "emb", "cluster": "cl", "schedule": "sched", "report": "report"}


def run_size(n: int, args, texts: list[str], tok: Path) -> dict:
    """Every step of ``args.steps`` on the corpus of ``n`` documents, ``args.repeat`` times in turn; the fastest
    run of each step (its CPU seconds the fewest of its runs, its memory the most)."""
    d = args.work / f"n-{size_name(n)}"
    info = write_corpus(d / "corpus", n, texts, args.file_docs, args.seed)
    env = dict(os.environ, CLUSTERCLIP_NO_PROGRESS="1", PYTHONPATH=str(REPO))
    cmds = step_commands(d, d / "corpus", tok, args)
    print(f"\n{size_name(n)}: {n:,} documents, {info['chars'] / 1e6:,.1f} M characters in {info['files']} files",
          flush=True)
    best: dict[str, Measured] = {}
    for _ in range(args.repeat):
        for step in args.steps:
            if step in OUTPUT:
                shutil.rmtree(d / OUTPUT[step], ignore_errors=True)
            m = measure(cmds[step], env)
            print(f"  {step:9s} {m.seconds:8.1f} s  {m.cpu:8.1f} CPU s  {m.seconds / n * 1e6:8.1f} us/doc  "
                  f"peak RSS {m.peak_mib:7.0f} MiB (anonymous {m.anon_mib:7.0f})  load {m.load_before:.2f} -> "
                  f"{m.load_after:.2f}", flush=True)
            old = best.get(step)
            if old is not None:
                fast = m if m.seconds < old.seconds else old
                m = Measured(fast.seconds, min(m.cpu, old.cpu), max(m.peak_mib, old.peak_mib),
                             max(m.anon_mib, old.anon_mib), fast.load_before, fast.load_after)
            best[step] = m
    steps = {step: {**asdict(m), "command": " ".join(cmds[step][1:]).replace(str(d), "N"), "repeat": args.repeat}
             for step, m in best.items()}
    return {"corpus": info, "steps": steps}


# ----------------------------------------------------------------------------- the table
def slope(ns: list[int], values: list[float]) -> float:
    """The log-log least-squares slope of ``values`` against ``ns`` (1 = linear)."""
    if len(ns) < 2 or min(values) <= 0:
        return math.nan
    return float(np.polyfit(np.log(ns), np.log(values), 1)[0])


def above_start_up(r: dict, base: dict | None, n: int, n0: int, key: str) -> float:
    """Microseconds per document above the start-up run: ``(x(n) - x(n0)) / (n - n0)``, the cost of one more."""
    if base is None or n <= n0:
        return math.nan
    return (r[key] - base[key]) / (n - n0) * 1e6


def print_table(results: dict[int, dict], steps: tuple[str, ...], n0: int | None) -> None:
    """Two markdown tables: every figure by step and size, then each step's growth."""
    ns = [n for n in sorted(results) if n != n0]
    base = results.get(n0, {}).get("steps", {}) if n0 is not None else {}
    print("\n| step | documents | seconds | CPU s | µs/doc | µs/doc above start-up | CPU µs/doc above start-up | "
          "peak RSS MiB | anonymous MiB | load before→after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for step in steps:
        for n in ([n0] if base.get(step) else []) + ns:
            r = results[n]["steps"].get(step)
            if r is None:
                continue
            b = base.get(step) if n != n0 else None
            print(f"| {step} | {size_name(n)}{' (start-up)' if n == n0 else ''} | {r['seconds']:,.1f} | {r['cpu']:,.1f} | "
                  f"{r['seconds'] / n * 1e6:,.1f} | {above_start_up(r, b, n, n0 or 0, 'seconds'):,.1f} | "
                  f"{above_start_up(r, b, n, n0 or 0, 'cpu'):,.1f} | {r['peak_mib']:,.0f} | {r['anon_mib']:,.0f} | "
                  f"{r['load_before']:.1f}→{r['load_after']:.1f} |".replace("nan", "–"))
    print(f"\n| step | time exponent | CPU exponent | µs/doc above start-up, largest / smallest ({', '.join(map(size_name, ns))}) "
          "| CPU, same | peak RSS exponent | anonymous memory exponent |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for step in steps:
        rows = [results[n]["steps"].get(step) for n in ns]
        if any(r is None for r in rows):
            continue
        secs, cpus, peaks, anons = ([r[key] for r in rows] for key in ("seconds", "cpu", "peak_mib", "anon_mib"))
        spread = []
        for key in ("seconds", "cpu"):
            above = [above_start_up(r, base.get(step), n, n0 or 0, key) for r, n in zip(rows, ns)]
            spread.append(max(above) / min(above) if all(x > 0 for x in above) else math.nan)
        print(f"| {step} | {slope(ns, secs):.2f} | {slope(ns, cpus):.2f} | {spread[0]:.2f}× | {spread[1]:.2f}× | "
              f"{slope(ns, peaks):.2f} | {slope(ns, anons):.2f} |".replace("nan", "–"))
    print("\nwhole processes (python start-up, imports, reading, writing and final checks included); start-up = the same "
          "pipeline on the smallest corpus, subtracted to give the cost of one more document; peak RSS = the largest "
          "process's high-water mark (the kernel's, mapped files included); anonymous = the sampled peak of the "
          "processes' own memory (RssAnon summed); exponents = log-log least-squares slopes over the sizes (1 = linear)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10k,100k,1M", help="corpus sizes in documents (k, M suffixes)")
    ap.add_argument("--work", type=Path, default=Path("bench-scale-sizes"), help="corpora, outputs and sweep.json")
    ap.add_argument("--lengths", default="docstrings", help="real corpus of the lengths: docstrings or man")
    ap.add_argument("--file-docs", type=int, default=100_000, help="documents per JSON lines file")
    ap.add_argument("--max-length", type=int, default=32, help="embed --max-length")
    ap.add_argument("--k", type=int, default=256, help="cluster --k (the same at every size)")
    ap.add_argument("--vocab-size", type=int, default=32000, help="the schedule's BPE tokenizer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", default=",".join(STEPS), help=f"steps to run, in order: {','.join(STEPS)}")
    ap.add_argument("--repeat", type=int, default=1, help="runs of the pipeline at each size, in turn; the fastest "
                    "of each step is kept")
    ap.add_argument("--start-up", type=int, default=1000,
                    help="documents of the start-up run (its cost is subtracted: the cost of one more document); 0: none")
    ap.add_argument("--table", action="store_true", help="print the table of the sizes recorded in WORK/sweep.json")
    args = ap.parse_args(argv)
    args.work = args.work.resolve()
    args.steps = tuple(s for s in STEPS if s in set(args.steps.split(",")))
    sizes = parse_sizes(args.sizes)
    n0 = args.start_up or None
    if n0 is not None and n0 >= min(sizes):
        raise SystemExit(f"--start-up {n0}: must be smaller than the smallest size ({min(sizes)})")
    record = args.work / "sweep.json"
    saved = {int(k): v for k, v in json.loads(record.read_text()).items()} if record.is_file() else {}
    if not args.table:
        if not Path(TIME).is_file():
            raise SystemExit(f"{TIME} is needed (the peak memory of whole processes): apt-get install time")
        args.work.mkdir(parents=True, exist_ok=True)
        texts = real_texts(args.lengths, args.work)
        tok = tokenizer(args.work, texts, args.vocab_size)
        warm_static_model()
        print(f"command: python scripts/bench_scale.py {' '.join(sys.argv[1:] if argv is None else argv)}")
        print(f"lengths from {len(texts):,} {args.lengths} (mean {np.mean([len(t) for t in texts]):,.0f} characters); "
              f"cores: {os.cpu_count()}; uptime: {os.popen('uptime').read().strip()}", flush=True)
        for n in ([n0] if n0 else []) + sizes:
            new = run_size(n, args, texts, tok)
            saved[n] = {**new, "steps": {**saved.get(n, {}).get("steps", {}), **new["steps"]}}
            record.write_text(json.dumps({str(k): v for k, v in sorted(saved.items())}, indent=1))
        print(f"\nuptime after: {os.popen('uptime').read().strip()}")
    print_table({n: saved[n] for n in [*([n0] if n0 else []), *sizes] if n in saved}, args.steps, n0)


if __name__ == "__main__":
    main()
