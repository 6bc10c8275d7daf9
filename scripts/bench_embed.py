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

    python scripts/bench_embed.py                                   # CPU, 600 long documents
    python scripts/bench_embed.py --docs short --n-docs 400
    python scripts/bench_embed.py --device cuda --n-docs 20000      # GPU
"""

from __future__ import annotations

import argparse
import importlib.util
import json
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda")
    ap.add_argument("--model", default=None, help="local HF model dir or hub name [default: bundled all-MiniLM-L6-v2]")
    ap.add_argument("--docs", choices=("long", "short"), default="long")
    ap.add_argument("--n-docs", type=int, default=600)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--dtype", default="auto", help="clusterclip's --dtype (auto: bf16 on native-bf16 CPUs, fp16 on CUDA)")
    ap.add_argument("--st-batch-size", type=int, default=32, help="SentenceTransformer.encode batch size (its default 32)")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs of each (interleaved); the best is reported")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak dense TFLOP/s of the device (auto for known GPUs)")
    ap.add_argument("--cluster", type=int, default=20, metavar="K",
                    help="also compare k-means assignments on clusterclip's and on float32 vectors (0: skip)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    import torch
    from sentence_transformers import SentenceTransformer

    from clusterclip.embed import EmbedDir, embed_corpus
    from clusterclip.embed.encoder import resolve_model
    from clusterclip.embed.hf import HFEncoder

    texts = long_docs(args.n_docs) if args.docs == "long" else short_docs(args.n_docs)
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
    peak = peak_tflops(device, args.peak_tflops)
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
    print(f"clusterclip / {anchor}: {ratio:.2f}x docs/s")
    agreement = None
    if args.cluster:
        agreement = cluster_agreement(vectors["clusterclip embed_corpus"], reference, args.cluster)
        print(f"k-means, k={args.cluster}: clusterclip's {dtype} vectors go to the same centroid as the float32 ones "
              f"for {agreement['same_centroids']:.2%} of documents; k-means retrained on them agrees (ids matched) on "
              f"{agreement['retrained']:.2%}, where two float32 runs with other seeds agree on "
              f"{agreement['fp32_other_seed']:.2%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "dtype": dtype, "n_docs": n, "tokens": tokens,
                                               "results": results, "ratio": ratio, "cluster_agreement": agreement},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
