#!/usr/bin/env python
"""Benchmark ``clusterclip embed`` against ``SentenceTransformer.encode`` on the same documents.

Real text: Python standard-library docstrings (lengths from a line to pages), the same
documents and model for both, in the same process. Both models are loaded and warmed up
before timing. clusterclip is timed end to end through :func:`clusterclip.embedding.embed_corpus`
(reading a JSONL file, tokenizing, embedding, writing the parts, docs.parquet and the
manifest); sentence-transformers is timed for ``encode`` alone on texts already in memory.

    python scripts/bench_embed.py --n-docs 400                      # CPU
    python scripts/bench_embed.py --device cuda --n-docs 50000 --flops   # GPU, with FLOP utilisation

``--flops`` prints the fraction of the GPU's dense fp16/bf16 peak reached, counting the
encoder's FLOP floor as 2 × (non-embedding parameters) × tokens (attention scores not
counted, padding not counted: only useful work).
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


def load_docs(n: int, min_chars: int = 40) -> list[str]:
    spec = importlib.util.spec_from_file_location("build_demo_corpus", REPO / "scripts" / "build_demo_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    texts = [d["text"] for d in mod.iter_docstrings(max_docs=n, min_chars=min_chars)]
    if len(texts) < n:  # a small stdlib: repeat with a marker so texts stay distinct
        base = list(texts)
        i = 0
        while len(texts) < n:
            texts.append(f"({i}) " + base[i % len(base)])
            i += 1
    return texts


def peak_tflops(device: str, given: float | None) -> float | None:
    if given:
        return given
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda")
    ap.add_argument("--model", default=None, help="local HF model dir or hub name [default: bundled all-MiniLM-L6-v2]")
    ap.add_argument("--n-docs", type=int, default=400)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--dtype", default="auto", help="compute dtype for both (auto: fp16 on CUDA, fp32 on CPU)")
    ap.add_argument("--batch-tokens", type=int, default=None, help="clusterclip token budget per batch")
    ap.add_argument("--st-batch-size", type=int, default=32, help="SentenceTransformer.encode batch size (its default 32)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each (interleaved); the best is reported")
    ap.add_argument("--flops", action="store_true", help="also print achieved TFLOP/s and the fraction of peak")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak dense TFLOP/s of the device (auto for known GPUs)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    import torch
    from sentence_transformers import SentenceTransformer

    from clusterclip.embedding import Encoder, embed_corpus, resolve_model

    texts = load_docs(args.n_docs)
    enc = Encoder(args.model, max_length=args.max_length, device=args.device, dtype=args.dtype,
                  batch_tokens=args.batch_tokens)
    device, dtype = enc.device, enc.dtype
    load_path, model_name = resolve_model(args.model)
    st = SentenceTransformer(load_path, device=device)
    st.max_seq_length = args.max_length
    if dtype == "float16":
        st.half()
    elif dtype == "bfloat16":
        st.to(torch.bfloat16)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    warm = texts[: min(64, len(texts))]
    enc.embed_texts(warm)
    st.encode(warm, batch_size=args.st_batch_size, normalize_embeddings=True)
    sync()

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "bench.jsonl"
        with open(corpus, "w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
        # interleaved runs, best of --repeat each: fair on a machine shared with other work
        best_cc, best_st, ours, theirs, manifest = float("inf"), float("inf"), None, None, None
        for r in range(args.repeat):
            out = Path(tmp) / f"emb{r}"
            sync()
            t0 = time.perf_counter()
            manifest = embed_corpus([corpus], out, encoder=enc, progress=False)
            sync()
            best_cc = min(best_cc, time.perf_counter() - t0)
            if ours is None:
                from clusterclip.artifacts import EmbeddingStore

                ours = EmbeddingStore(out).read(0, len(texts))
            sync()
            t0 = time.perf_counter()
            theirs = st.encode(texts, batch_size=args.st_batch_size, normalize_embeddings=True, convert_to_numpy=True)
            sync()
            best_st = min(best_st, time.perf_counter() - t0)

    n = manifest["statistics"]["n_docs"]
    tokens = manifest["statistics"]["tokens"]
    cos = np.sum(ours * theirs.astype(np.float32), axis=1)
    rows = [("sentence-transformers encode", best_st), ("clusterclip embed_corpus", best_cc)]
    print(f"clusterclip settings: packing={enc.packing}, batch_tokens={enc.batch_tokens}; "
          f"sentence-transformers batch_size={args.st_batch_size}")
    print(f"device {device} ({torch.cuda.get_device_name() if device.startswith('cuda') else f'{torch.get_num_threads()} threads'}), "
          f"dtype {dtype}, model {model_name}, max_length {args.max_length}, {n} docs, {tokens:,} tokens "
          f"(mean {tokens / n:.0f}/doc), torch {torch.__version__}")
    flop_per_token = 2 * (enc.n_params - enc.n_embedding_params)
    peak = peak_tflops(device, args.peak_tflops) if args.flops else None
    header = f"| {'method':<30} | {'seconds':>8} | {'docs/s':>9} | {'tokens/s':>10} | {'speed-up':>8} |"
    if args.flops:
        header += f" {'TFLOP/s':>8} | {'of peak':>7} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    results = {}
    for name, sec in rows:
        line = (f"| {name:<30} | {sec:8.2f} | {n / sec:9.1f} | {tokens / sec:10,.0f} | {best_st / sec:7.2f}x |")
        tf = flop_per_token * tokens / sec / 1e12
        if args.flops:
            line += f" {tf:8.3f} | " + (f"{tf / peak:6.1%} |" if peak else f"{'n/a':>7} |")
        print(line)
        results[name] = {"seconds": sec, "docs_per_s": n / sec, "tokens_per_s": tokens / sec, "tflops": tf}
    print(f"clusterclip / sentence-transformers: {best_st / best_cc:.2f}x docs/s; "
          f"agreement: min cosine {cos.min():.6f}, mean {cos.mean():.6f}")
    if args.flops:
        print(f"FLOP floor: 2 x {(enc.n_params - enc.n_embedding_params) / 1e6:.1f}M non-embedding parameters x tokens"
              + ("" if peak else "; pass --peak-tflops for the fraction of peak"))
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "dtype": dtype, "n_docs": n, "tokens": tokens,
                                               "results": results, "ratio": best_st / best_cc,
                                               "min_cosine": float(cos.min())}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
