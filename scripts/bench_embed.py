#!/usr/bin/env python
"""Benchmark ``clusterclip embed`` against ``SentenceTransformer.encode`` on the same long documents.

Documents: long real text that exists offline: the Python documentation topics of ``pydoc_data``
and, per standard-library module, all its docstrings joined into one document (``--docs long``,
the default; most are longer than the 256-token window, as pretraining documents are), or the
demo's one-docstring documents (``--docs short``). Same documents, same model, same process.

Peers, each timed in the same run (interleaved, best of ``--repeat``):

- ``sentence-transformers encode`` as users run it (float32 on CPU, float16 on CUDA);
- ``sentence-transformers encode`` in clusterclip's precision (to show what precision alone gives);
- ``clusterclip embed_corpus`` with its defaults (``--dtype auto``: bfloat16 on CPUs with native
  bf16, float16 on CUDA), end to end: reading the JSONL file, tokenizing, embedding, writing
  the parts, ``docs.parquet`` and the manifest.

It also reports the cosine between clusterclip's vectors and sentence-transformers' float32
ones (per document, the minimum), the FLOP rate (2 × non-embedding parameters × tokens: useful
work only) against ``--peak-tflops`` (known for NVIDIA GPUs), and, with ``--cluster K``, how many
documents k-means puts in the same cluster on bfloat16 and on float32 embeddings (after
matching the cluster ids one to one).

With ``--process`` it times what a user waits for instead: whole processes, interleaved, best of
``--repeat``: ``python -m clusterclip embed CORPUS --out ...`` against a Python script that imports
sentence-transformers, loads the same model, reads the same JSONL, encodes (float32 on CPU,
float16 on CUDA, its defaults) and saves the vectors. Then one more ``clusterclip embed`` process
with timers on its phases (python start, imports, input hashing, tokenizer and weights load, the
encoder, the time the encoder waited for the reading thread, writing, commit; the functions are
wrapped, nothing else changes) and the padding (tokens computed under the fixed row windows vs
real tokens), and the encoder's rate in model FLOPs (dense layers + attention on the real tokens)
against the GEMM peak of its precision measured in the same run before and after it (a 2048²
matrix product with torch and, for float32 on CPU, numpy's BLAS: the best is the peak).
``--docs man`` uses this machine's man pages (``man -l`` rendered, the long ones; built once into
``--work``).

    python scripts/bench_embed.py                                   # CPU, 600 long documents
    python scripts/bench_embed.py --docs short --n-docs 400
    python scripts/bench_embed.py --device cuda --n-docs 20000      # GPU
    python scripts/bench_embed.py --process --docs long --n-docs 600 --repeat 2
    python scripts/bench_embed.py --process --docs man --n-docs 600 --repeat 2
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: dense (no sparsity) fp16/bf16 tensor-core peak, TFLOP/s, by GPU name fragment
PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,
               "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0, "V100": 125.0, "T4": 65.0}


def _demo_builder():
    spec = importlib.util.spec_from_file_location("build_demo_corpus", REPO / "scripts" / "build_demo_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def short_docs(n: int) -> list[str]:
    return [d["text"] for d in _demo_builder().iter_docstrings(max_docs=n, min_chars=40)]


def long_docs(n: int, min_chars: int = 1500, max_chars: int = 20000) -> list[str]:
    """Long real documents: pydoc topics, each stdlib module's docstrings joined into one, then
    standard-library source files (code is part of pretraining corpora too), interleaved."""
    import pydoc_data.topics
    import sysconfig

    prose = [t for t in pydoc_data.topics.topics.values() if len(t) >= min_chars]
    by_module: dict[str, list[str]] = {}
    for d in _demo_builder().iter_docstrings(max_docs=10**6, min_chars=40):
        by_module.setdefault(d["id"].split(".")[0], []).append(d["text"])
    for module in sorted(by_module):
        text = "\n\n".join(by_module[module])[:max_chars]
        if len(text) >= min_chars:
            prose.append(text)
    code = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if "test" in path.parts or "site-packages" in path.parts:
            continue
        try:
            text = path.read_text("utf-8")[:max_chars]
        except (OSError, UnicodeDecodeError):
            continue
        if len(text) >= min_chars:
            code.append(text)
    texts = []
    for i in range(max(len(prose), len(code))):  # prose and code interleaved
        texts.extend(x[i] for x in (prose, code) if i < len(x))
    return texts[:n]


def peak_tflops(device: str, given: float | None) -> float | None:
    if given:
        return given
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def _matched(la: np.ndarray, lb: np.ndarray, k: int) -> float:
    """Share of documents in the same cluster after matching the ids one to one (Hungarian algorithm)."""
    from scipy.optimize import linear_sum_assignment

    table = np.zeros((k, k), dtype=np.int64)
    np.add.at(table, (la, lb), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(la))


def cluster_agreement(ours: np.ndarray, fp32: np.ndarray, k: int) -> dict:
    """How clustering on ``ours`` compares with clustering on ``fp32`` vectors.

    ``same_centroids``: documents assigned to the same centroid (centroids trained on the float32
    vectors): what the precision alone changes. ``retrained``: k-means (seed 0) run on each, ids
    matched; ``fp32_other_seed``: the same on float32 vectors with seed 0 and seed 1, the run-to-run
    variation of k-means itself, to read ``retrained`` against.
    """
    from clusterclip.cluster import assign
    from clusterclip.cluster.kmeans import train_spherical_kmeans

    c32 = train_spherical_kmeans(fp32, k, seed=0)
    l32, _ = assign(fp32, c32, check=False)
    same, _ = assign(ours, c32, check=False)
    retrained, _ = assign(ours, train_spherical_kmeans(ours, k, seed=0), check=False)
    other, _ = assign(fp32, train_spherical_kmeans(fp32, k, seed=1), check=False)
    return {"same_centroids": float(np.mean(same == l32)), "retrained": _matched(retrained, l32, k),
            "fp32_other_seed": _matched(other, l32, k)}


# ----------------------------------------------------------------------------- corpora
def man_docs(n: int, cache: Path, min_chars: int = 1500, max_chars: int = 20000) -> list[str]:
    """Man pages of this machine rendered as text (``man -l`` + ``col -b``), the long ones, in name order.

    Rendering costs about 0.1 s a page: the corpus is kept in ``cache`` (one JSON line per page)."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    path = cache / f"man-{n}.jsonl"
    if path.is_file():
        return [json.loads(line)["text"] for line in path.read_text("utf-8").splitlines()]
    if shutil.which("man") is None or not Path("/usr/share/man").is_dir():
        raise SystemExit("--docs man: needs man pages (/usr/share/man and `man`); use --docs long")
    pages = sorted(p for section in ("man1", "man8", "man5", "man3", "man7")
                   for p in (Path("/usr/share/man") / section).glob("*.gz") if not p.is_symlink())
    env = {**os.environ, "MANWIDTH": "100", "MAN_KEEP_FORMATTING": "0"}

    def render(page: Path) -> str:
        try:
            raw = subprocess.run(["man", "-l", "-P", "cat", str(page)], capture_output=True, env=env, timeout=60).stdout
            text = subprocess.run(["col", "-bx"], input=raw, capture_output=True, timeout=60).stdout
            return text.decode("utf-8", "replace")[:max_chars]
        except (OSError, subprocess.TimeoutExpired):
            return ""

    texts: list[str] = []
    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        for start in range(0, len(pages), 64):
            texts.extend(t for t in pool.map(render, pages[start : start + 64]) if len(t) >= min_chars)
            if len(texts) >= n:
                break
    texts = texts[:n]
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), "utf-8")
    return texts


def corpus_texts(kind: str, n: int, cache: Path) -> list[str]:
    return {"long": long_docs, "short": short_docs}[kind](n) if kind != "man" else man_docs(n, cache)


# ----------------------------------------------------------------------------- the hardware's own limit
def gemm_peak(dtype: str, device: str = "cpu", size: int = 2048, repeat: int = 3, cpu_clock: bool = False) -> dict:
    """TFLOP/s of a ``size``² matrix product in ``dtype`` on ``device``, best of ``repeat``: torch's own GEMM
    (what the encoder's linear layers call) and, on CPU in float32, numpy's BLAS (OpenBLAS in the wheels),
    which on some CPUs (AMD with MKL) is faster. The peak is the best of them, measured in the same run.
    ``cpu_clock``: TFLOP per CPU-second of this process divided by its threads (steady on a loaded machine)."""
    import torch

    from clusterclip.embed.encoder import cpu_has_native_bf16

    if device == "cpu" and dtype != "float32" and not cpu_has_native_bf16():
        size = 256  # emulated half precision: a small product is enough to show how slow it is
    dt = getattr(torch, dtype)
    a, b = (torch.randn(size, size, device=device).to(dt) for _ in range(2))

    clock = time.process_time if device == "cpu" and cpu_clock else time.perf_counter

    def best_of(product) -> float:
        best = float("inf")
        for _ in range(repeat + 1):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = clock()
            product()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, clock() - t0)
        return 2 * size**3 / best / 1e12

    rates = {"torch": best_of(lambda: a @ b)}
    if device == "cpu" and dtype == "float32":
        an, bn = a.numpy(), b.numpy()
        rates["numpy"] = best_of(lambda: an @ bn)
    if clock is time.process_time:
        rates = {k: v * torch.get_num_threads() for k, v in rates.items()}
    return rates


def model_flops(enc, lengths) -> float:
    """FLOPs the encoder must do on ``lengths`` real tokens per sequence (no padding): 2 × non-embedding
    parameters per token, plus attention (QKᵀ and AV: 4 × length × hidden per token and layer)."""
    cfg = enc._net.config
    lengths = np.asarray(lengths, dtype=np.float64)
    dense = 2.0 * (enc.n_params - enc.n_embedding_params) * lengths.sum()
    attention = 4.0 * cfg.hidden_size * cfg.num_hidden_layers * np.sum(lengths**2)
    return dense + attention


# ----------------------------------------------------------------------------- whole processes
ST_PROCESS = r"""
import json, sys
import numpy as np
import torch
from sentence_transformers import SentenceTransformer

corpus, out, model, device, dtype, max_length, batch = sys.argv[1:8]
texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8")]
st = SentenceTransformer(model, device=device, model_kwargs={"torch_dtype": getattr(torch, dtype)})
st.max_seq_length = int(max_length)
x = st.encode(texts, batch_size=int(batch), normalize_embeddings=True, convert_to_numpy=True)
np.save(out, x.astype(np.float32))
"""




def _timed(cmd: list[str], env: dict) -> float:
    import subprocess

    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ...: failed:\n{done.stderr[-3000:]}")
    return seconds


def _phases_child(argv: list[str]) -> int:
    """``--phases-child OUT_JSON CLI_ARGS...``: run ``clusterclip CLI_ARGS`` in this process with timers on its
    phases (the functions are wrapped, nothing else changes) and write them to OUT_JSON."""
    out_json, cli_args = argv[0], argv[1:]
    launched = float(os.environ["BENCH_LAUNCHED"])
    phases: dict[str, float] = {"python startup": time.time() - launched}
    counts: dict = {"real_tokens": 0, "computed_tokens": 0}
    lock = __import__("threading").Lock()

    def add(name: str, seconds: float) -> None:
        with lock:
            phases[name] = phases.get(name, 0.0) + seconds

    t0 = time.perf_counter()
    import torch  # noqa: F401 - what the run imports anyway, timed apart from the work
    import transformers  # noqa: F401
    from transformers import AutoConfig, AutoModel, AutoTokenizer  # noqa: F401

    import clusterclip.cli  # noqa: F401
    from clusterclip.artifacts import OutputDir
    from clusterclip.embed import hf
    from clusterclip.embed.batching import padded_length
    from clusterclip.embed.writer import EmbedWriter

    add("imports (torch, transformers, clusterclip)", time.perf_counter() - t0)

    def wrap(owner, attr: str, name: str) -> None:
        real = getattr(owner, attr, None)
        if real is None:
            return

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return real(*a, **k)
            finally:
                add(name, time.perf_counter() - t)

        setattr(owner, attr, timed)

    for module in _modules("clusterclip.embed.step", "clusterclip.embed"):  # where the step calls it from
        wrap(module, "describe_files", "input hashing (sha256 of the corpus)")
    wrap(hf.HFEncoder, "__init__", "tokenizer + config load")
    wrap(hf.HFEncoder, "prepare", "reading thread: tokenizing (overlaps the encoder)")
    wrap(hf.HFEncoder, "embed", "encoder (model forward + pooling)")
    real_embed = hf.HFEncoder.embed

    def cpu_timed_embed(self, *a, **k):
        t = time.process_time()
        try:
            return real_embed(self, *a, **k)
        finally:
            counts["encoder_cpu_s"] = counts.get("encoder_cpu_s", 0.0) + time.process_time() - t

    hf.HFEncoder.embed = cpu_timed_embed
    wrap(EmbedWriter, "write_part", "writing parts")
    wrap(EmbedWriter, "finish", "writing docs.parquet + final checks")
    wrap(OutputDir, "commit", "commit (manifest, rename)")
    net = hf.HFEncoder.__dict__["_net"]
    load = functools.cached_property(lambda self: _timed_call(net.func, self, add, "model weights load", counts))
    load.__set_name__(hf.HFEncoder, "_net")
    hf.HFEncoder._net = load
    real_pack, real_plan = hf.pack_rows, hf.plan_batches

    def pack_rows(lengths, multiple=1):
        row_len, rows = real_pack(lengths, multiple)
        counts["real_tokens"] += int(np.sum(lengths))
        counts["computed_tokens"] += row_len * len(rows)
        return row_len, rows

    def plan_batches(lengths, batch_tokens, batch_size=None, multiple=1):
        batches = real_plan(lengths, batch_tokens, batch_size, multiple)
        counts["real_tokens"] += int(np.sum(lengths))
        counts["computed_tokens"] += sum(len(b) * padded_length(int(lengths[b[0]]), multiple) for b in batches)
        return batches

    hf.pack_rows, hf.plan_batches = pack_rows, plan_batches
    windows = next((m._Producer for m in _modules("clusterclip.embed.pipeline", "clusterclip.engines.local_embed")
                    if hasattr(getattr(m, "_Producer", None), "windows")), None)
    if windows is not None:
        real_windows = windows.windows

        def timed_windows(self):
            it = real_windows(self)
            while True:
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    add("encoder waiting for input (reading + tokenizing not hidden)", time.perf_counter() - t)
                    return
                add("encoder waiting for input (reading + tokenizing not hidden)", time.perf_counter() - t)
                yield item

        windows.windows = timed_windows
    sys.argv = ["clusterclip", *cli_args]
    try:
        clusterclip.cli.main()
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        phases["total (process)"] = time.time() - launched
        Path(out_json).write_text(json.dumps({"phases": phases, **counts}))
    return 0


def _modules(*names: str) -> list:
    """The modules of ``names`` that exist (the embed pipeline has moved between versions)."""
    import importlib

    found = []
    for name in names:
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return found


def _timed_call(fn, self, add, name, counts):
    t, c = time.perf_counter(), time.process_time()
    try:
        return fn(self)
    finally:
        add(name, time.perf_counter() - t)
        counts["load_cpu_s"] = time.process_time() - c


def process_bench(args) -> dict:
    """Whole processes, interleaved: ``clusterclip embed`` vs a sentence-transformers script (load, encode, save)."""
    import torch

    from clusterclip.embed import EmbedDir
    from clusterclip.embed.encoder import resolve_model
    from clusterclip.embed.hf import HFEncoder

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    texts = corpus_texts(args.docs, args.n_docs, work)
    corpus = work / f"bench-{args.docs}-{len(texts)}.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), "utf-8")
    enc = HFEncoder(args.model, max_length=args.max_length, device=args.device, dtype=args.dtype)
    load_path, model_name = resolve_model(args.model)
    st_dtype = "float16" if enc.is_cuda else "float32"
    env = {**os.environ, "CLUSTERCLIP_NO_PROGRESS": "1", "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cc_args = ["embed", str(corpus), "--out", "OUT", "--max-length", str(args.max_length), "--device", args.device,
               "--dtype", args.dtype, "--overwrite", "--quiet"]
    best = {"clusterclip embed": float("inf"), f"sentence-transformers {st_dtype}": float("inf")}
    load = {}
    for r in range(args.repeat):  # interleaved: each repetition runs both, the load hits both alike
        out = work / f"emb-{r}"
        shutil.rmtree(out, ignore_errors=True)  # a fresh run each time (an equal finished one is "done")
        cmd = [sys.executable, "-m", "clusterclip", *[str(out) if a == "OUT" else a for a in cc_args]]
        load.setdefault("before", os.getloadavg()[0])
        best["clusterclip embed"] = min(best["clusterclip embed"], _timed(cmd, env))
        st_out = work / f"st-{r}.npy"
        cmd = [sys.executable, "-c", ST_PROCESS, str(corpus), str(st_out), load_path, enc.device, st_dtype,
               str(args.max_length), str(args.st_batch_size)]
        best[f"sentence-transformers {st_dtype}"] = min(best[f"sentence-transformers {st_dtype}"], _timed(cmd, env))
    load["after"] = os.getloadavg()[0]
    ours = EmbedDir(work / "emb-0").store().read(0, len(texts))
    theirs = np.load(work / "st-0.npy")
    cosine = np.sum(ours * theirs, axis=1)
    # one instrumented run: where the whole process's time goes
    phases_json = work / "phases.json"
    shutil.rmtree(work / "emb-phases", ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phases-child", str(phases_json),
           *[str(work / "emb-phases") if a == "OUT" else a for a in cc_args]]
    lengths = [len(x[0]) for x in enc.prepare(texts).items]
    flops = model_flops(enc, lengths)
    cpu = enc.device == "cpu"
    peaks = [gemm_peak(enc.dtype, enc.device), gemm_peak(enc.dtype, enc.device, cpu_clock=cpu)]
    _timed(cmd, {**env, "BENCH_LAUNCHED": repr(time.time())})
    measured = json.loads(phases_json.read_text())  # the instrumented run, between two peak measurements
    peaks += [gemm_peak(enc.dtype, enc.device), gemm_peak(enc.dtype, enc.device, cpu_clock=cpu)]
    peak = {k: max(p[k] for p in peaks[0::2]) for k in peaks[0]}
    cpu_peak = max(max(p.values()) for p in peaks[1::2])
    phases = measured["phases"]
    load_s = phases.get("model weights load", 0.0)  # loaded on the first batch: inside the encoder's time
    encoder_s = phases.get("encoder (model forward + pooling)", float("nan")) - load_s
    phases["encoder (model forward + pooling)"] = encoder_s
    ratio = best[f"sentence-transformers {st_dtype}"] / best["clusterclip embed"]
    tflops = flops / encoder_s / 1e12
    # per CPU-second (× threads): what the encoder's own cycles did, steady when other jobs share the cores
    encoder_cpu_s = (measured.get("encoder_cpu_s", float("nan")) - measured.get("load_cpu_s", 0.0))
    cpu_tflops = flops / (encoder_cpu_s / torch.get_num_threads()) / 1e12 if cpu else float("nan")
    return {"corpus": args.docs, "n_docs": len(texts), "mean_chars": float(np.mean([len(t) for t in texts])),
            "tokens": int(sum(lengths)), "model": model_name, "device": enc.device, "dtype": enc.dtype,
            "threads": torch.get_num_threads(), "seconds": best, "ratio": ratio,
            "min_cosine_vs_st": float(cosine.min()), "phases": phases,
            "real_tokens": measured["real_tokens"], "computed_tokens": measured["computed_tokens"],
            "encoder_tflops": tflops, "gemm_peak_tflops": peak, "mfu": tflops / max(peak.values()),
            "mfu_vs_torch_gemm": tflops / peak["torch"], "encoder_tflops_cpu_clock": cpu_tflops,
            "gemm_peak_tflops_cpu_clock": cpu_peak, "mfu_cpu_clock": cpu_tflops / cpu_peak, "load": load}


def print_process(res: dict, argv: list[str]) -> None:
    st_name = next(k for k in res["seconds"] if k.startswith("sentence"))
    print(f"command: python scripts/bench_embed.py {' '.join(argv)}")
    print(f"load average {res['load']['before']:.2f} before, {res['load']['after']:.2f} after; {res['device']} "
          f"({res['threads']} threads), {res['model']}, {res['n_docs']} {res['corpus']} docs (mean "
          f"{res['mean_chars']:,.0f} chars), {res['tokens']:,} tokens; clusterclip {res['dtype']}")
    print("| whole process (best of the interleaved runs) | seconds | docs/s |")
    print("|---|---:|---:|")
    for name, sec in res["seconds"].items():
        print(f"| {name} | {sec:.2f} | {res['n_docs'] / sec:.1f} |")
    print(f"clusterclip embed / {st_name}: {res['ratio']:.2f}x as whole processes; min cosine "
          f"{res['min_cosine_vs_st']:.6f}")
    total = res["phases"]["total (process)"]
    print(f"| where the clusterclip process's {total:.2f} s go (one instrumented run) | seconds | share |")
    print("|---|---:|---:|")
    for name, sec in res["phases"].items():
        if name != "total (process)":
            print(f"| {name} | {sec:.2f} | {sec / total:.1%} |")
    waste = res["computed_tokens"] / max(res["real_tokens"], 1) - 1
    print(f"padding: {res['computed_tokens']:,} tokens computed for {res['real_tokens']:,} real ones "
          f"(+{waste:.1%} under the fixed row windows)")
    peaks = ", ".join(f"{k} {v:.3f}" for k, v in res["gemm_peak_tflops"].items())
    print(f"encoder: {res['encoder_tflops']:.3f} TFLOP/s of model FLOPs = {res['mfu']:.1%} of the {res['dtype']} GEMM "
          f"peak measured in this run (2048² matmul, best of before and after: {peaks} TFLOP/s; "
          f"{res['mfu_vs_torch_gemm']:.1%} of torch's own)")
    if res["device"] == "cpu":
        print(f"encoder by CPU time (steady under load): {res['encoder_tflops_cpu_clock']:.3f} TFLOP per thread-second "
              f"× threads = {res['mfu_cpu_clock']:.1%} of the GEMM's {res['gemm_peak_tflops_cpu_clock']:.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda")
    ap.add_argument("--model", default=None, help="local HF model dir or hub name [default: bundled all-MiniLM-L6-v2]")
    ap.add_argument("--docs", choices=("long", "man", "short"), default="long",
                    help="long: pydoc topics, stdlib docstrings and sources; man: this machine's man pages; "
                         "short: one docstring each")
    ap.add_argument("--process", action="store_true",
                    help="time whole processes: `clusterclip embed` vs a sentence-transformers script (import, load, "
                         "read, encode, save), interleaved; where clusterclip's process time goes; the encoder's "
                         "FLOP rate against the GEMM peak measured in the same run")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "clusterclip-bench"),
                    help="--process: where corpora (the man-page corpus is cached) and outputs go")
    ap.add_argument("--n-docs", type=int, default=600)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--dtype", default="auto", help="clusterclip's --dtype (auto: bf16 on native-bf16 CPUs, fp16 on CUDA)")
    ap.add_argument("--st-batch-size", type=int, default=32, help="SentenceTransformer.encode batch size (its default 32)")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs of each (interleaved); the best is reported")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak dense TFLOP/s of the device (auto for known GPUs)")
    ap.add_argument("--cluster", type=int, default=20, metavar="K",
                    help="also compare k-means assignments on clusterclip's and on float32 vectors (0: skip)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--phases-child"]:
        return _phases_child(argv[1:])
    args = ap.parse_args(argv)
    if args.process:
        res = process_bench(args)
        print_process(res, argv)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
        return 0

    import torch
    from sentence_transformers import SentenceTransformer

    from clusterclip.embed import EmbedDir, embed_corpus
    from clusterclip.embed.encoder import resolve_model
    from clusterclip.embed.hf import HFEncoder

    texts = corpus_texts(args.docs, args.n_docs, Path(args.work))
    enc = HFEncoder(args.model, max_length=args.max_length, device=args.device, dtype=args.dtype)
    device, dtype = enc.device, enc.dtype
    load_path, model_name = resolve_model(args.model)
    st_default_dtype = "float16" if device.startswith("cuda") else "float32"
    peers = {}
    for label, dt in ((f"sentence-transformers {st_default_dtype}", st_default_dtype),
                      (f"sentence-transformers {dtype}", dtype)):
        if dt in [d for _, d in peers.values()]:
            continue
        st = SentenceTransformer(load_path, device=device, model_kwargs={"torch_dtype": getattr(torch, dt)})
        st.max_seq_length = args.max_length
        peers[label] = (st, dt)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    warm = texts[: min(32, len(texts))]
    enc.embed_texts(warm)
    for st, _ in peers.values():
        st.encode(warm, batch_size=args.st_batch_size)
    sync()

    best = {name: float("inf") for name in [*peers, "clusterclip embed_corpus"]}
    vectors = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "bench.jsonl"
        with open(corpus, "w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
        for r in range(args.repeat):
            out = Path(tmp) / f"emb{r}"
            sync()
            t0 = time.perf_counter()
            result = embed_corpus([corpus], out, encoder=enc, progress=False)
            sync()
            best["clusterclip embed_corpus"] = min(best["clusterclip embed_corpus"], time.perf_counter() - t0)
            vectors.setdefault("clusterclip embed_corpus", EmbedDir(out).store().read(0, len(texts)))
            for name, (st, _) in peers.items():
                sync()
                t0 = time.perf_counter()
                x = st.encode(texts, batch_size=args.st_batch_size, normalize_embeddings=True, convert_to_numpy=True)
                sync()
                best[name] = min(best[name], time.perf_counter() - t0)
                vectors.setdefault(name, np.asarray(x, dtype=np.float32))

    st_stats = result.statistics
    n, tokens = st_stats["n_docs"], st_stats["tokens"]
    anchor = next(iter(peers))
    reference = vectors[anchor]
    flop_per_token = 2 * (enc.n_params - enc.n_embedding_params)
    measured_peak = max(gemm_peak(dtype, device).values())  # the hardware's GEMM in this precision, this run
    peak = peak_tflops(device, args.peak_tflops) or measured_peak
    threads = torch.cuda.get_device_name() if device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(f"device {device} ({threads}), model {model_name}, max_length {args.max_length}, {n} {args.docs} docs "
          f"(mean {np.mean([len(t) for t in texts]):,.0f} chars), {tokens:,} tokens fed to the model, "
          f"{st_stats['truncated_docs']} of {n} truncated at {args.max_length}; clusterclip dtype {dtype}, "
          f"packing {enc.packing}, batch_tokens {enc.batch_tokens}; torch {torch.__version__}")
    header = (f"| {'method':<34} | {'seconds':>8} | {'docs/s':>8} | {'× ' + anchor.split()[-1] + ' ST':>10} | "
              f"{'TFLOP/s':>8} | {'of peak':>7} | {'min cos vs fp32 ST':>18} |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    results = {}
    for name, sec in best.items():
        cos = float(np.sum(vectors[name] * reference, axis=1).min())
        tf = flop_per_token * tokens / sec / 1e12
        print(f"| {name:<34} | {sec:8.2f} | {n / sec:8.1f} | {best[anchor] / sec:9.2f}x | {tf:8.3f} | "
              + (f"{tf / peak:6.1%} |" if peak else f"{'n/a':>7} |") + f" {cos:18.6f} |")
        results[name] = {"seconds": sec, "docs_per_s": n / sec, "tflops": tf, "min_cosine_vs_fp32": cos}
    ratio = best[anchor] / best["clusterclip embed_corpus"]
    print(f"clusterclip / {anchor}: {ratio:.2f}x docs/s; 'of peak' is against "
          + (f"{peak:.3f} TFLOP/s (given or the datasheet); measured {dtype} GEMM peak {measured_peak:.3f}"
             if peak != measured_peak else f"the {dtype} GEMM peak measured in this run ({peak:.3f} TFLOP/s, 2048²)")
          + f"; load average {os.getloadavg()[0]:.2f}")
    agreement = None
    if args.cluster:
        agreement = cluster_agreement(vectors["clusterclip embed_corpus"], reference, args.cluster)
        print(f"k-means, k={args.cluster}: clusterclip's {dtype} vectors go to the same centroid as the float32 ones "
              f"for {agreement['same_centroids']:.2%} of documents; k-means retrained on them agrees (ids matched) on "
              f"{agreement['retrained']:.2%}, where two float32 runs with other seeds agree on "
              f"{agreement['fp32_other_seed']:.2%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "dtype": dtype, "n_docs": n, "tokens": tokens,
                                               "peak_tflops": peak, "measured_gemm_peak_tflops": measured_peak,
                                               "results": results, "ratio": ratio, "cluster_agreement": agreement},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
