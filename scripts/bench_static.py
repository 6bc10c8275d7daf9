#!/usr/bin/env python
"""The static encoder (``--encoder model2vec``) against the default transformer encoder, on one corpus.

What a user choosing between them needs, measured in the same run:

- speed: documents per second of ``embed_corpus`` end to end (reading, tokenizing, encoding,
  writing) with each encoder already loaded, interleaved, best of ``--repeat``; the ratio;
- how much the clustering changes: spherical k-means (clusterclip's defaults, seed 0) at the same
  ``--k`` on each encoder's vectors, then the adjusted mutual information (AMI) between the two
  clusterings, and the nearest-centroid agreement: the share of documents whose nearest centroid
  under the static encoder is the one matched (one to one, Hungarian) to their nearest centroid
  under the transformer. Both are read against k-means' own run-to-run variation: the same
  figures between two transformer clusterings that differ only in the seed.

The static model is the default one (all-MiniLM-L6-v2 distilled by ``clusterclip distill``, in
``$CLUSTERCLIP_CACHE``; distilled there on first use) unless ``--static-model DIR``.

    python scripts/bench_static.py                         # 1000 long documents, k = 20
    python scripts/bench_static.py --docs man --n-docs 2000 --k 50
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _bench_embed():
    spec = importlib.util.spec_from_file_location("bench_embed", REPO / "scripts" / "bench_embed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def agreement(a: np.ndarray, b: np.ndarray, k: int) -> dict:
    """AMI and the matched (one-to-one) share of documents in the same cluster, between labelings ``a`` and ``b``."""
    from sklearn.metrics import adjusted_mutual_info_score

    return {"ami": float(adjusted_mutual_info_score(a, b)), "nearest_centroid": _bench_embed()._matched(a, b, k)}


def labels(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from clusterclip.cluster import assign
    from clusterclip.cluster.kmeans import train_spherical_kmeans

    return assign(x, train_spherical_kmeans(x, k, seed=seed), check=False)[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", choices=("long", "man", "short"), default="long")
    ap.add_argument("--n-docs", type=int, default=1000)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=2, help="timed runs of each (interleaved); the best is reported")
    ap.add_argument("--alone-docs", type=int, default=20000,
                    help="documents the static encoder alone is timed on (the corpus repeated)")
    ap.add_argument("--static-model", default=None, help="a model2vec directory [default: the distilled default]")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "clusterclip-bench"),
                    help="where the man-page corpus is cached")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    from clusterclip.embed import EmbedDir, embed_corpus
    from clusterclip.embed.hf import HFEncoder
    from clusterclip.embed.model2vec import StaticEncoder

    bench = _bench_embed()
    texts = bench.corpus_texts(args.docs, args.n_docs, Path(args.work))
    encoders = {"transformer (hf, default)": HFEncoder(max_length=args.max_length),
                "static (model2vec)": StaticEncoder(args.static_model, max_length=args.max_length)}
    load_before = os.getloadavg()[0]
    best = {name: float("inf") for name in encoders}
    vectors = {}
    n_docs = len(texts)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), "utf-8")
        for enc in encoders.values():  # warm-up: weights loaded, first calls done
            enc.embed_texts(texts[:8])
        for r in range(args.repeat):
            for i, (name, enc) in enumerate(encoders.items()):
                out = Path(tmp) / f"emb-{i}-{r}"
                t0 = time.perf_counter()
                embed_corpus([corpus], out, encoder=enc, progress=False)
                best[name] = min(best[name], time.perf_counter() - t0)
                vectors.setdefault(name, EmbedDir(out).store().read(0, len(texts)))
    # the encoders alone (tokenize + encode in memory): the rate at scale, without the fixed costs of a run
    alone = {}
    for name, enc in encoders.items():
        reps = max(1, -(-args.alone_docs // n_docs))
        batch = texts * reps if "static" in name else texts[:200]  # the transformer's rate is steady after 200
        seconds = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for lo in range(0, len(batch), 4096):
                enc.embed(enc.prepare(batch[lo : lo + 4096]))
            seconds = min(seconds, time.perf_counter() - t0)
        alone[name] = len(batch) / seconds
    load_after = os.getloadavg()[0]
    (t_name, t_x), (s_name, s_x) = vectors.items()
    ref = labels(t_x, args.k, 0)
    static_vs = agreement(labels(s_x, args.k, 0), ref, args.k)
    seed_vs = agreement(labels(t_x, args.k, 1), ref, args.k)
    n = len(texts)
    ratio = best[t_name] / best[s_name]
    print(f"command: python scripts/bench_static.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"load average {load_before:.2f} before, {load_after:.2f} after; {n} {args.docs} docs (mean "
          f"{np.mean([len(t) for t in texts]):,.0f} chars), --max-length {args.max_length}, k = {args.k}; "
          f"transformer {encoders[t_name].device} {encoders[t_name].dtype}")
    print("| encoder | embed_corpus seconds | docs/s | × transformer | encoder alone docs/s | × transformer |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, sec in best.items():
        print(f"| {name} | {sec:.2f} | {n / sec:,.1f} | {best[t_name] / sec:.1f}× | {alone[name]:,.0f} | "
              f"{alone[name] / alone[t_name]:.0f}× |")
    alone_ratio = alone[s_name] / alone[t_name]
    print(f"static / transformer: {ratio:.1f}x docs/s end to end on {n} documents (embed_corpus, encoders loaded: "
          f"the run's fixed costs included), {alone_ratio:.0f}x for the encoders alone (tokenize + encode)")
    print("| clusterings compared (k-means at the same k) | AMI | nearest-centroid agreement |")
    print("|---|---:|---:|")
    print(f"| static vs transformer (seed 0 both) | {static_vs['ami']:.3f} | {static_vs['nearest_centroid']:.1%} |")
    print(f"| transformer seed 1 vs seed 0 (k-means' own variation) | {seed_vs['ami']:.3f} | "
          f"{seed_vs['nearest_centroid']:.1%} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"n_docs": n, "docs": args.docs, "k": args.k, "seconds": best,
                                               "ratio": ratio, "encoder_alone_docs_per_s": alone,
                                               "encoder_alone_ratio": alone_ratio, "static_vs_transformer": static_vs,
                                               "transformer_other_seed": seed_vs,
                                               "load": [load_before, load_after]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
